//! Checks the model against StackPath's spec (`docs/stackpath/workload-api.oas2.json`): every JSON field
//! the model serializes exists in the matching spec definition with a compatible type, every
//! enum value the model can send is one the spec lists, and, for the definitions the model
//! covers, no spec property is left out (so a workload read back and PUT loses nothing).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::*;
use crate::secret::Secret;

const SPEC: &str = include_str!("../../../../docs/stackpath/workload-api.oas2.json");

struct Checker<'a> {
    defs: &'a serde_json::Map<String, Value>,
    errors: Vec<String>,
    /// (definition, property) pairs the examples exercised.
    seen: BTreeSet<(String, String)>,
    /// Definitions reached.
    reached: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(spec: &'a Value) -> Self {
        Self {
            defs: spec["definitions"].as_object().expect("definitions"),
            errors: Vec::new(),
            seen: BTreeSet::new(),
            reached: BTreeSet::new(),
        }
    }

    fn def(&self, name: &str) -> &'a Value {
        self.defs
            .get(name)
            .unwrap_or_else(|| panic!("no definition {name} in the spec"))
    }

    /// Follows `$ref`s, returning the definition name (if any) and its schema.
    fn resolve(&mut self, schema: &'a Value, name: Option<String>) -> (Option<String>, &'a Value) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let n = r.trim_start_matches("#/definitions/").to_owned();
            self.reached.insert(n.clone());
            let d = self.def(&n);
            return self.resolve(d, Some(n));
        }
        (name, schema)
    }

    /// Properties of a schema, `allOf` parts merged, each with the definition that owns it.
    fn properties(
        &mut self,
        schema: &'a Value,
        owner: Option<String>,
    ) -> BTreeMap<String, (Option<String>, &'a Value)> {
        let mut props = BTreeMap::new();
        if let Some(p) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                props.insert(k.clone(), (owner.clone(), v));
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                let (part_name, part) = self.resolve(part, None);
                let part_owner = part_name.or_else(|| owner.clone());
                props.extend(self.properties(part, part_owner));
            }
        }
        props
    }

    fn check(&mut self, schema: &'a Value, value: &Value, path: &str) {
        let (name, schema) = self.resolve(schema, None);
        let label = name.clone().unwrap_or_else(|| "(inline)".to_owned());
        // A discriminated base (`apiStatusDetail`): check against the concrete type.
        if schema.get("discriminator").is_some()
            && let Some(t) = value.get("@type").and_then(Value::as_str)
        {
            let concrete = t.rsplit('/').next().unwrap_or(t).to_owned();
            if self.defs.contains_key(&concrete) {
                let r = json!({"$ref": format!("#/definitions/{concrete}")});
                let r: &'a Value = Box::leak(Box::new(r));
                return self.check(r, value, path);
            }
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let props = self.properties(schema, name.clone());
        let is_object = ty == Some("object")
            || !props.is_empty()
            || schema.get("additionalProperties").is_some();
        if is_object {
            let Some(obj) = value.as_object() else {
                self.errors
                    .push(format!("{path}: {label} is an object, model sent {value}"));
                return;
            };
            for (k, v) in obj {
                let child = format!("{path}.{k}");
                if let Some((owner, p)) = props.get(k) {
                    if let Some(n) = owner {
                        self.seen.insert((n.clone(), k.clone()));
                    }
                    self.check(p, v, &child);
                } else if let Some(ap) = schema.get("additionalProperties") {
                    self.check(ap, v, &child);
                } else {
                    self.errors
                        .push(format!("{child}: field {k:?} is not in {label}"));
                }
            }
            return;
        }
        match ty {
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.check(&schema["items"], item, &format!("{path}[{i}]"));
                    }
                }
                None => self
                    .errors
                    .push(format!("{path}: {label} is an array, model sent {value}")),
            },
            Some("string") => match value.as_str() {
                Some(s) => {
                    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                        && !allowed.iter().any(|a| a == s)
                    {
                        self.errors
                            .push(format!("{path}: {s:?} is not a value of {label}"));
                    }
                }
                None => self
                    .errors
                    .push(format!("{path}: {label} is a string, model sent {value}")),
            },
            Some("integer") => {
                if !(value.is_i64() || value.is_u64()) {
                    self.errors
                        .push(format!("{path}: {label} is an integer, model sent {value}"));
                }
            }
            Some("number") => {
                if !value.is_number() {
                    self.errors
                        .push(format!("{path}: {label} is a number, model sent {value}"));
                }
            }
            Some("boolean") => {
                if !value.is_boolean() {
                    self.errors
                        .push(format!("{path}: {label} is a boolean, model sent {value}"));
                }
            }
            other => self.errors.push(format!(
                "{path}: unhandled schema type {other:?} in {label}"
            )),
        }
    }

    fn check_root<T: Serialize>(&mut self, definition: &str, value: &T) {
        let json = serde_json::to_value(value).expect("serialize");
        let r: &'a Value = Box::leak(Box::new(
            json!({"$ref": format!("#/definitions/{definition}")}),
        ));
        self.check(r, &json, definition);
    }
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_764_000_000 + s, 0)
        .single()
        .expect("time")
}

