//! Pod volumes → `volumeClaimTemplates`: the StackPath CSI driver's volumes, and the volumes the
//! host writes (configMap, secret, downwardAPI, projected, emptyDir: `Context::config_volumes`),
//! each in a claim of its own that the host's init container fills before the pod's
//! containers start.

use crate::prelude::*;

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;

use super::Findings;
use crate::api::{ConfigVolumeKind, Context};
use crate::input::Volume;
use crate::output::{Resources, VolumeClaim, VolumeClaimSpec};
use crate::quantity::Quantity;
use crate::text::Str;

pub const CSI_DRIVER: &str = "virtual-kubelet.storage.compute.edgeengine.io";
const DEFAULT_SIZE: &str = "1Gi";
/// A config volume's claim: StackPath's smallest volume; what the host writes is far smaller
/// (at most 1 MiB per pod).
const CONFIG_SIZE: &str = "1Gi";
const MAX_SIZE: &str = "1000Gi";
/// The volume kinds the host writes into claims (`Context::config_volumes`).
const HOST_WRITTEN: &[&str] = &[
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "emptyDir",
];

pub(crate) struct MappedVolumes<'a> {
    pub claims: Vec<VolumeClaim<'a>>,
    /// Volumes the workload will not have (so their mounts are dropped), with a silent flag
    /// for the ones Kubernetes adds on its own (the service-account token).
    pub skipped: BTreeMap<Str<'a>, bool>,
}

pub(crate) fn map_volumes<'a>(
    volumes: &[Volume<'a>],
    ctx: &Context,
    f: &mut Findings,
) -> MappedVolumes<'a> {
    let mut out = MappedVolumes {
        claims: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        match &v.csi {
            Some(csi) if csi.driver == CSI_DRIVER => {
                let field = || format!("{path}.csi.volumeAttributes.size");
                if let Some(size) = claim_size(csi.volume_attributes.get("size"), field, &v.name, f)
                {
                    out.claims.push(claim(&v.name, size));
                }
            }
            Some(csi) => {
                f.warn(
                    format!("{path}.csi.driver"),
                    format!(
                        "volume `{}` uses CSI driver `{}`; only `{CSI_DRIVER}` is supported on \
                         StackPath, so the volume and its mounts are left out",
                        v.name, csi.driver
                    ),
                );
                out.skipped.insert(v.name.clone(), false);
            }
            None if ctx.config_volume(&v.name).is_some() => {
                let kind = ctx.config_volume(&v.name).map(|c| c.kind);
                let size = if kind == Some(ConfigVolumeKind::EmptyDir) {
                    empty_dir_size(v, &path, f)
                } else {
                    Some(CONFIG_SIZE.to_string())
                };
                if kind == Some(ConfigVolumeKind::Projected)
                    && v.projected.as_ref().is_some_and(|p| {
                        p.sources.iter().any(|s| s.service_account_token.is_some())
                    })
                {
                    f.warn(
                        format!("{path}.projected"),
                        format!(
                            "volume `{}`: the service account token is left out (the workload \
                             does not run in the cluster); its other sources are provided",
                            v.name
                        ),
                    );
                }
                if let Some(size) = size {
                    out.claims.push(claim(&v.name, size));
                }
            }
            None => {
                let silent = is_service_account_token(v);
                if !silent {
                    let kind = v.kind.as_deref().unwrap_or("unknown");
                    let message = if kind == "persistentVolumeClaim" {
                        // The host presents claims of this node's StorageClass as CSI volumes.
                        format!(
                            "volume `{}` (persistentVolumeClaim) is not a StackPath volume; it \
                             and its mounts are left out (use a claim of a StorageClass with \
                             provisioner `{CSI_DRIVER}`, such as `stackpath-edge`)",
                            v.name
                        )
                    } else if HOST_WRITTEN.contains(&kind) {
                        // The host would have offered it: the operator turned that off.
                        format!(
                            "volume `{}` ({kind}) is left out with its mounts: this node does \
                             not write config volumes (--config-volumes=skip)",
                            v.name
                        )
                    } else {
                        format!(
                            "volume `{}` ({kind}) cannot be provided by StackPath; it and its \
                             mounts are left out (only CSI volumes with driver `{CSI_DRIVER}` \
                             and configMap, secret, downwardAPI, projected and emptyDir volumes \
                             are supported)",
                            v.name
                        )
                    };
                    f.warn(path, message);
                }
                out.skipped.insert(v.name.clone(), silent);
            }
        }
    }
    out
}

