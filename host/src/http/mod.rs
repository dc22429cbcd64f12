//! The HTTP edge: routes, the state the handlers share, and the one error
//! type every handler answers with (`{"error": {"code", "message",
//! "field"}}`); internal errors are logged and answered as an opaque 500.
//! Handlers only translate: the work is done by the pipeline, the outbox
//! and the store, which know nothing of HTTP.

pub mod auth;
pub mod consent;
pub mod destinations;
pub mod dlq;
pub mod erasure;
pub mod keys;
pub mod leads;
pub mod openapi;
pub mod read;
pub mod serve;
pub mod webhooks;

use std::sync::Arc;

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::config::Scope;
use crate::metrics::Metrics;
use crate::pipeline::ingest::Ingest;
use crate::plugins::Registry;
use crate::store::Store;

/// State shared by the handlers.
pub struct AppState {
    /// Sources' API keys and admin tokens.
    pub credentials: auth::Credentials,
    /// Largest request body read.
    pub max_body_bytes: usize,
    pub ingest: Arc<Ingest>,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// The store's keys and re-sealing passes.
    pub rotation: Arc<crate::store::rotation::Rotation>,
}

/// Every route, grouped by what it asks of the caller: nothing (health),
/// a source's API key (ingest), the CRM's signature (webhooks), or an
/// admin token with a scope. A request may take `request_timeout`, body
/// included, and a body up to `state.max_body_bytes`.
pub fn router(state: Arc<AppState>, request_timeout: std::time::Duration) -> axum::Router {
    let open = axum::Router::new()
        .route("/v1/health", get(read::health))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/leads", post(leads::post_leads))
        .route("/v1/webhooks/{destination}", post(webhooks::receive));
    let read = axum::Router::new()
        .route("/v1/leads/{id}", get(read::lead))
        .route("/v1/persons/{id}", get(read::person))
        .route("/v1/plugins", get(read::plugins))
        .route("/v1/stats", get(read::stats))
        .route("/metrics", get(read::metrics))
        .merge(dlq::read_routes());
    let operate = axum::Router::new()
        .merge(dlq::operate_routes())
        .merge(destinations::routes());
    axum::Router::new()
        .merge(open)
        .merge(guarded(read, Scope::Read, &state))
        .merge(guarded(operate, Scope::Operate, &state))
        .merge(guarded(
            keys::routes()
                .merge(erasure::routes())
                .merge(consent::routes()),
            Scope::Admin,
            &state,
        ))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            request_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // A bug must cost one request a 500, never the connection or a worker.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .with_state(state)
}

/// `/metrics` alone, without a token, for `server.metrics_listen`.
pub fn metrics_router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(read::metrics))
        .with_state(state)
}

/// `routes` behind an admin token with `scope`.
fn guarded(
    routes: axum::Router<Arc<AppState>>,
    scope: Scope,
    state: &Arc<AppState>,
) -> axum::Router<Arc<AppState>> {
    routes.route_layer(axum::middleware::from_fn_with_state(
        (state.clone(), scope),
        auth::require,
    ))
}

/// Every error code the API answers with; each has one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    RateLimited,
    BodyTooLarge,
    UnreadableBody,
    InvalidQuery,
    NotFound,
    MalformedJson,
    EmptyBody,
    TooManyLeads,
    BacklogFull,
    TransformUnavailable,
    TransformMalformed,
    TransformInvalidField,
    TransformFailed,
    InvalidSelection,
    ReasonRequired,
    EncryptionOff,
    Starting,
    InvalidConsent,
    WebhooksUnsupported,
    BadSignature,
    StaleTimestamp,
    MalformedWebhook,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            Unauthorized | BadSignature | StaleTimestamp => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound | WebhooksUnsupported => StatusCode::NOT_FOUND,
            MalformedJson | EmptyBody | MalformedWebhook | UnreadableBody | InvalidQuery => {
                StatusCode::BAD_REQUEST
            }
            TooManyLeads | BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BacklogFull | RateLimited => StatusCode::TOO_MANY_REQUESTS,
            TransformUnavailable | Starting => StatusCode::SERVICE_UNAVAILABLE,
            TransformMalformed
            | TransformInvalidField
            | InvalidSelection
            | ReasonRequired
            | InvalidConsent => StatusCode::UNPROCESSABLE_ENTITY,
            TransformFailed => StatusCode::BAD_GATEWAY,
            EncryptionOff => StatusCode::CONFLICT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The API's error answer.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault.
    pub field: Option<String>,
    /// More machine-readable facts, beside `code` and `message`.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(flatten)]
    details: &'a serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            details: serde_json::Map::new(),
            retry_after_s: None,
        }
    }

    /// The same error, naming the request field at fault.
    pub fn on_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Logs the cause and answers an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; see the host's log")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                details: &self.details,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"leadgate\""),
            );
        }
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        response
    }
}
