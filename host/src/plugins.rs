//! Plugins: loads the adapter components and mappings the configuration
//! names, grants each destination its capabilities, and keeps the loaded set
//! in a registry that is swapped atomically.
//!
//! Hot reload: one task watches the plugin and mapping folders. Changed
//! files are debounced, then every destination that uses them is compiled
//! and validated off the hot path (the component instantiates, `describe()`
//! answers, the mapping renders a sample lead) and swapped in. Calls in
//! flight finish on the version they started with; the next call uses the
//! new one. A file that fails validation is reported (log, metric,
//! `GET /v1/plugins`) and the previous version keeps serving. A removed
//! adapter pauses its destination: leads are still accepted and queued,
//! and its jobs wait until an adapter is back.
//!
//! Compiled components are cached on disk by content hash and engine
//! compatibility hash, so a restart does not recompile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use leadgate_runtime::{
    AdapterPlugin, Capabilities, EngineOptions, HostServices, MemoryKv, PluginEngine, RequestGate,
    ReqwestOutbound, Secrets, TransformPlugin,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

use crate::breaker::{Breaker, BreakerConfig, BreakerStatus};
use crate::config::{Config, DestinationConfig, PluginsConfig, resolve_secret};
use crate::mapping::{Mapping, MappingError};
use crate::normalize::NormalizedLead;
use crate::ratelimit::Limiter;

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
    /// The destination's model of its CRM's quota, shared by all its
    /// workers and kept across reloads.
    pub limiter: Arc<Limiter>,
    /// The destination's circuit breaker, shared by all its workers and
    /// kept across reloads (a new adapter version does not make a failing
    /// CRM healthy).
    pub breaker: Arc<Breaker>,
}

impl Destination {
    /// The adapter version that runs, as the audit trail names it:
    /// `name@version#hash`.
    pub fn adapter_label(&self) -> String {
        let info = self.adapter.info();
        format!("{}@{}#{}", info.name, info.version, self.adapter_hash)
    }
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
    /// True while the adapter file is missing: jobs wait.
    pub paused: bool,
    pub reloads: u64,
    pub reload_failures: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub calls: u64,
    pub call_failures: u64,
    pub http_requests: u64,
    pub http_denied: u64,
    /// Requests the destination's rate limiter answered 429 itself.
    pub http_throttled: u64,
    /// The CRM's rate-limit windows as the limiter sees them now.
    pub rate_limits: Vec<crate::ratelimit::WindowStatus>,
    /// The destination's circuit breaker.
    pub breaker: BreakerStatus,
}

/// A loaded source transform.
pub struct LoadedTransform {
    pub name: String,
    pub plugin: TransformPlugin,
    pub hash: String,
    pub loaded_at_ms: i64,
}

/// What `GET /v1/plugins` shows of a transform.
#[derive(Debug, Serialize)]
pub struct TransformStatus {
    pub transform: String,
    pub version: String,
    pub hash: String,
    pub loaded_at_ms: i64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub last_error: Option<String>,
}

/// A reload's result, for logs, metrics and tests.
#[derive(Clone, Debug)]
pub struct ReloadEvent {
    pub destination: String,
    /// The new adapter hash when the reload succeeded.
    pub result: Result<String, String>,
}

#[derive(Clone, Default)]
struct Health {
    paused: bool,
    reloads: u64,
    reload_failures: u64,
    last_error: Option<(String, i64)>,
}

#[derive(Clone, Default)]
struct State {
    destinations: BTreeMap<String, Arc<Destination>>,
    transforms: BTreeMap<String, Arc<LoadedTransform>>,
    /// Keyed by destination name, or `transform:<name>`.
    health: BTreeMap<String, Health>,
}

/// The loaded destinations.
pub struct Registry {
    engine: PluginEngine,
    configs: BTreeMap<String, DestinationConfig>,
    transform_names: BTreeSet<String>,
    plugins_dir: PathBuf,
    mappings_dir: PathBuf,
    cache_dir: Option<PathBuf>,
    state: ArcSwap<State>,
    events: broadcast::Sender<ReloadEvent>,
    /// Serializes reloads (the watcher and explicit calls).
    reload_lock: tokio::sync::Mutex<()>,
    /// One per destination, for the life of the process.
    limiters: std::sync::Mutex<BTreeMap<String, Arc<Limiter>>>,
    /// One per destination, for the life of the process.
    breakers: std::sync::Mutex<BTreeMap<String, Arc<Breaker>>>,
    breaker_config: BreakerConfig,
}

impl Registry {
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The destination, when its adapter is there to deliver.
    pub fn active(&self, destination: &str) -> Option<Arc<Destination>> {
        let state = self.state.load();
        if state.health.get(destination).is_some_and(|h| h.paused) {
            return None;
        }
        state.destinations.get(destination).cloned()
    }

