//! Operator actions on a destination: `POST /v1/destinations/{name}/resume`
//! lets a destination whose OAuth grant was refused call its token
//! endpoint again (after the authorization was renewed at the CRM), and
//! its waiting jobs go out. `leadgate destination resume NAME` calls it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{ApiError, AppState};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/v1/destinations/{name}/resume", post(resume))
}

/// Lets a destination paused by a refused OAuth grant call its token
/// endpoint again.
#[utoipa::path(
    post,
    path = "/v1/destinations/{name}/resume",
    tag = "operate",
    params(("name" = String, Path, description = "The destination's name")),
    responses(
        (status = 200, description = "`destination`, `oauth` (whether it has a grant) and `was_paused`", body = Object),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope operate (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such destination", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["operate"]))
)]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if !state.registry.names().contains(&name) {
        return Err(ApiError::not_found(format!("no destination {name:?}")));
    }
    let was_paused = state.registry.resume(&name).await;
    Ok(Json(serde_json::json!({
        "destination": name,
        "oauth": was_paused.is_some(),
        "was_paused": was_paused.unwrap_or(false),
    }))
    .into_response())
}
