//! A kubelet-serving CSR made with the daemon's identity is allowed by the shipped RBAC and,
//! once the admin approves it, signed by the cluster CA.

use std::sync::Arc;

use local_cluster::Cluster;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::common::{approval, approve_and_wait, create_serving_csr, serving_csr, unique};

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// Verifies `cert_pem` as a TLS server certificate for 127.0.0.1 against `ca_pem`.
pub fn verify_server_cert(ca_pem: &str, cert_pem: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in ders(ca_pem) {
        roots.add(c).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    let chain = ders(cert_pem);
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from("127.0.0.1").expect("name"),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[tokio::test]
async fn daemon_serving_csr_is_allowed_and_signed_by_cluster_ca() -> anyhow::Result<()> {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let node = unique("csr-node");
    let req = serving_csr(&node)?;
    let name = format!("{node}-serving");

    let created = create_serving_csr(cluster.daemon_client().await?, &name, &req.csr_pem).await?;
    // The apiserver records who asked: the daemon's ServiceAccount.
    assert_eq!(
        created.spec.username.as_deref(),
        Some("system:serviceaccount:vk-stackpath:vk-stackpath")
    );

    // The daemon may not approve its own CSR (no approve verb on any signer).
    let daemon_csrs: kube::Api<k8s_openapi::api::certificates::v1::CertificateSigningRequest> =
        kube::Api::all(cluster.daemon_client().await?);
    let err = daemon_csrs
        .patch_approval(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(approval("SelfApproved")),
        )
        .await
        .expect_err("the daemon must not approve CSRs");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );

    let cert = approve_and_wait(cluster, &name).await?;
    let ca = std::fs::read_to_string(cluster.ca_crt())?;
    verify_server_cert(&ca, &cert)
        .expect("the signed certificate chains to the cluster CA and covers 127.0.0.1");
    // And not to an unrelated CA (the kubelet-client CA): the check above can fail.
    let other = std::fs::read_to_string(cluster.kubelet_client_ca_crt().expect("local cluster"))?;
    assert!(verify_server_cert(&other, &cert).is_err());
    Ok(())
}
