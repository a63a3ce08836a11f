//! The deploy contract: `deploy/` rendered as an operator renders it, applied to a real control
//! plane, and the daemon run exactly as the rendered Deployment says (see `e2e::pod_template`
//! for how a pod is stood in for, unprivileged). Then, with no step the documents do not name,
//! the node goes Ready, the serving certificate comes by the overlay's path, a pod runs, and
//! `kubectl logs`, `exec` and `top pod` work through the API server; `/readyz` and `/metrics`
//! answer on the declared port.
//!
//! Two paths: the default overlay (a kubelet-serving CSR, approved by an administrator with the
//! command the Node's Event names, as docs/operations.md says) and the cert-manager example
//! (a certificate Secret written by the test as cert-manager's CA issuer would; no CSR at all).
//! The cluster is kubeadm-like: the API server's kubelet client certificate is signed by the
//! cluster CA, which the Deployment trusts through `kube-root-ca.crt`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use deploy_tests::Workspace;
use e2e::pod_template::{Image, PodWorld, prepare};
use e2e::{CLIENT_ID, CLIENT_SECRET, Daemon, Env, STACK, emulator_config, phase, pod_yaml};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Api;
use local_cluster::Cluster;
use serde_json::{Value, json};

/// The node the dfw overlay names (`deploy/overlays/dfw/city.yaml`).
const NODE: &str = "stackpath-edge-provider-dfw";
const IDENTITY: &str = "system:serviceaccount:vk-stackpath:vk-stackpath";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_deployment_runs_as_shipped() -> Result<()> {
    // A cluster of its own: the overlay's fixed node name and RBAC, metrics-server for `top`.
    let cluster: &'static Cluster = Box::leak(Box::new(
        tokio::task::spawn_blocking(|| {
            Cluster::builder()
                .with_metrics_server(true)
                .kubeadm_kubelet_client(true)
                .start()
        })
        .await??,
    ));
    let _logs = cluster.dump_logs_on_panic();
    let config = stackpath_emulator::EmulatorConfig {
        tls: true,
        ..emulator_config()
    };
    let mut env = Env::start_on("contract", cluster, config).await?;
    env.node = NODE.into();
    deploy_tests::install_certificate_crd(&cluster.admin_kubeconfig())?;

    let started = Instant::now();
    run(&env, "overlays/dfw", "csr-path").await?;
    eprintln!("default overlay (CSR path): {:.1?}", started.elapsed());
    let started = Instant::now();
    run(&env, "examples/cert-manager", "cert-files").await?;
    eprintln!(
        "cert-manager example (cert files): {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// Renders `kustomization` (with the emulator standing in for StackPath), applies it, runs the
/// Deployment's container and checks what an operator would.
async fn run(env: &Env, kustomization: &str, pod: &str) -> Result<()> {
    let cluster = env.cluster;
    let ws = Workspace::new()?;
    write_operator_files(env, &ws, kustomization)?;
    let objects = ws.render("contract")?;
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .context("the rendering has no Deployment")?
        .clone();
    let cert_files = deployment.to_string().contains("--tls-cert-file");

    // Everything but the Deployment, whose pod this test runs itself.
    let rest: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] != "Deployment")
        .cloned()
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": rest});
    deploy_tests::apply(&cluster.admin_kubeconfig(), &list.to_string(), "operator")?;
    if cert_files {
        write_certificate_secret(env).await?;
    }

    let root = e2e::scratch_dir(&format!("contract-{pod}"))?;
    let world = PodWorld {
        objects: &objects,
        admin: env.admin.clone(),
        admin_kubeconfig: cluster.admin_kubeconfig(),
        apiserver_url: cluster.apiserver_url().to_owned(),
        pod_name: format!("vk-stackpath-dfw-{pod}"),
        pod_ip: "127.0.0.1".parse()?,
        root: root.clone(),
    };
    let image = Image {
        entrypoint: e2e::binary().clone(),
        cmd: vec!["run".into()],
        env: vec![(
            "SSL_CERT_FILE".into(),
            "/etc/ssl/certs/ca-certificates.crt".into(),
        )],
    };
    let prepared = prepare(&world, &deployment, &image).await?;
    let metrics_port = *prepared
        .ports
        .get("metrics")
        .context("no port named metrics")?;
    let kubelet_port = *prepared
        .ports
        .get("kubelet")
        .context("no port named kubelet")?;
    let csrs: Api<CertificateSigningRequest> = Api::all(env.admin.clone());
    let csrs_before = our_csrs(&csrs).await?.len();

    let log = root.join("daemon.log");
    let file = std::fs::File::create(&log)?;
    let child = prepared
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting the Deployment's container with unshare")?;
    let mut daemon = Daemon::adopt(
        child,
        NODE,
        format!("127.0.0.1:{metrics_port}").parse()?,
        log,
    );
    let outcome = checks(
        env,
        &mut daemon,
        &csrs,
        csrs_before,
        cert_files,
        kubelet_port,
        pod,
    )
    .await;
    if outcome.is_err() {
        eprintln!("prepared container: {prepared:#?}");
        eprintln!("daemon log:\n{}", daemon.log_text());
    }
    outcome?;
    crate::assert_no_forbidden(&daemon.log_text());
    let status = daemon.terminate();
    ensure!(
        status.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly on SIGTERM ({status:?})"
    );
    Ok(())
}

