//! An example custom policy for vk-stackpath, written against `wit/policy.wit` with
//! wit-bindgen. It reuses the default mapping (the `guest-default` crate) and then adjusts its
//! output:
//!
//! - every container runs one StackPath size above the one the default policy picks
//!   (SP-8 stays SP-8), for headroom;
//! - every container gets `securityContext.readOnlyRootFilesystem: true`;
//! - pods in namespace `ops` must ask for remote management
//!   (`workload.platform.stackpath.net/remote-management: "true"`), else they are rejected.

mod strict;

// The default policy's mapping, compiled into this component so that its output can be
// adjusted. It is included by path rather than as the `guest-default` dependency because that
// crate, built for wasm32, also exports the `translator` interface itself, and two exports of
// one interface cannot be linked into one component. (Once guest-default gates its exports
// behind a default feature, this becomes `guest-default = { path, default-features = false }`.)
#[path = "../../../../guest-default/src/api.rs"]
mod api;
#[path = "../../../../guest-default/src/input.rs"]
mod input;
#[path = "../../../../guest-default/src/mapping/mod.rs"]
mod mapping;
#[path = "../../../../guest-default/src/output.rs"]
mod output;
#[path = "../../../../guest-default/src/quantity.rs"]
mod quantity;
#[path = "../../../../guest-default/src/sizing.rs"]
mod sizing;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy",
});

use exports::stackpath::policy::translator::Guest;
use stackpath::policy::log::{Level, log};
use stackpath::policy::types::{Context, PolicyInfo, Rejection, Translation, Violation, Warning};

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

export!(StrictPolicy);
