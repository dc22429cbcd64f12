//! The host's integration tests, one binary (one link of wasmtime and
//! SQLite instead of one per file). `cargo test -p leadgate --test it
//! chaos` runs one module.

mod admin_token;
mod chaos;
mod cluster;
mod config_layers;
mod consent;
mod dedupe_fake1000;
mod dedupe_model;
mod dedupe_restart;
mod demo_cli;
mod erasure;
mod file_modes;
mod fuzz_corpus;
mod keys;
mod log_privacy;
mod nats;
mod oauth;
mod partition;
mod plugin_cache;
mod scaffold;
mod sigterm;
mod support;
