//! The console's SSH host key, checked as configured during the handshake, and the start-up
//! probe that checks it without logging in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};

use super::ConsoleError;
use crate::config::{ConsoleConfig, HostKeyPolicy};

/// The ConfigMap of the shipped deployment that holds `--console-host-key` /
/// `--console-known-hosts` (named in the messages an operator sees).
pub const CONSOLE_HOST_KEY_CONFIGMAP: &str = "console-host-key";

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Nothing configured for this console (`source` says what was looked at).
    Unknown { source: String },
    /// A different key is configured.
    Mismatch { expected: String },
}

/// What the handshake saw.
#[derive(Debug, Clone, Default)]
pub(super) struct Seen {
    pub fingerprint: String,
    pub refused: Option<Refusal>,
}

pub(super) struct KeyCheck {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl KeyCheck {
    fn check(&self, key: &PublicKey) -> Result<(), Refusal> {
        match &self.policy {
            HostKeyPolicy::InsecureAcceptAny => Ok(()),
            HostKeyPolicy::Pinned(pins) if pins.iter().all(|p| p.trim().is_empty()) => {
                Err(Refusal::Unknown {
                    source: "--console-host-key (given, but empty)".into(),
                })
            }
            HostKeyPolicy::Pinned(pins) => {
                let fp = fingerprint(key);
                let ok = pins.iter().any(|pin| {
                    let pin = pin.trim();
                    if pin.starts_with("SHA256:") {
                        pin == fp
                    } else {
                        PublicKey::from_openssh(pin).is_ok_and(|p| p.key_data() == key.key_data())
                    }
                });
                if ok {
                    Ok(())
                } else {
                    Err(Refusal::Mismatch {
                        expected: format!(
                            "the key(s) pinned with --console-host-key ({})",
                            pins.len()
                        ),
                    })
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                if !path.is_file() {
                    return Err(Refusal::Unknown {
                        source: format!(
                            "the known_hosts file {} (--console-known-hosts), which does not exist",
                            path.display()
                        ),
                    });
                }
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Refusal::Unknown {
                        source: format!(
                            "the known_hosts file {} (--console-known-hosts), which has no key for [{}]:{}",
                            path.display(),
                            self.host,
                            self.port
                        ),
                    }),
                    Err(russh::keys::Error::KeyChanged { line }) => Err(Refusal::Mismatch {
                        expected: format!(
                            "the key for [{}]:{} on line {line} of {} (--console-known-hosts)",
                            self.host,
                            self.port,
                            path.display()
                        ),
                    }),
                    Err(e) => Err(Refusal::Unknown {
                        source: format!(
                            "the known_hosts file {} (--console-known-hosts), which cannot be read ({e})",
                            path.display()
                        ),
                    }),
                }
            }
        }
    }
}

impl client::Handler for KeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // A certificate's signing key is not the host key we pin; check that the host key
            // inside it matches instead.
            PublicKeyOrCertificate::Certificate(c) => &PublicKey::from(c.public_key().clone()),
        };
        let verdict = self.check(key);
        let ok = verdict.is_ok();
        if let Ok(mut s) = self.seen.lock() {
            *s = Seen {
                fingerprint: fingerprint(key),
                refused: verdict.err(),
            };
        }
        Ok(ok)
    }
}

/// `host:port` of the console.
pub(super) fn address(cfg: &ConsoleConfig) -> String {
    format!("{}:{}", cfg.host, cfg.port)
}

/// Runs one set-up step under the console deadline.
pub(super) async fn step<T>(
    cfg: &ConsoleConfig,
    stage: &'static str,
    fut: impl Future<Output = Result<T, russh::Error>>,
) -> Result<T, ConsoleError> {
    match tokio::time::timeout(cfg.connect_timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ConsoleError::Ssh {
            addr: address(cfg),
            message: format!("{stage}: {e}"),
        }),
        Err(_) => Err(ConsoleError::Timeout {
            addr: address(cfg),
            stage,
            after: cfg.connect_timeout,
        }),
    }
}

/// Connects and completes the SSH handshake, the host key checked; no login. Each of the TCP
/// connect and the handshake has `cfg.connect_timeout`.
pub(super) async fn connect(
    cfg: &ConsoleConfig,
    ssh_cfg: client::Config,
) -> Result<(client::Handle<KeyCheck>, String), ConsoleError> {
    let addr = address(cfg);
    let tcp = tokio::time::timeout(
        cfg.connect_timeout,
        tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| ConsoleError::Timeout {
        addr: addr.clone(),
        stage: "connecting",
        after: cfg.connect_timeout,
    })?
    .map_err(|e| ConsoleError::Connect {
        addr: addr.clone(),
        message: e.to_string(),
    })?;
    let _ = tcp.set_nodelay(true);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = KeyCheck {
        policy: cfg.host_key.clone(),
        host: cfg.host.clone(),
        port: cfg.port,
        seen: seen.clone(),
    };
    let handshake = step(
        cfg,
        "the SSH handshake",
        client::connect_stream(Arc::new(ssh_cfg), tcp, handler),
    )
    .await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    match (handshake, seen.refused) {
        (_, Some(Refusal::Unknown { source })) => Err(ConsoleError::HostKeyUnknown {
            addr,
            fingerprint: seen.fingerprint,
            looked_in: source,
        }),
        (_, Some(Refusal::Mismatch { expected })) => Err(ConsoleError::HostKeyMismatch {
            addr,
            fingerprint: seen.fingerprint,
            expected,
        }),
        (Ok(h), None) => Ok((h, seen.fingerprint)),
        (Err(e), None) => Err(e),
    }
}

/// What [`probe`] found: the console answered and its key is acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The key is the configured one.
    Verified { addr: String, fingerprint: String },
    /// Not checked (`--insecure-console-host-key`).
    Unverified { addr: String, fingerprint: String },
}

impl std::fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Verified { addr, fingerprint } => write!(
                f,
                "the StackPath container console at {addr} presented the expected SSH host key {fingerprint}"
            ),
            Self::Unverified { addr, fingerprint } => write!(
                f,
                "the StackPath container console at {addr} presented SSH host key {fingerprint}, which is NOT checked (--insecure-console-host-key): every kubectl exec sends the StackPath client secret as the SSH password to whichever server answers there"
            ),
        }
    }
}

/// Checks at start that the console is reachable and its host key is the configured one:
/// a TCP connect and an SSH key exchange (a few milliseconds of CPU and two or three round
/// trips), no login and no StackPath API call, bounded by twice `cfg.connect_timeout`. A
/// host key error is [`ConsoleError::HostKeyUnknown`] or [`ConsoleError::HostKeyMismatch`]
/// ([`ConsoleError::is_host_key`]), worded for the operator as `kubectl exec` shows it.
pub async fn probe(cfg: &ConsoleConfig) -> Result<ProbeOutcome, ConsoleError> {
    let (handle, fingerprint) = connect(cfg, client::Config::default()).await?;
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        handle.disconnect(russh::Disconnect::ByApplication, "", "en"),
    )
    .await;
    let addr = address(cfg);
    Ok(match cfg.host_key {
        HostKeyPolicy::InsecureAcceptAny => ProbeOutcome::Unverified { addr, fingerprint },
        _ => ProbeOutcome::Verified { addr, fingerprint },
    })
}
