//! Pod → workload, end to end on the host side: read the pod, resolve its references, run the
//! policy, assemble the workload. The daemon and `vk-stackpath translate` share this path.

use k8s_openapi::api::core::v1::Pod;
use stackpath_client::model::Workload;

use crate::materialize::ConfigVolumes;
use crate::policy::{CallContext, PolicyEngine, PolicyError, Violation};
use crate::resolve::{self, InvalidEnvNames, Objects, ResolveSettings};
use crate::workload::{self, HostAdditions, Identity};

/// Where the workload will run, and how the host provides what StackPath lacks.
#[derive(Debug, Clone)]
pub struct Placement {
    pub node_name: String,
    pub city_code: String,
    pub stack_id: String,
    /// The node's InternalIP: `status.hostIP` for the pod, as its status reports it.
    pub host_ip: String,
    /// Whether and how config volumes (configMap, secret, …) are written into claims.
    pub config_volumes: ConfigVolumes,
}

/// A workload ready to create, and what the user should hear about it: the end of the pod
/// path's translation (pod → resolved → [`crate::policy`] output → assembled workload).
#[derive(Debug)]
pub struct PreparedWorkload {
    pub workload: Workload,
    pub warnings: Vec<Violation>,
    pub identity: Identity,
    /// `envFrom` keys skipped as invalid variable names: each is a Warning Event with reason
    /// [`InvalidEnvNames::REASON`] and [`InvalidEnvNames::message`], as the kubelet records it.
    pub invalid_env_names: Vec<InvalidEnvNames>,
    /// The ConfigMaps and Secrets it was made from, to see when they change.
    pub config: resolve::Fingerprints,
}

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The pod itself is wrong (name too long, a missing Secret, …).
    #[error("{}", join(.0))]
    Pod(Vec<Violation>),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl TranslateError {
    pub fn violations(&self) -> &[Violation] {
        match self {
            TranslateError::Pod(v) => v,
            TranslateError::Policy(p) => p.violations(),
        }
    }
}

fn join(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs the whole translation. `pod_json` is the pod as given to the policy (as the user
/// wrote it or as the API server stored it); `pod` is the same pod, typed.
pub fn translate(
    engine: &PolicyEngine,
    pod: &Pod,
    pod_json: &str,
    objects: &Objects,
    placement: &Placement,
) -> Result<PreparedWorkload, TranslateError> {
    let identity = Identity::of(pod, placement);
    let mut problems = Vec::new();
    if identity.pod_name.is_empty() {
        problems.push(Violation {
            path: "metadata.name".into(),
            message: "the pod has no name".into(),
        });
    }
    if let Err(v) = identity.slug() {
        problems.push(v);
    }
    let settings = ResolveSettings {
        host_ip: placement.host_ip.clone(),
        config_volumes: placement.config_volumes.enabled(),
    };
    let resolved = match resolve::resolve(pod, objects, &settings) {
        Ok(r) => Some(r),
        Err(mut v) => {
            problems.append(&mut v);
            None
        }
    };
    let Some(mut resolved) = resolved.filter(|_| problems.is_empty()) else {
        return Err(TranslateError::Pod(problems));
    };
    let ctx = call_context(placement, &mut resolved);
    let pod_json = resolve::present_claims(pod_json, &resolved.claim_volumes);
    let out = engine.translate(&pod_json, &ctx)?;
    let warnings = out.warnings.clone();
    let invalid_env_names = std::mem::take(&mut resolved.invalid_env_names);
    let writer_image = match &placement.config_volumes {
        ConfigVolumes::Materialize { image } => image.as_str(),
        ConfigVolumes::Skip => "",
    };
    let workload = workload::assemble(&identity, out, resolved, &HostAdditions { writer_image })
        .map_err(|v| TranslateError::Pod(vec![v]))?;
    Ok(PreparedWorkload {
        workload,
        warnings,
        identity,
        invalid_env_names,
        config: objects.fingerprints(),
    })
}

/// What the policy is given besides the pod: values with Secret values withheld, the config
/// volumes' names, paths and modes without content.
pub(crate) fn call_context(placement: &Placement, resolved: &mut resolve::Resolved) -> CallContext {
    CallContext {
        node_name: placement.node_name.clone(),
        city_code: placement.city_code.clone(),
        stack_id: placement.stack_id.clone(),
        env: std::mem::take(&mut resolved.env),
        config_volumes: resolved
            .config_volumes
            .iter()
            .map(|v| v.description())
            .collect(),
    }
}
