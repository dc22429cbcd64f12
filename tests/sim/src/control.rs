//! The simulator's own control routes under `/_sim/` (not a CRM's): the same
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
use crate::{
    Contact, Created, Crm, DuplicateRuleAction, Faults, Person, SalesforceRecord, Shared,
    SimHandle, SimStats, ZohoRecord,
};

type AppState = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/contacts", get(contacts))
        .route("/_sim/creates", get(creates))
        .route("/_sim/pipedrive/persons", get(pipedrive_persons))
        .route("/_sim/salesforce/records", get(salesforce_records))
        .route("/_sim/salesforce/fields", post(define_salesforce_field))
        .route(
            "/_sim/salesforce/duplicate-rule",
            post(salesforce_duplicate_rule),
        )
        .route("/_sim/salesforce/convert", post(convert_salesforce_lead))
        .route(
            "/_sim/salesforce/limits",
            get(salesforce_limits).post(set_salesforce_limits),
        )
        .route("/_sim/zoho/records", get(zoho_records))
        .route("/_sim/zoho/fields", post(define_zoho_field))
        .route("/_sim/zoho/limits", get(zoho_limits).post(set_zoho_limits))
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
    in_flight: u64,
    in_flight_writes: u64,
}

async fn stats(State(shared): AppState) -> Response {
    let handle = handle(shared);
    let body = StatsOut {
        stats: handle.stats(),
        contacts: handle.contact_count(),
        in_flight: handle.in_flight(),
        in_flight_writes: handle.in_flight_writes(),
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

#[derive(Serialize)]
struct CreatesOut {
    count: usize,
    results: Vec<Created>,
}

/// The create log: `?crm=hubspot|pipedrive|salesforce|zoho|dynamics`, and a person key of
/// `email=` and/or `phone=` values (repeated or comma-separated) that
/// matches a create by any of them; without a key, every create.
async fn creates(State(shared): AppState, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let crm = match query.get("crm") {
        None => None,
        Some(name) => match Crm::parse(name) {
            Some(crm) => Some(crm),
            None => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ "error": format!("crm must be hubspot, pipedrive, salesforce, zoho or dynamics, not {name:?}") }),
                );
            }
        },
    };
    let (emails, phones) = (query.list("email"), query.list("phone"));
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    let results = handle(shared).creates(crm, &emails, &phones);
    json_response(
        StatusCode::OK,
        &CreatesOut {
            count: results.len(),
            results,
        },
    )
}

#[derive(Serialize)]
struct PersonsOut {
    count: usize,
    results: Vec<Person>,
}

/// Every simulated Pipedrive person, in id order.
async fn pipedrive_persons(State(shared): AppState) -> Response {
    let results = handle(shared).pipedrive_persons();
    json_response(
        StatusCode::OK,
        &PersonsOut {
            count: results.len(),
            results,
        },
    )
}

#[derive(Serialize)]
struct SalesforceRecordsOut {
    count: usize,
    results: Vec<SalesforceRecord>,
}

/// `?object=Lead|Contact` (default Lead) and optionally `email=` (ignoring
/// case): the simulated org's records, in creation order.
async fn salesforce_records(State(shared): AppState, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let object = query.get("object").unwrap_or("Lead");
    let mut results = handle(shared).salesforce_records(object);
    if let Some(email) = query.get("email") {
        results.retain(|r| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email)));
    }
    json_response(
        StatusCode::OK,
        &SalesforceRecordsOut {
            count: results.len(),
            results,
        },
    )
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

#[derive(Deserialize)]
struct SalesforceFieldIn {
    object: String,
    name: String,
    #[serde(default)]
    external_id: bool,
    /// For an External ID: whether it is also Unique (default true).
    #[serde(default)]
    unique: Option<bool>,
}

/// `{"object":"Lead","name":"Crm_Key__c","external_id":true,"unique":false}`.
async fn define_salesforce_field(State(shared): AppState, body: Bytes) -> Response {
    let input: SalesforceFieldIn = match parse(&body) {
        Ok(input) => input,
        Err(response) => return *response,
    };
    let handle = handle(shared);
    let defined = match (input.external_id, input.unique) {
        (true, Some(unique)) => {
            handle.define_salesforce_external_id(&input.object, &input.name, unique)
        }
        (external_id, _) => handle.define_salesforce_field(&input.object, &input.name, external_id),
    };
    if defined {
        ok()
    } else {
        bad_request("object must be Lead or Contact and name must end in __c")
    }
}

#[derive(Deserialize)]
struct DuplicateRuleIn {
    on: bool,
    #[serde(default)]
    action: Option<DuplicateRuleAction>,
}

