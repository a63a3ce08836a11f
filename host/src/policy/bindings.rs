//! Host-side bindings of the `stackpath:policy` world (`wit/policy.wit`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "policy",
});

pub use exports::stackpath::policy::translator::{Context, Rejection, Translation};
pub use stackpath::policy::log::Level;
pub use stackpath::policy::types::ResolvedEnv;

/// The contract version this daemon speaks: the package version in `wit/policy.wit`.
pub const CONTRACT_PACKAGE: &str = "stackpath:policy";
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The export every policy must provide.
pub const TRANSLATOR_EXPORT: &str = "stackpath:policy/translator@0.1.0";
