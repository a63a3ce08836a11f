//! Pod → StackPath workload spec, per docs/mapping.md. Pure: no I/O, no clock, no randomness.

use crate::prelude::*;

mod container;
mod probe;
mod runtime;
mod volume;

use alloc::collections::BTreeSet;
use core::fmt::Write as _;

use crate::api::{Context, Finding, Translation, Violations};
use crate::input::Pod;
use crate::output::WorkloadSpec;

/// Annotations that are client bookkeeping, not intent: `kubectl apply` stores the whole
/// manifest there, which would double every workload's size for nothing.
const DROPPED_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// A field path (`spec.containers[0]` + `.livenessProbe`), put together only when a finding
/// needs it: a pod that maps cleanly builds no path strings at all.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a>(pub &'a str, pub &'a str);

impl core::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

impl From<Path<'_>> for String {
    fn from(p: Path<'_>) -> String {
        let mut s = String::with_capacity(p.0.len() + p.1.len());
        s.push_str(p.0);
        s.push_str(p.1);
        s
    }
}

/// Collects what the mapping finds while it walks the pod.
pub(crate) struct Findings {
    pub warnings: Vec<Finding>,
    pub violations: Vec<Finding>,
}

impl Findings {
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding::new(path, message));
    }
    /// Warns about each set field StackPath has no equivalent for.
    pub fn warn_unsupported(&mut self, prefix: Path<'_>, fields: &[(&str, bool)]) {
        for (field, set) in fields {
            if *set {
                self.warn(
                    format!("{prefix}.{field}"),
                    "not supported by StackPath; left out",
                );
            }
        }
    }
    pub fn violate(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Finding::new(path, message));
    }
}

