//! `stackpath-emulator`: run the StackPath emulator until SIGINT/SIGTERM.
//!
//! Prints what it bound on stdout, one `key=value` per line (`base_url`, `ssh_addr`,
//! `ssh_fingerprint`, `ssh_host_key`, `ca_file`), then `ready=1`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use stackpath_emulator::{EmulatorConfig, Faults, InstanceDelays};

#[derive(Parser, Debug)]
#[command(
    name = "stackpath-emulator",
    version,
    about = "A faithful StackPath Edge Compute emulator (Workload API + container console) for tests and local development. With --run-containers it runs pod commands as local processes: a development tool, never expose it."
)]
struct Args {
    /// HTTP(S) listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// SSH container console listen address (none: no console).
    #[arg(long)]
    ssh_listen: Option<SocketAddr>,
    #[arg(long, env = "SP_CLIENT_ID", default_value = "emulator-client")]
    client_id: String,
    #[arg(
        long,
        env = "SP_CLIENT_SECRET",
        default_value = "emulator-secret",
        hide_env_values = true
    )]
    client_secret: String,
    /// A stack the client may use (repeatable).
    #[arg(long = "stack-id", default_values_t = vec!["demo-stack".to_string()])]
    stack_ids: Vec<String>,
    /// A city code offered as a location (repeatable).
    #[arg(long = "city-code", default_values_t = vec!["DFW".to_string()])]
    city_codes: Vec<String>,
    /// Persist workloads in this JSON file across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Serve HTTPS with a generated CA (or --tls-cert/--tls-key).
    #[arg(long)]
    tls: bool,
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Write the generated CA certificate (PEM) here.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Run each container's command as a local process (trust: it runs pod commands here).
    #[arg(long)]
    run_containers: bool,
    /// What happens when a container's process exits: always, on-failure (restart after a
    /// non-zero exit) or never.
    #[arg(long, default_value = "on-failure")]
    container_restart: stackpath_emulator::ContainerRestart,
    /// Delay before the first restart of an exited container, in milliseconds (doubles per
    /// restart).
    #[arg(long, default_value_t = 10_000)]
    restart_backoff_ms: u64,
    /// The longest delay between restarts, in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    restart_backoff_max_ms: u64,
    /// SCHEDULING → STARTING delay in milliseconds.
    #[arg(long, default_value_t = 200)]
    scheduling_ms: u64,
    /// STARTING → RUNNING delay in milliseconds.
    #[arg(long, default_value_t = 200)]
    starting_ms: u64,
    /// DELETING → gone delay in milliseconds.
    #[arg(long, default_value_t = 200)]
    deleting_ms: u64,
    /// A follow log stream is cut after this many seconds (StackPath: 60).
    #[arg(long, default_value_t = 60.0)]
    log_follow_cut_secs: f64,
    /// Milliseconds between generated log lines (without --run-containers).
    #[arg(long, default_value_t = 500)]
    log_line_interval_ms: u64,
    /// Fraction of API calls answered 500/503.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// The first N API calls answer 429.
    #[arg(long, default_value_t = 0)]
    rate_limit_burst: u32,
    /// Retry-After seconds sent with 429 (any u64).
    #[arg(long, default_value_t = 1)]
    retry_after_seconds: u64,
    /// Send this verbatim as the 429's Retry-After header instead (e.g. an HTTP-date, or garbage).
    #[arg(long)]
    retry_after_header: Option<String>,
    /// Milliseconds added to every API call.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of API calls carried out whose connection is then dropped unanswered.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction of API calls accepted and never answered (not carried out).
    #[arg(long, default_value_t = 0.0)]
    hang_rate: f64,
    /// Creates/PUTs/PATCHes answer 400 echoing the request body in message and details.
    #[arg(long)]
    echo_request_in_errors: bool,
    /// Pad successful JSON answers with whitespace to at least this many bytes (0: off).
    #[arg(long, default_value_t = 0)]
    oversize_body_bytes: u64,
    /// expires_in sent with issued tokens instead of --token-lifetime (any u64).
    #[arg(long)]
    token_expires_in: Option<u64>,
    /// New and restarted instances go FAILED.
    #[arg(long)]
    fail_new_instances: bool,
    /// Apply the faults to the token endpoint too.
    #[arg(long)]
    faults_on_token_endpoint: bool,
    /// The console's persistent host key (OpenSSH); generated there if missing.
    #[arg(long)]
    ssh_host_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let config = EmulatorConfig {
        client_id: a.client_id,
        client_secret: a.client_secret,
        stack_ids: a.stack_ids,
        city_codes: a.city_codes,
        tls: a.tls || a.tls_cert.is_some(),
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        ca_out: a.ca_out,
        token_lifetime: Duration::from_secs(a.token_lifetime),
        run_containers: a.run_containers,
        container_restart: a.container_restart,
        restart_backoff: Duration::from_millis(a.restart_backoff_ms),
        restart_backoff_max: Duration::from_millis(a.restart_backoff_max_ms),
        delays: InstanceDelays {
            scheduling: Duration::from_millis(a.scheduling_ms),
            starting: Duration::from_millis(a.starting_ms),
            deleting: Duration::from_millis(a.deleting_ms),
        },
        faults: Faults {
            error_rate: a.error_rate,
            rate_limit_burst: a.rate_limit_burst,
            retry_after_seconds: a.retry_after_seconds,
            retry_after_header: a.retry_after_header,
            hang_rate: a.hang_rate,
            echo_request_in_errors: a.echo_request_in_errors,
            oversize_body_bytes: a.oversize_body_bytes,
            token_expires_in: a.token_expires_in,
            latency_ms: a.latency_ms,
            drop_rate: a.drop_rate,
            fail_new_instances: a.fail_new_instances,
            include_token_endpoint: a.faults_on_token_endpoint,
        },
        state_file: a.state,
        ssh_host_key: a.ssh_host_key,
        log_follow_cut: Duration::try_from_secs_f64(a.log_follow_cut_secs)
            .context("--log-follow-cut-secs must be a positive number of seconds")?,
        log_line_interval: Duration::from_millis(a.log_line_interval_ms),
    };
    let emu = stackpath_emulator::start(config, a.listen, a.ssh_listen)
        .await
        .context("starting the StackPath emulator")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "base_url={}", emu.base_url)?;
        if let Some(s) = emu.ssh_addr {
            writeln!(out, "ssh_addr={s}")?;
        }
        if let Some(f) = &emu.ssh_fingerprint {
            writeln!(out, "ssh_fingerprint={f}")?;
        }
        if let Some(k) = &emu.ssh_host_key_openssh {
            writeln!(out, "ssh_host_key={k}")?;
        }
        if let Some(c) = &emu.ca_file {
            writeln!(out, "ca_file={}", c.display())?;
        }
        writeln!(out, "ready=1")?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emu.shutdown().await;
    Ok(())
}
