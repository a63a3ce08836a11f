//! The serving certificate through a `kubernetes.io/kubelet-serving` CSR: file it, wait for
//! someone (or `--approve-own-serving-csr`) to approve it and the signer to issue it, and renew
//! before expiry by swapping the certificate in the resolver (open connections keep theirs).
//!
//! Nobody approves kubelet-serving CSRs in a stock cluster (the controller-manager approves
//! only client CSRs), so the wait has no end: while it lasts, the Node gets an Event naming the
//! CSR and the `kubectl certificate approve` command, the log says so every minute, and
//! [`crate::Health`] is `WaitingForCertificate`. A denied, failed or deleted CSR is reported
//! the same way and replaced by a new one after a back-off.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Api;
use kube::api::{ObjectMeta, PostParams, WatchEvent, WatchParams};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::approve::SelfApprover;
use crate::config::CsrBootstrap;
use crate::error::KubeletError;
use crate::health::Status;
use crate::node_events::{NodeEvents, reason};
use crate::tls::{CertStore, certified_key_from_pem, validity};

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The usages requested (an ECDSA key: no key encipherment).
pub const USAGES: [&str; 2] = ["digital signature", "server auth"];

fn err(m: impl Into<String>) -> KubeletError {
    KubeletError::Bootstrap(m.into())
}

