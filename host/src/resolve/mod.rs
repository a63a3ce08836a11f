//! What a pod refers to outside itself, resolved as a kubelet would: `env[].valueFrom`
//! (ConfigMaps, Secrets, the pod's fields and resources), `envFrom`, the files of its config
//! volumes (configMap, secret, downwardAPI, projected, emptyDir), its `persistentVolumeClaim`
//! volumes and `imagePullSecrets`.
//! Resolution is split so that the same code serves the daemon (objects read from the API) and
//! `vk-stackpath translate --objects` (objects from a file): [`references`] lists what to
//! fetch, [`fetch_objects`] reads it from the API (the daemon and `vk-stackpath policy diff`),
//! [`resolve`] uses what was fetched.
//!
//! Secret values never appear in an error message: errors name the Secret and key only.

mod claims;
mod env;
mod fields;
mod pull;
mod resources;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret as K8sSecret,
};
use stackpath_client::model::ImagePullCredential;

use crate::policy::{ResolvedEnv, Violation};
use crate::workload::SecretEnv;

pub use claims::{ClaimVolume, present as present_claims};
pub use env::{InvalidEnvNames, SizeEnv, valid_env_name};
pub use fields::POD_IP_FIELD;
pub use resources::{SizeRef, SizeResource};
pub use volumes::{Content, DEFAULT_MODE, File, SecretBytes, VolumeFiles};

/// The ConfigMaps, Secrets and PersistentVolumeClaims of the pod's namespace that the pod
/// names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub claims: BTreeSet<String>,
}

impl References {
    /// Whether the pod names no ConfigMap or Secret: nothing of it can change while it runs
    /// (a claim's volume cannot).
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty()
    }
}

/// Objects fetched for a pod, by name (all in the pod's namespace but the volumes, which are
/// cluster-wide).
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, K8sSecret>,
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// The volumes the claims are bound to.
    pub volumes: BTreeMap<String, PersistentVolume>,
}

/// A content hash per referenced object (`configMap/<name>`, `secret/<name>`), to tell when a
/// running workload's inputs changed. Absent objects (optional references) have none. The
/// hash stays in memory; it is not a way to read Secret content back.
pub type Fingerprints = BTreeMap<String, u64>;

impl Objects {
    pub fn fingerprints(&self) -> Fingerprints {
        use std::hash::{Hash, Hasher};
        // JSON of ordered maps: the same content always hashes the same.
        let hash = |content: String| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            content.hash(&mut h);
            h.finish()
        };
        let mut out = Fingerprints::new();
        for (name, cm) in &self.config_maps {
            let content = serde_json::to_string(&(&cm.data, &cm.binary_data)).unwrap_or_default();
            out.insert(format!("configMap/{name}"), hash(content));
        }
        for (name, s) in &self.secrets {
            let content = serde_json::to_string(&(&s.data, &s.string_data)).unwrap_or_default();
            out.insert(format!("secret/{name}"), hash(content));
        }
        out
    }
}

/// What the host knows besides the pod and its objects.
#[derive(Debug, Clone)]
pub struct ResolveSettings {
    /// The node's InternalIP: `status.hostIP`, as the pod's status reports it.
    pub host_ip: String,
    /// Whether config volumes are resolved (`--config-volumes=materialize`).
    pub config_volumes: bool,
}

/// Everything resolved for one pod.
#[derive(Debug, Default)]
pub struct Resolved {
    /// For the policy: values, with Secret values withheld.
    pub env: Vec<ResolvedEnv>,
    /// For the workload: the Secret values, filled into `secretValue` after the policy ran.
    pub secret_env: SecretEnv,
    /// For the workload: figures of the StackPath size, filled in after the policy ran.
    pub size_env: Vec<SizeEnv>,
    pub pull_credentials: Vec<ImagePullCredential>,
    /// The files of the pod's config volumes, content included (the policy gets
    /// [`VolumeFiles::description`]).
    pub config_volumes: Vec<VolumeFiles>,
    /// `envFrom` keys skipped as invalid names, for the kubelet's Event.
    pub invalid_env_names: Vec<InvalidEnvNames>,
    /// The pod's `securityContext.fsGroup`: the group of its config volumes' files.
    pub fs_group: Option<i64>,
    /// Claim volumes that are StackPath volumes, for [`present_claims`].
    pub claim_volumes: Vec<ClaimVolume>,
}

fn containers(pod: &Pod) -> impl Iterator<Item = (String, &Container)> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let main = spec
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    main.chain(init)
}

/// The pod's container (or init container) named `name`.
fn container<'p>(pod: &'p Pod, name: &str) -> Option<&'p Container> {
    containers(pod).map(|(_, c)| c).find(|c| c.name == name)
}

/// The objects [`resolve`] will need.
pub fn references(pod: &Pod) -> References {
    let mut r = References::default();
    for (_, c) in containers(pod) {
        for e in c.env.as_deref().unwrap_or_default() {
            let Some(from) = &e.value_from else { continue };
            if let Some(k) = &from.config_map_key_ref {
                r.config_maps.insert(k.name.clone());
            }
            if let Some(k) = &from.secret_key_ref {
                r.secrets.insert(k.name.clone());
            }
        }
        for from in c.env_from.as_deref().unwrap_or_default() {
            if let Some(k) = &from.config_map_ref {
                r.config_maps.insert(k.name.clone());
            }
            if let Some(k) = &from.secret_ref {
                r.secrets.insert(k.name.clone());
            }
        }
    }
    let spec = pod.spec.as_ref();
    for v in spec.and_then(|s| s.volumes.as_deref()).unwrap_or_default() {
        if let Some(cm) = &v.config_map {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(pvc) = &v.persistent_volume_claim {
            r.claims.insert(pvc.claim_name.clone());
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            r.secrets.insert(name.clone());
        }
        for s in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &s.config_map {
                r.config_maps.insert(cm.name.clone());
            }
            if let Some(sec) = &s.secret {
                r.secrets.insert(sec.name.clone());
            }
        }
    }
    for s in spec
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default()
    {
        r.secrets.insert(s.name.clone());
    }
    // The ServiceAccount admission plugin's volume refers to the cluster's CA ConfigMap; its
    // volume is left out, so is the ConfigMap.
    r.config_maps.remove("kube-root-ca.crt");
    r
}

