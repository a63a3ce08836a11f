//! Builds the default policy (guest-default) as a wasm32-wasip2 component and hands it to the
//! crate for embedding, so the daemon ships as one file.
//!
//! The guest is built by a nested cargo into its own target directory (`<target>/guest`), so
//! it never waits on the lock of the outer build. `VK_DEFAULT_POLICY_WASM=<file>` skips the
//! nested build and embeds that file instead (e.g. for cross builds that cannot run cargo).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("default-policy.wasm");

    println!("cargo:rerun-if-env-changed=VK_DEFAULT_POLICY_WASM");
    if let Ok(prebuilt) = env::var("VK_DEFAULT_POLICY_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        copy(Path::new(&prebuilt), &out);
        return;
    }
    for p in [
        "guest-default/src",
        "guest-default/Cargo.toml",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(p).display());
    }

    ensure_wasm_target();
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guest");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--package",
            "guest-default",
            "--lib",
            "--target",
            "wasm32-wasip2",
            // The policy runs once per pod on the hot path: it is always optimised.
            "--release",
            "--target-dir",
        ])
        .arg(&target_dir)
        // One codegen unit and LTO: the guest is small, and a faster policy is worth seconds
        // of build. Set here rather than in [profile.release], which the daemon shares.
        .args([
            "--config",
            "profile.release.lto=true",
            "--config",
            "profile.release.codegen-units=1",
        ])
        // Flags and wrappers meant for the host build (clippy, coverage, sanitizers) must not
        // leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "building the default policy (guest-default) for wasm32-wasip2 failed ({s}). If the \
             error above says the target is missing, run `rustup target add wasm32-wasip2`."
        ),
        Err(e) => panic!("could not run cargo to build the default policy: {e}"),
    }
    copy(
        &target_dir.join("wasm32-wasip2/release/guest_default.wasm"),
        &out,
    );
}

/// A toolchain file lists `wasm32-wasip2`, but rustup adds listed targets only when it installs
/// the toolchain; on a machine that already had 1.95.0 the target is missing. Add it (the same
/// idempotent `rustup target add` the README's setup runs) so that a fresh clone builds.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let present = sysroot.is_some_and(|s| s.join("lib/rustlib/wasm32-wasip2").is_dir());
    if present {
        return;
    }
    println!("cargo:warning=adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status();
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!(
            "could not copy the default policy from {}: {e}",
            from.display()
        );
    }
}
