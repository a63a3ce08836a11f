//! The daemon's identity in the cluster: applies what deploy/base ships (namespace,
//! ServiceAccount, RBAC) exactly as written, then mints a TokenRequest token for that
//! ServiceAccount, so tests run with the permissions a real installation grants.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::{Api, Client};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::paths;
use crate::{DAEMON_NAMESPACE, DAEMON_SERVICE_ACCOUNT};

/// The manifests applied, in order (namespace first: the rest lives in it): the daemon's
/// identity, grants and StorageClass, as `deploy/base` ships them.
pub fn manifests() -> Vec<PathBuf> {
    let base = paths::deploy_base_dir();
    [
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "storageclass.yaml",
    ]
    .into_iter()
    .map(|f| base.join(f))
    .collect()
}

/// Server-side applies every document of `path`.
pub async fn apply_file(client: &Client, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    apply_text(client, &text, path).await
}

/// Server-side applies every YAML document of `text` (`origin` names it in errors).
pub async fn apply_text(client: &Client, text: &str, origin: &Path) -> Result<()> {
    let path = origin;
    // Parse everything first: the YAML parser must not live across an await.
    let docs = serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc).map_err(|e| Error::BadFile {
                path: path.to_path_buf(),
                reason: format!("invalid YAML: {e}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    for value in docs {
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("a document is not a Kubernetes object: {e}"),
        })?;
        let types = obj.types.clone().ok_or_else(|| Error::BadFile {
            path: path.to_path_buf(),
            reason: "a document has no apiVersion/kind".into(),
        })?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("bad apiVersion {:?}: {e}", types.api_version),
        })?;
        let name = obj.metadata.name.clone().ok_or_else(|| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("a {} has no metadata.name", gvk.kind),
        })?;
        let what = format!("applying {} {name} from {}", gvk.kind, path.display());
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(Error::kube(what.clone()))?;
        let api: Api<DynamicObject> = match (caps.scope, obj.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &ar),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply("local-cluster").force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(Error::kube(what))?;
    }
    Ok(())
}

/// The node whose rights `deploy/overlays/dfw/node-rbac.yaml` grants by name.
const SHIPPED_NODE: &str = "stackpath-edge-provider-dfw";

/// Grants the daemon's ServiceAccount the rights on `node` (its Node and node Lease, by name)
/// that an overlay grants on its own node: the shipped file with the node name replaced.
pub async fn grant_node(client: &Client, node: &str) -> Result<()> {
    let path = paths::workspace_root()
        .join("deploy")
        .join("overlays")
        .join("dfw")
        .join("node-rbac.yaml");
    let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
    apply_text(client, &text.replace(SHIPPED_NODE, node), &path).await
}

/// Applies deploy/base and returns a token for the daemon's ServiceAccount.
pub async fn install_daemon_identity(client: &Client, token_seconds: i64) -> Result<String> {
    for m in manifests() {
        apply_file(client, &m).await?;
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), DAEMON_NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(token_seconds),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = sas
        .create_token_request(DAEMON_SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(Error::kube(
            "requesting a token for ServiceAccount vk-stackpath/vk-stackpath",
        ))?;
    token
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::Other("the TokenRequest for vk-stackpath came back without a token".into())
        })
}
