//! The dead-letter queue over HTTP: list, inspect (the payload, every
//! attempt and its error), replay one, many or all of a destination, and
//! discard with a reason. `leadgate dlq …` ([`crate::dlq_cli`]) drives the
//! same endpoints.
//!
//! A replay is idempotent: only a job that is still a dead letter goes back
//! to the queue, with fresh attempts, so replaying twice (or replaying
//! while another operator does) makes one delivery. The job keeps its
//! idempotency key, so the CRM upserts the same record. By default it is
//! delivered with the payload and mapping version it was made with; asked
//! for `"mapping": "current"`, it is mapped again from the person's current
//! golden record with the destination's current mapping. Either way it is
//! delivered by the destination's current adapter, and the audit trail
//! names both.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::{ApiError, AppState};
use crate::route::{Priority, Route};
use crate::store::{DlqOutcome, Replay};

/// Most dead letters one list or `all` replay covers.
const MAX_LIST: u32 = 10_000;

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/dead-letters", get(list))
        .route("/v1/dead-letters/replay", post(replay))
        .route("/v1/dead-letters/discard", post(discard))
        .route("/v1/dead-letters/{id}", get(show))
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
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job {id}"),
        )),
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
            _ => {
                let mut e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_selection",
                    "give either \"ids\" or \"all\": true (optionally with \"destination\")",
                );
                e.field = Some("ids".into());
                Err(e)
            }
        }
    }
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum MappingChoice {
    /// The payload the job was made with.
    #[default]
    Original,
    /// Mapped again from the person's golden record, current mapping.
    Current,
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
    let mut replays = Vec::with_capacity(ids.len());
    let mut refused = Vec::new();
    for id in ids {
        match prepare(&state, id, req.mapping).await? {
            Ok(r) => replays.push(r),
            Err(outcome) => refused.push(outcome),
        }
    }
    let mut results = state
        .store
        .replay(&replays, crate::now_ms())
        .await
        .map_err(ApiError::internal)?;
    if results.iter().any(|r| r.status == "replayed") {
        state.outbox.wake_delivery();
    }
    results.extend(refused);
    Ok(Json(summary(results)).into_response())
}

/// The replay of one job, or why it cannot be replayed here.
async fn prepare(
    state: &AppState,
    id: String,
    mapping: MappingChoice,
) -> Result<Result<Replay, DlqOutcome>, ApiError> {
    let refuse = |id: String, status: &str| {
        Ok(Err(DlqOutcome {
            id,
            status: status.into(),
            mapping_version: None,
        }))
    };
    let Some(detail) = state.store.job(&id).await.map_err(ApiError::internal)? else {
        return refuse(id, "not_found");
    };
    let destination = &detail.job.destination;
    let Some(dest) = state.registry.get(destination) else {
        return refuse(id, "destination_unavailable");
    };
    let adapter = dest.adapter_label();
    let remapped = match mapping {
        MappingChoice::Original => None,
        MappingChoice::Current => {
            let Some(person) = crate::outbox::load_person(&*state.store, &detail.person_id)
                .await
                .map_err(ApiError::internal)?
            else {
                return refuse(id, "not_found");
            };
            let route = Route {
                destination: destination.clone(),
                priority: Priority::parse(&detail.job.priority).unwrap_or_default(),
                sla_deadline_ms: detail.job.sla_deadline_ms,
            };
            let mut mapped = state.outbox.render(&person, vec![route]);
            match mapped.pop().map(|m| (m.payload, m.mapping_version)) {
                Some((Ok(payload), version)) => Some((payload, version)),
                Some((Err(_), _)) => return refuse(id, "unmappable"),
                None => return refuse(id, "destination_unavailable"),
            }
        }
    };
    Ok(Ok(Replay {
        id,
        remapped,
        adapter,
    }))
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
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text()))
}

async fn discard(
    State(state): State<Arc<AppState>>,
    req: Result<Json<DiscardRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(req)?;
    if req.reason.trim().is_empty() {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
            "say why the dead letters are discarded",
        );
        e.field = Some("reason".into());
        return Err(e);
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
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for r in &results {
        *counts.entry(r.status.clone()).or_default() += 1;
    }
    serde_json::json!({ "counts": counts, "results": results })
}
