//! The harness's one error type: each message says what failed, where, and what to do next.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the `go` command was not found on PATH ({0}); install Go 1.24 or newer \
         (https://go.dev/dl/) or set KUBEBUILDER_ASSETS to a directory holding ready binaries \
         (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)"
    )]
    GoMissing(#[source] std::io::Error),

    #[error("building {binary} failed (log: {log}); last lines:\n{tail}")]
    BuildFailed {
        binary: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "KUBEBUILDER_ASSETS={dir} has no executable `{binary}`; put it there or unset \
         KUBEBUILDER_ASSETS to build it from the pinned Go modules"
    )]
    AssetMissing { dir: PathBuf, binary: String },

    #[error("unknown Kubernetes version {0:?}; supported: {1}")]
    UnknownVersion(String, String),

    #[error("{what} at {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not what the harness expects: {reason}")]
    BadFile { path: PathBuf, reason: String },

    #[error("generating the cluster PKI ({what}) failed: {source}")]
    Pki {
        what: String,
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "{component} could not listen on 127.0.0.1:{port} (address in use); another process took \
         the port, retry or stop it. Log {log}:\n{tail}"
    )]
    PortTaken {
        component: String,
        port: u16,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{component} exited ({status}) before the cluster was ready. Log {log}, last lines:\n{tail}"
    )]
    ComponentExited {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error(
        "{component} was not ready after {seconds}s ({detail}). Log {log}, last lines:\n{tail}"
    )]
    NotReady {
        component: String,
        seconds: u64,
        detail: String,
        log: PathBuf,
        tail: String,
    },

    #[error("talking to the test cluster ({what}) failed: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },

    #[error("kubeconfig {path} could not be loaded: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },

    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}
