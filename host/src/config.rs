//! Configuration: an embedded, commented default file < the user's file <
//! `LEADGATE_SECTION__KEY` environment variables. Unknown keys are refused,
//! and validation names the key at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::pipeline::normalize::{Acceptance, NormalizeOptions};
use crate::pipeline::route::Priority;

/// The embedded defaults, also the documentation of every key.
pub const DEFAULT_CONFIG: &str = include_str!("../leadgate.default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub plugins: PluginsConfig,
    pub delivery: DeliveryConfig,
    /// Admin API tokens and their scopes (`[auth]`).
    pub auth: AuthConfig,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// Dedupe probabilities, model file and windows (`[dedupe]`).
    #[serde(default)]
    pub dedupe: crate::pipeline::dedupe::DedupeConfig,
    /// Survivorship: how a duplicate's fields merge into its person
    /// (`[merge]`).
    #[serde(default)]
    pub merge: crate::pipeline::merge::MergeConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted by `POST /v1/leads`.
    pub max_body_bytes: usize,
    /// Most leads in one request.
    pub max_leads_per_request: usize,
    /// `/metrics` without a token on an address of its own; unset, it is
    /// on `listen` behind the `read` scope.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// HTTPS: the certificate chain (PEM).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this long of connecting or
    /// of the previous answer on the connection.
    pub header_read_timeout_ms: u64,
    /// The longest a request may take, body included.
    pub request_timeout_ms: u64,
}

/// What an admin token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// Read leads, persons, dead letters, plugins, stats and metrics.
    Read,
    /// Replay and discard dead letters, resume a destination.
    Operate,
    /// Erase a person, rotate keys.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];
}

/// `[auth]`: who may use the admin API.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Admin tokens by name.
    #[serde(default)]
    pub tokens: BTreeMap<String, AdminTokenConfig>,
    /// Where the host keeps the token it generates when none is
    /// configured. Empty: `admin-token` beside an SQLite store.
    pub token_file: PathBuf,
}

/// One admin token (`[auth.tokens.NAME]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// A value, `env:VAR` or `file:/path`; at least 16 characters.
    pub token: String,
    pub scopes: Vec<Scope>,
}

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// How many leads a source's key may post: a token bucket refilled at
/// `leads_per_second`, holding at most `burst`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IngestRateLimit {
    pub leads_per_second: u32,
    pub burst: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://…`.
    pub url: String,
    /// Most leads committed in one group-commit transaction.
    pub group_commit_max: usize,
    /// `full`: a commit survives power loss; `normal`: it survives a crash
    /// of the process only.
    pub durability: crate::store::Durability,
    /// Encryption at rest of personal data.
    #[serde(default)]
    pub encryption: crate::store::seal::EncryptionConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Folder of adapter components (`<name>.wasm`). Empty: the adapters
    /// this build compiled.
    pub dir: PathBuf,
    /// Folder of mapping files.
    pub mappings_dir: PathBuf,
    /// Compiled-component cache. Empty: `plugin-cache` beside an SQLite
    /// store.
    pub cache_dir: PathBuf,
    /// Watch the plugin and mapping folders and reload changed files.
    pub hot_reload: bool,
    pub call_timeout_ms: u64,
    pub max_memory_mb: usize,
    pub max_output_mb: usize,
    pub http_timeout_ms: u64,
    pub max_response_mb: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Concurrent batches in flight per destination.
    pub concurrency: usize,
    /// Attempts before a job goes to the dead-letter queue.
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// How long a leased job stays with its worker before others may take it.
    pub lease_ms: u64,
    /// How long a worker waits to fill a batch.
    pub linger_ms: u64,
    /// How often an idle worker looks for due jobs.
    pub poll_ms: u64,
    /// Consecutive failed batches (transport errors, 5xx, timeouts, failed
    /// plugin calls) that open a destination's circuit breaker; 0 never
    /// opens it.
    pub breaker_failures: u32,
    /// How long an open breaker waits before its first probe.
    pub breaker_cooldown_ms: u64,
    /// The longest wait between probes (the cool-down doubles with each
    /// failed probe, up to this).
    pub breaker_cooldown_max_ms: u64,
    /// Host-wide backlog limit: with this many jobs pending or leased,
    /// ingest answers 429 for every source; 0 means no limit.
    pub max_backlog: u64,
    /// At shutdown, how long batches in flight may take to finish before
    /// the host gives their jobs back to the queue.
    pub shutdown_grace_ms: u64,
    /// A job still undelivered this long after it was queued is
    /// dead-lettered at its next failure; 0 never.
    pub give_up_after_ms: u64,
}

