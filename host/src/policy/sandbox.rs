//! The per-call sandbox: what a policy instance may use, and the limits that stop it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, stackpath};

/// Limits applied to every policy call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one call (instantiation included).
    pub timeout: Duration,
    /// Linear memory a policy instance may grow to, in bytes (all its memories together).
    pub memory_bytes: usize,
    /// Calls that may run at once; more wait (the instance pool has this many slots).
    pub max_concurrent: u32,
    /// Where compiled policies are cached (see `cache.rs`); `None` compiles every time.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 128 << 20,
            max_concurrent: 16,
            cache_dir: None,
        }
    }
}

/// How often the epoch advances; the deadline is counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);
/// What a policy may print on stdout/stderr per call (forwarded to tracing afterwards).
const STDIO_CAPACITY: usize = 64 << 10;
/// Log calls kept per policy call, and the length kept of each, so a chatty policy cannot
/// flood the daemon's logs.
const MAX_LOG_CALLS: u32 = 64;
const MAX_LOG_LEN: usize = 2048;

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
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(128)
                    .tables(256)
                    .memories(16)
                    .table_elements(100_000)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_denied: false,
            },
            policy,
            log_calls: 0,
        }
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

/// `StoreLimits` plus a note of whether it refused memory, so a trap that follows can be
/// reported as "out of memory" rather than as a crash.
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub memory_denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.memory_denied = true;
        }
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        self.inner.memory_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
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
