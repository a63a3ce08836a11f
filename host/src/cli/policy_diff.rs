//! `vk-stackpath policy diff`: the pods of a node under the current and a new policy.

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use vk_stackpath::config::{self, Environment, ProcessEnv, StackPathSettings};
use vk_stackpath::policy_diff::{self, Report};
use vk_stackpath::resolve::{self, Objects};
use vk_stackpath::translation::Placement;

use super::SandboxArgs;

/// Exit status when the diff itself could not be made (2 means rejections).
pub const EXIT_ERROR: u8 = 3;

/// The label the daemon puts on its Node with the city code.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(clap::Args)]
#[command(after_help = "\
Each pod bound to the node (pods that finished or are being deleted are skipped) is translated
by the current and by the new policy exactly as the daemon does it: its ConfigMaps and Secrets
are read from the cluster and the node's placement (name, city, stack) is the daemon's. Secret
values are shown as ***. Pods the new policy rejects are listed first, with their violations;
then each changed pod's workload as a unified diff; then the number of unchanged pods.

Placement, read as `run` reads it:
  node   --node, else stackpath-edge-provider-<city>
  city   --city-code, else SP_CITY_CODE, else the Node's topology.kubernetes.io/zone label,
         else city_code in the file named by SP_CONFIG_LOCATION
  stack  --stack-id, else SP_STACK_ID, else stack_id in that file

Exit status:
  0  no pod would change
  1  some pods would change (and the new policy rejects none)
  2  the new policy would reject (or fail on) at least one pod
  3  the diff could not be made (policy, cluster or settings problem; see the message)

Examples:
  vk-stackpath policy diff --policy strict.wasm --node stackpath-edge-provider-dfw
  vk-stackpath policy diff --policy v2.wasm --current-policy v1.wasm --city-code DFW --namespace shop
  kubectl -n vk-stackpath exec deploy/vk-stackpath -- vk-stackpath policy diff --policy /policies/new.wasm")]
pub struct DiffArgs {
    /// The new policy (`.wasm` or `.cwasm`).
    #[arg(long)]
    policy: PathBuf,
    /// The policy the daemon runs now [default: the built-in default policy].
    #[arg(long, env = "VK_POLICY")]
    current_policy: Option<PathBuf>,
    /// kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The virtual node whose pods are compared [default: stackpath-edge-provider-<city>].
    #[arg(long, alias = "nodename")]
    node: Option<String>,
    /// StackPath city code of the node (overrides SP_CITY_CODE).
    #[arg(long)]
    city_code: Option<String>,
    /// StackPath stack id or slug (overrides SP_STACK_ID).
    #[arg(long)]
    stack_id: Option<String>,
    /// Only pods of this namespace [default: all namespaces].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Lines of context around each change.
    #[arg(long, short = 'U', default_value_t = 3)]
    context: usize,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// `run`'s settings environment with this command's flags on top. The settings loader also
/// insists on API credentials, which a diff never uses: stand-ins fill them when absent.
struct DiffEnv<'a> {
    base: &'a dyn Environment,
    city_code: Option<String>,
    stack_id: Option<String>,
    node_city: Option<String>,
}

impl Environment for DiffEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "SP_CITY_CODE" => self
                .city_code
                .clone()
                .or_else(|| self.base.var(name))
                .or_else(|| self.node_city.clone()),
            "SP_STACK_ID" => self.stack_id.clone().or_else(|| self.base.var(name)),
            "SP_CLIENT_ID" | "SP_CLIENT_SECRET" => self
                .base
                .var(name)
                .or_else(|| Some("not-used-by-policy-diff".into())),
            _ => self.base.var(name),
        }
    }
}

impl DiffArgs {
    fn placement(
        &self,
        env: &dyn Environment,
        node_city: Option<String>,
    ) -> Result<Placement, String> {
        let env = DiffEnv {
            base: env,
            city_code: self.city_code.clone(),
            stack_id: self.stack_id.clone(),
            node_city: node_city.clone(),
        };
        let settings = StackPathSettings::load(&env).map_err(|e| {
            format!(
                "{}\n(`policy diff` reads the settings `run` reads; --city-code and --stack-id \
                 override them)",
                e.to_string().replace(
                    "the daemon cannot start; fix these settings",
                    "the node's placement is unknown; fix these settings"
                )
            )
        })?;
        // A daemon of several cities (SP_CITY_CODE=DFW,LAX): the node's own city.
        let city_code = match (&settings.city_codes[..], &node_city) {
            ([one], _) => one.clone(),
            (several, Some(zone)) if several.iter().any(|c| c.eq_ignore_ascii_case(zone)) => {
                zone.to_uppercase()
            }
            (several, _) => {
                return Err(format!(
                    "SP_CITY_CODE names several cities ({}): pick one with --city-code, or name \
                     the node with --node",
                    several.join(", ")
                ));
            }
        };
        Ok(Placement {
            // --node names the node itself, not a --nodename template.
            node_name: self
                .node
                .clone()
                .unwrap_or_else(|| config::node_name(None, &city_code)),
            city_code,
            stack_id: settings.stack_id,
            // As `run` declares it: the pods' status.hostIP.
            host_ip: env
                .var("VKUBELET_POD_IP")
                .unwrap_or_else(|| "127.0.0.1".into()),
            config_volumes: Default::default(),
        })
    }
}

