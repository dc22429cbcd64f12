//! Wiring: opens the store, loads the plugins, starts the outbox writer,
//! the delivery workers and the HTTP server, and stops them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;

use crate::config::{Config, Scope, resolve_secret};
use crate::delivery::Workers;
use crate::http::auth::Credentials;
use crate::http::serve::{ServeOptions, serve, tls_config};
use crate::http::{AppState, metrics_router, router};
use crate::metrics::Metrics;
use crate::outbox::{IndexState, Merging, Outbox, StartIndex};
use crate::pipeline::backlog::Backlog;
use crate::pipeline::ingest::{Ingest, Source, SourceTransform};
use crate::plugins::{self, Registry};
use crate::store::rotation::Rotation;
use crate::store::seal::{Crypt, KeySource, Keyring};
use crate::store::{self, Store, StoreCounts};

/// A running host.
pub struct RunningHost {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// The store's keys and re-sealing passes.
    pub rotation: Arc<Rotation>,
    /// Where `/metrics` is served without a token (`server.metrics_listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// The generated admin token's file, when no token is configured.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// HTTPS on `addr`.
    pub tls: bool,
    /// The dedupe index's rebuild at start-up.
    index_states: tokio::sync::watch::Receiver<IndexState>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    stop_server: tokio::sync::watch::Sender<bool>,
    outbox_task: tokio::task::JoinHandle<()>,
    workers: Workers,
    backlog_refresh: tokio::task::JoinHandle<()>,
    retention: Option<tokio::task::JoinHandle<()>>,
    /// The NATS sources' consumers (they stop with the server).
    nats: Vec<tokio::task::JoinHandle<()>>,
    _watcher: Option<plugins::WatchHandle>,
}

/// Starts everything the configuration describes.
pub async fn start(config: Config) -> anyhow::Result<RunningHost> {
    let store = store::open(&config.store.url, config.store.durability, crypt(&config)?)
        .await
        .with_context(|| format!("opening the store at {}", config.store.url))?;
    let rotation = Rotation::start(store.clone()).await?;
    // The writer rebuilds the dedupe index from the store while the host
    // already listens and delivers (on a store several hosts share, under
    // its first dedupe turn: nothing is written while it reads).
    let index = StartIndex::FromStore {
        config: Box::new(config.dedupe.clone()),
        model: config.dedupe_model()?,
    };
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
    let index_states = outbox.index_states();
    let backlog = start_backlog(&config, &store).await?;
    let (credentials, admin_token_file) = credentials(&config)?;
    let ingest = Arc::new(Ingest {
        outbox,
        renderer: registry.clone(),
        transforms: registry.clone(),
        backlog: backlog.clone(),
        metrics: metrics.clone(),
        max_leads_per_payload: config.server.max_leads_per_request,
    });
    let (stop_server, stopped) = tokio::sync::watch::channel(false);
    // The same sources as HTTP's (one rate quota per source).
    let nats: Vec<_> = credentials
        .sources()
        .filter_map(|source| {
            let nats = config.sources[&source.name].nats.clone()?;
            let consumer = crate::nats::Consumer {
                ingest: ingest.clone(),
                store: store.clone(),
                source: source.clone(),
                config: nats,
                max_leads: config.server.max_leads_per_request,
            };
            Some(tokio::spawn(Arc::new(consumer).run(stopped.clone())))
        })
        .collect();
    let state = Arc::new(AppState {
        credentials,
        max_body_bytes: config.server.max_body_bytes,
        ingest,
        store: store.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        rotation: rotation.clone(),
    });
    let backlog_refresh = backlog.spawn_refresh(store.clone());
    let retention = store::retention::spawn(
        store.clone(),
        config
            .sources
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.retention?)))
            .collect(),
    );
    let options = serve_options(&config)?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let mut servers = Vec::new();
    let mut metrics_addr = None;
    if let Some(listen) = config.server.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding server.metrics_listen {listen}"))?;
        metrics_addr = Some(listener.local_addr()?);
        let options = ServeOptions {
            tls: None,
            ..options.clone()
        };
        servers.push(tokio::spawn(serve(
            listener,
            metrics_router(state.clone()),
            options,
            until_stopped(stopped.clone()),
        )));
        tracing::info!(addr = %metrics_addr.unwrap(), "metrics listening (no token asked)");
    }
    let tls = options.tls.is_some();
    servers.push(tokio::spawn(serve(
        listener,
        router(
            state,
            Duration::from_millis(config.server.request_timeout_ms),
        ),
        options,
        until_stopped(stopped),
    )));
    tracing::info!(%addr, tls, "leadgate listening");
    Ok(RunningHost {
        addr,
        store,
        registry,
        metrics,
        rotation,
        metrics_addr,
        admin_token_file,
        tls,
        index_states,
        servers,
        stop_server,
        outbox_task,
        workers,
        backlog_refresh,
        retention,
        nats,
        _watcher: watcher,
    })
}