fn map<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn full_metadata() -> Metadata {
    Metadata {
        annotations: map(&[("a", "b".to_owned())]),
        labels: map(&[("vk-pod-name", "web".to_owned())]),
        created_at: Some(t(0)),
        updated_at: Some(t(1)),
        delete_requested_at: Some(t(2)),
        version: Some("3".into()),
    }
}

fn full_probe() -> Probe {
    Probe {
        http_get: Some(HttpGetAction {
            path: Some("/healthz".into()),
            port: Some(8080),
            scheme: Some("HTTP".into()),
            http_headers: map(&[("X-Probe", "1".to_owned())]),
        }),
        tcp_socket: Some(TcpSocketAction { port: Some(8080) }),
        exec: Some(ExecAction {
            command: strings(&["true"]),
        }),
        initial_delay_seconds: Some(1),
        timeout_seconds: Some(1),
        period_seconds: Some(10),
        success_threshold: Some(1),
        failure_threshold: Some(3),
    }
}

fn full_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: map(&[("cpu", "1".to_owned()), ("memory", "2Gi".to_owned())]),
        limits: map(&[("cpu", "1".to_owned()), ("memory", "2Gi".to_owned())]),
    }
}

fn full_ports() -> BTreeMap<String, InstancePort> {
    map(&[(
        "http",
        InstancePort {
            port: Some(80),
            protocol: Some("TCP".into()),
            enable_implicit_network_policy: Some(true),
        },
    )])
}

fn full_mounts() -> Vec<InstanceVolumeMount> {
    vec![InstanceVolumeMount {
        slug: Some("data".into()),
        mount_path: Some("/data".into()),
    }]
}

fn full_container() -> ContainerSpec {
    let handler = LifecycleHandler {
        http_get: full_probe().http_get,
        tcp_socket: full_probe().tcp_socket,
        exec: full_probe().exec,
    };
    ContainerSpec {
        image: Some("nginx:1.27".into()),
        command: strings(&["nginx"]),
        args: strings(&["-g", "daemon off;"]),
        working_dir: Some("/".into()),
        env: map(&[
            ("PLAIN", EnvironmentVariable::value("v")),
            ("SECRET", EnvironmentVariable::secret("s3cr3t")),
            (
                "FROM",
                EnvironmentVariable {
                    value_from: Some(EnvironmentVariableSource {
                        instance_field_ref: Some(InstanceFieldRef {
                            field_path: Some(".ipAddress".into()),
                            optional: Some(true),
                        }),
                    }),
                    ..EnvironmentVariable::default()
                },
            ),
        ]),
        ports: full_ports(),
        liveness_probe: Some(full_probe()),
        readiness_probe: Some(full_probe()),
        startup_probe: Some(full_probe()),
        resources: Some(full_resources()),
        volume_mounts: full_mounts(),
        lifecycle: Some(ContainerLifecycle {
            post_start: Some(handler.clone()),
            pre_stop: Some(handler),
        }),
        termination_message_path: Some("/dev/termination-log".into()),
        termination_message_policy: Some(TerminationMessagePolicy::File),
        image_pull_policy: Some(ImagePullPolicy::IfNotPresent),
        security_context: Some(ContainerSecurityContext {
            run_as_user: Some("1000".into()),
            run_as_group: Some("1000".into()),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(ContainerCapabilities {
                add: strings(&["cap_net_bind_service"]),
                drop: strings(&["cap_kill"]),
            }),
        }),
    }
}