/// A source: who may post leads, and how to read them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The bearer token this source posts over HTTP with (or `env:VAR`,
    /// `file:PATH`). Empty: no HTTP ingest, for a source fed by its
    /// `nats` subject alone.
    #[serde(default)]
    pub api_key: String,
    /// Region for phone numbers written without a country code (ISO 3166).
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Acceptance rule: each inner list is a set of fields of which at least
    /// one must be present. Default: an email or a phone.
    #[serde(default = "default_require")]
    pub require_any: Vec<Vec<String>>,
    #[serde(default)]
    pub priority: Priority,
    /// A likely typo in an email's consumer domain (`gmial.com`): `suggest`
    /// (keep the address, record the fix as `email_suggestion`), `fix`
    /// (correct it; the original is kept) or `ignore`.
    #[serde(default)]
    pub email_typos: crate::pipeline::normalize::TypoPolicy,
    /// A source-transform plugin (`<plugins dir>/<name>.wasm`) that turns
    /// this source's payloads into leads.
    #[serde(default)]
    pub transform: Option<String>,
    /// Settings handed to the transform.
    #[serde(default)]
    pub transform_config: BTreeMap<String, String>,
    /// Outstanding jobs (pending or leased) above which this source's
    /// posts are answered 429 with `Retry-After`; 0 means no limit. Only
    /// this source's own jobs count (`[delivery] max_backlog` bounds all).
    #[serde(default = "default_max_backlog")]
    pub max_backlog: u64,
    /// Leads this source's key may post; above it, 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: Option<IngestRateLimit>,
    /// How long this source's personal data is kept.
    #[serde(default)]
    pub retention: Option<crate::store::retention::Retention>,
    /// A NATS JetStream subject this source's payloads also arrive on.
    #[serde(default)]
    pub nats: Option<NatsSource>,
}

/// A source fed by a NATS JetStream subject: a durable pull consumer
/// takes its messages (each a payload as HTTP takes one) and acknowledges
/// each once its leads are committed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSource {
    /// The NATS server, `nats://host:4222`.
    pub url: String,
    /// The stream the subject is in (created over the subject if missing).
    pub stream: String,
    pub subject: String,
    /// The durable consumer's name; empty: `leadgate-<source>`. Hosts
    /// sharing a store share it (each message goes to one of them).
    #[serde(default)]
    pub consumer: String,
    /// Most messages taken at once.
    #[serde(default = "default_nats_batch")]
    pub batch: usize,
}

fn default_nats_batch() -> usize {
    64
}

impl SourceConfig {
    /// The normalization options of this source: what the server uses,
    /// and what `leadgate normalize --config … --source …` uses.
    pub fn normalize_options(&self) -> Result<NormalizeOptions, String> {
        Ok(NormalizeOptions {
            default_region: crate::pipeline::normalize::phone::region_setting(
                &self.default_region,
            )?,
            acceptance: Acceptance {
                require_any: self.require_any.clone(),
            },
            email_typos: self.email_typos,
        })
    }
}

fn default_region() -> String {
    "US".into()
}

fn default_require() -> Vec<Vec<String>> {
    vec![vec!["email".into(), "phone".into()]]
}

fn default_max_backlog() -> u64 {
    100_000
}

