//! Raw and API-server-defaulted pods give the same workload. The defaulted form comes from the
//! real kube-apiserver of the test control plane (`kubectl create --dry-run=server`, which
//! runs defaulting and admission, the ServiceAccount token volume included), not from a
//! hand-written imitation of it.

use std::path::Path;
use std::process::Command;

use local_cluster::Cluster;
use serde_json::{Value, json};
use vk_stackpath::manifest;
use vk_stackpath::policy::{Limits, PolicyEngine};
use vk_stackpath::translation::{self, Placement};

fn translate(engine: &PolicyEngine, text: &str, objects: &vk_stackpath::resolve::Objects) -> Value {
    let placement = Placement {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "defaulting".into(),
        host_ip: "192.0.2.10".into(),
        config_volumes: Default::default(),
    };
    let mut pod = manifest::read_pod("pod", text).unwrap();
    pod.bind(&placement.node_name);
    match translation::translate(engine, &pod.pod, &pod.json, objects, &placement) {
        Ok(t) => json!({"workload": t.workload, "warnings": t.warnings}),
        Err(e) => json!({"error": e.violations()}),
    }
}

#[test]
fn raw_and_apiserver_defaulted_pods_translate_the_same() {
    let cluster = Cluster::shared();
    let _logs = cluster.dump_logs_on_panic();
    let ns = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(cluster.new_namespace())
        .unwrap();
    let engine = PolicyEngine::builtin(Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    })
    .unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let objects = manifest::read_objects(
        "objects.yaml",
        &std::fs::read_to_string(golden.join("objects.yaml")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.ends_with(".pod.yaml") || file.contains(".defaulted.") {
            continue;
        }
        let mut pod: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        pod["metadata"]["namespace"] = json!(ns);
        let raw = serde_json::to_string(&pod).unwrap();
        let input = tmp.path().join(format!("{file}.json"));
        std::fs::write(&input, &raw).unwrap();
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(cluster.admin_kubeconfig())
            .args(["create", "--dry-run=server", "-o", "json", "-f"])
            .arg(&input)
            .output()
            .expect("kubectl runs");
        if !out.status.success() {
            // The API server refuses it (e.g. an unparsable quantity): so must the policy.
            let ours = translate(&engine, &raw, &objects);
            assert!(
                ours.get("error").is_some(),
                "{file}: the API server refused it ({}) but we translated it",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        let defaulted = String::from_utf8(out.stdout).unwrap();
        assert!(
            defaulted.contains("kube-api-access-"),
            "{file}: no ServiceAccount volume was added"
        );
        let a = translate(&engine, &raw, &objects);
        let b = translate(&engine, &defaulted, &objects);
        assert_eq!(a, b, "{file}: raw and API-server-defaulted forms differ");
        compared += 1;
    }
    assert!(compared >= 12, "only {compared} fixtures were compared");
}