    /// The destination's last good version, paused or not (ingest maps
    /// leads for a paused destination too: its jobs wait).
    pub fn get(&self, destination: &str) -> Option<Arc<Destination>> {
        self.state.load().destinations.get(destination).cloned()
    }

    /// A source transform by plugin name.
    pub fn transform(&self, name: &str) -> Option<Arc<LoadedTransform>> {
        self.state.load().transforms.get(name).cloned()
    }

    pub fn transform_status(&self) -> Vec<TransformStatus> {
        let state = self.state.load();
        state
            .transforms
            .values()
            .map(|t| {
                let health = state
                    .health
                    .get(&format!("transform:{}", t.name))
                    .cloned()
                    .unwrap_or_default();
                TransformStatus {
                    transform: t.name.clone(),
                    version: t.plugin.info().version.clone(),
                    hash: t.hash.clone(),
                    loaded_at_ms: t.loaded_at_ms,
                    reloads: health.reloads,
                    reload_failures: health.reload_failures,
                    last_error: health.last_error.map(|(e, _)| e),
                }
            })
            .collect()
    }

    /// Every configured destination.
    pub fn names(&self) -> Vec<String> {
        self.configs.keys().cloned().collect()
    }

    /// Reload results as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<ReloadEvent> {
        self.events.subscribe()
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        let state = self.state.load();
        state
            .destinations
            .values()
            .map(|d| {
                let c = d.adapter.counters();
                let health = state.health.get(&d.name).cloned().unwrap_or_default();
                PluginStatus {
                    destination: d.name.clone(),
                    adapter: d.adapter.info().name.clone(),
                    version: d.adapter.info().version.clone(),
                    hash: d.adapter_hash.clone(),
                    mapping: d.mapping.name.clone(),
                    mapping_version: d.mapping.version.clone(),
                    batch_size: d.batch_size,
                    loaded_at_ms: d.loaded_at_ms,
                    paused: health.paused,
                    reloads: health.reloads,
                    reload_failures: health.reload_failures,
                    last_error_at_ms: health.last_error.as_ref().map(|(_, at)| *at),
                    last_error: health.last_error.map(|(e, _)| e),
                    calls: c.calls.load(Relaxed),
                    call_failures: c.call_failures.load(Relaxed),
                    http_requests: c.http_requests.load(Relaxed),
                    http_denied: c.http_denied.load(Relaxed),
                    http_throttled: c.http_throttled.load(Relaxed),
                    rate_limits: d.limiter.status(),
                    breaker: d.breaker.status(),
                }
            })
            .collect()
    }

    /// Reloads every destination that uses one of `paths` (adapter or
    /// mapping files). One bad destination never stops the others.
    pub async fn reload_paths(&self, paths: &BTreeSet<PathBuf>) {
        let _guard = self.reload_lock.lock().await;
        let names: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        self.reload_transforms(&names).await;
        for (name, dest) in &self.configs {
            let adapter_file = format!("{}.wasm", dest.adapter);
            if !names
                .iter()
                .any(|n| *n == adapter_file || *n == dest.mapping)
            {
                continue;
            }
            let adapter_path = self.plugins_dir.join(&adapter_file);
            let result = if adapter_path.exists() {
                self.load_destination(name, dest).await
            } else {
                self.set_paused(name, true);
                tracing::warn!(destination = %name, path = %adapter_path.display(), "adapter removed: destination paused, its jobs wait");
                let _ = self.events.send(ReloadEvent {
                    destination: name.clone(),
                    result: Err("adapter file removed: destination paused".into()),
                });
                continue;
            };
            match result {
                Ok(loaded) => {
                    let hash = loaded.adapter_hash.clone();
                    tracing::info!(destination = %name, version = %loaded.adapter.info().version, hash = %hash, "destination reloaded");
                    let loaded = Arc::new(loaded);
                    self.update(|state| {
                        state.destinations.insert(name.clone(), loaded.clone());
                        let h = state.health.entry(name.clone()).or_default();
                        h.paused = false;
                        h.reloads += 1;
                    });
                    let _ = self.events.send(ReloadEvent {
                        destination: name.clone(),
                        result: Ok(hash),
                    });
                }
                Err(e) => {
                    let message = e.to_string();
                    tracing::error!(destination = %name, error = %message, "reload refused; the previous version keeps serving");
                    self.update(|state| {
                        let h = state.health.entry(name.clone()).or_default();
                        h.reload_failures += 1;
                        h.last_error = Some((message.clone(), crate::now_ms()));
                    });
                    let _ = self.events.send(ReloadEvent {
                        destination: name.clone(),
                        result: Err(message),
                    });
                }
            }
        }
    }

    async fn reload_transforms(&self, names: &[String]) {
        for transform in &self.transform_names {
            if !names.iter().any(|n| *n == format!("{transform}.wasm")) {
                continue;
            }
            let key = format!("transform:{transform}");
            if !self.plugins_dir.join(format!("{transform}.wasm")).exists() {
                // The last good version keeps transforming: a source is
                // never left unable to accept leads by a removed file.
                tracing::warn!(transform = %transform, "transform file removed; the loaded version keeps serving");
                continue;
            }
            match self.load_transform(transform).await {
                Ok(loaded) => {
                    let hash = loaded.hash.clone();
                    let loaded = Arc::new(loaded);
                    self.update(|state| {
                        state.transforms.insert(transform.clone(), loaded.clone());
                        state.health.entry(key.clone()).or_default().reloads += 1;
                    });
                    tracing::info!(transform = %transform, hash = %hash, "transform reloaded");
                    let _ = self.events.send(ReloadEvent {
                        destination: key.clone(),
                        result: Ok(hash),
                    });
                }
                Err(message) => {
                    tracing::error!(transform = %transform, error = %message, "transform reload refused; the previous version keeps serving");
                    self.update(|state| {
                        let h = state.health.entry(key.clone()).or_default();
                        h.reload_failures += 1;
                        h.last_error = Some((message.clone(), crate::now_ms()));
                    });
                    let _ = self.events.send(ReloadEvent {
                        destination: key.clone(),
                        result: Err(message),
                    });
                }
            }
        }
    }

    async fn load_transform(&self, name: &str) -> Result<LoadedTransform, String> {
        let path = self.plugins_dir.join(format!("{name}.wasm"));
        let wasm = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("transform {name}: {}: {e}", path.display()))?;
        let hash: String = Sha256::digest(&wasm)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let engine = self.engine.clone();
        let cache = self.cache_dir.clone();
        let component =
            tokio::task::spawn_blocking(move || engine.compile_cached(&wasm, cache.as_deref()))
                .await
                .expect("compile task")
                .map_err(|e| format!("transform {name} does not compile: {e:#}"))?;
        let plugin = TransformPlugin::load(&self.engine, name, &component)
            .await
            .map_err(|e| format!("transform {name}: {e}"))?;
        Ok(LoadedTransform {
            name: name.to_string(),
            plugin,
            hash,
            loaded_at_ms: crate::now_ms(),
        })
    }

    /// The destination's limiter, set to the limits its adapter declares.
    fn limiter(&self, destination: &str, limits: &[leadgate_runtime::RateLimit]) -> Arc<Limiter> {
        let mut all = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(destination) {
            Some(l) => {
                l.set_limits(limits);
                l.clone()
            }
            None => {
                // A call may wait for room up to a third of its deadline;
                // longer, and the worker pauses the destination instead.
                let max_wait = (self.engine.limits().deadline / 3).min(Duration::from_secs(10));
                let l = Arc::new(Limiter::new(limits, max_wait));
                all.insert(destination.to_string(), l.clone());
                l
            }
        }
    }

    /// The destination's breaker: the same one across reloads.
    fn breaker(&self, destination: &str) -> Arc<Breaker> {
        let mut all = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(destination.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(self.breaker_config)))
            .clone()
    }

    fn set_paused(&self, name: &str, paused: bool) {
        self.update(|state| state.health.entry(name.to_string()).or_default().paused = paused);
    }

    fn update(&self, f: impl Fn(&mut State)) {
        self.state.rcu(|current| {
            let mut next = State::clone(current);
            f(&mut next);
            next
        });
    }

    async fn load_destination(
        &self,
        name: &str,
        dest: &DestinationConfig,
    ) -> Result<Destination, PluginError> {
        let path = self.plugins_dir.join(format!("{}.wasm", dest.adapter));
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
        let component = {
            let engine = self.engine.clone();
            let cache = self.cache_dir.clone();
            tokio::task::spawn_blocking(move || engine.compile_cached(&wasm, cache.as_deref()))
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
        let probe = AdapterPlugin::load(
            &self.engine,
            &dest.adapter,
            &component,
            Capabilities::none(),
        )
        .await
        .map_err(|e| load_err(e.to_string()))?;
        let info = probe.info().clone();
        if info.name.is_empty() || info.version.is_empty() {
            return Err(load_err("describe() gave no name or version".into()));
        }
        let hosts = dest
            .allowed_hosts
            .clone()
            .unwrap_or_else(|| info.default_hosts.clone());
        for needed in &info.secrets {
            if secrets.get(needed).is_none() {
                tracing::warn!(destination = %name, secret = %needed, "adapter declares a secret the destination does not grant");
            }
        }
        let mut limits = info.rate_limits.clone();
        for (window, o) in &dest.rate_limits {
            limits.retain(|l| &l.name != window);
            limits.push(leadgate_runtime::RateLimit {
                name: window.clone(),
                max_requests: o.max_requests,
                window_ms: o.window_ms,
            });
        }
        let limiter = self.limiter(name, &limits);
        let adapter = probe.with_capabilities(
            Capabilities::new(&hosts, secrets).with_gate(limiter.clone() as Arc<dyn RequestGate>),
        );
        let mapping = Mapping::load(&self.mappings_dir.join(&dest.mapping)).map_err(|source| {
            PluginError::Mapping {
                destination: name.into(),
                source,
            }
        })?;
        // The mapping must render a sample lead with the adapter's required
        // properties before it may serve.
        mapping
            .render(&sample_lead(), &info.required_properties)
            .map_err(|source| PluginError::Mapping {
                destination: name.into(),
                source,
            })?;
        let batch_size = dest
            .batch_size
            .unwrap_or(info.max_batch_size)
            .min(info.max_batch_size)
            .max(1);
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
            limiter,
            breaker: self.breaker(name),
        })
    }

    /// Watches the plugin and mapping folders until the returned handle is
    /// dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<WatchHandle> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res
                    && !matches!(event.kind, notify::EventKind::Access(_))
                {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })?;
        for dir in [&self.plugins_dir, &self.mappings_dir] {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| anyhow::anyhow!("watching {}: {e}", dir.display()))?;
        }
        let registry = Arc::clone(self);
        let task = tokio::spawn(async move {
            // Debounce: act once the folder has been quiet for a moment, so
            // a file written in several steps is read whole.
            const QUIET: Duration = Duration::from_millis(200);
            while let Some(first) = rx.recv().await {
                let mut changed = BTreeSet::from([first]);
                loop {
                    match tokio::time::timeout(QUIET, rx.recv()).await {
                        Ok(Some(path)) => {
                            changed.insert(path);
                        }
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                changed.retain(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                });
                if !changed.is_empty() {
                    registry.reload_paths(&changed).await;
                }
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the folder watcher alive.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lead with every common field, to check that a mapping renders.
fn sample_lead() -> NormalizedLead {
    NormalizedLead {
        email: Some("sample.lead@example.com".into()),
        phone: Some("+14155550100".into()),
        first_name: Some("Sample".into()),
        last_name: Some("Lead".into()),
        full_name: Some("Sample Lead".into()),
        company: Some("Example Inc".into()),
        title: Some("Buyer".into()),
        website: Some("https://example.com".into()),
        city: Some("San Francisco".into()),
        country: Some("US".into()),
        ..Default::default()
    }
}

/// The plugin engine with the limits and host services `plugins` sets.
pub fn engine(p: &PluginsConfig) -> anyhow::Result<PluginEngine> {
    PluginEngine::new(
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
    )
}

/// Builds the engine and loads every configured destination. One bad
/// destination is an error naming it: the host refuses to start half-set-up.
pub async fn load(config: &Config) -> Result<Registry, anyhow::Error> {
    let engine = engine(&config.plugins)?;
    let registry = Registry {
        engine,
        configs: config.destinations.clone(),
        transform_names: config
            .sources
            .values()
            .filter_map(|s| s.transform.clone())
            .collect(),
        plugins_dir: config.plugins_dir(),
        mappings_dir: config.mappings_dir(),
        cache_dir: config.plugin_cache_dir(),
        state: ArcSwap::from_pointee(State::default()),
        events: broadcast::channel(64).0,
        reload_lock: tokio::sync::Mutex::new(()),
        limiters: std::sync::Mutex::default(),
        breakers: std::sync::Mutex::default(),
        breaker_config: BreakerConfig::from_delivery(&config.delivery),
    };
    let mut state = State::default();
    for (name, dest) in &registry.configs {
        let loaded = registry.load_destination(name, dest).await?;
        tracing::info!(
            destination = %name,
            adapter = %loaded.adapter.info().name,
            version = %loaded.adapter.info().version,
            hash = %loaded.adapter_hash,
            "destination loaded"
        );
        state.destinations.insert(name.clone(), Arc::new(loaded));
    }
    for name in &registry.transform_names {
        let loaded = registry
            .load_transform(name)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(transform = %name, version = %loaded.plugin.info().version, hash = %loaded.hash, "transform loaded");
        state.transforms.insert(name.clone(), Arc::new(loaded));
    }
    registry.state.store(Arc::new(state));
    Ok(registry)
}
