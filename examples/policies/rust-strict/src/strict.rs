//! The strict rules, applied to the default policy's output. Plain Rust, no bindings: the
//! rules could be unit-tested natively.

use guest_default::api::{Context, Finding, Translation, Violations};
use guest_default::sizing::SIZES;
use serde_json::{Map, Value};

/// The pod annotation that asks StackPath for remote management (docs/mapping.md).
pub const REMOTE_MANAGEMENT: &str = "workload.platform.stackpath.net/remote-management";
/// Pods in this namespace must ask for remote management.
pub const STRICT_NAMESPACE: &str = "ops";

pub fn translate(pod: &str, ctx: &Context) -> Result<Translation, Violations> {
    let ours = namespace_rule(pod);
    let mut t = match guest_default::translate(pod, ctx) {
        // Report every reason at once: the default mapping's and ours.
        Err(mut theirs) => {
            theirs.extend(ours);
            return Err(theirs);
        }
        Ok(_) if !ours.is_empty() => return Err(ours),
        Ok(t) => t,
    };
    let mut spec: Value = serde_json::from_str(&t.spec).map_err(|e| {
        vec![Finding::new(
            "spec",
            format!(
                "the default mapping returned a spec that is not JSON ({e}); report this as a bug"
            ),
        )]
    })?;
    for kind in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(kind).and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, container) in containers.iter_mut() {
            let Some(container) = container.as_object_mut() else {
                continue;
            };
            size_up(container);
            if force_read_only(container) {
                let at = index_of(pod, kind, name).map_or_else(|| name.clone(), |i| i.to_string());
                t.warnings.push(Finding::new(
                    format!("spec.{kind}[{at}].securityContext.readOnlyRootFilesystem"),
                    "this policy runs every container with a read-only root filesystem; \
                     write to a volume instead",
                ));
            }
        }
    }
    t.spec = spec.to_string();
    Ok(t)
}

/// The position of container `name` in the pod's `spec.<kind>`, for field paths.
fn index_of(pod: &str, kind: &str, name: &str) -> Option<usize> {
    let pod: Value = serde_json::from_str(pod).ok()?;
    pod.get("spec")?
        .get(kind)?
        .as_array()?
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// The `ops` rule: a pod there must carry `REMOTE_MANAGEMENT: "true"`.
fn namespace_rule(pod: &str) -> Violations {
    let Ok(pod) = serde_json::from_str::<Value>(pod) else {
        // Malformed pods are the default mapping's to report.
        return Vec::new();
    };
    let metadata = pod.get("metadata");
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    if namespace != STRICT_NAMESPACE {
        return Vec::new();
    }
    let asked = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(REMOTE_MANAGEMENT))
        .and_then(Value::as_str)
        == Some("true");
    if asked {
        Vec::new()
    } else {
        vec![Finding::new(
            format!("metadata.annotations[{REMOTE_MANAGEMENT}]"),
            format!(
                "pods in namespace `{STRICT_NAMESPACE}` must allow remote management: add the \
                 annotation `{REMOTE_MANAGEMENT}: \"true\"`"
            ),
        )]
    }
}

/// Replaces the container's size (requests = limits = one SP size) with the next size up.
fn size_up(container: &mut Map<String, Value>) {
    let Some(resources) = container
        .get_mut("resources")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let current = resources
        .get("requests")
        .and_then(|r| Some((r.get("cpu")?.as_str()?, r.get("memory")?.as_str()?)))
        .and_then(|(cpu, memory)| {
            SIZES
                .iter()
                .position(|s| s.cpu() == cpu && s.memory() == memory)
        });
    let Some(current) = current else { return };
    let next = SIZES[(current + 1).min(SIZES.len() - 1)];
    let figures = serde_json::json!({"cpu": next.cpu(), "memory": next.memory()});
    resources.insert("requests".into(), figures.clone());
    resources.insert("limits".into(), figures);
}

/// Sets `readOnlyRootFilesystem: true`; says whether the pod had asked for something else.
fn force_read_only(container: &mut Map<String, Value>) -> bool {
    let security = container
        .entry("securityContext")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(security) = security.as_object_mut() else {
        return false;
    };
    let was = security.insert("readOnlyRootFilesystem".into(), Value::Bool(true));
    was == Some(Value::Bool(false))
}