/// Translates a pod (JSON) into the workload spec, or says every reason it cannot.
pub fn translate(pod_json: &str, ctx: &Context) -> Result<Translation, Violations> {
    let mut pod = parse(pod_json)?;
    let mut f = Findings {
        warnings: Vec::new(),
        violations: Vec::new(),
    };

    if pod.spec.containers.is_empty() {
        f.violate(
            "spec.containers",
            "the pod has no containers; a pod needs at least one",
        );
    }
    let volumes = volume::map_volumes(&pod.spec.volumes, ctx, &mut f);
    let mut spec = WorkloadSpec {
        volume_claim_templates: volumes.claims,
        runtime: runtime::map_runtime(&pod.spec, &mut f),
        ..WorkloadSpec::default()
    };
    let groups = [
        ("containers", core::mem::take(&mut pod.spec.containers)),
        (
            "initContainers",
            core::mem::take(&mut pod.spec.init_containers),
        ),
    ];
    // Names are unique across both lists in Kubernetes, and a sidecar moves from one to the
    // other here.
    let mut seen = BTreeSet::new();
    let mut path = String::new();
    for (field, containers) in groups {
        for (i, c) in containers.into_iter().enumerate() {
            path.clear();
            write!(path, "spec.{field}[{i}]").expect("writing to a String cannot fail");
            if !seen.insert(c.name.clone()) {
                f.violate(
                    format!("{path}.name"),
                    format!(
                        "container name `{}` is used twice; names must be unique among \
                         containers and init containers",
                        c.name
                    ),
                );
                continue;
            }
            let sidecar = field == "initContainers" && is_sidecar(&c, &path, &mut f);
            let mapped = container::map_container(c, &path, ctx, &volumes.skipped, &mut f);
            if let Some((name, m)) = mapped {
                // A native sidecar runs beside the app for the pod's life: at StackPath, init
                // containers run to completion first, so it is one of the containers.
                if field == "containers" || sidecar {
                    spec.containers.insert(name, m);
                } else {
                    spec.init_containers.insert(name, m);
                }
            }
        }
    }

    if !f.violations.is_empty() {
        return Err(f.violations);
    }
    let annotations = pod
        .metadata
        .annotations
        .into_iter()
        .filter(|(k, _)| !DROPPED_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    discard(pod.spec);
    let json = serde_json::to_string(&spec).map_err(|e| {
        vec![Finding::new(
            "spec",
            format!("internal error serializing the workload spec: {e}"),
        )]
    })?;
    discard(spec);
    Ok(Translation {
        spec: json,
        annotations,
        warnings: f.warnings,
    })
}

/// An init container with `restartPolicy: Always` (a native sidecar, Kubernetes 1.29+). Any
/// other restart policy is not allowed on an init container.
fn is_sidecar(c: &crate::input::Container<'_>, path: &str, f: &mut Findings) -> bool {
    match c.restart_policy.as_deref() {
        None | Some("") => false,
        Some("Always") => true,
        Some(other) => {
            f.violate(
                format!("{path}.restartPolicy"),
                format!(
                    "`{other}` is not allowed on an init container; only `Always` (a sidecar) is"
                ),
            );
            false
        }
    }
}

/// Drops what the translation no longer needs, except in the component: its instance is thrown
/// away after this one call, so walking the structures to free them would be wasted work.
fn discard<T>(value: T) {
    #[cfg(target_arch = "wasm32")]
    core::mem::forget(value);
    #[cfg(not(target_arch = "wasm32"))]
    drop(value);
}

/// Parses the pod. serde_path_to_error allocates a path segment per key, so it only runs
/// again on the rare invalid pod, to say where the problem is.
fn parse(pod_json: &str) -> Result<Pod<'_>, Violations> {
    if let Ok(pod) = serde_json::from_str(pod_json) {
        return Ok(pod);
    }
    let de = &mut serde_json::Deserializer::from_str(pod_json);
    match serde_path_to_error::deserialize::<_, Pod>(de) {
        Ok(pod) => Ok(pod),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Err(vec![Finding::new(
                path,
                format!(
                    "the pod is not valid JSON of a Kubernetes Pod: {}",
                    e.inner()
                ),
            )])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ConfigVolume, ConfigVolumeKind, EnvOrigin, EnvValue, ResolvedEnv};

    fn spec_of(pod: &str, ctx: &Context) -> serde_json::Value {
        let t = translate(pod, ctx).unwrap_or_else(|v| panic!("{v:?}"));
        serde_json::from_str(&t.spec).unwrap()
    }

    fn resolved(name: &str, value: EnvValue, origin: EnvOrigin) -> ResolvedEnv {
        ResolvedEnv {
            container: "app".into(),
            name: name.into(),
            value,
            origin,
        }
    }

    #[test]
    fn resolved_values_map_to_their_stackpath_shapes_and_env_wins() {
        let pod = r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"a:1",
            "envFrom":[{"configMapRef":{"name":"c"}}],
            "env":[{"name":"IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}},
                   {"name":"MEM","valueFrom":{"resourceFieldRef":{"resource":"limits.memory"}}},
                   {"name":"TOKEN","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},
                   {"name":"LATER","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},
                   {"name":"LATER","value":"plain"},
                   {"name":"KUBERNETES_PORT","valueFrom":{"configMapKeyRef":{"name":"c","key":"k"}}}]}]}}"#;
        let ctx = Context {
            env: vec![
                resolved(
                    "FROM_CM",
                    EnvValue::Plain("x".into()),
                    EnvOrigin::EnvFrom(0),
                ),
                resolved(
                    "KUBERNETES_SERVICE_HOST",
                    EnvValue::Plain("x".into()),
                    EnvOrigin::EnvFrom(0),
                ),
                resolved(
                    "IP",
                    EnvValue::InstanceField(".ipAddress".into()),
                    EnvOrigin::Env(0),
                ),
                resolved("MEM", EnvValue::SizeLimit, EnvOrigin::Env(1)),
                resolved("TOKEN", EnvValue::Secret, EnvOrigin::Env(2)),
                resolved(
                    "KUBERNETES_PORT",
                    EnvValue::Plain("x".into()),
                    EnvOrigin::Env(5),
                ),
            ],
            ..Context::default()
        };
        let env = &spec_of(pod, &ctx)["containers"]["app"]["env"];
        assert_eq!(
            *env,
            serde_json::json!({
                "FROM_CM": {"value": "x"},
                "IP": {"valueFrom": {"instanceFieldRef": {"fieldPath": ".ipAddress"}}},
                "LATER": {"value": "plain"},
                "MEM": {"value": ""},
                "TOKEN": {"secretValue": ""}
            })
        );
    }

    #[test]
    fn a_native_sidecar_becomes_a_container_and_names_stay_unique() {
        let pod = r#"{"metadata":{"name":"p"},"spec":{
            "initContainers":[{"name":"init","image":"a:1"},{"name":"side","image":"s:1","restartPolicy":"Always"}],
            "containers":[{"name":"app","image":"a:1"}]}}"#;
        let spec = spec_of(pod, &Context::default());
        let names = |k: &str| -> Vec<String> {
            spec[k]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(names("containers"), ["app", "side"]);
        assert_eq!(names("initContainers"), ["init"]);
        let dup = r#"{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"app","image":"a:1"}],
            "containers":[{"name":"app","image":"a:1"}]}}"#;
        let v = translate(dup, &Context::default()).unwrap_err();
        assert_eq!(v[0].path, "spec.initContainers[0].name");
        let bad = r#"{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"i","image":"a:1","restartPolicy":"Never"}],
            "containers":[{"name":"app","image":"a:1"}]}}"#;
        let v = translate(bad, &Context::default()).unwrap_err();
        assert_eq!(v[0].path, "spec.initContainers[0].restartPolicy");
    }

    #[test]
    fn config_volumes_get_claims_only_when_the_host_offers_them() {
        let pod = r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"a:1",
            "volumeMounts":[{"name":"conf","mountPath":"/etc/conf"},{"name":"tmp","mountPath":"/tmp"}]}],
            "volumes":[{"name":"conf","configMap":{"name":"c"}},{"name":"tmp","emptyDir":{"sizeLimit":"500Mi"}}]}}"#;
        let offered = Context {
            config_volumes: vec![
                ConfigVolume {
                    name: "conf".into(),
                    kind: ConfigVolumeKind::ConfigMap,
                    files: vec![],
                    bytes: 0,
                },
                ConfigVolume {
                    name: "tmp".into(),
                    kind: ConfigVolumeKind::EmptyDir,
                    files: vec![],
                    bytes: 0,
                },
            ],
            ..Context::default()
        };
        let spec = spec_of(pod, &offered);
        let claims: Vec<(&str, &str)> = spec["volumeClaimTemplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["slug"].as_str().unwrap(),
                    c["spec"]["resources"]["requests"]["storage"]
                        .as_str()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(claims, [("conf", "1Gi"), ("tmp", "1Gi")]);
        assert_eq!(
            spec["containers"]["app"]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let t = translate(pod, &Context::default()).unwrap();
        assert!(
            t.warnings
                .iter()
                .any(|w| w.message.contains("--config-volumes=skip"))
        );
        assert!(!t.spec.contains("volumeClaimTemplates"));
    }

    /// Strings with escape sequences are decoded from the pod and escaped again in the spec;
    /// plain ones are borrowed: both must come out as the same text.
    #[test]
    fn escaped_strings_survive_the_mapping() {
        let pod = r#"{"metadata":{"name":"p","annotations":{"note":"caf\u00e9 \"quoted\""}},
            "spec":{"containers":[{"name":"c","image":"busybox:1.36",
            "command":["sh","-c","printf 'a\\tb\\n'"],
            "env":[{"name":"GREETING","value":"line1\nline2 \\ back"}]}]}}"#;
        let t = translate(pod, &Context::default()).unwrap();
        let spec: serde_json::Value = serde_json::from_str(&t.spec).unwrap();
        let c = &spec["containers"]["c"];
        assert_eq!(c["command"][2], "printf 'a\\tb\\n'");
        assert_eq!(c["env"]["GREETING"]["value"], "line1\nline2 \\ back");
        assert_eq!(c["image"], "busybox:1.36");
        assert_eq!(
            t.annotations,
            vec![("note".to_string(), "café \"quoted\"".to_string())]
        );
    }
}
