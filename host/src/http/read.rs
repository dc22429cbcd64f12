//! The read side of the API: a lead with its deliveries and audit trail, a
//! person's golden record, the loaded plugins, the store's counts,
//! `/metrics`, and the open health check.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState, ErrorCode};
use crate::outbox::IndexState;
use crate::store::load_person;

/// A lead: normalized, its dedupe decision, each delivery and its audit
/// trail.
#[utoipa::path(
    get,
    path = "/v1/leads/{id}",
    tag = "read",
    params(("id" = String, Path, description = "The lead's id (from its ingest result)")),
    responses(
        (status = 200, description = "The lead, its decision, deliveries and audit trail", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such lead", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn lead(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.lead(&id).await.map_err(ApiError::internal)? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiError::not_found(format!("no lead {id}"))),
    }
}

/// A person's golden record with each field's provenance, and its leads.
#[utoipa::path(
    get,
    path = "/v1/persons/{id}",
    tag = "read",
    params(("id" = String, Path, description = "The person's id: the id of its first lead")),
    responses(
        (status = 200, description = "`person` (the golden record, each field's source, lead, time and rule) and `leads`", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such person", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn person(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let person = load_person(&*state.store, &id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no person {id} (a person's id is the id of its first lead)"
            ))
        })?;
    let leads = state
        .store
        .person_leads(&id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "person": person, "leads": leads })).into_response())
}

/// The loaded adapters and transforms.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "read",
    responses(
        (status = 200, description = "`plugins` (each destination's adapter: version, hash, WIT version, calls, rate-limit windows, breaker, OAuth state) and `transforms`", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn plugins(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "plugins": state.registry.status(),
        "transforms": state.registry.transform_status(),
    }))
    .into_response()
}

/// Open to anyone: says the host is up and its store answers, nothing
/// more (no counts, no names). While the dedupe index is rebuilt at
/// start-up the host listens but answers 503 `starting` (leads posted
/// meanwhile wait for the index, they are not refused).
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "meta",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`", body = Object, example = json!({"status": "ok"})),
        (status = 500, description = "The store does not answer, or the dedupe index could not be rebuilt from it", body = super::openapi::ErrorAnswer),
        (status = 503, description = "`starting`: the dedupe index is being rebuilt from the store (with `Retry-After`)", body = super::openapi::ErrorAnswer),
    )
)]
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    match state.ingest.outbox.index_state() {
        IndexState::Ready => {}
        IndexState::Loading => {
            let mut e = ApiError::new(
                ErrorCode::Starting,
                "starting: the dedupe index is being rebuilt from the store",
            );
            e.retry_after_s = Some(1);
            return Err(e);
        }
        IndexState::Failed(_) => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "the dedupe index could not be rebuilt from the store; see the host's log",
            ));
        }
    }
    state
        .store
        .outstanding_jobs()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}

/// The store's counts and the pipeline's latency summaries.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "read",
    responses(
        (status = 200, description = "`store` (leads, duplicates, jobs by state, per destination) and `latency` (lead-to-CRM per priority class)", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn stats(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let counts = state.store.counts().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "store": counts,
        "latency": state.metrics.latency.summaries(),
    }))
    .into_response())
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "read",
    responses(
        (status = 200, description = "The Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counts = state.store.counts().await.ok();
    let destinations: Vec<_> = state
        .registry
        .status()
        .iter()
        .map(crate::plugins::PluginStatus::gauges)
        .collect();
    let writer = state.ingest.outbox.gauges();
    let text = state
        .metrics
        .render(counts.as_ref(), Some(&writer), &destinations);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
