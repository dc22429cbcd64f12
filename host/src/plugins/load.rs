//! Loading a plugin: read the file, compile it (cached by content hash),
//! instantiate it, ask it to describe itself and check what it says, grant
//! the destination its capabilities, and check that the destination's
//! mapping renders. The server's start, every hot reload and the `leadgate
//! plugin` command load through the same functions here.
//!
//! An adapter is refused (and, at a reload, the previous version keeps
//! serving) when the file is not a `crm-adapter` component of a WIT version
//! this host serves (it does not instantiate), when `describe()` gives no
//! name or version, when it declares another adapter than the destination
//! expects (`expect_adapter`, or at a reload the name of the version
//! serving: a webhook adapter copied over `hubspot.wasm` must not turn the
//! HubSpot destination into a webhook sender), or when the destination's
//! mapping no longer renders with the adapter's required properties.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use leadgate_runtime::{
    AdapterInfo, AdapterPlugin, AuthScheme, Capabilities, Component, EngineOptions,
    ExternalCompiler, HostServices, KvStore, MemoryKv, PluginEngine, RequestGate, RequestKind,
    ReqwestOutbound, Secrets, TransformPlugin,
};
use tokio::sync::broadcast;

use super::{Destination, LoadedTransform, PluginError, Registry, State};
use crate::config::{
    Config, DestinationConfig, OAUTH_ACCESS_TOKEN, OAuthGrant, PluginsConfig, resolve_secret,
};
use crate::delivery::breaker::{Breaker, BreakerConfig};
use crate::delivery::oauth::TokenSource;
use crate::delivery::ratelimit::Limiter;
use crate::pipeline::mapping::Mapping;
use crate::pipeline::normalize::NormalizedLead;
use crate::store::Store;

/// Why a component file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("does not compile: {0}")]
    Compile(String),
    #[error("is not a crm-adapter component of a WIT version this host serves: {0}")]
    NotAnAdapter(String),
    #[error("is not a source-transform component of a WIT version this host serves: {0}")]
    NotATransform(String),
    #[error("describe() gave no name or version")]
    Undescribed,
    #[error(
        "declares itself adapter {found:?}, but this destination's adapter is {expected:?}; refused (set expect_adapter to change it)"
    )]
    WrongAdapter { expected: String, found: String },
    #[error("authentication: {0}")]
    Auth(String),
}

/// A component file, read and compiled.
pub struct Compiled {
    pub component: Component,
    /// The first 8 bytes of the file's SHA-256, in hex.
    pub hash: String,
}

