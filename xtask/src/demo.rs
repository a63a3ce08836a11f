//! `cargo xtask demo`: the whole thing on one machine. A real Kubernetes control plane (or the
//! cluster in `--kubeconfig`), the StackPath emulator running containers as local processes,
//! `vk-stackpath run` with the built-in policy and the RBAC from `deploy/`, then the example
//! pods through real kubectl: scheduling, status, logs, exec, a rejection's Events, deletion.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use local_cluster::Cluster;

struct Options {
    keep: bool,
    kubeconfig: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        keep: false,
        kubeconfig: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keep" => o.keep = true,
            "--kubeconfig" => {
                o.kubeconfig = Some(it.next().ok_or("--kubeconfig needs a file")?.into())
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(o)
}

pub const USAGE: &str = "usage: cargo xtask demo [--keep] [--kubeconfig FILE]

  --keep             leave the control plane, emulator and daemon running until Ctrl-C
  --kubeconfig FILE  use this cluster (e.g. kind) instead of starting one; needs admin rights";

fn say(step: &str) {
    println!("\n\x1b[1m==> {step}\x1b[0m");
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl, echoing the command line and its output.
    fn show(&self, args: &[&str]) -> Result<String, String> {
        println!("$ kubectl {}", args.join(" "));
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run kubectl: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("kubectl {} failed: {stderr}", args.join(" ")));
        }
        Ok(stdout)
    }

    fn quiet(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn apply_file(&self, path: &Path) -> Result<String, String> {
        self.show(&["apply", "-f", &path.display().to_string()])
    }

    fn phase(&self, pod: &str) -> String {
        self.quiet(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
            .unwrap_or_default()
    }
}

/// A child process killed on drop.
struct Guard(Option<Child>, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SIGTERM first: the daemon marks its node NotReady on the way out.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    println!("    stopped {}", self.1);
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    print!("    waiting for {what} ");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let mut last_dot = Instant::now();
    while started.elapsed() < timeout {
        if ok() {
            println!(" done ({:.1?})", started.elapsed());
            return Ok(());
        }
        if last_dot.elapsed() >= Duration::from_secs(1) {
            print!(".");
            let _ = std::io::stdout().flush();
            last_dot = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!();
    Err(format!("{what}: not reached within {timeout:?}"))
}

pub fn demo(args: &[String]) -> Result<(), String> {
    let options = parse(args)?;
    let started = Instant::now();

    say("building vk-stackpath (with the default policy built in) and the control plane");
    crate::step("wasm target", "rustup", &["target", "add", "wasm32-wasip2"])?;
    crate::step(
        "build",
        "cargo",
        &["build", "-p", "vk-stackpath", "--bin", "vk-stackpath"],
    )?;
    if options.kubeconfig.is_none() {
        crate::step(
            "control plane binaries (first time: ~10 min of Go builds; cached after)",
            "cargo",
            crate::CONTROL_PLANE_BUILD,
        )?;
    }

    say("starting Kubernetes");
    let demo_dir = target_dir().join("demo");
    std::fs::create_dir_all(&demo_dir).map_err(|e| format!("{}: {e}", demo_dir.display()))?;
    let cluster = match &options.kubeconfig {
        Some(k) => Cluster::external(k).map_err(|e| e.to_string())?,
        None => {
            let dir = demo_dir.join("cluster");
            let _ = std::fs::remove_dir_all(&dir);
            Cluster::builder()
                .dir(&dir)
                .with_metrics_server(true)
                .start()
                .map_err(|e| e.to_string())?
        }
    };
    println!(
        "    apiserver {} ({} started in {:.1?})",
        cluster.apiserver_url(),
        cluster.release(),
        cluster.startup_time()
    );
    let kubectl = Kubectl {
        kubeconfig: cluster.admin_kubeconfig(),
    };

    say("starting the StackPath emulator (containers run as local processes)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let emulator = runtime
        .block_on(stackpath_emulator::start(
            stackpath_emulator::EmulatorConfig {
                run_containers: true,
                ..stackpath_emulator::EmulatorConfig::default()
            },
            "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
            Some("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?),
        ))
        .map_err(|e| format!("emulator: {e}"))?;
    println!(
        "    API {}  console {:?}",
        emulator.base_url, emulator.ssh_addr
    );

    say(
        "starting vk-stackpath run (identity: ServiceAccount vk-stackpath, RBAC deploy/base/rbac.yaml and deploy/overlays/dfw/node-rbac.yaml)",
    );
    let node = "stackpath-edge-provider-dfw";
    // As `kubectl apply -k deploy/overlays/dfw` would: rights on this node only, by name.
    runtime
        .block_on(cluster.grant_node(node))
        .map_err(|e| format!("granting the daemon its node: {e}"))?;
    let kubelet_port = free_port()?;
    let metrics_port = free_port()?;
    let log_path = demo_dir.join("vk-stackpath.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(target_dir().join("debug/vk-stackpath"));
    cmd.arg("run")
        .arg("--kubeconfig")
        .arg(cluster.daemon_kubeconfig())
        .args(["--node-ip", "127.0.0.1"])
        .args(["--kubelet-port", &kubelet_port.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("SP_STACK_ID", "demo-stack")
        .env("SP_CLIENT_ID", "emulator-client")
        .env("SP_CLIENT_SECRET", "emulator-secret")
        .env("SP_CITY_CODE", "DFW")
        .env("SP_API_HOST", &emulator.base_url)
        .env("VK_POLICY_CACHE_DIR", demo_dir.join("policies"));
    // The kubelet API: the API server's client CA, the console pinned to the emulator's key.
    cmd.args([
        "--kubelet-address",
        "127.0.0.1",
        "--console-host",
        "127.0.0.1",
    ]);
    if let Some(ca) = cluster.kubelet_client_ca_crt() {
        cmd.arg("--client-ca-file").arg(ca);
    }
    if let Some(addr) = emulator.ssh_addr {
        cmd.args(["--console-port", &addr.port().to_string()]);
    }
    if let Some(key) = &emulator.ssh_host_key_openssh {
        cmd.args(["--console-host-key", key.trim()]);
    }
    let daemon = Guard(
        Some(
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start vk-stackpath: {e}"))?,
        ),
        "vk-stackpath",
    );
    println!("    log: {}", log_path.display());
    wait_until(
        "the virtual node to be Ready",
        Duration::from_secs(60),
        || {
            kubectl
                .quiet(&[
                    "get",
                    "node",
                    node,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .is_some_and(|s| s == "True")
        },
    )?;
    kubectl.show(&["get", "nodes", "-o", "wide"])?;

    say("approving the daemon's serving certificate request, as a cluster admin would");
    wait_until("the kubelet-serving CSR", Duration::from_secs(30), || {
        kubectl
            .quiet(&["get", "csr", "-o", "jsonpath={range .items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")]}{.metadata.name}{\"\\n\"}{end}"])
            .is_some_and(|s| !s.trim().is_empty())
    })?;
    let csrs = kubectl
        .quiet(&["get", "csr", "-o", "jsonpath={range .items[?(@.spec.signerName==\"kubernetes.io/kubelet-serving\")]}{.metadata.name}{\"\\n\"}{end}"])
        .unwrap_or_default();
    for csr in csrs.lines().filter(|l| !l.is_empty()) {
        kubectl.show(&["certificate", "approve", csr])?;
    }

    say("applying the example pods (the scheduler places them: they tolerate the node's taint)");
    let examples = workspace().join("examples/pods");
    kubectl.apply_file(&examples.join("secret-env.objects.yaml"))?;
    for pod in ["web.yaml", "job.yaml", "secret-env.yaml", "rejected.yaml"] {
        kubectl.apply_file(&examples.join(pod))?;
    }
    let expected = [
        ("web", "Running"),
        ("countdown", "Succeeded"),
        ("private-app", "Running"),
        ("rejected", "Failed"),
    ];
    let mut last_phases = Vec::new();
    wait_until("the pods to converge", Duration::from_secs(120), || {
        let phases: Vec<String> = expected.iter().map(|(p, _)| kubectl.phase(p)).collect();
        if phases != last_phases {
            // Shown whenever a phase changes, so the convergence is visible.
            if let Some(t) = kubectl.quiet(&["get", "pods", "-o", "wide"]) {
                println!();
                print!("{t}");
            }
            last_phases = phases.clone();
        }
        expected
            .iter()
            .zip(&phases)
            .all(|((_, want), got)| got == want)
    })?;

    say(
        "kubectl logs (through the API server to the daemon's kubelet API, then StackPath's logs API)",
    );
    let logs = kubectl.show(&["logs", "countdown"])?;
    if !logs.contains("liftoff") {
        return Err("the countdown pod's log lacks its last line".into());
    }
    kubectl.show(&["logs", "private-app"])?;

    say("kubectl exec (the daemon bridges it to the StackPath container console over SSH)");
    let out = kubectl.show(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname) on StackPath",
    ])?;
    if !out.contains("hello from") {
        return Err("exec printed nothing".into());
    }

    say("why the rejected pod failed: its status and Events");
    kubectl.show(&[
        "get",
        "pod",
        "rejected",
        "-o",
        "jsonpath={.status.reason}: {.status.message}{\"\\n\"}",
    ])?;
    kubectl.show(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=rejected",
    ])?;

    if options.keep {
        say("the environment stays up; Ctrl-C stops everything");
        println!(
            "    export KUBECONFIG={}",
            cluster.admin_kubeconfig().display()
        );
        println!("    kubectl get pods -o wide");
        println!("    daemon log: {}", log_path.display());
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }

    say("deleting the pods (each workload is deleted at StackPath first)");
    kubectl.show(&["delete", "pods", "--all", "--wait=true", "--timeout=90s"])?;
    let count = || {
        runtime.block_on(async {
            let config = stackpath_client::Config::new(
                &emulator.base_url,
                "demo-stack",
                "emulator-client",
                "emulator-secret",
            )
            .map_err(|e| e.to_string())?;
            let client = stackpath_client::Client::new(config).map_err(|e| e.to_string())?;
            client
                .list_all_workloads(None)
                .await
                .map(|w| w.len())
                .map_err(|e| e.to_string())
        })
    };
    // Terminal pods are removed by the API server at once; their workloads follow shortly.
    let _ = wait_until(
        "StackPath to have no workloads left",
        Duration::from_secs(30),
        || count().is_ok_and(|n| n == 0),
    );
    let left = count()?;
    println!("    workloads left at StackPath: {left}");
    if left != 0 {
        return Err(format!("{left} workloads were left behind"));
    }

    say("shutting down");
    drop(daemon);
    runtime.block_on(emulator.shutdown());
    cluster.stop();
    println!("\ndemo finished in {:.0?}", started.elapsed());
    Ok(())
}
