//! The StackPath `v1WorkloadSpec` as the default policy writes it (JSON names from StackPath's
//! Workload API spec). Maps are ordered so the output is byte-for-byte reproducible.

use crate::prelude::*;

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;

use serde::Serialize;

use crate::text::Str;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec<'a> {
    pub containers: BTreeMap<Str<'a>, ContainerSpec<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub init_containers: BTreeMap<Str<'a>, ContainerSpec<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<VolumeClaim<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSettings<'a>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec<'a> {
    pub image: Str<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<Str<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<Str<'a>, EnvVar<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<Str<'a>, Port>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe<'a>>,
    pub resources: Resources,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle<'a>>,
    pub termination_message_path: Str<'a>,
    pub termination_message_policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EnvVar<'a> {
    /// `{"value": …}`
    Value(Str<'a>),
    /// `{"secretValue": …}`: the host fills in the real value.
    SecretValue(Str<'a>),
    /// `{"valueFrom": {"instanceFieldRef": {"fieldPath": …}}}`: StackPath resolves it.
    ValueFrom(ValueFrom<'a>),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom<'a> {
    pub instance_field_ref: InstanceFieldRef<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFieldRef<'a> {
    pub field_path: Str<'a>,
}

#[derive(Debug, Serialize)]
pub struct Port {
    pub port: i64,
    pub protocol: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct Resources {
    pub requests: BTreeMap<&'static str, Cow<'static, str>>,
    pub limits: BTreeMap<&'static str, Cow<'static, str>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount<'a> {
    pub slug: Str<'a>,
    pub mount_path: Str<'a>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe<'a> {
    #[serde(flatten)]
    pub handler: Handler<'a>,
    pub initial_delay_seconds: i32,
    pub timeout_seconds: i32,
    pub period_seconds: i32,
    pub success_threshold: i32,
    pub failure_threshold: i32,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Handler<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGet<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<Exec<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet<'a> {
    pub path: Str<'a>,
    pub port: i64,
    pub scheme: Str<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub http_headers: BTreeMap<Str<'a>, Str<'a>>,
}

#[derive(Debug, Serialize)]
pub struct TcpSocket {
    pub port: i64,
}

#[derive(Debug, Serialize)]
pub struct Exec<'a> {
    pub command: Vec<Str<'a>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<Handler<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<Handler<'a>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities<'a>>,
}

#[derive(Debug, Default, Serialize)]
pub struct Capabilities<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<Str<'a>>,
}

#[derive(Debug, Serialize)]
pub struct VolumeClaim<'a> {
    pub name: Str<'a>,
    pub slug: Str<'a>,
    pub spec: VolumeClaimSpec,
}

#[derive(Debug, Serialize)]
pub struct VolumeClaimSpec {
    pub resources: Resources,
}

#[derive(Debug, Serialize)]
pub struct RuntimeSettings<'a> {
    pub containers: ContainerRuntime<'a>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRuntime<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub share_process_namespace: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext<'a>>,
}

#[derive(Debug, Serialize)]
pub struct HostAlias<'a> {
    pub ip: Str<'a>,
    pub hostnames: Vec<Str<'a>>,
}

#[derive(Debug, Default, Serialize)]
pub struct DnsConfig<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<DnsOption<'a>>,
}

#[derive(Debug, Serialize)]
pub struct DnsOption<'a> {
    pub name: Str<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Str<'a>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<Str<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<Str<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Sysctl<'a> {
    pub name: Str<'a>,
    pub value: Str<'a>,
}
