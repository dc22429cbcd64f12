//! The stages a lead passes before it is stored: [`ingest`] (payloads to
//! leads, with [`backlog`] backpressure) → [`normalize`] → [`route`] →
//! [`mapping`]; the outbox then decides [`dedupe`] and [`merge`]s
//! duplicates into their person. [`field`] is the one list of lead
//! fields they all read. Nothing here knows about HTTP or about
//! the store's tables: each stage takes and returns plain types.

pub mod backlog;
pub mod consent;
pub mod dedupe;
pub mod field;
pub mod ingest;
pub mod mapping;
pub mod merge;
pub mod normalize;
pub mod quota;
pub mod route;
