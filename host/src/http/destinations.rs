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

async fn resume(
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