/// A destination: one CRM account, reached through one adapter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The adapter's plugin name (`<dir>/<adapter>.wasm`).
    pub adapter: String,
    /// The mapping file in the mappings folder.
    pub mapping: String,
    /// Hosts the adapter may call; default: the hosts the adapter declares.
    /// Each is a host (`api.hubapi.com`), `*.` and a domain (any
    /// subdomain) or an IP address, optionally with `:PORT`.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// The name the adapter must declare in `describe()`. A component that
    /// declares another name is refused at start and at reload (the
    /// previous version keeps serving). Default: at start, any name; at a
    /// reload, the name of the version serving.
    #[serde(default)]
    pub expect_adapter: Option<String>,
    /// Non-secret settings handed to the adapter.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets the host substitutes for the adapter: a value, `env:VAR` or
    /// `file:/path`.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Largest batch; default the adapter's own maximum.
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// This account's quotas where they differ from what the adapter
    /// declares (an API limit increase, a lower tier), by window name:
    /// `burst = { max_requests = 250, window_ms = 10000 }`. A name the
    /// adapter does not declare adds a window.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitOverride>,
    /// This account's cap on requests in flight at once, where it differs
    /// from what the adapter declares (Zoho CRM: 10 in Standard, 15, 20
    /// or 25 in higher editions).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// OAuth 2.0: the host obtains, caches and renews the access token and
    /// hands it to the adapter as the secret `access-token`; the token
    /// answer's `instance_url` (Salesforce) and `api_domain` (Zoho) reach
    /// the adapter as the config keys `instance-url` and `api-domain`.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// Where a lead needs a lawful basis before it is pushed here; a
    /// person without one waits (`consent_missing`) until a lead of theirs
    /// brings it.
    #[serde(default)]
    pub consent: Option<crate::pipeline::consent::ConsentConfig>,
}

/// The secret an OAuth destination's access token is substituted for.
pub const OAUTH_ACCESS_TOKEN: &str = "access-token";

/// A destination's OAuth 2.0 grant (`[destinations.NAME.oauth]`), for the
/// host's token source ([`crate::delivery::oauth`]).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub grant: OAuthGrant,
    /// The token endpoint: Salesforce's login or My Domain host
    /// (`…/services/oauth2/token`), Entra ID's
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`,
    /// Zoho's accounts host of the account's data centre
    /// (`https://accounts.zoho.eu/oauth/v2/token`).
    pub token_url: String,
    pub client_id: String,
    /// A value, `env:VAR` or `file:/path`.
    pub client_secret: String,
    /// `refresh_token` grant: the refresh token of the authorization (a
    /// value, `env:VAR` or `file:/path`). When the CRM rotates it, the host
    /// keeps the new one in its store and uses that.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// `scope`, where the grant needs one (Entra ID client credentials:
    /// `https://ORG.crm.dynamics.com/.default`).
    #[serde(default)]
    pub scope: Option<String>,
}

/// How a destination gets its access token: `refresh_token` (Salesforce,
/// Zoho, delegated Dynamics 365) or `client_credentials` (Dynamics 365
/// through Entra ID, as an application); the same type adapters declare
/// the grants they take with.
pub use leadgate_runtime::OAuthGrant;

impl OAuthConfig {
    /// The key (under `key`) and reason of the first thing wrong.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let url = leadgate_runtime::Url::parse(&self.token_url)
            .map_err(|e| invalid(format!("{key}.token_url"), e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(invalid(
                format!("{key}.token_url"),
                "must be an https URL with a host",
            ));
        }
        if self.client_id.is_empty() {
            return Err(invalid(format!("{key}.client_id"), "must not be empty"));
        }
        resolve_secret(&self.client_secret)
            .map_err(|r| invalid(format!("{key}.client_secret"), r))?;
        match (self.grant, &self.refresh_token) {
            (OAuthGrant::RefreshToken, None) => Err(invalid(
                format!("{key}.refresh_token"),
                "the refresh_token grant needs the authorization's refresh token",
            )),
            (OAuthGrant::RefreshToken, Some(token)) => resolve_secret(token)
                .map(drop)
                .map_err(|r| invalid(format!("{key}.refresh_token"), r)),
            (OAuthGrant::ClientCredentials, _) => Ok(()),
        }
    }
}

