//! Loading a policy once and running it per pod, each call in a fresh, limited instance.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::{self, Policy, PolicyPre};
use super::context::CallContext;
use super::error::{PolicyError, Violation};
use super::sandbox::{
    CallState, EPOCH_TICK, EpochTicker, Gate, Limits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES,
};
use super::validate::{self, PolicyOutput};
use super::wasi::DeadlineExceeded;

/// The default policy, built from `guest-default/` by `build.rs` and embedded.
pub const DEFAULT_POLICY_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/default-policy.wasm"));

/// Where a policy comes from, for messages and logs.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// The built-in default policy.
    Builtin,
    /// A `.wasm` component, or a `.cwasm` made by `vk-stackpath policy compile` (loaded only
    /// when [`Limits::trusted_precompiled`] names its SHA-256).
    File(std::path::PathBuf),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin => f.write_str("built-in default"),
            PolicySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What a policy says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// The contract it was built against.
    pub contract: String,
}

/// A loaded policy, ready to translate pods; cheap to clone and safe to share across threads.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pre: PolicyPre,
    label: Arc<str>,
    info: PolicyInfo,
    limits: Limits,
    gate: Gate,
    /// Whether calls run under the epoch deadline: always, except in `parts`' measurement of
    /// what the deadline costs.
    deadline: bool,
    // Declared last: dropped after everything that uses the engine.
    _ticker: Option<EpochTicker>,
}

impl PolicyEngine {
    /// The built-in default policy.
    pub fn builtin(limits: Limits) -> Result<Self, PolicyError> {
        Self::load(PolicySource::Builtin, DEFAULT_POLICY_WASM, limits)
    }

    /// A policy file: a component (`.wasm`) or a precompiled one (`.cwasm`, only one that
    /// [`Limits::trusted_precompiled`] names).
    pub fn from_file(path: &std::path::Path, limits: Limits) -> Result<Self, PolicyError> {
        let source = PolicySource::File(path.to_path_buf());
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Load {
            policy: source.to_string(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::load(source, &bytes, limits)
    }

    /// Loads a policy from bytes: compiles it (or loads it precompiled), checks its contract
    /// version and imports, pre-instantiates it and asks it for its `info`.
    pub fn load(source: PolicySource, bytes: &[u8], limits: Limits) -> Result<Self, PolicyError> {
        Self::load_with(source, bytes, limits, true)
    }

    /// [`Self::load`], with or without the per-call deadline (and the epoch checks it compiles
    /// into the policy's code).
    pub(super) fn load_with(
        source: PolicySource,
        bytes: &[u8],
        limits: Limits,
        deadline: bool,
    ) -> Result<Self, PolicyError> {
        let label: Arc<str> = source.to_string().into();
        let load_err = |reason: String| PolicyError::Load {
            policy: label.to_string(),
            reason,
        };
        let engine = new_engine(&limits, deadline).map_err(|e| load_err(format!("{e:#}")))?;
        let started = Instant::now();
        let component = match Engine::detect_precompiled(bytes) {
            Some(wasmtime::Precompiled::Component) => {
                super::precompiled::check(&label, bytes, &limits.trusted_precompiled)?;
                // SAFETY: a `.cwasm` holds native code. The operator named this very file by
                // its SHA-256 (checked just above): their own artifact from `vk-stackpath
                // policy compile`, as trusted as the daemon binary. wasmtime checks that it was
                // made by this wasmtime version with these settings and refuses it otherwise.
                unsafe { Component::deserialize(&engine, bytes) }.map_err(|e| {
                    load_err(format!(
                        "the precompiled policy does not fit this daemon ({e:#}); run \
                         `vk-stackpath policy compile` again with this release"
                    ))
                })?
            }
            Some(wasmtime::Precompiled::Module) => {
                return Err(load_err(
                    "this is a precompiled core module, not a component; build the policy for \
                     wasm32-wasip2 (see docs/policies.md)"
                        .into(),
                ));
            }
            None => super::cache::compile(&engine, bytes, limits.cache_dir.as_deref(), || {
                new_engine(&limits, deadline)
            })
            .map_err(|e| {
                let e = format!("{e:#}");
                load_err(if e.contains("in the pooling allocator") {
                    format!(
                        "it needs more than the sandbox gives one call ({e}); a policy may hold \
                         {MAX_CORE_INSTANCES} core instances, {MAX_MEMORIES} memories and \
                         {MAX_TABLES} tables"
                    )
                } else {
                    format!(
                        "not a valid WebAssembly component ({e}); build it for wasm32-wasip2 \
                         with wit-bindgen against wit/policy.wit"
                    )
                })
            })?,
        };
        tracing::debug!(policy = %label, elapsed = ?started.elapsed(), "policy compiled");
        let contract = bindings::contract_of(&engine, &component, &label)?;

        let mut linker: Linker<CallState> = Linker::new(&engine);
        super::wasi::add_to_linker(&mut linker).map_err(|e| load_err(format!("{e:#}")))?;
        bindings::add_to_linker(&mut linker, contract).map_err(|e| load_err(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            load_err(format!(
                "it needs something the sandbox does not provide ({e:#}); policies get no \
                 network, files or environment"
            ))
        })?;
        let pre = PolicyPre::new(contract, instance_pre).map_err(|e| load_err(format!("{e:#}")))?;
        let ticker = deadline
            .then(|| EpochTicker::start(&engine))
            .transpose()
            .map_err(|e| load_err(format!("cannot start the deadline thread: {e}")))?;

        let mut engine = PolicyEngine {
            inner: Arc::new(Inner {
                engine,
                pre,
                label: label.clone(),
                info: PolicyInfo {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    contract: contract.package(),
                },
                gate: Gate::new(limits.max_concurrent),
                limits,
                deadline,
                _ticker: ticker,
            }),
        };
        let info = engine.call(|store, policy| policy.call_info(store))?;
        let inner = Arc::get_mut(&mut engine.inner).expect("not shared yet");
        inner.info.name = info.name;
        inner.info.version = info.version;
        inner.info.description = info.description;
        tracing::info!(
            policy = %label,
            name = %inner.info.name,
            version = %inner.info.version,
            "policy loaded"
        );
        Ok(engine)
    }

    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }

    /// Where the policy came from (`built-in default` or its path).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The context as this policy's contract carries it; a pod that needs more than the
    /// policy's contract can carry is refused here.
    pub(super) fn wit_context(
        &self,
        ctx: &CallContext,
    ) -> Result<bindings::WitContext, PolicyError> {
        bindings::wit_context(self.inner.pre.contract(), ctx, &self.inner.label)
    }

    /// Runs the policy on one pod and validates what it returns.
    pub fn translate(
        &self,
        pod_json: &str,
        ctx: &CallContext,
    ) -> Result<PolicyOutput, PolicyError> {
        let wit_ctx = self.wit_context(ctx)?;
        let result = self.call(|store, policy| policy.call_translate(store, pod_json, &wit_ctx))?;
        match result {
            Ok(t) => validate::translation(&self.inner.label, t, ctx),
            Err(rejection) => Err(PolicyError::Rejected {
                policy: self.inner.label.to_string(),
                violations: rejection
                    .violations
                    .into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .take(validate::MAX_FINDINGS)
                    .collect(),
            }),
        }
    }

    /// One call in a fresh store: instantiate from the pre-instantiated component, run `f`,
    /// drop everything. Traps, timeouts (guest code interrupted at the epoch deadline, or a
    /// WASI call that waited until the same deadline) and memory exhaustion become typed
    /// errors.
    pub(super) fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<CallState>, &Policy) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        let inner = &*self.inner;
        let _permit = inner.gate.acquire();
        let mut store = Store::new(
            &inner.engine,
            CallState::new(inner.label.clone(), &inner.limits),
        );
        store.limiter(|s| &mut s.limiter);
        if inner.deadline {
            let ticks = inner.limits.timeout.as_micros() / EPOCH_TICK.as_micros() + 1;
            store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
            store.epoch_deadline_trap();
        }

