//! Zoho CRM's Records API (Leads and Contacts), beside HubSpot, Pipedrive
//! and Salesforce on the same server, under `/crm/{version}/` for every
//! version from v2 to v8 (the same shapes throughout; v8 is the
//! reference).
//!
//! What an adapter meets on the real service (`shared/crm-apis.md` §5,
//! checked against Zoho's Records API pages and the official SDKs):
//!
//! - **Auth**: `Authorization: Zoho-oauthtoken <token>`, valid when the
//!   simulator's Zoho Accounts endpoint (`/oauth/v2/token`) issued it and
//!   it has not expired (1 hour) or been expired with
//!   [`crate::SimHandle::expire_oauth_access_tokens`], or it is one of the
//!   configured static tokens. A missing header, or another scheme
//!   (`Bearer …`), is 401 `AUTHENTICATION_FAILURE`; an unknown or expired
//!   token 401 `{"code":"INVALID_TOKEN","details":{},"message":"invalid
//!   oauth token","status":"error"}`.
//! - **Records**: insert `POST /{Module}`, update `PUT /{Module}` (each
//!   record names its `id`) and `PUT /{Module}/{id}`, upsert
//!   `POST /{Module}/upsert` (`duplicate_check_fields`, else `Email` then
//!   the unique fields), delete `DELETE /{Module}?ids=` and
//!   `DELETE /{Module}/{id}`: at most 100 records (else 400
//!   `LIMIT_EXCEEDED`), written in order, answered with one `data[]`
//!   entry per record: 201 (insert) or 200 when all succeeded, 207 when
//!   some did, 400 when none did. Record ids are 19-digit strings.
//! - **Reads**: `GET /{Module}/{id}` (`{"data":[record]}`; 204 with no
//!   body for an id no record has), `GET /{Module}?fields=…` (`fields` is
//!   mandatory from v3 unless `ids` is given; 204 when empty) and
//!   `GET /{Module}/search` by `criteria`, `email`, `phone` or `word`
//!   (204 when nothing matches; `equals` behaves like contains).
//! - **Metadata** the SDKs fetch before they write: `GET
//!   /settings/fields?module=`, `GET /settings/modules`, `GET
//!   /users?type=CurrentUser`, `GET /org`.
//! - **Limits**: API credits per rolling 24 hours (50,000 by default; 1
//!   per call, 1 per 10 records for insert/update/upsert) and calls in
//!   flight per org (10 by default). Past either: 429
//!   `TOO_MANY_REQUESTS` (Zoho's status-codes page gives 429 for both).
//!   From half the day's credits on, answers carry
//!   `X-API-CREDITS-REMAINING` (as reported from Zoho's v8 API-limits
//!   page; Zoho documents no other rate-limit header). An injected 429
//!   storm is the concurrency 429; a 500 is Zoho's `INTERNAL_ERROR` body;
//!   outages, latency and silent writes apply as for the other CRMs.

mod schema;
mod search;
mod store;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};

use crate::errors::json_response;
use crate::faults::GatewayError;
use crate::oauth::Vendor;
use crate::wire::Query;
use crate::{Crm, Shared, State as SimState};

pub use store::{ZohoLimits, ZohoRecord};

pub(crate) use schema::Module;
pub(crate) use store::ZohoState;

use schema::FieldType;
use search::page_info;
use store::{Stored, Tx, is_searchable_text, key_of, prepare, render};
use wire::{ORG_ID, ORG_ZGID, Outcome, USER_EMAIL, USER_ID, USER_NAME, ZohoError, write_answer};

/// The API versions served, each under `/crm/{version}/`.
pub const VERSIONS: [&str; 8] = ["v2", "v2.1", "v3", "v4", "v5", "v6", "v7", "v8"];
/// Most records one insert, update, upsert or delete may carry.
pub const MAX_RECORDS: usize = 100;
/// The largest page a read may ask for.
const MAX_PER_PAGE: usize = 200;
/// How deep `page` × `per_page` may go without a page token.
const PAGE_DEPTH: usize = 2_000;
/// Most field names `fields=` may list.
const MAX_FIELDS: usize = 50;