/// What an operator writes beside the overlay (docs/operations.md): credentials.env, the
/// console's known_hosts; and a kustomization of theirs pointing the daemon at the emulator
/// (a private StackPath endpoint: its CA and console address).
fn write_operator_files(env: &Env, ws: &Workspace, kustomization: &str) -> Result<()> {
    let emu = &env.emulator;
    let ssh = emu.ssh_addr.context("the emulator has no console")?;
    let dfw = ws.deploy().join("overlays/dfw");
    std::fs::write(
        dfw.join("credentials.env"),
        format!(
            "SP_STACK_ID={STACK}\nSP_CLIENT_ID={CLIENT_ID}\nSP_CLIENT_SECRET={CLIENT_SECRET}\nSP_API_HOST={}\n",
            emu.base_url
        ),
    )?;
    std::fs::write(
        dfw.join("console-known-hosts"),
        format!(
            "[{}]:{} {}\n",
            ssh.ip(),
            ssh.port(),
            emu.ssh_host_key_openssh
                .as_deref()
                .context("no console host key")?
                .trim()
        ),
    )?;
    let contract = ws.deploy().join("contract");
    std::fs::create_dir_all(&contract)?;
    std::fs::write(
        contract.join("stackpath-ca.crt"),
        emu.ca_pem
            .as_deref()
            .context("the emulator serves no TLS")?,
    )?;
    std::fs::write(
        contract.join("kustomization.yaml"),
        format!(
            r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../{kustomization}
configMapGenerator:
  - name: stackpath-ca
    namespace: vk-stackpath
    files:
      - ca.crt=stackpath-ca.crt
patches:
  - target:
      kind: Deployment
      labelSelector: app.kubernetes.io/name=vk-stackpath
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --console-host={ip}
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: --console-port={port}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {{name: SP_CA_FILE, value: /etc/vk-stackpath/stackpath-ca/ca.crt}}
      - op: add
        path: /spec/template/spec/volumes/-
        value: {{name: stackpath-ca, configMap: {{name: stackpath-ca}}}}
      - op: add
        path: /spec/template/spec/containers/0/volumeMounts/-
        value: {{name: stackpath-ca, mountPath: /etc/vk-stackpath/stackpath-ca, readOnly: true}}
"#,
            ip = ssh.ip(),
            port = ssh.port()
        ),
    )?;
    Ok(())
}

/// The Secret cert-manager would write for the component's Certificate: signed by the
/// cluster CA (the issuer here), naming the node and the address the API server dials.
async fn write_certificate_secret(env: &Env) -> Result<()> {
    let pki = env.cluster.pki().context("no local PKI")?;
    let (crt, key) = pki.issue_serving_cert(NODE, vec![NODE.into(), "127.0.0.1".into()])?;
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "vk-stackpath-serving-cert", "namespace": "vk-stackpath"},
        "stringData": {"tls.crt": crt, "tls.key": key}
    });
    deploy_tests::apply(
        &env.cluster.admin_kubeconfig(),
        &secret.to_string(),
        "cert-manager",
    )?;
    Ok(())
}

