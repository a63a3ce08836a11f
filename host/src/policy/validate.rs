//! Checks on what a policy returns, before anything reaches StackPath. A policy is untrusted:
//! its spec must be a well-formed `v1WorkloadSpec` of StackPath's model, use real instance
//! sizes, leave host-owned fields alone and never turn a Secret into a plain value.

use std::collections::{BTreeMap, BTreeSet};

use stackpath_client::model::{ContainerSpec, WorkloadSpec};

use super::bindings::Translation;
use super::context::CallContext;
use super::error::{PolicyError, Violation};

/// A policy's warnings, as the host turns them into Events.
pub type Warning = Violation;

/// What a policy returned for a pod, validated: the workload spec, the workload's annotations
/// and the warnings for the user.
#[derive(Debug, Clone)]
pub struct PolicyOutput {
    pub spec: WorkloadSpec,
    pub annotations: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
}

/// StackPath's container sizes (cpu, memory) as they must appear in `resources`.
pub const INSTANCE_SIZES: [(&str, &str, &str); 8] = [
    ("SP-1", "1", "2Gi"),
    ("SP-2", "2", "4Gi"),
    ("SP-3", "2", "8Gi"),
    ("SP-4", "4", "16Gi"),
    ("SP-5", "8", "32Gi"),
    ("SP-6", "16", "64Gi"),
    ("SP-7", "32", "128Gi"),
    ("SP-8", "48", "256Gi"),
];

/// Caps on what a policy may hand back, so that one pod cannot flood Events or the API.
pub const MAX_FINDINGS: usize = 100;
const MAX_MESSAGE_LEN: usize = 1024;
const MAX_SPEC_BYTES: usize = 1 << 20;
/// The Kubernetes limit for all annotations of one object.
const MAX_ANNOTATION_BYTES: usize = 256 << 10;
pub(crate) fn translation(
    policy: &str,
    t: Translation,
    ctx: &CallContext,
) -> Result<PolicyOutput, PolicyError> {
    let mut v = Vec::new();
    let spec = parse_spec(&t.spec, &mut v);
    if let Some(spec) = &spec {
        check_spec(spec, ctx, &mut v);
    }
    let mut annotations = BTreeMap::new();
    let mut annotation_bytes = 0;
    for (k, val) in t.annotations {
        annotation_bytes += k.len() + val.len();
        if k.is_empty() {
            v.push(violation(
                "metadata.annotations",
                "an annotation has an empty key",
            ));
        }
        annotations.insert(k, val);
    }
    if annotation_bytes > MAX_ANNOTATION_BYTES {
        v.push(violation(
            "metadata.annotations",
            format!("{annotation_bytes} bytes of annotations; at most {MAX_ANNOTATION_BYTES} are allowed"),
        ));
    }
    match spec {
        Some(spec) if v.is_empty() => Ok(PolicyOutput {
            spec,
            annotations,
            warnings: t
                .warnings
                .into_iter()
                .take(MAX_FINDINGS)
                .map(|w| Violation {
                    path: clip(w.path),
                    message: clip(w.message),
                })
                .collect(),
        }),
        _ => {
            v.truncate(MAX_FINDINGS);
            Err(PolicyError::InvalidOutput {
                policy: policy.to_string(),
                violations: v,
            })
        }
    }
}