        let result = inner
            .pre
            .instantiate(&mut store)
            .and_then(|policy| f(&mut store, &policy));
        store.data().flush_stdio();
        result.map_err(|e| self.classify(e, store.data().limiter.memory_denied))
    }

    fn classify(&self, e: wasmtime::Error, memory_denied: bool) -> PolicyError {
        let policy = self.inner.label.to_string();
        if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
            || e.downcast_ref::<DeadlineExceeded>().is_some()
        {
            return PolicyError::Timeout {
                policy,
                limit: self.inner.limits.timeout,
            };
        }
        if memory_denied {
            return PolicyError::OutOfMemory {
                policy,
                limit_mib: (self.inner.limits.memory_bytes >> 20) as u64,
            };
        }
        PolicyError::Trap {
            policy,
            message: format!("{e:#}"),
        }
    }
}

/// One engine per policy: compiled code and the instance pool are tied to it.
fn new_engine(limits: &Limits, deadline: bool) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(deadline);
    // `perf record` can then name the policy's functions (from /tmp/perf-<pid>.map).
    if std::env::var_os("VK_POLICY_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let slots = limits.max_concurrent.max(1);
    let mut pool = PoolingAllocationConfig::default();
    // Each slot has room for one call's core instances, memories and tables (unused pool
    // entries cost address space only), and a component needing more is refused when it is
    // loaded: one call can never take what another call's slot needs.
    pool.total_component_instances(slots);
    pool.total_core_instances(slots * MAX_CORE_INSTANCES);
    pool.max_core_instances_per_component(MAX_CORE_INSTANCES);
    pool.total_memories(slots * MAX_MEMORIES);
    pool.max_memories_per_component(MAX_MEMORIES);
    pool.total_tables(slots * MAX_TABLES);
    pool.max_tables_per_component(MAX_TABLES);
    // One memory may take the whole cap; the store's limiter holds all of them to it together.
    pool.max_memory_size(limits.memory_bytes);
    // Between calls a slot's memory is reset to its initial image. Where the kernel has
    // PAGEMAP_SCAN (Linux 6.7+), only the pages the call dirtied within the first
    // `linear_memory_keep_resident` bytes are reset, by memset, and stay mapped: a policy's
    // call touches a few dozen pages of its stack, data and heap, so the reset costs a few
    // microseconds and the next call takes no page faults. Without it, the whole region is
    // memset, still cheaper than unmapping and faulting the pages back in on every call.
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(4 << 20);
    pool.table_keep_resident(64 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Precompiles a component for this daemon (`vk-stackpath policy compile`).
pub fn precompile(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, PolicyError> {
    let engine = new_engine(limits, true).map_err(|e| PolicyError::Load {
        policy: "input".into(),
        reason: format!("{e:#}"),
    })?;
    engine
        .precompile_component(bytes)
        .map_err(|e| PolicyError::Load {
            policy: "input".into(),
            reason: format!("not a valid WebAssembly component: {e:#}"),
        })
}
