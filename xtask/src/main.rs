//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `demo`: the full local demo (control plane, emulator, daemon, example pods, kubectl).
//! - `test`: the whole test suite exactly as CI runs it (`.ci/run` calls this).

mod demo;

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo::demo(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  demo   the full local demo (see `cargo xtask demo --help`)\n  test   run the whole test suite, as CI does\n\n{}",
                demo::USAGE
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds (or finds cached) the control-plane binaries the tests and the demo run.
pub(crate) const CONTROL_PLANE_BUILD: &[&str] = &[
    "run",
    "-p",
    "local-cluster",
    "--",
    "build",
    "--with-metrics-server",
];

/// One step: a command line, shown before it runs, timed after.
pub(crate) fn step(name: &str, program: &str, args: &[&str]) -> Result<(), String> {
    println!("\n==> {name}: {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{name}: cannot run {program}: {e}"))?;
    println!("<== {name}: {status} after {:.0?}", started.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

/// Installs a Debian package the checks need (`what` names it in the step line).
fn apt_install(what: &str, package: &str) -> Result<(), String> {
    step("package lists", "apt-get", &["update", "-q"])?;
    step(
        &format!("install {what}"),
        "apt-get",
        &["install", "-y", "-q", package],
    )
}

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn test() -> Result<(), String> {
    let started = Instant::now();
    // A checkout is built once per run: incremental caches (gigabytes per checkout) would only
    // fill the shared target dir. Dependencies are never incremental, so they stay shared.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("CARGO_INCREMENTAL", "0") };
    // A toolchain file does not add targets to an already installed toolchain.
    step("wasm target", "rustup", &["target", "add", "wasm32-wasip2"])?;
    system_tools()?;
    step("format", "cargo", &["fmt", "--all", "--", "--check"])?;
    step(
        "lint",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    if !have("cargo", &["deny", "--version"]) {
        step(
            "install cargo-deny",
            "cargo",
            &["install", "cargo-deny", "--locked", "--version", "^0.20"],
        )?;
    }
    // `cargo deny --offline` reads every crate of Cargo.lock, for every platform (windows-sys
    // included), which no build of ours downloads: on a fresh machine, fetch them first.
    step("fetch every locked crate", "cargo", &["fetch", "--locked"])?;
    step(
        "licences, bans, sources",
        "cargo",
        &["deny", "--offline", "check", "licenses", "bans", "sources"],
    )?;
    // Kubernetes from its own Go modules (cached by go.mod hash; minutes when cold). Built in
    // its own step so its progress shows, rather than inside the first test that needs it.
    step("kubernetes control plane", "cargo", CONTROL_PLANE_BUILD)?;
    step("tests", "cargo", &["test", "--workspace", "--no-fail-fast"])?;
    // The kubelet API behind a 1.37 API server too. The 1.34 one above turns every exec into
    // SPDY toward the kubelet; from 1.36 a WebSocket client's session stays WebSocket through
    // to a kubelet that declares ExtendWebSocketsToKubelet. Both paths, as real API servers
    // take them (the test asserts which transports arrived). Cold: ~9 min of Go builds.
    step(
        "kubernetes 1.37 control plane",
        "cargo",
        &[CONTROL_PLANE_BUILD, &["--k8s-version", "1.37"]].concat(),
    )?;
    step(
        "kubelet API through kube-apiserver 1.37",
        "env",
        &[
            "VK_K8S_VERSION=1.37",
            "cargo",
            "test",
            "-p",
            "vk-kubelet",
            "--test",
            "apiserver",
        ],
    )?;
    // The container image (deploy/Containerfile) without a Docker engine: buildah with the
    // vfs driver when installed, else the same layer and config written by hand; then the
    // binary's `--version` from the unpacked layers. Dev profile: the check is the image's
    // shape; a musl build of the tree (minutes when cold, seconds when warm).
    step(
        "container image",
        "cargo",
        &[
            "test",
            "-p",
            "deploy-tests",
            "--test",
            "image",
            "--",
            "--ignored",
        ],
    )?;
    step(
        "emulator conformance (schemathesis)",
        "bash",
        &["tests/emulator/conformance.sh"],
    )?;
    println!("\nall checks passed in {:.0?}", started.elapsed());
    Ok(())
}

/// Tools the tests drive from outside Rust: the system SSH client (console tests), Go (the
/// control plane, SPDY interop) and schemathesis (API conformance).
fn system_tools() -> Result<(), String> {
    if !have("go", &["version"]) {
        return Err(
            "Go is needed to build Kubernetes for the tests: install it (https://go.dev/dl) \
                    or point KUBEBUILDER_ASSETS at ready binaries"
                .into(),
        );
    }
    if !have("ssh", &["-V"]) {
        apt_install("ssh client", "openssh-client")?;
    }
    // ring compiles C for the musl target of the container image.
    if !have("musl-gcc", &["-v"]) && !have("x86_64-linux-musl-gcc", &["-v"]) {
        apt_install("musl C compiler", "musl-tools")?;
    }
    step(
        "musl target (container image)",
        "rustup",
        &["target", "add", "x86_64-unknown-linux-musl"],
    )?;
    if !have("schemathesis", &["--version"]) {
        step(
            "install schemathesis",
            "python3",
            &["-m", "pip", "install", "--quiet", "schemathesis==4.32.5"],
        )?;
    }
    Ok(())
}