fn full_vm() -> VirtualMachineSpec {
    VirtualMachineSpec {
        image: Some("stackpath-edge/ubuntu-2404:default".into()),
        user_data: Some("I2Nsb3VkLWNvbmZpZw==".into()),
        ports: full_ports(),
        liveness_probe: Some(full_probe()),
        readiness_probe: Some(full_probe()),
        resources: Some(full_resources()),
        volume_mounts: full_mounts(),
    }
}

fn full_runtime() -> RuntimeSettings {
    let aliases = vec![HostAlias {
        ip: Some("10.0.0.1".into()),
        hostnames: strings(&["db"]),
    }];
    let dns = DnsConfig {
        nameservers: strings(&["1.1.1.1"]),
        searches: strings(&["svc.local"]),
        options: vec![DnsConfigOption {
            name: Some("ndots".into()),
            value: Some("2".into()),
        }],
    };
    RuntimeSettings {
        containers: Some(ContainerRuntimeSettings {
            termination_grace_period_seconds: Some("30".into()),
            share_process_namespace: Some(true),
            security_context: Some(InstanceSecurityContext {
                run_as_user: Some("1000".into()),
                run_as_group: Some("1000".into()),
                run_as_non_root: Some(true),
                supplemental_groups: strings(&["2000"]),
                sysctls: vec![Sysctl {
                    name: Some("net.core.somaxconn".into()),
                    value: Some("1024".into()),
                }],
            }),
            host_aliases: aliases.clone(),
            dns_config: Some(dns.clone()),
        }),
        virtual_machines: Some(VmRuntimeSettings {
            host_aliases: aliases,
            dns_config: Some(dns),
        }),
    }
}

pub(crate) fn full_workload() -> Workload {
    Workload {
        stack_id: Some("demo-stack".into()),
        id: Some("0b9a1c5e-0000-4000-8000-000000000001".into()),
        name: Some("default-web".into()),
        slug: Some("default-web".into()),
        metadata: Some(full_metadata()),
        spec: Some(WorkloadSpec {
            network_interfaces: vec![NetworkInterface {
                network: Some("default".into()),
                ip_families: vec![IpFamily::IPv4, IpFamily::IPv6],
                subnet: Some("s4".into()),
                ipv6_subnet: Some("s6".into()),
                enable_one_to_one_nat: Some(true),
            }],
            init_containers: map(&[("init", full_container())]),
            containers: map(&[("app", full_container())]),
            virtual_machines: map(&[("vm", full_vm())]),
            volume_claim_templates: vec![VolumeClaim {
                stack_id: Some("demo-stack".into()),
                id: Some("vc-1".into()),
                name: Some("data".into()),
                slug: Some("data".into()),
                metadata: Some(full_metadata()),
                spec: Some(VolumeClaimSpec {
                    resources: Some(ResourceRequirements {
                        requests: map(&[("storage", "1Gi".to_owned())]),
                        limits: map(&[("storage", "1Gi".to_owned())]),
                    }),
                    storage_class: Some("stackpath-edge/san".into()),
                }),
                phase: Some(VolumeClaimPhase::Bound),
            }],
            image_pull_credentials: vec![ImagePullCredential {
                docker_registry: Some(DockerRegistryCredentials {
                    server: Some("registry.example.com".into()),
                    username: Some("user".into()),
                    password: Some(Secret::new("pw")),
                    email: Some("a@example.com".into()),
                }),
            }],
            runtime: Some(full_runtime()),
        }),
        targets: map(&[(
            "city-code",
            Target {
                spec: Some(TargetSpec {
                    deployment_scope: Some("cityCode".into()),
                    deployments: Some(DeploymentSpec {
                        min_replicas: Some(1),
                        max_replicas: Some(1),
                        scale_settings: Some(ScaleSettings {
                            metrics: vec![MetricSpec {
                                metric: Some("cpu".into()),
                                average_value: Some("500m".into()),
                                average_utilization: Some(50),
                            }],
                        }),
                        selectors: vec![MatchExpression {
                            key: Some("cityCode".into()),
                            operator: Some("in".into()),
                            values: strings(&["DFW"]),
                        }],
                    }),
                }),
            },
        )]),
        status: Some(WorkloadStatus::Active),
    }
}

fn full_location() -> Location {
    Location {
        name: Some("Dallas".into()),
        city: Some("Dallas".into()),
        city_code: Some("DFW".into()),
        subdivision: Some("Texas".into()),
        subdivision_code: Some("TX".into()),
        country: Some("United States".into()),
        country_code: Some("US".into()),
        region: Some("Texas".into()),
        region_code: Some("US-TX".into()),
        continent: Some("North America".into()),
        continent_code: Some("NA".into()),
        latitude: Some(32.9),
        longitude: Some(-97.0),
    }
}

