//! Keeping the daemon's resident memory close to what it actually holds.
//!
//! glibc's allocator gives each thread that contends for it an arena of its own (up to eight
//! per core) and keeps what is freed there for reuse instead of returning it. A daemon whose
//! work moves between tokio workers and blocking threads (policy calls, bursts of thousands of
//! pods, large list responses) ends up holding several mostly-free 64 MiB arenas: measured at
//! 10,000 pods, over half of the resident memory. Two arenas and a periodic trim keep the
//! resident set near the live heap. Other C libraries (musl in the container image) need
//! neither.

/// Call first thing in `main`, before any other thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns free pages of every arena to the system (periodically, after large transient work).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
