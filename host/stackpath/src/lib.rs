//! StackPath Workload API client for vk-stackpath.
//!
//! - [`model`]: the typed wire model (serde, JSON names as in StackPath's spec).
//! - [`Client`]: one method per call (workloads, instances, logs, locations, metrics), with
//!   OAuth2 client credentials, a deadline per attempt, bounded response bodies, retries with
//!   backoff, create-without-duplicates, a shared client-side rate limit and typed [`Error`]s
//!   that never show the request's secrets (the transport, `transport.rs`, does the sending).
//! - [`Config`]: where the API is (`SP_API_HOST` rules), extra CAs (`SP_CA_FILE`), knobs.
//!
//! The client knows nothing of Kubernetes.

mod auth;
mod client;
mod config;
mod error;
mod logs;
pub mod model;
mod observer;
mod ratelimit;
mod redact;
mod retry;
pub mod routes;
mod secret;
mod transport;

pub use client::{Client, PAGE_SIZE};
pub use config::{Config, DEFAULT_API_HOST, DEFAULT_SCOPE, parse_api_host};
pub use error::{Error, Operation, Result};
pub use logs::{LogOptions, LogStream};
pub use observer::CallObserver;
pub use ratelimit::RateLimit;
pub use retry::RetryPolicy;
pub use secret::Secret;
