//! Pod volumes → `volumeClaimTemplates`. Only the StackPath CSI driver becomes a claim.

use crate::prelude::*;

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;

use super::Findings;
use crate::input::Volume;
use crate::output::{Resources, VolumeClaim, VolumeClaimSpec};
use crate::quantity::Quantity;
use crate::text::Str;

pub const CSI_DRIVER: &str = "virtual-kubelet.storage.compute.edgeengine.io";
const DEFAULT_SIZE: &str = "1Gi";
const MAX_SIZE: &str = "1000Gi";

pub(crate) struct MappedVolumes<'a> {
    pub claims: Vec<VolumeClaim<'a>>,
    /// Volumes the workload will not have (so their mounts are dropped), with a silent flag
    /// for the ones Kubernetes adds on its own (the service-account token).
    pub skipped: BTreeMap<Str<'a>, bool>,
}

pub(crate) fn map_volumes<'a>(volumes: &[Volume<'a>], f: &mut Findings) -> MappedVolumes<'a> {
    let mut out = MappedVolumes {
        claims: Vec::new(),
        skipped: BTreeMap::new(),
    };
    for (i, v) in volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        match &v.csi {
            Some(csi) if csi.driver == CSI_DRIVER => {
                if let Some(size) = claim_size(csi.volume_attributes.get("size"), &path, &v.name, f)
                {
                    let storage = || BTreeMap::from([("storage", Cow::Owned(size.clone()))]);
                    out.claims.push(VolumeClaim {
                        name: v.name.clone(),
                        slug: v.name.clone(),
                        spec: VolumeClaimSpec {
                            resources: Resources {
                                requests: storage(),
                                limits: storage(),
                            },
                        },
                    });
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
            None => {
                let silent = is_service_account_token(v);
                if !silent {
                    let kind = v.kind.as_deref().unwrap_or("unknown");
                    f.warn(
                        path,
                        format!(
                            "volume `{}` ({kind}) cannot be provided by StackPath; it and its \
                             mounts are left out (only CSI volumes with driver `{CSI_DRIVER}` \
                             are supported)",
                            v.name
                        ),
                    );
                }
                out.skipped.insert(v.name.clone(), silent);
            }
        }
    }
    out
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

fn claim_size(attr: Option<&Str<'_>>, path: &str, name: &str, f: &mut Findings) -> Option<String> {
    let Some(raw) = attr else {
        return Some(DEFAULT_SIZE.to_string());
    };
    let field = format!("{path}.csi.volumeAttributes.size");
    let q = match Quantity::parse(raw) {
        Ok(q) => q,
        Err(e) => {
            f.violate(field, format!("volume `{name}` size: {e}"));
            return None;
        }
    };
    if q.is_zero() {
        f.violate(
            field,
            format!("volume `{name}` size must be more than zero"),
        );
        return None;
    }
    let max = Quantity::gib(1000);
    if q.cmp_exact(&max).is_gt() {
        f.warn(
            field,
            format!("volume `{name}` asks for {raw}; StackPath volumes hold at most {MAX_SIZE}, so it gets {MAX_SIZE}"),
        );
        return Some(MAX_SIZE.to_string());
    }
    Some(raw.trim().to_string())
}
