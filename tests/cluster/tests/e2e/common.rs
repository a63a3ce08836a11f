//! Helpers shared by the end-to-end tests: kubectl binaries, test nodes, CSR issuance.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use local_cluster::Cluster;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::json;

/// The taint every virtual-kubelet node carries.
pub const VK_TAINT_KEY: &str = "virtual-kubelet.io/provider";

/// `kubectl.1.27` / `kubectl.1.33`: from `VK_KUBECTL_DIR`, else next to the `kubectl` on PATH
/// (the Google Cloud SDK ships every supported minor there).
pub fn kubectl(minor: &str) -> PathBuf {
    let name = format!("kubectl.{minor}");
    let mut dirs = vec![];
    if let Some(d) = std::env::var_os("VK_KUBECTL_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let k = d.join("kubectl");
            if let Ok(real) = std::fs::canonicalize(&k)
                && let Some(parent) = real.parent()
            {
                dirs.push(parent.to_path_buf());
            }
            dirs.push(d);
        }
    }
    dirs.iter()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found next to kubectl on PATH nor in VK_KUBECTL_DIR"))
}

/// Runs kubectl `minor` as admin; returns the output (not checked).
pub fn run_kubectl(cluster: &Cluster, minor: &str, args: &[&str]) -> Output {
    Command::new(kubectl(minor))
        .arg("--kubeconfig")
        .arg(cluster.admin_kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl")
}

/// Runs kubectl and requires success; returns stdout.
pub fn kubectl_ok(cluster: &Cluster, minor: &str, args: &[&str]) -> String {
    let out = run_kubectl(cluster, minor, args);
    assert!(
        out.status.success(),
        "kubectl {minor} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers a Node (as admin) the way the daemon will: tainted, Ready, addresses and kubelet
/// port set, so the scheduler and the apiserver's kubelet proxy can use it.
pub async fn register_node(cluster: &Cluster, name: &str, kubelet_port: u16) -> Result<Node> {
    let nodes: Api<Node> = Api::all(cluster.admin_client().await?);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": {
            "kubernetes.io/hostname": name, "type": "virtual-kubelet", "local-cluster/test": "true" } },
        "spec": { "taints": [{ "key": VK_TAINT_KEY, "value": "stackpath", "effect": "NoSchedule" }] },
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = chrono_now();
    let status = json!({ "status": {
        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady",
                         "message": "test node", "lastHeartbeatTime": now, "lastTransitionTime": now }],
        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }, { "type": "Hostname", "address": name }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": kubelet_port } },
        "capacity": { "cpu": "8", "memory": "16Gi", "pods": "110" },
        "allocatable": { "cpu": "8", "memory": "16Gi", "pods": "110" },
        "nodeInfo": { "kubeletVersion": "v1.34.0-vk", "architecture": "amd64", "operatingSystem": "linux",
                      "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                      "containerRuntimeVersion": "", "kubeProxyVersion": "" },
    }});
    Ok(nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?)
}

fn chrono_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Polls `f` until it yields Some, or fails after `timeout` saying what was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kubelet serving key and the CSR for it, as the daemon will create it.
pub struct ServingCsr {
    pub key: KeyPair,
    pub csr_pem: String,
}

pub fn serving_csr(node: &str) -> Result<ServingCsr> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        node.to_string(),
    ])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    let csr_pem = params.serialize_request(&key)?.pem()?;
    Ok(ServingCsr { key, csr_pem })
}

/// Creates a kubernetes.io/kubelet-serving CSR with `client`.
pub async fn create_serving_csr(
    client: kube::Client,
    name: &str,
    csr_pem: &str,
) -> Result<CertificateSigningRequest, kube::Error> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: "kubernetes.io/kubelet-serving".into(),
            usages: Some(vec!["digital signature".into(), "server auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    csrs.create(&PostParams::default(), &csr).await
}

/// The `approval` subresource patch that approves a CSR.
pub fn approval(reason: &str) -> serde_json::Value {
    json!({ "status": { "conditions": [{ "type": "Approved", "status": "True", "reason": reason,
                                         "message": "approved by the e2e test" }] } })
}

/// Approves a CSR as admin and waits for the signed certificate (PEM).
pub async fn approve_and_wait(cluster: &Cluster, name: &str) -> Result<String> {
    let csrs: Api<CertificateSigningRequest> = Api::all(cluster.admin_client().await?);
    csrs.patch_approval(
        name,
        &PatchParams::default(),
        &Patch::Merge(approval("LocalClusterTest")),
    )
    .await
    .context("approving the CSR as admin")?;
    eventually(
        "the controller-manager to sign the CSR",
        Duration::from_secs(30),
        || async {
            let c = csrs.get(name).await?;
            Ok(c.status
                .and_then(|s| s.certificate)
                .filter(|c| !c.0.is_empty())
                .map(|c| String::from_utf8_lossy(&c.0).into_owned()))
        },
    )
    .await
}

/// A kubelet serving certificate signed by the cluster CA through the CSR API, requested with
/// the daemon's identity: (cert PEM, key PEM).
pub async fn signed_serving_cert(cluster: &Cluster, node: &str) -> Result<(String, String)> {
    let req = serving_csr(node)?;
    let name = format!("{node}-serving");
    create_serving_csr(cluster.daemon_client().await?, &name, &req.csr_pem).await?;
    let cert = approve_and_wait(cluster, &name).await?;
    Ok((cert, req.key.serialize_pem()))
}

/// A unique suffix for cluster-scoped names (nodes, CSRs) shared between tests.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