/// The ConfigMaps, Secrets and claims (with their volumes) the pod names, read one by one
/// from the pod's namespace (the daemon may get but not list Secrets). A missing object is
/// left out: [`resolve`] reports it (or skips it, when the reference is optional).
pub async fn fetch_objects(client: &kube::Client, pod: &Pod) -> Result<Objects, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut objects = fetch_config(client, pod).await?;
    let claims: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(client.clone(), ns);
    let volumes: kube::Api<PersistentVolume> = kube::Api::all(client.clone());
    for name in &references(pod).claims {
        let Some(claim) = claims.get_opt(name).await? else {
            continue;
        };
        let bound = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        if let Some(pv_name) = bound.filter(|n| !n.is_empty())
            && let Some(pv) = volumes.get_opt(&pv_name).await?
        {
            objects.volumes.insert(pv_name, pv);
        }
        objects.claims.insert(name.clone(), claim);
    }
    Ok(objects)
}

/// The ConfigMaps and Secrets the pod names: what can change while it runs.
pub async fn fetch_config(client: &kube::Client, pod: &Pod) -> Result<Objects, kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let refs = references(pod);
    let mut objects = Objects::default();
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), ns);
    for name in &refs.config_maps {
        if let Some(cm) = cms.get_opt(name).await? {
            objects.config_maps.insert(name.clone(), cm);
        }
    }
    let secrets: kube::Api<K8sSecret> = kube::Api::namespaced(client.clone(), ns);
    for name in &refs.secrets {
        if let Some(s) = secrets.get_opt(name).await? {
            objects.secrets.insert(name.clone(), s);
        }
    }
    Ok(objects)
}

/// Resolves every reference of the pod; all problems are reported together.
pub fn resolve(
    pod: &Pod,
    objects: &Objects,
    settings: &ResolveSettings,
) -> Result<Resolved, Vec<Violation>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Resolved::default();
    let mut problems = Vec::new();
    for (path, c) in containers(pod) {
        env::container_env(
            pod,
            namespace,
            c,
            &path,
            objects,
            &settings.host_ip,
            &mut out,
            &mut problems,
        );
    }
    if settings.config_volumes {
        out.fs_group = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|sc| sc.fs_group);
        out.config_volumes =
            volumes::config_volumes(pod, namespace, objects, &settings.host_ip, &mut problems);
    }
    out.claim_volumes = claims::claim_volumes(pod, namespace, objects, &mut problems);
    let pull = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default();
    for (i, s) in pull.iter().enumerate() {
        match pull::pull_credentials(namespace, &s.name, objects) {
            Ok(mut creds) => out.pull_credentials.append(&mut creds),
            Err(message) => problems.push(Violation {
                path: format!("spec.imagePullSecrets[{i}]"),
                message,
            }),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A ConfigMap key's value for env: `data`, else `binaryData`.
fn config_map_value(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.clone().into_bytes())
        .or_else(|| {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
        })
}

/// `data` (already decoded) merged with `stringData` (which wins, as the API server does).
fn secret_data(secret: &K8sSecret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pod in `default` with `spec`.
    pub fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "labels": {"tier": "web"}},
            "spec": spec
        }))
        .unwrap()
    }

    /// The objects the resolution tests refer to.
    pub fn objects() -> Objects {
        let cm = |v: serde_json::Value| -> ConfigMap { serde_json::from_value(v).unwrap() };
        let secret = |v: serde_json::Value| -> K8sSecret { serde_json::from_value(v).unwrap() };
        Objects {
            config_maps: BTreeMap::from([
                (
                    "settings".into(),
                    cm(serde_json::json!({"metadata": {"name": "settings"},
                        "data": {"mode": "production", "level": "info"}})),
                ),
                (
                    "overrides".into(),
                    cm(serde_json::json!({"metadata": {"name": "overrides"},
                        "data": {"LEVEL": "debug", "level": "debug"}})),
                ),
                (
                    "odd-keys".into(),
                    cm(serde_json::json!({"metadata": {"name": "odd-keys"},
                        "data": {"ok": "1", "1starts-with-digit.ok": "2", "has=equals": "3"}})),
                ),
            ]),
            secrets: BTreeMap::from([(
                "db".into(),
                secret(serde_json::json!({"metadata": {"name": "db"},
                    "stringData": {"password": "s3cr3t", "user": "admin"}})),
            )]),
            ..Objects::default()
        }
    }

    #[test]
    fn references_cover_env_from_and_volumes() {
        let p = pod(serde_json::json!({
            "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "a"}}, {"secretRef": {"name": "b"}}]}],
            "volumes": [
                {"name": "c", "configMap": {"name": "c"}},
                {"name": "d", "secret": {"secretName": "d"}},
                {"name": "e", "projected": {"sources": [{"configMap": {"name": "e"}}, {"secret": {"name": "f"}}]}},
                {"name": "kube-api-access-x", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}}
            ]
        }));
        let r = references(&p);
        assert_eq!(
            r.config_maps,
            BTreeSet::from(["a".into(), "c".into(), "e".into()])
        );
        assert_eq!(
            r.secrets,
            BTreeSet::from(["b".into(), "d".into(), "f".into()])
        );
    }
}
