//! `POST /v1/leads`: authenticates the source by its API key, hands the
//! body to [`Ingest::accept`](crate::pipeline::ingest::Ingest::accept) and
//! answers 202 (all stored), 207 (some rejected) or 422 (none stored), with
//! one result per lead; a payload refused whole gets the API's error.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, ErrorCode};
use crate::metrics::Metrics;
use crate::pipeline::ingest::{IngestError, IngestReport, PayloadError, TransformFailure};

/// Posts leads as a source.
#[utoipa::path(
    post,
    path = "/v1/leads",
    tag = "ingest",
    request_body(
        content(
            (super::openapi::LeadPayloadDoc = "application/json"),
            (String = "application/x-ndjson"),
        ),
        description = "One lead, a JSON array of leads, or NDJSON (one lead per line)",
    ),
    responses(
        (status = 202, description = "Every lead stored (new persons and duplicates)", body = IngestReport),
        (status = 207, description = "Some leads stored, some rejected (see each result's errors)", body = IngestReport),
        (status = 422, description = "No lead stored: each result says why; or the source's transform refused the payload", body = IngestReport),
        (status = 400, description = "Not one lead, a JSON array or NDJSON (`malformed_json`), or no lead at all: an empty body or `[]` (`empty_body`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "No or an unknown API key", body = super::openapi::ErrorAnswer),
        (status = 403, description = "An admin token: only sources post leads", body = super::openapi::ErrorAnswer),
        (status = 413, description = "Body over `server.max_body_bytes` or more leads than `server.max_leads_per_request`", body = super::openapi::ErrorAnswer),
        (status = 429, description = "The source's backlog is full or it is over its rate limit; see `Retry-After`", body = super::openapi::ErrorAnswer),
        (status = 502, description = "The source's transform failed", body = super::openapi::ErrorAnswer),
        (status = 503, description = "The source's transform is not loaded", body = super::openapi::ErrorAnswer),
    ),
    security(("source_key" = []))
)]
pub async fn post_leads(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let answer = accept(&state, request).await;
    state
        .metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    answer
}

async fn accept(state: &AppState, request: Request) -> Result<Response, ApiError> {
    // Every post counts, refused ones included.
    Metrics::add(&state.metrics.ingest_requests, 1);
    // The caller is known before its body is read.
    let source = state.credentials.source(request.headers())?;
    let body = axum::body::to_bytes(request.into_body(), state.max_body_bytes)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the body is over {} bytes", state.max_body_bytes),
                )
            } else {
                ApiError::new(ErrorCode::UnreadableBody, format!("reading the body: {e}"))
            }
        })?;
    let report = state.ingest.accept(&source, &body).await?;
    let status = match (report.accepted, report.rejected) {
        (_, 0) => StatusCode::ACCEPTED,
        (0, _) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::MULTI_STATUS,
    };
    Ok((status, Json(report)).into_response())
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> ApiError {
        let message = e.to_string();
        match e {
            IngestError::BacklogFull {
                outstanding,
                limit,
                retry_after_s,
                ..
            } => {
                let mut err = ApiError::new(ErrorCode::BacklogFull, message);
                err.details.insert("outstanding".into(), outstanding.into());
                err.details.insert("limit".into(), limit.into());
                err.details
                    .insert("retry_after_s".into(), retry_after_s.into());
                err.retry_after_s = Some(retry_after_s);
                err
            }
            IngestError::RateLimited {
                leads,
                leads_per_second,
                burst,
                retry_after_s,
                ..
            } => {
                let mut err = ApiError::new(ErrorCode::RateLimited, message);
                err.details.insert("leads".into(), leads.into());
                err.details
                    .insert("leads_per_second".into(), leads_per_second.into());
                err.details.insert("burst".into(), burst.into());
                if let Some(s) = retry_after_s {
                    err.details.insert("retry_after_s".into(), s.into());
                }
                err.retry_after_s = retry_after_s;
                err
            }
            IngestError::Payload(PayloadError::Empty) => {
                ApiError::new(ErrorCode::EmptyBody, "no lead in the body")
            }
            IngestError::Payload(PayloadError::Malformed(_)) => {
                ApiError::new(ErrorCode::MalformedJson, message)
            }
            IngestError::TooManyLeads { count, limit } => ApiError::new(
                ErrorCode::TooManyLeads,
                format!("{count} leads in one request; the limit is {limit}"),
            ),
            IngestError::Transform(TransformFailure::Unavailable(_)) => {
                ApiError::new(ErrorCode::TransformUnavailable, message)
            }
            IngestError::Transform(TransformFailure::Refused(refusal)) => match refusal {
                leadgate_runtime::TransformError::Malformed(_) => {
                    ApiError::new(ErrorCode::TransformMalformed, message)
                }
                leadgate_runtime::TransformError::InvalidField { ref field, .. } => {
                    ApiError::new(ErrorCode::TransformInvalidField, message).on_field(field)
                }
            },
            IngestError::Transform(TransformFailure::Failed { .. }) => ApiError::new(
                ErrorCode::TransformFailed,
                format!("{message}; nothing was accepted, retry later"),
            ),
            IngestError::Outbox(e) => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ingest::parse_payload;

    fn parse_body(body: &[u8]) -> Result<usize, ApiError> {
        parse_payload(body)
            .map(|leads| leads.len())
            .map_err(|e| ApiError::from(IngestError::Payload(e)))
    }

    #[tokio::test]
    async fn a_full_backlog_answers_429_with_retry_after() {
        let response = ApiError::from(IngestError::BacklogFull {
            source_name: "web".into(),
            outstanding: 12,
            limit: 10,
            retry_after_s: 1,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "backlog_full");
        assert_eq!(body["error"]["limit"], 10);
        assert_eq!(body["error"]["outstanding"], 12);
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"a":1}"#).unwrap(), 1);
        assert_eq!(parse_body(br#"[{"a":1},{"b":2}]"#).unwrap(), 2);
        assert_eq!(parse_body(b"{\"a\":1}\n{\"b\":2}\n\n").unwrap(), 2);
        let e = parse_body(b"{\"a\":1}\n{\"b\":").unwrap_err();
        assert_eq!(
            (e.status(), e.code),
            (StatusCode::BAD_REQUEST, ErrorCode::MalformedJson)
        );
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert_eq!(
            parse_body(b"{\"a\":1} {\"b\":2}").unwrap_err().code,
            ErrorCode::MalformedJson
        );
        assert_eq!(parse_body(b"  ").unwrap_err().code, ErrorCode::EmptyBody);
        assert_eq!(parse_body(b"[]").unwrap_err().code, ErrorCode::EmptyBody);
        assert_eq!(
            parse_body(b"[1,").unwrap_err().code,
            ErrorCode::MalformedJson
        );
    }
}
