//! Plain Rust mirrors of the WIT types (of the current package,
//! `leadgate:plugin@0.2.0`), so that the rest of the host never touches
//! generated bindings. Conversions live in `plugin.rs` (current package)
//! and `compat.rs` (0.1.0).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What an adapter says about itself in `describe()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdapterInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub max_batch_size: u32,
    pub upsert_key: String,
    pub required_properties: Vec<String>,
    pub supports_webhooks: bool,
    pub config_keys: Vec<String>,
    pub secrets: Vec<String>,
    pub default_hosts: Vec<String>,
    pub rate_limits: Vec<RateLimit>,
    /// Most requests the CRM takes at once from one account.
    pub max_concurrent: Option<u32>,
    pub auth: AuthScheme,
}

/// The WIT package a component targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum WitVersion {
    #[serde(rename = "0.1.0")]
    V0_1,
    /// 0.2.0 and 0.2.1 (which only adds the optional `erasure` export):
    /// one set of bindings serves both.
    #[serde(rename = "0.2.1")]
    V0_2,
}

impl WitVersion {
    /// Every version this host serves, oldest first.
    pub const SERVED: [WitVersion; 2] = [WitVersion::V0_1, WitVersion::V0_2];

    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1 => "0.1.0",
            WitVersion::V0_2 => "0.2.1",
        }
    }

    /// Whether this version serves a component that exports `exported`
    /// (`0.2.0`): the same `0.minor`, and a patch no newer than this one
    /// (semver, as wasmtime links imports).
    pub fn serves(self, exported: &str) -> bool {
        let parse = |v: &str| -> Option<(u64, u64, u64)> {
            let mut parts = v.splitn(3, '.').map(|p| p.parse::<u64>().ok());
            Some((parts.next()??, parts.next()??, parts.next()??))
        };
        match (parse(self.as_str()), parse(exported)) {
            (Some((0, minor, patch)), Some((0, m, p))) => m == minor && p <= patch,
            _ => false,
        }
    }
}

impl fmt::Display for WitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an outbound request does at the CRM; quota windows count by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Write,
    Read,
    Search,
}

impl RequestKind {
    /// The kind of a request from a 0.1.0 component, which does not say:
    /// a path with `/search` in it is a search (the convention 0.1.0 quota
    /// windows relied on), a GET or HEAD a read, anything else a write.
    pub fn guess(method: &str, path: &str) -> RequestKind {
        if path.contains("/search") {
            RequestKind::Search
        } else if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
            RequestKind::Read
        } else {
            RequestKind::Write
        }
    }
}

/// One rate-limit window a CRM enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub name: String,
    pub max_requests: u32,
    pub window_ms: u64,
    /// The request kinds it counts; empty: every request.
    pub kinds: Vec<RequestKind>,
}

/// An OAuth 2.0 grant an adapter's CRM accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    RefreshToken,
    ClientCredentials,
}

impl OAuthGrant {
    /// The grant's name in OAuth 2.0 (and in leadgate's configuration).
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthGrant::RefreshToken => "refresh_token",
            OAuthGrant::ClientCredentials => "client_credentials",
        }
    }
}

/// How a CRM authenticates an adapter's requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "scheme")]
pub enum AuthScheme {
    /// No credential, or one the adapter uses through the crypto import.
    None,
    /// A long-lived key or token granted as the named secret.
    ApiKey { secret: String },
    /// An OAuth 2.0 access token the host obtains with one of these grants.
    #[serde(rename = "oauth2")]
    OAuth2 { grants: Vec<OAuthGrant> },
    /// Not declared: a 0.1.0 component, whose `secrets` say what it needs.
    Undeclared,
}

/// What a source transform says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransformInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

/// One lead × destination job handed to an adapter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub idempotency_key: String,
    pub properties: Vec<(String, String)>,
}

/// One CRM record to delete (an erasure job), handed to an adapter that
/// exports `erasure` (WIT 0.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub id: String,
    /// The record's CRM id, as a delivery's outcome named it.
    pub record_id: String,
}

/// The context of one `push` call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushContext {
    pub destination: String,
    pub config: Vec<(String, String)>,
    pub attempt: u32,
}

/// Why a record is refused for good: one taxonomy across CRMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionKind {
    /// A value breaks a rule of the CRM; `field` names the property.
    Validation,
    /// The record's state in the CRM forbids the write.
    Conflict,
    /// The credential lacks the permission.
    Forbidden,
    /// The destination is misconfigured.
    Config,
    Other,
}

impl RejectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::Validation => "validation",
            RejectionKind::Conflict => "conflict",
            RejectionKind::Forbidden => "forbidden",
            RejectionKind::Config => "config",
            RejectionKind::Other => "other",
        }
    }
}

/// Why a record is to be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryKind {
    /// A failure that may pass; uses an attempt.
    Transient,
    /// Held back by the adapter so that another record goes first.
    HeldBack,
    /// A read-back found the write missing or different.
    ReadbackMismatch,
    /// The CRM refused the credential.
    AuthExpired,
}

/// Why a CRM refused a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub field: Option<String>,
    pub rule: String,
    pub message: String,
}

/// The result of delivering one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created(String),
    Updated(String),
    DuplicateOf(String),
    Rejected(Rejection),
    Retry {
        kind: RetryKind,
        after_ms: Option<u64>,
        reason: String,
    },
    RateLimited {
        after_ms: u64,
    },
    /// An erasure: the CRM deleted the record (its id).
    Deleted(String),
    /// An erasure: the CRM holds no such record (its id); nothing to do.
    NotFound(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Created(id) => write!(f, "created {id}"),
            Outcome::Updated(id) => write!(f, "updated {id}"),
            Outcome::DuplicateOf(id) => write!(f, "duplicate of {id}"),
            Outcome::Rejected(r) => {
                write!(f, "rejected ({}): ", r.kind.as_str())?;
                match &r.field {
                    Some(field) => write!(f, "{field}: {} ({})", r.rule, r.message),
                    None => write!(f, "{} ({})", r.rule, r.message),
                }
            }
            Outcome::Retry {
                kind,
                after_ms,
                reason,
            } => {
                let what = match kind {
                    RetryKind::Transient => "retry",
                    RetryKind::HeldBack => "held back",
                    RetryKind::ReadbackMismatch => "read-back mismatch, retry",
                    RetryKind::AuthExpired => "credential refused, retry",
                };
                match after_ms {
                    Some(ms) => write!(f, "{what} after {ms} ms: {reason}"),
                    None => write!(f, "{what}: {reason}"),
                }
            }
            Outcome::RateLimited { after_ms } => write!(f, "rate limited for {after_ms} ms"),
            Outcome::Deleted(id) => write!(f, "deleted {id}"),
            Outcome::NotFound(id) => write!(f, "{id} not found: nothing to delete"),
        }
    }
}

/// An inbound webhook as the host received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One event parsed from a CRM webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrmEvent {
    pub kind: String,
    pub object_id: String,
    pub occurred_at_ms: u64,
    pub property_name: Option<String>,
    pub property_value: Option<String>,
}

/// A verified webhook: its events, and what to answer the CRM when it
/// expects more than a 200 (None: the host's JSON count of events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookReceipt {
    pub events: Vec<CrmEvent>,
    pub answer: Option<WebhookAnswer>,
}

/// The body (status 200) a CRM expects in answer to its notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookAnswer {
    pub content_type: String,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Why a webhook was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("this adapter does not take webhooks")]
    Unsupported,
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp outside the accepted window")]
    StaleTimestamp,
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

/// Why a transform refused a payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("field {field}: {reason}")]
    InvalidField { field: String, reason: String },
}
