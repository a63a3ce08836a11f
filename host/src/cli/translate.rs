//! `vk-stackpath translate`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use vk_stackpath::resolve::{self, Objects};
use vk_stackpath::translation::{self, Placement, TranslateError};
use vk_stackpath::{manifest, policy_diff};

use super::PolicyArgs;
use super::run::ConfigVolumeArgs;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    vk-stackpath translate examples/pods/web.yaml --city-code DFW\n  \
    kubectl get pod web -o json | vk-stackpath translate -\n  \
    vk-stackpath translate pod.yaml --objects secrets.yaml")]
pub struct TranslateArgs {
    /// The Pod, YAML or JSON; `-` reads standard input.
    #[arg(default_value = "-")]
    file: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// StackPath city code the workload targets.
    #[arg(long, env = "SP_CITY_CODE", default_value = "DFW")]
    city_code: String,
    /// StackPath stack id or slug.
    #[arg(long, env = "SP_STACK_ID", default_value = "my-stack")]
    stack_id: String,
    /// Virtual node name; defaults to the daemon's, `stackpath-edge-provider-<city>`.
    #[arg(long)]
    node_name: Option<String>,
    /// A YAML stream of the Secrets and ConfigMaps the pod refers to (`valueFrom`,
    /// `imagePullSecrets`), as the daemon would read them from the cluster.
    #[arg(long)]
    objects: Option<PathBuf>,
    /// Print Secret values (env `secretValue`, registry passwords) instead of `***`.
    #[arg(long)]
    show_secrets: bool,
    /// The node's InternalIP, the pod's `status.hostIP`.
    #[arg(long, env = "VKUBELET_POD_IP", default_value = "127.0.0.1")]
    node_ip: String,
    #[command(flatten)]
    config_volumes: ConfigVolumeArgs,
}

pub fn run(args: TranslateArgs) -> Result<ExitCode, String> {
    let (name, text) = if args.file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the pod from standard input: {e}"))?;
        ("<stdin>".to_string(), s)
    } else {
        let text = std::fs::read_to_string(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file))?;
        (args.file.clone(), text)
    };
    let mut pod = manifest::read_pod(&name, &text).map_err(|e| e.to_string())?;
    let objects = match &args.objects {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            manifest::read_objects(&path.display().to_string(), &text).map_err(|e| e.to_string())?
        }
        None => Objects::default(),
    };
    let engine = args.policy.load().map_err(|e| e.to_string())?;
    let city = args.city_code.to_uppercase();
    let placement = Placement {
        node_name: args
            .node_name
            .unwrap_or_else(|| format!("stackpath-edge-provider-{}", city.to_lowercase())),
        city_code: city,
        stack_id: args.stack_id,
        host_ip: args.node_ip,
        config_volumes: args.config_volumes.settings()?,
    };
    pod.bind(&placement.node_name);
    let pod_label = format!(
        "pod {}/{}",
        pod.pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.pod.metadata.name.as_deref().unwrap_or("<unnamed>")
    );
    match translation::translate(&engine, &pod.pod, &pod.json, &objects, &placement) {
        Ok(t) => {
            for w in &t.warnings {
                eprintln!("warning: {pod_label}: {w}");
            }
            let mut value = serde_json::to_value(&t.workload)
                .map_err(|e| format!("cannot print the workload: {e}"))?;
            if !args.show_secrets {
                policy_diff::redact_secrets(&mut value);
            }
            let json = serde_json::to_string_pretty(&value)
                .map_err(|e| format!("cannot print the workload: {e}"))?;
            // A closed pipe (`… | head`) ends the output quietly instead of panicking.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout().lock(), "{json}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let missing_objects =
                args.objects.is_none() && !resolve::references(&pod.pod).is_empty();
            let mut msg = match &e {
                TranslateError::Pod(v) => format!(
                    "{pod_label} cannot run on StackPath:\n{}",
                    bullet(v.iter().map(ToString::to_string))
                ),
                TranslateError::Policy(p) if !p.violations().is_empty() => {
                    let head = p.to_string();
                    let head = head.split(':').next().unwrap_or_default().to_string();
                    format!(
                        "{pod_label}: {head}:\n{}",
                        bullet(p.violations().iter().map(ToString::to_string))
                    )
                }
                TranslateError::Policy(p) => format!("{pod_label}: {p}"),
            };
            if missing_objects {
                msg.push_str(
                    "\nhint: the pod refers to Secrets or ConfigMaps; pass them with --objects FILE",
                );
            }
            Err(msg)
        }
    }
}

fn bullet(lines: impl Iterator<Item = String>) -> String {
    lines
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
