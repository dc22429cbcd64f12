//! The simulator's own control routes under `/_sim/` (not HubSpot's): the same
//! controls as [`crate::SimHandle`], over HTTP. They need no auth, are not
//! rate limited and are not counted in the stats.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::errors::json_response;
use crate::wire::Query;
use crate::{Contact, Faults, Shared, SimHandle, SimStats};

type AppState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/contacts", get(contacts))
        .route("/_sim/faults", get(faults).post(set_faults))
        .route("/_sim/expire-tokens", post(expire_tokens))
        .route("/_sim/tokens", post(add_token))
        .route("/_sim/properties", post(define_property))
        .route("/_sim/reset", post(reset))
}

fn handle(shared: Arc<Shared>) -> SimHandle {
    SimHandle { shared }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|err| {
        Box::new(json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("invalid body: {err}") }),
        ))
    })
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true }))
}

#[derive(Serialize)]
struct StatsOut {
    #[serde(flatten)]
    stats: SimStats,
    contacts: usize,
}

async fn stats(State(shared): AppState) -> Response {
    let handle = handle(shared);
    let body = StatsOut {
        stats: handle.stats(),
        contacts: handle.contact_count(),
    };
    json_response(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct ContactsOut {
    count: usize,
    results: Vec<Contact>,
}

/// `?email=x` lists the records with that email (ignoring case); without it,
/// every record.
async fn contacts(State(shared): AppState, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let handle = handle(shared);
    let results = match query.get("email") {
        Some(email) => handle.contacts_by_email(email),
        None => handle.contacts(),
    };
    json_response(
        StatusCode::OK,
        &ContactsOut {
            count: results.len(),
            results,
        },
    )
}

async fn faults(State(shared): AppState) -> Response {
    json_response(StatusCode::OK, &handle(shared).faults())
}

/// Replaces the faults in force; missing fields are zero / false.
async fn set_faults(State(shared): AppState, body: Bytes) -> Response {
    let faults: Faults = match parse(&body) {
        Ok(faults) => faults,
        Err(response) => return *response,
    };
    let handle = handle(shared);
    handle.set_faults(faults);
    json_response(StatusCode::OK, &handle.faults())
}

async fn expire_tokens(State(shared): AppState) -> Response {
    handle(shared).expire_tokens();
    ok()
}

#[derive(Deserialize)]
struct TokenIn {
    token: String,
}

async fn add_token(State(shared): AppState, body: Bytes) -> Response {
    match parse::<TokenIn>(&body) {
        Ok(input) if !input.token.is_empty() => {
            handle(shared).add_token(&input.token);
            ok()
        }
        Ok(_) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "token must not be empty" }),
        ),
        Err(response) => *response,
    }
}

#[derive(Deserialize)]
struct PropertyIn {
    name: String,
}

async fn define_property(State(shared): AppState, body: Bytes) -> Response {
    match parse::<PropertyIn>(&body) {
        Ok(input) if !input.name.is_empty() => {
            handle(shared).define_property(&input.name);
            ok()
        }
        Ok(_) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "name must not be empty" }),
        ),
        Err(response) => *response,
    }
}

async fn reset(State(shared): AppState) -> impl IntoResponse {
    handle(shared).reset();
    ok()
}