/// Reads and compiles a component file (off the async threads, through the
/// compiled-component cache: a restart or a second try does not recompile).
pub async fn compile_file(
    engine: &PluginEngine,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<Compiled, LoadError> {
    let wasm = tokio::fs::read(path).await.map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let hash = short_hash(&wasm);
    let engine = engine.clone();
    let cache = cache_dir.map(Path::to_path_buf);
    let component =
        tokio::task::spawn_blocking(move || engine.compile_cached(&wasm, cache.as_deref()))
            .await
            .expect("compile task")
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    Ok(Compiled { component, hash })
}

/// The first 8 bytes of the SHA-256 of `bytes`, in hex.
pub fn short_hash(bytes: &[u8]) -> String {
    crate::sha256_hex(bytes, 8)
}

/// Instantiates an adapter with no capabilities and checks what it
/// declares: a name and a version, and the `expected` name if given.
pub async fn describe_adapter(
    engine: &PluginEngine,
    plugin_name: &str,
    compiled: &Compiled,
    expected: Option<&str>,
) -> Result<AdapterPlugin, LoadError> {
    let adapter = AdapterPlugin::load(
        engine,
        plugin_name,
        &compiled.component,
        Capabilities::none(),
    )
    .await
    .map_err(|e| LoadError::NotAnAdapter(e.to_string()))?;
    let info = adapter.info();
    if info.name.is_empty() || info.version.is_empty() {
        return Err(LoadError::Undescribed);
    }
    if let Some(expected) = expected
        && info.name != expected
    {
        return Err(LoadError::WrongAdapter {
            expected: expected.to_string(),
            found: info.name.clone(),
        });
    }
    Ok(adapter)
}

/// Instantiates a source transform and checks it describes itself.
pub async fn describe_transform(
    engine: &PluginEngine,
    plugin_name: &str,
    compiled: &Compiled,
) -> Result<TransformPlugin, LoadError> {
    let transform = TransformPlugin::load(engine, plugin_name, &compiled.component)
        .await
        .map_err(|e| LoadError::NotATransform(e.to_string()))?;
    if transform.info().version.is_empty() {
        return Err(LoadError::Undescribed);
    }
    Ok(transform)
}

impl Registry {
    pub(super) async fn load_transform(&self, name: &str) -> Result<LoadedTransform, String> {
        let path = self.plugins_dir.join(format!("{name}.wasm"));
        let fail = |e: LoadError| format!("transform {name}: {e}");
        let compiled = compile_file(&self.engine, &path, self.cache_dir.as_deref())
            .await
            .map_err(fail)?;
        let plugin = describe_transform(&self.engine, name, &compiled)
            .await
            .map_err(fail)?;
        Ok(LoadedTransform {
            name: name.to_string(),
            plugin,
            hash: compiled.hash,
            loaded_at_ms: crate::now_ms(),
        })
    }

    /// The destination's limiter, set to the limits its adapter declares.
    fn limiter(
        &self,
        destination: &str,
        limits: &[leadgate_runtime::RateLimit],
        max_concurrent: Option<u32>,
    ) -> Arc<Limiter> {
        let mut all = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(destination) {
            Some(l) => {
                l.set_limits(limits, max_concurrent);
                l.clone()
            }
            None => {
                // A call may wait for room up to a third of its deadline;
                // longer, and the worker pauses the destination instead.
                let max_wait = (self.engine.limits().deadline / 3).min(Duration::from_secs(10));
                let l = Arc::new(Limiter::new(limits, max_concurrent, max_wait));
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

    /// Loads and checks a destination's adapter and mapping. `serving` is
    /// the version serving now (at a reload): the new one must declare the
    /// same adapter name unless the destination names one itself.
    pub(super) async fn load_destination(
        &self,
        name: &str,
        dest: &DestinationConfig,
        serving: Option<&Destination>,
    ) -> Result<Destination, PluginError> {
        let path = self.plugins_dir.join(format!("{}.wasm", dest.adapter));
        let load_err = |e: LoadError| PluginError::Load {
            destination: name.into(),
            adapter: dest.adapter.clone(),
            reason: e.to_string(),
        };
        let compiled = compile_file(&self.engine, &path, self.cache_dir.as_deref())
            .await
            .map_err(load_err)?;
        let secrets = destination_secrets(name, dest)?;
        // Describe first with no capabilities, then grant the hosts the
        // destination allows (default: the ones the adapter declares).
        let expected = dest
            .expect_adapter
            .as_deref()
            .or(serving.map(|d| d.adapter.info().name.as_str()));
        let probe = describe_adapter(&self.engine, &dest.adapter, &compiled, expected)
            .await
            .map_err(load_err)?;
        let info = probe.info().clone();
        check_auth(name, dest, &info).map_err(load_err)?;
        let hosts = dest
            .allowed_hosts
            .clone()
            .unwrap_or_else(|| info.default_hosts.clone());
        let oauth = self.tokens.get(name).cloned();
        for needed in &info.secrets {
            let from_oauth = oauth.is_some() && needed == OAUTH_ACCESS_TOKEN;
            if secrets.get(needed).is_none() && !from_oauth {
                tracing::warn!(destination = %name, secret = %needed, "adapter declares a secret the destination does not grant");
            }
        }
        let limiter = self.limiter(
            name,
            &rate_limits(&info.rate_limits, dest),
            dest.max_concurrent.or(info.max_concurrent),
        );
        let adapter = probe.with_capabilities(
            Capabilities::new(&hosts, secrets)
                .with_gate(limiter.clone() as Arc<dyn RequestGate>)
                .with_kv_namespace(name),
        );
        let mapping = self.load_mapping(name, dest, &info.required_properties)?;
        let batch_size = dest
            .batch_size
            .unwrap_or(info.max_batch_size)
            .min(info.max_batch_size)
            .max(1);
        Ok(Destination {
            name: name.into(),
            adapter,
            adapter_hash: compiled.hash,
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
            oauth,
            consent: dest
                .consent
                .as_ref()
                .map(crate::pipeline::consent::ConsentPolicy::new)
                .transpose()
                .map_err(|reason| PluginError::Load {
                    destination: name.into(),
                    adapter: dest.adapter.clone(),
                    reason: format!("consent: {reason}"),
                })?,
        })
    }

    /// The destination's mapping, which must render a sample lead with the
    /// adapter's required properties before it may serve.
    fn load_mapping(
        &self,
        name: &str,
        dest: &DestinationConfig,
        required: &[String],
    ) -> Result<Mapping, PluginError> {
        let mapping_err = |source| PluginError::Mapping {
            destination: name.into(),
            source,
        };
        let mapping = Mapping::load(&self.mappings_dir.join(&dest.mapping)).map_err(mapping_err)?;
        mapping
            .render(&sample_lead(), required)
            .map_err(mapping_err)?;
        Ok(mapping)
    }
}

/// The destination's secrets, resolved (`env:`, `file:` or a value).
fn destination_secrets(name: &str, dest: &DestinationConfig) -> Result<Secrets, PluginError> {
    let mut secrets = Secrets::new();
    for (secret, value) in &dest.secrets {
        let value = resolve_secret(value).map_err(|reason| PluginError::Secret {
            destination: name.into(),
            secret: secret.clone(),
            reason,
        })?;
        secrets.insert(secret.clone(), value);
    }
    Ok(secrets)
}

/// Whether the destination's credentials are what the adapter says its
/// CRM takes: an OAuth grant the adapter does not declare, or OAuth for an
/// adapter that takes no access token, is refused (the token would never
/// be used, or be the wrong kind); missing credentials are warned about,
/// as missing secrets are (the first calls will say 401).
fn check_auth(name: &str, dest: &DestinationConfig, info: &AdapterInfo) -> Result<(), LoadError> {
    let grants = |g: &[OAuthGrant]| g.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ");
    match (&info.auth, &dest.oauth) {
        (AuthScheme::OAuth2 { grants: taken }, Some(o)) if !taken.contains(&o.grant) => {
            Err(LoadError::Auth(format!(
                "the destination's oauth.grant is {}, but {} takes only {}",
                o.grant.as_str(),
                info.name,
                grants(taken)
            )))
        }
        (AuthScheme::OAuth2 { grants: taken }, None)
            if !dest.secrets.contains_key(OAUTH_ACCESS_TOKEN) =>
        {
            tracing::warn!(destination = %name, adapter = %info.name, grants = %grants(taken), "the adapter authenticates with OAuth 2.0 and the destination has no [destinations.NAME.oauth] section");
            Ok(())
        }
        (AuthScheme::None, Some(_)) => Err(LoadError::Auth(format!(
            "the destination configures OAuth 2.0, but {} takes no credential",
            info.name
        ))),
        (AuthScheme::ApiKey { secret }, Some(_)) if secret != OAUTH_ACCESS_TOKEN => {
            Err(LoadError::Auth(format!(
                "the destination configures OAuth 2.0, but {} authenticates with the secret {secret}",
                info.name
            )))
        }
        _ => Ok(()),
    }
}

/// The adapter's declared rate-limit windows with the destination's
/// overrides (an account's real quota) in their place.
fn rate_limits(
    declared: &[leadgate_runtime::RateLimit],
    dest: &DestinationConfig,
) -> Vec<leadgate_runtime::RateLimit> {
    let mut limits = declared.to_vec();
    for (window, o) in &dest.rate_limits {
        // An override keeps what the window counts; a new window named
        // `search` counts searches, any other every request.
        let kinds = match declared.iter().find(|l| &l.name == window) {
            Some(l) => l.kinds.clone(),
            None if window.eq_ignore_ascii_case("search") => vec![RequestKind::Search],
            None => vec![],
        };
        limits.retain(|l| &l.name != window);
        limits.push(leadgate_runtime::RateLimit {
            name: window.clone(),
            max_requests: o.max_requests,
            window_ms: o.window_ms,
            kinds,
        });
    }
    limits
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

/// The plugin engine with the limits and host services `plugins` sets,
/// and an in-memory key-value store (`leadgate plugin` runs and tests).
pub fn engine(p: &PluginsConfig) -> anyhow::Result<PluginEngine> {
    engine_with_kv(p, Arc::new(MemoryKv::default()))
}

/// How this process compiles components missing from the cache: in a child
/// `leadgate plugin precompile` when set (the server binary), else in
/// process (tests, benches, one-shot commands).
static CHILD_COMPILER: std::sync::OnceLock<ExternalCompiler> = std::sync::OnceLock::new();

/// Makes this process compile components in a child process: `exe plugin
/// precompile`, with the `[plugins]` limits of `config` (the same engine
/// settings, so the same machine code). The compiler's memory stays the
/// child's: compiling a Python component in process left the host at
/// ~500 MB resident for good.
pub fn compile_in_child(exe: PathBuf, config: Option<PathBuf>) {
    let _ = CHILD_COMPILER.set(child_compiler(exe, config));
}

/// The compiler that runs `exe plugin precompile --out OUT [--limits-from
/// CONFIG]` with the component on its standard input.
pub fn child_compiler(exe: PathBuf, config: Option<PathBuf>) -> ExternalCompiler {
    Arc::new(move |wasm: &[u8], out: &Path| {
        use std::io::Write as _;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["plugin", "precompile", "--out"]).arg(out);
        if let Some(config) = &config {
            cmd.arg("--limits-from").arg(config);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let written = child.stdin.take().expect("piped stdin").write_all(wasm);
        let output = child.wait_with_output()?;
        written.context("handing the component to the compiler")?;
        if !output.status.success() {
            anyhow::bail!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    })
}

/// The plugin engine, its key-value import served by `kv` (the server's:
/// [`super::kv::StoreKv`], durable).
pub fn engine_with_kv(p: &PluginsConfig, kv: Arc<dyn KvStore>) -> anyhow::Result<PluginEngine> {
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
            kv,
            max_http_timeout: Duration::from_millis(p.http_timeout_ms),
            max_response_bytes: p.max_response_mb << 20,
        },
    )?;
    Ok(match CHILD_COMPILER.get() {
        Some(compiler) => engine.with_compiler(compiler.clone()),
        None => engine,
    })
}

/// Builds the engine and loads every configured destination. One bad
/// destination is an error naming it: the host refuses to start half-set-up.
pub async fn load(config: &Config, store: Arc<dyn Store>) -> Result<Registry, anyhow::Error> {
    let kv = Arc::new(super::StoreKv::new(store.clone()));
    let engine = engine_with_kv(&config.plugins, kv)?;
    let mut tokens = BTreeMap::new();
    for (name, dest) in &config.destinations {
        if let Some(oauth) = &dest.oauth {
            let source = TokenSource::new(name, oauth.clone(), store.clone())
                .map_err(|e| anyhow::anyhow!("destination {name}: {e}"))?;
            tokens.insert(name.clone(), Arc::new(source));
        }
    }
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
        tokens,
    };
    let mut state = State::default();
    for (name, dest) in &registry.configs {
        let loaded = registry.load_destination(name, dest, None).await?;
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
