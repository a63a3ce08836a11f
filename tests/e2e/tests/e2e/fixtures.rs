//! Every docs/mapping.md fixture (`host/tests/golden/*.pod.yaml`) through the daemon: created with
//! real kubectl on the node, the workload the daemon creates at StackPath is the one
//! `vk-stackpath translate` prints for the same pod (which the golden tests pin), pods the policy
//! refuses go Failed with `ProviderFailed`, and deleting them all leaves no workload.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{CITY, Env, STACK, binary, phase};
use serde_json::Value;

use crate::assert_no_forbidden;

const T: Duration = Duration::from_secs(90);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/tests/golden")
}

/// The fixture in this test's namespace, bound to the node.
fn bound(text: &str, ns: &str, node: &str) -> String {
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("  namespace:"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.replacen(
        "\nmetadata:\n",
        &format!("\nmetadata:\n  namespace: {ns}\n"),
        1,
    )
    .replacen("\nspec:\n", &format!("\nspec:\n  nodeName: {node}\n"), 1)
}

fn pod_name(text: &str) -> String {
    let after = text.split("\nmetadata:\n").nth(1).unwrap_or_default();
    after
        .lines()
        .find_map(|l| l.trim().strip_prefix("name:"))
        .map(|n| n.trim().trim_matches('"').to_owned())
        .expect("fixture has metadata.name")
}

/// What `vk-stackpath translate` says for the pod: the workload and its warnings, or the error.
fn translate(env: &Env, pod: &Path) -> Result<(Value, usize), String> {
    let out = Command::new(binary())
        .arg("translate")
        .arg(pod)
        .arg("--objects")
        .arg(golden_dir().join("objects.yaml"))
        .args([
            "--node-name",
            &env.node,
            "--stack-id",
            STACK,
            "--city-code",
            CITY,
        ])
        .arg("--no-policy-cache")
        .output()
        .expect("running vk-stackpath translate");
    if out.status.success() {
        let warnings = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .count();
        let workload = serde_json::from_slice(&out.stdout).expect("translate prints JSON");
        Ok((workload, warnings))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every field of `want` is in `got` with the same value (StackPath adds its own: ids, phases).
fn contains(got: &Value, want: &Value, path: &str) -> Result<(), String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w.iter().try_for_each(|(k, wv)| match g.get(k) {
            Some(gv) => contains(gv, wv, &format!("{path}.{k}")),
            None => Err(format!("{path}.{k} missing; wanted {wv}")),
        }),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => g
            .iter()
            .zip(w)
            .enumerate()
            .try_for_each(|(i, (gv, wv))| contains(gv, wv, &format!("{path}[{i}]"))),
        _ if got == want => Ok(()),
        _ => Err(format!("{path}: got {got}, wanted {want}")),
    }
}

/// Values StackPath never returns (write-only credentials) are compared by presence.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "secretValue" || k == "password" {
                    *x = Value::String("<set>".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapping_fixture_runs_as_translate_says() -> anyhow::Result<()> {
    let env = Env::start("fixtures").await?;
    let _logs = env.cluster.dump_logs_on_panic();
    let daemon = env.start_daemon().await?;
    env.apply(&std::fs::read_to_string(golden_dir().join("objects.yaml"))?)?;

    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(golden_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // The defaulted form is the API server's copy of all-features (same pod).
            n.ends_with(".pod.yaml") && !n.contains(".defaulted.")
        })
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 15, "fixtures: {fixtures:?}");

    let mut running = Vec::new();
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    for path in &fixtures {
        let text = bound(&std::fs::read_to_string(path)?, &env.ns, &env.node);
        let name = pod_name(&text);
        let file = env.dir.join(format!("{name}.pod.yaml"));
        std::fs::write(&file, &text)?;
        let expected = translate(&env, &file);
        if let Err(e) = env.apply(&text) {
            // The API server's own validation (e.g. a malformed quantity): the daemon never
            // sees such a pod. Only fixtures the policy refuses may be refused here too.
            assert!(
                expected.is_err(),
                "{name}: the API server refused a pod translate accepts: {e}"
            );
            refused.push(name);
            continue;
        }
        match expected {
            Ok(workload) => running.push((name, workload)),
            Err(message) => failed.push((name, message)),
        }
    }
    assert!(running.len() >= 8, "running: {running:?}");

    for (name, expected) in &running {
        env.wait_pod(name, T, |p| phase(p) == "Running").await?;
        let workloads = env.workloads().await?;
        let w = workloads
            .iter()
            .find(|w| {
                w.metadata
                    .as_ref()
                    .and_then(|m| m.labels.get("vk-pod-name"))
                    == Some(name)
            })
            .unwrap_or_else(|| panic!("{name}: no workload at StackPath"));
        let (expected, warnings) = expected;
        let mut got = serde_json::to_value(&w.spec)?;
        let mut want = expected["spec"].clone();
        redact(&mut got);
        redact(&mut want);
        if let Err(e) = contains(&got, &want, "spec") {
            panic!("{name}: the workload the daemon created differs from `translate`: {e}");
        }
        assert_eq!(w.slug.as_deref(), expected["slug"].as_str(), "{name}");
        let labels = &w.metadata.as_ref().unwrap().labels;
        for (k, v) in expected["metadata"]["labels"].as_object().unwrap() {
            assert_eq!(labels.get(k).map(String::as_str), v.as_str(), "{name}: {k}");
        }
        // Every policy warning became an Event.
        if *warnings > 0 {
            let events = env.events(name).await?;
            let n = events
                .iter()
                .filter(|e| e.starts_with("PolicyWarning:"))
                .count();
            assert_eq!(n, *warnings, "{name}: {events:?}");
        }
    }
    for (name, message) in &failed {
        let pod = env.wait_pod(name, T, |p| phase(p) == "Failed").await?;
        let status = pod.status.unwrap_or_default();
        assert_eq!(status.reason.as_deref(), Some("ProviderFailed"), "{name}");
        // The same finding as translate's, whatever its wording around it.
        let got = status.message.unwrap_or_default();
        let field = message
            .split_whitespace()
            .find(|w| w.starts_with("spec.") || w.starts_with("metadata."))
            .map(|w| w.trim_end_matches(':'))
            .unwrap_or_else(|| panic!("{name}: no field path in {message}"));
        assert!(got.contains(field), "{name}: {got:?} lacks {field:?}");
    }
    eprintln!(
        "fixtures: {} running, {} failed by the policy, {} refused by the API server ({refused:?})",
        running.len(),
        failed.len(),
        refused.len()
    );

    // All deleted: no workload left behind.
    let out = env.kubectl(&["delete", "pods", "--all", "--wait=false"]);
    assert!(out.status.success(), "{out:?}");
    let names = running
        .iter()
        .map(|(n, _)| n)
        .chain(failed.iter().map(|(n, _)| n));
    for name in names {
        env.wait_gone(name, T).await?;
    }
    let deadline = tokio::time::Instant::now() + T;
    while !env.workloads().await?.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "workloads left: {:?}",
            env.workloads().await?
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_no_forbidden(&daemon.log_text());
    Ok(())
}
