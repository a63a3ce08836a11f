//! The engine treats a policy as untrusted code: these tests run a hostile component (built
//! here from `tests/hostile-policy`) and check that each misbehaviour becomes a typed error for
//! that one call, that no ambient authority (files, network, environment) is reachable, and
//! that the same engine serves the next pod normally afterwards.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vk_stackpath::policy::{
    CallContext, DEFAULT_POLICY_WASM, Limits, PolicyEngine, PolicyError, PolicySource, ResolvedEnv,
};

/// Builds the hostile component once per test binary (a nested cargo into the guest target
/// directory that the default policy's build uses too).
fn hostile_wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"))
            .join("guest");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace)
            .args([
                "build",
                "-p",
                "hostile-policy",
                "--target",
                "wasm32-wasip2",
                "--release",
                "--target-dir",
            ])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the hostile policy failed");
        target.join("wasm32-wasip2/release/hostile_policy.wasm")
    })
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(300),
        memory_bytes: 32 << 20,
        max_concurrent: 2,
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::from_file(hostile_wasm(), limits()).expect("the hostile policy loads")
}

fn pod(mode: &str) -> String {
    format!(
        r#"{{"metadata":{{"name":"p","namespace":"default","annotations":{{"hostile":"{mode}"}}}},"spec":{{"containers":[{{"name":"app","image":"app:1"}}]}}}}"#
    )
}

fn ctx() -> CallContext {
    CallContext {
        node_name: "node".into(),
        city_code: "DFW".into(),
        stack_id: "stack".into(),
        ..CallContext::default()
    }
}

/// After any failure the engine must still translate a well-behaved pod.
fn still_serves(engine: &PolicyEngine) {
    let t = engine
        .translate(&pod("none"), &ctx())
        .expect("the engine keeps serving");
    assert_eq!(t.spec.containers.len(), 1);
}

fn rejection_message(r: Result<vk_stackpath::policy::Translated, PolicyError>) -> String {
    match r {
        Err(PolicyError::Rejected { violations, .. }) => violations[0].message.clone(),
        other => panic!("expected the guest's own rejection, got {other:?}"),
    }
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let engine = engine();
    let started = Instant::now();
    let err = engine.translate(&pod("loop"), &ctx()).unwrap_err();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string().contains("did not finish within 300ms"),
        "{err}"
    );
    still_serves(&engine);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let engine = engine();
    let err = engine.translate(&pod("memory"), &ctx()).unwrap_err();
    assert!(
        matches!(err, PolicyError::OutOfMemory { limit_mib: 32, .. }),
        "{err:?}"
    );
    still_serves(&engine);
}

#[test]
fn panic_is_a_trap_for_that_call_only() {
    let engine = engine();
    let err = engine.translate(&pod("panic"), &ctx()).unwrap_err();
    assert!(matches!(err, PolicyError::Trap { .. }), "{err:?}");
    still_serves(&engine);
}

#[test]
fn files_are_out_of_reach() {
    let engine = engine();
    let read = rejection_message(engine.translate(&pod("fs"), &ctx()));
    assert!(read.starts_with("file access denied"), "{read}");
    let write = rejection_message(engine.translate(&pod("fs-write"), &ctx()));
    assert!(write.starts_with("file write denied"), "{write}");
    assert!(!Path::new("/tmp/hostile-was-here").exists());
    still_serves(&engine);
}

#[test]
fn network_is_out_of_reach() {
    let engine = engine();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    // The hostile guest dials whatever the stack id says.
    let mut c = ctx();
    c.stack_id = listener.local_addr().unwrap().to_string();
    let msg = rejection_message(engine.translate(&pod("net"), &c));
    assert!(msg.starts_with("network denied"), "{msg}");
    assert!(
        listener.accept().is_err(),
        "the guest reached a socket on the host"
    );
    still_serves(&engine);
}

#[test]
fn environment_and_args_are_empty() {
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("VK_SANDBOX_TEST_SECRET", "should-not-be-visible") };
    let engine = engine();
    let msg = rejection_message(engine.translate(&pod("env"), &ctx()));
    assert_eq!(msg, "env vars: 0; args: 0");
}

