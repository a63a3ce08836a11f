//! `cargo bench -p vk-stackpath --bench policy_interleaved`
//!
//! The criterion figures of `--bench policy` come from one function after the other, minutes
//! apart; on a shared machine whose speed drifts by tens of percent between minutes, their
//! ratio carries that drift. This binary measures every variant in the same rounds instead:
//! each round runs each variant for a block of calls (in an order that rotates), and the ratio
//! to native is taken within the round. It prints, per variant, the 10th percentile and median
//! of the rounds' mean call time and the median of the per-round ratios to `native`:
//!
//! - `native`: the mapping compiled natively (the baseline; as `policy/native`);
//! - `wasm`: the default policy through the engine (as `policy/wasm`);
//! - `wasm, no deadline`: the same on an engine without the epoch deadline (what the deadline's
//!   checks cost; the daemon never runs a policy this way);
//! - `instantiate`, `translate unvalidated`, `validate`: the parts of `wasm`
//!   (as `policy_parts`); `translate unvalidated, no deadline` the second without the deadline.
//!
//! `VK_BENCH_ROUNDS` (default 40) and `VK_BENCH_CALLS` (calls per block, default 200).
//! Without `--bench` (as `cargo test --benches` runs it) it does one short round, to check
//! that it works.

mod common;

use std::time::Instant;

use common::{fixture, native_ctx};
use vk_stackpath::policy::{Limits, PolicyEngine, parts};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, calls) = if full {
        (env_or("VK_BENCH_ROUNDS", 40), env_or("VK_BENCH_CALLS", 200))
    } else {
        (1, 5)
    };
    let (pod, ctx) = fixture();
    let nctx = native_ctx(&ctx);
    let limits = Limits {
        cache_dir: Some(env!("CARGO_TARGET_TMPDIR").into()),
        ..Limits::default()
    };
    let engine = PolicyEngine::builtin(limits.clone()).unwrap();
    let unbounded = parts::builtin_without_deadline(limits).unwrap();
    let raw = parts::translate_unvalidated(&engine, &pod, &ctx).unwrap();

    type Variant<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let variants: Vec<Variant> = vec![
        (
            "native",
            Box::new(|| {
                std::hint::black_box(guest_default::translate(&pod, &nctx).unwrap());
            }),
        ),
        (
            "wasm",
            Box::new(|| {
                std::hint::black_box(engine.translate(&pod, &ctx).unwrap());
            }),
        ),
        (
            "wasm, no deadline",
            Box::new(|| {
                std::hint::black_box(unbounded.translate(&pod, &ctx).unwrap());
            }),
        ),
        (
            "instantiate",
            Box::new(|| parts::instantiate(&engine).unwrap()),
        ),
        (
            "translate unvalidated",
            Box::new(|| {
                std::hint::black_box(parts::translate_unvalidated(&engine, &pod, &ctx).unwrap());
            }),
        ),
        (
            "translate unvalidated, no deadline",
            Box::new(|| {
                std::hint::black_box(parts::translate_unvalidated(&unbounded, &pod, &ctx).unwrap());
            }),
        ),
        (
            // Includes cloning the policy's raw answer (the validation consumes it).
            "validate",
            Box::new(|| {
                std::hint::black_box(parts::validate(&engine, raw.clone(), &ctx).unwrap());
            }),
        ),
    ];

    // Warm up: compiled code, pool slots and caches.
    for (_, f) in &variants {
        for _ in 0..calls.min(50) {
            f();
        }
    }
    // means[v][r]: mean µs per call of variant v in round r.
    let mut means = vec![Vec::with_capacity(rounds); variants.len()];
    for r in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + r) % variants.len();
            let started = Instant::now();
            for _ in 0..calls {
                (variants[v].1)();
            }
            means[v].push(started.elapsed().as_secs_f64() * 1e6 / calls as f64);
        }
    }

    println!(
        "{rounds} rounds × {calls} calls per variant, all-features fixture ({} bytes of pod JSON)",
        pod.len()
    );
    println!("| variant | p10 µs | median µs | median ratio to native |");
    println!("|---|---|---|---|");
    for (v, (name, _)) in variants.iter().enumerate() {
        let mut ratios: Vec<f64> = means[v].iter().zip(&means[0]).map(|(a, b)| a / b).collect();
        let mut m = means[v].clone();
        println!(
            "| {name} | {:.1} | {:.1} | {:.2}× |",
            percentile(&mut m, 10),
            percentile(&mut m, 50),
            percentile(&mut ratios, 50)
        );
    }
}

fn percentile(v: &mut [f64], p: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * p / 100]
}
