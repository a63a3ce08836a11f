//! Pod-level settings → `spec.runtime.containers`.

use crate::prelude::*;

use super::{Findings, Path};
use crate::input::PodSpec;
use crate::output::{
    ContainerRuntime, DnsConfig, DnsOption, HostAlias, PodSecurityContext, RuntimeSettings, Sysctl,
};

/// Kubernetes' default, applied here so raw and defaulted pods agree.
const DEFAULT_GRACE_SECONDS: i64 = 30;

pub(crate) fn map_runtime<'a>(spec: &PodSpec<'a>, f: &mut Findings) -> Option<RuntimeSettings<'a>> {
    let grace = spec
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace < 0 {
        f.violate(
            "spec.terminationGracePeriodSeconds",
            format!("must be zero or more, got {grace}"),
        );
    }
    let rt = ContainerRuntime {
        termination_grace_period_seconds: Some(grace.to_string().into()),
        host_aliases: spec
            .host_aliases
            .iter()
            .map(|h| HostAlias {
                ip: h.ip.clone(),
                hostnames: h.hostnames.clone(),
            })
            .collect(),
        dns_config: spec.dns_config.as_ref().and_then(|d| {
            let out = DnsConfig {
                nameservers: d.nameservers.clone(),
                searches: d.searches.clone(),
                options: d
                    .options
                    .iter()
                    .map(|o| DnsOption {
                        name: o.name.clone(),
                        value: o.value.clone(),
                    })
                    .collect(),
            };
            let empty =
                out.nameservers.is_empty() && out.searches.is_empty() && out.options.is_empty();
            (!empty).then_some(out)
        }),
        share_process_namespace: spec.share_process_namespace.unwrap_or(false),
        security_context: spec.security_context.as_ref().and_then(|sc| {
            f.warn_unsupported(
                Path("spec.securityContext", ""),
                &[
                    ("fsGroupChangePolicy", sc.fs_group_change_policy.is_some()),
                    ("seLinuxOptions", sc.se_linux_options.is_some()),
                    ("seccompProfile", sc.seccomp_profile.is_some()),
                    ("appArmorProfile", sc.app_armor_profile.is_some()),
                    ("windowsOptions", sc.windows_options.is_some()),
                ],
            );
            let out = PodSecurityContext {
                run_as_user: sc.run_as_user.map(|v| v.to_string().into()),
                run_as_group: sc.run_as_group.map(|v| v.to_string().into()),
                run_as_non_root: sc.run_as_non_root,
                // As the kubelet does, fsGroup is one of every container's groups (the files
                // of the volumes the host writes belong to it).
                supplemental_groups: sc
                    .supplemental_groups
                    .iter()
                    .chain(
                        sc.fs_group
                            .iter()
                            .filter(|g| !sc.supplemental_groups.contains(g)),
                    )
                    .map(|g| g.to_string().into())
                    .collect(),
                sysctls: sc
                    .sysctls
                    .iter()
                    .map(|s| Sysctl {
                        name: s.name.clone(),
                        value: s.value.clone(),
                    })
                    .collect(),
            };
            let empty = out.run_as_user.is_none()
                && out.run_as_group.is_none()
                && out.run_as_non_root.is_none()
                && out.supplemental_groups.is_empty()
                && out.sysctls.is_empty();
            (!empty).then_some(out)
        }),
    };
    Some(RuntimeSettings { containers: rt })
}
