//! `vk-stackpath policy info|check|compile|diff`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use vk_stackpath::manifest;
use vk_stackpath::policy::{PolicyError, Sha256Digest, precompile};
use vk_stackpath::resolve::Objects;
use vk_stackpath::translation::{self, Placement, TranslateError};

use super::policy_diff::{self, DiffArgs};
use super::{PolicyArgs, SandboxArgs};

/// Pods every policy is tried on by `policy check`: the golden fixtures' simplest and fullest.
const SAMPLES: &[(&str, &str)] = &[
    (
        "minimal",
        include_str!("../../tests/golden/minimal.pod.yaml"),
    ),
    (
        "all-features",
        include_str!("../../tests/golden/all-features.pod.yaml"),
    ),
    (
        "probes-named-ports",
        include_str!("../../tests/golden/probes-named-ports.pod.yaml"),
    ),
];
const SAMPLE_OBJECTS: &str = include_str!("../../tests/golden/objects.yaml");

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Show what a policy says about itself (the built-in default without --policy).
    Info {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Load a policy, check its contract version, and run it on built-in sample pods.
    #[command(
        after_help = "Example:\n  vk-stackpath policy check target/wasm32-wasip2/release/my_policy.wasm"
    )]
    Check {
        /// The policy (`.wasm` or `.cwasm`).
        file: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Precompile a policy for this daemon, so that it loads in milliseconds.
    #[command(
        after_help = "The output is native code: the daemon loads it only with \
--precompiled-policy-sha256 set to its SHA-256, which this command prints.\n\n\
Example:\n  vk-stackpath policy compile my_policy.wasm -o my_policy.cwasm"
    )]
    Compile {
        /// The policy component (`.wasm`).
        file: PathBuf,
        /// Where to write the precompiled policy.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Before swapping policies: how the workload of each pod on a node would change.
    Diff(Box<DiffArgs>),
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode, String> {
    match cmd {
        PolicyCommand::Diff(args) => Ok(policy_diff::run(*args)),
        PolicyCommand::Info { policy } => {
            let engine = policy.load().map_err(|e| e.to_string())?;
            let info = engine.info();
            println!("source:      {}", engine.label());
            println!("name:        {}", info.name);
            println!("version:     {}", info.version);
            println!("contract:    {}", info.contract);
            println!("description: {}", info.description);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file, sandbox } => check(&PolicyArgs {
            policy: Some(file),
            sandbox,
        }),
        PolicyCommand::Compile {
            file,
            output,
            sandbox,
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let started = Instant::now();
            let compiled = precompile(&bytes, &sandbox.limits())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            std::fs::write(&output, &compiled)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            eprintln!(
                "compiled {} ({} KiB) to {} ({} KiB) in {:.2?}",
                file.display(),
                bytes.len() >> 10,
                output.display(),
                compiled.len() >> 10,
                started.elapsed()
            );
            // The opt-in that loading it needs (native code runs outside the sandbox).
            let digest = Sha256Digest::of(&compiled);
            eprintln!(
                "load it with: --policy {} --precompiled-policy-sha256={digest}",
                output.display()
            );
            println!("{digest}  {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(args: &PolicyArgs) -> Result<ExitCode, String> {
    let started = Instant::now();
    let engine = args.load().map_err(|e| e.to_string())?;
    let info = engine.info();
    println!(
        "loaded {} ({} {}, contract {}) in {:.2?}",
        engine.label(),
        info.name,
        info.version,
        info.contract,
        started.elapsed()
    );
    let objects: Objects = manifest::read_objects("built-in sample objects", SAMPLE_OBJECTS)
        .map_err(|e| e.to_string())?;
    let placement = Placement {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "check-stack".into(),
        host_ip: "127.0.0.1".into(),
        config_volumes: Default::default(),
    };
    let mut broken = 0;
    for (name, yaml) in SAMPLES {
        let pod = manifest::read_pod(name, yaml).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let result = translation::translate(&engine, &pod.pod, &pod.json, &objects, &placement);
        let took = t0.elapsed();
        match result {
            Ok(t) => println!(
                "  ok        {name:<20} {took:>10.2?}  {} warning(s)",
                t.warnings.len()
            ),
            // A policy may refuse a pod: that is a decision, not a defect.
            Err(TranslateError::Policy(PolicyError::Rejected { violations, .. })) => println!(
                "  rejected  {name:<20} {took:>10.2?}  {}",
                violations
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            Err(e) => {
                broken += 1;
                println!("  BROKEN    {name:<20} {took:>10.2?}  {e}");
            }
        }
    }
    if broken > 0 {
        Err(format!(
            "policy {} failed on {broken} sample pod(s); see above",
            engine.label()
        ))
    } else {
        println!("policy {} passed its checks", engine.label());
        Ok(ExitCode::SUCCESS)
    }
}
