//! The default vk-stackpath placement policy: `../shared/MAPPING.md` as code.
//!
//! Built for `wasm32-wasip2` it is a component implementing the `stackpath:policy` world
//! (see `wit/policy.wit`) and is embedded in the daemon. Built natively it is an ordinary
//! library, used as the benchmark baseline and in property tests.
//!
//! It is also a library for custom Rust policies that start from the default mapping: depend
//! on it with `default-features = false` (no `component` feature: no exports, no global
//! allocator), call [`translate`] and adjust its [`api::Translation`]
//! (`examples/policies/rust-strict` does this; `docs/policies.md` walks through it).

pub mod api;
pub mod input;
pub mod mapping;
pub mod output;
pub mod quantity;
pub mod sizing;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod bump;
#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump::new();

pub use mapping::translate;

pub const NAME: &str = "default";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const DESCRIPTION: &str = "The mapping of MAPPING.md: one StackPath container per Kubernetes \
    container, the smallest SP size that fits, probes, hooks, security contexts, CSI volumes.";
