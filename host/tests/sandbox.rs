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
    Sha256Digest,
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
        trusted_precompiled: Vec::new(),
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

fn rejection_message(r: Result<vk_stackpath::policy::PolicyOutput, PolicyError>) -> String {
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
    // The operator's opt-in: this file's SHA-256 (--precompiled-policy-sha256).
    let trusting = Limits {
        trusted_precompiled: vec![Sha256Digest::of(&cwasm)],
        ..limits()
    };
    let engine =
        PolicyEngine::load(PolicySource::File("default.cwasm".into()), &cwasm, trusting).unwrap();
    assert_eq!(engine.info().name, "default");
    let spec = engine.translate(&pod("none"), &ctx()).unwrap().spec;
    let builtin = PolicyEngine::builtin(limits()).unwrap();
    assert_eq!(spec, builtin.translate(&pod("none"), &ctx()).unwrap().spec);
}

// ---- Blocking WASI calls: the deadline holds whatever the guest waits on. ----

/// Runs one call on its own thread and waits for it at most `patience`: a call that blocks
/// inside the host must fail the test, not hang it.
fn translate_within(
    engine: &PolicyEngine,
    mode: &str,
    patience: Duration,
) -> Result<vk_stackpath::policy::PolicyOutput, PolicyError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (engine, pod) = (engine.clone(), pod(mode));
    std::thread::spawn(move || {
        let _ = tx.send(engine.translate(&pod, &ctx()));
    });
    rx.recv_timeout(patience)
        .unwrap_or_else(|_| panic!("mode {mode}: the call was still blocked after {patience:?}"))
}

#[test]
fn sleeping_in_the_host_hits_the_deadline() {
    let engine = engine();
    let started = Instant::now();
    let err = translate_within(&engine, "sleep", Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
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
fn polling_forever_hits_the_deadline() {
    let engine = engine();
    let err = translate_within(&engine, "poll-forever", Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err, PolicyError::Timeout { .. }), "{err:?}");
    still_serves(&engine);
}

#[test]
fn blocked_calls_do_not_keep_the_slots() {
    // Twice as many sleepers as slots, then a well-behaved pod: it gets a slot once the
    // sleepers' deadlines have passed, not after their hour.
    let engine = engine();
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || translate_within(&engine, "sleep", Duration::from_secs(5)))
        })
        .collect();
    let started = Instant::now();
    let t = translate_within(&engine, "none", Duration::from_secs(5)).expect("served");
    assert_eq!(t.spec.containers.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    for s in sleepers {
        let err = s.join().unwrap().unwrap_err();
        assert!(matches!(err, PolicyError::Timeout { .. }), "{err:?}");
    }
}

#[test]
fn stdin_is_closed() {
    let engine = engine();
    let msg = rejection_message(translate_within(&engine, "stdin", Duration::from_secs(5)));
    assert_eq!(msg, "stdin: 0 bytes");
}

// ---- Memory and tables: the caps hold for the call as a whole. ----

