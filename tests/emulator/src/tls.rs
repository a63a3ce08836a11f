//! HTTPS material: a generated CA and a serving certificate for 127.0.0.1/localhost, or a
//! given certificate and key. rustls with the ring provider.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::EmulatorConfig;
use crate::error::Error;

pub(crate) struct Material {
    pub acceptor: TlsAcceptor,
    pub ca_pem: Option<String>,
    pub ca_file: Option<PathBuf>,
}

fn tls_err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::Tls(format!("{what}: {e}"))
}

/// CA PEM, chain PEM, key PEM.
fn generate() -> Result<(String, String, String), Error> {
    let ca_key = KeyPair::generate().map_err(tls_err("generating the CA key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls_err("CA parameters"))?;
    ca.distinguished_name
        .push(DnType::CommonName, "StackPath emulator CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(tls_err("signing the CA"))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(tls_err("generating the server key"))?;
    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(tls_err("server certificate parameters"))?;
    leaf.distinguished_name
        .push(DnType::CommonName, "stackpath-emulator");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(tls_err("signing the server certificate"))?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

pub(crate) fn server_material(config: &EmulatorConfig) -> Result<Material, Error> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| Error::File {
            action: "read",
            path: p.clone(),
            source,
        })
    };
    let (chain_pem, key_pem, ca_pem) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (read(c)?, read(k)?, None),
        _ => {
            let (ca, chain, key) = generate()?;
            (chain.into_bytes(), key.into_bytes(), Some(ca))
        }
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut chain_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("reading the certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(
            "the certificate file holds no certificate".into(),
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Tls(format!("reading the private key PEM: {e}")))?
        .ok_or_else(|| Error::Tls("the key file holds no private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let ca_file = match (&ca_pem, &config.ca_out, &config.state_file) {
        (Some(_), Some(p), _) => Some(p.clone()),
        (Some(_), None, Some(state)) => Some(
            state
                .parent()
                .map(|d| d.join("emulator-ca.pem"))
                .unwrap_or_else(|| PathBuf::from("emulator-ca.pem")),
        ),
        _ => None,
    };
    if let (Some(pem), Some(path)) = (&ca_pem, &ca_file) {
        std::fs::write(path, pem).map_err(|source| Error::File {
            action: "write the CA to",
            path: path.clone(),
            source,
        })?;
    }
    Ok(Material {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        ca_pem,
        ca_file,
    })
}
