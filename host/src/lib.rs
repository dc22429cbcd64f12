//! leadgate: a local CRM connector.
//!
//! The path of a lead, one module per stage (see `ARCHITECTURE.md`):
//! [`http`] takes a post and hands its body to [`pipeline::ingest`], which
//! runs the lead through [`pipeline::normalize`], [`pipeline::route`] and
//! [`pipeline::mapping`]; the [`outbox`] decides [`pipeline::dedupe`],
//! merges duplicates into their person ([`pipeline::merge`]) and commits
//! the lead and its jobs to the [`store`]; [`delivery`] workers lease the
//! jobs and hand them to a CRM adapter loaded by [`plugins`]. [`app`] wires
//! the stages together, [`config`] reads the settings, [`metrics`] counts,
//! [`allocator`] returns idle workers' freed memory, and [`cli`] is the
//! `leadgate` command.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod fuzz;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod outbox;
pub mod pipeline;
pub mod plugins;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

/// The SHA-256 of `bytes` in lowercase hex, its first `bytes_kept` bytes
/// (all 32 at most): content hashes of plugins, mappings and secrets.
pub fn sha256_hex(bytes: &[u8], bytes_kept: usize) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .take(bytes_kept)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
