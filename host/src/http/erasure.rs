//! The right to erasure (scope `admin`): `DELETE /v1/persons/{id}` erases
//! the person's personal data from every lead, the golden record, jobs,
//! dead letters, audit details and the dedupe index, stops its
//! deliveries, queues the deletion of each of its CRM records where the
//! destination's adapter can delete, and answers with the receipt.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::routing::delete;

use super::{ApiError, AppState};
use crate::store::ErasureReceipt;

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/v1/persons/{id}", delete(erase))
}

/// Erases a person (its id is its first lead's) and answers with what was
/// erased where.
#[utoipa::path(
    delete,
    path = "/v1/persons/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The person's id (its first lead's id)")),
    responses(
        (status = 200, description = "Erased: the receipt (ids and counts, no personal data)", body = ErasureReceipt),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope admin (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No lead has this person", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["admin"]))
)]
pub async fn erase(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ErasureReceipt>, ApiError> {
    match state
        .ingest
        .outbox
        .erase(&id, state.registry.erasable())
        .await
    {
        Ok(Some(receipt)) => {
            tracing::info!(
                leads = receipt.leads.len(),
                jobs = receipt.jobs,
                "person erased"
            );
            crate::metrics::Metrics::add(&state.metrics.erasures, 1);
            Ok(Json(receipt))
        }
        Ok(None) => Err(ApiError::not_found("no such person")),
        Err(e) => {
            tracing::error!(error = %e, "erasure failed");
            Err(ApiError::internal(
                "the erasure failed; nothing was answered as erased",
            ))
        }
    }
}
