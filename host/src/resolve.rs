//! What a pod refers to outside itself: `env[].valueFrom` (ConfigMaps, Secrets, the pod's own
//! fields) and `imagePullSecrets`. Resolution is split so that the same code serves the daemon
//! (objects read from the API) and `vk-stackpath translate --objects` (objects from a file):
//! [`references`] lists what to fetch, [`fetch_objects`] reads it from the API (the daemon and
//! `vk-stackpath policy diff`), [`resolve`] uses what was fetched.
//!
//! Secret values never appear in an error message: errors name the Secret and key only.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret as K8sSecret};
use stackpath_client::Secret;
use stackpath_client::model::{DockerRegistryCredentials, ImagePullCredential};

use crate::policy::{ResolvedEnv, Violation};
use crate::workload::SecretEnv;

/// The ConfigMaps and Secrets of the pod's namespace that the pod names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

impl References {
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty() && self.secrets.is_empty()
    }
}

/// Objects fetched for a pod, by name (all in the pod's namespace).
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, K8sSecret>,
}

/// Everything resolved for one pod.
#[derive(Debug, Default)]
pub struct Resolved {
    /// For the policy: values, with Secret values withheld.
    pub env: Vec<ResolvedEnv>,
    /// For the workload: the Secret values, filled into `secretValue` after the policy ran.
    pub secret_env: SecretEnv,
    pub pull_credentials: Vec<ImagePullCredential>,
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
    }
    for s in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default()
    {
        r.secrets.insert(s.name.clone());
    }
    r
}

/// The ConfigMaps and Secrets the pod names, read one by one from the pod's namespace (the
/// daemon may get but not list Secrets). A missing object is left out: [`resolve`] reports it
/// (or skips it, when the reference is optional).
pub async fn fetch_objects(client: &kube::Client, pod: &Pod) -> Result<Objects, kube::Error> {
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
pub fn resolve(pod: &Pod, objects: &Objects) -> Result<Resolved, Vec<Violation>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = Resolved::default();
    let mut problems = Vec::new();
    for (path, c) in containers(pod) {
        for (i, e) in c.env.as_deref().unwrap_or_default().iter().enumerate() {
            let epath = format!("{path}.env[{i}].valueFrom");
            match resolve_env(pod, namespace, e, objects) {
                Ok(None) => {}
                Ok(Some(EnvValue::Plain(value))) => out.env.push(ResolvedEnv {
                    container: c.name.clone(),
                    name: e.name.clone(),
                    value: Some(value),
                    from_secret: false,
                }),
                Ok(Some(EnvValue::Secret(value))) => {
                    out.env.push(ResolvedEnv {
                        container: c.name.clone(),
                        name: e.name.clone(),
                        value: None,
                        from_secret: true,
                    });
                    out.secret_env
                        .insert((c.name.clone(), e.name.clone()), value);
                }
                Err(message) => problems.push(Violation {
                    path: epath,
                    message: format!("env `{}` of container `{}`: {message}", e.name, c.name),
                }),
            }
        }
    }
    let pull = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default();
    for (i, s) in pull.iter().enumerate() {
        match pull_credentials(namespace, &s.name, objects) {
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

enum EnvValue {
    Plain(String),
    Secret(Secret),
}

/// `Ok(None)`: no `valueFrom`, or an optional source that is missing (kubelet leaves the
/// variable unset then).
fn resolve_env(
    pod: &Pod,
    namespace: &str,
    e: &EnvVar,
    objects: &Objects,
) -> Result<Option<EnvValue>, String> {
    let Some(from) = &e.value_from else {
        return Ok(None);
    };
    if let Some(k) = &from.config_map_key_ref {
        let optional = k.optional.unwrap_or(false);
        let Some(cm) = objects.config_maps.get(&k.name) else {
            return missing(
                optional,
                format!(
                    "ConfigMap `{}` not found in namespace `{namespace}`",
                    k.name
                ),
            );
        };
        let value = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&k.key).cloned())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&k.key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        return match value {
            Some(v) => Ok(Some(EnvValue::Plain(v))),
            None => missing(
                optional,
                format!("ConfigMap `{}` has no key `{}`", k.name, k.key),
            ),
        };
    }
    if let Some(k) = &from.secret_key_ref {
        let optional = k.optional.unwrap_or(false);
        let Some(secret) = objects.secrets.get(&k.name) else {
            return missing(
                optional,
                format!("Secret `{}` not found in namespace `{namespace}`", k.name),
            );
        };
        return match secret_data(secret).remove(&k.key) {
            Some(v) => Ok(Some(EnvValue::Secret(Secret::new(
                String::from_utf8(v).map_err(|_| {
                    format!("key `{}` of Secret `{}` is not UTF-8 text", k.key, k.name)
                })?,
            )))),
            None => missing(
                optional,
                format!("Secret `{}` has no key `{}`", k.name, k.key),
            ),
        };
    }
    if let Some(f) = &from.field_ref {
        return field(pod, &f.field_path).map(|v| Some(EnvValue::Plain(v)));
    }
    if from.resource_field_ref.is_some() {
        return Err(
            "resourceFieldRef is not supported by the StackPath provider; set the \
                    value explicitly"
                .into(),
        );
    }
    Err("valueFrom names no source; set configMapKeyRef, secretKeyRef or fieldRef".into())
}

fn missing(optional: bool, message: String) -> Result<Option<EnvValue>, String> {
    if optional {
        Ok(None)
    } else {
        Err(format!(
            "{message}; create it, or mark the reference optional"
        ))
    }
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

/// The downward-API fields that are known before the workload exists.
fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
        _ => keyed("metadata.labels['", m.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", m.annotations.as_ref()))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "fieldRef `{path}` is not supported by the StackPath provider (supported: \
                     metadata.name, metadata.namespace, metadata.uid, metadata.labels['…'], \
                     metadata.annotations['…'], spec.nodeName, spec.serviceAccountName)"
                )
            })?,
    };
    Ok(value.unwrap_or_default())
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize, Default)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    email: Option<String>,
}

