//! Kubeconfig files for the cluster's identities (admin, components, the daemon).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::error::{Error, Result};

/// How an identity proves itself to the apiserver.
pub enum Credential<'a> {
    ClientCert {
        cert: &'a Path,
        key: &'a Path,
    },
    /// A bearer token; written to the file only (never logged).
    Token(&'a str),
}

fn b64_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
    Ok(STANDARD.encode(bytes))
}

/// Writes a self-contained kubeconfig (certificates embedded) with one context.
pub fn write(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    credential: Credential<'_>,
    namespace: Option<&str>,
) -> Result<()> {
    let user_entry = match credential {
        Credential::ClientCert { cert, key } => json!({
            "client-certificate-data": b64_file(cert)?,
            "client-key-data": b64_file(key)?,
        }),
        Credential::Token(token) => json!({ "token": token }),
    };
    let mut context = json!({ "cluster": "local-cluster", "user": user });
    if let Some(ns) = namespace {
        context["namespace"] = json!(ns);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local-cluster", "cluster": {
            "server": server,
            "certificate-authority-data": b64_file(ca)?,
        }}],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{ "name": user, "context": context }],
        "current-context": user,
        "preferences": {},
    });
    let text = serde_yaml::to_string(&config)
        .map_err(|e| Error::Other(format!("serialising kubeconfig {}: {e}", path.display())))?;
    std::fs::write(path, text).map_err(Error::io("writing", path))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io("restricting", path))?;
    Ok(())
}
