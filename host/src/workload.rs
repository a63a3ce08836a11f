//! The host's part of a workload: identity (name, slug, `vk-*` labels), the target city, the
//! network interface, image pull credentials and Secret values. A policy never touches these,
//! so it cannot break adoption after a restart or see registry passwords.

use std::collections::BTreeMap;

use stackpath_client::Secret;
use stackpath_client::model::{
    DeploymentSpec, IpFamily, MatchExpression, Metadata, NetworkInterface, Target, TargetSpec,
    Workload, WorkloadSpec,
};

use k8s_openapi::api::core::v1::Pod;

use crate::materialize::{self, WRITER_NAME};
use crate::policy::{PolicyOutput, Violation};
use crate::resolve::{Resolved, SizeRef, SizeResource, VolumeFiles};
use crate::translation::Placement;

/// Labels the Go provider put on its workloads; adoption relies on them.
pub const LABEL_POD_NAME: &str = "vk-pod-name";
pub const LABEL_POD_NAMESPACE: &str = "vk-pod-namespace";
pub const LABEL_NODE_NAME: &str = "vk-node-name";
const TARGET_NAME: &str = "city-code";
const MAX_SLUG_LEN: usize = 63;

/// Who the workload is for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub namespace: String,
    pub pod_name: String,
    pub node_name: String,
    pub city_code: String,
}

/// The pod a workload says it runs, by its `vk-pod-namespace` / `vk-pod-name` labels.
pub fn labelled_pod(w: &Workload) -> Option<(&str, &str)> {
    let labels = &w.metadata.as_ref()?.labels;
    Some((
        labels.get(LABEL_POD_NAMESPACE)?.as_str(),
        labels.get(LABEL_POD_NAME)?.as_str(),
    ))
}

impl Identity {
    /// The identity of `pod`'s workload on the node of `placement`.
    pub fn of(pod: &Pod, placement: &Placement) -> Self {
        Self {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            node_name: placement.node_name.clone(),
            city_code: placement.city_code.clone(),
        }
    }

    /// Whether `w` is this pod's workload (its labels name this pod), the one check of
    /// ownership: a workload with the same slug that names another pod is not ours.
    pub fn owns(&self, w: &Workload) -> bool {
        labelled_pod(w) == Some((self.namespace.as_str(), self.pod_name.as_str()))
    }

    /// `namespace/pod` of the pod `w` belongs to, for messages.
    pub fn owner_of(w: &Workload) -> Option<String> {
        labelled_pod(w).map(|(ns, pod)| format!("{ns}/{pod}"))
    }

    /// `<namespace>-<pod name>`, lower-case, as the Go provider named workloads.
    pub fn slug(&self) -> Result<String, Violation> {
        let slug = format!("{}-{}", self.namespace, self.pod_name).to_lowercase();
        if slug.len() > MAX_SLUG_LEN {
            return Err(Violation {
                path: "metadata.name".into(),
                message: format!(
                    "the workload name `{slug}` (namespace-pod) is {} characters; StackPath \
                     allows {MAX_SLUG_LEN}. Shorten the pod name (or namespace) by {}",
                    slug.len(),
                    slug.len() - MAX_SLUG_LEN
                ),
            });
        }
        Ok(slug)
    }

    /// The single instance StackPath will run: `<slug>-city-code-<city>-0`, lower-case.
    pub fn instance_name(&self) -> Result<String, Violation> {
        Ok(format!("{}-{TARGET_NAME}-{}-0", self.slug()?, self.city_code).to_lowercase())
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_POD_NAME.into(), self.pod_name.clone()),
            (LABEL_POD_NAMESPACE.into(), self.namespace.clone()),
            (LABEL_NODE_NAME.into(), self.node_name.clone()),
        ])
    }
}

/// Secret-sourced env values, by (container, variable): filled into `secretValue`.
pub type SecretEnv = BTreeMap<(String, String), Secret>;

/// What the host adds to the policy's spec: which image writes the config volumes.
#[derive(Debug, Clone)]
pub struct HostAdditions<'a> {
    pub writer_image: &'a str,
}

