//! The component glue: WIT bindings ↔ the native mapping.

use crate::prelude::*;

use crate::api;

wit_bindgen::generate!({
    path: "../wit",
    world: "policy",
});

use exports::stackpath::policy::translator::Guest;
use stackpath::policy::types::{
    ConfigVolumeKind, Context, EnvOrigin, EnvValue, PolicyInfo, Rejection, ResolvedEnv,
    Translation, Violation, Warning,
};

struct DefaultPolicy;

impl Guest for DefaultPolicy {
    fn info() -> PolicyInfo {
        PolicyInfo {
            name: crate::NAME.into(),
            version: crate::VERSION.into(),
            description: crate::DESCRIPTION.into(),
        }
    }

    fn translate(pod: String, ctx: Context) -> Result<Translation, Rejection> {
        let ctx = api::Context {
            node_name: ctx.node_name,
            city_code: ctx.city_code,
            stack_id: ctx.stack_id,
            env: ctx.env.into_iter().map(resolved_env).collect(),
            config_volumes: ctx
                .config_volumes
                .into_iter()
                .map(|v| api::ConfigVolume {
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
                })
                .collect(),
        };
        match crate::translate(&pod, &ctx) {
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
            Err(violations) => Err(Rejection {
                violations: violations
                    .into_iter()
                    .map(|v| Violation {
                        path: v.path,
                        message: v.message,
                    })
                    .collect(),
            }),
        }
    }
}

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

export!(DefaultPolicy);
