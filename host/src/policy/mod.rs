//! The policy engine: loads a WebAssembly policy (the built-in default or an operator's own),
//! runs it per pod in a sandbox, and validates its output. It never calls StackPath or
//! Kubernetes.

mod bindings;
mod cache;
mod config_volume;
mod engine;
mod error;
#[doc(hidden)]
pub mod parts;
mod sandbox;
mod validate;

pub use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, Contract};
pub use config_volume::{ConfigFile, ConfigVolume, ConfigVolumeKind, EnvOrigin};
pub use engine::{
    CallContext, DEFAULT_POLICY_WASM, PolicyEngine, PolicyInfo, PolicySource, ResolvedEnv,
    precompile,
};
pub use error::{PolicyError, Violation};
pub use sandbox::Limits;
pub use validate::Translated;
