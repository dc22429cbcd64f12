//! The wasmtime side of leadgate's plugin contract.
//!
//! This crate keeps `bindgen!` and the wasmtime glue away from the rest of
//! the host, so that edits to the pipeline do not re-expand the bindings. It
//! offers plain Rust types to the host: [`PluginEngine`] compiles and
//! pre-instantiates components, [`AdapterPlugin`] and [`TransformPlugin`]
//! run one sandboxed call each in a fresh `Store` with an epoch deadline and
//! a memory cap, and the host imports (HTTP, HMAC, log, clock, key-value)
//! are implemented here against the capabilities a destination grants.

mod bindings;
pub mod capabilities;
mod compat;
mod engine;
mod imports;
mod limits;
pub mod mask;
pub mod outbound;
mod plugin;
pub mod types;

pub use capabilities::{
    CallSecrets, Capabilities, CapabilityError, RequestGate, Secrets, check_host_pattern,
};
pub use engine::{EngineOptions, ExternalCompiler, PluginEngine};
pub use imports::{KV_MAX_ENTRIES, KV_MAX_VALUE_BYTES, KvStore, MemoryKv};
pub use limits::CallLimits;
pub use outbound::{OutboundHttp, ReqwestOutbound};
pub use plugin::{AdapterPlugin, CallError, PluginKind, TransformPlugin};
pub use types::*;
/// The URL type of [`RequestGate`].
pub use url::Url;
/// A compiled component, as [`PluginEngine::compile`] returns it.
pub use wasmtime::component::Component;

/// The WIT package new components target; [`WitVersion::SERVED`] lists
/// every version this host serves.
pub const WIT_PACKAGE: &str = "leadgate:plugin@0.2.1";
pub use imports::{HostServices, PluginCounters, constant_time_eq, hmac_key, hmac_sha256};
