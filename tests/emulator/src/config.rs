//! Emulator configuration: identities, stacks, cities, timings, TLS and fault settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::faults::Faults;

/// How long a new or restarted instance stays in each phase before the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceDelays {
    /// SCHEDULING → STARTING.
    pub scheduling: Duration,
    /// STARTING → RUNNING (processes start here with `run_containers`).
    pub starting: Duration,
    /// DELETING → gone.
    pub deleting: Duration,
}

impl Default for InstanceDelays {
    fn default() -> Self {
        Self {
            scheduling: Duration::from_millis(200),
            starting: Duration::from_millis(200),
            deleting: Duration::from_millis(200),
        }
    }
}

/// What happens when a container's process exits (`run_containers`). StackPath's spec has no
/// restart policy; the default is what it most plausibly does (see the README): a container
/// that fails is restarted with back-off, one that completes stays completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContainerRestart {
    /// Restart after every exit (a Kubernetes `restartPolicy: Always`); the instance never
    /// becomes COMPLETED.
    Always,
    /// Restart after a non-zero exit; an exit 0 is final (COMPLETED once all containers are).
    #[default]
    OnFailure,
    /// Never restart: a non-zero exit makes the instance FAILED (the emulator's old behaviour).
    Never,
}

impl std::str::FromStr for ContainerRestart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "always" => Ok(Self::Always),
            "on-failure" | "onfailure" => Ok(Self::OnFailure),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "unknown container restart policy {s:?}; use always, on-failure or never"
            )),
        }
    }
}

/// Everything the emulator can be told. `Default` gives a small, fast setup for tests.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The one API client it knows (OAuth2 client credentials).
    pub client_id: String,
    /// That client's secret; also the console password. Never logged (see `Debug`).
    pub client_secret: String,
    /// Stacks the client may use; any other stack id answers 403 (code 7).
    pub stack_ids: Vec<String>,
    /// City codes offered as locations and accepted in `cityCode` selectors (upper case).
    pub city_codes: Vec<String>,
    /// Serve HTTPS (generated CA and certificate unless `tls_cert`/`tls_key` are given).
    pub tls: bool,
    /// PEM certificate chain to serve instead of a generated one.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Where to write the generated CA (PEM). Defaults to `emulator-ca.pem` beside the state
    /// file when there is one.
    pub ca_out: Option<PathBuf>,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Run container commands as local processes (see the crate docs on trust).
    pub run_containers: bool,
    /// What happens when a container's process exits (`run_containers` only).
    pub container_restart: ContainerRestart,
    /// Delay before the first restart of an exited container; it doubles with every restart
    /// (as kubelet's CrashLoopBackOff), up to `restart_backoff_max`.
    pub restart_backoff: Duration,
    /// The longest delay between restarts.
    pub restart_backoff_max: Duration,
    /// Phase timings.
    pub delays: InstanceDelays,
    /// Initial fault settings (changeable at run time via `/_emulator/faults`).
    pub faults: Faults,
    /// Persist workloads to this JSON file (loaded at start, written on change).
    pub state_file: Option<PathBuf>,
    /// The console's persistent host key (OpenSSH format); generated there if missing.
    /// Without it, a fresh key is generated per start.
    pub ssh_host_key: Option<PathBuf>,
    /// A `follow=true` log stream is cut by the server after this long, as StackPath's
    /// gateway does; clients must resume.
    pub log_follow_cut: Duration,
    /// Interval between generated log lines (without `run_containers`).
    pub log_line_interval: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            client_id: "emulator-client".into(),
            client_secret: "emulator-secret".into(),
            stack_ids: vec!["demo-stack".into()],
            city_codes: vec!["DFW".into()],
            tls: false,
            tls_cert: None,
            tls_key: None,
            ca_out: None,
            token_lifetime: Duration::from_secs(3600),
            run_containers: false,
            container_restart: ContainerRestart::default(),
            restart_backoff: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            delays: InstanceDelays::default(),
            faults: Faults::default(),
            state_file: None,
            ssh_host_key: None,
            log_follow_cut: Duration::from_secs(60),
            log_line_interval: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("stack_ids", &self.stack_ids)
            .field("city_codes", &self.city_codes)
            .field("tls", &self.tls)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("ca_out", &self.ca_out)
            .field("token_lifetime", &self.token_lifetime)
            .field("run_containers", &self.run_containers)
            .field("container_restart", &self.container_restart)
            .field("restart_backoff", &self.restart_backoff)
            .field("restart_backoff_max", &self.restart_backoff_max)
            .field("delays", &self.delays)
            .field("faults", &self.faults)
            .field("state_file", &self.state_file)
            .field("ssh_host_key", &self.ssh_host_key)
            .field("log_follow_cut", &self.log_follow_cut)
            .field("log_line_interval", &self.log_line_interval)
            .finish()
    }
}

impl EmulatorConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_string()));
        if self.client_id.is_empty() || self.client_id.contains('.') {
            return bad(
                "client id must be non-empty and contain no '.' (it is the last part of the console user name); pass --client-id",
            );
        }
        if self.client_secret.is_empty() {
            return bad("client secret must be non-empty; pass --client-secret");
        }
        if self.stack_ids.is_empty() {
            return bad("at least one stack id is needed; pass --stack-id");
        }
        if self.city_codes.is_empty() {
            return bad("at least one city code is needed; pass --city-code");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("--tls-cert and --tls-key go together; give both or neither");
        }
        if self.token_lifetime.is_zero() {
            return bad("token lifetime must be positive");
        }
        if self.restart_backoff > self.restart_backoff_max {
            return bad("the restart back-off must not exceed its maximum");
        }
        if self.log_line_interval.is_zero() {
            return bad("log line interval must be positive");
        }
        self.faults.check().map_err(Error::Config)
    }
}
