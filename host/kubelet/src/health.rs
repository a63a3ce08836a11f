//! Whether the kubelet API is serving, for the daemon's `/readyz`, its gauges and its log.
//!
//! [`crate::serve`] keeps one [`Health`] up to date; the daemon holds clones of it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;

/// Where the kubelet API stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    /// Loading the serving certificate, before the first listen.
    Starting,
    /// No serving certificate yet: CSR `csr` waits for approval and issuance since `since`.
    WaitingForCertificate { csr: String, since: DateTime<Utc> },
    /// Listening on `addr` with a certificate valid until `not_after`.
    Serving {
        addr: SocketAddr,
        not_after: DateTime<Utc>,
    },
    /// Not serving because of `error`; the next attempt is at `retry_at`.
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Shut down on request.
    Stopped,
    /// Cannot start with this configuration (not retried; the error names the setting).
    Misconfigured { error: String },
}

impl HealthState {
    /// Every [`HealthState::name`], for a gauge per state.
    pub const NAMES: [&'static str; 6] = [
        "starting",
        "waiting_for_certificate",
        "serving",
        "failed",
        "stopped",
        "misconfigured",
    ];

    /// A short stable name (a metric label).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::WaitingForCertificate { .. } => "waiting_for_certificate",
            Self::Serving { .. } => "serving",
            Self::Failed { .. } => "failed",
            Self::Stopped => "stopped",
            Self::Misconfigured { .. } => "misconfigured",
        }
    }

    pub fn is_serving(&self) -> bool {
        matches!(self, Self::Serving { .. })
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Starting => f.write_str("starting (loading the serving certificate)"),
            Self::WaitingForCertificate { csr, since } => write!(
                f,
                "waiting since {} for CertificateSigningRequest {csr} to be approved and issued; approve it with `kubectl certificate approve {csr}`, pass --approve-own-serving-csr, or give a certificate with --tls-cert-file/--tls-private-key-file",
                time(since)
            ),
            Self::Serving { addr, not_after } => write!(
                f,
                "serving on {addr} with a certificate valid until {}",
                time(not_after)
            ),
            Self::Failed { error, retry_at } => {
                write!(f, "{error} (next attempt at {})", time(retry_at))
            }
            Self::Stopped => f.write_str("stopped"),
            Self::Misconfigured { error } => write!(f, "it cannot start: {error}"),
        }
    }
}

/// A cheap, cloneable view of the kubelet API's [`HealthState`].
#[derive(Debug, Clone)]
pub struct Health {
    tx: Arc<watch::Sender<HealthState>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(HealthState::Starting)),
        }
    }

    /// The state now.
    pub fn state(&self) -> HealthState {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every change (for logging or gauges).
    pub fn subscribe(&self) -> watch::Receiver<HealthState> {
        self.tx.subscribe()
    }

    /// `Ok` while serving; otherwise the reason, as `/readyz` should show it.
    pub fn readiness(&self) -> Result<(), String> {
        match &*self.tx.borrow() {
            HealthState::Serving { .. } => Ok(()),
            other => Err(format!("the kubelet API is not serving: {other}")),
        }
    }

    /// Sets the state (the daemon's own code has no reason to).
    pub(crate) fn set(&self, state: HealthState) {
        self.tx.send_if_modified(|cur| {
            if *cur == state {
                false
            } else {
                *cur = state;
                true
            }
        });
    }
}

/// What the parts of [`crate::serve`] report; the [`HealthState`] follows from it.
#[derive(Debug)]
pub(crate) struct Status {
    health: Health,
    facts: Mutex<Facts>,
}

#[derive(Debug, Default)]
struct Facts {
    cert: Cert,
    listen: Listen,
    stopped: bool,
}