pub fn run(args: DiffArgs) -> ExitCode {
    match diff(args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn diff(args: DiffArgs) -> Result<u8, String> {
    // Both policies first: a policy that does not load is the most likely mistake.
    let new = args
        .sandbox
        .load(Some(&args.policy))
        .map_err(|e| format!("the new policy (--policy): {e}"))?;
    let current = args
        .sandbox
        .load(args.current_policy.as_deref())
        .map_err(|e| format!("the current policy (--current-policy): {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (placement, pods, skipped) = runtime.block_on(fetch(&args))?;
    // Policy calls are synchronous; they run outside the async runtime.
    let diffs = pods
        .iter()
        .map(|(pod, objects)| policy_diff::compare(&current, &new, pod, objects, &placement))
        .collect();
    let describe = |engine: &vk_stackpath::policy::PolicyEngine| {
        let info = engine.info();
        format!("{} ({} {})", engine.label(), info.name, info.version)
    };
    let report = Report {
        node: placement.node_name.clone(),
        placement: format!("city {}, stack {}", placement.city_code, placement.stack_id),
        current_label: describe(&current),
        new_label: describe(&new),
        pods: diffs,
        skipped,
        context: args.context,
    };
    // A closed pipe (`… | head`) ends the output quietly instead of panicking.
    use std::io::Write as _;
    let _ = std::io::stdout()
        .lock()
        .write_all(report.render().as_bytes());
    Ok(report.exit_code())
}

/// The placement, the node's pods that the daemon would translate with what they refer to,
/// and how many bound pods were skipped.
async fn fetch(args: &DiffArgs) -> Result<(Placement, Vec<(Pod, Objects)>, usize), String> {
    let client = super::run::kube_client(args.kubeconfig.as_ref()).await?;
    // The city of an existing node, when neither flags nor environment give one.
    let node_city = match &args.node {
        Some(name) if args.city_code.is_none() && ProcessEnv.var("SP_CITY_CODE").is_none() => {
            Api::<Node>::all(client.clone())
                .get_opt(name)
                .await
                .map_err(|e| {
                    format!(
                        "reading node `{name}` for its city failed: {e}; pass --city-code or set \
                         SP_CITY_CODE"
                    )
                })?
                .and_then(|n| n.metadata.labels?.remove(ZONE_LABEL))
        }
        _ => None,
    };
    let placement = args.placement(&ProcessEnv, node_city)?;
    let api: Api<Pod> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", placement.node_name)))
        .await
        .map_err(|e| {
            format!(
                "cannot list the pods of node {}: {e}; the identity in --kubeconfig needs `list \
                 pods`{}",
                placement.node_name,
                if args.namespace.is_none() {
                    " in all namespaces (or pass --namespace)"
                } else {
                    ""
                }
            )
        })?;
    let mut pods = Vec::new();
    let mut skipped = 0;
    for pod in list.items {
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if finished || pod.metadata.deletion_timestamp.is_some() {
            skipped += 1;
            continue;
        }
        let objects = resolve::fetch_objects(&client, &pod).await.map_err(|e| {
            format!(
                "cannot read the ConfigMaps/Secrets pod {}/{} refers to: {e}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            )
        })?;
        pods.push((pod, objects));
    }
    Ok((placement, pods, skipped))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DiffArgs,
    }

    fn args(flags: &[&str]) -> DiffArgs {
        let argv = ["diff", "--policy", "new.wasm"].iter().chain(flags);
        Wrapper::try_parse_from(argv).expect("flags parse").args
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_override_the_environment_and_credentials_are_not_needed() {
        let e = env(&[("SP_CITY_CODE", "lax"), ("SP_STACK_ID", "from-env")]);
        let p = args(&["--city-code", "dfw"]).placement(&e, None).unwrap();
        assert_eq!(
            (
                p.node_name.as_str(),
                p.city_code.as_str(),
                p.stack_id.as_str()
            ),
            ("stackpath-edge-provider-dfw", "DFW", "from-env")
        );
        let p = args(&["--node", "edge-7", "--stack-id", "s"])
            .placement(&e, None)
            .unwrap();
        assert_eq!(
            (p.node_name.as_str(), p.city_code.as_str()),
            ("edge-7", "LAX")
        );
    }

    #[test]
    fn the_node_label_supplies_a_missing_city() {
        let e = env(&[("SP_STACK_ID", "s")]);
        let p = args(&["--node", "edge-7"])
            .placement(&e, Some("AMS".into()))
            .unwrap();
        assert_eq!(p.city_code, "AMS");
        let err = args(&["--node", "edge-7"]).placement(&e, None).unwrap_err();
        assert!(
            err.contains("SP_CITY_CODE") && err.contains("--city-code"),
            "{err}"
        );
        assert!(!err.contains("SP_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn a_daemon_of_several_cities_takes_the_city_of_the_node() {
        let e = env(&[("SP_CITY_CODE", "DFW,LAX"), ("SP_STACK_ID", "s")]);
        let p = args(&["--node", "stackpath-edge-provider-lax"])
            .placement(&e, Some("LAX".into()))
            .unwrap();
        assert_eq!(
            (p.node_name.as_str(), p.city_code.as_str()),
            ("stackpath-edge-provider-lax", "LAX")
        );
        let err = args(&[]).placement(&e, None).unwrap_err();
        assert!(err.contains("DFW, LAX") && err.contains("--node"), "{err}");
    }
}
