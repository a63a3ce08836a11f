//! clap definitions and dispatch.

mod policy;
mod policy_diff;
#[cfg(test)]
mod reference;
mod run;
mod translate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use vk_stackpath::policy::{Limits, PolicyEngine, PolicyError, Sha256Digest};

#[derive(Parser)]
#[command(
    name = "vk-stackpath",
    version,
    about = "Virtual Kubelet for StackPath Edge Compute, with a WebAssembly placement policy",
    after_help = "Examples:\n  \
      vk-stackpath translate examples/pods/web.yaml\n  \
      vk-stackpath translate pod.yaml --objects secrets.yaml --policy my-policy.wasm\n  \
      vk-stackpath policy check my-policy.wasm\n  \
      vk-stackpath policy compile my-policy.wasm -o my-policy.cwasm"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VK_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing syntax), e.g. `info` or `vk_stackpath=debug,policy=trace`
    /// [default: `info` for `run`, `warn` otherwise].
    #[arg(long, global = true, env = "VK_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon: register the virtual node and run its pods on StackPath.
    // A flag given twice takes the last value, as kube components do, so an overlay can append
    // to a Deployment's args instead of rewriting them.
    #[command(args_override_self = true)]
    Run(Box<run::RunArgs>),
    /// Translate a Pod into the StackPath workload that would be created for it.
    Translate(translate::TranslateArgs),
    /// Inspect, check and precompile policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// Policy selection and sandbox limits, shared by the commands that run a policy.
#[derive(clap::Args, Clone)]
pub struct PolicyArgs {
    /// A policy component (`.wasm`) or one precompiled by `policy compile` (`.cwasm`, which
    /// also needs --precompiled-policy-sha256); the built-in default policy when absent.
    #[arg(long, env = "VK_POLICY")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// Sandbox limits and the compiled-policy cache.
#[derive(clap::Args, Clone)]
pub struct SandboxArgs {
    /// Time one policy call may take, e.g. `500ms`, `2s`.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub policy_timeout: std::time::Duration,
    /// Memory one policy call may use, in MiB: all its instance's linear memories together.
    #[arg(long, default_value_t = 128)]
    pub policy_memory_mib: usize,
    /// Where compiled policies are cached [default: $XDG_CACHE_HOME/vk-stackpath/policies,
    /// else ~/.cache/vk-stackpath/policies].
    #[arg(long, env = "VK_POLICY_CACHE_DIR")]
    pub policy_cache_dir: Option<PathBuf>,
    /// Compile the policy every time instead of caching the compiled code.
    #[arg(long)]
    pub no_policy_cache: bool,
    /// The SHA-256 (as `sha256sum` prints it) of a precompiled policy (`.cwasm`) that may be
    /// loaded; repeatable. A `.cwasm` is native code that runs outside the sandbox, so any
    /// other is refused, also when live reload finds one. Deliberately no environment variable.
    #[arg(long = "precompiled-policy-sha256", value_name = "SHA256")]
    pub precompiled_policy_sha256: Vec<Sha256Digest>,
}

impl SandboxArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            timeout: self.policy_timeout,
            memory_bytes: self.policy_memory_mib << 20,
            max_concurrent: 2,
            cache_dir: if self.no_policy_cache {
                None
            } else {
                self.policy_cache_dir.clone().or_else(default_cache_dir)
            },
            trusted_precompiled: self.precompiled_policy_sha256.clone(),
        }
    }

    /// The policy at `path`, or the built-in default one.
    pub fn load(&self, path: Option<&std::path::Path>) -> Result<PolicyEngine, PolicyError> {
        match path {
            Some(path) => PolicyEngine::from_file(path, self.limits()),
            None => PolicyEngine::builtin(self.limits()),
        }
    }
}

impl PolicyArgs {
    pub fn limits(&self) -> Limits {
        self.sandbox.limits()
    }

    pub fn load(&self) -> Result<PolicyEngine, PolicyError> {
        self.sandbox.load(self.policy.as_deref())
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("vk-stackpath/policies"))
}

pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 500ms or 2s"))?;
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(std::time::Duration::from_secs(n)),
        "m" => Ok(std::time::Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: unknown unit `{unit}`; use ms, s or m")),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    init_tracing(cli.log_format, cli.log.as_deref().unwrap_or(default_log));
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Translate(args) => translate::run(args),
        Command::Policy(cmd) => policy::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
