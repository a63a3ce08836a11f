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

    /// When the certificate served now expires.
    pub fn not_after(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let (_, na) = validity(&self.leaf()?)?;
        chrono::DateTime::from_timestamp(na, 0)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.clone())
    }
}

/// A resolver with no certificate: checks the rest of the TLS settings before there is one.
#[derive(Debug)]
pub struct NoCertYet;

impl ResolvesServerCert for NoCertYet {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why PEM text does not make a serving certificate; [`crate::cert_files`] says which file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemProblem {
    #[error("the certificate PEM is unreadable: {0}")]
    CertUnreadable(String),
    #[error("the certificate PEM holds no CERTIFICATE block")]
    NoCertificate,
    #[error("the private key PEM is unreadable: {0}")]
    KeyUnreadable(String),
    #[error("the key PEM holds no private key block")]
    NoKey,
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
    #[error("the private key is not the key of the certificate")]
    KeyMismatch,
}

impl PemProblem {
    /// Whether the key (rather than the certificate) is at fault.
    pub fn is_key(&self) -> bool {
        matches!(
            self,
            Self::KeyUnreadable(_) | Self::NoKey | Self::UnsupportedKey(_) | Self::KeyMismatch
        )
    }
}

/// Builds a [`CertifiedKey`] from PEM text (chain + key), checking that the key is the
/// certificate's.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PemProblem> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| PemProblem::CertUnreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemProblem::NoCertificate);
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| PemProblem::KeyUnreadable(e.to_string()))?
        .ok_or(PemProblem::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| PemProblem::UnsupportedKey(e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        // The key type cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err(PemProblem::KeyMismatch),
        Err(e) => Err(PemProblem::CertUnreadable(e.to_string())),
    }
}

pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, KubeletError> {
    std::fs::read(path).map_err(|e| KubeletError::File {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The rustls server config: our resolver, HTTP/1.1 only (upgrades need it), and client
/// certificates verified against `client_ca` when given (optional: token callers have none).
pub fn server_config(
    store: Arc<dyn ResolvesServerCert>,
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

/// The `notBefore` and `notAfter` of a certificate, as Unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}
