//! An example custom policy for vk-stackpath, written against `wit/policy.wit` with
//! wit-bindgen. It reuses the default mapping (the `guest-default` crate, as a library without
//! its `component` feature) and then adjusts its output:
//!
//! - every container runs one StackPath size above the one the default policy picks
//!   (SP-8 stays SP-8), for headroom;
//! - every container gets `securityContext.readOnlyRootFilesystem: true`;
//! - pods in namespace `ops` must ask for remote management
//!   (`workload.platform.stackpath.net/remote-management: "true"`), else they are rejected.

mod strict;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy",
});

use exports::stackpath::policy::translator::Guest;
use guest_default::api;
use stackpath::policy::log::{Level, log};
use stackpath::policy::types::{
    ConfigVolume, ConfigVolumeKind, Context, EnvOrigin, EnvValue, PolicyInfo, Rejection,
    ResolvedEnv, Translation, Violation, Warning,
};

struct StrictPolicy;

impl Guest for StrictPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: "rust-strict".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The default mapping one StackPath size up, with read-only root \
                          filesystems; pods in namespace `ops` must ask for remote management."
                .into(),
        }
    }

    fn translate(pod: String, ctx: Context) -> Result<Translation, Rejection> {
        let ctx = api::Context {
            node_name: ctx.node_name,
            city_code: ctx.city_code,
            stack_id: ctx.stack_id,
            env: ctx.env.into_iter().map(resolved_env).collect(),
            config_volumes: ctx.config_volumes.into_iter().map(config_volume).collect(),
        };
        match strict::translate(&pod, &ctx) {
            Ok(t) => Ok(Translation {
                spec: t.spec,
                annotations: t.annotations,
                warnings: t
                    .warnings
                    .into_iter()
                    .map(|w| Warning {
                        path: w.path,
                        message: w.message,
                    })
                    .collect(),
            }),
            Err(violations) => {
                log(
                    Level::Info,
                    &format!("rejecting the pod: {} violation(s)", violations.len()),
                );
                Err(Rejection {
                    violations: violations
                        .into_iter()
                        .map(|v| Violation {
                            path: v.path,
                            message: v.message,
                        })
                        .collect(),
                })
            }
        }
    }
}

/// The contract's records as the default mapping's (`guest_default::api`) takes them.
fn resolved_env(e: ResolvedEnv) -> api::ResolvedEnv {
    api::ResolvedEnv {
        container: e.container,
        name: e.name,
        value: match e.value {
            EnvValue::Plain(v) => api::EnvValue::Plain(v),
            EnvValue::Secret => api::EnvValue::Secret,
            EnvValue::InstanceField(p) => api::EnvValue::InstanceField(p),
            EnvValue::SizeLimit => api::EnvValue::SizeLimit,
        },
        origin: match e.origin {
            EnvOrigin::Env(i) => api::EnvOrigin::Env(i),
            EnvOrigin::EnvFrom(i) => api::EnvOrigin::EnvFrom(i),
        },
    }
}

fn config_volume(v: ConfigVolume) -> api::ConfigVolume {
    api::ConfigVolume {
        name: v.name,
        kind: match v.kind {
            ConfigVolumeKind::ConfigMap => api::ConfigVolumeKind::ConfigMap,
            ConfigVolumeKind::Secret => api::ConfigVolumeKind::Secret,
            ConfigVolumeKind::DownwardApi => api::ConfigVolumeKind::DownwardApi,
            ConfigVolumeKind::Projected => api::ConfigVolumeKind::Projected,
            ConfigVolumeKind::EmptyDir => api::ConfigVolumeKind::EmptyDir,
        },
        files: v
            .files
            .into_iter()
            .map(|f| api::ConfigFile {
                path: f.path,
                mode: f.mode,
            })
            .collect(),
        bytes: v.bytes,
    }
}

export!(StrictPolicy);
