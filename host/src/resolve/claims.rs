//! `persistentVolumeClaim` volumes, resolved as a kubelet resolves them: claim → bound volume
//! → the volume's source. A volume of [`crate::provisioner`] is presented to the policy as the
//! inline CSI volume it stands for (driver and `volumeAttributes.size`), which the policy maps
//! to a StackPath volume claim. Claims bound to other volumes are left as they are: the policy
//! says it cannot provide them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::Objects;
use crate::policy::Violation;
use crate::provisioner;

/// A claim volume the policy gets as a CSI volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimVolume {
    /// `spec.volumes[].name`.
    pub name: String,
    /// `volumeAttributes.size` of the bound volume.
    pub size: String,
    pub read_only: bool,
}

/// The pod's claim volumes that are StackPath volumes; a missing or unbound claim is a
/// problem (the scheduler binds a pod only once its claims are bound, so either means the
/// claim changed since).
pub(super) fn claim_volumes(
    pod: &Pod,
    namespace: &str,
    objects: &Objects,
    problems: &mut Vec<Violation>,
) -> Vec<ClaimVolume> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let Some(pvc) = &v.persistent_volume_claim else {
            continue;
        };
        let path = format!("spec.volumes[{i}].persistentVolumeClaim.claimName");
        let name = &pvc.claim_name;
        let Some(claim) = objects.claims.get(name) else {
            problems.push(Violation {
                path,
                message: format!(
                    "volume `{}`: PersistentVolumeClaim `{name}` does not exist in namespace \
                     `{namespace}`; create it (a StatefulSet creates it from \
                     volumeClaimTemplates), then recreate the pod",
                    v.name
                ),
            });
            continue;
        };
        let bound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .filter(|n| !n.is_empty());
        let Some(pv_name) = bound else {
            problems.push(Violation {
                path,
                message: format!(
                    "volume `{}`: PersistentVolumeClaim `{name}` is not bound to a volume; \
                     check its Events (`kubectl describe pvc {name} -n {namespace}`), then \
                     recreate the pod",
                    v.name
                ),
            });
            continue;
        };
        let Some(pv) = objects.volumes.get(pv_name) else {
            problems.push(Violation {
                path,
                message: format!(
                    "volume `{}`: PersistentVolumeClaim `{name}` is bound to volume \
                     `{pv_name}`, which does not exist",
                    v.name
                ),
            });
            continue;
        };
        if let Some(size) = provisioner::size_of(pv) {
            out.push(ClaimVolume {
                name: v.name.clone(),
                size: size.to_owned(),
                read_only: pvc.read_only.unwrap_or(false),
            });
        }
    }
    out
}

/// The pod as the policy gets it: each of `claims`' volumes replaced by its CSI equivalent.
/// `pod_json` is returned unchanged when there are none (or it is not a JSON object).
pub fn present(pod_json: &str, claims: &[ClaimVolume]) -> String {
    if claims.is_empty() {
        return pod_json.to_owned();
    }
    let Ok(mut pod) = serde_json::from_str::<serde_json::Value>(pod_json) else {
        return pod_json.to_owned();
    };
    let by_name: BTreeMap<&str, &ClaimVolume> =
        claims.iter().map(|c| (c.name.as_str(), c)).collect();
    let volumes = pod
        .get_mut("spec")
        .and_then(|s| s.get_mut("volumes"))
        .and_then(|v| v.as_array_mut());
    for v in volumes.into_iter().flatten() {
        let Some(c) = v
            .get("name")
            .and_then(|n| n.as_str())
            .and_then(|n| by_name.get(n))
        else {
            continue;
        };
        *v = serde_json::json!({
            "name": c.name,
            "csi": {
                "driver": provisioner::PROVISIONER,
                "readOnly": c.read_only,
                "volumeAttributes": {"size": c.size},
            },
        });
    }
    serde_json::to_string(&pod).unwrap_or_else(|_| pod_json.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::tests::pod;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

    fn objects(bound_to: Option<&str>, driver: &str) -> Objects {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "data-db-0"},
            "spec": {"volumeName": bound_to}
        }))
        .unwrap();
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"csi": {"driver": driver, "volumeHandle": "pvc-1",
                "volumeAttributes": {"size": "2Gi"}}}
        }))
        .unwrap();
        Objects {
            claims: [("data-db-0".to_owned(), claim)].into(),
            volumes: [("pvc-1".to_owned(), pv)].into(),
            ..Objects::default()
        }
    }

    fn db_pod() -> Pod {
        pod(serde_json::json!({
            "containers": [{"name": "db", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
        }))
    }

    #[test]
    fn a_stackpath_claim_reaches_the_policy_as_its_csi_volume() {
        let mut problems = Vec::new();
        let claims = claim_volumes(
            &db_pod(),
            "default",
            &objects(Some("pvc-1"), provisioner::PROVISIONER),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let json = serde_json::to_string(&db_pod()).unwrap();
        let shown: serde_json::Value = serde_json::from_str(&present(&json, &claims)).unwrap();
        assert_eq!(
            shown["spec"]["volumes"][0],
            serde_json::json!({"name": "data", "csi": {"driver": provisioner::PROVISIONER,
                "readOnly": false, "volumeAttributes": {"size": "2Gi"}}})
        );
        // Mounts are untouched: they name the volume.
        assert_eq!(
            shown["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "data"
        );
    }

    #[test]
    fn other_volumes_stay_claims_and_missing_or_unbound_claims_fail_the_pod() {
        let mut problems = Vec::new();
        let other = claim_volumes(
            &db_pod(),
            "default",
            &objects(Some("pvc-1"), "ebs.csi.aws.com"),
            &mut problems,
        );
        assert!(other.is_empty() && problems.is_empty());
        claim_volumes(
            &db_pod(),
            "default",
            &objects(None, provisioner::PROVISIONER),
            &mut problems,
        );
        claim_volumes(&db_pod(), "default", &Objects::default(), &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.path == "spec.volumes[0].persistentVolumeClaim.claimName")
        );
        assert!(
            problems[0].message.contains("is not bound"),
            "{}",
            problems[0].message
        );
        assert!(
            problems[1]
                .message
                .contains("does not exist in namespace `default`"),
            "{}",
            problems[1].message
        );
    }
}
