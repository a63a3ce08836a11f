//! The kubelet API spoken to directly (no API server): exec over SPDY/3.1 and WebSocket with
//! v5 and v4, logs with resumption across a StackPath-side cut, host key checks, and the
//! "not supported" answers. Everything runs against the emulator's real console processes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::clients::{Input, spdy_exec, ws_exec};
use common::*;
use vk_kubelet::{AuthMode, HostKeyPolicy};

struct Fixture {
    emu: stackpath_emulator::RunningEmulator,
    kubelet: Running,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

async fn fixture(host_key: Option<HostKeyPolicy>, script: &str) -> Fixture {
    init_tracing();
    let emu = emulator(Duration::from_secs(2)).await;
    let sp = stackpath(&emu);
    let slug = format!("w{}", rand_suffix());
    let loc = workload(&sp, &slug, script).await;
    let locator = Arc::new(TestLocator::default());
    locator.add("default", "web", &["app"], &["init"], loc);
    let dir = tempfile::tempdir().unwrap();
    let pki = serving_pki(dir.path(), None);
    let pin = HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]);
    let kubelet = start_kubelet(
        &pki,
        None,
        AuthMode::InsecureNone,
        console(&emu, host_key.unwrap_or(pin)),
        locator,
        sp,
        unused_kube(),
        loopback(),
    )
    .await;
    Fixture {
        tls: tls_client(&pki.ca_pem),
        emu,
        kubelet,
        _dir: dir,
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::process::id() % 10000 * 100 + N.fetch_add(1, Ordering::Relaxed)
}

fn exec_path(cmd: &[&str], flags: &str) -> String {
    let mut q: Vec<String> = cmd
        .iter()
        .map(|c| {
            let enc: String = c
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("command={enc}")
        })
        .collect();
    q.push(flags.to_string());
    format!("/exec/default/web/app?{}", q.join("&"))
}

#[derive(Clone, Copy)]
enum Transport {
    Spdy,
    Ws,
}

