//! A disk cache of compiled policies, keyed by the policy's bytes and the engine's settings
//! (`Engine::precompile_compatibility_hash`), so that a daemon restart or a CLI run loads a
//! policy it has seen in milliseconds instead of compiling it again.
//!
//! The cache holds native code: its directory is created private to the daemon's user (0700)
//! and must not be writable by anyone else.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", settings.finish())
}

/// A compiled component from the cache, or compiled now (and stored for next time).
///
/// Compiling happens in an engine of its own, made by `compiler` with the same settings and
/// dropped right after: Cranelift keeps its per-thread compilation contexts (~16 MB for the
/// default policy) for as long as the engine that compiled lives, and the serving engine lives
/// as long as the daemon.
pub(crate) fn compile(
    engine: &Engine,
    bytes: &[u8],
    dir: Option<&Path>,
    compiler: impl FnOnce() -> wasmtime::Result<Engine>,
) -> wasmtime::Result<Component> {
    let path = dir.map(|dir| dir.join(key(engine, bytes)));
    if let Some(path) = path.as_ref().filter(|p| p.exists()) {
        // SAFETY: the file was written by `store` below from a component this very engine
        // configuration compiled; the key covers the bytes and the engine's settings, and
        // wasmtime re-checks the settings on load.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cached policy; compiling again")
            }
        }
    }
    let serialized = compiler()?.precompile_component(bytes)?;
    if let (Some(dir), Some(path)) = (dir, path.as_ref())
        && let Err(e) = store(dir, path, &serialized)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot cache the compiled policy");
    }
    // SAFETY: just produced by an engine with this engine's settings (wasmtime checks them).
    unsafe { Component::deserialize(engine, &serialized) }
}

fn store(dir: &Path, path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // Write aside and rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
