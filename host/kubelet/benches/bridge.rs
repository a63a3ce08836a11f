//! Figures for BENCHMARKS.md: exec round trip (keystroke → echo) and log throughput through the
//! kubelet API, each next to the same path straight against the emulator (SSH console, logs
//! API). `cargo bench -p vk-kubelet --bench bridge` prints one line per figure and the ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use russh::ChannelMsg;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vk_kubelet::{AuthMode, HostKeyPolicy};

const ROUND_TRIPS: usize = 300;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct AnyKey;
impl russh::client::Handler for AnyKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn direct_ssh_rtt(emu: &stackpath_emulator::RunningEmulator, instance: &str) -> Duration {
    let addr = emu.ssh_addr.unwrap();
    let cfg = Arc::new(russh::client::Config::default());
    let mut s = russh::client::connect(cfg, addr, AnyKey).await.unwrap();
    let user = format!("{STACK}.{instance}.app.{CLIENT_ID}");
    assert!(
        s.authenticate_password(user, SECRET)
            .await
            .unwrap()
            .success()
    );
    let mut ch = s.channel_open_session().await.unwrap();
    ch.exec(true, "cat").await.unwrap();
    let mut times = Vec::new();
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        ch.data(&b"x"[..]).await.unwrap();
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Data { .. }) => break,
                Some(_) => continue,
                None => panic!("channel closed"),
            }
        }
        times.push(t.elapsed());
    }
    median(times)
}

async fn kubelet_ws_rtt(tls: Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Duration {
    let conn = tls_connect(tls, addr).await;
    let mut req = format!(
        "wss://127.0.0.1:{}/exec/default/web/app?command=cat&stdin=true&stdout=true",
        addr.port()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, conn).await.unwrap();
    let mut times = Vec::new();
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        ws.send(Message::Binary(vec![0u8, b'x'].into()))
            .await
            .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&1) && b.len() > 1 => break,
                Some(Ok(_)) => continue,
                other => panic!("websocket ended: {other:?}"),
            }
        }
        times.push(t.elapsed());
    }
    median(times)
}

async fn kubelet_spdy_rtt(tls: Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Duration {
    use spdy3::{Headers, Session};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tls_connect(tls, addr).await;
    let req = format!(
        "POST /exec/default/web/app?command=cat&stdin=true&stdout=true HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v5.channel.k8s.io\r\n\
         Content-Length: 0\r\n\r\n",
        addr.port()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte: SPDY frames may follow the head at once.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(conn.read(&mut b).await.unwrap(), 1, "SPDY upgrade answer");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (session, _incoming) = Session::client(conn, spdy3::Config::default());
    let open = |kind: &str, fin: bool| {
        session
            .open_stream(Headers::new().with("streamtype", kind), fin)
            .unwrap()
    };
    let _error = open("error", true);
    let mut stdin = open("stdin", false);
    let mut stdout = open("stdout", true);
    let mut times = Vec::new();
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        stdin.write_all(b"x").await.unwrap();
        let mut b = [0u8; 64];
        assert!(stdout.read(&mut b).await.unwrap() > 0, "stdout ended");
        times.push(t.elapsed());
    }
    session.abort();
    median(times)
}

async fn kubelet_logs(
    tls: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> (usize, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let mut c = tls_connect(tls, addr).await;
    c.write_all(
        b"GET /containerLogs/default/logs/app HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut n = 0;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let r = c.read(&mut buf).await.unwrap_or(0);
        if r == 0 {
            break;
        }
        n += r;
    }
    (n, t.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let emu = emulator(Duration::from_secs(3600)).await;
    let sp = stackpath(&emu);
    let echo = workload(&sp, "bench-echo", "sleep 3600").await;
    // ~10 MB of 100-byte lines, then idle.
    let logs = workload(&sp, "bench-logs", "i=0; while [ $i -lt 1000 ]; do head -c 9900 /dev/zero | tr '\\0' 'a' | fold -w 99; i=$((i+1)); done; sleep 3600").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let locator = Arc::new(TestLocator::default());
    locator.add("default", "web", &["app"], &[], echo.clone());
    locator.add("default", "logs", &["app"], &[], logs.clone());
    let dir = tempfile::tempdir().unwrap();
    let pki = serving_pki(dir.path(), None);
    let kubelet = start_kubelet(
        &pki,
        None,
        AuthMode::InsecureNone,
        console(
            &emu,
            HostKeyPolicy::Pinned(vec![emu.ssh_host_key_openssh.clone().unwrap()]),
        ),
        locator,
        sp.clone(),
        unused_kube(),
        loopback(),
    )
    .await;
    let tls = tls_client(&pki.ca_pem);

    let direct = direct_ssh_rtt(&emu, &echo.instance_name).await;
    let through = kubelet_ws_rtt(tls.clone(), kubelet.addr).await;
    let spdy = kubelet_spdy_rtt(tls.clone(), kubelet.addr).await;
    let ratio = |d: Duration| d.as_secs_f64() / direct.as_secs_f64();
    println!(
        "exec round trip (median of {ROUND_TRIPS}): direct SSH {direct:?}, through kubelet API: WebSocket v5 {through:?} (ratio {:.2}), SPDY/3.1 v5 {spdy:?} (ratio {:.2})",
        ratio(through),
        ratio(spdy)
    );

    let t = Instant::now();
    let opts = stackpath_client::LogOptions {
        container_name: Some("app".into()),
        ..Default::default()
    };
    let direct_bytes = sp
        .instance_logs(&logs.workload_id, &logs.instance_name, &opts)
        .await
        .unwrap()
        .collect_bytes()
        .await
        .unwrap()
        .len();
    let direct_t = t.elapsed();
    let (n, through_t) = kubelet_logs(tls, kubelet.addr).await;
    let mbs = |b: usize, d: Duration| b as f64 / 1e6 / d.as_secs_f64();
    println!(
        "log throughput: direct logs API {:.1} MB/s ({direct_bytes} B), through kubelet API {:.1} MB/s ({n} B), ratio {:.2}",
        mbs(direct_bytes, direct_t),
        mbs(n, through_t),
        direct_t.as_secs_f64().max(1e-9).recip() / through_t.as_secs_f64().max(1e-9).recip()
    );
    kubelet.stop().await;
    emu.shutdown().await;
}