async fn our_csrs(csrs: &Api<CertificateSigningRequest>) -> Result<Vec<CertificateSigningRequest>> {
    Ok(csrs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|c| {
            c.spec.signer_name == "kubernetes.io/kubelet-serving"
                && c.spec.username.as_deref() == Some(IDENTITY)
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
async fn checks(
    env: &Env,
    daemon: &mut Daemon,
    csrs: &Api<CertificateSigningRequest>,
    csrs_before: usize,
    cert_files: bool,
    kubelet_port: u16,
    pod: &str,
) -> Result<()> {
    if !cert_files {
        // The administrator's step, as the Node's Event tells it.
        let command = wait_for_approval_hint(env, daemon).await?;
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = env.kubectl(&args);
        ensure!(
            out.status.success(),
            "`{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while !env.node_ready(NODE).await {
        if let Some(s) = daemon.exit_status() {
            bail!("the daemon exited ({s}) before its node was Ready");
        }
        ensure!(Instant::now() < deadline, "node {NODE} not Ready in 90 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let filed = our_csrs(csrs).await?.len() - csrs_before;
    if cert_files {
        ensure!(
            filed == 0,
            "with --tls-cert-file the daemon filed {filed} CSR(s)"
        );
    } else {
        ensure!(filed >= 1, "the CSR path filed no CSR");
    }
    // The kubelet API answers on the declared port, on the node's InternalIP.
    let node: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.admin.clone());
    let n = node.get(NODE).await?;
    let declared = n
        .status
        .as_ref()
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|e| e.port);
    ensure!(
        declared == Some(i32::from(kubelet_port)),
        "the Node declares kubelet port {declared:?}, the Deployment {kubelet_port}"
    );

    let name = format!("web-{pod}");
    env.apply(&pod_yaml(&name, NODE, "nginx:1.27", ""))?;
    env.wait_pod(&name, Duration::from_secs(60), |p| phase(p) == "Running")
        .await?;

    let logs = retry_kubectl(env, &["logs", &name, "--tail=5"], |o| !o.trim().is_empty()).await?;
    eprintln!("kubectl logs {name}: {} bytes", logs.len());
    let exec = retry_kubectl(env, &["exec", &name, "--", "echo", "contract"], |o| {
        o.contains("contract")
    })
    .await?;
    eprintln!("kubectl exec: {}", exec.trim());
    // metrics-server scrapes every 15 s; a pod shows after its first two samples.
    let top = retry_kubectl_for(
        env,
        &["top", "pod", &name, "--no-headers"],
        |o| o.contains(&name),
        Duration::from_secs(120),
    )
    .await?;
    eprintln!("kubectl top pod: {}", top.trim());

    let ready = daemon.get("/readyz").await?;
    ensure!(
        ready.starts_with("HTTP/1.1 200") || ready.starts_with("HTTP/1.0 200"),
        "/readyz: {ready}"
    );
    let metrics = daemon.metrics_text().await?;
    for series in [
        "vk_stackpath_leader 1",
        "vk_stackpath_ready 1",
        "vk_stackpath_kubelet_state{state=\"serving\"} 1",
        "vk_stackpath_pods{phase=\"Running\"} 1",
    ] {
        ensure!(
            metrics.lines().any(|l| l == series),
            "/metrics has no line `{series}`:\n{}",
            metrics
                .lines()
                .filter(|l| !l.contains("_bucket"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    let out = env.kubectl(&["delete", "pod", &name, "--wait=true", "--timeout=60s"]);
    ensure!(out.status.success(), "deleting {name} failed");
    Ok(())
}

/// The `kubectl certificate approve <csr>` command the Node's ServingCertificatePending Event
/// names.
async fn wait_for_approval_hint(env: &Env, daemon: &mut Daemon) -> Result<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.admin.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = daemon.exit_status() {
            bail!("the daemon exited ({s}) while waiting for its certificate");
        }
        for e in events.list(&Default::default()).await?.items {
            let about_node = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NODE);
            let note = e.note.unwrap_or_default();
            if about_node
                && e.reason.as_deref() == Some("ServingCertificatePending")
                && let Some(at) = note.find("`kubectl certificate approve ")
            {
                let rest = &note[at + 1..];
                return Ok(rest[..rest.find('`').context("unterminated command")?].to_owned());
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no ServingCertificatePending Event on node {NODE} in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn retry_kubectl(env: &Env, args: &[&str], ok: impl Fn(&str) -> bool) -> Result<String> {
    retry_kubectl_for(env, args, ok, Duration::from_secs(30)).await
}

async fn retry_kubectl_for(
    env: &Env,
    args: &[&str],
    ok: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = env.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && ok(&stdout) {
            return Ok(stdout);
        }
        if Instant::now() > deadline {
            bail!(
                "kubectl {} did not succeed in {timeout:?}: {}{}",
                args.join(" "),
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
