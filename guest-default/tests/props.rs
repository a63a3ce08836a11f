//! Property tests of the mapping, run natively (the same code the component runs).

use guest_default::api::Context;
use guest_default::quantity::Quantity;
use guest_default::sizing::{SIZES, smallest_fitting};
use proptest::prelude::*;
use serde_json::{Value, json};

fn mem_q(mib: u64) -> Quantity {
    Quantity::parse(&format!("{mib}Mi")).unwrap()
}

proptest! {
    /// The chosen size holds the request, and no smaller size does.
    #[test]
    fn sizing_is_the_smallest_that_fits(milli in 0u64..60_000, mib in 0u64..300_000) {
        let cpu = Quantity::parse(&format!("{milli}m")).unwrap();
        let mem = mem_q(mib);
        let fits = |s: &guest_default::sizing::Size| {
            milli <= s.cpu_cores as u64 * 1000 && mib <= s.memory_gib as u64 * 1024
        };
        match smallest_fitting(&cpu, &mem) {
            Ok(size) => {
                prop_assert!(fits(&size));
                let idx = SIZES.iter().position(|s| *s == size).unwrap();
                for smaller in &SIZES[..idx] {
                    prop_assert!(!fits(smaller), "{} would fit {}m/{}Mi", smaller.name, milli, mib);
                }
            }
            Err(_) => prop_assert!(!SIZES.iter().any(fits)),
        }
    }

    /// Decimal and binary suffixes compare exactly against whole bytes.
    #[test]
    fn quantity_suffixes_are_exact(n in 0u64..1_000_000) {
        let bytes = Quantity::parse(&(n * 1024).to_string()).unwrap();
        let kib = Quantity::parse(&format!("{}Ki", n)).unwrap();
        prop_assert!(bytes.cmp_exact(&kib).is_eq());
        let dec = Quantity::parse(&(n * 1000).to_string()).unwrap();
        let k = Quantity::parse(&format!("{}k", n)).unwrap();
        prop_assert!(dec.cmp_exact(&k).is_eq());
        let milli = Quantity::parse(&format!("{n}m")).unwrap();
        let scaled = Quantity::parse(&format!("{}e-3", n)).unwrap();
        prop_assert!(milli.cmp_exact(&scaled).is_eq());
    }

    /// Any string: a quantity or an error, never a panic.
    #[test]
    fn quantity_parse_never_panics(s in ".{0,40}") {
        let _ = Quantity::parse(&s);
    }

    /// Arbitrary JSON anywhere in a pod: a translation or violations, never a panic.
    #[test]
    fn translate_never_panics(pod in arbitrary_pod()) {
        let _ = guest_default::translate(&pod.to_string(), &Context::default());
    }

    /// Arbitrary bytes as the pod.
    #[test]
    fn translate_never_panics_on_garbage(s in ".{0,200}") {
        let _ = guest_default::translate(&s, &Context::default());
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-zA-Z0-9:./@-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("500m"),
            Just("1.5"),
            Just("2Gi"),
            Just("1e3"),
            Just("http"),
            Just("-1")
        ]
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names a pod really has, so that generated values land in interesting places.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name"),
        Just("image"),
        Just("command"),
        Just("args"),
        Just("ports"),
        Just("containerPort"),
        Just("protocol"),
        Just("env"),
        Just("value"),
        Just("valueFrom"),
        Just("resources"),
        Just("requests"),
        Just("limits"),
        Just("cpu"),
        Just("memory"),
        Just("livenessProbe"),
        Just("httpGet"),
        Just("port"),
        Just("tcpSocket"),
        Just("exec"),
        Just("grpc"),
        Just("volumeMounts"),
        Just("mountPath"),
        Just("securityContext"),
        Just("runAsUser"),
        Just("capabilities"),
        Just("lifecycle"),
        Just("preStop"),
        Just("imagePullPolicy"),
        Just("csi"),
        Just("driver"),
        Just("volumeAttributes"),
        Just("size"),
    ]
    .prop_map(String::from)
}

fn arbitrary_pod() -> impl Strategy<Value = Value> {
    let container = || {
        prop::collection::btree_map(field_name(), json_value(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    };
    (
        prop::collection::vec(container(), 0..3),
        prop::collection::vec(container(), 0..2),
        json_value(),
        any::<Option<i64>>(),
    )
        .prop_map(|(containers, init, volumes, grace)| {
            json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {
                    "containers": containers,
                    "initContainers": init,
                    "volumes": [volumes],
                    "terminationGracePeriodSeconds": grace,
                }
            })
        })
}