#[test]
fn chatty_output_is_bounded_and_harmless() {
    let engine = engine();
    // 1000 lines on stdout overflow the 64 KiB capture: a trap, not unbounded memory.
    let r = engine.translate(&pod("chatty"), &ctx());
    match r {
        Ok(_) | Err(PolicyError::Trap { .. }) => {}
        other => panic!("{other:?}"),
    }
    still_serves(&engine);
}

#[test]
fn output_that_breaks_host_rules_is_refused() {
    let engine = engine();
    let mut c = ctx();
    c.env.push(ResolvedEnv {
        container: "app".into(),
        name: "PASSWORD".into(),
        value: None,
        from_secret: true,
        ..ResolvedEnv::default()
    });
    let cases = [
        (
            "secret-as-value",
            "spec.containers.app.env.PASSWORD.value",
            "only be sent as secretValue",
        ),
        ("host-owned", "spec.networkInterfaces", "set by the host"),
        (
            "bad-size",
            "spec.containers.app.resources",
            "exactly one StackPath size",
        ),
        (
            "unknown-field",
            "spec.containers.app.privileged",
            "v1WorkloadSpec",
        ),
        ("not-json", "spec", "not JSON"),
    ];
    for (mode, path, message) in cases {
        match engine.translate(&pod(mode), &c) {
            Err(PolicyError::InvalidOutput { policy, violations }) => {
                assert!(policy.ends_with("hostile_policy.wasm"), "{policy}");
                assert!(
                    violations
                        .iter()
                        .any(|v| v.path.starts_with(path) && v.message.contains(message)),
                    "{mode}: {violations:?}"
                );
            }
            other => panic!("{mode}: expected invalid output, got {other:?}"),
        }
    }
    still_serves(&engine);
}

#[test]
fn warnings_are_capped() {
    let engine = engine();
    let t = engine.translate(&pod("many-warnings"), &ctx()).unwrap();
    assert_eq!(t.warnings.len(), 100);
    assert!(t.warnings.iter().all(|w| w.message.len() <= 1024 + 3));
}

#[test]
fn incompatible_contract_is_refused_with_both_versions() {
    // The default policy with every `stackpath:policy/…@0.2.0` renamed to @0.9.0: a valid
    // component built against a contract this daemon does not speak.
    let mut bytes = DEFAULT_POLICY_WASM.to_vec();
    let (from, to) = (b"@0.2.0".as_slice(), b"@0.9.0".as_slice());
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(from.len()).position(|w| w == from) {
        let at = i + at;
        let before = &bytes[at.saturating_sub(40)..at];
        if before.windows(17).any(|w| w == b"stackpath:policy/") {
            bytes[at..at + from.len()].copy_from_slice(to);
        }
        i = at + from.len();
    }
    let err = PolicyEngine::load(PolicySource::File("future.wasm".into()), &bytes, limits())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, PolicyError::IncompatibleContract { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("stackpath:policy@0.9.0")
            && msg.contains("stackpath:policy@0.2.0 and stackpath:policy@0.1.0"),
        "{msg}"
    );
}

#[test]
fn garbage_is_refused_at_load() {
    let err = PolicyEngine::load(
        PolicySource::File("junk.wasm".into()),
        b"not wasm",
        limits(),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn precompiled_policy_loads_and_behaves_the_same() {
    let cwasm = vk_stackpath::policy::precompile(DEFAULT_POLICY_WASM, &limits()).unwrap();
    let engine =
        PolicyEngine::load(PolicySource::File("default.cwasm".into()), &cwasm, limits()).unwrap();
    assert_eq!(engine.info().name, "default");
    let spec = engine.translate(&pod("none"), &ctx()).unwrap().spec;
    let builtin = PolicyEngine::builtin(limits()).unwrap();
    assert_eq!(spec, builtin.translate(&pod("none"), &ctx()).unwrap().spec);
}