/// How the store seals personal data: the configured keys, or the key
/// file (generated on first start); nothing when encryption is off.
pub fn crypt(config: &Config) -> anyhow::Result<Crypt> {
    let encryption = &config.store.encryption;
    if !encryption.enabled {
        tracing::warn!(
            "store.encryption.enabled is false: personal data is written to the store in plain text"
        );
        return Ok(Crypt::off());
    }
    let (keyring, fresh) = Keyring::load(encryption, config.key_file(), resolve_secret)?;
    match keyring.source() {
        KeySource::File(path) if fresh => tracing::info!(
            path = %path.display(),
            "generated the store's data and index keys into this file (mode 0600): back it up, the store cannot be read without it"
        ),
        KeySource::File(path) => {
            tracing::info!(path = %path.display(), current = %keyring.current(), "store encryption keys")
        }
        KeySource::Config => tracing::info!(
            current = %keyring.current(),
            "store encryption keys from the configuration"
        ),
    }
    Ok(Crypt::new(Arc::new(keyring)))
}

/// Resolves once the host is told to stop.
async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

fn serve_options(config: &Config) -> anyhow::Result<ServeOptions> {
    let server = &config.server;
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    Ok(ServeOptions {
        max_connections: server.max_connections,
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
        tls,
    })
}

/// Every credential: the sources' API keys and the admin tokens; with no
/// admin token configured, the generated one (and the file it is in).
fn credentials(config: &Config) -> anyhow::Result<(Credentials, Option<std::path::PathBuf>)> {
    let mut credentials = Credentials::default();
    for (name, source) in sources(config)? {
        let key = match config.sources[&name].api_key.as_str() {
            "" => None,
            key => Some(
                resolve_secret(key).map_err(|e| anyhow::anyhow!("sources.{name}.api_key: {e}"))?,
            ),
        };
        credentials.add_source(key.as_deref(), source);
    }
    for (name, token) in &config.auth.tokens {
        let value = resolve_secret(&token.token)
            .map_err(|e| anyhow::anyhow!("auth.tokens.{name}.token: {e}"))?;
        credentials.add_admin(name, &value, token.scopes.clone());
    }
    if credentials.admin_count() > 0 {
        return Ok((credentials, None));
    }
    let path = config
        .admin_token_file()
        .context("auth.token_file: no admin token is configured and no file for one")?;
    let (token, fresh) = crate::http::auth::generated_token(&path)
        .with_context(|| format!("the generated admin token at {}", path.display()))?;
    if fresh {
        tracing::info!(path = %path.display(), "no admin token is configured: generated one with every scope into this file (mode 0600); the CLI reads it there");
    } else {
        tracing::info!(path = %path.display(), "no admin token is configured: using the generated one in this file");
    }
    credentials.add_admin("generated", &token, Scope::ALL.to_vec());
    Ok((credentials, Some(path)))
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

/// The configured sources by name.
fn sources(config: &Config) -> anyhow::Result<Vec<(String, Arc<Source>)>> {
    let mut sources = Vec::new();
    for (name, s) in &config.sources {
        let source = Source {
            name: name.clone(),
            options: s
                .normalize_options()
                .map_err(|e| anyhow::anyhow!("sources.{name}.default_region: {e}"))?,
            priority: s.priority,
            quota: s
                .rate_limit
                .and_then(crate::pipeline::quota::SourceQuota::new),
            transform: s.transform.clone().map(|plugin| SourceTransform {
                plugin,
                config: s
                    .transform_config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }),
        };
        sources.push((name.clone(), Arc::new(source)));
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

/// The error of a host whose dedupe index could not be rebuilt.
fn rebuild_failed(e: &str) -> anyhow::Error {
    anyhow::anyhow!("rebuilding the dedupe index from the store failed: {e}")
}

impl RunningHost {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Waits until the dedupe index is rebuilt from the store (`start`
    /// returns while it loads; leads posted meanwhile wait for it), or
    /// fails with the store's error if the rebuild failed.
    pub async fn index_ready(&self) -> anyhow::Result<()> {
        let mut states = self.index_states.clone();
        let state = states
            .wait_for(|s| *s != IndexState::Loading)
            .await
            .map(|s| s.clone())
            .map_err(|_| anyhow::anyhow!("the outbox is shut down"))?;
        match state {
            IndexState::Failed(e) => Err(rebuild_failed(&e)),
            _ => Ok(()),
        }
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
        let _ = self.stop_server.send(true);
        for server in self.servers {
            server.await?;
        }
        for consumer in self.nats {
            consumer.await?;
        }
        // The server's state held the last outbox sender: the writer drains
        // its queue and ends.
        self.outbox_task.await?;
        self.backlog_refresh.abort();
        if let Some(retention) = &self.retention {
            retention.abort();
        }
        self.workers.shutdown().await;
        Ok(())
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully. A host
    /// whose dedupe index could not be rebuilt from the store cannot take
    /// a lead: it shuts down and returns the error.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut states = self.index_states.clone();
        let failed = async move {
            loop {
                if let IndexState::Failed(e) = &*states.borrow_and_update() {
                    return e.clone();
                }
                if states.changed().await.is_err() {
                    // The writer ended (a shutdown): nothing more to watch.
                    return std::future::pending().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            e = failed => {
                self.shutdown().await?;
                return Err(rebuild_failed(&e));
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await
    }
}
