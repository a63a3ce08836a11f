//! The kubelet API under abuse and failure, spoken to directly (no API server): slow and idle
//! clients, the connection cap, stream limits per pod and per node, a 100 MB log line, consoles
//! that stall, serving certificate files replaced underneath it, a port taken at start, and
//! StackPath metrics calls per scrape.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::clients::{Input, ws_exec};
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vk_kubelet::{
    CertFiles, ConsoleError, Health, HealthState, HostKeyPolicy, KubeletConfig, Limits,
    ProbeOutcome, TlsSource,
};

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::process::id() % 10000 * 100 + N.fetch_add(1, Ordering::Relaxed)
}

struct Fixture {
    emu: stackpath_emulator::RunningEmulator,
    kubelet: Running,
    tls: Arc<rustls::ClientConfig>,
    locator: Arc<TestLocator>,
    _dir: tempfile::TempDir,
}

/// An emulator with pod `default/web` (container `app` running `script`) behind a kubelet API
/// with `limits`.
async fn fixture(script: &str, limits: Limits) -> Fixture {
    init_tracing();
    let emu = emulator(Duration::from_secs(2)).await;
    let sp = stackpath(&emu);
    let loc = workload(&sp, &format!("h{}", rand_suffix()), script).await;
    let locator = Arc::new(TestLocator::default());
    locator.add("default", "web", &["app"], &[], loc);
    let dir = tempfile::tempdir().unwrap();
    let pki = serving_pki(dir.path(), None);
    let pin = HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]);
    let cfg = KubeletConfig {
        limits,
        ..kubelet_config(&pki, console(&emu, pin))
    };
    let kubelet = start_kubelet_with(cfg, locator.clone(), sp, unused_kube()).await;
    Fixture {
        tls: tls_client(&pki.ca_pem),
        emu,
        kubelet,
        locator,
        _dir: dir,
    }
}

impl Fixture {
    async fn stop(self) {
        self.kubelet.stop().await;
        self.emu.shutdown().await;
    }
}

