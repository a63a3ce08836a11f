//! The example policies of examples/policies, built as their authors would build them and run
//! through the real CLI: `policy compile`, `policy check`, `policy info` and `translate
//! --policy` on the fixtures in `fixtures/`, compared with `golden/<policy>/<fixture>.txt`
//! (`UPDATE_GOLDEN=1` rewrites them; review the diff).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use policy_examples_tests::{Result, python_annotate, rust_strict, target_dir};

/// The SHA-256 of each `.cwasm` this test compiled, as `policy compile` printed it.
static COMPILED: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());

/// The CLI, trusting the `.cwasm` files this test compiled: a precompiled policy is native
/// code, loaded only with `--precompiled-policy-sha256` naming it.
fn vk(args: &[&OsStr]) -> Result<Output> {
    let compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    let trust: Vec<OsString> = args
        .iter()
        .filter_map(|a| compiled.get(Path::new(a)))
        .map(|digest| format!("--precompiled-policy-sha256={digest}").into())
        .collect();
    drop(compiled);
    let mut all = args.to_vec();
    all.extend(trust.iter().map(OsString::as_os_str));
    policy_examples_tests::vk(&all)
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn fixtures() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(here().join("fixtures"))
        .expect("fixtures/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(OsStr::to_str).unwrap_or_default();
            name.ends_with(".yaml") && !name.ends_with(".objects.yaml")
        })
        .collect();
    found.sort();
    found
}