/// Builds the workload to POST from the validated policy output and what the host owns:
/// Secret values, figures of the StackPath sizes the policy chose, the init container that
/// writes the config volumes the policy gave a claim, pull credentials.
pub fn assemble(
    identity: &Identity,
    translated: PolicyOutput,
    resolved: Resolved,
    additions: &HostAdditions<'_>,
) -> Result<Workload, Violation> {
    let slug = identity.slug()?;
    let mut spec = translated.spec;
    let secret_env = &resolved.secret_env;
    for (name, c) in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        for (var, e) in c.env.iter_mut() {
            if e.secret_value.is_some() {
                // Validation guaranteed this variable is Secret-sourced.
                e.secret_value = secret_env.get(&(name.clone(), var.clone())).cloned();
            }
        }
    }
    let size_of = |r: &SizeRef| size_figure(&spec, r);
    let mut sized = Vec::new();
    for s in &resolved.size_env {
        let emitted = spec
            .containers
            .get(&s.container)
            .or_else(|| spec.init_containers.get(&s.container))
            .and_then(|c| c.env.get(&s.name))
            .is_some_and(|e| e.value.is_some());
        if emitted {
            let value = size_of(&s.size).map_err(|message| Violation {
                path: format!("spec.containers.{}.env.{}", s.container, s.name),
                message: format!("env `{}` of container `{}`: {message}", s.name, s.container),
            })?;
            sized.push((s.container.clone(), s.name.clone(), value));
        }
    }
    let claimed: Vec<&VolumeFiles> = resolved
        .config_volumes
        .iter()
        .filter(|v| {
            spec.volume_claim_templates
                .iter()
                .any(|c| c.slug.as_deref() == Some(v.name.as_str()))
        })
        .collect();
    let writer = materialize::writer(&claimed, resolved.fs_group, additions.writer_image, size_of)
        .map_err(|message| Violation {
            path: "spec.volumes".into(),
            message,
        })?;
    for (container, var, value) in sized {
        let c = match spec.containers.get_mut(&container) {
            Some(c) => c,
            None => spec
                .init_containers
                .get_mut(&container)
                .expect("found above"),
        };
        if let Some(e) = c.env.get_mut(&var) {
            e.value = Some(value);
        }
    }
    if let Some(writer) = writer {
        let taken = spec.containers.contains_key(WRITER_NAME)
            || spec.init_containers.contains_key(WRITER_NAME);
        if taken {
            return Err(Violation {
                path: "spec.initContainers".into(),
                message: format!(
                    "the container name `{WRITER_NAME}` is the host's (it writes the config \
                     volumes); rename the pod's container"
                ),
            });
        }
        spec.init_containers.insert(WRITER_NAME.into(), writer);
    }
    spec.network_interfaces = vec![NetworkInterface {
        network: Some("default".into()),
        ip_families: vec![IpFamily::IPv4],
        enable_one_to_one_nat: Some(true),
        ..NetworkInterface::default()
    }];
    spec.image_pull_credentials = resolved.pull_credentials;
    Ok(Workload {
        name: Some(slug.clone()),
        slug: Some(slug),
        metadata: Some(Metadata {
            labels: identity.labels(),
            annotations: translated.annotations,
            ..Metadata::default()
        }),
        spec: Some(spec),
        targets: BTreeMap::from([(
            TARGET_NAME.to_string(),
            Target {
                spec: Some(TargetSpec {
                    deployment_scope: Some("cityCode".into()),
                    deployments: Some(DeploymentSpec {
                        min_replicas: Some(1),
                        max_replicas: Some(1),
                        selectors: vec![MatchExpression {
                            key: Some("cityCode".into()),
                            operator: Some("in".into()),
                            values: vec![identity.city_code.clone()],
                        }],
                        ..DeploymentSpec::default()
                    }),
                }),
            },
        )]),
        ..Workload::default()
    })
}

/// The figure of `r`'s container's StackPath size (its `resources.limits`), divided as the
/// reference says.
fn size_figure(spec: &WorkloadSpec, r: &SizeRef) -> Result<String, String> {
    let key = match r.resource {
        SizeResource::Cpu => "cpu",
        SizeResource::Memory => "memory",
    };
    let figure = spec
        .containers
        .get(&r.container)
        .or_else(|| spec.init_containers.get(&r.container))
        .ok_or_else(|| {
            format!(
                "it is the {key} limit of container `{}`, which the policy left out of the \
                 workload",
                r.container
            )
        })?
        .resources
        .as_ref()
        .and_then(|res| res.limits.get(key))
        .ok_or_else(|| {
            format!(
                "container `{}` has no {key} limit in the workload",
                r.container
            )
        })?;
    r.value(figure)
}
