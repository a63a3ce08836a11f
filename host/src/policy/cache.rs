//! A disk cache of compiled policies, keyed by the policy's bytes and the engine's settings
//! (`Engine::precompile_compatibility_hash`), so that a daemon restart or a CLI run loads a
//! policy it has seen in milliseconds instead of compiling it again.
//!
//! The cache holds native code, which the daemon runs as it finds it. So it is used only when
//! nobody but the daemon's user can have written it: the directory (created 0700 when missing)
//! and each entry must belong to that user and be writable by no one else. Otherwise the cache
//! is bypassed with a warning saying what to fix, and the policy is compiled in memory: a cache
//! is an optimisation, and refusing to start over one would turn a wrong volume mode into an
//! outage. (The check is on the directory itself: a parent that others may write to lets them
//! swap the whole directory, so give the cache a directory of its own under a parent they
//! cannot write, as `~/.cache` or an `emptyDir` subdirectory is.)

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::Path;

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
    let dir = dir.filter(|dir| match private_dir(dir) {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!(
                dir = %dir.display(),
                "not using the policy cache: {why}; compiling the policy in memory"
            );
            false
        }
    });
    let path = dir.map(|dir| dir.join(key(engine, bytes)));
    if let Some(path) = &path {
        match private_entry(path) {
            Ok(false) => {}
            Ok(true) => {
                // SAFETY: the file is in a directory only the daemon's user can write, and
                // was written there by `store` below from a component this very engine
                // configuration compiled; the key covers the bytes and the engine's settings,
                // and wasmtime re-checks the settings on load.
                match unsafe { Component::deserialize_file(engine, path) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unusable cached policy; compiling again")
                    }
                }
            }
            Err(why) => {
                tracing::warn!(
                    path = %path.display(),
                    "not using the cached policy: {why}; compiling again and replacing it"
                );
            }
        }
    }
    let serialized = compiler()?.precompile_component(bytes)?;
    if let Some(path) = &path
        && let Err(e) = store(path, &serialized)
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache the compiled policy");
    }
    // SAFETY: just produced by an engine with this engine's settings (wasmtime checks them).
    unsafe { Component::deserialize(engine, &serialized) }
}

/// Creates `dir` (0700) if it is missing, and checks that only the daemon's user can write it.
fn private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create it: {e}"))?;
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    unshared("directory", &meta).map_err(|why| {
        format!(
            "{why}; give --policy-cache-dir a directory of the daemon's user that no one else \
             can write (the daemon creates a missing one with mode 0700)"
        )
    })
}

/// Whether a cache entry exists at `path`, and an error if one exists that others could have
/// written (or that is not a plain file).
fn private_entry(path: &Path) -> Result<bool, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    if !meta.file_type().is_file() {
        return Err("it is not a plain file".into());
    }
    unshared("file", &meta)?;
    Ok(true)
}

#[cfg(unix)]
fn unshared(what: &str, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    writable_by_others(what, meta.uid(), meta.mode(), me)
}

#[cfg(not(unix))]
fn unshared(_: &str, _: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// Why an item owned by `owner` with permission bits `mode` may have been written by someone
/// other than the user `me`.
fn writable_by_others(what: &str, owner: u32, mode: u32, me: u32) -> Result<(), String> {
    if owner != me {
        return Err(format!(
            "the {what} belongs to uid {owner}, not to the daemon's user (uid {me})"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "the {what} is writable by others (mode {:04o})",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Writes an entry readable and writable by the daemon's user only, aside first and renamed
/// into place, so a concurrent reader never sees half a file.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::writable_by_others;

    #[test]
    fn only_the_daemons_user_may_write() {
        writable_by_others("directory", 1000, 0o40700, 1000).unwrap();
        writable_by_others("file", 1000, 0o100644, 1000).unwrap();
        // The setgid bit a volume's fsGroup adds is fine; group write is not.
        writable_by_others("directory", 1000, 0o42700, 1000).unwrap();
        let cases = [
            (1000, 0o40770, "writable by others (mode 0770)"),
            (1000, 0o40777, "writable by others (mode 0777)"),
            (1000, 0o100666, "writable by others (mode 0666)"),
            (
                0,
                0o40700,
                "belongs to uid 0, not to the daemon's user (uid 1000)",
            ),
        ];
        for (owner, mode, why) in cases {
            let err = writable_by_others("directory", owner, mode, 1000).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }
}