/// A fresh key and the PEM CSR for it: `CN=system:node:<node>, O=system:nodes`, the configured
/// addresses as SANs.
pub fn build_request(
    node_name: &str,
    cfg: &CsrBootstrap,
) -> Result<(KeyPair, String), KubeletError> {
    let key = KeyPair::generate().map_err(|e| err(format!("cannot generate a key: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("system:node:{node_name}"));
    dn.push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name = dn;
    for ip in &cfg.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for d in &cfg.dns_names {
        let name = d.clone().try_into().map_err(|e| {
            err(format!(
                "bad DNS name {d:?} for the CSR (--node-dns-name): {e}"
            ))
        })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    if params.subject_alt_names.is_empty() {
        return Err(err(
            "no node IPs or DNS names for the serving certificate; pass --node-ip so the API server can verify it",
        ));
    }
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| err(format!("cannot build the CSR: {e}")))?;
    Ok((key, csr_pem))
}

/// An issued certificate.
pub(crate) struct Issued {
    pub key: CertifiedKey,
    pub not_after: DateTime<Utc>,
}

/// How one CSR ended.
enum Outcome {
    Issued(Vec<u8>),
    /// Denied or Failed: (condition, its reason and message).
    Refused(String, String),
    Gone,
    Shutdown,
}

/// What to do after one CSR.
enum Attempt {
    Issued(Issued),
    Retry(String),
    Shutdown,
}

/// How long a CSR waits before a Warning Event says so (approvers usually act within a
/// second; a rotation approved at once needs no Event).
const PENDING_EVENT_AFTER: Duration = Duration::from_secs(5);

/// The hint while no certificate can be had.
const HOW_TO: &str = "approve it with `kubectl certificate approve <name>`, pass --approve-own-serving-csr, or give --tls-cert-file and --tls-private-key-file";

/// Files CSRs and waits for them.
pub(crate) struct Requester {
    api: Api<CertificateSigningRequest>,
    node_name: String,
    cfg: CsrBootstrap,
    status: Arc<Status>,
    events: NodeEvents,
    approver: Option<SelfApprover>,
}

impl Requester {
    /// Checks the settings (a bad one is an error at start).
    pub fn new(
        client: kube::Client,
        node_name: &str,
        cfg: CsrBootstrap,
        status: Arc<Status>,
    ) -> Result<Self, KubeletError> {
        build_request(node_name, &cfg)?;
        let approver = cfg
            .approve_own
            .then(|| SelfApprover::new(client.clone(), node_name, &cfg.ips, &cfg.dns_names));
        Ok(Self {
            api: Api::all(client.clone()),
            node_name: node_name.to_owned(),
            events: NodeEvents::new(client, node_name),
            cfg,
            status,
            approver,
        })
    }

    /// What an operator does once the certificate expired.
    pub fn renew_hint(&self) -> String {
        format!(
            "a new CertificateSigningRequest for node {} waits; {HOW_TO}",
            self.node_name
        )
    }

    /// Files CSRs until a certificate is issued; `None` at shutdown. Never gives up.
    pub async fn obtain(&self, shutdown: &CancellationToken) -> Option<Issued> {
        let mut backoff = self.cfg.retry_initial;
        loop {
            match self.attempt(shutdown).await {
                Attempt::Issued(i) => return Some(i),
                Attempt::Shutdown => return None,
                Attempt::Retry(why) => {
                    let retry_at = Utc::now()
                        + chrono::Duration::from_std(backoff).unwrap_or(chrono::Duration::MAX);
                    tracing::warn!(node = %self.node_name, "{why}; a new CertificateSigningRequest follows in {backoff:?}");
                    self.status.cert_problem(
                        format!(
                            "no serving certificate: {why}; a new CertificateSigningRequest follows"
                        ),
                        retry_at,
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.cfg.retry_max.max(self.cfg.retry_initial));
                }
            }
        }
    }

    async fn attempt(&self, shutdown: &CancellationToken) -> Attempt {
        let (key, pem) = match build_request(&self.node_name, &self.cfg) {
            Ok(x) => x,
            Err(e) => return Attempt::Retry(e.to_string()),
        };
        let csr = CertificateSigningRequest {
            metadata: ObjectMeta {
                generate_name: Some(format!("csr-{}-", self.node_name)),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: SIGNER.into(),
                usages: Some(USAGES.iter().map(|u| u.to_string()).collect()),
                expiration_seconds: self
                    .cfg
                    .expiration
                    .map(|d| d.as_secs().min(i32::MAX as u64) as i32),
                ..Default::default()
            },
            status: None,
        };
        let created = match self.api.create(&PostParams::default(), &csr).await {
            Ok(c) => c,
            Err(e) => {
                return Attempt::Retry(format!(
                    "cannot create a CertificateSigningRequest: {e} (the daemon needs `create`, `get` and `watch` on certificatesigningrequests)"
                ));
            }
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let since = Utc::now();
        self.status.cert_pending(&name, since);
        let how = HOW_TO.replace("<name>", &name);
        let mut self_approved = false;
        if let Some(a) = &self.approver {
            match a
                .approve(
                    &created,
                    &rcgen::PublicKeyData::subject_public_key_info(&key),
                )
                .await
            {
                Ok(()) => {
                    self_approved = true;
                    tracing::info!(csr = %name, "approved this daemon's own serving CertificateSigningRequest (--approve-own-serving-csr)");
                }
                Err(e) => {
                    tracing::warn!(csr = %name, error = %e, "could not approve the daemon's own serving CSR");
                    self.events
                        .warning(
                            reason::NOT_SELF_APPROVED,
                            format!("--approve-own-serving-csr did not approve CertificateSigningRequest {name}: {e}"),
                        )
                        .await;
                }
            }
        }
        if self_approved {
            tracing::info!(csr = %name, "serving certificate requested; waiting for the signer");
        } else {
            tracing::warn!(csr = %name, "serving certificate requested; waiting for approval: {how}");
        }
        let (outcome, warned) = self.wait(&name, since, &how, shutdown).await;
        match outcome {
            Outcome::Shutdown => Attempt::Shutdown,
            Outcome::Gone => Attempt::Retry(format!(
                "CertificateSigningRequest {name} was deleted before a certificate was issued"
            )),
            Outcome::Refused(kind, why) => {
                let reason = if kind == "Denied" {
                    reason::DENIED
                } else {
                    reason::FAILED
                };
                let verb = kind.to_lowercase();
                self.events
                    .warning(
                        reason,
                        format!(
                            "CertificateSigningRequest {name} for the serving certificate of node {node} was {verb}: {why}. A new one is filed after a back-off.",
                            node = self.node_name
                        ),
                    )
                    .await;
                Attempt::Retry(format!(
                    "CertificateSigningRequest {name} was {verb}: {why}"
                ))
            }
            Outcome::Issued(pem) => {
                let issued = certified_key_from_pem(&pem, key.serialize_pem().as_bytes())
                    .map_err(|e| e.to_string())
                    .and_then(|k| {
                        let (_, na) = k
                            .cert
                            .first()
                            .and_then(|c| validity(c))
                            .ok_or("it is not valid X.509")?;
                        let not_after = DateTime::from_timestamp(na, 0).ok_or("bad notAfter")?;
                        Ok(Issued { key: k, not_after })
                    });
                match issued {
                    Ok(i) => {
                        tracing::info!(csr = %name, not_after = %i.not_after, "serving certificate issued");
                        // Said on the Node only when its wait was (approvers usually take a second).
                        if warned {
                            self.events
                            .normal(
                                reason::ISSUED,
                                format!("CertificateSigningRequest {name} was issued; the kubelet API serves its certificate (valid until {}).", i.not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                            )
                            .await;
                        }
                        Attempt::Issued(i)
                    }
                    Err(e) => Attempt::Retry(format!(
                        "the certificate issued for CertificateSigningRequest {name} cannot be used: {e}"
                    )),
                }
            }
        }
    }

    /// The end of a CSR, if it came.
    fn decided(csr: &CertificateSigningRequest) -> Option<Outcome> {
        let st = csr.status.as_ref()?;
        for c in st.conditions.iter().flatten() {
            if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                let why = match (c.reason.as_deref(), c.message.as_deref()) {
                    (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                    (Some(r), _) if !r.is_empty() => r.to_owned(),
                    (_, Some(m)) if !m.is_empty() => m.to_owned(),
                    _ => "no reason given".to_owned(),
                };
                return Some(Outcome::Refused(c.type_.clone(), why));
            }
        }
        st.certificate
            .as_ref()
            .filter(|c| !c.0.is_empty())
            .map(|c| Outcome::Issued(c.0.clone()))
    }

    /// What the Event and the log say while CSR `name` waits.
    fn pending_note(&self, name: &str) -> String {
        let what = match self.status.valid_until() {
            Some(t) => format!(
                "The serving certificate of the kubelet API of node {node} expires at {t}; its renewal, CertificateSigningRequest {name}, waits for approval",
                node = self.node_name,
                t = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!(
                "The kubelet API of node {node} (kubectl logs, exec, top) has no serving certificate: CertificateSigningRequest {name} waits for approval",
                node = self.node_name
            ),
        };
        format!(
            "{what}. Check it (kubectl get csr {name} -o yaml) and run `kubectl certificate approve {name}`, or pass --approve-own-serving-csr, or give --tls-cert-file and --tls-private-key-file."
        )
    }

    /// Watches CSR `name` until it is issued, refused or deleted: a Warning Event on the Node
    /// once it has waited [`PENDING_EVENT_AFTER`], a log line every `remind_every`. The flag
    /// says whether the Event was sent.
    async fn wait(
        &self,
        name: &str,
        since: DateTime<Utc>,
        how: &str,
        shutdown: &CancellationToken,
    ) -> (Outcome, bool) {
        let mut warned = false;
        let warn_at = tokio::time::Instant::now() + PENDING_EVENT_AFTER;
        let outcome = {
            let warn = async {
                tokio::time::sleep_until(warn_at).await;
                self.events
                    .warning(reason::PENDING, self.pending_note(name))
                    .await;
            };
            tokio::pin!(warn);
            let watching = self.watch(name, since, how, shutdown);
            tokio::pin!(watching);
            loop {
                tokio::select! {
                    o = &mut watching => break o,
                    _ = &mut warn, if !warned => warned = true,
                }
            }
        };
        (outcome, warned)
    }

    /// Watches CSR `name` until it is issued, refused or deleted, reminding every
    /// `remind_every`.
    async fn watch(
        &self,
        name: &str,
        since: DateTime<Utc>,
        how: &str,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let mut remind = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.remind_every,
            self.cfg.remind_every,
        );
        remind.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reminder = || {
            let minutes = (Utc::now() - since).num_minutes();
            match self.status.valid_until() {
                Some(t) => {
                    tracing::warn!(csr = %name, waiting_minutes = minutes, expires = %t, "the serving certificate's renewal waits for approval of CertificateSigningRequest {name}; {how}")
                }
                None => {
                    tracing::warn!(csr = %name, waiting_minutes = minutes, "no serving certificate yet: the kubelet API (kubectl logs, exec, top) is down until CertificateSigningRequest {name} is approved; {how}")
                }
            }
            self.status.cert_pending(name, since);
        };
        let wp = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(290);
        loop {
            let current = tokio::select! {
                _ = shutdown.cancelled() => return Outcome::Shutdown,
                r = self.api.get_opt(name) => r,
            };
            let rv = match current {
                Ok(None) => return Outcome::Gone,
                Ok(Some(c)) => {
                    if let Some(o) = Self::decided(&c) {
                        return o;
                    }
                    c.metadata.resource_version.unwrap_or_default()
                }
                Err(e) => {
                    tracing::debug!(csr = %name, error = %e, "cannot read the CSR; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Outcome::Shutdown,
                        _ = remind.tick() => reminder(),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    continue;
                }
            };
            let mut events = match self.api.watch(&wp, &rv).await {
                Ok(s) => s.boxed(),
                Err(e) => {
                    tracing::debug!(csr = %name, error = %e, "cannot watch the CSR; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Outcome::Shutdown,
                        _ = remind.tick() => reminder(),
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Outcome::Shutdown,
                    _ = remind.tick() => reminder(),
                    ev = events.next() => match ev {
                        Some(Ok(WatchEvent::Added(c) | WatchEvent::Modified(c))) => {
                            if let Some(o) = Self::decided(&c) {
                                return o;
                            }
                        }
                        Some(Ok(WatchEvent::Deleted(_))) => return Outcome::Gone,
                        Some(Ok(WatchEvent::Bookmark(_))) => {}
                        // Expired, failed or timed out: read it again, then watch again.
                        Some(Ok(WatchEvent::Error(_)) | Err(_)) | None => break,
                    },
                }
            }
        }
    }
}

/// When to renew a certificate valid from `not_before` to `not_after` (Unix seconds): at
/// `fraction` of its lifetime, or `before` its expiry if that is earlier.
pub fn renew_delay(
    not_before: i64,
    not_after: i64,
    now: i64,
    fraction: f64,
    before: Option<Duration>,
) -> Duration {
    let life = (not_after - not_before).max(0) as f64;
    let mut at = not_before as f64 + life * fraction.clamp(0.1, 0.95);
    if let Some(b) = before {
        at = at.min(not_after as f64 - b.as_secs_f64());
    }
    Duration::from_secs_f64((at - now as f64).max(0.0))
}

/// Renews the certificate in `store` before it expires, until `shutdown`.
pub(crate) async fn rotate(
    requester: Arc<Requester>,
    store: Arc<CertStore>,
    status: Arc<Status>,
    shutdown: CancellationToken,
) {
    let hint = requester.renew_hint();
    loop {
        let delay = store
            .leaf()
            .and_then(|c| validity(&c))
            .map(|(nb, na)| {
                renew_delay(
                    nb,
                    na,
                    chrono::Utc::now().timestamp(),
                    requester.cfg.renew_at,
                    requester.cfg.renew_before,
                )
            })
            .unwrap_or(Duration::from_secs(60));
        tracing::debug!(?delay, "next serving certificate renewal");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let Some(issued) = requester.obtain(&shutdown).await else {
            return;
        };
        store.swap(issued.key);
        status.cert_valid(issued.not_after, &hint);
        tracing::info!(not_after = %issued.not_after, "serving certificate rotated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_happens_at_the_fraction() {
        assert_eq!(renew_delay(0, 100, 0, 0.8, None), Duration::from_secs(80));
        assert_eq!(renew_delay(0, 100, 90, 0.8, None), Duration::ZERO);
    }

    #[test]
    fn renew_before_expiry_wins_when_earlier() {
        let ten = Some(Duration::from_secs(10));
        let ninety_five = Some(Duration::from_secs(95));
        // 100 s life: 95 s before expiry is 5 s in, earlier than 80 %.
        assert_eq!(
            renew_delay(0, 100, 0, 0.8, ninety_five),
            Duration::from_secs(5)
        );
        // 10 s before expiry is later than 80 %: the fraction decides.
        assert_eq!(renew_delay(0, 100, 0, 0.8, ten), Duration::from_secs(80));
    }
}
