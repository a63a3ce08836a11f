//! The serving certificate through a `kubernetes.io/kubelet-serving` CSR: create, wait for
//! someone to approve it and the signer to issue it, and renew before expiry by swapping the
//! certificate in the resolver (open connections keep theirs).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::CsrBootstrap;
use crate::error::KubeletError;
use crate::tls::{CertStore, certified_key_from_pem, validity};

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

fn err(m: impl Into<String>) -> KubeletError {
    KubeletError::Bootstrap(m.into())
}

/// Requests a serving certificate and waits until it is issued.
pub async fn request_certificate(
    client: &kube::Client,
    node_name: &str,
    cfg: &CsrBootstrap,
) -> Result<CertifiedKey, KubeletError> {
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
        let name = d
            .clone()
            .try_into()
            .map_err(|e| err(format!("bad DNS name {d:?} for the CSR: {e}")))?;
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
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some(format!("csr-{node_name}-")),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            expiration_seconds: cfg.expiration.map(|d| d.as_secs() as i32),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(&PostParams::default(), &csr)
        .await
        .map_err(|e| err(format!("cannot create the CertificateSigningRequest: {e}")))?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, "serving certificate requested; waiting for approval (kubectl certificate approve {name})");
    let deadline = tokio::time::Instant::now() + cfg.approval_timeout;
    loop {
        let cur = api
            .get(&name)
            .await
            .map_err(|e| err(format!("cannot read CSR {name}: {e}")))?;
        if let Some(st) = &cur.status {
            for c in st.conditions.iter().flatten() {
                if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                    return Err(err(format!(
                        "CSR {name} was {}: {}",
                        c.type_.to_lowercase(),
                        c.message.clone().unwrap_or_default()
                    )));
                }
            }
            if let Some(cert) = st.certificate.as_ref().filter(|c| !c.0.is_empty()) {
                return certified_key_from_pem(&cert.0, key.serialize_pem().as_bytes());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(err(format!(
                "CSR {name} was not approved and issued within {:?}; approve it with kubectl certificate approve {name}",
                cfg.approval_timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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
pub async fn rotate(
    client: kube::Client,
    node_name: String,
    cfg: CsrBootstrap,
    store: Arc<CertStore>,
    shutdown: CancellationToken,
) {
    loop {
        let delay = store
            .leaf()
            .and_then(|c| validity(&c))
            .map(|(nb, na)| {
                renew_delay(
                    nb,
                    na,
                    chrono::Utc::now().timestamp(),
                    cfg.renew_at,
                    cfg.renew_before,
                )
            })
            .unwrap_or(Duration::from_secs(60));
        tracing::debug!(?delay, "next serving certificate renewal");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let renewed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request_certificate(&client, &node_name, &cfg) => r,
        };
        match renewed {
            Ok(key) => {
                store.swap(key);
                tracing::info!("serving certificate rotated");
            }
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate renewal failed; retrying in 30s");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }
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
