//! The serving certificate (swappable at run time, so rotation never drops open streams) and
//! the client-certificate verifier.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::error::KubeletError;

/// The current serving certificate. New handshakes see a swap at once; established
/// connections keep the session they negotiated.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    /// Replaces the certificate for new connections.
    pub fn swap(&self, key: CertifiedKey) {
        if let Ok(mut g) = self.current.write() {
            *g = Arc::new(key);
        }
    }

    /// The certificate served now (its leaf DER).
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        self.current
            .read()
            .ok()
            .and_then(|g| g.cert.first().cloned())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.clone())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a [`CertifiedKey`] from PEM text (chain + key).
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, KubeletError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| KubeletError::Tls(format!("certificate PEM is unreadable: {e}")))?;
    if certs.is_empty() {
        return Err(KubeletError::Tls(
            "the certificate PEM holds no CERTIFICATE block".into(),
        ));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| KubeletError::Tls(format!("private key PEM is unreadable: {e}")))?
        .ok_or_else(|| KubeletError::Tls("the key PEM holds no private key block".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| KubeletError::Tls(format!("unsupported private key: {e}")))?;
    Ok(CertifiedKey::new(certs, signing))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, KubeletError> {
    std::fs::read(path).map_err(|e| KubeletError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Loads a certificate and key from PEM files.
pub fn certified_key_from_files(cert: &Path, key: &Path) -> Result<CertifiedKey, KubeletError> {
    let c = read("the serving certificate (--tls-cert-file)", cert)?;
    let k = read("the serving key (--tls-private-key-file)", key)?;
    certified_key_from_pem(&c, &k).map_err(|e| match e {
        KubeletError::Tls(m) => KubeletError::Tls(format!(
            "{m} (files {} and {})",
            cert.display(),
            key.display()
        )),
        other => other,
    })
}

/// The rustls server config: our resolver, HTTP/1.1 only (upgrades need it), and client
/// certificates verified against `client_ca` when given (optional: token callers have none).
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, KubeletError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeletError::Tls(e.to_string()))?;
    let mut cfg = match client_ca {
        Some(path) => {
            let pem = read("the client CA bundle (--client-ca-file)", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &pem[..]) {
                let c = c.map_err(|e| {
                    KubeletError::Tls(format!("{} is not PEM: {e}", path.display()))
                })?;
                roots.add(c).map_err(|e| {
                    KubeletError::Tls(format!("{} holds a bad CA: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(KubeletError::Tls(format!(
                    "{} holds no certificates; pass the CA of the API server's kubelet client certificate",
                    path.display()
                )));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| KubeletError::Tls(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(store)
        }
        None => builder.with_no_client_auth().with_cert_resolver(store),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// User and groups from a verified client certificate (CN and O, as Kubernetes reads them).
pub fn identity_from_cert(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    Some((cn, groups))
}

/// The `notAfter` and `notBefore` of a certificate, as Unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}
