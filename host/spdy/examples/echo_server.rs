//! `spdy-echo-server [ADDR]`: a SPDY/3.1 echo and kubelet-exec test server (see
//! `tests/support/echo.rs`). Binds 127.0.0.1:0 unless told otherwise and prints
//! `LISTENING host:port`.

#[path = "../tests/support/echo.rs"]
mod echo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    echo::serve(listener).await
}
