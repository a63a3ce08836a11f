//! A faithful StackPath Edge Compute emulator: the Workload API (workloads, instances, logs,
//! restart, locations, metrics), its OAuth2 token endpoint, and the SSH container console.
//!
//! It exists so that the daemon, its end-to-end tests and the local demo can run without a
//! StackPath account. Wire shapes follow `workload-api.oas2.json`; see the crate README for
//! the deliberate differences.
//!
//! # Trust
//! With [`EmulatorConfig::run_containers`] the emulator runs every container's `command` and
//! `args` as a **local process** of the user running the emulator (in its own temporary
//! directory, with the container's env), and the SSH console runs exec commands locally too
//! (with or without `run_containers`). Anyone who can create a workload or log in to the
//! console can therefore run code on this machine. It is a development tool: bind it to
//! loopback and never expose it to untrusted clients.

mod admin;
mod api_error;
mod auth;
mod config;
mod error;
mod faults;
mod field_ref;
mod filter;
mod locations;
mod logs;
mod metrics;
mod model;
mod mounts;
mod persist;
mod processes;
mod routes;
mod serve;
mod ssh;
mod state;
mod stats;
mod tls;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{ContainerRestart, EmulatorConfig, InstanceDelays};
pub use error::Error;
pub use faults::Faults;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running emulator. Drop or [`RunningEmulator::shutdown`] stops it; shutdown also kills
/// every process it started and writes the state file one last time.
pub struct RunningEmulator {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (TLS).
    pub base_url: String,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The CA that signed the serving certificate (generated TLS only).
    pub ca_pem: Option<String>,
    /// Where the CA PEM was written, if anywhere.
    pub ca_file: Option<std::path::PathBuf>,
    /// The bound SSH console address, when one was asked for.
    pub ssh_addr: Option<SocketAddr>,
    /// The console's host key as an OpenSSH public key line (`ssh-ed25519 AAAA…`), for
    /// `known_hosts` pinning.
    pub ssh_host_key_openssh: Option<String>,
    /// `SHA256:…` fingerprint of the console's host key.
    pub ssh_fingerprint: Option<String>,
    shared: Arc<state::Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("base_url", &self.base_url)
            .field("ssh_addr", &self.ssh_addr)
            .field("ssh_fingerprint", &self.ssh_fingerprint)
            .finish_non_exhaustive()
    }
}

/// Start the emulator: the HTTP(S) API on `http_listen`, and the SSH console on `ssh_listen`
/// when given. Port 0 picks a free port; the chosen addresses are in the result.
pub async fn start(
    config: EmulatorConfig,
    http_listen: SocketAddr,
    ssh_listen: Option<SocketAddr>,
) -> Result<RunningEmulator, Error> {
    config.check()?;
    let cancel = CancellationToken::new();
    let shared = state::Shared::new(config, cancel.clone())?;
    shared.resume_loaded_instances();

    let tls = if shared.config.tls {
        Some(tls::server_material(&shared.config)?)
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(http_listen)
        .await
        .map_err(|source| Error::Bind {
            what: "HTTP API",
            addr: http_listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| Error::Bind {
        what: "HTTP API",
        addr: http_listen,
        source,
    })?;

    let mut tasks = Vec::new();
    let app = routes::router(shared.clone());
    let (acceptor, ca_pem, ca_file) = match tls {
        Some(m) => (Some(m.acceptor), m.ca_pem, m.ca_file),
        None => (None, None, None),
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://127.0.0.1:{}", http_addr.port());
    tasks.push(tokio::spawn(serve::serve(
        listener,
        acceptor,
        app,
        cancel.clone(),
    )));

    let (ssh_addr, ssh_host_key_openssh, ssh_fingerprint) = match ssh_listen {
        Some(addr) => {
            let console = ssh::start(shared.clone(), addr, cancel.clone()).await?;
            tasks.push(console.task);
            (
                Some(console.addr),
                Some(console.public_key_openssh),
                Some(console.fingerprint),
            )
        }
        None => (None, None, None),
    };

    if shared.config.state_file.is_some() {
        tasks.push(tokio::spawn(persist::writer(shared.clone())));
    }

    tracing::info!(%base_url, ?ssh_addr, "StackPath emulator started");
    Ok(RunningEmulator {
        base_url,
        http_addr,
        ca_pem,
        ca_file,
        ssh_addr,
        ssh_host_key_openssh,
        ssh_fingerprint,
        shared,
        cancel,
        tasks,
    })
}

impl RunningEmulator {
    /// Stop serving, kill every process the emulator started (process groups), and write the
    /// state file one last time.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.shared.processes.kill_all();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
        }
        if let Err(e) = persist::write_now(&self.shared) {
            tracing::warn!(error = %e, "final state write failed");
        }
    }

    /// The current fault settings (same as `GET /_emulator/faults`).
    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Call counters by route and status (same as `GET /_emulator/stats`).
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats.snapshot()
    }

    /// Replace the fault settings (same as `PUT /_emulator/faults`).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set(faults);
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        // Without an explicit shutdown (a panicking test), still leave no server or process.
        self.cancel.cancel();
        self.shared.processes.kill_all();
    }
}
