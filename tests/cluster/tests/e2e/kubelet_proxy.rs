//! The apiserver's proxy toward kubelets, end to end, before the daemon exists: a tiny test
//! kubelet endpoint (TLS with a CSR-signed serving certificate, client certificates required)
//! receives `kubectl logs` and `kubectl exec` from kubectl 1.27 (SPDY) and 1.33 (WebSocket to the
//! apiserver, SPDY from the apiserver to the kubelet).

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::common::{register_node, run_kubectl, signed_serving_cert, unique};

const LOG_TEXT: &str = "hello from the test kubelet\n";

/// One request as the test kubelet received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    upgrade: Option<String>,
    stream_protocols: Vec<String>,
    client_cn: Option<String>,
}

struct TestKubelet {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    tls_failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Serves the kubelet API paths the apiserver proxies to, on 127.0.0.1, requiring a client
/// certificate from `client_ca_pem` as a kubelet started with --client-ca-file does.
async fn start_test_kubelet(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> anyhow::Result<TestKubelet> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
        .ok_or_else(|| anyhow::anyhow!("no key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    // Upgrades (SPDY) need HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tls_failures = Arc::new(Mutex::new(Vec::new()));
    let (seen2, failures2) = (seen.clone(), tls_failures.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let (seen, failures) = (seen2.clone(), failures2.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        failures.lock().expect("lock").push(e.to_string());
                        return;
                    }
                };
                let client_cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(common_name);
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let client_cn = client_cn.clone();
                    async move { Ok::<_, Infallible>(handle(req, client_cn, &seen)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(TestKubelet {
        port,
        seen,
        tls_failures,
        task,
    })
}

fn handle(
    req: Request<Incoming>,
    client_cn: Option<String>,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    let stream_protocols = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let path = req.uri().path().to_string();
    seen.lock().expect("lock").push(Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        upgrade: headers
            .get("upgrade")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        stream_protocols,
        client_cn,
    });
    if path.starts_with("/containerLogs/") {
        return Response::new(Full::new(Bytes::from_static(LOG_TEXT.as_bytes())));
    }
    // No SPDY server here: refuse the upgrade with a Status the apiserver relays to kubectl.
    let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                         "code": 403, "message": "test kubelet: exec request received" });
    let mut resp = Response::new(Full::new(Bytes::from(status.to_string())));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn pod_on(cluster: &Cluster, ns: &str, name: &str, node: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(cluster.admin_client().await?, ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
        "spec": { "nodeName": node,
                  "tolerations": [{ "key": crate::common::VK_TAINT_KEY, "operator": "Exists" }],
                  "containers": [{ "name": "main", "image": "nginx" }] } }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let status = json!({ "status": { "phase": "Running", "containerStatuses": [{
        "name": "main", "image": "nginx", "imageID": "", "ready": true, "restartCount": 0,
        "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } } }] } });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_proxies_logs_and_exec_to_a_kubelet_with_a_csr_signed_cert() -> anyhow::Result<()>
{
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = cluster.new_namespace().await?;
    let node = unique("proxy-node");
    let (cert, key) = signed_serving_cert(cluster, &node).await?;
    let client_ca =
        std::fs::read_to_string(cluster.kubelet_client_ca_crt().expect("local cluster"))?;
    let kubelet = start_test_kubelet(&cert, &key, &client_ca).await?;
    register_node(cluster, &node, kubelet.port).await?;
    pod_on(cluster, &ns, "app", &node).await?;

    for minor in ["1.27", "1.33"] {
        kubelet.seen.lock().expect("lock").clear();
        let c = cluster;
        let ns2 = ns.clone();
        let logs = tokio::task::spawn_blocking(move || {
            run_kubectl(c, minor, &["-n", &ns2, "logs", "app", "-c", "main"])
        })
        .await?;
        assert!(
            logs.status.success(),
            "kubectl {minor} logs: {}",
            stderr_of(&logs)
        );
        assert_eq!(String::from_utf8_lossy(&logs.stdout), LOG_TEXT);

        let ns2 = ns.clone();
        let exec = tokio::task::spawn_blocking(move || {
            run_kubectl(
                c,
                minor,
                &["-n", &ns2, "exec", "app", "-c", "main", "--", "echo", "hi"],
            )
        })
        .await?;
        // The test kubelet refuses the stream after recording it; the apiserver relays its
        // Status back to kubectl.
        assert!(!exec.status.success());
        assert!(
            stderr_of(&exec).contains("test kubelet: exec request received"),
            "kubectl {minor} exec: {}",
            stderr_of(&exec)
        );

        let seen = kubelet.seen.lock().expect("lock").clone();
        let log_req = seen
            .iter()
            .find(|s| s.uri.starts_with("/containerLogs/"))
            .expect("logs request");
        assert_eq!(log_req.method, "GET");
        assert_eq!(log_req.uri, format!("/containerLogs/{ns}/app/main"));
        let exec_req = seen
            .iter()
            .find(|s| s.uri.starts_with(&format!("/exec/{ns}/app/main?")))
            .unwrap_or_else(|| panic!("kubectl {minor}: no exec request reached the kubelet: {seen:?}; kubectl said {}", stderr_of(&exec)));
        assert!(
            exec_req.uri.contains("command=echo") && exec_req.uri.contains("command=hi"),
            "{exec_req:?}"
        );
        // Toward the kubelet the apiserver always speaks SPDY/3.1 ...
        assert_eq!(
            exec_req.upgrade.as_deref(),
            Some("SPDY/3.1"),
            "{exec_req:?}"
        );
        assert!(
            exec_req
                .stream_protocols
                .iter()
                .any(|p| p == "v4.channel.k8s.io"),
            "{exec_req:?}"
        );
        if minor == "1.33" {
            // ... and for a WebSocket client it translates, offering the v5 protocol kubectl asked for.
            assert!(
                exec_req
                    .stream_protocols
                    .iter()
                    .any(|p| p == "v5.channel.k8s.io"),
                "{exec_req:?}"
            );
        } else {
            // kubectl 1.27's SPDY request is passed through as it was sent: no v5.
            assert!(
                !exec_req
                    .stream_protocols
                    .iter()
                    .any(|p| p == "v5.channel.k8s.io"),
                "{exec_req:?}"
            );
        }
        // Every request came over TLS with the apiserver's kubelet client certificate.
        for s in &seen {
            assert_eq!(
                s.client_cn.as_deref(),
                Some(local_cluster::pki::APISERVER_KUBELET_CLIENT_CN),
                "{s:?}"
            );
        }
        eprintln!(
            "kubectl {minor} exec: {}; kubelet saw {exec_req:?}",
            stderr_of(&exec).trim()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_refuses_a_kubelet_cert_not_signed_by_the_cluster_ca() -> anyhow::Result<()> {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = cluster.new_namespace().await?;
    let node = unique("rogue-node");
    // Self-signed: right names, wrong issuer.
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), node.clone()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node}"));
    let cert = params.self_signed(&key)?;
    let client_ca =
        std::fs::read_to_string(cluster.kubelet_client_ca_crt().expect("local cluster"))?;
    let kubelet = start_test_kubelet(&cert.pem(), &key.serialize_pem(), &client_ca).await?;
    register_node(cluster, &node, kubelet.port).await?;
    pod_on(cluster, &ns, "app", &node).await?;

    let c = cluster;
    let ns2 = ns.clone();
    let logs = tokio::task::spawn_blocking(move || {
        run_kubectl(c, "1.33", &["-n", &ns2, "logs", "app", "-c", "main"])
    })
    .await?;
    assert!(
        !logs.status.success(),
        "logs through an untrusted kubelet cert must fail"
    );
    let err = stderr_of(&logs);
    assert!(err.contains("x509") || err.contains("certificate"), "{err}");
    assert!(
        kubelet.seen.lock().expect("lock").is_empty(),
        "no request may pass an untrusted handshake"
    );
    assert!(
        !kubelet.tls_failures.lock().expect("lock").is_empty(),
        "the apiserver did try to connect"
    );
    Ok(())
}
