//! The parts of a Kubernetes Pod the default policy reads. Unknown fields are ignored (the API
//! server adds many); every field is optional here so that a raw manifest and an
//! API-server-defaulted pod both parse, and the mapping applies Kubernetes' defaults itself.

use crate::prelude::*;

use alloc::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    pub termination_grace_period_seconds: Option<i64>,
    pub host_aliases: Vec<HostAlias>,
    pub dns_config: Option<DnsConfig>,
    pub share_process_namespace: Option<bool>,
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub ports: Vec<ContainerPort>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<Value>,
    pub resources: Resources,
    pub volume_mounts: Vec<VolumeMount>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub lifecycle: Option<Lifecycle>,
    pub image_pull_policy: Option<String>,
    pub termination_message_path: Option<String>,
    pub termination_message_policy: Option<String>,
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: Option<i64>,
    pub protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Value>,
}

/// Quantities stay raw JSON: YAML `cpu: 1` arrives as a number, the API server stores strings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resources {
    pub requests: BTreeMap<String, Value>,
    pub limits: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

/// A probe: a handler (the same fields as [`Handler`], listed here rather than flattened,
/// which would make serde buffer every probe) plus timings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Exec>,
    pub sleep: Option<Value>,
    pub grpc: Option<Value>,
    pub initial_delay_seconds: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub period_seconds: Option<i32>,
    pub success_threshold: Option<i32>,
    pub failure_threshold: Option<i32>,
}

impl Probe {
    pub fn handler(&self) -> HandlerRef<'_> {
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
#[serde(default, rename_all = "camelCase")]
pub struct Handler {
    pub http_get: Option<HttpGet>,
    pub tcp_socket: Option<TcpSocket>,
    pub exec: Option<Exec>,
    pub sleep: Option<Value>,
}

impl Handler {
    pub fn view(&self) -> HandlerRef<'_> {
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
pub struct HandlerRef<'a> {
    pub http_get: Option<&'a HttpGet>,
    pub tcp_socket: Option<&'a TcpSocket>,
    pub exec: Option<&'a Exec>,
    /// Whether a `sleep` action is set.
    pub sleep: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpGet {
    pub path: Option<String>,
    pub port: Value,
    pub scheme: Option<String>,
    pub http_headers: Vec<HttpHeader>,
    pub host: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpSocket {
    pub port: Value,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Exec {
    pub command: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Lifecycle {
    pub post_start: Option<Handler>,
    pub pre_stop: Option<Handler>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub privileged: Option<bool>,
    pub se_linux_options: Option<Value>,
    pub seccomp_profile: Option<Value>,
    pub app_armor_profile: Option<Value>,
    pub proc_mount: Option<String>,
    pub windows_options: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub supplemental_groups: Vec<i64>,
    pub sysctls: Vec<Sysctl>,
    pub fs_group: Option<i64>,
    pub fs_group_change_policy: Option<String>,
    pub se_linux_options: Option<Value>,
    pub seccomp_profile: Option<Value>,
    pub app_armor_profile: Option<Value>,
    pub windows_options: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

/// A volume: its name, its CSI source when it has one, and which other source it uses (so
/// that warnings can name it). Read from raw JSON, since a volume has some thirty source kinds.
#[derive(Debug, Default)]
pub struct Volume {
    pub name: String,
    pub csi: Option<Csi>,
    /// The source kind (`emptyDir`, `configMap`, `projected`, …) when it is not CSI.
    pub kind: Option<String>,
    pub projected: Option<Value>,
}

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = serde_json::Map::<String, Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(Value::String(n)) => n,
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err(serde::de::Error::custom("volume name must be a string")),
        };
        let csi = match map.remove("csi") {
            Some(v) => Some(Csi::deserialize(v).map_err(serde::de::Error::custom)?),
            None => None,
        };
        let projected = map.get("projected").cloned();
        let kind = map.into_iter().find(|(_, v)| !v.is_null()).map(|(k, _)| k);
        Ok(Volume {
            name,
            csi,
            kind,
            projected,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Csi {
    pub driver: String,
    pub volume_attributes: BTreeMap<String, String>,
}
