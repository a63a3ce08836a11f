//! Property test across the boundary: whatever pod goes in, the real wasm policy's answer is
//! either a workload that passed the host's validation or the policy's own rejection, never a
//! crash and never output the host has to refuse.

use proptest::prelude::*;
use serde_json::{Value, json};
use vk_stackpath::policy::{CallContext, Limits, PolicyEngine, PolicyError};

fn container() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![
            Just("app:1"),
            Just(""),
            Just("registry/x@sha256:ab")
        ]),
        prop::option::of(prop_oneof![
            Just("100m"),
            Just("3"),
            Just("64"),
            Just("bad"),
            Just("1e3")
        ]),
        prop::option::of(prop_oneof![
            Just("1Gi"),
            Just("5G"),
            Just("300Gi"),
            Just("-2")
        ]),
        prop::collection::vec((prop::option::of("[a-z]{1,3}"), 0i64..70000), 0..3),
        prop::option::of(prop_oneof![
            Just(json!({"httpGet": {"port": "http"}})),
            Just(json!({"tcpSocket": {"port": 80}})),
            Just(json!({"exec": {"command": []}})),
            Just(json!({"grpc": {"port": 1}})),
            Just(json!({})),
        ]),
        prop::option::of(prop::collection::vec("[a-z]{1,4}", 0..2)),
        prop::option::of(prop::collection::vec("[a-z]{1,4}", 0..2)),
    )
        .prop_map(|(image, cpu, mem, ports, probe, command, args)| {
            let mut c = json!({"name": "c"});
            if let Some(i) = image {
                c["image"] = json!(i);
            }
            c["resources"] = json!({"limits": {}});
            if let Some(cpu) = cpu {
                c["resources"]["limits"]["cpu"] = json!(cpu);
            }
            if let Some(mem) = mem {
                c["resources"]["limits"]["memory"] = json!(mem);
            }
            c["ports"] = ports
                .into_iter()
                .map(|(n, p)| json!({"name": n, "containerPort": p}))
                .collect();
            if let Some(p) = probe {
                c["livenessProbe"] = p;
            }
            if let Some(cmd) = command {
                c["command"] = json!(cmd);
            }
            if let Some(a) = args {
                c["args"] = json!(a);
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn output_is_valid_or_a_rejection(containers in prop::collection::vec(container(), 0..3)) {
        static ENGINE: std::sync::OnceLock<PolicyEngine> = std::sync::OnceLock::new();
        let engine = ENGINE.get_or_init(|| PolicyEngine::builtin(Limits { cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()), ..Limits::default() }).unwrap());
        let containers: Vec<Value> = containers
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| { c["name"] = json!(format!("c{i}")); c })
            .collect();
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": containers}});
        match engine.translate(&pod.to_string(), &CallContext::default()) {
            Ok(t) => prop_assert!(!t.spec.containers.is_empty()),
            Err(PolicyError::Rejected { violations, .. }) => prop_assert!(!violations.is_empty()),
            Err(other) => prop_assert!(false, "unexpected: {other}"),
        }
    }
}