const CONCURRENCY_EXCEEDED: &str = "The concurrency limit of the app for the org has been exceeded";
const CREDITS_EXCEEDED: &str = "The API credits for the 24 hour period have been exceeded";

/// The token of `Authorization: Zoho-oauthtoken <token>`, or the error
/// for a request without one.
fn token_of(headers: &HeaderMap) -> Result<String, ZohoError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ZohoError::authentication_failure)?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(ZohoError::authentication_failure)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("Zoho-oauthtoken") || token.is_empty() {
        return Err(ZohoError::authentication_failure());
    }
    Ok(token.to_owned())
}

/// A request let through, or the answer that refuses it.
enum Admission {
    Admitted,
    Refused(Response),
}

impl SimState {
    /// Faults, auth, the concurrency limit, then the credits.
    fn zoho_admit(&mut self, token: Result<String, ZohoError>) -> Admission {
        if let Some(error) = self.faults.take_gateway_error() {
            return Admission::Refused(match error {
                GatewayError::Internal => ZohoError::internal_error().into_response(),
                other => other.into_response(),
            });
        }
        let token = match token {
            Ok(token) => token,
            Err(error) => return Admission::Refused(error.into_response()),
        };
        let now = crate::now_ms();
        let valid = self.oauth.access_valid(Vendor::Zoho, &token, now)
            || self
                .tokens
                .check(Some(&token), std::time::Instant::now())
                .is_ok();
        if !valid {
            return Admission::Refused(ZohoError::invalid_token().into_response());
        }
        let zoho = &mut self.zoho;
        if self.faults.take_rate_limit().is_some() || zoho.in_flight >= zoho.limits.concurrency {
            return Admission::Refused(
                ZohoError::too_many_requests(CONCURRENCY_EXCEEDED).into_response(),
            );
        }
        let (used, max) = zoho.credits(now);
        if used >= max {
            let mut refusal = ZohoError::too_many_requests(CREDITS_EXCEEDED).into_response();
            credits_header(refusal.headers_mut(), used, max);
            return Admission::Refused(refusal);
        }
        zoho.in_flight += 1;
        Admission::Admitted
    }
}

/// `X-API-CREDITS-REMAINING` once half the day's credits are used.
fn credits_header(headers: &mut HeaderMap, used: u32, max: u32) {
    if u64::from(used) * 2 >= u64::from(max) {
        headers.insert(
            "x-api-credits-remaining",
            HeaderValue::from(max.saturating_sub(used)),
        );
    }
}

/// A call counted against the concurrency limit until it is answered.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.zoho.in_flight = state.zoho.in_flight.saturating_sub(1);
    }
}

/// The gate in front of Zoho's routes.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let write = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let token = token_of(request.headers());
    let (latency_ms, admission) = {
        let mut state = shared.lock();
        let latency_ms = state.faults.faults.latency_ms;
        (latency_ms, state.zoho_admit(token))
    };
    let for_headers = shared.clone();
    let add_headers = move |headers: &mut HeaderMap| {
        let (used, max) = for_headers.lock().zoho.credits(crate::now_ms());
        credits_header(headers, used, max);
    };
    let (admitted, slot) = match admission {
        Admission::Refused(response) => (Err(response), None),
        Admission::Admitted => (Ok(add_headers), Some(Slot(shared.clone()))),
    };
    crate::gate::pass_holding(&shared, write, latency_ms, admitted, request, next, slot).await
}

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let mut router = Router::new();
    for version in VERSIONS {
        router = router
            .route(&format!("/crm/{version}"), any(dispatch))
            .route(&format!("/crm/{version}/{{*rest}}"), any(dispatch));
    }
    router.layer(middleware::from_fn_with_state(shared, gate))
}

