//! StackPath volumes for PersistentVolumeClaims (a StatefulSet's `volumeClaimTemplates`): the
//! daemon is the external provisioner of StorageClasses whose `provisioner` is [`PROVISIONER`]
//! (`deploy/` ships one, `stackpath-edge`, with `volumeBindingMode: WaitForFirstConsumer`).
//!
//! StackPath has no volumes apart from workloads: a volume is a `volumeClaimTemplates` entry of
//! the workload that mounts it, created and deleted with it. So provisioning here is
//! bookkeeping in Kubernetes, which is what lets the scheduler place the pod and the
//! StatefulSet controller see its claim bound:
//!
//! - a claim of such a class, selected for this node by the scheduler
//!   (`volume.kubernetes.io/selected-node`), gets a PersistentVolume `pvc-<claim uid>` bound to
//!   it: an inline-CSI source with driver [`PROVISIONER`] and `volumeAttributes.size` (whole
//!   GiB, 1 to 1000, as StackPath sizes volumes), pinned to this node by node affinity;
//! - when the pod is translated, [`crate::resolve`] presents the claim to the policy as that
//!   CSI volume, so the workload gets a volume claim of that size (the default policy maps CSI
//!   volumes of this driver, as the Go provider did);
//! - a released volume (its claim deleted, reclaim policy `Delete`) is deleted.
//!
//! What StackPath forces (docs/mapping.md): the data lives as long as the pod's workload, so a
//! StatefulSet pod that is deleted and created again (a rollout, `kubectl delete pod`) starts
//! with an empty volume although its claim is kept.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, watcher};

use crate::pods::events::Events;

/// The provisioner name, also the CSI driver of the volumes it makes: the name of the Go
/// provider's inline CSI volumes (`guest-default`'s `CSI_DRIVER`), so a policy that maps those
/// maps claims too.
pub const PROVISIONER: &str = "virtual-kubelet.storage.compute.edgeengine.io";
/// The StorageClass `deploy/` ships.
pub const STORAGE_CLASS: &str = "stackpath-edge";
const ANN_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const ANN_BETA_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Label of the volumes this node provisioned (the volume watch selects on it).
pub const NODE_LABEL: &str = "stackpath.virtual-kubelet.io/node";
/// StackPath's volume sizes, in GiB.
const MIN_GIB: u128 = 1;
const MAX_GIB: u128 = 1000;
const GIB: u128 = 1 << 30;

struct Ctx {
    kube: kube::Client,
    node: String,
    events: Events,
}

/// Provisions and deletes this node's volumes until `shutdown` resolves.
pub async fn run(
    kube: kube::Client,
    node: String,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(Ctx {
        events: Events::new(kube.clone(), &node),
        kube: kube.clone(),
        node: node.clone(),
    });
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    // Claims: every namespace (a claim names no node until the scheduler picks one).
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(kube.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown.clone())
    .run(provision, retry, ctx.clone())
    .for_each(|_| async {});
    // Volumes: only this node's.
    let volumes = watcher(
        Api::<PersistentVolume>::all(kube),
        watcher::Config::default().labels(&format!("{NODE_LABEL}={node}")),
    )
    .default_backoff()
    .applied_objects()
    .take_until(shutdown)
    .for_each(|pv| {
        let ctx = ctx.clone();
        async move {
            match pv {
                Ok(pv) => release(&pv, &ctx).await,
                Err(e) => tracing::warn!(error = %e, "watching this node's PersistentVolumes failed; retrying"),
            }
        }
    });
    futures::join!(claims, volumes);
}

#[derive(Debug, thiserror::Error)]
#[error("provisioning the volume of claim {claim}: {source}")]
struct ProvisionError {
    claim: String,
    source: kube::Error,
}

fn retry(claim: Arc<PersistentVolumeClaim>, e: &ProvisionError, _: Arc<Ctx>) -> Action {
    tracing::warn!(claim = %key(&claim), error = %e.source, "provisioning failed; retrying in 10s");
    Action::requeue(Duration::from_secs(10))
}

fn key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    )
}

/// Whether this node is to provision the claim: this provisioner's, selected for this node,
/// not yet bound, not being deleted.
fn is_ours(claim: &PersistentVolumeClaim, node: &str) -> bool {
    let ann = claim.annotations();
    let provisioner = ann
        .get(ANN_PROVISIONER)
        .or_else(|| ann.get(ANN_BETA_PROVISIONER));
    provisioner.map(String::as_str) == Some(PROVISIONER)
        && ann.get(ANN_SELECTED_NODE).map(String::as_str) == Some(node)
        && claim.metadata.deletion_timestamp.is_none()
        && claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
}

