//! The dead-letter queue over HTTP: list, inspect (the payload, every
//! attempt and its error), replay one, many or all of a destination
//! ([`crate::outbox::replay`]), and discard with a reason. `leadgate dlq …`
//! ([`crate::cli::dlq`]) drives the same endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this destination's dead letters.
    destination: Option<String>,
    /// Most dead letters listed (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// Dead letters, newest first.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "read",
    params(ListQuery),
    responses(
        (status = 200, description = "`dead_letters`: each with its `lead_id` and `job` (destination, attempts, last error, payload)", body = Object),
        (status = 400, description = "A query parameter that does not parse (`invalid_query`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))?;
    if q.limit.is_some_and(|l| l == 0 || l > MAX_LIST) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be 1 to {MAX_LIST}"),
        )
        .on_field("limit"));
    }
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

/// One job: its payload, every attempt and error, replays.
#[utoipa::path(
    get,
    path = "/v1/dead-letters/{id}",
    tag = "read",
    params(("id" = String, Path, description = "The job's id (see the list)")),
    responses(
        (status = 200, description = "The job with its attempts and audit", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope read (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such job", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["read"]))
)]
pub async fn show(
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
pub struct Selection {
    #[serde(default)]
    ids: Vec<String>,
    /// With `all`: every dead letter of this destination.
    destination: Option<String>,
    #[serde(default)]
    all: bool,
}

/// Documented as what it accepts: either `ids` (at least one) or `all:
/// true` with an optional `destination`, never both.
impl utoipa::PartialSchema for Selection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
        };
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let by_ids = ObjectBuilder::new()
            .property(
                "ids",
                ArrayBuilder::new().items(string()).min_items(Some(1)),
            )
            .required("ids")
            .property(
                "all",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([false])),
            )
            .description(Some("These jobs"));
        let all = ObjectBuilder::new()
            .property(
                "all",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true])),
            )
            .required("all")
            .property(
                "destination",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some("Only this destination's")),
            )
            .property(
                "ids",
                ArrayBuilder::new().items(string()).max_items(Some(0)),
            )
            .description(Some("Every dead letter (of a destination)"));
        utoipa::openapi::RefOr::T(Schema::OneOf(
            OneOfBuilder::new().item(by_ids).item(all).build(),
        ))
    }
}

impl utoipa::ToSchema for Selection {}

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

/// Dead letters to put back in the queue.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ReplayRequest {
    #[serde(flatten)]
    selection: Selection,
    #[serde(default)]
    mapping: MappingChoice,
}

/// Puts dead letters back in the queue (idempotent: only a job still dead
/// goes back).
#[utoipa::path(
    post,
    path = "/v1/dead-letters/replay",
    tag = "operate",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "`counts` by status and each job's `results` (`replayed`, `not_dead`, `unknown`, …)", body = Object),
        (status = 400, description = "Not the JSON this takes (`malformed_json`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope operate (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 422, description = "Neither `ids` nor `all` (`invalid_selection`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["operate"]))
)]
pub async fn replay(
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

/// Dead letters to take out of the queue for good, and why.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct DiscardRequest {
    #[serde(flatten)]
    selection: Selection,
    /// Why (kept in the audit trail).
    #[serde(default)]
    #[schema(required = true, min_length = 1, pattern = r"\S")]
    reason: String,
}

/// A JSON body, or the API's error naming what is wrong with it.
pub(super) fn body<T>(parsed: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    parsed
        .map(|Json(t)| t)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.body_text()))
}

/// Takes dead letters out of the queue for good, with a reason kept in
/// the audit trail.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/discard",
    tag = "operate",
    request_body = DiscardRequest,
    responses(
        (status = 200, description = "`counts` by status and each job's `results`", body = Object),
        (status = 400, description = "Not the JSON this takes (`malformed_json`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope operate (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 422, description = "No reason (`reason_required`), or neither `ids` nor `all` (`invalid_selection`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["operate"]))
)]
pub async fn discard(
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