/// What every handler gets.
struct Ctx {
    shared: Arc<Shared>,
    /// `v8`, `v2.1`, …
    version: String,
    query: Query,
    body: Bytes,
}

impl Ctx {
    fn charge(&self, credits: u32) {
        self.shared.lock().zoho.charge(crate::now_ms(), credits);
    }

    /// Whether `fields` is mandatory for a listing (from v3).
    fn fields_mandatory(&self) -> bool {
        !matches!(self.version.as_str(), "v2" | "v2.1")
    }
}

/// A path segment, percent-decoded.
fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut segments = uri
        .path()
        .strip_prefix("/crm/")
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment);
    let version = segments.next().unwrap_or_default();
    let path: Vec<String> = segments.collect();
    let ctx = Ctx {
        shared,
        version,
        query: Query::parse(uri.query()),
        body,
    };
    // Every call that gets this far costs a credit; writes add theirs.
    ctx.charge(1);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let get = method == Method::GET;
    match path.as_slice() {
        [] => ZohoError::invalid_url_pattern().into_response(),
        ["settings", "fields"] if get => fields_metadata(&ctx),
        ["settings", "modules"] if get => modules_metadata(),
        ["settings", "fields" | "modules"] => ZohoError::invalid_request_method().into_response(),
        ["settings", ..] => ZohoError::invalid_url_pattern().into_response(),
        ["users"] if get => users(),
        ["org"] if get => org(),
        ["users" | "org"] => ZohoError::invalid_request_method().into_response(),
        [name, rest @ ..] => match Module::parse(name) {
            Some(module) => module_route(&ctx, module, rest, &method),
            None => ZohoError::invalid_module(0).into_response(),
        },
    }
}

fn module_route(ctx: &Ctx, module: Module, rest: &[&str], method: &Method) -> Response {
    match (rest, method) {
        ([], &Method::GET) => list(ctx, module),
        ([], &Method::POST) => insert(ctx, module),
        ([], &Method::PUT) => update_many(ctx, module),
        ([], &Method::DELETE) => delete(ctx, module, ctx.query.list("ids"), None),
        (["upsert"], &Method::POST) => upsert(ctx, module),
        (["search"], &Method::GET) => search(ctx, module),
        ([] | ["upsert" | "search"], _) => ZohoError::invalid_request_method().into_response(),
        ([id], &Method::GET) => get_one(ctx, module, id),
        ([id], &Method::PUT) => update_one(ctx, module, id),
        ([id], &Method::DELETE) => delete(ctx, module, vec![(*id).to_owned()], Some(id)),
        ([_], _) => ZohoError::invalid_request_method().into_response(),
        _ => ZohoError::invalid_url_pattern().into_response(),
    }
}

// ---------------------------------------------------------------------------
// writes

/// The records of a write body (`{"data":[…], …}`) and the whole body.
fn write_input(body: &[u8]) -> Result<(Vec<Value>, Map<String, Value>), ZohoError> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(ZohoError::invalid_body());
    };
    let records = match map.get("data") {
        None | Some(Value::Null) => return Err(ZohoError::data_missing()),
        Some(Value::Array(records)) if records.is_empty() => {
            return Err(ZohoError::data_missing());
        }
        Some(Value::Array(records)) if records.len() > MAX_RECORDS => {
            return Err(ZohoError::too_many_records(MAX_RECORDS));
        }
        Some(Value::Array(records)) => records.clone(),
        Some(_) => return Err(ZohoError::data_not_array()),
    };
    Ok((records, map))
}

/// Credits of a write of `n` records: 1 per 10, at least 1.
fn write_credits(n: usize) -> u32 {
    u32::try_from(n.div_ceil(10).max(1)).unwrap_or(u32::MAX)
}

