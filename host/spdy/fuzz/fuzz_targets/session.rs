//! Arbitrary bytes as the client side of a live server session, with an application that
//! accepts, reads and echoes every stream. The property: no panic, no hang.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spdy3::{Config, Headers, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let cfg = if data.first().is_some_and(|b| b & 1 == 1) {
            Config::strict()
        } else {
            Config::default()
        };
        let (session, mut incoming) = Session::server(b, cfg);
        tokio::spawn(async move {
            while let Some(inc) = incoming.accept().await {
                let mut s = inc.accept(Headers::new());
                tokio::spawn(async move {
                    let mut buf = [0u8; 512];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = s.shutdown().await;
                });
            }
        });
        let _ = a.write_all(data).await;
        let mut sink = vec![0u8; 1 << 16];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), a.read(&mut sink)).await
        {
            if n == 0 {
                break;
            }
        }
        session.abort();
    });
});
