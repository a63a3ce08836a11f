//! The parts of a Kubernetes Pod the default policy reads. Unknown fields are ignored (the API
//! server adds many); every field is optional here so that a raw manifest and an
//! API-server-defaulted pod both parse, and the mapping applies Kubernetes' defaults itself.
//!
//! Strings borrow from the pod's JSON ([`Str`]); what the policy only needs to know is set
//! (unsupported volume sources, `envFrom`, seccomp profiles, …) is skipped, not built.

use crate::prelude::*;

use alloc::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

pub use crate::text::Str;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Pod<'a> {
    pub metadata: ObjectMeta<'a>,
    pub spec: PodSpec<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct ObjectMeta<'a> {
    pub name: Option<Str<'a>>,
    pub namespace: Option<Str<'a>>,
    pub annotations: BTreeMap<Str<'a>, Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct PodSpec<'a> {
    pub containers: Vec<Container<'a>>,
    pub init_containers: Vec<Container<'a>>,
    pub volumes: Vec<Volume<'a>>,
    pub termination_grace_period_seconds: Option<i64>,
    pub host_aliases: Vec<HostAlias<'a>>,
    pub dns_config: Option<DnsConfig<'a>>,
    pub share_process_namespace: Option<bool>,
    pub security_context: Option<PodSecurityContext<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Container<'a> {
    pub name: Str<'a>,
    pub image: Option<Str<'a>>,
    pub command: Option<Vec<Str<'a>>>,
    pub args: Option<Vec<Str<'a>>>,
    pub working_dir: Option<Str<'a>>,
    pub ports: Vec<ContainerPort<'a>>,
    pub env: Vec<EnvVar<'a>>,
    pub resources: Resources<'a>,
    pub volume_mounts: Vec<VolumeMount<'a>>,
    pub liveness_probe: Option<Probe<'a>>,
    pub readiness_probe: Option<Probe<'a>>,
    pub startup_probe: Option<Probe<'a>>,
    pub lifecycle: Option<Lifecycle<'a>>,
    pub image_pull_policy: Option<Str<'a>>,
    pub termination_message_path: Option<Str<'a>>,
    pub termination_message_policy: Option<Str<'a>>,
    pub security_context: Option<SecurityContext<'a>>,
    /// `Always` on an init container makes it a native sidecar.
    pub restart_policy: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct ContainerPort<'a> {
    pub name: Option<Str<'a>>,
    pub container_port: Option<i64>,
    pub protocol: Option<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct EnvVar<'a> {
    pub name: Str<'a>,
    pub value: Option<Str<'a>>,
    pub value_from: Option<ValueFrom>,
}

/// Where an env value comes from. The host resolves it; the policy only needs to know whether
/// a missing key may be left unset (`optional: true`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ValueFrom {
    pub config_map_key_ref: Option<KeyRef>,
    pub secret_key_ref: Option<KeyRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyRef {
    pub optional: Option<bool>,
}

/// Quantities stay raw JSON: YAML `cpu: 1` arrives as a number, the API server stores strings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Resources<'a> {
    pub requests: BTreeMap<Str<'a>, Value>,
    pub limits: BTreeMap<Str<'a>, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct VolumeMount<'a> {
    pub name: Str<'a>,
    pub mount_path: Str<'a>,
    pub sub_path: Option<Str<'a>>,
    pub sub_path_expr: Option<Str<'a>>,
}

/// A probe: a handler (the same fields as [`Handler`], listed here rather than flattened,
/// which would make serde buffer every probe) plus timings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Probe<'a> {
    pub http_get: Option<HttpGet<'a>>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Exec<'a>>,
    pub sleep: Option<IgnoredAny>,
    pub grpc: Option<IgnoredAny>,
    pub initial_delay_seconds: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub period_seconds: Option<i32>,
    pub success_threshold: Option<i32>,
    pub failure_threshold: Option<i32>,
}

impl<'a> Probe<'a> {
    pub fn handler(&self) -> HandlerRef<'_, 'a> {
        HandlerRef {
            http_get: self.http_get.as_ref(),
            tcp_socket: self.tcp_socket.as_ref(),
            exec: self.exec.as_ref(),
            sleep: self.sleep.is_some(),
        }
    }
}

/// The handler shapes shared by probes and lifecycle hooks.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Handler<'a> {
    pub http_get: Option<HttpGet<'a>>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Exec<'a>>,
    pub sleep: Option<IgnoredAny>,
}

impl<'a> Handler<'a> {
    pub fn view(&self) -> HandlerRef<'_, 'a> {
        HandlerRef {
            http_get: self.http_get.as_ref(),
            tcp_socket: self.tcp_socket.as_ref(),
            exec: self.exec.as_ref(),
            sleep: self.sleep.is_some(),
        }
    }
}

