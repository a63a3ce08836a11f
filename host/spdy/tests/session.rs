//! Session behaviour: two spdy3 sessions over an in-memory pipe, and a scripted raw peer that
//! writes frames by hand (to play a peer without flow control, or a broken one).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use spdy3::codec::{Decoded, Decoder, Encoder};
use spdy3::frame::{GoAwayStatus, SynStream};
use spdy3::{Config, Frame, Headers, RstStatus, Session, SessionError, StreamError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const T: Duration = Duration::from_secs(10);

fn pair(
    client: Config,
    server: Config,
) -> ((Session, spdy3::Incoming), (Session, spdy3::Incoming)) {
    let (a, b) = tokio::io::duplex(64 << 10);
    (Session::client(a, client), Session::server(b, server))
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn echo_all(mut incoming: spdy3::Incoming) {
    while let Some(inc) = incoming.accept().await {
        let s = inc.accept(Headers::new().with("x-echo", "yes"));
        tokio::spawn(async move {
            let (mut r, mut w) = tokio::io::split(s);
            tokio::io::copy(&mut r, &mut w).await.unwrap();
            w.shutdown().await.unwrap();
        });
    }
}

async fn echo_round_trip(cfg: Config) {
    let ((client, _ci), (_server, si)) = pair(cfg.clone(), cfg);
    tokio::spawn(echo_all(si));
    let data = pattern(1 << 20);
    let mut tasks = Vec::new();
    for i in 0..3 {
        let stream = client
            .open_stream(Headers::new().with("streamtype", format!("s{i}")), false)
            .unwrap();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            assert_eq!(stream.reply().await.unwrap().get("x-echo"), Some("yes"));
            let (mut r, mut w) = tokio::io::split(stream);
            let writer = tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        }));
    }
    for t in tasks {
        let got = tokio::time::timeout(T, t)
            .await
            .expect("echo timed out")
            .unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "echoed bytes differ");
    }
}

#[tokio::test]
async fn strict_echo_of_more_than_the_windows() {
    // 3 streams x 1 MiB each way through 64 KiB stream windows: only works if WINDOW_UPDATEs
    // flow both ways (stream and session level).
    echo_round_trip(Config::strict()).await;
}

#[tokio::test]
async fn adaptive_echo() {
    echo_round_trip(Config::default()).await;
}

#[tokio::test]
async fn strict_writer_stops_at_the_peer_window_until_it_reads() {
    let ((client, _ci), (_server, mut si)) = pair(Config::strict(), Config::strict());
    let mut stream = client.open_stream(Headers::new(), false).unwrap();
    let mut inc = tokio::time::timeout(T, si.accept())
        .await
        .unwrap()
        .unwrap()
        .accept(Headers::new());
    stream.reply().await.unwrap();
    let chunk = vec![1u8; 4096];
    let mut written = 0usize;
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(300), stream.write(&chunk)).await {
        written += r.unwrap();
        assert!(written <= 1 << 20, "no back-pressure");
    }
    assert_eq!(
        written, 65_536,
        "the writer must stop exactly at the 64 KiB stream window"
    );
    // The reader consumes half a window: a WINDOW_UPDATE lets the writer go on.
    let mut buf = vec![0u8; 40_000];
    inc.read_exact(&mut buf).await.unwrap();
    let more = tokio::time::timeout(T, stream.write(&chunk))
        .await
        .expect("writer still blocked");
    assert!(more.unwrap() > 0);
}

