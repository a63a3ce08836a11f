//! The per-call sandbox: what a policy instance may use, and the limits that stop it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, stackpath};
use super::precompiled::Sha256Digest;

/// What the sandbox allows a policy: the limits applied to every call, and what it trusts at
/// load time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one call (instantiation included), whatever the policy does: guest
    /// code is interrupted, and a WASI call that waits (a sleep, a poll) returns at it.
    pub timeout: Duration,
    /// Linear memory one call may use, in bytes: all the memories of its instance together.
    pub memory_bytes: usize,
    /// Calls that may run at once; more wait (the instance pool has this many slots). The
    /// daemon's policy memory is at most `max_concurrent × memory_bytes`.
    pub max_concurrent: u32,
    /// Where compiled policies are cached (see `cache.rs`); `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The precompiled policies (`.cwasm`, native code) that may be loaded, by SHA-256; any
    /// other `.cwasm` is refused (see `precompiled.rs`).
    pub trusted_precompiled: Vec<Sha256Digest>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 128 << 20,
            max_concurrent: 2,
            cache_dir: None,
            trusted_precompiled: Vec::new(),
        }
    }
}

/// What one call (one component instance) may hold besides its memory: core instances, linear
/// memories and tables (the instance pool reserves this many per slot), and table elements
/// (all its tables together). A Rust wasip2 component holds a few core instances, one memory
/// and a few tables; a componentize-py one about 40 core instances (CPython and its extension
/// modules, linked dynamically), a couple of memories and one large table.
pub(crate) const MAX_CORE_INSTANCES: u32 = 64;
pub(crate) const MAX_MEMORIES: u32 = 8;
pub(crate) const MAX_TABLES: u32 = 64;
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// How often the epoch advances; the deadline is counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);
/// What a policy may print on stdout/stderr per call (forwarded to tracing afterwards).
const STDIO_CAPACITY: usize = 64 << 10;
/// Log calls kept per policy call, and the length kept of each, so a chatty policy cannot
/// flood the daemon's logs.
const MAX_LOG_CALLS: u32 = 64;
const MAX_LOG_LEN: usize = 2048;
/// The most `wasi:random` hands out in one call: the bytes are allocated on the host, outside
/// the memory cap (wasmtime-wasi allows 64 MiB). Enough to seed anything.
const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// Everything a store holds for one call. Built fresh for every call and dropped after it, so
/// nothing survives from one pod to the next.
pub(crate) struct CallState {
    /// Built on the policy's first WASI call: the default policy makes none (it is no_std),
    /// so most calls never pay for a WASI context.
    wasi: Option<Wasi>,
    table: ResourceTable,
    pub limiter: Limiter,
    policy: Arc<str>,
    log_calls: u32,
    /// When the call must be over; WASI calls that wait stop waiting then (see `wasi.rs`).
    deadline: Instant,
}

/// What a policy built with std gets from WASI: stdout and stderr into memory, nothing else.
struct Wasi {
    ctx: WasiCtx,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl Wasi {
    fn new() -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // No preopens, no env, no args, no sockets (all addresses denied, name lookup off),
        // stdin closed: the builder's defaults, spelled out by not adding anything.
        let ctx = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        Wasi {
            ctx,
            stdout,
            stderr,
        }
    }
}

impl CallState {
    pub fn new(policy: Arc<str>, limits: &Limits) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(1024);
        CallState {
            wasi: None,
            table,
            limiter: Limiter::new(limits.memory_bytes),
            policy,
            log_calls: 0,
            deadline: Instant::now() + limits.timeout,
        }
    }

    /// The call's resource table and deadline, for the WASI calls that wait.
    pub fn io(&mut self) -> (&mut ResourceTable, Instant) {
        (&mut self.table, self.deadline)
    }

    /// Forwards what the policy printed to the daemon's logs.
    pub fn flush_stdio(&self) {
        let Some(wasi) = &self.wasi else { return };
        for (stream, pipe) in [("stdout", &wasi.stdout), ("stderr", &wasi.stderr)] {
            let bytes = pipe.contents();
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::debug!(target: "policy", policy = %self.policy, stream, "{line}");
            }
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.get_or_insert_with(Wasi::new).ctx,
            table: &mut self.table,
        }
    }
}

// The `types` interface has only records: nothing to implement.
impl stackpath::policy::types::Host for CallState {}

impl stackpath::policy::log::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        self.log_calls += 1;
        if self.log_calls > MAX_LOG_CALLS {
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LEN {
            let mut cut = MAX_LOG_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let policy = &*self.policy;
        match level {
            Level::Trace => tracing::trace!(target: "policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "policy", policy, "{message}"),
            Level::Error => tracing::error!(target: "policy", policy, "{message}"),
        }
    }
}

/// The store's resource limiter: counts the call's linear memory and table elements over all
/// its memories and tables (wasmtime asks per memory and per table, from zero for a new one),
/// and notes a refusal of memory, so that the trap that follows is reported as "out of memory"
/// rather than as a crash. A refused growth traps (a policy cannot recover and carry on).
pub(crate) struct Limiter {
    memory_cap: usize,
    memory_used: usize,
    table_used: usize,
    /// The growth last allowed, `(from, to)`: given back if the growth then fails.
    memory_granted: (usize, usize),
    table_granted: (usize, usize),
    pub memory_denied: bool,
}

impl Limiter {
    fn new(memory_cap: usize) -> Self {
        Limiter {
            memory_cap,
            memory_used: 0,
            table_used: 0,
            memory_granted: (0, 0),
            table_granted: (0, 0),
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_cap {
            self.memory_denied = true;
            wasmtime::bail!(
                "the policy's memories would hold {total} bytes together; the limit is {} per call",
                self.memory_cap
            );
        }
        self.memory_used = total;
        self.memory_granted = (current, desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        let (from, to) = std::mem::take(&mut self.memory_granted);
        self.memory_used = self.memory_used.saturating_sub(to - from);
        self.memory_denied = true;
        Err(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_used
            .saturating_sub(current)
            .saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            wasmtime::bail!(
                "the policy's tables would hold {total} elements together; the limit is \
                 {MAX_TABLE_ELEMENTS} table elements per call"
            );
        }
        self.table_used = total;
        self.table_granted = (current, desired);
        Ok(true)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        let (from, to) = std::mem::take(&mut self.table_granted);
        self.table_used = self.table_used.saturating_sub(to - from);
        Err(error)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }
    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] so deadlines fire. Holds only a weak
/// reference: it ends by itself once the engine is gone, and is stopped on drop.
pub(crate) struct EpochTicker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &wasmtime::Engine) -> std::io::Result<Self> {
        let weak: wasmtime::EngineWeak = engine.weak();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout(stopped, EPOCH_TICK)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A counting gate in front of the instance pool: past the pool's size instantiation would
/// fail rather than wait, so callers wait here instead.
pub(crate) struct Gate {
    free: Mutex<u32>,
    cv: Condvar,
}

pub(crate) struct Permit<'a>(&'a Gate);

impl Gate {
    pub fn new(n: u32) -> Self {
        Gate {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.cv.notify_one();
    }
}
