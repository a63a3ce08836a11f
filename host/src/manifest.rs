//! Reading Kubernetes objects from YAML or JSON, with errors that point at the line.

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use crate::resolve::Objects;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
}

fn invalid(source_name: &str, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

fn yaml_error(source_name: &str, e: &serde_yaml::Error) -> ManifestError {
    match e.location() {
        Some(l) => invalid(
            source_name,
            format!(
                "line {}, column {}: not valid YAML: {e}",
                l.line(),
                l.column()
            ),
        ),
        None => invalid(source_name, format!("not valid YAML: {e}")),
    }
}

/// A pod read from a file: typed, and as JSON for the policy.
#[derive(Debug)]
pub struct PodManifest {
    pub pod: Pod,
    pub json: String,
}

impl PodManifest {
    /// Binds the pod to `node_name` when it is not bound yet, as the scheduler would before
    /// the daemon sees it (`fieldRef: spec.nodeName` then resolves as in the cluster).
    pub fn bind(&mut self, node_name: &str) {
        let spec = self.pod.spec.get_or_insert_with(Default::default);
        if spec.node_name.is_none() {
            spec.node_name = Some(node_name.to_string());
        }
    }
}

/// Reads one Pod (YAML or JSON; JSON is YAML). A missing namespace becomes `default`, as with
/// `kubectl apply`.
pub fn read_pod(source_name: &str, text: &str) -> Result<PodManifest, ManifestError> {
    let mut value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| yaml_error(source_name, &e))?;
    let Some(object) = value.as_object_mut() else {
        return Err(invalid(source_name, "expected a Pod object (kind: Pod)"));
    };
    match object.get("kind").and_then(|k| k.as_str()) {
        Some("Pod") | None => {}
        Some(other) => {
            return Err(invalid(
                source_name,
                format!("expected kind Pod, found kind {other}; translate takes one Pod"),
            ));
        }
    }
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.entry("namespace").or_insert_with(|| "default".into());
    }
    let pod: Pod = serde_path_to_error::deserialize(&value)
        .map_err(|e| invalid(source_name, format!("field {}: {}", e.path(), e.inner())))?;
    Ok(PodManifest {
        json: value.to_string(),
        pod,
    })
}

/// Reads a YAML stream (or a `List`) of Secrets, ConfigMaps, PersistentVolumeClaims and
/// PersistentVolumes, as `translate --objects`
/// takes them. Other kinds are refused so that a typo does not go unnoticed.
pub fn read_objects(source_name: &str, text: &str) -> Result<Objects, ManifestError> {
    let mut objects = Objects::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_json::Value::deserialize(doc).map_err(|e| yaml_error(source_name, &e))?;
        let items = match value.get("kind").and_then(|k| k.as_str()) {
            Some("List")
            | Some("SecretList")
            | Some("ConfigMapList")
            | Some("PersistentVolumeClaimList")
            | Some("PersistentVolumeList") => value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default(),
            None if value.is_null() => continue,
            _ => vec![value],
        };
        for item in items {
            add_object(
                &mut objects,
                item,
                &format!("{source_name} (document {})", i + 1),
            )?;
        }
    }
    Ok(objects)
}

fn add_object(
    objects: &mut Objects,
    item: serde_json::Value,
    at: &str,
) -> Result<(), ManifestError> {
    let kind = item
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    match kind.as_str() {
        "Secret" => insert(&mut objects.secrets, item, &kind, at),
        "ConfigMap" => insert(&mut objects.config_maps, item, &kind, at),
        "PersistentVolumeClaim" => insert(&mut objects.claims, item, &kind, at),
        "PersistentVolume" => insert(&mut objects.volumes, item, &kind, at),
        other => Err(invalid(
            at,
            format!(
                "kind `{other}`: --objects takes only Secrets, ConfigMaps, \
                 PersistentVolumeClaims and PersistentVolumes"
            ),
        )),
    }
}

/// Parses one object of `kind` (naming the field that does not fit) into `into`, by name.
fn insert<K: kube::Resource + serde::de::DeserializeOwned>(
    into: &mut std::collections::BTreeMap<String, K>,
    item: serde_json::Value,
    kind: &str,
    at: &str,
) -> Result<(), ManifestError> {
    let o: K = serde_path_to_error::deserialize(item)
        .map_err(|e| invalid(at, format!("{kind} field {}: {}", e.path(), e.inner())))?;
    into.insert(o.meta().name.clone().unwrap_or_default(), o);
    Ok(())
}
