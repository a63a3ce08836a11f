//! A deliberately hostile policy for the engine's sandbox tests. What it does is chosen by the
//! pod's `hostile` annotation (found by a plain substring search, to stay dependency-free):
//! loop forever, sleep or wait on a pollable forever inside the host, read stdin, exhaust
//! memory, read files, open sockets, read the environment, panic, or return output that breaks
//! the host's rules. Without the annotation it behaves.
#![cfg(target_arch = "wasm32")]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy",
});

use exports::stackpath::policy::translator::Guest;
use stackpath::policy::types::{Context, PolicyInfo, Rejection, Translation, Violation, Warning};

const VALID: &str = r#"{"containers":{"app":{"image":"app:1","resources":{"requests":{"cpu":"1","memory":"2Gi"},"limits":{"cpu":"1","memory":"2Gi"}}}}}"#;

struct Hostile;

fn mode(pod: &str) -> &str {
    let Some(at) = pod.find("\"hostile\":\"") else {
        return "";
    };
    let rest = &pod[at + 11..];
    &rest[..rest.find('"').unwrap_or(0)]
}

fn reject(message: String) -> Result<Translation, Rejection> {
    Err(Rejection {
        violations: vec![Violation {
            path: "metadata.annotations.hostile".into(),
            message,
        }],
    })
}

fn ok(spec: &str, warnings: Vec<Warning>) -> Result<Translation, Rejection> {
    Ok(Translation {
        spec: spec.into(),
        annotations: vec![],
        warnings,
    })
}

impl Guest for Hostile {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "hostile".into(),
            version: "0.0.0".into(),
            description: "misbehaves on request; for tests only".into(),
        }
    }

    fn translate(pod: String, ctx: Context) -> Result<Translation, Rejection> {
        match mode(&pod) {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            // Both wait inside the host (wasi:io/poll), where epoch interruption never fires.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                reject("WOKE UP after an hour".into())
            }
            "poll-forever" => {
                let never = wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX);
                loop {
                    wasip2::io::poll::poll(&[&never]);
                }
            }
            "stdin" => {
                use std::io::Read;
                let mut input = Vec::new();
                match std::io::stdin().read_to_end(&mut input) {
                    Ok(n) => reject(format!("stdin: {n} bytes")),
                    Err(e) => reject(format!("stdin: {e}")),
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "panic" => panic!("the hostile policy panics on purpose"),
            "fs" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => reject(format!("READ FILE: {} bytes", text.len())),
                Err(e) => reject(format!("file access denied: {e}")),
            },
            "fs-write" => match std::fs::write("/tmp/hostile-was-here", b"x") {
                Ok(()) => reject("WROTE FILE".into()),
                Err(e) => reject(format!("file write denied: {e}")),
            },
            "net" => {
                let addr = ctx.stack_id.clone();
                match std::net::TcpStream::connect(addr.as_str()) {
                    Ok(_) => reject(format!("CONNECTED to {addr}")),
                    Err(e) => reject(format!("network denied: {e}")),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                reject(format!("env vars: {}; args: {}", vars.len(), args.len()))
            }
            "chatty" => {
                for i in 0..1000 {
                    println!("line {i} of chatter");
                    stackpath::policy::log::log(stackpath::policy::log::Level::Info, "chatter");
                }
                ok(VALID, vec![])
            }
            "secret-as-value" => ok(
                r#"{"containers":{"app":{"image":"app:1","env":{"PASSWORD":{"value":"guessed"}},"resources":{"requests":{"cpu":"1","memory":"2Gi"},"limits":{"cpu":"1","memory":"2Gi"}}}}}"#,
                vec![],
            ),
            "host-owned" => ok(
                r#"{"networkInterfaces":[{"network":"evil"}],"containers":{"app":{"image":"app:1","resources":{"requests":{"cpu":"1","memory":"2Gi"},"limits":{"cpu":"1","memory":"2Gi"}}}}}"#,
                vec![],
            ),
            "bad-size" => ok(
                r#"{"containers":{"app":{"image":"app:1","resources":{"requests":{"cpu":"3","memory":"5Gi"},"limits":{"cpu":"3","memory":"5Gi"}}}}}"#,
                vec![],
            ),
            "unknown-field" => ok(
                r#"{"containers":{"app":{"image":"app:1","privileged":true,"resources":{"requests":{"cpu":"1","memory":"2Gi"},"limits":{"cpu":"1","memory":"2Gi"}}}}}"#,
                vec![],
            ),
            "not-json" => ok("{containers", vec![]),
            "many-warnings" => ok(
                VALID,
                (0..1_000)
                    .map(|i| Warning {
                        path: format!("w{i}"),
                        message: "x".repeat(5000),
                    })
                    .collect(),
            ),
            _ => ok(VALID, vec![]),
        }
    }
}

export!(Hostile);