/// One rate-limit window of a destination account.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    pub max_requests: u32,
    pub window_ms: u64,
}

impl Config {
    /// Loads the defaults, then `path` if given, then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(
            Env::prefixed("LEADGATE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        Self::from_figment(figment)
    }

    /// Loads the defaults overlaid with a TOML text (tests, the demo).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_layers(&[text])
    }

    /// Loads the defaults overlaid with TOML texts, later ones winning.
    pub fn from_toml_layers(layers: &[&str]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        for layer in layers {
            figment = figment.merge(Toml::string(layer));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.dedupe.validate().map_err(|(k, r)| invalid(k, r))?;
        self.merge.validate().map_err(|(k, r)| invalid(k, r))?;
        if self.delivery.max_attempts == 0 {
            return Err(invalid("delivery.max_attempts", "must be at least 1"));
        }
        if self.delivery.concurrency == 0 {
            return Err(invalid("delivery.concurrency", "must be at least 1"));
        }
        if self.store.group_commit_max == 0 {
            return Err(invalid("store.group_commit_max", "must be at least 1"));
        }
        if let Err(crate::store::seal::SealError::Config { key, reason }) =
            self.store.encryption.validate()
        {
            return Err(invalid(key, reason));
        }
        for (name, dest) in &self.destinations {
            if let Some(consent) = &dest.consent {
                crate::pipeline::consent::ConsentPolicy::new(consent)
                    .map_err(|r| invalid(format!("destinations.{name}.consent"), r))?;
            }
        }
        for (name, source) in &self.sources {
            if let Some(retention) = &source.retention {
                retention
                    .validate(self.dedupe.window_days)
                    .map_err(|(k, r)| invalid(format!("sources.{name}.retention.{k}"), r))?;
            }
        }
        self.validate_server()?;
        // Every credential is distinct: a source key, an admin token.
        let mut keys = BTreeMap::new();
        for (name, token) in &self.auth.tokens {
            let key = format!("auth.tokens.{name}.token");
            let value = resolve_secret(&token.token).map_err(|r| invalid(&key, r))?;
            if value.len() < MIN_ADMIN_TOKEN_LEN {
                return Err(invalid(
                    key,
                    format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
                ));
            }
            if let Some(other) = keys.insert(value, key.clone()) {
                return Err(invalid(key, format!("is the same as {other}")));
            }
            if token.scopes.is_empty() {
                return Err(invalid(
                    format!("auth.tokens.{name}.scopes"),
                    "name at least one of read, operate, admin",
                ));
            }
        }
        if self.auth.tokens.is_empty() && self.admin_token_file().is_none() {
            return Err(invalid(
                "auth.token_file",
                "no admin token is configured and the store is not SQLite: \
                 configure [auth.tokens.NAME] or a file for the generated token",
            ));
        }
        for (name, source) in &self.sources {
            let key = format!("sources.{name}.api_key");
            if source.api_key.is_empty() {
                if source.nats.is_none() {
                    return Err(invalid(
                        key,
                        "must be set: the source has no other way in (no [sources.NAME.nats])",
                    ));
                }
            } else {
                let api_key = resolve_secret(&source.api_key).map_err(|r| invalid(&key, r))?;
                if api_key.len() < 8 {
                    return Err(invalid(key, "must be at least 8 characters"));
                }
                if let Some(other) = keys.insert(api_key, key.clone()) {
                    return Err(invalid(key, format!("is the same as {other}")));
                }
            }
            if let Some(nats) = &source.nats {
                let key = |field: &str| format!("sources.{name}.nats.{field}");
                if !nats.url.starts_with("nats://") && !nats.url.starts_with("tls://") {
                    return Err(invalid(
                        key("url"),
                        "must be nats://HOST:PORT or tls://HOST:PORT",
                    ));
                }
                for (field, value) in [("stream", &nats.stream), ("subject", &nats.subject)] {
                    if value.trim().is_empty() {
                        return Err(invalid(key(field), "must not be empty"));
                    }
                }
                if nats.batch == 0 {
                    return Err(invalid(key("batch"), "must be at least 1"));
                }
            }
            if let Some(limit) = source.rate_limit {
                let key = format!("sources.{name}.rate_limit");
                if limit.leads_per_second == 0 {
                    return Err(invalid(key, "leads_per_second must be at least 1"));
                }
                if (limit.burst as usize) < self.server.max_leads_per_request {
                    return Err(invalid(
                        key,
                        format!(
                            "burst {} is below server.max_leads_per_request ({}): \
                             a full request could never pass",
                            limit.burst, self.server.max_leads_per_request
                        ),
                    ));
                }
            }
            if let Err(rule) =
                crate::pipeline::normalize::phone::region_setting(&source.default_region)
            {
                return Err(invalid(format!("sources.{name}.default_region"), rule));
            }
            for group in &source.require_any {
                for field in group {
                    if crate::pipeline::field::LeadField::from_posted(field).is_none() {
                        return Err(invalid(
                            format!("sources.{name}.require_any"),
                            format!("unknown lead field {field:?}"),
                        ));
                    }
                }
            }
        }
        for (name, dest) in &self.destinations {
            for (secret, value) in &dest.secrets {
                resolve_secret(value)
                    .map_err(|r| invalid(format!("destinations.{name}.secrets.{secret}"), r))?;
            }
            if dest.max_concurrent == Some(0) {
                return Err(invalid(
                    format!("destinations.{name}.max_concurrent"),
                    "must be at least 1",
                ));
            }
            if dest.batch_size == Some(0) {
                return Err(invalid(
                    format!("destinations.{name}.batch_size"),
                    "must be at least 1",
                ));
            }
            for (i, host) in dest.allowed_hosts.iter().flatten().enumerate() {
                leadgate_runtime::check_host_pattern(host)
                    .map_err(|r| invalid(format!("destinations.{name}.allowed_hosts[{i}]"), r))?;
            }
            if let Some(oauth) = &dest.oauth {
                oauth.validate(&format!("destinations.{name}.oauth"))?;
                if dest.secrets.contains_key(OAUTH_ACCESS_TOKEN) {
                    return Err(invalid(
                        format!("destinations.{name}.secrets.{OAUTH_ACCESS_TOKEN}"),
                        "comes from the destination's oauth section; remove it",
                    ));
                }
            }
            if dest.expect_adapter.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(
                    format!("destinations.{name}.expect_adapter"),
                    "must name the adapter (what its describe() declares)",
                ));
            }
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        match (&server.tls_cert, &server.tls_key) {
            (Some(_), None) => return Err(invalid("server.tls_key", "tls_cert needs its key")),
            (None, Some(_)) => {
                return Err(invalid("server.tls_cert", "tls_key needs its certificate"));
            }
            _ => {}
        }
        for (key, value) in [
            ("server.max_connections", server.max_connections as u64),
            (
                "server.header_read_timeout_ms",
                server.header_read_timeout_ms,
            ),
            ("server.request_timeout_ms", server.request_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if server
            .metrics_listen
            .is_some_and(|m| m == server.listen && m.port() != 0)
        {
            return Err(invalid(
                "server.metrics_listen",
                "must differ from server.listen",
            ));
        }
        Ok(())
    }

    /// Where the generated admin token is kept: `auth.token_file`, or
    /// `admin-token` beside an SQLite store.
    pub fn admin_token_file(&self) -> Option<PathBuf> {
        if !self.auth.token_file.as_os_str().is_empty() {
            return Some(self.auth.token_file.clone());
        }
        Some(self.sqlite_dir()?.join("admin-token"))
    }

    /// Where the generated data and index keys are kept:
    /// `store.encryption.key_file`, or `keys` beside an SQLite store.
    pub fn key_file(&self) -> Option<PathBuf> {
        let configured = &self.store.encryption.key_file;
        if !configured.as_os_str().is_empty() {
            return Some(configured.clone());
        }
        Some(self.sqlite_dir()?.join("keys"))
    }

    /// The dedupe model file: `dedupe.model`, or `dedupe-model.json`
    /// beside an SQLite store, or none (the bundled model alone).
    pub fn dedupe_model_file(&self) -> Option<PathBuf> {
        if !self.dedupe.model.as_os_str().is_empty() {
            return Some(self.dedupe.model.clone());
        }
        Some(self.sqlite_dir()?.join("dedupe-model.json"))
    }

    /// The model the server decides with, following its file.
    pub fn dedupe_model(&self) -> Result<crate::pipeline::dedupe::ModelHandle, ConfigError> {
        use crate::pipeline::dedupe::{ModelHandle, model};
        let custom = self.dedupe.custom_fields.clone();
        match self.dedupe_model_file() {
            Some(path) => model::watch_file(path, custom, std::time::Duration::from_secs(2))
                .map_err(|e| invalid("dedupe.model", e.to_string())),
            None => Ok(ModelHandle::bundled(&custom)),
        }
    }

    /// The folder of an SQLite store's file.
    fn sqlite_dir(&self) -> Option<PathBuf> {
        let path = self.store.url.strip_prefix("sqlite://")?;
        let path = path.split('?').next().unwrap_or(path);
        Some(Path::new(path).parent()?.to_path_buf())
    }

    /// The plugin folder, defaulting to the adapters this build compiled.
    pub fn plugins_dir(&self) -> PathBuf {
        if self.plugins.dir.as_os_str().is_empty() {
            PathBuf::from(env!("LEADGATE_BUNDLED_PLUGINS"))
        } else {
            self.plugins.dir.clone()
        }
    }

    /// Where compiled components are cached: `plugins.cache_dir`, or beside
    /// an SQLite store, or none.
    pub fn plugin_cache_dir(&self) -> Option<PathBuf> {
        if !self.plugins.cache_dir.as_os_str().is_empty() {
            return Some(self.plugins.cache_dir.clone());
        }
        Some(self.sqlite_dir()?.join("plugin-cache"))
    }

    /// The mappings folder, defaulting to the source tree's `mappings/`.
    pub fn mappings_dir(&self) -> PathBuf {
        if self.plugins.mappings_dir.as_os_str().is_empty() {
            Path::new(env!("LEADGATE_SOURCE_ROOT")).join("mappings")
        } else {
            self.plugins.mappings_dir.clone()
        }
    }
}

/// Resolves a secret reference: `env:VAR`, `file:/path`, or the value itself.
pub fn resolve_secret(value: &str) -> Result<String, String> {
    if let Some(var) = value.strip_prefix("env:") {
        std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_string())
            .map_err(|e| format!("reading {path}: {e}"))
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.delivery.max_attempts, 8);
        assert!(c.sources.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[server]\nlisten_on = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listen_on"), "{err}");
    }

    #[test]
    fn replaced_dedupe_keys_name_their_replacement() {
        for (toml, key, by) in [
            (
                "match_threshold = 6.0",
                "dedupe.match_threshold",
                "match_probability",
            ),
            (
                "possible_threshold = 4.0",
                "dedupe.possible_threshold",
                "possible_probability",
            ),
            (
                "[dedupe.weights]\nname = 5.0",
                "dedupe.weights",
                "dedupe train",
            ),
            (
                "match_probability = 1.5",
                "dedupe.match_probability",
                "probability",
            ),
            (
                "possible_probability = 0.99",
                "dedupe.possible_probability",
                "must not exceed",
            ),
        ] {
            let err = Config::from_toml(&format!("[dedupe]\n{toml}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(by), "{toml}: {err}");
        }
        let international =
            Config::from_toml("[sources.web]\napi_key = \"0123456789\"\ndefault_region = \"none\"")
                .unwrap();
        let options = international.sources["web"].normalize_options().unwrap();
        assert_eq!(options.default_region, None);
    }

    #[test]
    fn validation_names_the_key() {
        let err =
            Config::from_toml("[sources.web]\napi_key = \"0123456789\"\ndefault_region = \"XX\"")
                .unwrap_err();
        assert!(
            err.to_string().contains("sources.web.default_region"),
            "{err}"
        );
        let err = Config::from_toml("[sources.web]\napi_key = \"short\"").unwrap_err();
        assert!(err.to_string().contains("sources.web.api_key"), "{err}");
        // No key: only a source fed by NATS alone.
        let err = Config::from_toml("[sources.web]\ndefault_region = \"US\"").unwrap_err();
        assert!(
            err.to_string().contains("sources.web.api_key") && err.to_string().contains("nats"),
            "{err}"
        );
        let config = Config::from_toml(
            "[sources.queue.nats]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"LEADS\"\nsubject = \"leads.in\"",
        )
        .unwrap();
        assert!(config.sources["queue"].api_key.is_empty());
    }

    #[test]
    fn an_oauth_grant_names_what_is_wrong() {
        let good = OAuthConfig {
            grant: OAuthGrant::RefreshToken,
            token_url: "https://login.salesforce.com/services/oauth2/token".into(),
            client_id: "id".into(),
            client_secret: "s".into(),
            refresh_token: Some("r".into()),
            scope: None,
        };
        good.validate("oauth").unwrap();
        for (bad, key) in [
            (
                OAuthConfig {
                    token_url: "login.salesforce.com/services/oauth2/token".into(),
                    ..good.clone()
                },
                "oauth.token_url",
            ),
            (
                OAuthConfig {
                    refresh_token: None,
                    ..good.clone()
                },
                "oauth.refresh_token",
            ),
            (
                OAuthConfig {
                    grant: OAuthGrant::ClientCredentials,
                    client_secret: "env:LEADGATE_TEST_SURELY_UNSET".into(),
                    ..good.clone()
                },
                "oauth.client_secret",
            ),
            (
                OAuthConfig {
                    client_id: String::new(),
                    ..good.clone()
                },
                "oauth.client_id",
            ),
        ] {
            let err = bad.validate("oauth").unwrap_err();
            assert!(err.to_string().contains(key), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_allowed_host_the_matcher_cannot_use_is_refused_by_key() {
        let with_hosts = |hosts: &str| {
            Config::from_toml(&format!(
                "[destinations.crm]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\nallowed_hosts = {hosts}"
            ))
        };
        let err = with_hosts(r#"["api.hubapi.com", "https://api.hubapi.com"]"#).unwrap_err();
        assert!(
            err.to_string().contains(
                "destinations.crm.allowed_hosts[1]: \"https://api.hubapi.com\" has a scheme"
            ),
            "{err}"
        );
        assert!(with_hosts(r#"["*.hubapi.com", "127.0.0.1:8080"]"#).is_ok());
    }

    #[test]
    fn secrets_resolve_from_env() {
        // SAFETY: test-local variable name, set before any reader.
        unsafe { std::env::set_var("LEADGATE_TEST_SECRET_X", "v4lue") };
        assert_eq!(
            resolve_secret("env:LEADGATE_TEST_SECRET_X").unwrap(),
            "v4lue"
        );
        assert_eq!(resolve_secret("plain").unwrap(), "plain");
        assert!(resolve_secret("env:LEADGATE_TEST_SECRET_MISSING").is_err());
    }
}
