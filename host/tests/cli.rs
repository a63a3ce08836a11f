//! The `vk-stackpath` binary as a user meets it: exit codes, stdout/stderr, messages.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn golden(name: &str) -> String {
    format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn vk(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vk-stackpath"))
        .args(args)
        .env("VK_POLICY_CACHE_DIR", env!("CARGO_TARGET_TMPDIR"))
        .env_remove("SP_CITY_CODE")
        .env_remove("SP_STACK_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn translate_prints_the_workload_and_warnings_apart() {
    let out = vk(
        &[
            "translate",
            &golden("unsupported.pod.yaml"),
            "--city-code",
            "lax",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let workload: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(workload["slug"], "default-unsupported");
    assert_eq!(
        workload["targets"]["city-code"]["spec"]["deployments"]["selectors"][0]["values"][0],
        "LAX"
    );
    assert_eq!(
        workload["metadata"]["labels"]["vk-node-name"],
        "stackpath-edge-provider-lax"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning: pod default/unsupported: spec.containers[0].livenessProbe.grpc: gRPC probes are not supported"), "{stderr}");
}

#[test]
fn translate_reads_stdin_and_redacts_secrets_unless_asked() {
    let pod = std::fs::read_to_string(golden("env.pod.yaml")).unwrap();
    let objects = golden("objects.yaml");
    let out = vk(&["translate", "-", "--objects", &objects], Some(&pod));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("\"secretValue\": \"***\""), "{shown}");
    assert!(!shown.contains("s3cr3t-value"));
    let out = vk(
        &["translate", "-", "--objects", &objects, "--show-secrets"],
        Some(&pod),
    );
    assert!(text(&out.stdout).contains("s3cr3t-value"));
}

#[test]
fn rejected_pod_exits_non_zero_with_the_field_path() {
    let out = vk(&["translate", &golden("unknown-named-port.pod.yaml")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.starts_with(
            "error: pod default/bad-probe: the pod was rejected by policy built-in default:"
        ),
        "{err}"
    );
    assert!(
        err.contains("  - spec.containers[1].livenessProbe.httpGet.port: named port `htpp`"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn missing_objects_are_named_with_a_hint() {
    let out = vk(&["translate", &golden("pull-secret.pod.yaml")], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("spec.imagePullSecrets[0]: image pull Secret `registry` not found in namespace `default`"), "{err}");
    assert!(
        err.contains(
            "hint: the pod refers to Secrets or ConfigMaps; pass them with --objects FILE"
        ),
        "{err}"
    );
}

#[test]
fn malformed_yaml_reports_its_line() {
    let out = vk(
        &["translate", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n spec: [\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: <stdin>: line 5, column"), "{err}");
}

#[test]
fn wrong_kind_and_wrong_types_are_explained() {
    let out = vk(
        &["translate", "-"],
        Some("kind: Deployment\nmetadata: {name: x}\n"),
    );
    assert!(text(&out.stderr).contains("expected kind Pod, found kind Deployment"));
    let out = vk(
        &["translate", "-"],
        Some(
            "kind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a, image: b, ports: [{containerPort: eighty}]}]}\n",
        ),
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("field spec.containers[0].ports[0].containerPort"),
        "{err}"
    );
}

#[test]
fn policy_info_and_check_describe_the_default_policy() {
    let out = vk(&["policy", "info"], None);
    assert!(out.status.success());
    let info = text(&out.stdout);
    assert!(
        info.contains("name:        default")
            && info.contains("contract:    stackpath:policy@0.2.0"),
        "{info}"
    );

    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("default.wasm");
    std::fs::write(&wasm, vk_stackpath::policy::DEFAULT_POLICY_WASM).unwrap();
    let out = vk(&["policy", "check", wasm.to_str().unwrap()], None);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("ok        all-features") && report.contains("passed its checks"),
        "{report}"
    );

    let cwasm = dir.path().join("default.cwasm");
    let out = vk(
        &[
            "policy",
            "compile",
            wasm.to_str().unwrap(),
            "-o",
            cwasm.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `policy compile` prints the SHA-256 as `sha256sum` does; a .cwasm is native code, loaded
    // only with that digest named.
    let printed = text(&out.stdout);
    let digest = printed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(digest.len(), 64, "{printed}");
    assert!(text(&out.stderr).contains(&format!("--precompiled-policy-sha256={digest}")));
    let pod = golden("minimal.pod.yaml");
    let translate = |extra: &[&str]| {
        let mut args = vec!["translate", &pod, "--policy", cwasm.to_str().unwrap()];
        args.extend(extra);
        vk(&args, None)
    };
    let out = translate(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("precompiled policy")
            && err.contains(&format!("--precompiled-policy-sha256={digest}")),
        "{err}"
    );
    let out = translate(&["--precompiled-policy-sha256", &"0".repeat(64)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let other = "0".repeat(64);
    let trusted = format!("--precompiled-policy-sha256={digest}");
    let out = translate(&["--precompiled-policy-sha256", &other, &trusted]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = translate(&["--precompiled-policy-sha256", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a SHA-256"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_policy_that_is_not_a_component_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0").unwrap();
    let out = vk(&["policy", "check", junk.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("junk.wasm: cannot load it") && err.contains("wasm32-wasip2"),
        "{err}"
    );
}
