//! Plain Rust mirrors of the WIT types, so that the rest of the host never
//! touches generated bindings. Conversions live in `plugin.rs`.

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
}

/// One rate-limit window a CRM enforces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub name: String,
    pub max_requests: u32,
    pub window_ms: u64,
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

/// The context of one `push` call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushContext {
    pub destination: String,
    pub config: Vec<(String, String)>,
    pub attempt: u32,
}

/// Why a CRM refused a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
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
        after_ms: Option<u64>,
        reason: String,
    },
    RateLimited {
        after_ms: u64,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Created(id) => write!(f, "created {id}"),
            Outcome::Updated(id) => write!(f, "updated {id}"),
            Outcome::DuplicateOf(id) => write!(f, "duplicate of {id}"),
            Outcome::Rejected(r) => match &r.field {
                Some(field) => write!(f, "rejected: {field}: {} ({})", r.rule, r.message),
                None => write!(f, "rejected: {} ({})", r.rule, r.message),
            },
            Outcome::Retry { after_ms, reason } => match after_ms {
                Some(ms) => write!(f, "retry after {ms} ms: {reason}"),
                None => write!(f, "retry: {reason}"),
            },
            Outcome::RateLimited { after_ms } => write!(f, "rate limited for {after_ms} ms"),
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
