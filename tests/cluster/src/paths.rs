//! Where the harness finds its sources (Go wrapper modules, deploy/) and keeps its caches.

use std::path::PathBuf;

/// `tests/cluster` in the source tree (compiled in: the harness runs from the workspace).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn workspace_root() -> PathBuf {
    let dir = crate_dir();
    dir.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(dir)
}

/// The Go wrapper modules (`go/k8s-v1.34`, `go/etcd`, ...).
pub fn go_dir() -> PathBuf {
    crate_dir().join("go")
}

/// The manifests the project ships and the harness applies (namespace, service account, RBAC).
pub fn deploy_base_dir() -> PathBuf {
    workspace_root().join("deploy").join("base")
}

/// `VK_CACHE_DIR`, else `CARGO_TARGET_DIR`, else `<workspace>/target`: outside the source tree,
/// and wiped by `cargo clean` like any other build output.
pub fn cache_dir() -> PathBuf {
    for var in ["VK_CACHE_DIR", "CARGO_TARGET_DIR"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(v);
            return if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            };
        }
    }
    workspace_root().join("target")
}
