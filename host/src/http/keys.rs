//! The store's keys (scope `admin`): `GET /v1/keys` shows the data keys'
//! ids, the current one and the re-sealing pass (never a key);
//! `POST /v1/keys/rotate` makes a new current data key and re-seals every
//! value under it in the background while the host serves.
//! `leadgate keys status|rotate` call them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiError, AppState, ErrorCode};
use crate::store::rotation::{KeysView, RotationError};

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new()
        .route("/v1/keys", get(keys))
        .route("/v1/keys/rotate", post(rotate))
}

/// The store's data keys (ids only), the current one, and the re-sealing
/// pass.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "admin",
    responses(
        (status = 200, description = "The keys' ids and the re-sealing pass", body = KeysView),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope admin (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["admin"]))
)]
pub async fn keys(State(state): State<Arc<AppState>>) -> Json<KeysView> {
    Json(state.rotation.view())
}

/// A new current data key, and every stored value re-sealed under it in
/// the background (with configured keys: re-seals under the configured
/// current one).
#[utoipa::path(
    post,
    path = "/v1/keys/rotate",
    tag = "admin",
    responses(
        (status = 202, description = "Rotated; the re-sealing pass runs (see `pass`)", body = KeysView),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope admin (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 409, description = "Encryption at rest is off", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["admin"]))
)]
pub async fn rotate(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    match state.rotation.rotate() {
        Ok(view) => Ok((StatusCode::ACCEPTED, Json(view)).into_response()),
        Err(e @ RotationError::EncryptionOff) => {
            Err(ApiError::new(ErrorCode::EncryptionOff, e.to_string()))
        }
        Err(RotationError::Seal(e)) => {
            tracing::error!(error = %e, "key rotation failed");
            Err(ApiError::internal("the new key could not be kept"))
        }
    }
}