/// Whether the server closed `c` within `within` (reading until EOF or an error).
async fn closed_within(
    c: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> bool {
    let mut b = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A GET through hyper's client: the status and the body to read at one's pace.
async fn get(
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> (http::StatusCode, hyper::body::Incoming) {
    let conn = tls_connect(tls, addr).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let req = http::Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("a response");
    let status = resp.status();
    (status, resp.into_body())
}

async fn get_text(tls: Arc<rustls::ClientConfig>, addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, body) = get(tls, addr, path).await;
    let bytes = body.collect().await.expect("the whole body").to_bytes();
    (
        status.as_u16(),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// Reads `body` until `needle` shows (or panics after `within`).
async fn read_until(
    body: &mut hyper::body::Incoming,
    got: &mut String,
    needle: &str,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !got.contains(needle) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within {within:?}; got {got:?}"));
        match frame {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    got.push_str(&String::from_utf8_lossy(&d));
                }
            }
            other => panic!("the stream ended before {needle:?} ({other:?}); got {got:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_at_the_header_deadline() {
    let f = fixture(
        "sleep 3600",
        Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            ..Limits::default()
        },
    )
    .await;
    // A whole request in time is served.
    let (code, _) = get_text(f.tls.clone(), f.kubelet.addr, "/pods").await;
    assert_eq!(code, 200);
    // One header line every 200 ms, never the end of the headers.
    let mut c = tls_connect(f.tls.clone(), f.kubelet.addr).await;
    let started = Instant::now();
    c.write_all(b"GET /pods HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut sent = 0;
    let cut = loop {
        if c.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break started.elapsed();
        }
        sent += 1;
        if closed_within(&mut c, Duration::from_millis(200)).await {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a client trickling headers kept its connection for 10 s ({sent} header lines)"
        );
    };
    assert!(sent >= 3, "the client was sending ({sent} lines)");
    assert!(cut < Duration::from_secs(3), "cut off after {cut:?}");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_quiet_streams_are_not() {
    let f = fixture(
        "sleep 3; echo late; sleep 3600",
        Limits {
            idle_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
    )
    .await;
    // A quiet `logs -f` from the start (nothing for 3 s, StackPath cuts at 2 s).
    let (status, mut follow) = get(
        f.tls.clone(),
        f.kubelet.addr,
        "/containerLogs/default/web/app?follow=true",
    )
    .await;
    assert_eq!(status, 200);
    // A connection that never sends a request.
    let mut silent = tls_connect(f.tls.clone(), f.kubelet.addr).await;
    let t = Instant::now();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a silent connection is closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );
    // A keep-alive connection after its request.
    let mut kept = tls_connect(f.tls.clone(), f.kubelet.addr).await;
    kept.write_all(b"GET /pods HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)).await,
        "an idle keep-alive connection is closed"
    );
    // The stream was quiet for longer than the idle timeout and is still there.
    let mut got = String::new();
    read_until(&mut follow, &mut got, "late\n", Duration::from_secs(20)).await;
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_open_ones_keep_working() {
    let f = fixture(
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        Limits {
            max_connections: 4,
            ..Limits::default()
        },
    )
    .await;
    let (_, mut follow) = get(
        f.tls.clone(),
        f.kubelet.addr,
        "/containerLogs/default/web/app?follow=true",
    )
    .await;
    let mut got = String::new();
    read_until(&mut follow, &mut got, "tick 1\n", Duration::from_secs(10)).await;
    // Three idle connections fill the cap.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tls_connect(f.tls.clone(), f.kubelet.addr).await);
    }
    // Give the server a moment to have accepted them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let tcp = tokio::net::TcpStream::connect(f.kubelet.addr)
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsConnector::from(f.tls.clone()).connect(name, tcp),
        )
        .await
        .expect("a refused connection is closed at once, not left hanging");
        assert!(r.is_err(), "connection {i} over the cap was served");
    }
    // The open stream carries on.
    let seen = got.matches("tick").count();
    read_until(
        &mut follow,
        &mut got,
        &format!("tick {}\n", seen + 3),
        Duration::from_secs(10),
    )
    .await;
    // A slot freed is a connection served.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = get_text(f.tls.clone(), f.kubelet.addr, "/pods").await;
    assert_eq!(code, 200);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_limited_per_pod_and_per_node() {
    let f = fixture(
        "while true; do echo x; sleep 1; done",
        Limits {
            max_streams: 3,
            max_streams_per_pod: 2,
            ..Limits::default()
        },
    )
    .await;
    let sp = stackpath(&f.emu);
    let other = workload(&sp, &format!("o{}", rand_suffix()), "sleep 3600").await;
    f.locator.add("default", "other", &["app"], &[], other);
    let follow = |pod: &'static str| {
        let (tls, addr) = (f.tls.clone(), f.kubelet.addr);
        async move {
            get(
                tls,
                addr,
                &format!("/containerLogs/default/{pod}/app?follow=true"),
            )
            .await
        }
    };
    // All as the same (anonymous) caller: the limit is per pod, not per caller.
    let a1 = follow("web").await;
    let a2 = follow("web").await;
    assert_eq!((a1.0.as_u16(), a2.0.as_u16()), (200, 200));
    let (code, body) = get_text(
        f.tls.clone(),
        f.kubelet.addr,
        "/containerLogs/default/web/app?follow=true",
    )
    .await;
    assert_eq!(code, 429, "{body}");
    assert!(
        body.contains("pod default/web") && body.contains("--kubelet-max-streams-per-pod"),
        "{body}"
    );
    // Another pod is not held up by the first one's streams...
    let b1 = follow("other").await;
    assert_eq!(b1.0, 200);
    // ...until the node's limit.
    let (code, body) = get_text(
        f.tls.clone(),
        f.kubelet.addr,
        "/exec/default/other/app?command=ls&stdout=true",
    )
    .await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("--kubelet-max-streams"), "{body}");
    // Closing a stream frees its slot.
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = get(
            f.tls.clone(),
            f.kubelet.addr,
            "/containerLogs/default/web/app?follow=true",
        )
        .await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not freed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((a2, b1));
    f.stop().await;
}

/// A StackPath stand-in serving one instance's logs: a line of `2 * half` bytes sent in two
/// halves, the second only once `release` fires, then a short line.
async fn huge_line_server(
    half: usize,
    release: tokio::sync::oneshot::Receiver<()>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::routing::{get, post};
    let release = Arc::new(tokio::sync::Mutex::new(Some(release)));
    let logs = move || {
        let release = release.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'a'; 64 << 10]);
                let send_half =
                    async |tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| {
                        let mut sent = 0;
                        while sent < half {
                            let n = chunk.len().min(half - sent);
                            if tx.send(Ok(chunk.slice(..n))).await.is_err() {
                                return false;
                            }
                            sent += n;
                        }
                        true
                    };
                let ts = Bytes::from_static(b"2026-01-01T00:00:01.000000000Z ");
                if tx.send(Ok(ts)).await.is_err() || !send_half(&tx).await {
                    return;
                }
                if let Some(r) = release.lock().await.take() {
                    let _ = r.await;
                }
                if !send_half(&tx).await {
                    return;
                }
                let _ = tx
                    .send(Ok(Bytes::from_static(
                        b"\n2026-01-01T00:00:02.000000000Z end\n",
                    )))
                    .await;
            });
            let body = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            axum::body::Body::from_stream(body)
        }
    };
    let app = axum::Router::new()
        .route(
            "/identity/v1/oauth2/token",
            post(|| async {
                axum::Json(json!({"access_token": "t", "token_type": "bearer", "expires_in": 3600}))
            }),
        )
        .route(
            "/workload/v1/stacks/{stack}/workloads/{w}/instances/{i}/logs",
            get(logs),
        );
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_log_line_passes_through_in_pieces() {
    init_tracing();
    let half = 50_000_000;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel();
    let (sp_addr, sp_task) = huge_line_server(half, release_rx).await;
    let cfg = stackpath_client::Config::new(&format!("http://{sp_addr}"), STACK, CLIENT_ID, SECRET)
        .unwrap();
    let sp = stackpath_client::Client::new(cfg).unwrap();
    let locator = Arc::new(TestLocator::default());
    locator.add(
        "default",
        "web",
        &["app"],
        &[],
        vk_kubelet::ContainerLocation {
            workload_id: "w".into(),
            instance_name: "i".into(),
            container: "app".into(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = serving_pki(dir.path(), None);
    let console = vk_kubelet::ConsoleConfig {
        host: "127.0.0.1".into(),
        port: 9,
        stack_id: STACK.into(),
        client_id: CLIENT_ID.into(),
        client_secret: stackpath_client::Secret::new(SECRET),
        host_key: HostKeyPolicy::Pinned(vec![]),
        connect_timeout: Duration::from_secs(1),
    };
    let kubelet =
        start_kubelet_with(kubelet_config(&pki, console), locator, sp, unused_kube()).await;
    let (status, mut body) = get(
        tls_client(&pki.ca_pem),
        kubelet.addr,
        "/containerLogs/default/web/app",
    )
    .await;
    assert_eq!(status, 200);
    // The first half of the line arrives while its end is not written yet: the kubelet API
    // does not wait for the newline (it would have to hold 100 MB).
    let mut got = 0usize;
    let mut release = Some(release_tx);
    let mut tail = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("stuck after {got} bytes of the line"));
        let Some(frame) = frame else { break };
        let data = frame.expect("body").into_data().unwrap_or_default();
        got += data.len();
        tail.extend_from_slice(&data[data.len().saturating_sub(64)..]);
        if tail.len() > 64 {
            tail.drain(..tail.len() - 64);
        }
        if got >= half - vk_kubelet::logs::MAX_HELD_LINE
            && let Some(r) = release.take()
        {
            let _ = r.send(());
        }
    }
    assert!(release.is_none(), "the first half never came through");
    assert_eq!(
        got,
        2 * half + "\nend\n".len(),
        "every byte, timestamps cut off"
    );
    assert!(
        tail.ends_with(b"aaa\nend\n"),
        "{:?}",
        String::from_utf8_lossy(&tail)
    );
    kubelet.stop().await;
    sp_task.abort();
}

/// A console stand-in: TCP only, or SSH that stalls at a given point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Accepts TCP and never says anything.
    BeforeSsh,
    /// Completes the SSH handshake, then never answers the login.
    AtLogin,
    /// Runs the command, then stops answering anything once it gets stdin.
    AfterStart,
}

