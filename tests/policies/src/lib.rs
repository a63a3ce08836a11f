//! Builds the example policies of `examples/policies/` and runs the real `vk-stackpath` binary
//! on them, for the tests in `tests/`. Everything goes through public interfaces: the policies'
//! own build commands and the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); its output is above. {hint}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        hint: &'static str,
    },
    #[error("{what} was not produced at {path}")]
    Missing { what: &'static str, path: PathBuf },
    #[error("an earlier build in this test run failed: {0}")]
    Earlier(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .components()
        .collect()
}

/// `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => workspace_root().join(p),
        None => workspace_root().join("target"),
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Flags meant for this test build (coverage, clippy) must not reach the nested builds.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(cmd: &mut Command, hint: &'static str) -> Result<()> {
    let command = format!("{cmd:?}");
    let status = cmd.status().map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed {
            command,
            status,
            hint,
        })
    }
}

/// The daemon binary: `$VK_STACKPATH_BIN`, else `cargo build -p vk-stackpath` into the
/// workspace's target dir (instant when the test build already built it).
pub fn vk_stackpath() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&BIN, || {
        if let Some(bin) = std::env::var_os("VK_STACKPATH_BIN").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(bin));
        }
        let target = target_dir();
        run(
            cargo()
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--package",
                    "vk-stackpath",
                    "--bin",
                    "vk-stackpath",
                    "--target-dir",
                ])
                .arg(&target),
            "",
        )?;
        exists("the vk-stackpath binary", target.join("debug/vk-stackpath"))
    })
}

/// `examples/policies/rust-strict`, built for wasm32-wasip2 by its own cargo project (it is not
/// a workspace member: a policy is a project of its own) into `<target>/guest-examples`. Not
/// `<target>/guest`, where the daemon's build script builds the embedded default policy: this
/// project builds `guest-default` too (as a library, without its `component` feature), and its
/// `guest_default.wasm` would replace the real one there.
pub fn rust_strict() -> Result<PathBuf> {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&WASM, || {
        let target = target_dir().join("guest-examples");
        let manifest = workspace_root().join("examples/policies/rust-strict/Cargo.toml");
        run(
            cargo()
                .current_dir(workspace_root())
                .args([
                    "build",
                    "--locked",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(&manifest)
                .arg("--target-dir")
                .arg(&target),
            "If the wasm32-wasip2 target is missing: rustup target add wasm32-wasip2.",
        )?;
        exists(
            "the rust-strict policy",
            target.join("wasm32-wasip2/release/rust_strict_policy.wasm"),
        )
    })
}

/// `examples/policies/python-annotate`, built by its `build.sh` (componentize-py from PyPI,
/// installed once into `<target>/policies`).
pub fn python_annotate() -> Result<PathBuf> {
    static WASM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&WASM, || {
        let out = target_dir().join("policies/python_annotate.wasm");
        run(
            Command::new(workspace_root().join("examples/policies/python-annotate/build.sh"))
                .arg(&out)
                .env("CARGO_TARGET_DIR", target_dir())
                .stdout(std::process::Stdio::null()),
            "It needs python3 with venv and, the first time, PyPI to install componentize-py.",
        )?;
        exists("the python-annotate policy", out)
    })
}

/// Runs `vk-stackpath` with `args`; its whole output.
pub fn vk(args: &[&std::ffi::OsStr]) -> Result<Output> {
    let bin = vk_stackpath()?;
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        // Compiled policies are cached next to the build, not in the user's home.
        .env("VK_POLICY_CACHE_DIR", target_dir().join("policies/cache"))
        .env_remove("SP_CITY_CODE")
        .env_remove("SP_STACK_ID")
        .env_remove("VK_POLICY")
        .env_remove("VK_LOG")
        .env_remove("VK_LOG_FORMAT");
    cmd.output().map_err(|source| Error::Spawn {
        command: format!("{cmd:?}"),
        source,
    })
}

fn exists(what: &'static str, path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing { what, path })
    }
}

/// A once-per-process build whose failure every caller sees (as text: errors do not clone).
fn once(
    cell: &'static OnceLock<Result<PathBuf, String>>,
    build: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    cell.get_or_init(|| build().map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Earlier)
}