fn violation(path: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        path: path.into(),
        message: message.into(),
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn parse_spec(json: &str, v: &mut Vec<Violation>) -> Option<WorkloadSpec> {
    if json.len() > MAX_SPEC_BYTES {
        v.push(violation(
            "spec",
            format!(
                "{} bytes; a workload spec may be at most {MAX_SPEC_BYTES}",
                json.len()
            ),
        ));
        return None;
    }
    // The fast path first; serde_path_to_error (an allocation per key) only to explain a failure.
    let parsed = serde_json::from_str::<WorkloadSpec>(json).or_else(|_| {
        serde_path_to_error::deserialize::<_, WorkloadSpec>(
            &mut serde_json::Deserializer::from_str(json),
        )
    });
    let spec = match parsed {
        Ok(spec) => spec,
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => {
            v.push(violation("spec", format!("not JSON: {}", e.inner())));
            return None;
        }
        Err(e) => {
            let path = e.path().to_string();
            v.push(violation(
                if path == "." {
                    "spec".to_string()
                } else {
                    format!("spec.{path}")
                },
                format!("does not fit StackPath's v1WorkloadSpec: {}", e.inner()),
            ));
            return None;
        }
    };
    let host_owned = [
        ("networkInterfaces", !spec.network_interfaces.is_empty()),
        (
            "imagePullCredentials",
            !spec.image_pull_credentials.is_empty(),
        ),
        ("virtualMachines", !spec.virtual_machines.is_empty()),
    ];
    for (key, set) in host_owned {
        if set {
            v.push(violation(
                format!("spec.{key}"),
                "set by the host, not by a policy; leave it out",
            ));
        }
    }
    v.is_empty().then_some(spec)
}

fn check_spec(spec: &WorkloadSpec, ctx: &CallContext, v: &mut Vec<Violation>) {
    if spec.containers.is_empty() {
        v.push(violation(
            "spec.containers",
            "a workload needs at least one container",
        ));
    }
    let claims: BTreeSet<&str> = spec
        .volume_claim_templates
        .iter()
        .filter_map(|c| c.slug.as_deref())
        .collect();
    for (field, containers) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
    ] {
        for (name, c) in containers {
            check_container(&format!("spec.{field}.{name}"), name, c, &claims, ctx, v);
        }
    }
}

fn check_container(
    path: &str,
    name: &str,
    c: &ContainerSpec,
    claims: &BTreeSet<&str>,
    ctx: &CallContext,
    v: &mut Vec<Violation>,
) {
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        v.push(violation(
            format!("{path}.image"),
            "every container needs an image",
        ));
    }
    check_resources(path, c, v);
    for (var, e) in &c.env {
        // Built only for a finding: most specs have none.
        let epath = || format!("{path}.env.{var}");
        let from_secret = ctx
            .env
            .iter()
            .any(|r| r.from_secret && r.container == name && r.name == *var);
        // StackPath resolves one kind of reference itself: a field of the instance.
        let instance_field = e
            .value_from
            .as_ref()
            .and_then(|f| f.instance_field_ref.as_ref())
            .and_then(|r| r.field_path.as_deref())
            .is_some_and(|p| !p.trim().is_empty());
        if e.value_from.is_some() && (!instance_field || from_secret) {
            v.push(violation(
                format!("{}.valueFrom", epath()),
                "values from elsewhere are resolved by the host; emit value, secretValue or \
                 valueFrom.instanceFieldRef with a fieldPath",
            ));
        }
        if from_secret && e.value.is_some() {
            v.push(violation(
                format!("{}.value", epath()),
                "this variable comes from a Secret and may only be sent as secretValue",
            ));
        }
        if !from_secret && e.secret_value.is_some() {
            v.push(violation(
                format!("{}.secretValue", epath()),
                "secretValue is reserved for variables whose value comes from a Secret",
            ));
        }
    }
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let slug = m.slug.as_deref().unwrap_or("");
        if !claims.contains(slug) {
            v.push(violation(
                format!("{path}.volumeMounts[{i}].slug"),
                format!("mounts `{slug}`, which is not one of the spec's volumeClaimTemplates"),
            ));
        }
    }
}

fn check_resources(path: &str, c: &ContainerSpec, v: &mut Vec<Violation>) {
    let sizes = || {
        INSTANCE_SIZES
            .iter()
            .map(|(n, cpu, mem)| format!("{n} = {cpu} cpu / {mem}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(r) = &c.resources else {
        v.push(violation(
            format!("{path}.resources"),
            format!(
                "requests and limits must name a StackPath size ({})",
                sizes()
            ),
        ));
        return;
    };
    let figures = |m: &BTreeMap<String, String>| {
        if m.len() != 2 {
            return None;
        }
        Some((m.get("cpu")?.clone(), m.get("memory")?.clone()))
    };
    let requests = figures(&r.requests);
    let is_size = |f: &Option<(String, String)>| {
        f.as_ref()
            .is_some_and(|(cpu, mem)| INSTANCE_SIZES.iter().any(|(_, c, m)| c == cpu && m == mem))
    };
    if !is_size(&requests) || requests != figures(&r.limits) {
        v.push(violation(
            format!("{path}.resources"),
            format!(
                "requests and limits must be equal and exactly one StackPath size ({}); got \
                 requests {:?}, limits {:?}",
                sizes(),
                r.requests,
                r.limits
            ),
        ));
    }
}
