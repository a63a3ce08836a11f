//! A container's environment as the kubelet builds it (`makeEnvironmentVariables`): every
//! `envFrom` source in order (a later source wins), then `env` in order (it wins over
//! `envFrom`; an optional reference to something missing leaves the variable as it was).
//! Only the variables whose value the host resolved, and that win, go to the policy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, Pod};
use stackpath_client::Secret;

use super::fields::{self, FieldValue, Use};
use super::resources::{self, ResourceValue, SizeRef};
use super::{Objects, Resolved, config_map_value, secret_data};
use crate::policy::{EnvOrigin, ResolvedEnv, Violation};

/// Keys of an `envFrom` source that are not valid variable names: skipped, as the kubelet
/// does, and reported as its `InvalidEnvironmentVariableNames` Event says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InvalidEnvNames {
    /// `configMap` or `secret`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Sorted, with the source's prefix.
    pub keys: Vec<String>,
}

impl InvalidEnvNames {
    /// The Event's reason, as the kubelet gives it.
    pub const REASON: &'static str = "InvalidEnvironmentVariableNames";

    /// The Event's message, word for word the kubelet's.
    pub fn message(&self) -> String {
        format!(
            "Keys [{}] from the EnvFrom {} {}/{} were skipped since they are considered invalid \
             environment variable names.",
            self.keys.join(", "),
            self.kind,
            self.namespace,
            self.name
        )
    }
}

/// A value that is a figure of a StackPath size, filled in after the policy ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeEnv {
    /// The container whose variable it is.
    pub container: String,
    pub name: String,
    pub size: SizeRef,
}

/// A resolved value.
enum Value {
    Plain(String),
    Secret(Secret),
    Instance(&'static str),
    Size(SizeRef),
}

/// Kubernetes' rule since 1.30 (`RelaxedEnvironmentVariableValidation`, on by default from
/// 1.32): any printable ASCII character but `=`.
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// Resolves `c`'s `envFrom` and `env[].valueFrom` into `out`; problems into `problems`.
#[allow(clippy::too_many_arguments)]
pub(super) fn container_env(
    pod: &Pod,
    namespace: &str,
    c: &Container,
    path: &str,
    objects: &Objects,
    host_ip: &str,
    out: &mut Resolved,
    problems: &mut Vec<Violation>,
) {
    // name → the winning resolved value, or `None` when a plain `value` wins.
    let mut winners: BTreeMap<String, Option<(Value, EnvOrigin)>> = BTreeMap::new();
    for (i, from) in c.env_from.iter().flatten().enumerate() {
        let origin = EnvOrigin::EnvFrom(i as u32);
        match env_from(namespace, from, objects) {
            Ok(Some(source)) => {
                if !source.invalid.is_empty() {
                    out.invalid_env_names.push(InvalidEnvNames {
                        kind: source.kind,
                        namespace: namespace.to_string(),
                        name: source.name,
                        keys: source.invalid,
                    });
                }
                for (name, value) in source.vars {
                    winners.insert(name, Some((value, origin)));
                }
            }
            Ok(None) => {}
            Err(message) => problems.push(Violation {
                path: format!("{path}.envFrom[{i}]"),
                message: format!("container `{}`: {message}", c.name),
            }),
        }
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        // As the kubelet: a non-empty `value` wins over `valueFrom`.
        if e.value_from.is_none() || e.value.as_deref().is_some_and(|v| !v.is_empty()) {
            winners.insert(e.name.clone(), None);
            continue;
        }
        match value_from(pod, namespace, c, e, objects, host_ip) {
            Ok(Some(v)) => {
                winners.insert(e.name.clone(), Some((v, EnvOrigin::Env(i as u32))));
            }
            Ok(None) => {}
            Err(message) => problems.push(Violation {
                path: format!("{path}.env[{i}].valueFrom"),
                message: format!("env `{}` of container `{}`: {message}", e.name, c.name),
            }),
        }
    }
    for (name, winner) in winners {
        let Some((value, origin)) = winner else {
            continue;
        };
        let mut r = ResolvedEnv {
            container: c.name.clone(),
            name: name.clone(),
            origin,
            ..ResolvedEnv::default()
        };
        match value {
            Value::Plain(v) => r.value = Some(v),
            Value::Secret(v) => {
                r.from_secret = true;
                out.secret_env.insert((c.name.clone(), name), v);
            }
            Value::Instance(field) => r.instance_field = Some(field.to_string()),
            Value::Size(size) => {
                r.size_limit = true;
                r.value = Some(String::new());
                out.size_env.push(SizeEnv {
                    container: c.name.clone(),
                    name,
                    size,
                });
            }
        }
        out.env.push(r);
    }
}

/// The variables of one `envFrom` source.
struct Source {
    kind: &'static str,
    name: String,
    vars: Vec<(String, Value)>,
    invalid: Vec<String>,
}

/// `Ok(None)`: an optional source that is missing.
fn env_from(
    namespace: &str,
    from: &EnvFromSource,
    objects: &Objects,
) -> Result<Option<Source>, String> {
    let prefix = from.prefix.as_deref().unwrap_or("");
    let mut invalid = Vec::new();
    let mut named = |key: &str| {
        let name = format!("{prefix}{key}");
        if valid_env_name(&name) {
            Some(name)
        } else {
            invalid.push(name);
            None
        }
    };
    let mut source = if let Some(r) = &from.config_map_ref {
        let Some(cm) = objects.config_maps.get(&r.name) else {
            return missing(
                r.optional,
                format!(
                    "ConfigMap `{}` not found in namespace `{namespace}`",
                    r.name
                ),
            );
        };
        // The kubelet reads `data` only: binaryData keys are not variables.
        let vars = cm
            .data
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((named(k)?, Value::Plain(v.clone()))))
            .collect();
        Source {
            kind: "configMap",
            name: r.name.clone(),
            vars,
            invalid: Vec::new(),
        }
    } else if let Some(r) = &from.secret_ref {
        let Some(secret) = objects.secrets.get(&r.name) else {
            return missing(
                r.optional,
                format!("Secret `{}` not found in namespace `{namespace}`", r.name),
            );
        };
        let mut vars = Vec::new();
        for (k, v) in secret_data(secret) {
            let Some(name) = named(&k) else { continue };
            let text = String::from_utf8(v).map_err(|_| {
                format!(
                    "key `{k}` of Secret `{}` is not UTF-8 text, which an environment variable \
                     cannot carry on StackPath",
                    r.name
                )
            })?;
            vars.push((name, Value::Secret(Secret::new(text))));
        }
        Source {
            kind: "secret",
            name: r.name.clone(),
            vars,
            invalid: Vec::new(),
        }
    } else {
        return Err("envFrom names no source; set configMapRef or secretRef".into());
    };
    invalid.sort();
    source.invalid = invalid;
    Ok(Some(source))
}

