//! Golden tests: every fixture pod in `tests/golden/` goes through the real default policy
//! component (the embedded wasm) and the host's resolution, validation and assembly; the result
//! must equal `<name>.expected.json`. `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the
//! expected files (review the diff before committing). A `<name>.defaulted.pod.yaml` (the pod as
//! the API server stores it) must give exactly what `<name>.pod.yaml` gives.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vk_stackpath::manifest;
use vk_stackpath::materialize::ConfigVolumes;
use vk_stackpath::policy::{Limits, PolicyEngine};
use vk_stackpath::resolve::InvalidEnvNames;
use vk_stackpath::translation::{self, Placement, TranslateError};

/// Values in objects.yaml that must never show up in warnings or errors (the Secrets' values,
/// and in base64 those the config volumes carry).
const SECRET_VALUES: &[&str] = &[
    "s3cr3t-value",
    "pull-pass",
    "gh-token",
    "tls-key-material",
    "dGxzLWtleS1tYXRlcmlhbA",
    "api-token-value",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn placement() -> Placement {
    Placement {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "golden-stack".into(),
        host_ip: "192.0.2.10".into(),
        config_volumes: Default::default(),
    }
}

fn run(engine: &PolicyEngine, path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let objects = manifest::read_objects(
        "objects.yaml",
        &std::fs::read_to_string(dir().join("objects.yaml")).unwrap(),
    )
    .unwrap();
    let mut pod = manifest::read_pod(&path.display().to_string(), &text).unwrap();
    let mut placement = placement();
    // A fixture that starts with this line runs as with `--config-volumes=skip`.
    if text.starts_with("# vk: --config-volumes=skip") {
        placement.config_volumes = ConfigVolumes::Skip;
    }
    pod.bind(&placement.node_name);
    match translation::translate(engine, &pod.pod, &pod.json, &objects, &placement) {
        Ok(t) => {
            let mut out = json!({
                "workload": serde_json::to_value(&t.workload).unwrap(),
                "warnings": t.warnings,
            });
            // The kubelet's InvalidEnvironmentVariableNames Events, when there are any.
            if !t.invalid_env_names.is_empty() {
                out["events"] = t
                    .invalid_env_names
                    .iter()
                    .map(|i| json!({"reason": InvalidEnvNames::REASON, "message": i.message()}))
                    .collect();
            }
            out
        }
        Err(e) => {
            let kind = match &e {
                TranslateError::Pod(_) => "pod".to_string(),
                TranslateError::Policy(p) => p.metric_label().to_string(),
            };
            json!({ "error": { "kind": kind, "violations": e.violations(), "message": e.to_string() } })
        }
    }
}

#[test]
fn golden_fixtures() {
    let engine = PolicyEngine::builtin(Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    })
    .expect("the default policy loads");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".pod.yaml"))
        .collect();
    // Raw forms first, so that in update mode their expectations exist before the
    // defaulted forms are held to them.
    fixtures.sort_by_key(|p| (p.to_string_lossy().contains(".defaulted."), p.clone()));
    assert!(fixtures.len() >= 15, "fixtures went missing: {fixtures:?}");
    let mut failures = Vec::new();
    for pod in &fixtures {
        let file = pod.file_name().unwrap().to_string_lossy().to_string();
        let name = file.trim_end_matches(".pod.yaml");
        // The defaulted form is held to the raw form's expectation.
        let expected_name = name.trim_end_matches(".defaulted");
        let expected_path = dir().join(format!("{expected_name}.expected.json"));
        let got = run(&engine, pod);
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        for secret in SECRET_VALUES {
            let shown = ["warnings", "error", "events"]
                .iter()
                .filter_map(|k| got.get(k).map(Value::to_string))
                .collect::<String>();
            assert!(
                !shown.contains(secret),
                "{file}: a Secret value leaked: {shown}"
            );
        }
        if update && name == expected_name {
            std::fs::write(&expected_path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} is missing; run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        if want != text {
            failures.push(format!(
                "--- {file} differs from {expected_name}.expected.json; got:\n{text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `benches/policy_interleaved.rs` measures what the deadline costs with an engine built
/// without it; that comparison means something only if both engines map a pod identically.
#[test]
fn engine_without_deadline_maps_the_same() {
    let limits = Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    };
    let bounded = PolicyEngine::builtin(limits.clone()).unwrap();
    let unbounded = vk_stackpath::policy::parts::builtin_without_deadline(limits).unwrap();
    let pod = dir().join("all-features.pod.yaml");
    let got = run(&unbounded, &pod);
    assert!(got.get("workload").is_some(), "{got}");
    assert_eq!(got, run(&bounded, &pod));
}
