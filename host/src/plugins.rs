//! Plugins: loads the adapter components and mappings the configuration
//! names, grants each destination its capabilities, and keeps the loaded
//! set in a registry that can be swapped atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use leadgate_runtime::{
    AdapterPlugin, Capabilities, EngineOptions, HostServices, MemoryKv, PluginEngine,
    ReqwestOutbound, Secrets,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, DestinationConfig, resolve_secret};
use crate::mapping::{Mapping, MappingError};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("destination {destination}: adapter file {path}: {reason}")]
    Read {
        destination: String,
        path: PathBuf,
        reason: String,
    },
    #[error("destination {destination}: adapter {adapter} does not compile: {reason}")]
    Compile {
        destination: String,
        adapter: String,
        reason: String,
    },
    #[error("destination {destination}: adapter {adapter}: {reason}")]
    Load {
        destination: String,
        adapter: String,
        reason: String,
    },
    #[error("destination {destination}: {source}")]
    Mapping {
        destination: String,
        source: MappingError,
    },
    #[error("destination {destination}: secret {secret}: {reason}")]
    Secret {
        destination: String,
        secret: String,
        reason: String,
    },
}

/// One destination, ready to deliver.
pub struct Destination {
    pub name: String,
    pub adapter: AdapterPlugin,
    pub adapter_hash: String,
    pub mapping: Arc<Mapping>,
    pub batch_size: u32,
    pub config: Vec<(String, String)>,
    pub loaded_at_ms: i64,
}

/// What `GET /v1/plugins` shows of a destination's adapter.
#[derive(Debug, Serialize)]
pub struct PluginStatus {
    pub destination: String,
    pub adapter: String,
    pub version: String,
    pub hash: String,
    pub mapping: String,
    pub mapping_version: String,
    pub batch_size: u32,
    pub loaded_at_ms: i64,
    pub calls: u64,
    pub call_failures: u64,
    pub http_requests: u64,
    pub http_denied: u64,
}

/// The loaded destinations, swapped whole.
pub struct Registry {
    engine: PluginEngine,
    destinations: ArcSwap<BTreeMap<String, Arc<Destination>>>,
}

impl Registry {
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    pub fn get(&self, destination: &str) -> Option<Arc<Destination>> {
        self.destinations.load().get(destination).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.destinations.load().keys().cloned().collect()
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        self.destinations
            .load()
            .values()
            .map(|d| {
                let c = d.adapter.counters();
                PluginStatus {
                    destination: d.name.clone(),
                    adapter: d.adapter.info().name.clone(),
                    version: d.adapter.info().version.clone(),
                    hash: d.adapter_hash.clone(),
                    mapping: d.mapping.name.clone(),
                    mapping_version: d.mapping.version.clone(),
                    batch_size: d.batch_size,
                    loaded_at_ms: d.loaded_at_ms,
                    calls: c.calls.load(Relaxed),
                    call_failures: c.call_failures.load(Relaxed),
                    http_requests: c.http_requests.load(Relaxed),
                    http_denied: c.http_denied.load(Relaxed),
                }
            })
            .collect()
    }
}

/// Builds the engine and loads every configured destination. One bad
/// destination is an error naming it: the host refuses to start half-set-up.
pub async fn load(config: &Config) -> Result<Registry, anyhow::Error> {
    let p = &config.plugins;
    let engine = PluginEngine::new(
        EngineOptions {
            limits: leadgate_runtime::CallLimits {
                deadline: Duration::from_millis(p.call_timeout_ms),
                max_memory_bytes: p.max_memory_mb << 20,
                max_output_bytes: p.max_output_mb << 20,
            },
            ..EngineOptions::default()
        },
        HostServices {
            outbound: Arc::new(ReqwestOutbound::new()?),
            kv: Arc::new(MemoryKv::default()),
            max_http_timeout: Duration::from_millis(p.http_timeout_ms),
            max_response_bytes: p.max_response_mb << 20,
        },
    )?;
    let plugins_dir = config.plugins_dir();
    let mappings_dir = config.mappings_dir();
    let mut destinations = BTreeMap::new();
    for (name, dest) in &config.destinations {
        let loaded = load_destination(&engine, name, dest, &plugins_dir, &mappings_dir).await?;
        tracing::info!(
            destination = %name,
            adapter = %loaded.adapter.info().name,
            version = %loaded.adapter.info().version,
            hash = %loaded.adapter_hash,
            "destination loaded"
        );
        destinations.insert(name.clone(), Arc::new(loaded));
    }
    Ok(Registry {
        engine,
        destinations: ArcSwap::from_pointee(destinations),
    })
}

async fn load_destination(
    engine: &PluginEngine,
    name: &str,
    dest: &DestinationConfig,
    plugins_dir: &Path,
    mappings_dir: &Path,
) -> Result<Destination, PluginError> {
    let path = plugins_dir.join(format!("{}.wasm", dest.adapter));
    let wasm = tokio::fs::read(&path)
        .await
        .map_err(|e| PluginError::Read {
            destination: name.into(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
    let hash: String = Sha256::digest(&wasm)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let started = Instant::now();
    let component = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.compile(&wasm))
            .await
            .expect("compile task")
            .map_err(|e| PluginError::Compile {
                destination: name.into(),
                adapter: dest.adapter.clone(),
                reason: format!("{e:#}"),
            })?
    };
    let load_err = |reason: String| PluginError::Load {
        destination: name.into(),
        adapter: dest.adapter.clone(),
        reason,
    };
    let mut secrets = Secrets::new();
    for (secret, value) in &dest.secrets {
        let value = resolve_secret(value).map_err(|reason| PluginError::Secret {
            destination: name.into(),
            secret: secret.clone(),
            reason,
        })?;
        secrets.insert(secret.clone(), value);
    }
    // Describe first with no capabilities, then grant the hosts the
    // destination allows (default: the ones the adapter declares).
    let probe = AdapterPlugin::load(engine, &dest.adapter, &component, Capabilities::none())
        .await
        .map_err(|e| load_err(e.to_string()))?;
    let info = probe.info().clone();
    let hosts = dest
        .allowed_hosts
        .clone()
        .unwrap_or_else(|| info.default_hosts.clone());
    for needed in &info.secrets {
        if secrets.get(needed).is_none() {
            tracing::warn!(destination = %name, secret = %needed, "adapter declares a secret the destination does not grant");
        }
    }
    let adapter = probe.with_capabilities(Capabilities::new(&hosts, secrets));
    let mapping = Mapping::load(&mappings_dir.join(&dest.mapping)).map_err(|source| {
        PluginError::Mapping {
            destination: name.into(),
            source,
        }
    })?;
    let batch_size = dest
        .batch_size
        .unwrap_or(info.max_batch_size)
        .min(info.max_batch_size)
        .max(1);
    tracing::debug!(destination = %name, ms = started.elapsed().as_millis() as u64, "compiled");
    Ok(Destination {
        name: name.into(),
        adapter,
        adapter_hash: hash,
        mapping: Arc::new(mapping),
        batch_size,
        config: dest
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        loaded_at_ms: crate::now_ms(),
    })
}
