//! Shared test pieces: an emulator with real processes, a workload in it, TLS material, a
//! kubelet API bound on loopback, and raw clients for both exec transports.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::json;
use stackpath_emulator::{EmulatorConfig, RunningEmulator};
use vk_kubelet::{
    AuthMode, ConsoleConfig, ContainerLocation, HostKeyPolicy, KubeletConfig, KubeletServer,
    Limits, LocateError, PodLocator, TlsSource,
};

pub mod clients;
pub mod control_plane;

pub const STACK: &str = "demo-stack";
pub const CLIENT_ID: &str = "emulator-client";
pub const SECRET: &str = "emulator-secret";

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VK_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub async fn emulator(follow_cut: Duration) -> RunningEmulator {
    let mut c = EmulatorConfig {
        run_containers: true,
        ..EmulatorConfig::default()
    };
    c.delays.scheduling = Duration::from_millis(50);
    c.delays.starting = Duration::from_millis(50);
    c.delays.deleting = Duration::from_millis(50);
    c.log_follow_cut = follow_cut;
    stackpath_emulator::start(c, loopback(), Some(loopback()))
        .await
        .expect("emulator starts")
}

pub fn stackpath(emu: &RunningEmulator) -> stackpath_client::Client {
    let cfg = stackpath_client::Config::new(&emu.base_url, STACK, CLIENT_ID, SECRET).unwrap();
    stackpath_client::Client::new(cfg).unwrap()
}

/// Creates a one-container workload running `sh -c script`; waits until RUNNING.
pub async fn workload(
    sp: &stackpath_client::Client,
    slug: &str,
    script: &str,
) -> ContainerLocation {
    let w = json!({
        "name": slug, "slug": slug,
        "metadata": {"labels": {"vk-pod-name": slug, "vk-pod-namespace": "default", "vk-node-name": "vk-node"}},
        "spec": {
            "networkInterfaces": [{"network": "default"}],
            "containers": {"app": {
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
            }}
        },
        "targets": {"city-code": {"spec": {"deploymentScope": "cityCode", "deployments": {
            "minReplicas": 1, "maxReplicas": 1,
            "selectors": [{"key": "cityCode", "operator": "in", "values": ["DFW"]}]}}}}
    });
    let w: stackpath_client::model::Workload = serde_json::from_value(w).unwrap();
    let created = sp.create_workload(&w).await.expect("workload created");
    let id = created.id.clone().expect("workload id");
    let instance = format!("{slug}-city-code-dfw-0");
    for _ in 0..100 {
        if let Ok(i) = sp.get_instance(&id, &instance).await
            && i.phase == Some(stackpath_client::model::InstancePhase::Running)
        {
            return ContainerLocation {
                workload_id: id,
                instance_name: instance,
                container: "app".into(),
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance {instance} never ran");
}

/// (namespace, pod) → (containers, init containers, location).
type Table = HashMap<(String, String), (Vec<String>, Vec<String>, ContainerLocation)>;

/// A PodLocator over a fixed table.
#[derive(Default)]
pub struct TestLocator {
    pub table: Mutex<Table>,
    pub pods: Mutex<Vec<Pod>>,
}

impl TestLocator {
    pub fn add(
        &self,
        ns: &str,
        pod: &str,
        containers: &[&str],
        init: &[&str],
        loc: ContainerLocation,
    ) {
        self.table.lock().unwrap().insert(
            (ns.into(), pod.into()),
            (
                containers.iter().map(|s| s.to_string()).collect(),
                init.iter().map(|s| s.to_string()).collect(),
                loc,
            ),
        );
    }
}

impl PodLocator for TestLocator {
    fn locate(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerLocation, LocateError> {
        let t = self.table.lock().unwrap();
        let Some((cs, init, loc)) = t.get(&(ns.to_string(), pod.to_string())) else {
            return Err(LocateError::PodNotFound {
                namespace: ns.into(),
                pod: pod.into(),
            });
        };
        if init.iter().any(|c| c == container) {
            return Err(LocateError::InitContainer {
                namespace: ns.into(),
                pod: pod.into(),
                container: container.into(),
            });
        }
        if !cs.iter().any(|c| c == container) {
            return Err(LocateError::NoSuchContainer {
                namespace: ns.into(),
                pod: pod.into(),
                container: container.into(),
                valid: cs.clone(),
            });
        }
        Ok(ContainerLocation {
            container: container.into(),
            ..loc.clone()
        })
    }

    fn pods(&self) -> Vec<Pod> {
        self.pods.lock().unwrap().clone()
    }
}

/// A CA and a serving certificate for 127.0.0.1, written to `dir`.
pub struct TestPki {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn serving_pki(dir: &Path, ca: Option<(&str, &str)>) -> TestPki {
    let (issuer, ca_pem) = match ca {
        Some((ca_cert, ca_key)) => {
            let key = KeyPair::from_pem(ca_key).unwrap();
            (
                Issuer::from_ca_cert_pem(ca_cert, key).unwrap(),
                ca_cert.to_string(),
            )
        }
        None => {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, "test-ca");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            (Issuer::new(p, key), cert.pem())
        }
    };
    let mut p =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "system:node:vk-test");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let cert_path = dir.join("kubelet.crt");
    let key_path = dir.join("kubelet.key");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    TestPki {
        ca_pem,
        cert: cert_path,
        key: key_path,
    }
}

pub fn console(emu: &RunningEmulator, host_key: HostKeyPolicy) -> ConsoleConfig {
    let addr = emu.ssh_addr.unwrap();
    ConsoleConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        stack_id: STACK.into(),
        client_id: CLIENT_ID.into(),
        client_secret: stackpath_client::Secret::new(SECRET),
        host_key,
        connect_timeout: Duration::from_secs(5),
    }
}

/// A kube client that is never called (authentication off).
pub fn unused_kube() -> kube::Client {
    let cfg = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

pub struct Running {
    pub addr: SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
    pub store: Arc<vk_kubelet::CertStore>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn start_kubelet(
    pki: &TestPki,
    client_ca: Option<PathBuf>,
    auth: AuthMode,
    console: ConsoleConfig,
    locator: Arc<dyn PodLocator>,
    sp: stackpath_client::Client,
    kube: kube::Client,
    listen: SocketAddr,
) -> Running {
    let cfg = KubeletConfig {
        listen,
        client_ca_file: client_ca,
        auth,
        ..kubelet_config(pki, console)
    };
    start_kubelet_with(cfg, locator, sp, kube).await
}

/// The configuration of a test kubelet API: loopback, no authentication, `pki`'s files.
pub fn kubelet_config(pki: &TestPki, console: ConsoleConfig) -> KubeletConfig {
    KubeletConfig {
        listen: loopback(),
        node_name: "vk-test".into(),
        tls: TlsSource::Files(vk_kubelet::CertFiles::new(&pki.cert, &pki.key)),
        client_ca_file: None,
        auth: AuthMode::InsecureNone,
        console,
        limits: Limits::default(),
    }
}

pub async fn start_kubelet_with(
    cfg: KubeletConfig,
    locator: Arc<dyn PodLocator>,
    sp: stackpath_client::Client,
    kube: kube::Client,
) -> Running {
    let server = KubeletServer::bind(cfg, locator, sp, kube)
        .await
        .expect("kubelet binds");
    let addr = server.local_addr();
    let store = server.cert_store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("kubelet runs");
    });
    Running {
        addr,
        stop: Some(tx),
        task,
        store,
    }
}

/// A rustls client config trusting `ca_pem`.
pub fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub async fn tls_connect(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap()
}
