//! Webhooks: `POST /v1/webhooks/{destination}`. The destination's adapter
//! verifies the CRM's signature or shared token (with a secret that stays
//! in the host) and parses the events; a bad signature or a stale
//! timestamp is refused with 401, a malformed body with 400. The answer is
//! the count of events as JSON, or the acknowledgement the CRM expects
//! when the adapter gives one (Salesforce's SOAP `<Ack>true</Ack>`).
//! A verified delivery seen before (the same body for the same
//! destination: a captured request sent again, or the CRM retrying after
//! a lost answer) is answered the same way and its events are not taken
//! again.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use leadgate_runtime::{WebhookError, WebhookRequest};

use sha2::{Digest, Sha256};

use super::{ApiError, AppState, ErrorCode};
use crate::metrics::Metrics;

/// How long a verified delivery is remembered: longer than any CRM
/// retries one (Salesforce resends an unacknowledged outbound message for
/// 24 hours, HubSpot retries for up to 3 days).
const REPLAY_WINDOW_MS: i64 = 4 * 24 * 3600 * 1000;

/// A CRM's notification, verified by the destination's adapter.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{destination}",
    tag = "webhooks",
    params(("destination" = String, Path, description = "The destination whose CRM notifies")),
    request_body(content = String, description = "The CRM's body, as signed", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Verified: `received` events and `replayed`, or the acknowledgement the CRM expects (Salesforce: a SOAP `<Ack>true</Ack>`, text/xml)", body = Object),
        (status = 400, description = "Verified but not the CRM's format (`malformed_webhook`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "A bad signature or shared secret (`bad_signature`), or a timestamp outside the tolerance (`stale_timestamp`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such destination, or its adapter takes no webhooks", body = super::openapi::ErrorAnswer),
    )
)]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(destination): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let dest = state
        .registry
        .get(&destination)
        .ok_or_else(|| ApiError::not_found(format!("no destination {destination}")))?;
    // The URL as the CRM called it: what the signature covers.
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let request = WebhookRequest {
        method: method.to_string(),
        url: format!("{scheme}://{host}{uri}"),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let verdict = dest
        .adapter
        .verify_webhook(&request)
        .await
        .map_err(ApiError::internal)?;
    match verdict {
        Ok(receipt) => {
            let events = &receipt.events;
            let now = crate::now_ms();
            let digest: [u8; 32] = Sha256::digest(&body).into();
            let first = state
                .store
                .remember_webhook(&destination, &digest, now, now - REPLAY_WINDOW_MS)
                .await
                .map_err(ApiError::internal)?;
            if first {
                Metrics::add(&state.metrics.webhook_events, events.len() as u64);
                for e in events {
                    tracing::info!(destination = %destination, kind = %e.kind, object = %e.object_id, "CRM event");
                }
            } else {
                Metrics::add(&state.metrics.webhook_replays, 1);
                tracing::info!(destination = %destination, "webhook delivery replayed: answered, its events not taken again");
            }
            Ok(match receipt.answer {
                Some(answer) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, answer.content_type)],
                    answer.body,
                )
                    .into_response(),
                None => (
                    StatusCode::OK,
                    Json(serde_json::json!({ "received": events.len(), "replayed": !first })),
                )
                    .into_response(),
            })
        }
        Err(e) => {
            Metrics::add(&state.metrics.webhook_rejected, 1);
            let code = match e {
                WebhookError::Unsupported => ErrorCode::WebhooksUnsupported,
                WebhookError::BadSignature => ErrorCode::BadSignature,
                WebhookError::StaleTimestamp => ErrorCode::StaleTimestamp,
                WebhookError::Malformed(_) => ErrorCode::MalformedWebhook,
            };
            Err(ApiError::new(code, e.to_string()))
        }
    }
}