/// Logs and counts what a transaction created and updated.
fn committed(state: &mut SimState, created: &[ZohoRecord], updated: usize) {
    for record in created {
        let emails: Vec<String> = record.email().map(str::to_owned).into_iter().collect();
        let phones: Vec<String> = ["Phone", "Mobile"]
            .iter()
            .filter_map(|f| record.text(f).map(str::to_owned))
            .collect();
        state
            .creates
            .record(Crm::Zoho, record.id.clone(), emails, phones);
    }
    state.stats.records_created += created.len() as u64;
    state.stats.records_updated += updated as u64;
}

/// Runs the writes of one call and stores them, unless a
/// `fail_silently_next` fault drops them (the answer is the same).
fn transact(
    ctx: &Ctx,
    module: Module,
    work: impl FnOnce(&mut Tx<'_>) -> Vec<Outcome>,
) -> Vec<Outcome> {
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let (outcomes, staged) = {
        let mut tx = Tx::new(&state.zoho, module, crate::now_ms());
        let outcomes = work(&mut tx);
        (outcomes, tx.finish())
    };
    if staged.is_empty() {
        state.zoho.discard(&staged);
        return outcomes;
    }
    if state.faults.take_silent_write() {
        state.zoho.discard(&staged);
        state.stats.writes_dropped += outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        return outcomes;
    }
    let (created, updated) = state.zoho.commit(staged);
    committed(state, &created, updated);
    outcomes
}

fn insert(ctx: &Ctx, module: Module) -> Response {
    let (records, _) = match write_input(&ctx.body) {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    ctx.charge(write_credits(records.len()) - 1);
    let outcomes = transact(ctx, module, |tx| {
        records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                match prepare(tx.schema(), module, i, record).and_then(|p| tx.insert(i, &p)) {
                    Ok((_, details)) => Outcome::Written {
                        details,
                        added: true,
                        upsert: None,
                    },
                    Err(e) => Outcome::Failed(e),
                }
            })
            .collect()
    });
    write_answer(&outcomes, StatusCode::CREATED)
}

/// The id an update record names: a string or a number.
fn record_id(record: &Value) -> Option<String> {
    match record.get("id")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn update_many(ctx: &Ctx, module: Module) -> Response {
    let (records, _) = match write_input(&ctx.body) {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    ctx.charge(write_credits(records.len()) - 1);
    let outcomes = transact(ctx, module, |tx| {
        records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let result = prepare(tx.schema(), module, i, record).and_then(|p| {
                    let Some(id) = record_id(record) else {
                        return Err(ZohoError::mandatory_not_found(i, "id"));
                    };
                    let key = tx
                        .resolve(&id)
                        .ok_or_else(|| ZohoError::invalid_record_id(i))?;
                    tx.update(i, key, &p, None)
                });
                match result {
                    Ok(details) => Outcome::Written {
                        details,
                        added: false,
                        upsert: None,
                    },
                    Err(e) => Outcome::Failed(e),
                }
            })
            .collect()
    });
    write_answer(&outcomes, StatusCode::OK)
}

