//! Rough throughput figure (ignored by default; run with
//! `cargo test -p spdy3 --test throughput -- --ignored --nocapture`): 64 MiB server → client on
//! one stream over loopback TCP, as a kubelet streams stdout, in both flow-control modes.

use std::time::Instant;

use spdy3::{Config, Headers, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn run(cfg: Config) -> f64 {
    const TOTAL: usize = 64 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_cfg = cfg.clone();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        let (_session, mut incoming) = Session::server(conn, server_cfg);
        let mut s = incoming.accept().await.unwrap().accept(Headers::new());
        let chunk = vec![7u8; 32 << 10];
        for _ in 0..TOTAL / chunk.len() {
            s.write_all(&chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let _ = s.read_u8().await;
    });
    let conn = TcpStream::connect(addr).await.unwrap();
    let (session, _incoming) = Session::client(conn, cfg);
    let mut s = session
        .open_stream(Headers::new().with("streamtype", "stdout"), true)
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, TOTAL);
    TOTAL as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn stream_throughput() {
    println!("strict:   {:.0} MiB/s", run(Config::strict()).await);
    println!("adaptive: {:.0} MiB/s", run(Config::default()).await);
}