struct StallConsole {
    addr: SocketAddr,
    host_key: String,
    task: tokio::task::JoinHandle<()>,
}

struct StallHandler(Stall);

impl russh::server::Handler for StallHandler {
    type Error = russh::Error;

    async fn auth_password(
        &mut self,
        _user: &str,
        _password: &str,
    ) -> Result<russh::server::Auth, Self::Error> {
        if self.0 == Stall::AtLogin {
            std::future::pending::<()>().await;
        }
        Ok(russh::server::Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: russh::ChannelId,
        _data: &[u8],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        _channel: russh::ChannelId,
        _data: &[u8],
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        // The session's loop waits on this: no more replies, keepalives included.
        std::future::pending::<()>().await;
        Ok(())
    }
}

async fn stall_console(stall: Stall) -> StallConsole {
    use russh::keys::ssh_key;
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]));
    let host_key = key.public_key().to_openssh().unwrap();
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        methods: russh::MethodSet::from(&[russh::MethodKind::Password][..]),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if stall == Stall::BeforeSsh {
                held.push(tcp);
                continue;
            }
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(s) = russh::server::run_stream(config, tcp, StallHandler(stall)).await {
                    let _ = s.await;
                }
            });
        }
    });
    StallConsole {
        addr,
        host_key,
        task,
    }
}

