//! Webhooks: `POST /v1/webhooks/{destination}`. The destination's adapter
//! verifies the CRM's signature or shared token (with a secret that stays
//! in the host) and parses the events; a bad signature or a stale
//! timestamp is refused with 401, a malformed body with 400. The answer is
//! the count of events as JSON, or the acknowledgement the CRM expects
//! when the adapter gives one (Salesforce's SOAP `<Ack>true</Ack>`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use leadgate_runtime::{WebhookError, WebhookRequest};

use super::{ApiError, AppState, ErrorCode};
use crate::metrics::Metrics;

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
            Metrics::add(&state.metrics.webhook_events, events.len() as u64);
            for e in events {
                tracing::info!(destination = %destination, kind = %e.kind, object = %e.object_id, "CRM event");
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
                    Json(serde_json::json!({ "received": events.len() })),
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
