//! Errors at the library boundary (starting the emulator).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    #[error("cannot bind the {what} listener on {addr}: {source}; pick a free address or port 0")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid emulator state: {message}; fix or delete it")]
    State { path: PathBuf, message: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("SSH host key {path}: {message}; delete the file to have a new key generated")]
    HostKey { path: PathBuf, message: String },
    #[error("SSH console setup failed: {0}")]
    Ssh(String),
}
