//! The HTTP API: routes, shared state and the one error type every handler
//! answers with (`{"error": {"code", "message", "field"}}`); internal errors
//! are logged and answered as an opaque 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::normalize::NormalizeOptions;
use crate::outbox::Outbox;
use crate::plugins::Registry;
use crate::route::Priority;
use crate::store::Store;

/// A source as ingest sees it.
pub struct SourceRuntime {
    pub name: String,
    pub options: NormalizeOptions,
    pub priority: Priority,
    /// The transform plugin and its settings, if the source has one.
    pub transform: Option<(String, Vec<(String, String)>)>,
}

/// State shared by the handlers.
pub struct AppState {
    /// API key → source.
    pub sources: HashMap<String, Arc<SourceRuntime>>,
    pub outbox: Outbox,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub max_leads_per_request: usize,
    /// Outstanding jobs and the limits ingest holds them to.
    pub backlog: Arc<crate::ingest::Backlog>,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/v1/leads", post(crate::ingest::post_leads))
        .route("/v1/leads/{id}", get(get_lead))
        .route("/v1/persons/{id}", get(get_person))
        .merge(crate::dlq::routes())
        .route("/v1/plugins", get(plugins))
        .route("/v1/health", get(health))
        .route("/v1/webhooks/{destination}", post(crate::webhooks::receive))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // A bug must cost one request a 500, never the connection or a worker.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .with_state(state)
}

/// The API's error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Logs the cause and answers an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the host's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

async fn get_lead(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.lead(&id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no lead {id}"),
        )),
    }
}

/// A person's golden record with each field's provenance, and its leads.
async fn get_person(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let person = crate::outbox::load_person(&*state.store, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no person {id} (a person's id is the id of its first lead)"),
            )
        })?;
    let leads = state
        .store
        .person_leads(&id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "person": person, "leads": leads })).into_response())
}

async fn plugins(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "plugins": state.registry.status(),
        "transforms": state.registry.transform_status(),
    }))
    .into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let counts = state.store.counts().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "status": "ok",
        "store": counts,
        "latency": state.metrics.latency.summaries(),
    }))
    .into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counts = state.store.counts().await.ok();
    let text = state
        .metrics
        .render(counts.as_ref(), &state.registry.status());
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
