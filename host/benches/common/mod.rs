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
    let resolved = resolve::resolve(&pod.pod, &objects).unwrap();
    let ctx = CallContext {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "bench".into(),
        env: resolved.env,
    };
    (pod.json, ctx)
}

/// The same context for the natively compiled mapping.
pub fn native_ctx(ctx: &CallContext) -> guest_default::api::Context {
    guest_default::api::Context {
        node_name: ctx.node_name.clone(),
        city_code: ctx.city_code.clone(),
        stack_id: ctx.stack_id.clone(),
        env: ctx
            .env
            .iter()
            .map(|e| guest_default::api::ResolvedEnv {
                container: e.container.clone(),
                name: e.name.clone(),
                value: e.value.clone(),
                from_secret: e.from_secret,
            })
            .collect(),
    }
}