fn console_at(
    addr: SocketAddr,
    host_key: HostKeyPolicy,
    timeout: Duration,
) -> vk_kubelet::ConsoleConfig {
    vk_kubelet::ConsoleConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        stack_id: STACK.into(),
        client_id: CLIENT_ID.into(),
        client_secret: stackpath_client::Secret::new(SECRET),
        host_key,
        connect_timeout: timeout,
    }
}

/// A kubelet API whose console is `console`; exec of `cmd` on `default/web/app` over
/// WebSocket v5, with stdin if given: (the error message, how long it took).
async fn exec_against(
    console: vk_kubelet::ConsoleConfig,
    stdin: Option<&[u8]>,
) -> (String, Duration) {
    init_tracing();
    let locator = Arc::new(TestLocator::default());
    locator.add(
        "default",
        "web",
        &["app"],
        &[],
        vk_kubelet::ContainerLocation {
            workload_id: "w".into(),
            instance_name: "i".into(),
            container: "app".into(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = serving_pki(dir.path(), None);
    let cfg =
        stackpath_client::Config::new("http://127.0.0.1:9", STACK, CLIENT_ID, SECRET).unwrap();
    let sp = stackpath_client::Client::new(cfg).unwrap();
    let kubelet =
        start_kubelet_with(kubelet_config(&pki, console), locator, sp, unused_kube()).await;
    let flags = if stdin.is_some() {
        "stdin=true&stdout=true"
    } else {
        "stdout=true"
    };
    let t = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        ws_exec(
            tls_client(&pki.ca_pem),
            kubelet.addr,
            &format!("/exec/default/web/app?command=cat&{flags}"),
            "v5.channel.k8s.io",
            Input {
                stdin: stdin.map(<[u8]>::to_vec),
                close_stdin: false,
                resize: None,
            },
        ),
    )
    .await
    .expect("the exec ends");
    let took = t.elapsed();
    kubelet.stop().await;
    let msg = r.status()["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (msg, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_that_never_speaks_ssh_times_out() {
    let c = stall_console(Stall::BeforeSsh).await;
    let cfg = console_at(
        c.addr,
        HostKeyPolicy::Pinned(vec![c.host_key.clone()]),
        Duration::from_secs(1),
    );
    let t = Instant::now();
    let e = vk_kubelet::console::probe(&cfg).await.unwrap_err();
    assert!(
        matches!(
            e,
            ConsoleError::Timeout {
                stage: "the SSH handshake",
                ..
            }
        ),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let (msg, took) = exec_against(cfg, None).await;
    assert!(
        msg.contains("did not answer within 1s during the SSH handshake"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    c.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_that_stalls_after_the_handshake_times_out() {
    let c = stall_console(Stall::AtLogin).await;
    let cfg = console_at(
        c.addr,
        HostKeyPolicy::Pinned(vec![c.host_key.clone()]),
        Duration::from_secs(1),
    );
    // The probe stops before the login: this console passes it.
    let ok = vk_kubelet::console::probe(&cfg)
        .await
        .expect("handshake and key are fine");
    assert!(matches!(ok, ProbeOutcome::Verified { .. }), "{ok}");
    let (msg, took) = exec_against(cfg, None).await;
    assert!(
        msg.contains("did not answer within 1s during login"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    c.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_that_stops_answering_mid_session_is_given_up() {
    let c = stall_console(Stall::AfterStart).await;
    let cfg = console_at(
        c.addr,
        HostKeyPolicy::Pinned(vec![c.host_key.clone()]),
        Duration::from_secs(1),
    );
    // Three keepalives a second apart go unanswered: the exec ends in seconds, not 4 h.
    let (msg, took) = exec_against(cfg, Some(b"hello")).await;
    assert!(!msg.is_empty(), "the exec failed with a message");
    assert!(took < Duration::from_secs(15), "{took:?}: {msg}");
    c.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_problems_name_the_fix() {
    init_tracing();
    let emu = emulator(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let fp = emu.ssh_fingerprint.clone().unwrap();
    // No known_hosts file at all.
    let missing = console(
        &emu,
        HostKeyPolicy::KnownHosts(dir.path().join("known_hosts")),
    );
    let e = vk_kubelet::console::probe(&missing).await.unwrap_err();
    assert!(e.is_host_key(), "{e}");
    let m = e.to_string();
    for want in [
        "--console-host-key",
        "--console-known-hosts",
        "`console-host-key`",
        "does not exist",
        fp.as_str(),
    ] {
        assert!(m.contains(want), "{want:?} missing from: {m}");
    }
    // kubectl exec shows the same.
    let (msg, _) = exec_against(missing, None).await;
    assert!(
        msg.contains("cannot verify the StackPath container console"),
        "{msg}"
    );
    assert!(msg.contains("`console-host-key`"), "{msg}");
    // Another key pinned.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkHMl8Bgvl7yJBsO2TBGbW0W3P0hmH9PQ0EhQ9wQ6Qm";
    let wrong = console(&emu, HostKeyPolicy::Pinned(vec![other.into()]));
    let e = vk_kubelet::console::probe(&wrong).await.unwrap_err();
    assert!(matches!(e, ConsoleError::HostKeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("`console-host-key`"), "{e}");
    // The right one; and no check at all, said plainly.
    let right = console(
        &emu,
        HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]),
    );
    assert_eq!(
        vk_kubelet::console::probe(&right).await.unwrap(),
        ProbeOutcome::Verified {
            addr: format!("{}:{}", right.host, right.port),
            fingerprint: fp.clone()
        }
    );
    let any = console(&emu, HostKeyPolicy::InsecureAcceptAny);
    let o = vk_kubelet::console::probe(&any).await.unwrap();
    assert!(o.to_string().contains("client secret"), "{o}");
    emu.shutdown().await;
}

/// A CA, and leaf certificates for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "test-ca");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// (cert PEM, key PEM) valid for `days` from an hour ago, with `cn`.
    fn leaf(&self, cn: &str, days: i64) -> (String, String) {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(days);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory laid out as the kubelet mounts a Secret: `<dir>/..<version>/{tls.crt,tls.key}`,
/// `<dir>/..data` → the current version, `<dir>/tls.crt` → `..data/tls.crt`.
struct SecretVolume {
    dir: PathBuf,
    n: u32,
}

impl SecretVolume {
    fn new(dir: &Path, pair: &(String, String)) -> Self {
        let mut v = Self {
            dir: dir.to_path_buf(),
            n: 0,
        };
        v.publish(pair);
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
        v
    }

    /// Writes a new version and swaps `..data` to it atomically (rename over the link).
    fn publish(&mut self, (cert, key): &(String, String)) {
        self.n += 1;
        let version = format!("..2026_01_01_00_00_{:02}.{}", self.n, self.n);
        let vdir = self.dir.join(&version);
        std::fs::create_dir(&vdir).unwrap();
        std::fs::write(vdir.join("tls.crt"), cert).unwrap();
        std::fs::write(vdir.join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn files(&self) -> CertFiles {
        CertFiles {
            check_every: Duration::from_millis(200),
            ..CertFiles::new(self.dir.join("tls.crt"), self.dir.join("tls.key"))
        }
    }
}

/// The CN of the certificate a new connection to `addr` gets.
async fn served_cn(tls: Arc<rustls::ClientConfig>, addr: SocketAddr) -> String {
    let c = tls_connect(tls, addr).await;
    let leaf = c.get_ref().1.peer_certificates().unwrap()[0].clone();
    vk_kubelet::tls::identity_from_cert(&leaf).unwrap().0
}

fn no_stackpath() -> stackpath_client::Client {
    let cfg =
        stackpath_client::Config::new("http://127.0.0.1:9", STACK, CLIENT_ID, SECRET).unwrap();
    stackpath_client::Client::new(cfg).unwrap()
}

fn no_console() -> vk_kubelet::ConsoleConfig {
    console_at(
        loopback(),
        HostKeyPolicy::Pinned(vec![]),
        Duration::from_secs(1),
    )
}

fn files_config(files: CertFiles, listen: SocketAddr) -> KubeletConfig {
    KubeletConfig {
        listen,
        node_name: "vk-test".into(),
        tls: TlsSource::Files(files),
        client_ca_file: None,
        auth: vk_kubelet::AuthMode::InsecureNone,
        console: no_console(),
        limits: Limits::default(),
    }
}

/// Runs `serve` in the background: (health, stop, task).
fn serve_in_background(
    cfg: KubeletConfig,
) -> (
    Health,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), vk_kubelet::KubeletError>>,
) {
    let health = Health::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vk_kubelet::serve(
        cfg,
        Arc::new(TestLocator::default()),
        no_stackpath(),
        unused_kube(),
        health.clone(),
        async {
            let _ = rx.await;
        },
    ));
    (health, tx, task)
}

/// Waits until `health` satisfies `ok` (or panics after `within`).
async fn wait_health(
    health: &Health,
    within: Duration,
    ok: impl Fn(&HealthState) -> bool,
) -> HealthState {
    let mut rx = health.subscribe();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = rx.borrow_and_update().clone();
        if ok(&s) {
            return s;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("health never got there; it is {s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_secret_is_served_and_a_bad_one_is_not() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let mut vol = SecretVolume::new(dir.path(), &pki.leaf("first", 30));
    let (health, stop, task) = serve_in_background(files_config(vol.files(), loopback()));
    let s = wait_health(&health, Duration::from_secs(10), HealthState::is_serving).await;
    let HealthState::Serving { addr, not_after } = s else {
        unreachable!()
    };
    let tls = tls_client(&pki.ca_pem);
    assert_eq!(served_cn(tls.clone(), addr).await, "first");

    // cert-manager renewed the Secret: the kubelet swaps `..data`.
    let link = std::fs::symlink_metadata(dir.path().join("tls.crt"))
        .unwrap()
        .modified()
        .unwrap();
    vol.publish(&pki.leaf("second", 60));
    assert_eq!(
        std::fs::symlink_metadata(dir.path().join("tls.crt"))
            .unwrap()
            .modified()
            .unwrap(),
        link,
        "the configured path itself did not change"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cn(tls.clone(), addr).await != "second" {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let HealthState::Serving {
        not_after: renewed, ..
    } = health.state()
    else {
        panic!("{:?}", health.state())
    };
    assert!(renewed > not_after, "health shows the new expiry");

    // Replacements that cannot be used: a key of another certificate, then an expired pair.
    let (c3, _) = pki.leaf("third", 30);
    let (_, k4) = pki.leaf("fourth", 30);
    vol.publish(&(c3, k4));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        served_cn(tls.clone(), addr).await,
        "second",
        "the old one is kept"
    );
    vol.publish(&pki.leaf("expired", -1));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(served_cn(tls.clone(), addr).await, "second");
    assert!(health.state().is_serving(), "{:?}", health.state());
    // A good one after bad ones is taken.
    vol.publish(&pki.leaf("fifth", 30));
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_cn(tls.clone(), addr).await != "fifth" {
        assert!(
            Instant::now() < deadline,
            "a good replacement after bad ones was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(health.state(), HealthState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_files_stop_the_start_naming_the_file() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (cert, key) = pki.leaf("ok", 30);
    let files = CertFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&files.key, &key).unwrap();
    let (health, _, task) = serve_in_background(files_config(files.clone(), loopback()));
    let e = task.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("tls.crt") && e.contains("--tls-cert-file"),
        "{e}"
    );
    // `/readyz` says the same.
    assert!(
        matches!(health.state(), HealthState::Misconfigured { ref error } if *error == e),
        "{:?}",
        health.state()
    );
    std::fs::write(&files.cert, &cert).unwrap();
    std::fs::write(&files.key, pki.leaf("other", 30).1).unwrap();
    let (_, _, task) = serve_in_background(files_config(files.clone(), loopback()));
    let e = task.await.unwrap().unwrap_err().to_string();
    assert!(e.contains("tls.key") && e.contains("not the key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_at_start_is_retried_until_free() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let pair = pki.leaf("port", 30);
    let files = CertFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&files.cert, &pair.0).unwrap();
    std::fs::write(&files.key, &pair.1).unwrap();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap();
    let (health, stop, task) = serve_in_background(files_config(files, port));
    let s = wait_health(&health, Duration::from_secs(10), |s| {
        matches!(s, HealthState::Failed { .. })
    })
    .await;
    let e = health.readiness().unwrap_err();
    assert!(
        e.contains("cannot listen on") && e.contains(&port.to_string()),
        "{e} / {s:?}"
    );
    assert!(!task.is_finished(), "serve keeps trying");
    drop(blocker);
    let s = wait_health(&health, Duration::from_secs(10), HealthState::is_serving).await;
    assert!(
        matches!(s, HealthState::Serving { addr, .. } if addr == port),
        "{s:?}"
    );
    assert_eq!(served_cn(tls_client(&pki.ca_pem), port).await, "port");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

fn pod(ns: &str, name: &str, containers: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"}
    }))
    .unwrap()
}

fn metrics_calls(emu: &stackpath_emulator::RunningEmulator) -> u64 {
    emu.stats()["routes"]["GET /workload/v1/stacks/{stack_id}/metrics"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_cost_one_stackpath_call_per_window_whatever_the_pod_count() {
    init_tracing();
    let pods = 30;
    let window = Duration::from_secs(2);
    let f = fixture(
        "sleep 3600",
        Limits {
            metrics_window: window,
            ..Limits::default()
        },
    )
    .await;
    let sp = stackpath(&f.emu);
    let mut locs = Vec::new();
    for i in 0..pods {
        let name = format!("p{i}");
        let loc = workload(&sp, &format!("m{}x{i}", rand_suffix()), "sleep 3600").await;
        f.locator
            .add("default", &name, &["a", "b"], &[], loc.clone());
        f.locator
            .pods
            .lock()
            .unwrap()
            .push(pod("default", &name, &["a", "b"]));
        locs.push((name, loc));
    }
    let before = metrics_calls(&f.emu);
    let rounds = 3;
    let mut summary = serde_json::Value::Null;
    let mut resource = String::new();
    let mut last_round = chrono::Utc::now();
    for _ in 0..rounds {
        // metrics-server and Prometheus at once, several scrapes of each.
        let t = Instant::now();
        last_round = chrono::Utc::now();
        let mut jobs = Vec::new();
        for i in 0..16 {
            let path = if i % 2 == 0 {
                "/stats/summary"
            } else {
                "/metrics/resource"
            };
            jobs.push(get_text(f.tls.clone(), f.kubelet.addr, path));
        }
        for (i, (code, body)) in futures::future::join_all(jobs)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(code, 200, "{body}");
            if i % 2 == 0 {
                summary = serde_json::from_str(&body).unwrap();
            } else {
                resource = body;
            }
        }
        assert!(t.elapsed() < window, "the scrapes fit in one window");
        tokio::time::sleep(window + Duration::from_millis(100)).await;
    }
    let calls = metrics_calls(&f.emu) - before;
    eprintln!("{pods} pods, {rounds} windows of 16 scrapes: {calls} StackPath metrics calls");
    assert!(
        (1..=2 * rounds as u64).contains(&calls),
        "{calls} metrics calls for {rounds} windows"
    );
    // Every pod, with its own instance's figures.
    let listed = summary["pods"].as_array().unwrap();
    assert_eq!(listed.len(), pods, "{summary}");
    assert_eq!(
        resource.matches("pod_memory_working_set_bytes{").count(),
        pods
    );
    // StackPath's figures are per minute: the last window's were read between the start of
    // the last round and now, on one side of a minute boundary or the other.
    let now = chrono::Utc::now();
    for (name, loc) in locs.iter().take(3) {
        let mut want = Vec::new();
        for end in [last_round, now] {
            let q = stackpath_client::model::MetricsQuery::instance(
                loc.workload_id.clone(),
                loc.instance_name.clone(),
                end - chrono::Duration::minutes(5),
                end,
            );
            want.push(sp.metrics(&q).await.unwrap().latest("memory").unwrap());
        }
        let p = listed
            .iter()
            .find(|p| p["podRef"]["name"] == name.as_str())
            .unwrap();
        let got = p["memory"]["workingSetBytes"].as_f64().unwrap();
        assert!(
            want.iter().any(|w| (got - w).abs() <= 2.0),
            "{name}: {got} vs StackPath's {want:?}"
        );
        assert_eq!(p["containers"].as_array().unwrap().len(), 2);
    }
    f.stop().await;
}
