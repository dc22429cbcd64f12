//! `POST /v1/leads`: authenticates the source by its API key, hands the
//! body to [`Ingest::accept`](crate::pipeline::ingest::Ingest::accept) and
//! answers 202 (all stored), 207 (some rejected) or 422 (none stored), with
//! one result per lead; a payload refused whole gets the API's error.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, ErrorCode};
use crate::metrics::Metrics;
use crate::pipeline::ingest::{IngestError, PayloadError, TransformFailure};

pub async fn post_leads(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Every post counts, refused ones included.
    Metrics::add(&state.metrics.ingest_requests, 1);
    let source = state.credentials.source(&headers)?;
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
        assert_eq!(
            parse_body(b"[1,").unwrap_err().code,
            ErrorCode::MalformedJson
        );
    }
}
