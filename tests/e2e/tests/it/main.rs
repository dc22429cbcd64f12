//! The end-to-end tests, one binary (one link of the host, wasmtime and
//! the simulator instead of one per file). `cargo test -p leadgate-e2e
//! --test it dlq` runs one module.

mod access;
mod contract;
mod crm_webhooks;
mod dlq;
mod dynamics;
mod hot_reload;
mod merge;
mod polyglot;
mod readback;
mod reliability;
mod salesforce;
mod sandbox;
mod skeleton;
mod split;
mod transforms;
mod vendor_clients;
mod wit_compat;
mod zoho;