/// One credential per registry in a `kubernetes.io/dockerconfigjson` (or legacy
/// `kubernetes.io/dockercfg`) Secret. Messages never quote the Secret's content.
fn pull_credentials(
    namespace: &str,
    name: &str,
    objects: &Objects,
) -> Result<Vec<ImagePullCredential>, String> {
    let Some(secret) = objects.secrets.get(name) else {
        return Err(format!(
            "image pull Secret `{name}` not found in namespace `{namespace}`; create it or \
             remove it from imagePullSecrets"
        ));
    };
    let data = secret_data(secret);
    let kind = secret.type_.as_deref().unwrap_or("");
    let auths = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfig>(json)
            .map(|c| c.auths)
            .map_err(|e| {
                format!(
                    "image pull Secret `{name}`: `.dockerconfigjson` is not valid docker config \
                     JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?
    } else if let Some(json) = data.get(".dockercfg") {
        serde_json::from_slice::<BTreeMap<String, DockerAuth>>(json).map_err(|e| {
            format!(
                "image pull Secret `{name}`: `.dockercfg` is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        })?
    } else {
        return Err(format!(
            "image pull Secret `{name}` (type `{kind}`) has neither `.dockerconfigjson` nor \
             `.dockercfg`; create it with `kubectl create secret docker-registry`"
        ));
    };
    let mut out = Vec::new();
    for (server, a) in auths {
        let (username, password) = match (a.username, a.password) {
            (Some(u), Some(p)) => (u, p),
            (u, p) => {
                let decoded = a
                    .auth
                    .as_deref()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .map(|(u, p)| (u.to_string(), p.to_string()))
                    });
                match decoded {
                    Some((du, dp)) => (u.unwrap_or(du), p.unwrap_or(dp)),
                    None => {
                        return Err(format!(
                            "image pull Secret `{name}`: the entry for `{server}` has no \
                             username/password and no valid `auth` (base64 of user:password)"
                        ));
                    }
                }
            }
        };
        out.push(ImagePullCredential {
            docker_registry: Some(DockerRegistryCredentials {
                server: Some(server),
                username: Some(username),
                password: Some(Secret::new(password)),
                email: a.email,
            }),
        });
    }
    Ok(out)
}
