//! The dead-letter queue over HTTP: list, inspect (the payload, every
//! attempt and its error), replay one, many or all of a destination
//! ([`crate::outbox::replay`]), and discard with a reason. `leadgate dlq …`
//! ([`crate::cli::dlq`]) drives the same endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiError, AppState, ErrorCode};
use crate::outbox::replay::MappingChoice;
use crate::store::{DlqOutcome, DlqStatus};

/// Most dead letters one list or `all` replay covers.
const MAX_LIST: u32 = 10_000;

/// Listing and inspecting (scope `read`).
pub fn read_routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/dead-letters", get(list))
        .route("/v1/dead-letters/{id}", get(show))
}

/// Replaying and discarding (scope `operate`).
pub fn operate_routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/dead-letters/replay", post(replay))
        .route("/v1/dead-letters/discard", post(discard))
}

#[derive(Deserialize)]
struct ListQuery {
    destination: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let rows = state
        .store
        .dead_letters(
            q.destination.as_deref(),
            q.limit.unwrap_or(100).min(MAX_LIST),
        )
        .await
        .map_err(ApiError::internal)?;
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(lead_id, job)| serde_json::json!({"lead_id": lead_id, "job": job}))
        .collect();
    Ok(Json(serde_json::json!({ "dead_letters": items })).into_response())
}

async fn show(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.job(&id).await.map_err(ApiError::internal)? {
        Some(detail) => Ok(Json(detail).into_response()),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// Which dead letters: listed ids, or every one of a destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    /// With `all`: every dead letter of this destination.
    destination: Option<String>,
    #[serde(default)]
    all: bool,
}

impl Selection {
    async fn ids(self, state: &AppState) -> Result<Vec<String>, ApiError> {
        match (self.ids.is_empty(), self.all) {
            (false, false) => Ok(self.ids),
            (true, true) => Ok(state
                .store
                .dead_letters(self.destination.as_deref(), MAX_LIST)
                .await
                .map_err(ApiError::internal)?
                .into_iter()
                .map(|(_, job)| job.id)
                .collect()),
            _ => Err(ApiError::new(
                ErrorCode::InvalidSelection,
                "give either \"ids\" or \"all\": true (optionally with \"destination\")",
            )
            .on_field("ids")),
        }
    }
}

#[derive(Deserialize)]
struct ReplayRequest {
    #[serde(flatten)]
    selection: Selection,
    #[serde(default)]
    mapping: MappingChoice,
}

async fn replay(
    State(state): State<Arc<AppState>>,
    req: Result<Json<ReplayRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    let ids = req.selection.ids(&state).await?;
    let registry = &state.registry;
    let results = crate::outbox::replay::replay(
        &*state.store,
        &**registry,
        |destination| registry.get(destination).map(|d| d.adapter_label()),
        ids,
        req.mapping,
    )
    .await
    .map_err(ApiError::internal)?;
    if results.iter().any(|r| r.status == DlqStatus::Replayed) {
        state.ingest.outbox.wake_delivery();
    }
    Ok(Json(summary(results)).into_response())
}

#[derive(Deserialize)]
struct DiscardRequest {
    #[serde(flatten)]
    selection: Selection,
    #[serde(default)]
    reason: String,
}

/// A JSON body, or the API's error naming what is wrong with it.
fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    parsed
        .map(|Json(t)| t)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.body_text()))
}

async fn discard(
    State(state): State<Arc<AppState>>,
    req: Result<Json<DiscardRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    if req.reason.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::ReasonRequired,
            "say why the dead letters are discarded",
        )
        .on_field("reason"));
    }
    let ids = req.selection.ids(&state).await?;
    let results = state
        .store
        .discard(&ids, req.reason.trim(), crate::now_ms())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(summary(results)).into_response())
}

/// Counts per status, then every job's outcome.
fn summary(results: Vec<DlqOutcome>) -> serde_json::Value {
    let mut counts = std::collections::BTreeMap::<DlqStatus, usize>::new();
    for r in &results {
        *counts.entry(r.status).or_default() += 1;
    }
    serde_json::json!({ "counts": counts, "results": results })
}
