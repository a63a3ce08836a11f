//! The fixture both policy benchmarks run on: the all-features pod, bound to a node, with its
//! `valueFrom` references resolved as the daemon would.

use vk_stackpath::manifest;
use vk_stackpath::policy::CallContext;
use vk_stackpath::resolve;

const POD: &str = include_str!("../../tests/golden/all-features.pod.yaml");
const OBJECTS: &str = include_str!("../../tests/golden/objects.yaml");

/// The pod's JSON and the context the host would pass with it.
pub fn fixture() -> (String, CallContext) {
    let mut pod = manifest::read_pod("all-features", POD).unwrap();
    pod.bind("stackpath-edge-provider-dfw");
    let objects = manifest::read_objects("objects", OBJECTS).unwrap();
    let settings = resolve::ResolveSettings {
        host_ip: "192.0.2.10".into(),
        config_volumes: true,
    };
    let resolved = resolve::resolve(&pod.pod, &objects, &settings).unwrap();
    let ctx = CallContext {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "bench".into(),
        config_volumes: resolved
            .config_volumes
            .iter()
            .map(|v| v.description())
            .collect(),
        env: resolved.env,
    };
    (pod.json, ctx)
}

/// The same context for the natively compiled mapping (as the component glue builds it).
pub fn native_ctx(ctx: &CallContext) -> guest_default::api::Context {
    use guest_default::api::{self, EnvOrigin as NativeOrigin, EnvValue};
    use vk_stackpath::policy::{ConfigVolumeKind as K, EnvOrigin};
    api::Context {
        node_name: ctx.node_name.clone(),
        city_code: ctx.city_code.clone(),
        stack_id: ctx.stack_id.clone(),
        env: ctx
            .env
            .iter()
            .map(|e| api::ResolvedEnv {
                container: e.container.clone(),
                name: e.name.clone(),
                value: if e.from_secret {
                    EnvValue::Secret
                } else if let Some(p) = &e.instance_field {
                    EnvValue::InstanceField(p.clone())
                } else if e.size_limit {
                    EnvValue::SizeLimit
                } else {
                    EnvValue::Plain(e.value.clone().unwrap_or_default())
                },
                origin: match e.origin {
                    EnvOrigin::Env(i) => NativeOrigin::Env(i),
                    EnvOrigin::EnvFrom(i) => NativeOrigin::EnvFrom(i),
                },
            })
            .collect(),
        config_volumes: ctx
            .config_volumes
            .iter()
            .map(|v| api::ConfigVolume {
                name: v.name.clone(),
                kind: match v.kind {
                    K::ConfigMap => api::ConfigVolumeKind::ConfigMap,
                    K::Secret => api::ConfigVolumeKind::Secret,
                    K::DownwardApi => api::ConfigVolumeKind::DownwardApi,
                    K::Projected => api::ConfigVolumeKind::Projected,
                    K::EmptyDir => api::ConfigVolumeKind::EmptyDir,
                },
                files: v
                    .files
                    .iter()
                    .map(|f| api::ConfigFile {
                        path: f.path.clone(),
                        mode: f.mode,
                    })
                    .collect(),
                bytes: v.bytes,
            })
            .collect(),
    }
}