fn update_one(ctx: &Ctx, module: Module, id: &str) -> Response {
    let known = key_of(id).is_some_and(|key| {
        ctx.shared
            .lock()
            .zoho
            .get(key)
            .is_some_and(|s| s.module == module)
    });
    if !known {
        return ZohoError::invalid_path_id(1).into_response();
    }
    let (records, _) = match write_input(&ctx.body) {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    let outcomes = transact(ctx, module, |tx| {
        let record = &records[0];
        let result = prepare(tx.schema(), module, 0, record).and_then(|p| {
            let key = tx
                .resolve(id)
                .ok_or_else(|| ZohoError::invalid_record_id(0))?;
            tx.update(0, key, &p, None)
        });
        vec![match result {
            Ok(details) => Outcome::Written {
                details,
                added: false,
                upsert: None,
            },
            Err(e) => Outcome::Failed(e),
        }]
    });
    write_answer(&outcomes, StatusCode::OK)
}

/// The order an upsert looks for an existing record in: the asked
/// `duplicate_check_fields`, then the remaining user-defined unique fields
/// (`Email` only when asked, or when nothing is asked).
fn upsert_order(
    ctx: &Ctx,
    module: Module,
    body: &Map<String, Value>,
) -> Result<Vec<String>, ZohoError> {
    let state = ctx.shared.lock();
    let schema = &state.zoho.schema;
    let checkable = schema.duplicate_check_fields(module);
    let asked = match body.get("duplicate_check_fields") {
        None | Some(Value::Null) => {
            return Ok(checkable.iter().map(|f| f.api_name.clone()).collect());
        }
        Some(Value::Array(names)) => names,
        Some(_) => {
            return Err(
                ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data").with(&[
                    ("expected_data_type", "jsonarray".into()),
                    ("api_name", "duplicate_check_fields".into()),
                    ("json_path", "$.duplicate_check_fields".into()),
                ]),
            );
        }
    };
    let mut order: Vec<String> = Vec::new();
    for (i, name) in asked.iter().enumerate() {
        let field = name.as_str().and_then(|n| {
            checkable
                .iter()
                .find(|f| f.api_name.eq_ignore_ascii_case(n))
        });
        let Some(field) = field else {
            return Err(
                ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data").with(&[
                    ("api_name", name.as_str().unwrap_or_default().into()),
                    ("json_path", format!("$.duplicate_check_fields[{i}]").into()),
                ]),
            );
        };
        if !order.contains(&field.api_name) {
            order.push(field.api_name.clone());
        }
    }
    for field in checkable.iter().filter(|f| f.unique) {
        if !order.contains(&field.api_name) {
            order.push(field.api_name.clone());
        }
    }
    Ok(order)
}

fn upsert(ctx: &Ctx, module: Module) -> Response {
    let (records, body) = match write_input(&ctx.body) {
        Ok(input) => input,
        Err(e) => return e.into_response(),
    };
    let order = match upsert_order(ctx, module, &body) {
        Ok(order) => order,
        Err(e) => return e.into_response(),
    };
    ctx.charge(write_credits(records.len()) - 1);
    let outcomes = transact(ctx, module, |tx| {
        records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let prepared = match prepare(tx.schema(), module, i, record) {
                    Ok(p) => p,
                    Err(e) => return Outcome::Failed(e),
                };
                let matched = order.iter().find_map(|field| {
                    let value = prepared.value(field)?;
                    let key = *tx.find_by(field, value, None).first()?;
                    Some((field.clone(), key))
                });
                let result = match &matched {
                    Some((field, key)) => tx
                        .update(i, *key, &prepared, Some(field))
                        .map(|d| (d, false)),
                    None => tx.insert(i, &prepared).map(|(_, d)| (d, true)),
                };
                match result {
                    Ok((details, added)) => Outcome::Written {
                        details,
                        added,
                        upsert: Some(matched.map(|(field, _)| field)),
                    },
                    Err(e) => Outcome::Failed(e),
                }
            })
            .collect()
    });
    write_answer(&outcomes, StatusCode::OK)
}

/// `DELETE /{Module}?ids=a,b` or `DELETE /{Module}/{id}`.
fn delete(ctx: &Ctx, module: Module, ids: Vec<String>, path_id: Option<&str>) -> Response {
    if ids.is_empty() {
        return ZohoError::required_param_missing("ids").into_response();
    }
    if ids.len() > MAX_RECORDS {
        return ZohoError::too_many_records(MAX_RECORDS).into_response();
    }
    if let Some(id) = path_id
        && key_of(id).is_none()
    {
        return ZohoError::invalid_path_id(1).into_response();
    }
    let outcomes = transact(ctx, module, |tx| {
        ids.iter()
            .map(|id| match tx.resolve(id) {
                Some(key) if tx.delete(key) => Outcome::Deleted(id.clone()),
                _ => Outcome::Failed(ZohoError::not_deleted(id)),
            })
            .collect()
    });
    write_answer(&outcomes, StatusCode::OK)
}

