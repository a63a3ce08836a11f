//! `local-cluster`: build the pinned Kubernetes binaries, or run a local control plane.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use local_cluster::{Cluster, Error, K8sVersion, StderrProgress, ensure_binaries, paths};

#[derive(Parser)]
#[command(
    name = "local-cluster",
    about = "A real Kubernetes control plane on loopback, built from Kubernetes' Go modules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler; stay up until
    /// Ctrl-C (or `local-cluster down`).
    Up {
        /// Cluster dir (PKI, kubeconfigs, etcd data, logs).
        #[arg(long, default_value_os_t = paths::workspace_root().join(".cluster"))]
        dir: PathBuf,
        /// Also run metrics-server behind the v1beta1.metrics.k8s.io APIService.
        #[arg(long)]
        with_metrics_server: bool,
        /// Kubernetes minor: 1.34 (default) or 1.37.
        #[arg(long, env = "VK_K8S_VERSION", default_value = "1.34")]
        k8s_version: K8sVersion,
        /// `--node-monitor-grace-period` of the controller-manager, in seconds.
        #[arg(long, default_value_t = 40)]
        node_monitor_grace_seconds: u64,
    },
    /// Stop the cluster started by `up` in this dir.
    Down {
        #[arg(long, default_value_os_t = paths::workspace_root().join(".cluster"))]
        dir: PathBuf,
    },
    /// Build (or confirm cached) the binaries of one or all Kubernetes versions.
    Build {
        #[arg(long, env = "VK_K8S_VERSION", default_value = "1.34")]
        k8s_version: K8sVersion,
        /// Build every supported version.
        #[arg(long)]
        all_versions: bool,
        #[arg(long)]
        with_metrics_server: bool,
    },
}

const PID_FILE: &str = "local-cluster.pid";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            dir,
            with_metrics_server,
            k8s_version,
            node_monitor_grace_seconds,
        } => up(
            &dir,
            with_metrics_server,
            k8s_version,
            node_monitor_grace_seconds,
        ),
        Command::Down { dir } => down(&dir),
        Command::Build {
            k8s_version,
            all_versions,
            with_metrics_server,
        } => build(k8s_version, all_versions, with_metrics_server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-cluster: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build(version: K8sVersion, all: bool, with_metrics_server: bool) -> Result<(), Error> {
    let versions = if all {
        K8sVersion::ALL.to_vec()
    } else {
        vec![version]
    };
    for v in versions {
        let started = Instant::now();
        let bins = ensure_binaries(v, with_metrics_server, &mut StderrProgress)?;
        eprintln!(
            "local-cluster: Kubernetes {} ready in {} ({:.0?})",
            bins.release,
            bins.kube_apiserver
                .parent()
                .unwrap_or(Path::new("."))
                .display(),
            started.elapsed()
        );
    }
    Ok(())
}

fn up(dir: &Path, with_metrics_server: bool, version: K8sVersion, grace: u64) -> Result<(), Error> {
    let pid_path = dir.join(PID_FILE);
    if let Some(pid) = read_pid(&pid_path)
        && alive(pid)
    {
        return Err(Error::Other(format!(
            "a cluster already runs from {} (pid {pid}); run `local-cluster down --dir {}` first",
            dir.display(),
            dir.display()
        )));
    }
    let cluster = Cluster::builder()
        .dir(dir)
        .version(version)
        .with_metrics_server(with_metrics_server)
        .node_monitor_grace_period(Duration::from_secs(grace))
        .verbose(true)
        .start()?;
    std::fs::write(&pid_path, std::process::id().to_string())
        .map_err(|e| Error::Other(format!("writing {}: {e}", pid_path.display())))?;

    println!(
        "Kubernetes {} is up ({:.1?} to ready):",
        cluster.release(),
        cluster.startup_time()
    );
    for (name, pid, log) in cluster.components() {
        println!("  {name:<24} pid {pid:<7} log {}", log.display());
    }
    println!("  apiserver                {}", cluster.apiserver_url());
    println!(
        "  daemon kubeconfig        {}",
        cluster.daemon_kubeconfig().display()
    );
    println!(
        "  kubelet client CA        {}",
        cluster.dir().join("kubelet-client-ca.crt").display()
    );
    println!();
    println!("export KUBECONFIG={}", cluster.admin_kubeconfig().display());
    println!();
    println!(
        "Ctrl-C or `local-cluster down --dir {}` stops it.",
        cluster.dir().display()
    );

    let outcome = wait_for_stop(&cluster);
    cluster.stop();
    let _ = std::fs::remove_file(&pid_path);
    eprintln!("local-cluster: stopped");
    outcome
}

/// Blocks until SIGINT/SIGTERM, or fails when a component exits on its own.
fn wait_for_stop(cluster: &Cluster) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("creating a tokio runtime: {e}")))?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| Error::Other(format!("listening for SIGTERM: {e}")))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tick.tick() => cluster.check_running()?,
            }
        }
    })
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only probes for the process.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn down(dir: &Path) -> Result<(), Error> {
    let pid_path = dir.join(PID_FILE);
    let Some(pid) = read_pid(&pid_path) else {
        return Err(Error::Other(format!(
            "no cluster runs from {} (no readable {PID_FILE})",
            dir.display()
        )));
    };
    if !alive(pid) {
        let _ = std::fs::remove_file(&pid_path);
        eprintln!("local-cluster: pid {pid} was already gone; removed its pid file");
        return Ok(());
    }
    // SAFETY: SIGTERM to the `up` process named in our own pid file; it stops its components.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "local-cluster (pid {pid}) did not stop within 20 s; kill it with `kill -9 {pid}`"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("local-cluster: stopped the cluster in {}", dir.display());
    Ok(())
}