#[tokio::test]
async fn ping_round_trip() {
    let ((client, _ci), (server, _si)) = pair(Config::default(), Config::default());
    tokio::time::timeout(T, client.ping())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(T, server.ping())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn resets_reach_the_other_side() {
    let ((client, _ci), (_server, mut si)) = pair(Config::default(), Config::default());
    let mut a = client.open_stream(Headers::new(), false).unwrap();
    let mut b = si.accept().await.unwrap().accept(Headers::new());
    a.reply().await.unwrap();
    a.write_all(b"before").await.unwrap();
    a.flush().await.unwrap();
    let mut buf = [0u8; 6];
    b.read_exact(&mut buf).await.unwrap();
    b.reset(RstStatus::Cancel);
    let err = tokio::time::timeout(T, async {
        loop {
            if let Err(e) = a.write_all(b"after").await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let inner = err.into_inner().unwrap().downcast::<StreamError>().unwrap();
    assert!(matches!(
        *inner,
        StreamError::ResetByPeer {
            status: RstStatus::Cancel,
            ..
        }
    ));
}

#[tokio::test]
async fn streams_over_the_limit_are_refused() {
    let server_cfg = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let ((client, _ci), (_server, mut si)) = pair(Config::default(), server_cfg);
    let s1 = client.open_stream(Headers::new(), false).unwrap();
    let s2 = client.open_stream(Headers::new(), false).unwrap();
    let s3 = client.open_stream(Headers::new(), false).unwrap();
    let _a1 = si.accept().await.unwrap().accept(Headers::new());
    let _a2 = si.accept().await.unwrap().accept(Headers::new());
    s1.reply().await.unwrap();
    s2.reply().await.unwrap();
    let err = tokio::time::timeout(T, s3.reply())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        StreamError::ResetByPeer {
            stream_id: 5,
            status: RstStatus::RefusedStream
        }
    );
}

#[tokio::test]
async fn go_away_drains_open_streams_then_closes() {
    let ((client, _ci), (server, mut si)) = pair(Config::default(), Config::default());
    let mut a = client.open_stream(Headers::new(), false).unwrap();
    let mut b = si.accept().await.unwrap().accept(Headers::new());
    a.reply().await.unwrap();
    server.go_away();
    // The client learns of the GOAWAY: no new streams.
    tokio::time::timeout(T, async {
        while client.open_stream(Headers::new(), true).is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    // The open stream still works both ways.
    a.write_all(b"ping").await.unwrap();
    a.shutdown().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
    b.write_all(b"pong").await.unwrap();
    b.shutdown().await.unwrap();
    got.clear();
    a.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"pong");
    assert!(!server.is_closed());
    drop((a, b));
    let reason = tokio::time::timeout(T, server.closed()).await.unwrap();
    assert_eq!(reason, SessionError::ShutDown);
}

#[tokio::test]
async fn peer_closing_the_transport_fails_open_streams() {
    let (a, b) = tokio::io::duplex(1024);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new().with("streamtype", "stdin")))
        .await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    drop(peer);
    let err = tokio::time::timeout(T, s.read_u8())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
}

// --- a scripted peer ---------------------------------------------------------------------------

struct RawPeer {
    io: DuplexStream,
    enc: Encoder,
    dec: Decoder,
    buf: BytesMut,
}

impl RawPeer {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            enc: Encoder::new().unwrap(),
            dec: Decoder::new(1 << 24, 1 << 20),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(&f, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    /// The next frame, or None at EOF.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Decoded::Frame(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(T, self.io.read_buf(&mut self.buf))
                .await
                .expect("peer recv timed out")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }

    /// The next frame that is not SETTINGS or WINDOW_UPDATE.
    async fn recv_significant(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await? {
                Frame::Settings { .. } | Frame::WindowUpdate { .. } => continue,
                f => return Some(f),
            }
        }
    }
}

fn syn(id: u32, fin: bool, headers: Headers) -> Frame {
    Frame::SynStream(SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        fin,
        unidirectional: false,
        headers,
    })
}

