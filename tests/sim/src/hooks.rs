//! A receiver of Standard Webhooks (`shared/crm-apis.md` §6), the other end
//! of leadgate's generic signed-webhook destination: `POST /hooks/{name}`.
//!
//! It does what a careful receiver does: requires `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`; refuses a timestamp more
//! than five minutes from its clock; checks each `v1,<base64>` signature in
//! constant time against HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with
//! the decoded bytes of its `whsec_…` secret; and dedupes on `webhook-id`,
//! answering a redelivery with the first delivery's message id. The shared
//! faults (outage, 5xx, latency, 429 storms, silent writes) apply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::Shared;
use crate::errors::json_response;

/// Signatures older or newer than this are refused.
const TOLERANCE_SECS: i64 = 5 * 60;

/// The simulator's default signing secret, in the Standard Webhooks form.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ==";

/// One accepted message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HookMessage {
    /// The receiver's id for it (`msg_<n>`).
    pub id: String,
    /// The sender's `webhook-id`.
    pub webhook_id: String,
    pub timestamp: i64,
    /// The body, parsed.
    pub body: Value,
    /// How many times it was delivered (redeliveries included).
    pub deliveries: u32,
}

#[derive(Debug)]
pub(crate) struct HookState {
    key: Vec<u8>,
    next: u64,
    /// Per endpoint name: messages by `webhook-id`, in arrival order.
    pub endpoints: HashMap<String, Vec<HookMessage>>,
    by_id: HashMap<(String, String), usize>,
}

impl HookState {
    /// `secret` is `whsec_<base64>` (its decoded bytes are the key) or, for
    /// a plain string, its UTF-8 bytes.
    pub(crate) fn new(secret: &str) -> Self {
        HookState {
            key: secret_key(secret),
            next: 1,
            endpoints: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.endpoints.clear();
        self.by_id.clear();
    }
}

/// The HMAC key of a Standard Webhooks secret.
pub fn secret_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `v1,<base64>` for `{id}.{timestamp}.{body}` under `key`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why a request was refused: the status and the message.
type Refusal = (StatusCode, String);

/// Checks a request; its id, timestamp and parsed body, or the refusal.
fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(String, i64, Value), Refusal> {
    let get = |name: &str| {
        header(headers, name)
            .ok_or_else(|| (StatusCode::BAD_REQUEST, format!("missing header {name}")))
    };
    let id = get("webhook-id")?;
    let ts_text = get("webhook-timestamp")?;
    let signatures = get("webhook-signature")?;
    let ts: i64 = ts_text.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "webhook-timestamp is not an integer".to_string(),
        )
    })?;
    if (now_secs() - ts).abs() > TOLERANCE_SECS {
        return Err((
            StatusCode::UNAUTHORIZED,
            "webhook-timestamp is outside the tolerance".to_string(),
        ));
    }
    let valid = signatures.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|sig| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(body);
                mac.verify_slice(&sig).is_ok()
            })
    });
    if !valid {
        return Err((StatusCode::UNAUTHORIZED, "no valid signature".to_string()));
    }
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")))?;
    Ok((id.to_owned(), ts, body))
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (latency_ms, fault) = {
        let mut state = shared.lock();
        let fault = if let Some(error) = state.faults.take_gateway_error() {
            Some(error.into_response())
        } else if state.faults.take_rate_limit().is_some() {
            let mut r = refuse(StatusCode::TOO_MANY_REQUESTS, "slow down");
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            Some(r)
        } else {
            None
        };
        (state.faults.faults.latency_ms, fault)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let response = match fault {
        Some(r) => r,
        None => accept(&shared, name, &headers, &body),
    };
    shared.lock().stats.record(response.status().as_u16());
    response
}

fn accept(shared: &Shared, name: String, headers: &HeaderMap, body: &[u8]) -> Response {
    let key = shared.lock().hooks.key.clone();
    let (webhook_id, timestamp, body) = match verify(&key, headers, body) {
        Ok(v) => v,
        Err((status, message)) => return refuse(status, &message),
    };
    let mut state = shared.lock();
    let silent = state.faults.take_silent_write();
    let hooks = &mut state.hooks;
    let slot = (name.clone(), webhook_id.clone());
    if let Some(&index) = hooks.by_id.get(&slot) {
        let message = &mut hooks.endpoints.get_mut(&name).expect("indexed")[index];
        message.deliveries += 1;
        let id = message.id.clone();
        return (
            StatusCode::OK,
            axum::Json(json!({ "id": id, "duplicate": true })),
        )
            .into_response();
    }
    let id = format!("msg_{}", hooks.next);
    hooks.next += 1;
    if silent {
        state.stats.writes_dropped += 1;
    } else {
        let list = hooks.endpoints.entry(name).or_default();
        hooks.by_id.insert(slot, list.len());
        list.push(HookMessage {
            id: id.clone(),
            webhook_id,
            timestamp,
            body,
            deliveries: 1,
        });
        state.stats.records_created += 1;
    }
    (StatusCode::OK, axum::Json(json!({ "id": id }))).into_response()
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new().route("/hooks/{name}", post(receive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whsec_secrets_decode_to_their_bytes() {
        assert_eq!(
            secret_key(DEFAULT_WEBHOOK_SECRET),
            b"sim-webhook-signing-key-0123456789".to_vec()
        );
        assert_eq!(secret_key("plain"), b"plain".to_vec());
    }

    #[test]
    fn signatures_verify_and_fail() {
        let key = secret_key(DEFAULT_WEBHOOK_SECRET);
        let body = br#"{"type":"lead.upserted"}"#;
        let ts = now_secs();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        let good = sign(&key, "msg_1", ts, body);
        headers.insert(
            "webhook-signature",
            format!("v1,AAAA {good}").parse().unwrap(),
        );
        assert!(verify(&key, &headers, body).is_ok());
        assert!(verify(&key, &headers, b"{}").is_err(), "body changed");
        headers.insert("webhook-timestamp", (ts - 600).to_string().parse().unwrap());
        assert!(verify(&key, &headers, body).is_err(), "stale");
    }
}