/// A component that exports the translator and, in `translate`, grows each of `memories`
/// memories by `pages` pages of 64 KiB and each of `tables` tables by `elements` elements
/// (every memory and table in a core module of its own), then rejects the pod. wit-bindgen
/// cannot make a component with several memories; this is what such a component looks like.
fn hoarding_component(memories: usize, pages: u32, tables: usize, elements: u32) -> Vec<u8> {
    let mut wat = String::from(
        r#"(component
  (import "stackpath:policy/types@0.1.0" (instance $types
    (type $pi' (record (field "name" string) (field "version" string) (field "description" string)))
    (export "policy-info" (type $pi (eq $pi')))
    (type $re' (record (field "container" string) (field "name" string) (field "value" (option string)) (field "from-secret" bool)))
    (export "resolved-env" (type $re (eq $re')))
    (type $ctx' (record (field "node-name" string) (field "city-code" string) (field "stack-id" string) (field "env" (list $re))))
    (export "context" (type $ctx (eq $ctx')))
    (type $w' (record (field "path" string) (field "message" string)))
    (export "warning" (type $w (eq $w')))
    (type $v' (record (field "path" string) (field "message" string)))
    (export "violation" (type $v (eq $v')))
    (type $t' (record (field "spec" string) (field "annotations" (list (tuple string string))) (field "warnings" (list $w))))
    (export "translation" (type $t (eq $t')))
    (type $r' (record (field "violations" (list $v))))
    (export "rejection" (type $r (eq $r')))))
  (alias export $types "policy-info" (type $policy-info))
  (alias export $types "context" (type $context))
  (alias export $types "translation" (type $translation))
  (alias export $types "rejection" (type $rejection))
  (core module $MemoryHog
    (memory 1)
    (func (export "grow") (param i32)
      (if (i32.eq (memory.grow (local.get 0)) (i32.const -1)) (then unreachable))))
  (core module $TableHog
    (table 1 funcref)
    (func (export "grow") (param i32)
      (if (i32.eq (table.grow (ref.null func) (local.get 0)) (i32.const -1)) (then unreachable))))
"#,
    );
    let hogs: Vec<(String, &str, u32)> = (0..memories)
        .map(|i| (format!("m{i}"), "$MemoryHog", pages))
        .chain((0..tables).map(|i| (format!("t{i}"), "$TableHog", elements)))
        .collect();
    let mut imports = String::new();
    let mut calls = String::new();
    let mut exports = String::new();
    for (name, module, amount) in &hogs {
        wat.push_str(&format!(
            "  (core instance ${name} (instantiate {module}))\n  (alias core export ${name} \"grow\" (core func ${name}-grow))\n"
        ));
        imports.push_str(&format!(
            "    (import \"hogs\" \"{name}\" (func ${name} (param i32)))\n"
        ));
        calls.push_str(&format!("      (call ${name} (i32.const {amount}))\n"));
        exports.push_str(&format!(" (export \"{name}\" (func ${name}-grow))"));
    }
    wat.push_str(&format!("  (core instance $hogs{exports})\n"));
    wat.push_str(&format!(
        r#"  (core module $Main
{imports}    (memory (export "memory") 2)
    (global $next (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and
        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $next (i32.add (local.get $at) (local.get 3)))
      (local.get $at))
    (data (i32.const 16) "hoarder")
    (data (i32.const 32) "0.0.0")
    (func (export "info") (result i32)
      (i32.store (i32.const 1024) (i32.const 16))
      (i32.store (i32.const 1028) (i32.const 7))
      (i32.store (i32.const 1032) (i32.const 32))
      (i32.store (i32.const 1036) (i32.const 5))
      (i32.store (i32.const 1040) (i32.const 16))
      (i32.store (i32.const 1044) (i32.const 7))
      (i32.const 1024))
    (func (export "translate")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
{calls}      (i32.store8 (i32.const 1024) (i32.const 1))
      (i32.store (i32.const 1028) (i32.const 0))
      (i32.store (i32.const 1032) (i32.const 0))
      (i32.const 1024)))
  (core instance $main (instantiate $Main (with "hogs" (instance $hogs))))
  (func $info (result $policy-info)
    (canon lift (core func $main "info") (memory (core memory $main "memory"))))
  (func $translate (param "pod" string) (param "ctx" $context)
    (result (result $translation (error $rejection)))
    (canon lift (core func $main "translate") (memory (core memory $main "memory"))
      (realloc (core func $main "realloc"))))
  (instance $translator (export "info" (func $info)) (export "translate" (func $translate)))
  (export "stackpath:policy/translator@0.1.0" (instance $translator)))
"#
    ));
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

fn hoarder(memories: usize, pages: u32, tables: usize, elements: u32) -> PolicyEngine {
    PolicyEngine::load(
        PolicySource::File("hoarder.wat".into()),
        &hoarding_component(memories, pages, tables, elements),
        limits(),
    )
    .expect("the hoarding component loads")
}

#[test]
fn memory_cap_holds_for_all_memories_of_a_call_together() {
    // Four memories of 12 MiB each: within the 32 MiB cap one by one, not together.
    let err = hoarder(4, 192, 0, 0)
        .translate(&pod("none"), &ctx())
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::OutOfMemory { limit_mib: 32, .. }),
        "{err:?}"
    );
    // Four of 4 MiB fit: the component itself works.
    let small = hoarder(4, 64, 0, 0);
    rejection_or_empty(small.translate(&pod("none"), &ctx()));
    rejection_or_empty(small.translate(&pod("none"), &ctx()));
}

#[test]
fn table_elements_are_capped_per_call() {
    // Six tables of 20,000 elements (the pool's largest table) each: over the call's 100,000.
    let err = hoarder(0, 0, 6, 19_999)
        .translate(&pod("none"), &ctx())
        .unwrap_err();
    match &err {
        PolicyError::Trap { message, .. } => assert!(
            message.contains("the limit is 100000 table elements per call"),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    rejection_or_empty(hoarder(0, 0, 4, 19_999).translate(&pod("none"), &ctx()));
}

#[test]
fn a_component_with_more_memories_than_a_slot_holds_is_refused_at_load() {
    let err = PolicyEngine::load(
        PolicySource::File("hoarder.wat".into()),
        &hoarding_component(8, 0, 0, 0),
        limits(),
    )
    .err()
    .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("9 Wasm linear memories"), "{msg}");
}

/// The hoarder's own answer: a rejection without violations.
fn rejection_or_empty(r: Result<vk_stackpath::policy::PolicyOutput, PolicyError>) {
    match r {
        Err(PolicyError::Rejected { violations, .. }) => assert!(violations.is_empty()),
        other => panic!("expected the hoarder's rejection, got {other:?}"),
    }
}

// ---- Precompiled policies are native code: only with the operator's say-so. ----

#[test]
fn precompiled_policy_without_the_opt_in_is_refused() {
    let cwasm = vk_stackpath::policy::precompile(DEFAULT_POLICY_WASM, &limits()).unwrap();
    let err = PolicyEngine::load(PolicySource::File("default.cwasm".into()), &cwasm, limits())
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, PolicyError::Load { .. }), "{msg}");
    assert!(msg.contains("--precompiled-policy-sha256"), "{msg}");
}

/// Log lines written while `f` runs.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text)
}

#[test]
fn live_reload_refuses_a_swapped_in_precompiled_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.wasm");
    std::fs::copy(hostile_wasm(), &path).unwrap();
    let active = vk_stackpath::active_policy::ActivePolicy::load(Some(path.clone()), limits())
        .expect("loads");
    assert_eq!(active.current().info().name, "hostile");
    // Whoever can write the ConfigMap swaps in native code.
    let cwasm = vk_stackpath::policy::precompile(DEFAULT_POLICY_WASM, &limits()).unwrap();
    std::fs::write(&path, &cwasm).unwrap();
    let (swapped, log) = logged(|| active.reload_if_changed());
    assert!(!swapped, "the precompiled policy was loaded");
    assert_eq!(active.current().info().name, "hostile");
    still_serves(&active.current());
    assert!(log.contains("keeping the active one"), "{log}");
    assert!(log.contains("--precompiled-policy-sha256"), "{log}");

    // With the operator's opt-in for that very file, the same swap is taken.
    std::fs::copy(hostile_wasm(), &path).unwrap();
    let trusting = Limits {
        trusted_precompiled: vec![Sha256Digest::of(&cwasm)],
        ..limits()
    };
    let active =
        vk_stackpath::active_policy::ActivePolicy::load(Some(path.clone()), trusting).unwrap();
    std::fs::write(&path, &cwasm).unwrap();
    assert!(active.reload_if_changed());
    assert_eq!(active.current().info().name, "default");
}

// ---- The compile cache holds native code: trusted only in a private directory. ----

/// The one compiled policy in `dir`.
fn cached_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// Loads the hostile policy through a cache whose entry for it was replaced by the default
/// policy's compiled code (what someone able to write the cache would do); returns the name of
/// the policy that came out, after `loosen` changed the permissions.
fn load_through_tampered_cache(loosen: impl FnOnce(&Path, &Path)) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let with_cache = Limits {
        cache_dir: Some(dir.clone()),
        ..limits()
    };
    PolicyEngine::from_file(hostile_wasm(), with_cache.clone()).unwrap();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "the cache directory is created private"
    );
    let entry = cached_entry(&dir);
    let planted = vk_stackpath::policy::precompile(DEFAULT_POLICY_WASM, &limits()).unwrap();
    std::fs::write(&entry, planted).unwrap();
    loosen(&dir, &entry);
    let (engine, log) = logged(|| PolicyEngine::from_file(hostile_wasm(), with_cache).unwrap());
    (engine.info().name.clone(), log)
}

#[test]
fn private_cache_is_trusted() {
    // The control for the tests below: an entry in a private cache is used as it is.
    let (name, _) = load_through_tampered_cache(|_, _| {});
    assert_eq!(name, "default");
}

#[test]
fn world_writable_cache_dir_is_bypassed() {
    use std::os::unix::fs::PermissionsExt;
    let (name, log) = load_through_tampered_cache(|dir, _| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap()
    });
    assert_eq!(
        name, "hostile",
        "code from a world-writable cache was loaded"
    );
    assert!(log.contains("writable by others"), "{log}");
}

#[test]
fn group_writable_cache_entry_is_bypassed() {
    use std::os::unix::fs::PermissionsExt;
    let (name, log) = load_through_tampered_cache(|_, entry| {
        std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o664)).unwrap()
    });
    assert_eq!(
        name, "hostile",
        "code from a group-writable cache entry was loaded"
    );
    assert!(log.contains("writable by others"), "{log}");
}