/// Plays moby/spdystream: never sends WINDOW_UPDATE. Returns how many bytes the server managed
/// to send within the time limit.
async fn server_sends_to_peer_without_flow_control(cfg: Config, total: usize) -> usize {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, cfg);
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, true, Headers::new().with("streamtype", "stdout")))
        .await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    tokio::spawn(async move {
        let data = pattern(total);
        let _ = s.write_all(&data).await;
        let _ = s.shutdown().await;
        // Keep the stream alive until the peer is done.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), peer.recv()).await {
            Ok(Some(Frame::Data { data, fin, .. })) => {
                got += data.len();
                if fin {
                    return got;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return got,
        }
    }
}

#[tokio::test]
async fn adaptive_mode_does_not_stall_a_peer_without_flow_control() {
    let got = server_sends_to_peer_without_flow_control(Config::default(), 1 << 20).await;
    assert_eq!(got, 1 << 20);
}

#[tokio::test]
async fn strict_mode_stalls_a_peer_without_flow_control_at_64k() {
    let got = server_sends_to_peer_without_flow_control(Config::strict(), 1 << 20).await;
    assert_eq!(got, 65_536);
}

#[tokio::test]
async fn adaptive_mode_enforces_windows_once_the_peer_uses_them() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![spdy3::frame::Setting {
            flags: 0,
            id: spdy3::frame::setting_id::INITIAL_WINDOW_SIZE,
            value: 10_000,
        }],
    })
    .await;
    peer.send(syn(1, true, Headers::new())).await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    tokio::spawn(async move {
        let _ = s.write_all(&pattern(100_000)).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut got = 0;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(500), peer.recv()).await {
        if let Frame::Data { data, .. } = f {
            got += data.len();
        }
    }
    assert_eq!(got, 10_000);
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 5_000,
    })
    .await;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(500), peer.recv()).await {
        if let Frame::Data { data, .. } = f {
            got += data.len();
        }
    }
    assert_eq!(got, 15_000);
}

#[tokio::test]
async fn server_echoes_pings_and_ignores_unknown_frames() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, _si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    // CREDENTIAL (type 10): unknown to SPDY/3.1 sessions, to be ignored.
    peer.send_raw(&[0x80, 3, 0, 10, 0, 0, 0, 3, 1, 2, 3]).await;
    peer.send(Frame::Ping { id: 7 }).await;
    assert_eq!(peer.recv_significant().await, Some(Frame::Ping { id: 7 }));
}

#[tokio::test]
async fn garbage_gets_goaway_protocol_error_and_close() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (server, _si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    // A control frame of SPDY version 2.
    peer.send_raw(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
        .await;
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::ProtocolError
        })
    );
    assert_eq!(
        peer.recv().await,
        None,
        "the server must close the transport"
    );
    assert!(matches!(server.closed().await, SessionError::Protocol(m) if m.contains("version 2")));
}

#[tokio::test]
async fn data_before_accept_is_kept_and_fin_on_syn_means_eof() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new().with("streamtype", "stdin")))
        .await;
    peer.send(Frame::Data {
        stream_id: 1,
        fin: true,
        data: Bytes::from_static(b"early"),
    })
    .await;
    peer.send(syn(3, true, Headers::new().with("streamtype", "error")))
        .await;
    let inc1 = si.accept().await.unwrap();
    assert_eq!(inc1.headers().get("streamtype"), Some("stdin"));
    let inc3 = si.accept().await.unwrap();
    assert!(inc3.is_peer_finished());
    let mut s1 = inc1.accept(Headers::new());
    let mut s3 = inc3.accept(Headers::new());
    let mut got = Vec::new();
    tokio::time::timeout(T, s1.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"early");
    got.clear();
    tokio::time::timeout(T, s3.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_empty());
    assert!(matches!(
        peer.recv_significant().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert!(matches!(
        peer.recv_significant().await,
        Some(Frame::SynReply { stream_id: 3, .. })
    ));
}

#[tokio::test]
async fn rejected_and_dropped_streams_are_reset() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new())).await;
    peer.send(syn(3, false, Headers::new())).await;
    si.accept().await.unwrap().reject(RstStatus::InternalError);
    drop(si.accept().await.unwrap());
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::InternalError
        })
    );
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::RefusedStream
        })
    );
    // A stream id going backwards is a session error.
    peer.send(syn(1, false, Headers::new())).await;
    assert!(matches!(
        peer.recv_significant().await,
        Some(Frame::GoAway {
            status: GoAwayStatus::ProtocolError,
            last_good_stream_id: 3
        })
    ));
}