fn missing<T>(optional: Option<bool>, message: String) -> Result<Option<T>, String> {
    if optional.unwrap_or(false) {
        Ok(None)
    } else {
        Err(format!(
            "{message}; create it, or mark the reference optional"
        ))
    }
}

/// `Ok(None)`: an optional reference to something missing (the kubelet leaves the variable
/// as it was).
fn value_from(
    pod: &Pod,
    namespace: &str,
    c: &Container,
    e: &EnvVar,
    objects: &Objects,
    host_ip: &str,
) -> Result<Option<Value>, String> {
    let Some(from) = &e.value_from else {
        return Ok(None);
    };
    if let Some(k) = &from.config_map_key_ref {
        let Some(cm) = objects.config_maps.get(&k.name) else {
            return missing(
                k.optional,
                format!(
                    "ConfigMap `{}` not found in namespace `{namespace}`",
                    k.name
                ),
            );
        };
        return match config_map_value(cm, &k.key) {
            Some(v) => Ok(Some(Value::Plain(String::from_utf8_lossy(&v).into_owned()))),
            None => missing(
                k.optional,
                format!("ConfigMap `{}` has no key `{}`", k.name, k.key),
            ),
        };
    }
    if let Some(k) = &from.secret_key_ref {
        let Some(secret) = objects.secrets.get(&k.name) else {
            return missing(
                k.optional,
                format!("Secret `{}` not found in namespace `{namespace}`", k.name),
            );
        };
        return match secret_data(secret).remove(&k.key) {
            Some(v) => Ok(Some(Value::Secret(Secret::new(
                String::from_utf8(v).map_err(|_| {
                    format!("key `{}` of Secret `{}` is not UTF-8 text", k.key, k.name)
                })?,
            )))),
            None => missing(
                k.optional,
                format!("Secret `{}` has no key `{}`", k.name, k.key),
            ),
        };
    }
    if let Some(f) = &from.field_ref {
        return Ok(Some(
            match fields::field(pod, &f.field_path, host_ip, Use::Env)? {
                FieldValue::Plain(v) => Value::Plain(v),
                FieldValue::Instance(p) => Value::Instance(p),
            },
        ));
    }
    if let Some(r) = &from.resource_field_ref {
        // In env, the reference defaults to its own container.
        let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            None => c,
            Some(name) => super::container(pod, name).ok_or_else(|| {
                format!("resourceFieldRef names container `{name}`, which the pod does not have")
            })?,
        };
        return Ok(Some(match resources::resource(target, r)? {
            ResourceValue::Plain(v) => Value::Plain(v),
            ResourceValue::Size(s) => Value::Size(s),
        }));
    }
    Err(
        "valueFrom names no source; set configMapKeyRef, secretKeyRef, fieldRef or \
         resourceFieldRef"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::{objects, pod};
    use crate::resolve::{ResolveSettings, resolve};

    fn settings() -> ResolveSettings {
        ResolveSettings {
            host_ip: "192.0.2.7".into(),
            config_volumes: true,
        }
    }

    fn env_of(r: &Resolved, container: &str) -> Vec<(String, String)> {
        r.env
            .iter()
            .filter(|e| e.container == container)
            .map(|e| {
                let shown = if e.from_secret {
                    format!(
                        "secret:{}",
                        r.secret_env[&(e.container.clone(), e.name.clone())].expose()
                    )
                } else if let Some(f) = &e.instance_field {
                    format!("field:{f}")
                } else if e.size_limit {
                    "size".into()
                } else {
                    e.value.clone().unwrap_or_default()
                };
                (e.name.clone(), shown)
            })
            .collect()
    }

    #[test]
    fn env_wins_over_env_from_and_later_sources_over_earlier() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "app", "image": "i",
            "envFrom": [
                {"configMapRef": {"name": "settings"}},
                {"secretRef": {"name": "db"}, "prefix": "DB_"},
                {"configMapRef": {"name": "overrides"}}
            ],
            "env": [
                {"name": "MODE", "value": "explicit"},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "x", "optional": true}}},
                {"name": "DB_password", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}
            ]}]}),
        );
        let r = resolve(&p, &objects(), &settings()).unwrap();
        assert_eq!(
            env_of(&r, "app"),
            vec![
                // env[2] wins over the Secret's key.
                ("DB_password".into(), "production".into()),
                ("DB_user".into(), "secret:admin".into()),
                // An optional miss in env leaves the envFrom value.
                ("LEVEL".into(), "debug".into()),
                // The later source wins over the earlier (`info` in settings).
                ("level".into(), "debug".into()),
                ("mode".into(), "production".into()),
                // MODE: a plain env value wins; it is the policy's to read from the pod.
            ]
        );
        let level = r.env.iter().find(|e| e.name == "LEVEL").unwrap();
        assert_eq!(level.origin, EnvOrigin::EnvFrom(2));
        let pw = r.env.iter().find(|e| e.name == "DB_password").unwrap();
        assert_eq!(pw.origin, EnvOrigin::Env(2));
        assert!(
            !r.secret_env
                .contains_key(&("app".into(), "DB_password".into()))
        );
    }

    #[test]
    fn invalid_keys_are_skipped_and_reported_as_the_kubelet_does() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "app", "image": "i",
            "envFrom": [{"configMapRef": {"name": "odd-keys"}}, {"configMapRef": {"name": "odd-keys"}, "prefix": "P_"}]}]}),
        );
        let r = resolve(&p, &objects(), &settings()).unwrap();
        let names: Vec<String> = r.env.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "1starts-with-digit.ok",
                "P_1starts-with-digit.ok",
                "P_ok",
                "ok"
            ]
        );
        assert_eq!(r.invalid_env_names.len(), 2);
        assert_eq!(
            r.invalid_env_names[0].message(),
            "Keys [has=equals] from the EnvFrom configMap default/odd-keys were skipped since \
             they are considered invalid environment variable names."
        );
        assert_eq!(r.invalid_env_names[1].keys, ["P_has=equals"]);
    }

    #[test]
    fn missing_sources_fail_unless_optional() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "app", "image": "i",
            "envFrom": [
                {"configMapRef": {"name": "nope", "optional": true}},
                {"secretRef": {"name": "gone"}}
            ]}]}),
        );
        let v = resolve(&p, &objects(), &settings()).unwrap_err();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "spec.containers[0].envFrom[1]");
        assert!(
            v[0].message
                .contains("Secret `gone` not found in namespace `default`"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn downward_fields_and_resources() {
        let p = pod(
            serde_json::json!({"containers": [{"name": "app", "image": "i",
            "resources": {"limits": {"cpu": "500m"}},
            "env": [
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "SIDE_CPU", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "requests.cpu"}}}
            ]}, {"name": "side", "image": "i", "resources": {"requests": {"cpu": "2"}}}]}),
        );
        let r = resolve(&p, &objects(), &settings()).unwrap();
        assert_eq!(
            env_of(&r, "app"),
            vec![
                ("CPU".into(), "500".into()),
                ("HOST".into(), "192.0.2.7".into()),
                ("IP".into(), "field:.ipAddress".into()),
                ("MEM".into(), "size".into()),
                ("SIDE_CPU".into(), "2".into()),
            ]
        );
        assert_eq!(r.size_env.len(), 1);
        assert_eq!(r.size_env[0].size.container, "app");
        assert_eq!(r.size_env[0].size.value("2Gi"), Ok("2048".into()));
    }

    #[test]
    fn relaxed_names() {
        assert!(valid_env_name("my.env-name"));
        assert!(valid_env_name("1 starts with digit and has spaces"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("a=b"));
        assert!(!valid_env_name("tab\there"));
        assert!(!valid_env_name("café"));
    }
}