/// `{"on":true,"action":"alert"|"block"}`.
async fn salesforce_duplicate_rule(State(shared): AppState, body: Bytes) -> Response {
    match parse::<DuplicateRuleIn>(&body) {
        Ok(input) => {
            let handle = handle(shared);
            match (input.on, input.action) {
                (true, Some(action)) => handle.set_salesforce_duplicate_rule_action(action),
                (on, _) => handle.set_salesforce_duplicate_rule(on),
            }
            ok()
        }
        Err(response) => *response,
    }
}

#[derive(Deserialize)]
struct ConvertIn {
    lead_id: String,
}

/// `{"lead_id":"00Q…"}` → `{"contact_id":"003…"}`; 404 unless it is an
/// unconverted lead.
async fn convert_salesforce_lead(State(shared): AppState, body: Bytes) -> Response {
    let input: ConvertIn = match parse(&body) {
        Ok(input) => input,
        Err(response) => return *response,
    };
    match handle(shared).convert_salesforce_lead(&input.lead_id) {
        Some(contact_id) => json_response(StatusCode::OK, &json!({ "contact_id": contact_id })),
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("{} is not an unconverted lead", input.lead_id) }),
        ),
    }
}

fn salesforce_usage(handle: &SimHandle) -> Response {
    let (used, max) = handle.salesforce_api_usage();
    json_response(StatusCode::OK, &json!({ "used": used, "max": max }))
}

async fn salesforce_limits(State(shared): AppState) -> Response {
    salesforce_usage(&handle(shared))
}

#[derive(Deserialize)]
struct LimitsIn {
    daily: u32,
}

/// `{"daily":N}`: the org's daily API allocation.
async fn set_salesforce_limits(State(shared): AppState, body: Bytes) -> Response {
    match parse::<LimitsIn>(&body) {
        Ok(input) => {
            let handle = handle(shared);
            handle.set_salesforce_daily_limit(input.daily);
            salesforce_usage(&handle)
        }
        Err(response) => *response,
    }
}

#[derive(Serialize)]
struct ZohoRecordsOut {
    count: usize,
    results: Vec<ZohoRecord>,
}

/// `?module=Leads|Contacts` (default Leads) and optionally `email=`
/// (ignoring case): the simulated Zoho org's records, in creation order.
async fn zoho_records(State(shared): AppState, RawQuery(query): RawQuery) -> Response {
    let query = Query::parse(query.as_deref());
    let module = query.get("module").unwrap_or("Leads");
    let mut results = handle(shared).zoho_records(module);
    if let Some(email) = query.get("email") {
        results.retain(|r| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email)));
    }
    json_response(
        StatusCode::OK,
        &ZohoRecordsOut {
            count: results.len(),
            results,
        },
    )
}

#[derive(Deserialize)]
struct ZohoFieldIn {
    module: String,
    api_name: String,
    #[serde(default)]
    unique: bool,
}

/// `{"module":"Leads","api_name":"Crm_Key","unique":true}`.
async fn define_zoho_field(State(shared): AppState, body: Bytes) -> Response {
    let input: ZohoFieldIn = match parse(&body) {
        Ok(input) => input,
        Err(response) => return *response,
    };
    if handle(shared).define_zoho_field(&input.module, &input.api_name, input.unique) {
        ok()
    } else {
        bad_request(
            "module must be Leads or Contacts and api_name a writable field name (not Email)",
        )
    }
}

fn zoho_usage(handle: &SimHandle) -> Response {
    let (used, max) = handle.zoho_credits();
    let limits = handle.shared.lock().zoho.limits.clone();
    json_response(
        StatusCode::OK,
        &json!({
            "credits_used": used,
            "daily_credits": max,
            "concurrency": limits.concurrency,
            "search_lag_ms": limits.search_lag_ms,
        }),
    )
}

async fn zoho_limits(State(shared): AppState) -> Response {
    zoho_usage(&handle(shared))
}

#[derive(Deserialize)]
struct ZohoLimitsIn {
    daily_credits: Option<u32>,
    concurrency: Option<u32>,
    search_lag_ms: Option<u64>,
}

/// `{"daily_credits":N,"concurrency":N,"search_lag_ms":N}` (each optional).
async fn set_zoho_limits(State(shared): AppState, body: Bytes) -> Response {
    match parse::<ZohoLimitsIn>(&body) {
        Ok(input) => {
            let handle = handle(shared);
            if let Some(n) = input.daily_credits {
                handle.set_zoho_credits(n);
            }
            if let Some(n) = input.concurrency {
                handle.set_zoho_concurrency(n);
            }
            if let Some(ms) = input.search_lag_ms {
                handle.set_zoho_search_lag_ms(ms);
            }
            zoho_usage(&handle)
        }
        Err(response) => *response,
    }
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
