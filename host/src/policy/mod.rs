//! The policy engine: loads a WebAssembly policy (the built-in default or an operator's own),
//! runs it per pod in a sandbox, and validates its output. It never calls StackPath or
//! Kubernetes.

mod bindings;
mod cache;
mod config_volume;
mod context;
mod engine;
mod error;
#[doc(hidden)]
pub mod parts;
mod precompiled;
mod sandbox;
mod validate;
mod wasi;

pub use bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, Contract};
pub use config_volume::{ConfigFile, ConfigVolume, ConfigVolumeKind, EnvOrigin};
pub use context::{CallContext, ResolvedEnv};
pub use engine::{DEFAULT_POLICY_WASM, PolicyEngine, PolicyInfo, PolicySource, precompile};
pub use error::{PolicyError, Violation};
pub use precompiled::Sha256Digest;
pub use sandbox::Limits;
pub use validate::PolicyOutput;
