//! `cargo xtask <task>`: the project's automation, in Rust so it runs wherever cargo does.
//!
//! - `test`: the whole test suite exactly as CI runs it (`.ci/run` calls this).

use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        _ => {
            eprintln!("usage: cargo xtask test\n\n  test   run the whole test suite, as CI does");
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

/// One step: a command line, shown before it runs, timed after.
fn step(name: &str, program: &str, args: &[&str]) -> Result<(), String> {
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

fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn test() -> Result<(), String> {
    let started = Instant::now();
    // A toolchain file does not add targets to an already installed toolchain.
    step("wasm target", "rustup", &["target", "add", "wasm32-wasip2"])?;
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
    step(
        "licences, bans, sources",
        "cargo",
        &["deny", "--offline", "check", "licenses", "bans", "sources"],
    )?;
    step("tests", "cargo", &["test", "--workspace", "--no-fail-fast"])?;
    println!("\nall checks passed in {:.0?}", started.elapsed());
    Ok(())
}
