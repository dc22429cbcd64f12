//! Plugins: the registry of loaded adapter components and mappings, one
//! per configured destination, and of source transforms; swapped
//! atomically, so a call in flight finishes on the version it started with.
//!
//! [`load`](mod@load) loads and validates a plugin (the one path shared by the
//! server's start, hot reload and `leadgate plugin`); [`watch`] reloads
//! changed files. A file that fails validation is reported (log, metric,
//! `GET /v1/plugins`) and the previous version keeps serving. A removed
//! adapter pauses its destination: leads are still accepted and queued,
//! and its jobs wait until an adapter is back.
//!
//! Compiled components are cached on disk by content hash and engine
//! compatibility hash, so a restart does not recompile.

pub mod kv;
pub mod load;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use leadgate_runtime::{AdapterPlugin, PluginEngine, TransformPlugin};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::DestinationConfig;
use crate::delivery::breaker::{Breaker, BreakerConfig, BreakerStatus};
use crate::delivery::oauth::TokenSource;
use crate::delivery::ratelimit::Limiter;
use crate::metrics::DestinationGauges;
use crate::pipeline::consent::ConsentPolicy;
use crate::pipeline::ingest::{SourceTransform, TransformFailure, Transforms};
use crate::pipeline::mapping::{LeadFields, MappedRoute, Mapping, MappingError, Renderer};
use crate::pipeline::route::Route;

pub use kv::StoreKv;
pub use load::{child_compiler, compile_in_child, engine, engine_with_kv, load};
pub use watch::WatchHandle;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
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
    /// The destination's OAuth 2.0 token source, when it has an `oauth`
    /// section: the same one across reloads.
    pub oauth: Option<Arc<TokenSource>>,
    /// Where a lead needs consent before it is pushed here.
    pub consent: Option<ConsentPolicy>,
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
    /// The WIT package version that serves the component: `0.2.1` for
    /// every 0.2 component (0.2.1 only added the optional `erasure`
    /// export); `0.1.0` components are served through the conversion
    /// boundary.
    pub wit: leadgate_runtime::WitVersion,
    /// Whether the adapter can delete records at its CRM (it exports
    /// `erasure`): an erasure queues deletions for this destination.
    pub erasure: bool,
    /// How the CRM authenticates, as the adapter declares it.
    pub auth: leadgate_runtime::AuthScheme,
    pub hash: String,
    pub mapping: String,
    pub mapping_version: String,
    pub batch_size: u32,
    pub loaded_at_ms: i64,
    /// True while jobs wait for an operator: the adapter file is missing,
    /// or the OAuth grant was refused (`oauth.error` says why).
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
    pub rate_limits: Vec<crate::delivery::ratelimit::WindowStatus>,
    /// Requests to the CRM in flight now, and the CRM's cap on them.
    pub in_flight: crate::delivery::ratelimit::InFlight,
    /// The destination's circuit breaker.
    pub breaker: BreakerStatus,
    /// The destination's OAuth 2.0 token source, when it has one.
    pub oauth: Option<OAuthStatus>,
}

/// What `GET /v1/plugins` shows of a destination's OAuth token source.
#[derive(Debug, Serialize)]
pub struct OAuthStatus {
    /// The grant was refused (`invalid_grant`, a revoked token, …): no
    /// token calls and no deliveries until the configuration is fixed or
    /// `leadgate destination resume NAME`.
    pub paused: bool,
    pub error: Option<String>,
    pub token_requests: u64,
}

impl PluginStatus {
    /// What `/metrics` shows of the destination.
    pub fn gauges(&self) -> DestinationGauges {
        DestinationGauges {
            destination: self.destination.clone(),
            adapter: self.adapter.clone(),
            version: self.version.clone(),
            calls: self.calls,
            reload_failures: self.reload_failures,
            breaker_state: self.breaker.state.gauge(),
            breaker_opened: self.breaker.times_opened,
            paused: self.paused,
            oauth_token_calls: self.oauth.as_ref().map_or(0, |o| o.token_requests),
        }
    }
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
    /// One per destination with an `oauth` section, for the life of the
    /// process.
    tokens: BTreeMap<String, Arc<TokenSource>>,
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
    pub fn loaded_transform(&self, name: &str) -> Option<Arc<LoadedTransform>> {
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

    /// The destinations whose adapter can delete records at its CRM.
    pub fn erasable(&self) -> Vec<String> {
        let state = self.state.load();
        self.names()
            .into_iter()
            .filter(|name| {
                state
                    .destinations
                    .get(name)
                    .is_some_and(|d| d.adapter.can_erase())
            })
            .collect()
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
                let oauth = d.oauth.as_ref().map(|o| {
                    let refused = o.paused();
                    OAuthStatus {
                        paused: refused.is_some(),
                        error: refused.map(|e| e.to_string()),
                        token_requests: o.calls(),
                    }
                });
                PluginStatus {
                    destination: d.name.clone(),
                    adapter: d.adapter.info().name.clone(),
                    version: d.adapter.info().version.clone(),
                    wit: d.adapter.wit_version(),
                    erasure: d.adapter.can_erase(),
                    auth: d.adapter.info().auth.clone(),
                    hash: d.adapter_hash.clone(),
                    mapping: d.mapping.name.clone(),
                    mapping_version: d.mapping.version.clone(),
                    batch_size: d.batch_size,
                    loaded_at_ms: d.loaded_at_ms,
                    paused: health.paused || oauth.as_ref().is_some_and(|o| o.paused),
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
                    in_flight: d.limiter.in_flight(),
                    breaker: d.breaker.status(),
                    oauth,
                }
            })
            .collect()
    }

    /// Lets a destination whose OAuth grant was refused try again (after
    /// the authorization was renewed at the CRM): whether it was paused,
    /// or None when the destination has no OAuth source.
    pub async fn resume(&self, destination: &str) -> Option<bool> {
        let source = self.tokens.get(destination)?;
        let was = source.paused().is_some();
        source.resume().await;
        tracing::info!(
            destination,
            was_paused = was,
            "destination resumed by the operator"
        );
        Some(was)
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
                let serving = self.get(name);
                self.load_destination(name, dest, serving.as_deref()).await
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
}

impl Renderer for Registry {
    fn destinations(&self) -> Vec<String> {
        self.names()
    }

    fn render(&self, fields: &dyn LeadFields, route: Route) -> Option<MappedRoute> {
        let dest = self.get(&route.destination)?;
        let payload = dest
            .mapping
            .render(fields, &dest.adapter.info().required_properties);
        Some(MappedRoute {
            payload,
            mapping_version: dest.mapping.version.clone(),
            hold: crate::pipeline::consent::hold(dest.consent.as_ref(), fields),
            route,
        })
    }
}

#[async_trait]
impl Transforms for Registry {
    async fn transform(
        &self,
        transform: &SourceTransform,
        source: &str,
        payload: &[u8],
    ) -> Result<Vec<String>, TransformFailure> {
        let name = &transform.plugin;
        let loaded = self
            .loaded_transform(name)
            .ok_or_else(|| TransformFailure::Unavailable(name.clone()))?;
        match loaded
            .plugin
            .transform(payload, source, &transform.config)
            .await
        {
            Ok(Ok(leads)) => Ok(leads),
            Ok(Err(refusal)) => Err(TransformFailure::Refused(refusal)),
            Err(e) => {
                tracing::error!(transform = %name, error = %e, "transform call failed");
                Err(TransformFailure::Failed {
                    plugin: name.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }
}