// ---------------------------------------------------------------------------
// reads

/// `fields=A,B` as asked (names Zoho does not know are left out of the
/// answer), or `None` for every field.
fn asked_fields(ctx: &Ctx) -> Result<Option<Vec<String>>, ZohoError> {
    let fields = ctx.query.list("fields");
    if fields.len() > MAX_FIELDS {
        return Err(ZohoError::new(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "Fields limit exceeded",
        )
        .with(&[
            ("param_name", "fields".into()),
            ("limit", MAX_FIELDS.into()),
        ]));
    }
    Ok((!fields.is_empty()).then_some(fields))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn get_one(ctx: &Ctx, module: Module, id: &str) -> Response {
    let Some(key) = key_of(id) else {
        return ZohoError::invalid_path_id(1).into_response();
    };
    let fields = match asked_fields(ctx) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let state = ctx.shared.lock();
    let zoho = &state.zoho;
    match zoho.get(key).filter(|s| s.module == module) {
        Some(stored) => {
            let record = render(&zoho.schema, stored, fields.as_deref());
            drop(state);
            json_response(StatusCode::OK, &json!({ "data": [record] }))
        }
        None => no_content(),
    }
}

/// `page` and `per_page` (1 and 200 by default).
fn paging(ctx: &Ctx, over_limit: ZohoError) -> Result<(usize, usize), ZohoError> {
    let number = |name: &str, default: usize| -> Result<usize, ZohoError> {
        match ctx.query.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ZohoError::invalid_param(name, "invalid data")),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", MAX_PER_PAGE)?.min(MAX_PER_PAGE);
    if (page - 1) * per_page >= PAGE_DEPTH {
        return Err(over_limit);
    }
    Ok((page, per_page))
}

/// One page of `matched`, rendered, and whether more follow.
fn page_of(
    schema: &schema::Schema,
    matched: &[&Stored],
    page: usize,
    per_page: usize,
    fields: Option<&[String]>,
) -> (Vec<Value>, bool) {
    let start = (page - 1) * per_page;
    let records = matched
        .iter()
        .skip(start)
        .take(per_page)
        .map(|s| render(schema, s, fields))
        .collect();
    (records, matched.len() > start + per_page)
}

fn time_of(stored: &Stored, field: &str) -> String {
    stored
        .record
        .fields
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn list(ctx: &Ctx, module: Module) -> Response {
    let ids = ctx.query.list("ids");
    let fields = match asked_fields(ctx) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    if fields.is_none() && ids.is_empty() && ctx.fields_mandatory() {
        return ZohoError::required_param_missing("fields").into_response();
    }
    let discrete = ZohoError::new(
        StatusCode::BAD_REQUEST,
        "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "You can only get the first 2000 records without using page_token param.",
    );
    let (page, per_page) = match paging(ctx, discrete) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let sort_by = match ctx.query.get("sort_by").unwrap_or("id") {
        s if s.eq_ignore_ascii_case("id") => "id",
        s if s.eq_ignore_ascii_case("Created_Time") => "Created_Time",
        s if s.eq_ignore_ascii_case("Modified_Time") => "Modified_Time",
        _ => return ZohoError::invalid_param("sort_by", "invalid data").into_response(),
    };
    let ascending = match ctx.query.get("sort_order").unwrap_or("desc") {
        "asc" => true,
        "desc" => false,
        _ => return ZohoError::invalid_param("sort_order", "invalid data").into_response(),
    };
    let state = ctx.shared.lock();
    let zoho = &state.zoho;
    let mut matched: Vec<&Stored> = zoho
        .of(module)
        .filter(|s| ids.is_empty() || ids.contains(&s.record.id))
        .collect();
    if sort_by != "id" {
        matched.sort_by_key(|s| time_of(s, sort_by));
    }
    if !ascending {
        matched.reverse();
    }
    let (records, more) = page_of(&zoho.schema, &matched, page, per_page, fields.as_deref());
    drop(state);
    if records.is_empty() {
        return no_content();
    }
    let mut info = page_info(per_page, records.len(), page, more);
    info["sort_by"] = sort_by.into();
    info["sort_order"] = if ascending { "asc" } else { "desc" }.into();
    info["next_page_token"] = Value::Null;
    info["previous_page_token"] = Value::Null;
    info["page_token_expiry"] = Value::Null;
    info["call"] = false.into();
    info["email"] = false.into();
    json_response(StatusCode::OK, &json!({"data": records, "info": info}))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// What a search looks for.
enum Lookup {
    Criteria(search::Criteria),
    Email(String),
    Phone(String),
    Word(String),
}

fn search(ctx: &Ctx, module: Module) -> Response {
    let lookup = {
        let state = ctx.shared.lock();
        let schema = &state.zoho.schema;
        let q = &ctx.query;
        let given = |name: &str| q.get(name).map(str::trim).filter(|v| !v.is_empty());
        if let Some(text) = given("criteria") {
            match search::parse(text, schema, module) {
                Ok(c) => Lookup::Criteria(c),
                Err(e) => return e.into_response(),
            }
        } else if let Some(email) = given("email") {
            Lookup::Email(email.to_owned())
        } else if let Some(phone) = given("phone") {
            Lookup::Phone(phone.to_owned())
        } else if let Some(word) = given("word") {
            if word.chars().count() < 2 {
                return ZohoError::invalid_param(
                    "word",
                    "the search value should contain at least two characters",
                )
                .into_response();
            }
            Lookup::Word(word.to_lowercase())
        } else {
            return ZohoError::new(
                StatusCode::BAD_REQUEST,
                "EXPECTED_PARAM_MISSING",
                "mandatory param missing",
            )
            .into_response();
        }
    };
    let fields = match asked_fields(ctx) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let limit = ZohoError::new(
        StatusCode::BAD_REQUEST,
        "LIMIT_REACHED",
        "Maximum response iteration limit reached",
    );
    let (page, per_page) = match paging(ctx, limit) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let now = crate::now_ms();
    let mut state = ctx.shared.lock();
    let narrowed = match &lookup {
        Lookup::Criteria(c) => state.zoho.criteria_candidates(module, c),
        _ => None,
    };
    let zoho = &state.zoho;
    let schema = &zoho.schema;
    let kinds = |pick: &dyn Fn(FieldType) -> bool| -> Vec<String> {
        schema
            .fields(module)
            .iter()
            .filter(|f| pick(f.kind))
            .map(|f| f.api_name.clone())
            .collect()
    };
    let email_fields = kinds(&|k| k == FieldType::Email);
    let phone_fields = kinds(&|k| k == FieldType::Phone);
    let text_fields: Vec<String> = schema
        .fields(module)
        .iter()
        .filter(|f| is_searchable_text(f))
        .map(|f| f.api_name.clone())
        .collect();
    let matches = |stored: &Stored| -> bool {
        let text = |f: &str| stored.record.text(f).map(str::to_owned);
        match &lookup {
            Lookup::Criteria(c) => c.matches(&|f| stored.record.fields.get(f).cloned()),
            Lookup::Email(email) => email_fields
                .iter()
                .any(|f| text(f).is_some_and(|v| v.eq_ignore_ascii_case(email))),
            Lookup::Phone(phone) => phone_fields.iter().any(|f| {
                text(f).is_some_and(|v| !digits(phone).is_empty() && digits(&v) == digits(phone))
            }),
            Lookup::Word(word) => text_fields
                .iter()
                .any(|f| text(f).is_some_and(|v| v.to_lowercase().contains(word))),
        }
    };
    // The records that may match: from the indexes for criteria on
    // indexed fields and for an email (every email field indexed), else
    // every record of the module.
    let narrowed = match &lookup {
        Lookup::Email(email) => {
            email_fields
                .iter()
                .try_fold(std::collections::BTreeSet::new(), |mut keys, f| {
                    keys.extend(zoho.candidates(module, f, email)?);
                    Some(keys)
                })
        }
        _ => narrowed,
    };
    let pool: Box<dyn DoubleEndedIterator<Item = &Stored>> = match narrowed {
        Some(keys) => Box::new(
            keys.into_iter()
                .filter_map(|k| zoho.get(k))
                .filter(|s| s.module == module),
        ),
        None => Box::new(zoho.of(module)),
    };
    let matched: Vec<&Stored> = pool
        .rev()
        .filter(|s| s.searchable_at_ms <= now)
        .filter(|s| matches(s))
        .collect();
    let (records, more) = page_of(schema, &matched, page, per_page, fields.as_deref());
    drop(state);
    if records.is_empty() {
        return no_content();
    }
    let info = page_info(per_page, records.len(), page, more);
    json_response(StatusCode::OK, &json!({"data": records, "info": info}))
}

// ---------------------------------------------------------------------------
// metadata

fn fields_metadata(ctx: &Ctx) -> Response {
    let Some(name) = ctx.query.get("module").filter(|m| !m.is_empty()) else {
        return ZohoError::required_param_missing("module").into_response();
    };
    let Some(module) = Module::parse(name) else {
        return ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
        )
        .with(&[("param_name", "module".into())])
        .into_response();
    };
    let state = ctx.shared.lock();
    let fields: Vec<Value> = state
        .zoho
        .schema
        .fields(module)
        .iter()
        .map(|f| f.metadata(module))
        .collect();
    drop(state);
    json_response(StatusCode::OK, &json!({ "fields": fields }))
}

fn modules_metadata() -> Response {
    let modules: Vec<Value> = Module::ALL
        .iter()
        .map(|m| {
            json!({
                "api_name": m.name(),
                "module_name": m.name(),
                "plural_label": m.name(),
                "singular_label": m.name().trim_end_matches('s'),
                "id": m.id(),
                "api_supported": true,
                "generated_type": "default",
                "creatable": true,
                "editable": true,
                "deletable": true,
                "viewable": true,
                "modified_time": null,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "modules": modules }))
}

fn users() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "users": [{
                "id": USER_ID,
                "full_name": USER_NAME,
                "first_name": "Sim",
                "last_name": "Admin",
                "email": USER_EMAIL,
                "status": "active",
                "role": {"name": "CEO", "id": "5725767000000026005"},
                "profile": {"name": "Administrator", "id": "5725767000000026011"},
                "time_zone": "UTC",
            }],
            "info": page_info(MAX_PER_PAGE, 1, 1, false),
        }),
    )
}

fn org() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "org": [{
                "id": ORG_ID,
                "zgid": ORG_ZGID,
                "company_name": "leadgate sim",
                "primary_email": USER_EMAIL,
                "time_zone": "UTC",
                "country_code": "US",
                "currency": "US Dollar - USD",
                "iso_code": "USD",
            }],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_schemes() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of(&headers).unwrap_err().code,
            "AUTHENTICATION_FAILURE"
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Zoho-oauthtoken 1000.abc"),
        );
        assert_eq!(token_of(&headers).unwrap(), "1000.abc");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 1000.abc"),
        );
        assert!(token_of(&headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Zoho-oauthtoken "),
        );
        assert!(token_of(&headers).is_err());
    }

    #[test]
    fn credits_of_writes() {
        assert_eq!(write_credits(1), 1);
        assert_eq!(write_credits(10), 1);
        assert_eq!(write_credits(11), 2);
        assert_eq!(write_credits(100), 10);
        let mut h = HeaderMap::new();
        credits_header(&mut h, 10, 100);
        assert!(h.get("x-api-credits-remaining").is_none());
        credits_header(&mut h, 50, 100);
        assert_eq!(h["x-api-credits-remaining"], "50");
    }
}