async fn provision(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, ProvisionError> {
    if !is_ours(&claim, &ctx.node) {
        return Ok(Action::await_change());
    }
    let pv = match volume_for(&claim, &ctx.node) {
        Ok(pv) => pv,
        Err(why) => {
            tracing::warn!(claim = %key(&claim), "{why}");
            ctx.events
                .warning(&*claim, "ProvisioningFailed", "Provision", why)
                .await;
            return Ok(Action::await_change());
        }
    };
    let name = pv.metadata.name.clone().unwrap_or_default();
    let api: Api<PersistentVolume> = Api::all(ctx.kube.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        // Made in an earlier pass whose claim update has not arrived yet.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::await_change()),
        Err(source) => {
            return Err(ProvisionError {
                claim: key(&claim),
                source,
            });
        }
    }
    let size = pv
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    tracing::info!(claim = %key(&claim), volume = name, size, "provisioned a StackPath volume");
    ctx.events
        .normal(
            &*claim,
            "ProvisioningSucceeded",
            "Provision",
            format!(
                "Successfully provisioned volume {name}: a {size} StackPath volume of the pod's \
                 workload on node {}; its data lives as long as that workload",
                ctx.node
            ),
        )
        .await;
    Ok(Action::await_change())
}

/// The volume for a claim, or why the claim cannot have one (for its Event).
fn volume_for(claim: &PersistentVolumeClaim, node: &str) -> Result<PersistentVolume, String> {
    let spec = claim.spec.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    if let Some(m) = modes
        .iter()
        .find(|m| *m == "ReadWriteMany" || *m == "ReadOnlyMany")
    {
        return Err(format!(
            "claim {}: access mode {m} is not possible on StackPath, whose volumes belong to one \
             instance; use ReadWriteOnce or ReadWriteOncePod (spec.accessModes)",
            key(claim)
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(format!(
            "claim {}: StackPath volumes are filesystems; use volumeMode Filesystem \
             (spec.volumeMode)",
            key(claim)
        ));
    }
    if spec.data_source.is_some() || spec.data_source_ref.is_some() {
        return Err(format!(
            "claim {}: StackPath volumes start empty; cloning or restoring (spec.dataSource) is \
             not possible",
            key(claim)
        ));
    }
    let gib = size_gib(claim)?;
    let claim_uid = claim.uid().unwrap_or_default();
    let size = format!("{gib}Gi");
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{claim_uid}")),
            labels: Some([(NODE_LABEL.to_owned(), node.to_owned())].into()),
            annotations: Some([(ANN_PROVISIONED_BY.to_owned(), PROVISIONER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(if modes.is_empty() {
                vec!["ReadWriteOnce".into()]
            } else {
                modes
            }),
            capacity: Some([("storage".to_owned(), K8sQuantity(size.clone()))].into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: Some(claim_uid.clone()),
                ..ObjectReference::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: PROVISIONER.into(),
                volume_handle: format!("pvc-{claim_uid}"),
                volume_attributes: Some([("size".to_owned(), size)].into()),
                ..CSIPersistentVolumeSource::default()
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_owned()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: spec.storage_class_name.clone(),
            volume_mode: Some("Filesystem".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

/// The claim's `resources.requests.storage`, rounded up to whole GiB, at least StackPath's
/// smallest volume.
fn size_gib(claim: &PersistentVolumeClaim) -> Result<u128, String> {
    let requested = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    let Some(q) = requested else {
        return Ok(MIN_GIB);
    };
    let field = "spec.resources.requests.storage";
    let bytes = guest_default::quantity::Quantity::parse(&q.0)
        .map_err(|e| format!("claim {} {field}: {e}", key(claim)))?
        .ceil_scaled(0)
        .unwrap_or(u128::MAX);
    let gib = bytes.div_ceil(GIB).max(MIN_GIB);
    if gib > MAX_GIB {
        return Err(format!(
            "claim {} {field}: {} is more than StackPath's largest volume ({MAX_GIB}Gi); ask \
             for less",
            key(claim),
            q.0
        ));
    }
    Ok(gib)
}

/// Deletes a volume of this node once its claim is gone (reclaim policy `Delete`); the
/// StackPath side went with the workload.
async fn release(pv: &PersistentVolume, ctx: &Ctx) {
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    let ours = pv.annotations().get(ANN_PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    if !(released && delete && ours) || pv.metadata.deletion_timestamp.is_some() {
        return;
    }
    let api: Api<PersistentVolume> = Api::all(ctx.kube.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pv.name_any(), &params).await {
        Ok(_) => tracing::info!(volume = pv.name_any(), "deleted a released volume"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => {
            tracing::warn!(volume = pv.name_any(), error = %e, "deleting a released volume failed; next change retries")
        }
    }
}

/// The size (`volumeAttributes.size`) of a volume this provisioner made; `None` for others.
pub fn size_of(pv: &PersistentVolume) -> Option<&str> {
    let csi = pv.spec.as_ref()?.csi.as_ref()?;
    (csi.driver == PROVISIONER)
        .then(|| {
            csi.volume_attributes
                .as_ref()?
                .get("size")
                .map(String::as_str)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        let mut base = serde_json::json!({
            "metadata": {"name": "data-web-0", "namespace": "default", "uid": "u1",
                "annotations": {ANN_PROVISIONER: PROVISIONER, ANN_SELECTED_NODE: "edge"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1500Mi"}}}
        });
        json_patch(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn json_patch(base: &mut serde_json::Value, patch: serde_json::Value) {
        match (base, patch) {
            (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    json_patch(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, p) => *b = p,
        }
    }

    #[test]
    fn a_selected_claim_gets_a_volume_pinned_to_the_node() {
        let c = claim(serde_json::json!({}));
        assert!(is_ours(&c, "edge"));
        let pv = volume_for(&c, "edge").unwrap();
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u1");
        assert_eq!(v["metadata"]["labels"][NODE_LABEL], "edge");
        // 1500Mi rounds up to StackPath's 2Gi.
        assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(v["spec"]["csi"]["volumeAttributes"]["size"], "2Gi");
        assert_eq!(v["spec"]["csi"]["driver"], PROVISIONER);
        assert_eq!(v["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(v["spec"]["storageClassName"], STORAGE_CLASS);
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
                [0],
            "edge"
        );
        assert_eq!(size_of(&pv), Some("2Gi"));
    }

    #[test]
    fn claims_of_other_nodes_classes_or_already_bound_are_left_alone() {
        assert!(!is_ours(&claim(serde_json::json!({})), "other"));
        let other = claim(
            serde_json::json!({"metadata": {"annotations": {ANN_PROVISIONER: "ebs.csi.aws.com"}}}),
        );
        assert!(!is_ours(&other, "edge"));
        let bound = claim(serde_json::json!({"spec": {"volumeName": "pv-1"}}));
        assert!(!is_ours(&bound, "edge"));
        let mut beta = claim(serde_json::json!({}));
        let ann = beta.metadata.annotations.as_mut().unwrap();
        ann.remove(ANN_PROVISIONER);
        ann.insert(ANN_BETA_PROVISIONER.into(), PROVISIONER.into());
        assert!(is_ours(&beta, "edge"));
    }

    #[test]
    fn impossible_claims_say_which_field_and_what_to_do() {
        let many = claim(serde_json::json!({"spec": {"accessModes": ["ReadWriteMany"]}}));
        let e = volume_for(&many, "edge").unwrap_err();
        assert!(
            e.contains("default/data-web-0")
                && e.contains("ReadWriteOnce")
                && e.contains("spec.accessModes"),
            "{e}"
        );
        let big =
            claim(serde_json::json!({"spec": {"resources": {"requests": {"storage": "2Ti"}}}}));
        let e = volume_for(&big, "edge").unwrap_err();
        assert!(e.contains("2Ti") && e.contains("1000Gi"), "{e}");
        let block = claim(serde_json::json!({"spec": {"volumeMode": "Block"}}));
        assert!(
            volume_for(&block, "edge")
                .unwrap_err()
                .contains("spec.volumeMode")
        );
        let bad =
            claim(serde_json::json!({"spec": {"resources": {"requests": {"storage": "lots"}}}}));
        assert!(
            volume_for(&bad, "edge")
                .unwrap_err()
                .contains("requests.storage")
        );
        let small =
            claim(serde_json::json!({"spec": {"resources": {"requests": {"storage": "10Mi"}}}}));
        assert_eq!(size_gib(&small), Ok(1));
    }
}