fn full_container_status() -> ContainerStatus {
    ContainerStatus {
        name: Some("app".into()),
        phase: Some(ContainerPhase::Running),
        started_at: Some(t(10)),
        finished_at: Some(t(20)),
        waiting: Some(ContainerStateWaiting {
            reason: Some("Pulling".into()),
            message: Some("m".into()),
        }),
        running: Some(ContainerStateRunning {
            started_at: Some(t(10)),
        }),
        terminated: Some(ContainerStateTerminated {
            exit_code: Some(1),
            reason: Some("Error".into()),
            message: Some("m".into()),
            started_at: Some(t(10)),
            finished_at: Some(t(20)),
        }),
        ready: Some(true),
        restart_count: Some(2),
        container_id: Some("c-1".into()),
    }
}

fn full_instance() -> Instance {
    Instance {
        stack_id: Some("demo-stack".into()),
        workload_id: Some("w-1".into()),
        id: Some("i-1".into()),
        name: Some("default-web-city-code-dfw-0".into()),
        metadata: Some(full_metadata()),
        location: Some(full_location()),
        phase: Some(InstancePhase::Running),
        ip_address: Some("10.128.0.2".into()),
        external_ip_address: Some("203.0.113.2".into()),
        ipv6_address: Some("fd00::2".into()),
        external_ipv6_address: Some("2001:db8::2".into()),
        created_at: Some(t(0)),
        started_at: Some(t(5)),
        deleted_at: Some(t(100)),
        scheduled_at: Some(t(1)),
        network_interfaces: vec![NetworkInterfaceStatus {
            network: Some("default".into()),
            ip_address: Some("10.128.0.2".into()),
            ip_address_aliases: strings(&["10.128.0.3"]),
            gateway: Some("10.128.0.1".into()),
            ipv6_address: Some("fd00::2".into()),
            ipv6_address_aliases: strings(&["fd00::3"]),
            ipv6_gateway: Some("fd00::1".into()),
        }],
        resources: Some(full_resources()),
        containers: map(&[("app", full_container())]),
        container_statuses: vec![full_container_status()],
        init_containers: map(&[("init", full_container())]),
        init_container_statuses: vec![full_container_status()],
        virtual_machines: map(&[("vm", full_vm())]),
        virtual_machine_statuses: vec![VirtualMachineStatus {
            name: Some("vm".into()),
            phase: Some(VirtualMachinePhase::Running),
            reason: Some("r".into()),
            message: Some("m".into()),
        }],
        runtime: Some(full_runtime()),
        reason: Some("r".into()),
        message: Some("m".into()),
    }
}

fn full_page_info() -> PageInfo {
    PageInfo {
        total_count: Some("1".into()),
        has_previous_page: Some(false),
        has_next_page: Some(true),
        start_cursor: Some("0".into()),
        end_cursor: Some("1".into()),
    }
}

fn full_metrics() -> Metrics {
    let sample = DataValue {
        unix_time: Some("1764000000".into()),
        value: Some("0.25".into()),
    };
    Metrics {
        status: Some(MetricsStatus::Success),
        data: Some(MetricsData {
            matrix: Some(DataMatrix {
                results: vec![DataMatrixResult {
                    metric: map(&[("__name__", "cpu".to_owned())]),
                    values: vec![sample.clone()],
                }],
            }),
            vector: Some(DataVector {
                results: vec![DataVectorResult {
                    metric: map(&[("__name__", "memory".to_owned())]),
                    value: Some(sample),
                }],
            }),
        }),
        error_type: Some("none".into()),
        error: Some("none".into()),
        warnings: strings(&["w"]),
    }
}

fn full_api_status() -> ApiStatus {
    ApiStatus {
        code: Some(3),
        message: Some("bad".into()),
        details: vec![ApiStatusDetail {
            type_url: "stackpath.rpc.BadRequest".into(),
            fields: map(&[(
                "fieldViolations",
                json!([{"field": "workload.slug", "description": "too long"}]),
            )]),
        }],
    }
}

