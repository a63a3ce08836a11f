//! The host's part of a workload: identity (name, slug, `vk-*` labels), the target city, the
//! network interface, image pull credentials and Secret values. A policy never touches these,
//! so it cannot break adoption after a restart or see registry passwords.

use std::collections::BTreeMap;

use stackpath_client::Secret;
use stackpath_client::model::{
    DeploymentSpec, ImagePullCredential, IpFamily, MatchExpression, Metadata, NetworkInterface,
    Target, TargetSpec, Workload,
};

use k8s_openapi::api::core::v1::Pod;

use crate::policy::{PolicyOutput, Violation};
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

/// Builds the workload to POST from the validated policy output and what the host owns.
pub fn assemble(
    identity: &Identity,
    translated: PolicyOutput,
    secret_env: &SecretEnv,
    pull_credentials: Vec<ImagePullCredential>,
) -> Result<Workload, Violation> {
    let slug = identity.slug()?;
    let mut spec = translated.spec;
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
    spec.network_interfaces = vec![NetworkInterface {
        network: Some("default".into()),
        ip_families: vec![IpFamily::IPv4],
        enable_one_to_one_nat: Some(true),
        ..NetworkInterface::default()
    }];
    spec.image_pull_credentials = pull_credentials;
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