fn claim<'a>(name: &Str<'a>, size: String) -> VolumeClaim<'a> {
    let storage = || BTreeMap::from([("storage", Cow::Owned(size.clone()))]);
    VolumeClaim {
        name: name.clone(),
        slug: name.clone(),
        spec: VolumeClaimSpec {
            resources: Resources {
                requests: storage(),
                limits: storage(),
            },
        },
    }
}

/// An emptyDir's claim: its `sizeLimit`, at least StackPath's smallest volume (`1Gi`) and at
/// most its largest. `medium: Memory` has no StackPath equivalent: a disk volume, with a
/// warning.
fn empty_dir_size(v: &Volume<'_>, path: &str, f: &mut Findings) -> Option<String> {
    let e = v.empty_dir.as_ref()?;
    if e.medium.as_deref() == Some("Memory") {
        f.warn(
            format!("{path}.emptyDir.medium"),
            format!(
                "volume `{}`: StackPath has no memory-backed volumes; it is a disk volume",
                v.name
            ),
        );
    }
    let raw = match &e.size_limit {
        None | Some(serde_json::Value::Null) => return Some(CONFIG_SIZE.to_string()),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(other) => {
            f.violate(
                format!("{path}.emptyDir.sizeLimit"),
                format!(
                    "volume `{}`: expected a quantity such as `1Gi`, got {other}",
                    v.name
                ),
            );
            return None;
        }
    };
    let q = match Quantity::parse(&raw) {
        Ok(q) => q,
        Err(e) => {
            f.violate(
                format!("{path}.emptyDir.sizeLimit"),
                format!("volume `{}` size: {e}", v.name),
            );
            return None;
        }
    };
    if q.cmp_exact(&Quantity::gib(1)).is_le() {
        return Some(CONFIG_SIZE.to_string());
    }
    claim_size(
        Some(&Str::from(raw)),
        || format!("{path}.emptyDir.sizeLimit"),
        &v.name,
        f,
    )
}

/// The projected volume the ServiceAccount admission plugin adds (`kube-api-access-*`).
fn is_service_account_token(v: &Volume) -> bool {
    let Some(projected) = &v.projected else {
        return false;
    };
    v.name.starts_with("kube-api-access-")
        || projected
            .sources
            .iter()
            .any(|s| s.service_account_token.is_some())
}

fn claim_size(
    attr: Option<&Str<'_>>,
    field: impl Fn() -> String,
    name: &str,
    f: &mut Findings,
) -> Option<String> {
    let Some(raw) = attr else {
        return Some(DEFAULT_SIZE.to_string());
    };
    let q = match Quantity::parse(raw) {
        Ok(q) => q,
        Err(e) => {
            f.violate(field(), format!("volume `{name}` size: {e}"));
            return None;
        }
    };
    if q.is_zero() {
        f.violate(
            field(),
            format!("volume `{name}` size must be more than zero"),
        );
        return None;
    }
    let max = Quantity::gib(1000);
    if q.cmp_exact(&max).is_gt() {
        f.warn(
            field(),
            format!("volume `{name}` asks for {raw}; StackPath volumes hold at most {MAX_SIZE}, so it gets {MAX_SIZE}"),
        );
        return Some(MAX_SIZE.to_string());
    }
    Some(raw.trim().to_string())
}