async fn run(
    f: &Fixture,
    t: Transport,
    proto: &str,
    path: &str,
    input: Input,
) -> common::clients::ExecResult {
    let fut = async {
        match t {
            Transport::Spdy => {
                spdy_exec(f.tls.clone(), f.kubelet.addr, path, &[proto], input).await
            }
            Transport::Ws => ws_exec(f.tls.clone(), f.kubelet.addr, path, proto, input).await,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("exec finishes")
}

async fn exec_suite(t: Transport, proto: &str) {
    let f = fixture(None, "sleep 3600").await;

    // stdout and stderr apart, exit 0 → Success.
    let r = run(
        &f,
        t,
        proto,
        &exec_path(
            &["sh", "-c", "echo out; echo err >&2"],
            "stdout=true&stderr=true",
        ),
        Input::default(),
    )
    .await;
    assert_eq!(r.protocol, proto);
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(
        r.status()["status"],
        "Success",
        "{}",
        String::from_utf8_lossy(&r.error)
    );

    // A failing command → Failure / NonZeroExitCode / ExitCode cause.
    let r = run(
        &f,
        t,
        proto,
        &exec_path(&["sh", "-c", "exit 7"], "stdout=true&stderr=true"),
        Input::default(),
    )
    .await;
    let s = r.status();
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], "NonZeroExitCode");
    assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(s["details"]["causes"][0]["message"], "7");

    // Binary-safe stdout: all 256 byte values, twice.
    let fmt: String = (0u8..=255)
        .map(|b| {
            if b == b'%' {
                "%%".to_string()
            } else {
                format!("\\{b:03o}")
            }
        })
        .collect();
    let script = format!("printf '{fmt}'; printf '{fmt}'");
    let r = run(
        &f,
        t,
        proto,
        &exec_path(&["sh", "-c", &script], "stdout=true"),
        Input::default(),
    )
    .await;
    let want: Vec<u8> = (0..2).flat_map(|_| 0u8..=255).collect();
    assert_eq!(r.stdout.len(), want.len(), "binary output length");
    assert_eq!(r.stdout, want);

    // Stdin: with a close (SPDY FIN / v5 close signal) `cat` sees EOF; without one (v4
    // WebSocket cannot half-close) `head -c` stops by itself.
    let can_close = matches!(t, Transport::Spdy) || proto.starts_with("v5");
    let input = Input {
        stdin: Some(b"hello stdin".to_vec()),
        close_stdin: can_close,
        resize: None,
    };
    let cmd: &[&str] = if can_close {
        &["cat"]
    } else {
        &["head", "-c", "11"]
    };
    let r = run(
        &f,
        t,
        proto,
        &exec_path(cmd, "stdin=true&stdout=true&stderr=true"),
        input,
    )
    .await;
    assert_eq!(r.stdout, b"hello stdin");
    assert_eq!(r.status()["status"], "Success");

    // TTY with a resize: the terminal reports the size we sent.
    let input = Input {
        stdin: None,
        close_stdin: false,
        resize: Some((123, 45)),
    };
    let r = run(
        &f,
        t,
        proto,
        &exec_path(
            &["sh", "-c", "sleep 0.5; stty size"],
            "stdout=true&tty=true",
        ),
        input,
    )
    .await;
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(out.contains("45 123"), "stty size printed {out:?}");

    f.kubelet.stop().await;
    f.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_spdy_v5() {
    exec_suite(Transport::Spdy, "v5.channel.k8s.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_spdy_v4() {
    exec_suite(Transport::Spdy, "v4.channel.k8s.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_websocket_v5() {
    exec_suite(Transport::Ws, "v5.channel.k8s.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_websocket_v4() {
    exec_suite(Transport::Ws, "v4.channel.k8s.io").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear() {
    let f = fixture(None, "sleep 3600").await;
    // Wrong container: 400 naming the valid ones.
    let r = spdy_exec(
        f.tls.clone(),
        f.kubelet.addr,
        "/exec/default/web/nope?command=ls&stdout=true",
        &["v4.channel.k8s.io"],
        Input::default(),
    )
    .await;
    assert_eq!(r.status_code, 400);
    let body = String::from_utf8_lossy(&r.error).to_string();
    assert!(body.contains("valid containers: app"), "{body}");
    // Init container.
    let r = spdy_exec(
        f.tls.clone(),
        f.kubelet.addr,
        "/exec/default/web/init?command=ls&stdout=true",
        &["v4.channel.k8s.io"],
        Input::default(),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&r.error).contains("init container"),
        "{:?}",
        String::from_utf8_lossy(&r.error)
    );
    // Unknown protocol → 403 with the negotiation message.
    let r = spdy_exec(
        f.tls.clone(),
        f.kubelet.addr,
        &exec_path(&["ls"], "stdout=true"),
        &["v9.channel.k8s.io"],
        Input::default(),
    )
    .await;
    assert_eq!(r.status_code, 403);
    // attach / portForward.
    let http = reqwest_like_get(&f, "/attach/default/web/app?stdout=true").await;
    assert!(
        http.contains("not supported by the StackPath provider"),
        "{http}"
    );
    let http = reqwest_like_get(&f, "/portForward/default/web").await;
    assert!(
        http.contains("port-forward is not supported by the StackPath provider"),
        "{http}"
    );
    f.kubelet.stop().await;
    f.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_mismatch_is_refused() {
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkHMl8Bgvl7yJBsO2TBGbW0W3P0hmH9PQ0EhQ9wQ6Qm"
        .to_string();
    let f = fixture(Some(HostKeyPolicy::Pinned(vec![other])), "sleep 3600").await;
    let r = run(
        &f,
        Transport::Ws,
        "v5.channel.k8s.io",
        &exec_path(&["echo", "hi"], "stdout=true"),
        Input::default(),
    )
    .await;
    let s = r.status();
    assert_eq!(s["status"], "Failure");
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(msg.contains("does not match"), "{msg}");
    assert!(r.stdout.is_empty());
    f.kubelet.stop().await;

    // known_hosts with the right key works; with the wrong one it is refused.
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    let addr = f.emu.ssh_addr.unwrap();
    std::fs::write(
        &kh,
        format!(
            "[{}]:{} {}\n",
            addr.ip(),
            addr.port(),
            f.emu.ssh_host_key_openssh.clone().unwrap()
        ),
    )
    .unwrap();
    let cfg = console(&f.emu, HostKeyPolicy::KnownHosts(kh));
    let loc = TestLocator::default();
    let sp = stackpath(&f.emu);
    let l = workload(&sp, &format!("k{}", rand_suffix()), "sleep 3600").await;
    loc.add("default", "web", &["app"], &[], l);
    let pki = serving_pki(dir.path(), None);
    let k = start_kubelet(
        &pki,
        None,
        AuthMode::InsecureNone,
        cfg,
        Arc::new(loc),
        sp,
        unused_kube(),
        loopback(),
    )
    .await;
    let r = ws_exec(
        tls_client(&pki.ca_pem),
        k.addr,
        &exec_path(&["echo", "hi"], "stdout=true"),
        "v5.channel.k8s.io",
        Input::default(),
    )
    .await;
    assert_eq!(r.stdout, b"hi\n");
    k.stop().await;
    f.emu.shutdown().await;
}

async fn reqwest_like_get(f: &Fixture, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tls_connect(f.tls.clone(), f.kubelet.addr).await;
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).to_string()
}

async fn get_body(f: &Fixture, path: &str) -> (u16, Vec<u8>) {
    let raw = reqwest_like_get(f, path).await;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, dechunk(&body))
}

fn dechunk(body: &str) -> Vec<u8> {
    // Minimal chunked decoding (our bodies are text).
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.as_bytes().to_vec();
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.extend_from_slice(&after.as_bytes()[..n]);
        rest = &after[n..];
        rest = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_options_and_follow_across_a_cut() {
    // One numbered line every 100 ms, for long enough to cross two 2 s cuts.
    let f = fixture(
        None,
        "i=0; while [ $i -lt 60 ]; do echo line $i; i=$((i+1)); sleep 0.1; done; sleep 3600",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let (code, body) = get_body(&f, "/containerLogs/default/web/app").await;
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(text.starts_with("line 0\nline 1\n"), "{text}");

    let (_, body) = get_body(&f, "/containerLogs/default/web/app?tailLines=2").await;
    assert_eq!(String::from_utf8_lossy(&body).lines().count(), 2);

    let (_, body) = get_body(&f, "/containerLogs/default/web/app?limitBytes=8").await;
    assert_eq!(body, b"line 0\nl");

    let (_, body) = get_body(
        &f,
        "/containerLogs/default/web/app?timestamps=true&tailLines=1",
    )
    .await;
    let line = String::from_utf8_lossy(&body).to_string();
    let (ts, rest) = line.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
    assert!(rest.starts_with("line "));

    let (_, body) = get_body(&f, "/containerLogs/default/web/app?sinceSeconds=3600").await;
    assert!(String::from_utf8_lossy(&body).starts_with("line 0\n"));

    let (code, _) = get_body(&f, "/containerLogs/default/web/app?sinceSeconds=0").await;
    assert_eq!(code, 400);

    // follow: read until line 59 arrives; the emulator cuts the stream every 2 s.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tls_connect(f.tls.clone(), f.kubelet.addr).await;
    c.write_all(b"GET /containerLogs/default/web/app?follow=true HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&raw).contains("line 59\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf))
            .await
            .expect("follow delivers all lines")
            .unwrap();
        assert!(
            n > 0,
            "follow stream ended early: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let lines: Vec<&str> = body.lines().filter(|l| l.starts_with("line ")).collect();
    let want: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, want, "no gaps, no repeats across the cuts");
    drop(c);

    f.kubelet.stop().await;
    f.emu.shutdown().await;
}
