//! The component glue: WIT bindings ↔ the native mapping.

use crate::prelude::*;

use crate::api;

wit_bindgen::generate!({
    path: "../wit",
    world: "policy",
});

use exports::stackpath::policy::translator::Guest;
use stackpath::policy::types::{Context, PolicyInfo, Rejection, Translation, Violation, Warning};

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
            env: ctx
                .env
                .into_iter()
                .map(|e| api::ResolvedEnv {
                    container: e.container,
                    name: e.name,
                    value: e.value,
                    from_secret: e.from_secret,
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

export!(DefaultPolicy);