#[test]
fn model_matches_spec() {
    let spec: Value = serde_json::from_str(SPEC).expect("spec parses");
    let mut c = Checker::new(&spec);

    let workload = full_workload();
    c.check_root("v1Workload", &workload);
    c.check_root(
        "v1CreateWorkloadRequest",
        &WorkloadRequest {
            workload: &workload,
        },
    );
    c.check_root(
        "v1PutWorkloadRequest",
        &WorkloadRequest {
            workload: &workload,
        },
    );
    c.check_root(
        "v1GetWorkloadResponse",
        &WorkloadResponse {
            workload: Some(workload.clone()),
        },
    );
    c.check_root(
        "v1GetWorkloadsResponse",
        &Page {
            page_info: Some(full_page_info()),
            results: vec![workload.clone()],
        },
    );
    c.check_root(
        "v1GetWorkloadInstanceResponse",
        &InstanceResponse {
            instance: Some(full_instance()),
        },
    );
    c.check_root(
        "v1GetWorkloadInstancesResponse",
        &Page {
            page_info: Some(full_page_info()),
            results: vec![full_instance()],
        },
    );
    c.check_root(
        "v1GetLocationsResponse",
        &Page {
            page_info: Some(full_page_info()),
            results: vec![full_location()],
        },
    );
    c.check_root("prometheusMetrics", &full_metrics());
    c.check_root("stackpathapiStatus", &full_api_status());
    // Every enum value the model can produce.
    for phase in [
        InstancePhase::Unspecified,
        InstancePhase::Starting,
        InstancePhase::Running,
        InstancePhase::Failed,
        InstancePhase::Completed,
        InstancePhase::Scheduling,
        InstancePhase::Stopped,
        InstancePhase::Deleting,
    ] {
        c.check_root("workloadv1InstanceInstancePhase", &phase);
    }
    for phase in [
        ContainerPhase::Unspecified,
        ContainerPhase::Starting,
        ContainerPhase::Running,
        ContainerPhase::Failed,
        ContainerPhase::Stopped,
    ] {
        c.check_root("v1ContainerStatusContainerPhase", &phase);
    }
    for s in [
        WorkloadStatus::Active,
        WorkloadStatus::Suspended,
        WorkloadStatus::BillingSuspended,
        WorkloadStatus::Inactive,
    ] {
        c.check_root("v1WorkloadStatus", &s);
    }
    for p in [
        ImagePullPolicy::Unspecified,
        ImagePullPolicy::Always,
        ImagePullPolicy::IfNotPresent,
    ] {
        c.check_root("v1ContainerImagePullPolicy", &p);
    }
    for p in [
        TerminationMessagePolicy::Unspecified,
        TerminationMessagePolicy::File,
        TerminationMessagePolicy::FallbackToLogsOnError,
    ] {
        c.check_root("v1ContainerTerminationMessagePolicy", &p);
    }
    for f in [IpFamily::Unspecified, IpFamily::IPv4, IpFamily::IPv6] {
        c.check_root("v1IPFamily", &f);
    }
    for p in [
        VolumeClaimPhase::Unspecified,
        VolumeClaimPhase::Pending,
        VolumeClaimPhase::Unbound,
        VolumeClaimPhase::Bound,
    ] {
        c.check_root("VolumeClaimVolumeClaimPhase", &p);
    }
    for p in [
        VirtualMachinePhase::Unknown,
        VirtualMachinePhase::Pending,
        VirtualMachinePhase::Scheduling,
        VirtualMachinePhase::Starting,
        VirtualMachinePhase::Running,
        VirtualMachinePhase::Stopped,
        VirtualMachinePhase::Failed,
    ] {
        c.check_root("VirtualMachineStatusPhase", &p);
    }
    for s in [MetricsStatus::Success, MetricsStatus::Error] {
        c.check_root("prometheusMetricsStatus", &s);
    }
    for t in [MetricsType::Bandwidth, MetricsType::Instance] {
        c.check_root("v1GetMetricsRequestType", &t);
    }
    for g in [
        MetricsGranularity::Default,
        MetricsGranularity::OneMinute,
        MetricsGranularity::FiveMinutes,
        MetricsGranularity::OneHour,
        MetricsGranularity::OneDay,
    ] {
        c.check_root("v1GetMetricsRequestGranularity", &g);
    }
    for g in [MetricsGroupBy::None, MetricsGroupBy::InstanceName] {
        c.check_root("GetMetricsRequestGroupBy", &g);
    }

    assert!(
        c.errors.is_empty(),
        "model differs from the spec:\n{}",
        c.errors.join("\n")
    );

    // Completeness: every property of every definition reached was exercised, so the model
    // has a field for each (the examples are fully populated).
    let mut missing = Vec::new();
    let reached: Vec<String> = c.reached.iter().cloned().collect();
    for name in &reached {
        let def = c.def(name);
        let props = c.properties(def, Some(name.clone()));
        for (p, (owner, _)) in &props {
            let owner = owner.clone().unwrap_or_else(|| name.clone());
            if !c.seen.contains(&(owner, p.clone())) {
                missing.push(format!("{name}.{p}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "spec properties the model lacks or the examples leave empty:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_spec_enum_value_deserializes() {
    let spec: Value = serde_json::from_str(SPEC).expect("spec parses");
    let defs = spec["definitions"].as_object().expect("definitions");
    fn values(defs: &serde_json::Map<String, Value>, name: &str) -> Vec<Value> {
        defs[name]["enum"].as_array().expect("enum").clone()
    }
    // Request-side enums are strict: each spec value must map to its own variant and back.
    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(
        defs: &serde_json::Map<String, Value>,
        name: &str,
    ) {
        for v in values(defs, name) {
            let parsed: T =
                serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name} {v}: {e}"));
            assert_eq!(
                serde_json::to_value(parsed).expect("serialize"),
                v,
                "{name}"
            );
        }
    }
    round_trip::<ImagePullPolicy>(defs, "v1ContainerImagePullPolicy");
    round_trip::<TerminationMessagePolicy>(defs, "v1ContainerTerminationMessagePolicy");
    round_trip::<IpFamily>(defs, "v1IPFamily");
    round_trip::<InstancePhase>(defs, "workloadv1InstanceInstancePhase");
    round_trip::<ContainerPhase>(defs, "v1ContainerStatusContainerPhase");
    round_trip::<WorkloadStatus>(defs, "v1WorkloadStatus");
    round_trip::<VolumeClaimPhase>(defs, "VolumeClaimVolumeClaimPhase");
    round_trip::<MetricsGranularity>(defs, "v1GetMetricsRequestGranularity");
    round_trip::<MetricsType>(defs, "v1GetMetricsRequestType");
    round_trip::<MetricsGroupBy>(defs, "GetMetricsRequestGroupBy");
}

#[test]
fn round_trips_and_is_deterministic() {
    let w = full_workload();
    let a = serde_json::to_string(&w).expect("serialize");
    let back: Workload = serde_json::from_str(&a).expect("deserialize");
    assert_eq!(back, w);
    assert_eq!(serde_json::to_string(&back).expect("serialize"), a);
}

#[test]
fn spec_types_refuse_unknown_fields_but_responses_accept_them() {
    let err =
        serde_json::from_value::<WorkloadSpec>(json!({"containers": {}, "hostNetwork": true}))
            .expect_err("unknown spec field must fail");
    assert!(err.to_string().contains("hostNetwork"), "{err}");
    let err = serde_json::from_value::<ContainerSpec>(json!({"image": "x", "privileged": true}))
        .expect_err("unknown container field must fail");
    assert!(err.to_string().contains("privileged"), "{err}");
    assert!(serde_json::from_value::<Probe>(json!({"grpc": {"port": 1}})).is_err());

    let inst: Instance =
        serde_json::from_value(json!({"name": "x", "phase": "HIBERNATING", "newField": 1}))
            .expect("instances accept unknown fields and phases");
    assert_eq!(inst.phase, Some(InstancePhase::Unspecified));
    let st: ContainerStatus =
        serde_json::from_value(json!({"phase": "PAUSED", "extra": {}})).expect("status");
    assert_eq!(st.phase, Some(ContainerPhase::Unspecified));
    let w: Workload =
        serde_json::from_value(json!({"slug": "a", "status": "ARCHIVED", "extra": 1}))
            .expect("workload");
    assert_eq!(w.status, Some(WorkloadStatus::Unknown));
}

#[test]
fn secrets_do_not_show_in_debug() {
    let w = full_workload();
    let dbg = format!("{w:?}");
    assert!(!dbg.contains("s3cr3t"), "env secretValue leaked in Debug");
    assert!(!dbg.contains("\"pw\""), "registry password leaked in Debug");
    // …but they do go on the wire.
    let wire = serde_json::to_string(&w).expect("serialize");
    assert!(wire.contains("\"secretValue\":\"s3cr3t\""));
    assert!(wire.contains("\"password\":\"pw\""));
}
