//! A test server on top of spdy3, shared by the `spdy-echo-server` example and the interop
//! tests. Per connection it serves either:
//!
//! - raw SPDY (first byte 0x80, a control frame): every stream is answered with SYN_REPLY
//!   (`x-echo: <streamtype>`) and its data echoed back, then FIN;
//! - an HTTP/1.1 `Upgrade: SPDY/3.1` request for `/exec/...` as kube-apiserver sends it to a
//!   kubelet: 101 with the chosen `X-Stream-Protocol-Version`, then the kubelet's exec stream
//!   set. `command=cat` copies stdin to stdout and writes `cat: done` to stderr; `command=exit3`
//!   reports exit code 3 on the error channel, as a kubelet does for a failing command;
//!   `command=resize` (with `tty`) echoes the first terminal-size event to stdout.

use std::collections::HashMap;
use std::time::Duration;

use spdy3::{Config, Headers, Session, SpdyStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The channel protocols this server accepts, most preferred first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Serves connections until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (conn, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = handle(conn).await {
                eprintln!("echo server: connection from {peer}: {e}");
            }
        });
    }
}

async fn handle(conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut first = [0u8; 1];
    if conn.peek(&mut first).await? == 0 {
        return Ok(());
    }
    if first[0] == 0x80 {
        raw_echo(conn).await;
        Ok(())
    } else {
        exec(conn).await
    }
}

async fn raw_echo(conn: TcpStream) {
    let (session, mut incoming) = Session::server(conn, Config::default());
    while let Some(inc) = incoming.accept().await {
        let kind = inc.headers().get("streamtype").unwrap_or("").to_owned();
        let stream = inc.accept(Headers::new().with("x-echo", kind));
        tokio::spawn(echo_stream(stream));
    }
    drop(session);
}

async fn echo_stream(stream: SpdyStream) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    if tokio::io::copy(&mut rd, &mut wr).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

/// Reads the request head byte by byte so that no SPDY byte is consumed.
async fn read_head(conn: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err(std::io::Error::other("request head over 16 KiB"));
        }
        let mut b = [0u8; 1];
        if conn.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    String::from_utf8(head).map_err(std::io::Error::other)
}

async fn exec(mut conn: TcpStream) -> std::io::Result<()> {
    let head = read_head(&mut conn).await?;
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_owned();
    let mut offered = Vec::new();
    let mut upgrade = String::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "x-stream-protocol-version" => {
                    offered.extend(value.split(',').map(|v| v.trim().to_owned()))
                }
                "upgrade" => upgrade = value.to_owned(),
                _ => {}
            }
        }
    }
    let chosen = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p));
    let (Some(chosen), true) = (chosen, upgrade.eq_ignore_ascii_case("SPDY/3.1")) else {
        conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let query: HashMap<String, String> = target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true" || v == "1");
    conn.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: {chosen}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;

    let mut expected = vec!["error"];
    for ch in ["stdin", "stdout", "stderr"] {
        if flag(ch) {
            expected.push(ch);
        }
    }
    if flag("tty") {
        expected.push("resize");
    }
    let (session, mut incoming) = Session::server(conn, Config::default());
    let mut streams: HashMap<String, SpdyStream> = HashMap::new();
    let collect = async {
        while streams.len() < expected.len() {
            let Some(inc) = incoming.accept().await else {
                break;
            };
            let kind = inc.headers().get("streamtype").unwrap_or("").to_owned();
            streams.insert(kind, inc.accept(Headers::new()));
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .is_err()
        || streams.len() < expected.len()
    {
        return Err(std::io::Error::other(format!(
            "exec: got streams {:?}, expected {expected:?}",
            streams.keys().collect::<Vec<_>>()
        )));
    }
    let command = query.get("command").map(String::as_str).unwrap_or("");
    let status = match command {
        "cat" => {
            let mut stdin = streams.remove("stdin");
            let mut stdout = streams.remove("stdout");
            if let (Some(i), Some(o)) = (stdin.as_mut(), stdout.as_mut()) {
                tokio::io::copy(i, o).await?;
            }
            if let Some(mut o) = stdout {
                o.shutdown().await?;
            }
            if let Some(mut e) = streams.remove("stderr") {
                e.write_all(b"cat: done\n").await?;
                e.shutdown().await?;
            }
            r#"{"metadata":{},"status":"Success"}"#.to_owned()
        }
        "resize" => {
            // Echo the first terminal size event (one JSON object per line) to stdout.
            let mut line = Vec::new();
            if let Some(r) = streams.get_mut("resize") {
                let mut b = [0u8; 1];
                while r.read(&mut b).await? == 1 {
                    line.push(b[0]);
                    if b[0] == b'\n' {
                        break;
                    }
                }
            }
            if let Some(mut o) = streams.remove("stdout") {
                o.write_all(&line).await?;
                o.shutdown().await?;
            }
            r#"{"metadata":{},"status":"Success"}"#.to_owned()
        }
        "exit3" => {
            for ch in ["stdout", "stderr"] {
                if let Some(mut s) = streams.remove(ch) {
                    s.shutdown().await?;
                }
            }
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#.to_owned()
        }
        other => format!(
            r#"{{"metadata":{{}},"status":"Failure","message":"unknown test command {other:?}","reason":"InternalError"}}"#
        ),
    };
    if let Some(mut e) = streams.remove("error") {
        e.write_all(status.as_bytes()).await?;
        e.shutdown().await?;
    }
    drop(streams);
    session.go_away();
    let _ = tokio::time::timeout(Duration::from_secs(5), session.closed()).await;
    Ok(())
}
