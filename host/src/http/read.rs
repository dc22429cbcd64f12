//! The read side of the API: a lead with its deliveries and audit trail, a
//! person's golden record, the loaded plugins, the store's counts,
//! `/metrics`, and the open health check.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::store::load_person;

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

pub async fn plugins(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({
        "plugins": state.registry.status(),
        "transforms": state.registry.transform_status(),
    }))
    .into_response()
}

/// Open to anyone: says the host is up and its store answers, nothing
/// more (no counts, no names).
pub async fn health(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    state
        .store
        .outstanding_jobs()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "status": "ok" })).into_response())
}

/// The store's counts and the pipeline's latency summaries.
pub async fn stats(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let counts = state.store.counts().await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "store": counts,
        "latency": state.metrics.latency.summaries(),
    }))
    .into_response())
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counts = state.store.counts().await.ok();
    let destinations: Vec<_> = state
        .registry
        .status()
        .iter()
        .map(crate::plugins::PluginStatus::gauges)
        .collect();
    let text = state.metrics.render(counts.as_ref(), &destinations);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
