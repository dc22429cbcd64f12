//! Wiring: opens the store, loads the plugins, starts the outbox writer,
//! the delivery workers and the HTTP server, and stops them in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, oneshot};

use crate::config::{Config, resolve_secret};
use crate::delivery::Workers;
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::outbox::{Merging, Outbox};
use crate::pipeline::backlog::Backlog;
use crate::pipeline::ingest::{Ingest, Source, SourceTransform};
use crate::plugins::{self, Registry};
use crate::store::{self, Store, StoreCounts};

/// A running host.
pub struct RunningHost {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_server: oneshot::Sender<()>,
    outbox_task: tokio::task::JoinHandle<()>,
    workers: Workers,
    backlog_refresh: tokio::task::JoinHandle<()>,
    _watcher: Option<plugins::WatchHandle>,
}

/// Starts everything the configuration describes.
pub async fn start(config: Config) -> anyhow::Result<RunningHost> {
    let store = store::open(&config.store.url, config.store.durability)
        .await
        .with_context(|| format!("opening the store at {}", config.store.url))?;
    let index = crate::outbox::load_index(&*store, &config.dedupe).await?;
    tracing::info!(
        leads = index.len(),
        fingerprints = index.fingerprint_count(),
        "dedupe index loaded"
    );
    let registry = Arc::new(
        plugins::load(&config, store.clone())
            .await
            .context("loading plugins")?,
    );
    let watcher = watch_plugins(&config, &registry)?;
    let metrics = Arc::new(Metrics::default());
    let work = Arc::new(Notify::new());
    let merging = Merging {
        config: config.merge.clone(),
        renderer: registry.clone(),
    };
    let (outbox, outbox_task) = Outbox::start(
        store.clone(),
        index,
        config.store.group_commit_max,
        merging,
        work.clone(),
    );
    let workers = Workers::start(
        &config.delivery,
        store.clone(),
        registry.clone(),
        work,
        metrics.clone(),
    );
    let backlog = start_backlog(&config, &store).await?;
    let state = Arc::new(AppState {
        sources: sources(&config)?,
        ingest: Ingest {
            outbox,
            renderer: registry.clone(),
            transforms: registry.clone(),
            backlog: backlog.clone(),
            metrics: metrics.clone(),
            max_leads_per_payload: config.server.max_leads_per_request,
        },
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
    });
    let backlog_refresh = backlog.spawn_refresh(store.clone());
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (stop_server, stopped) = oneshot::channel::<()>();
    let app = router(state, config.server.max_body_bytes);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "leadgate listening");
    Ok(RunningHost {
        addr,
        store,
        registry,
        metrics,
        server,
        stop_server,
        outbox_task,
        workers,
        backlog_refresh,
        _watcher: watcher,
    })
}

/// Watches the plugin folders when hot reload is on and a plugin is used.
fn watch_plugins(
    config: &Config,
    registry: &Arc<Registry>,
) -> anyhow::Result<Option<plugins::WatchHandle>> {
    let uses_plugins =
        !config.destinations.is_empty() || config.sources.values().any(|s| s.transform.is_some());
    if !(config.plugins.hot_reload && uses_plugins) {
        return Ok(None);
    }
    Ok(Some(
        registry.watch().context("watching the plugin folders")?,
    ))
}

/// The configured sources by API key.
fn sources(config: &Config) -> anyhow::Result<HashMap<String, Arc<Source>>> {
    let mut sources = HashMap::new();
    for (name, s) in &config.sources {
        let key = resolve_secret(&s.api_key)
            .map_err(|e| anyhow::anyhow!("sources.{name}.api_key: {e}"))?;
        let source = Source {
            name: name.clone(),
            options: s
                .normalize_options()
                .map_err(|e| anyhow::anyhow!("sources.{name}.default_region: {e}"))?,
            priority: s.priority,
            transform: s.transform.clone().map(|plugin| SourceTransform {
                plugin,
                config: s
                    .transform_config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
        };
        sources.insert(key, Arc::new(source));
    }
    Ok(sources)
}

/// The backlog counts, read from the store before the server starts:
/// backpressure starts from the store's count, so a restart with a full
/// outbox refuses work at once.
async fn start_backlog(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<Arc<Backlog>> {
    let backlog = Arc::new(Backlog::new(
        config.delivery.max_backlog,
        config
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.max_backlog))
            .collect(),
    ));
    backlog
        .refresh(&**store)
        .await
        .context("counting the outbox backlog")?;
    Ok(backlog)
}

impl RunningHost {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until no job is pending or leased, or `timeout` passes.
    /// Returns the last counts seen.
    pub async fn wait_until_drained(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(bool, StoreCounts)> {
        let started = Instant::now();
        loop {
            let outstanding = self.store.outstanding_jobs().await?;
            if outstanding == 0 || started.elapsed() > timeout {
                return Ok((outstanding == 0, self.store.counts().await?));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops leasing and taking requests, commits what was accepted, lets
    /// in-flight deliveries finish within `delivery.shutdown_grace_ms`
    /// (then gives their jobs back to the queue), and returns.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        // No new batch starts; the grace period runs from here.
        self.workers.stop_leasing();
        let _ = self.stop_server.send(());
        self.server.await??;
        // The server's state held the last outbox sender: the writer drains
        // its queue and ends.
        self.outbox_task.await?;
        self.backlog_refresh.abort();
        self.workers.shutdown().await;
        Ok(())
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}
