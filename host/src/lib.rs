//! leadgate: a local CRM connector.
//!
//! The path of a lead, one module per stage: [`ingest`] → [`normalize`] →
//! [`dedupe`] (with [`merge`] of duplicates into their person) → [`route`]
//! → [`mapping`] → [`outbox`] (durable, in the
//! [`store`]) → [`delivery`] → a CRM adapter loaded by [`plugins`]; and back
//! through [`webhooks`]. [`app`] wires the stages together, [`api`] serves
//! them over HTTP, [`config`] reads the settings, [`metrics`] counts.

pub mod api;
pub mod app;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod dedupe;
pub mod dedupe_cli;
pub mod delivery;
pub mod demo;
pub mod dlq;
pub mod dlq_cli;
pub mod ingest;
pub mod mapping;
pub mod merge;
pub mod metrics;
pub mod normalize;
pub mod normalize_cli;
pub mod outbox;
pub mod plugin_cli;
pub mod plugins;
pub mod ratelimit;
pub mod route;
pub mod scaffold;
pub mod store;
pub mod webhooks;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
