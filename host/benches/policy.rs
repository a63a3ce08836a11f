//! `cargo bench -p vk-stackpath --bench policy`
//!
//! - `policy/wasm`: the default policy through the engine (fresh store and instance per call
//!   from the pre-instantiated component, pooling allocator, output validation), on the
//!   all-features fixture.
//! - `policy/native`: the same mapping compiled natively (`guest-default` as a library), the
//!   baseline measured in the same run.
//! - `policy_load/compile` and `policy_load/load_cwasm`: loading the default policy from its
//!   `.wasm` (Cranelift compile) and from a `.cwasm` made by `policy compile`.
//! - `policy_custom/<file>`: each policy named in `VK_BENCH_POLICY` (comma-separated `.wasm`
//!   or `.cwasm` paths, e.g. the examples of `examples/policies`) through the engine, as
//!   `policy/wasm`, on the minimal fixture (custom policies need not take every feature). Empty
//!   when the variable is unset. `policy_custom/<file>/instantiate`: the fresh instance alone.

mod common;

use common::{fixture, native_ctx};
use criterion::{Criterion, criterion_group, criterion_main};
use vk_stackpath::manifest;
use vk_stackpath::policy::{
    CallContext, DEFAULT_POLICY_WASM, Limits, PolicyEngine, PolicySource, Sha256Digest, precompile,
};

fn translate(c: &mut Criterion) {
    let (pod, ctx) = fixture();
    let engine = PolicyEngine::builtin(Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    })
    .unwrap();
    let nctx = native_ctx(&ctx);
    // Both must succeed on the fixture, or the comparison means nothing.
    engine.translate(&pod, &ctx).unwrap();
    guest_default::translate(&pod, &nctx).unwrap();

    let mut g = c.benchmark_group("policy");
    g.bench_function("wasm", |b| b.iter(|| engine.translate(&pod, &ctx).unwrap()));
    g.bench_function("native", |b| {
        // The spec comes back serialized to JSON, as it crosses the component boundary.
        b.iter(|| guest_default::translate(&pod, &nctx).unwrap())
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let mut limits = Limits::default();
    let cwasm = precompile(DEFAULT_POLICY_WASM, &limits).unwrap();
    // Native code loads only when named (as --precompiled-policy-sha256 does).
    limits.trusted_precompiled.push(Sha256Digest::of(&cwasm));
    let mut g = c.benchmark_group("policy_load");
    g.sample_size(10);
    g.bench_function("compile", |b| {
        b.iter(|| PolicyEngine::builtin(limits.clone()).unwrap())
    });
    g.bench_function("load_cwasm", |b| {
        b.iter(|| {
            PolicyEngine::load(
                PolicySource::File("default.cwasm".into()),
                &cwasm,
                limits.clone(),
            )
            .unwrap()
        })
    });
    g.finish();
}

/// `translate`'s time split into its parts, to see where it goes.
fn parts(c: &mut Criterion) {
    use vk_stackpath::policy::parts;
    let (pod, ctx) = fixture();
    let engine = PolicyEngine::builtin(Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    })
    .unwrap();
    let raw = parts::translate_unvalidated(&engine, &pod, &ctx).unwrap();
    let mut g = c.benchmark_group("policy_parts");
    g.bench_function("instantiate", |b| {
        b.iter(|| parts::instantiate(&engine).unwrap())
    });
    g.bench_function("info", |b| b.iter(|| parts::info(&engine).unwrap()));
    g.bench_function("translate_unvalidated", |b| {
        b.iter(|| parts::translate_unvalidated(&engine, &pod, &ctx).unwrap())
    });
    g.bench_function("validate", |b| {
        b.iter_batched(
            || raw.clone(),
            |raw| parts::validate(&engine, raw, &ctx).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("native_parse", |b| {
        b.iter(|| serde_json::from_str::<guest_default::input::Pod>(&pod).unwrap())
    });
    g.finish();
}

const MINIMAL_POD: &str = include_str!("../tests/golden/minimal.pod.yaml");

fn custom(c: &mut Criterion) {
    let Ok(list) = std::env::var("VK_BENCH_POLICY") else {
        return;
    };
    let mut pod = manifest::read_pod("minimal", MINIMAL_POD).unwrap();
    pod.bind("stackpath-edge-provider-dfw");
    let ctx = CallContext {
        node_name: "stackpath-edge-provider-dfw".into(),
        city_code: "DFW".into(),
        stack_id: "bench".into(),
        ..CallContext::default()
    };
    let mut g = c.benchmark_group("policy_custom");
    for path in list.split(',').filter(|p| !p.is_empty()) {
        let path = std::path::Path::new(path);
        // Named here by whoever runs the benchmark, so a `.cwasm` among them is trusted.
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("VK_BENCH_POLICY: {e}"));
        let engine = PolicyEngine::from_file(
            path,
            Limits {
                cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
                trusted_precompiled: vec![Sha256Digest::of(&bytes)],
                ..Limits::default()
            },
        )
        .unwrap_or_else(|e| panic!("VK_BENCH_POLICY: {e}"));
        // A policy that refuses the fixture would be measured on its error path.
        engine.translate(&pod.json, &ctx).unwrap();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("policy");
        g.bench_function(name, |b| {
            b.iter(|| engine.translate(&pod.json, &ctx).unwrap())
        });
        // Of which: a fresh instance (copy-on-write memory from the pre-instantiated component).
        g.bench_function(format!("{name}/instantiate"), |b| {
            b.iter(|| vk_stackpath::policy::parts::instantiate(&engine).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, translate, parts, load, custom);
criterion_main!(benches);