#[derive(Debug, Default)]
enum Cert {
    #[default]
    Loading,
    /// A certificate is served; `renew` tells the operator what to do once it expired.
    Valid {
        not_after: DateTime<Utc>,
        renew: String,
    },
    Pending {
        csr: String,
        since: DateTime<Utc>,
    },
    Problem {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

#[derive(Debug, Default)]
enum Listen {
    #[default]
    NotYet,
    On(SocketAddr),
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

impl Facts {
    fn holds_valid_cert(&self, now: DateTime<Utc>) -> bool {
        matches!(&self.cert, Cert::Valid { not_after, .. } if *not_after > now)
    }

    fn state(&self, now: DateTime<Utc>) -> HealthState {
        if self.stopped {
            return HealthState::Stopped;
        }
        match (&self.cert, &self.listen) {
            (Cert::Loading, _) => HealthState::Starting,
            (Cert::Pending { csr, since }, _) => HealthState::WaitingForCertificate {
                csr: csr.clone(),
                since: *since,
            },
            (Cert::Problem { error, retry_at }, _) => HealthState::Failed {
                error: error.clone(),
                retry_at: *retry_at,
            },
            (Cert::Valid { not_after, renew }, _) if *not_after <= now => HealthState::Failed {
                error: format!(
                    "the serving certificate expired at {}; {renew}",
                    time(not_after)
                ),
                retry_at: now + chrono::Duration::seconds(10),
            },
            (Cert::Valid { .. }, Listen::NotYet) => HealthState::Starting,
            (Cert::Valid { .. }, Listen::Failed { error, retry_at }) => HealthState::Failed {
                error: error.clone(),
                retry_at: *retry_at,
            },
            (Cert::Valid { not_after, .. }, Listen::On(addr)) => HealthState::Serving {
                addr: *addr,
                not_after: *not_after,
            },
        }
    }
}

impl Status {
    pub fn new(health: Health) -> Arc<Self> {
        Arc::new(Self {
            health,
            facts: Mutex::default(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut Facts, DateTime<Utc>)) {
        let now = Utc::now();
        let mut facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut facts, now);
        self.health.set(facts.state(now));
    }

    /// When the certificate served now expires, if it has not.
    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        let facts = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        match &facts.cert {
            Cert::Valid { not_after, .. } if *not_after > Utc::now() => Some(*not_after),
            _ => None,
        }
    }

    /// Re-evaluates (a certificate may have expired meanwhile).
    pub fn refresh(&self) {
        self.update(|_, _| {});
    }

    pub fn cert_valid(&self, not_after: DateTime<Utc>, renew: &str) {
        self.update(|f, _| {
            f.cert = Cert::Valid {
                not_after,
                renew: renew.to_owned(),
            }
        });
    }

    /// A CSR waits; shown unless a certificate still valid is served meanwhile (a renewal).
    pub fn cert_pending(&self, csr: &str, since: DateTime<Utc>) {
        self.update(|f, now| {
            if !f.holds_valid_cert(now) {
                f.cert = Cert::Pending {
                    csr: csr.to_owned(),
                    since,
                };
            }
        });
    }

    /// No certificate can be had for now; shown unless one still valid is served.
    pub fn cert_problem(&self, error: String, retry_at: DateTime<Utc>) {
        self.update(|f, now| {
            if !f.holds_valid_cert(now) {
                f.cert = Cert::Problem { error, retry_at };
            }
        });
    }

    pub fn listening(&self, addr: SocketAddr) {
        self.update(|f, _| f.listen = Listen::On(addr));
    }

    pub fn listen_failed(&self, error: String, retry_at: DateTime<Utc>) {
        self.update(|f, _| f.listen = Listen::Failed { error, retry_at });
    }

    pub fn stopped(&self) {
        self.update(|f, _| f.stopped = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_csr_and_the_command() {
        let h = Health::new();
        assert!(h.readiness().is_err());
        h.set(HealthState::WaitingForCertificate {
            csr: "csr-node-abc".into(),
            since: Utc::now(),
        });
        let e = h.readiness().unwrap_err();
        assert!(e.starts_with("the kubelet API is not serving: waiting since"));
        assert!(
            e.contains("kubectl certificate approve csr-node-abc"),
            "{e}"
        );
        h.set(HealthState::Serving {
            addr: "127.0.0.1:10250".parse().unwrap(),
            not_after: Utc::now(),
        });
        assert!(h.readiness().is_ok());
        assert_eq!(h.state().name(), "serving");
    }

    #[test]
    fn a_renewal_waiting_does_not_hide_a_valid_certificate() {
        let h = Health::new();
        let st = Status::new(h.clone());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        st.cert_pending("csr-a", Utc::now());
        assert_eq!(h.state().name(), "waiting_for_certificate");
        let later = Utc::now() + chrono::Duration::hours(1);
        st.cert_valid(later, "renew it");
        assert_eq!(h.state().name(), "starting");
        st.listening(addr);
        assert!(h.state().is_serving());
        // A renewal CSR waits, or is denied: still serving with the current certificate.
        st.cert_pending("csr-b", Utc::now());
        st.cert_problem("denied".into(), Utc::now());
        assert!(h.state().is_serving());
        // The listener fails: not serving, and says why.
        st.listen_failed("cannot listen".into(), Utc::now());
        assert!(h.readiness().unwrap_err().contains("cannot listen"));
        st.listening(addr);
        // Once expired, the pending renewal shows.
        st.cert_valid(Utc::now() - chrono::Duration::seconds(1), "renew the files");
        assert!(
            h.readiness().unwrap_err().contains("expired"),
            "{:?}",
            h.state()
        );
        assert!(h.readiness().unwrap_err().contains("renew the files"));
        st.cert_pending("csr-c", Utc::now());
        assert_eq!(h.state().name(), "waiting_for_certificate");
        st.stopped();
        assert_eq!(h.state(), HealthState::Stopped);
    }
}