/// `policy compile` of `wasm` into `<target>/policies/<name>.cwasm`, once per test run.
fn compiled(name: &str, wasm: &Path, cell: &'static OnceLock<PathBuf>) -> PathBuf {
    cell.get_or_init(|| {
        let out = target_dir().join("policies").join(format!("{name}.cwasm"));
        let o = vk(&[
            "policy".as_ref(),
            "compile".as_ref(),
            wasm.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ])
        .expect("vk-stackpath runs");
        assert!(
            o.status.success(),
            "policy compile {name} failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let digest = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        COMPILED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(out.clone(), digest);
        out
    })
    .clone()
}

fn built(which: &str) -> Result<(PathBuf, PathBuf)> {
    static RUST: OnceLock<PathBuf> = OnceLock::new();
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    Ok(match which {
        "rust-strict" => {
            let wasm = rust_strict()?;
            (compiled(which, &wasm, &RUST), wasm)
        }
        "python-annotate" => {
            let wasm = python_annotate()?;
            (compiled(which, &wasm, &PYTHON), wasm)
        }
        other => panic!("no example policy {other}"),
    })
}

/// `translate --policy <policy> <fixture> [--objects <fixture>.objects.yaml]` as golden text;
/// the policy's path is replaced by `<policy>` so the text does not depend on the machine.
fn translate(policy: &Path, fixture: &Path) -> String {
    let mut args: Vec<&OsStr> = vec![
        "translate".as_ref(),
        "--policy".as_ref(),
        policy.as_os_str(),
        "--city-code".as_ref(),
        "LAX".as_ref(),
        "--stack-id".as_ref(),
        "example-stack".as_ref(),
        fixture.as_os_str(),
    ];
    let objects = fixture.with_extension("objects.yaml");
    if objects.is_file() {
        args.extend(["--objects".as_ref(), objects.as_os_str()]);
    }
    let o = vk(&args).expect("vk-stackpath runs");
    let text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        o.status.code().map_or("signal".into(), |c| c.to_string()),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    text.replace(&policy.display().to_string(), "<policy>")
}

fn check_golden(policy_name: &str) {
    let (cwasm, _) = built(policy_name).unwrap_or_else(|e| panic!("{e}"));
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = here().join("golden").join(policy_name);
    let mut mismatched = Vec::new();
    for fixture in fixtures() {
        let stem = fixture
            .file_stem()
            .and_then(OsStr::to_str)
            .unwrap_or_default();
        let golden = dir.join(format!("{stem}.txt"));
        let actual = translate(&cwasm, &fixture);
        if update {
            std::fs::create_dir_all(&dir).expect("creating golden/");
            std::fs::write(&golden, &actual).expect("writing a golden file");
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => mismatched.push(format!(
                "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                golden.display()
            )),
            Err(_) => mismatched.push(format!(
                "{} is missing; run with UPDATE_GOLDEN=1 and review it",
                golden.display()
            )),
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n\n"));
}

#[test]
fn rust_strict_matches_its_golden_outputs() {
    check_golden("rust-strict");
}

#[test]
fn python_annotate_matches_its_golden_outputs() {
    check_golden("python-annotate");
}

/// Both policies pass `policy check` and describe themselves, from `.wasm` and `.cwasm` alike.
#[test]
fn both_policies_pass_policy_check_and_info() {
    // python-annotate stays on contract 0.1.0: the daemon keeps loading such policies.
    for (name, contract) in [("rust-strict", "0.2.0"), ("python-annotate", "0.1.0")] {
        let (cwasm, wasm) = built(name).unwrap_or_else(|e| panic!("{e}"));
        for policy in [&wasm, &cwasm] {
            let o = vk(&["policy".as_ref(), "check".as_ref(), policy.as_os_str()]).expect("runs");
            assert!(
                o.status.success(),
                "policy check {}:\n{}{}",
                policy.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let o = vk(&[
                "policy".as_ref(),
                "info".as_ref(),
                "--policy".as_ref(),
                policy.as_os_str(),
            ])
            .expect("runs");
            let info = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "policy info {}", policy.display());
            assert!(info.contains(&format!("name:        {name}")), "{info}");
            assert!(
                info.contains(&format!("contract:    stackpath:policy@{contract}")),
                "{info}"
            );
        }
    }
}

fn workload(args: &[&OsStr]) -> Value {
    let o = vk(args).expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("translate prints JSON")
}

/// The value at a path of object keys (`Null` when absent).
fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

/// The strict policy's rules, checked against the default policy on the same pod rather than
/// against a recorded file: one size up, read-only root filesystem, the rest unchanged.
#[test]
fn rust_strict_is_the_default_one_size_up_and_read_only() {
    let (cwasm, _) = built("rust-strict").unwrap_or_else(|e| panic!("{e}"));
    let pod = here().join("fixtures/web.yaml");
    let default = workload(&["translate".as_ref(), pod.as_os_str()]);
    let strict = workload(&[
        "translate".as_ref(),
        "--policy".as_ref(),
        cwasm.as_os_str(),
        pod.as_os_str(),
    ]);
    let d = at(&default, &["spec", "containers", "nginx"]);
    let s = at(&strict, &["spec", "containers", "nginx"]);
    assert_eq!(
        at(d, &["resources", "requests", "cpu"]).as_str(),
        Some("1"),
        "default: SP-1"
    );
    assert_eq!(
        at(s, &["resources", "requests", "cpu"]).as_str(),
        Some("2"),
        "strict: SP-2"
    );
    assert_eq!(
        at(s, &["resources", "limits", "memory"]).as_str(),
        Some("4Gi"),
        "strict: SP-2"
    );
    assert_eq!(
        at(s, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(d, &["readinessProbe"]),
        at(s, &["readinessProbe"]),
        "probes unchanged"
    );
    assert_eq!(
        at(&default, &["metadata"]),
        at(&strict, &["metadata"]),
        "identity unchanged"
    );
}

/// The Python policy adds its annotations and keeps the pod's own.
#[test]
fn python_annotate_annotates_the_workload() {
    let (cwasm, _) = built("python-annotate").unwrap_or_else(|e| panic!("{e}"));
    let pod = here().join("fixtures/web.yaml");
    let w = workload(&[
        "translate".as_ref(),
        "--policy".as_ref(),
        cwasm.as_os_str(),
        "--city-code".as_ref(),
        "AMS".as_ref(),
        pod.as_os_str(),
    ]);
    let a = at(&w, &["metadata", "annotations"]);
    assert_eq!(
        at(a, &["policy.vk-stackpath.io/translated-by"]).as_str(),
        Some("python-annotate/0.1.0")
    );
    assert_eq!(
        at(a, &["policy.vk-stackpath.io/city"]).as_str(),
        Some("AMS")
    );
    assert_eq!(at(a, &["team"]).as_str(), Some("storefront"));
}