/// A handler's actions, borrowed from a probe or a lifecycle hook.
#[derive(Debug, Clone, Copy)]
pub struct HandlerRef<'r, 'a> {
    pub http_get: Option<&'r HttpGet<'a>>,
    pub tcp_socket: Option<&'r TcpSocket>,
    pub exec: Option<&'r Exec<'a>>,
    /// Whether a `sleep` action is set.
    pub sleep: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct HttpGet<'a> {
    pub path: Option<Str<'a>>,
    pub port: Value,
    pub scheme: Option<Str<'a>>,
    pub http_headers: Vec<HttpHeader<'a>>,
    pub host: Option<Str<'a>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct HttpHeader<'a> {
    pub name: Str<'a>,
    pub value: Str<'a>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpSocket {
    pub port: Value,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Exec<'a> {
    pub command: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Lifecycle<'a> {
    pub post_start: Option<Handler<'a>>,
    pub pre_stop: Option<Handler<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct SecurityContext<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities<'a>>,
    pub privileged: Option<bool>,
    pub se_linux_options: Option<IgnoredAny>,
    pub seccomp_profile: Option<IgnoredAny>,
    pub app_armor_profile: Option<IgnoredAny>,
    pub proc_mount: Option<Str<'a>>,
    pub windows_options: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Capabilities<'a> {
    pub add: Vec<Str<'a>>,
    pub drop: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct PodSecurityContext<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub supplemental_groups: Vec<i64>,
    pub sysctls: Vec<Sysctl<'a>>,
    pub fs_group: Option<i64>,
    pub fs_group_change_policy: Option<Str<'a>>,
    pub se_linux_options: Option<IgnoredAny>,
    pub seccomp_profile: Option<IgnoredAny>,
    pub app_armor_profile: Option<IgnoredAny>,
    pub windows_options: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Sysctl<'a> {
    pub name: Str<'a>,
    pub value: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct HostAlias<'a> {
    pub ip: Str<'a>,
    pub hostnames: Vec<Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct DnsConfig<'a> {
    pub nameservers: Vec<Str<'a>>,
    pub searches: Vec<Str<'a>>,
    pub options: Vec<DnsOption<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct DnsOption<'a> {
    pub name: Str<'a>,
    pub value: Option<Str<'a>>,
}

/// A volume: its name, its CSI source when it has one, and which other source it uses (so
/// that warnings can name it). A volume has some thirty source kinds, so the others are read
/// as keys only: their contents are skipped, not built.
#[derive(Debug, Default)]
pub struct Volume<'a> {
    pub name: Str<'a>,
    pub csi: Option<Csi<'a>>,
    /// The source kind (`emptyDir`, `configMap`, `projected`, …) when it is not CSI: the first
    /// set one in key order.
    pub kind: Option<Str<'a>>,
    pub projected: Option<Projected>,
    pub empty_dir: Option<EmptyDir<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Volume<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Volume<'de>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a volume object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Volume<'de>, M::Error> {
                let mut v = Volume::default();
                while let Some(key) = m.next_key::<Str<'de>>()? {
                    match key.as_str() {
                        "name" => {
                            if let Some(n) = m.next_value::<Option<Str<'de>>>()? {
                                v.name = n;
                            }
                        }
                        "csi" => v.csi = m.next_value()?,
                        _ => {
                            let set = if key == "projected" {
                                v.projected = m.next_value()?;
                                v.projected.is_some()
                            } else if key == "emptyDir" {
                                v.empty_dir = m.next_value()?;
                                v.empty_dir.is_some()
                            } else {
                                m.next_value::<Option<IgnoredAny>>()?.is_some()
                            };
                            if set && v.kind.as_ref().is_none_or(|k| key < *k) {
                                v.kind = Some(key);
                            }
                        }
                    }
                }
                Ok(v)
            }
        }
        d.deserialize_map(V)
    }
}

/// An emptyDir volume: its size limit (raw JSON: a quantity may be a number) and medium.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct EmptyDir<'a> {
    pub medium: Option<Str<'a>>,
    pub size_limit: Option<Value>,
}

/// A projected volume: enough to recognise the service-account token Kubernetes adds.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Projected {
    pub sources: Vec<ProjectedSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProjectedSource {
    pub service_account_token: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", bound(deserialize = "'de: 'a"))]
pub struct Csi<'a> {
    pub driver: Str<'a>,
    pub volume_attributes: BTreeMap<Str<'a>, Str<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(json: &str) -> Volume<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn volume_kind_is_the_first_set_source_in_key_order() {
        let v = volume(r#"{"name":"v","secret":{"secretName":"s"},"emptyDir":{},"nfs":null}"#);
        assert_eq!(v.name, "v");
        assert_eq!(v.kind.as_deref(), Some("emptyDir"));
        assert!(v.csi.is_none() && v.projected.is_none());
        let v = volume(r#"{"hostPath":null,"name":"n"}"#);
        assert_eq!(v.kind, None);
        let v = volume(r#"{"name":null,"configMap":{"items":[{"key":"a","path":"b"}]}}"#);
        assert_eq!(
            (v.name.as_str(), v.kind.as_deref()),
            ("", Some("configMap"))
        );
    }

    #[test]
    fn volume_reads_csi_and_the_service_account_projection() {
        let v = volume(r#"{"name":"data","csi":{"driver":"d","volumeAttributes":{"size":"2Gi"}}}"#);
        let csi = v.csi.unwrap();
        assert_eq!(csi.driver, "d");
        assert_eq!(
            csi.volume_attributes.get("size").map(|s| s.as_str()),
            Some("2Gi")
        );
        let v = volume(
            r#"{"name":"t","projected":{"sources":[{"configMap":{}},{"serviceAccountToken":{"path":"token"}}]}}"#,
        );
        assert_eq!(v.kind.as_deref(), Some("projected"));
        let sources = &v.projected.unwrap().sources;
        assert!(sources[0].service_account_token.is_none());
        assert!(sources[1].service_account_token.is_some());
    }

    #[test]
    fn volume_rejects_a_name_that_is_not_a_string() {
        assert!(serde_json::from_str::<Volume<'_>>(r#"{"name":7}"#).is_err());
    }

    #[test]
    fn env_value_from_keeps_only_optional() {
        let e: EnvVar<'_> = serde_json::from_str(
            r#"{"name":"A","valueFrom":{"secretKeyRef":{"name":"s","key":"k","optional":true}}}"#,
        )
        .unwrap();
        let from = e.value_from.unwrap();
        assert_eq!(from.secret_key_ref.unwrap().optional, Some(true));
        assert!(from.config_map_key_ref.is_none());
    }
}
