//! A person's consent withdrawal (scope `admin`):
//! `POST /v1/persons/{id}/consent` with `{"withdrawn": true}` records it
//! (as a lead of the person, in the audit trail); nothing more is pushed
//! for the person, and destinations whose mapping sends the withdrawal
//! get an update.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, ErrorCode};
use crate::pipeline::normalize::timestamp;
use crate::store::JobView;

pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/v1/persons/{id}/consent", post(withdraw))
}

/// A change to a person's consent: only a withdrawal is recorded here
/// (consent is given by a lead that carries it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    /// Must be true.
    pub withdrawn: bool,
    /// When the person withdrew it (RFC 3339 or a date); default now.
    #[serde(default)]
    pub at: Option<String>,
}

/// Documented as what it accepts: `withdrawn` is `true`, `at` a time.
impl utoipa::PartialSchema for ConsentChange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
        ObjectBuilder::new()
            .property(
                "withdrawn",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true]))
                    .description(Some("true: the person withdrew consent")),
            )
            .required("withdrawn")
            .property(
                "at",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("When (RFC 3339; a date is taken too); default now")),
            )
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .into()
    }
}

impl utoipa::ToSchema for ConsentChange {}

/// What a withdrawal did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Withdrawn {
    pub person_id: String,
    /// RFC 3339, UTC.
    pub withdrawn_at: String,
    /// The lead that records it (source `leadgate:consent-withdrawal`).
    pub lead_id: String,
    /// The updates that carry it to destinations whose mapping sends it.
    #[schema(value_type = Vec<Object>)]
    pub updates: Vec<JobView>,
}

/// Records a person's consent withdrawal.
#[utoipa::path(
    post,
    path = "/v1/persons/{id}/consent",
    tag = "admin",
    params(("id" = String, Path, description = "The person's id (its first lead's id)")),
    request_body = ConsentChange,
    responses(
        (status = 200, description = "Recorded: the lead that records it and the updates it queued", body = Withdrawn),
        (status = 400, description = "Not the JSON this takes (`malformed_json`)", body = super::openapi::ErrorAnswer),
        (status = 401, description = "No admin token, or an unknown one", body = super::openapi::ErrorAnswer),
        (status = 403, description = "The token lacks the scope admin (named in the error's `scope`)", body = super::openapi::ErrorAnswer),
        (status = 404, description = "No such person", body = super::openapi::ErrorAnswer),
        (status = 422, description = "`withdrawn` is not true, or `at` is not a time (`invalid_consent`, naming the field)", body = super::openapi::ErrorAnswer),
    ),
    security(("admin_token" = ["admin"]))
)]
pub async fn withdraw(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Result<Json<ConsentChange>, JsonRejection>,
) -> Result<Json<Withdrawn>, ApiError> {
    let req = super::dlq::body(req)?;
    if !req.withdrawn {
        return Err(ApiError::new(
            ErrorCode::InvalidConsent,
            "only a withdrawal is recorded here (`withdrawn: true`); consent is given by a lead that carries it",
        )
        .on_field("withdrawn"));
    }
    let at = match &req.at {
        Some(text) => timestamp(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidConsent,
                format!("{text:?} is not a time (RFC 3339 or a date)"),
            )
            .on_field("at")
        })?,
        None => now_rfc3339(),
    };
    let lead_id = state
        .ingest
        .outbox
        .withdraw(&id, at.clone())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such person"))?;
    let updates = state
        .store
        .lead(&lead_id)
        .await
        .map_err(ApiError::internal)?
        .map(|l| l.deliveries)
        .unwrap_or_default();
    tracing::info!(updates = updates.len(), "consent withdrawal recorded");
    Ok(Json(Withdrawn {
        person_id: id,
        withdrawn_at: at,
        lead_id,
        updates,
    }))
}

/// Now, as leads' times are kept (RFC 3339 in UTC, whole seconds, as
/// `timestamp` makes them).
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 ns is valid")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("now formats")
}
