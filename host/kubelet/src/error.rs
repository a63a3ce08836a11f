//! Errors at the crate boundary.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the kubelet API could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(
        "cannot listen on {addr} for the kubelet API: {source}; pick a free port with KUBELET_PORT"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {what} {path}: {message}")]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what} {path} cannot be used: {problem}")]
    CertFile {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("TLS configuration is invalid: {0}")]
    Tls(String),
    #[error("serving certificate bootstrap failed: {0}")]
    Bootstrap(String),
    #[error("invalid kubelet API configuration: {0}")]
    Config(String),
}