#[tokio::test]
async fn strict_session_resets_a_stream_that_overruns_its_window() {
    let (a, b) = tokio::io::duplex(256 << 10);
    let (_server, mut si) = Session::server(b, Config::strict());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new())).await;
    let _s = si.accept().await.unwrap().accept(Headers::new());
    for _ in 0..5 {
        peer.send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![0u8; 16_384]),
        })
        .await;
    }
    assert!(matches!(
        peer.recv_significant().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::FlowControlError
        })
    );
}

#[tokio::test]
async fn dropping_after_fin_resets_behind_the_data() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new().with("streamtype", "stdout")))
        .await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    s.write_all(b"hello").await.unwrap();
    s.finish();
    drop(s);
    assert!(matches!(
        peer.recv_significant().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello")
        })
    );
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        })
    );
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::Cancel
        })
    );
}

#[tokio::test]
async fn data_before_a_peer_fin_survives_its_reset() {
    let ((client, _ci), (_server, mut si)) = pair(Config::default(), Config::default());
    let mut a = client.open_stream(Headers::new(), false).unwrap();
    let s = si.accept().await.unwrap().accept(Headers::new());
    let (r, mut w) = tokio::io::split(s);
    w.write_all(b"all of it").await.unwrap();
    w.shutdown().await.unwrap();
    drop((r, w)); // drops the stream: FIN is queued already, so RST CANCEL follows it
    a.reply().await.unwrap();
    // Let the RST arrive before anything is read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    tokio::time::timeout(T, a.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"all of it");
}

/// With a peer that ignores windows, our writes are bounded by the write queue and the
/// transport: a peer that stops reading stops our writer.
#[tokio::test]
async fn writes_to_a_stalled_peer_without_flow_control_are_bounded() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, true, Headers::new())).await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    let chunk = vec![0u8; 16 << 10];
    let mut accepted = 0usize;
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(300), s.write(&chunk)).await {
        accepted += r.unwrap();
        assert!(accepted < 4 << 20, "writes never blocked");
    }
    // Transport buffer + one writer batch + the 256 KiB queue, roughly.
    assert!(
        accepted <= (64 + 64 + 256 + 16) << 10,
        "accepted {accepted}"
    );
    // Once the peer reads, the writer goes on.
    let _ = peer.recv().await;
    let mut drained = 0;
    while drained < accepted {
        if let Some(Frame::Data { data, .. }) = peer.recv().await {
            drained += data.len();
        }
    }
    tokio::time::timeout(T, s.write(&chunk))
        .await
        .expect("writer still blocked")
        .unwrap();
}

/// With a peer that ignores windows, a stream nobody reads stops the session reading the
/// transport (TCP back-pressure) until the application reads.
#[tokio::test]
async fn unread_data_from_a_peer_without_flow_control_pushes_back() {
    let (a, b) = tokio::io::duplex(16 << 10);
    let (_server, mut si) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    peer.send(syn(1, false, Headers::new())).await;
    let mut s = si.accept().await.unwrap().accept(Headers::new());
    let total = 1 << 20;
    let sender = tokio::spawn(async move {
        for _ in 0..total / (16 << 10) {
            peer.send(Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from(vec![9u8; 16 << 10]),
            })
            .await;
        }
        peer.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        })
        .await;
        peer
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sender.is_finished(),
        "the peer wrote 1 MiB although nothing was read"
    );
    let mut got = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), total);
    tokio::time::timeout(T, sender).await.unwrap().unwrap();
}

#[tokio::test]
async fn dropping_every_handle_sends_goaway_and_closes() {
    let (a, b) = tokio::io::duplex(64 << 10);
    let (server, incoming) = Session::server(b, Config::default());
    let mut peer = RawPeer::new(a);
    drop(incoming);
    // With the Incoming gone, new streams are refused.
    peer.send(syn(1, false, Headers::new())).await;
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::RefusedStream
        })
    );
    drop(server);
    assert_eq!(
        peer.recv_significant().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            status: GoAwayStatus::Ok
        })
    );
    assert_eq!(peer.recv().await, None);
}
