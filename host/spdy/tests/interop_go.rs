//! Interoperability with the Go SPDY stack Kubernetes runs: `github.com/moby/spdystream` and
//! client-go's SPDY `remotecommand` executor (see `interop/main.go`).
//!
//! The Go program is built with `go build` into this target directory (Go's build cache makes
//! rebuilds quick). Without a `go` toolchain these tests print why and pass without checking.

#[path = "support/echo.rs"]
mod echo;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use spdy3::{Config, Headers, Session};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const T: Duration = Duration::from_secs(120);

/// Builds the Go program once per test binary; `None` when Go is not installed.
fn go_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if std::process::Command::new("go")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: no `go` toolchain on PATH; the Go interop tests did not run");
            return None;
        }
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spdy-interop");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
        let status = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .status()
            .expect("running go build");
        assert!(status.success(), "go build of {} failed", src.display());
        Some(out)
    })
    .clone()
}

async fn start_echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(echo::serve(listener));
    addr
}

async fn run_go(args: &[&str], expect: &[&str]) {
    let Some(bin) = go_binary() else { return };
    let out = tokio::time::timeout(T, Command::new(bin).args(args).kill_on_drop(true).output())
        .await
        .expect("Go interop client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Go client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for e in expect {
        assert!(
            stdout.lines().any(|l| l == *e),
            "missing {e:?} in:\n{stdout}"
        );
    }
}

/// spdystream client (raw SPDY over TCP) against our server: ping, and concurrent streams of
/// 0 B to 1 MiB echoed back (well past the 64 KiB windows spdystream never updates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdystream_client_against_rust_server() {
    let addr = start_echo_server().await;
    run_go(&["echo", &addr], &["PASS ping", "PASS echo-concurrent"]).await;
}

const EXEC_PASSES: [&str; 3] = [
    "PASS exec-cat",
    "PASS exec-exit-code",
    "PASS exec-tty-resize",
];

/// client-go's `remotecommand.NewSPDYExecutor` (kubectl exec, and kube-apiserver's own SPDY
/// client) against our server emulating a kubelet's /exec: HTTP upgrade, channel protocol
/// negotiation (v5 chosen), 512 KiB through stdin→stdout, stderr, exit code 3 on the error
/// channel, and a TTY session's resize stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_exec_v5_against_rust_server() {
    let addr = start_echo_server().await;
    run_go(&["exec", &format!("http://{addr}")], &EXEC_PASSES).await;
}

/// The same with only `v4.channel.k8s.io` offered (API servers before 1.29, kubectl 1.27).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_go_exec_v4_against_rust_server() {
    let addr = start_echo_server().await;
    run_go(
        &["exec", &format!("http://{addr}"), "v4.channel.k8s.io"],
        &EXEC_PASSES,
    )
    .await;
}

/// Our client against a spdystream server that echoes each stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_against_spdystream_server() {
    let Some(bin) = go_binary() else { return };
    let mut child = Command::new(bin)
        .arg("serve")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(T, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_owned();

    let conn = TcpStream::connect(&addr).await.unwrap();
    let (session, _incoming) = Session::client(conn, Config::default());
    tokio::time::timeout(T, session.ping())
        .await
        .unwrap()
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..3usize {
        let stream = session
            .open_stream(Headers::new().with("streamtype", format!("s{i}")), false)
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let reply = stream.reply().await.unwrap();
            assert_eq!(reply.get("x-echo"), Some(format!("s{i}").as_str()));
            let data: Vec<u8> = (0..300_000 + i).map(|j| (j * 31 + i) as u8).collect();
            let (mut r, mut w) = tokio::io::split(stream);
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
                w
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            let _w = writer.await.unwrap();
            assert!(
                got == data,
                "stream {i}: echoed {} of {} bytes",
                got.len(),
                data.len()
            );
        }));
    }
    for t in tasks {
        tokio::time::timeout(T, t)
            .await
            .expect("echo through spdystream timed out")
            .unwrap();
    }
    session.abort();
    let _ = child.kill().await;
}
