//! The pieces of [`PolicyEngine::translate`], callable one by one so that the benchmarks
//! (`benches/policy.rs` group `policy_parts`, `benches/policy_interleaved.rs`) can time them
//! apart, and an engine without the deadline to see what it costs. Not for other uses.

use super::bindings::{self, Translation};
use super::context::CallContext;
use super::engine::{DEFAULT_POLICY_WASM, PolicyEngine, PolicySource};
use super::error::PolicyError;
use super::sandbox::Limits;
use super::validate::{self, PolicyOutput};

/// The built-in policy on an engine without the per-call deadline: no epoch checks compiled
/// into its code, nothing to stop a runaway call. Only to measure what the deadline costs; the
/// daemon and the CLI never run a policy this way.
pub fn builtin_without_deadline(limits: Limits) -> Result<PolicyEngine, PolicyError> {
    PolicyEngine::load_with(PolicySource::Builtin, DEFAULT_POLICY_WASM, limits, false)
}

/// A fresh store and instance, dropped without calling anything.
pub fn instantiate(engine: &PolicyEngine) -> Result<(), PolicyError> {
    engine.call(|_, _| Ok(()))
}

/// A fresh store and instance, then the policy's `info`.
pub fn info(engine: &PolicyEngine) -> Result<String, PolicyError> {
    engine
        .call(|store, policy| policy.call_info(store))
        .map(|i| i.name)
}

/// What the policy returned, before host validation.
#[derive(Clone)]
pub struct Unvalidated(Result<Translation, bindings::Rejection>);

/// A fresh store and instance, then `translate`, without validating the result.
pub fn translate_unvalidated(
    engine: &PolicyEngine,
    pod_json: &str,
    ctx: &CallContext,
) -> Result<Unvalidated, PolicyError> {
    let wit_ctx = engine.wit_context(ctx)?;
    engine
        .call(|store, policy| policy.call_translate(store, pod_json, &wit_ctx))
        .map(Unvalidated)
}

/// The host's validation alone, on a result of [`translate_unvalidated`].
pub fn validate(
    engine: &PolicyEngine,
    raw: Unvalidated,
    ctx: &CallContext,
) -> Result<PolicyOutput, PolicyError> {
    match raw.0 {
        Ok(t) => validate::translation(engine.label(), t, ctx),
        Err(_) => Err(PolicyError::Rejected {
            policy: engine.label().to_string(),
            violations: Vec::new(),
        }),
    }
}
