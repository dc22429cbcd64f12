//! `/_sim/dataverse/*`: the Dataverse controls of [`crate::SimHandle`]
//! over HTTP (no auth, not limited, not counted).
//!
//! - `GET /_sim/dataverse/records?table=lead|contact[&email=x]`
//!   → `{"count","results":[{"id","table","fields"}]}`
//! - `POST /_sim/dataverse/keys` `{"table":"lead","columns":["new_x"]}`
//! - `POST /_sim/dataverse/columns` `{"table":"lead","name":"new_x","max_length":100}`
//! - `POST /_sim/dataverse/duplicate-detection` `{"on":false}`
//! - `GET|POST /_sim/dataverse/limits` `{"requests":6000,"window_ms":300000,
//!   "execution_ms":1200000,"concurrent":52}` (POST: fields left out keep
//!   their defaults)

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::{DataverseLimits, DataverseRecord};
use crate::errors::json_response;
use crate::wire::Query;
use crate::{Shared, SimHandle};

type AppState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/dataverse/records", get(records))
        .route("/_sim/dataverse/keys", post(define_key))
        .route("/_sim/dataverse/columns", post(define_column))
        .route(
            "/_sim/dataverse/duplicate-detection",
            post(duplicate_detection),
        )
        .route("/_sim/dataverse/limits", get(limits).post(set_limits))
}

fn handle(shared: Arc<Shared>) -> SimHandle {
    SimHandle { shared }
}

fn bad_request(message: impl std::fmt::Display) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": message.to_string() }),
    )
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true }))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|err| Box::new(bad_request(format!("invalid body: {err}"))))
}

async fn records(State(shared): AppState, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let table = query.get("table").unwrap_or("lead");
    if super::Table::parse(table).is_none() {
        return bad_request(format!("table must be lead or contact, not {table:?}"));
    }
    let mut results: Vec<DataverseRecord> = handle(shared).dataverse_records(table);
    if let Some(email) = query.get("email") {
        results.retain(|r| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email)));
    }
    json_response(
        StatusCode::OK,
        &json!({ "count": results.len(), "results": results }),
    )
}

#[derive(Deserialize)]
struct KeyIn {
    table: String,
    columns: Vec<String>,
}

async fn define_key(State(shared): AppState, body: Bytes) -> Response {
    let input: KeyIn = match parse(&body) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let columns: Vec<&str> = input.columns.iter().map(String::as_str).collect();
    if handle(shared).define_dataverse_compound_key(&input.table, &columns) {
        ok()
    } else {
        bad_request("table must be lead or contact and columns logical names")
    }
}

#[derive(Deserialize)]
struct ColumnIn {
    table: String,
    name: String,
    #[serde(default = "default_length")]
    max_length: usize,
}

fn default_length() -> usize {
    100
}

async fn define_column(State(shared): AppState, body: Bytes) -> Response {
    let input: ColumnIn = match parse(&body) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    if handle(shared).define_dataverse_column(&input.table, &input.name, input.max_length) {
        ok()
    } else {
        bad_request("table must be lead or contact and name a logical name")
    }
}

#[derive(Deserialize)]
struct SwitchIn {
    on: bool,
}

async fn duplicate_detection(State(shared): AppState, body: Bytes) -> Response {
    match parse::<SwitchIn>(&body) {
        Ok(input) => {
            handle(shared).set_dataverse_duplicate_detection(input.on);
            ok()
        }
        Err(r) => *r,
    }
}

async fn limits(State(shared): AppState) -> Response {
    json_response(StatusCode::OK, &handle(shared).dataverse_limits())
}

async fn set_limits(State(shared): AppState, body: Bytes) -> Response {
    match parse::<DataverseLimits>(&body) {
        Ok(limits) => {
            let handle = handle(shared);
            handle.set_dataverse_limits(limits);
            json_response(StatusCode::OK, &handle.dataverse_limits())
        }
        Err(r) => *r,
    }
}
