//! Microsoft Dynamics 365 / Dataverse Web API (OData v4), beside the
//! other CRMs on the same server, under `/api/data/v9.0/`, `v9.1/` and
//! `v9.2/` (`shared/crm-apis.md` §4), for the `leads` and `contacts`
//! tables.
//!
//! What an adapter meets on the real service:
//!
//! - **Auth**: `Authorization: Bearer <token>` from the simulator's Entra
//!   ID endpoint (`POST /{tenant}/oauth2/v2.0/token`, not expired) or a
//!   configured static token. Otherwise 401 with no body and
//!   `WWW-Authenticate: Bearer error=invalid_token, error_description="The
//!   access token expired", authorization_uri={base}/{tenant}/oauth2/authorize,
//!   resource_id={base}/` (without a token: `Bearer authorization_uri=…,
//!   resource_id=…`).
//! - **Create** `POST /leads`: 204 + `OData-EntityId: {base}/api/data/v9.2/leads(<guid>)`;
//!   with `Prefer: return=representation`, 201 + the row (`$select`
//!   honoured, `Preference-Applied`, no `OData-EntityId`).
//! - **Upsert** `PATCH /leads(<guid>)` or `PATCH /leads(new_leadgateid='v')`
//!   (an alternate key; `''` for a quote, percent-encoding allowed): 204 +
//!   `OData-EntityId` whether created or updated; with
//!   `return=representation` 201 (created) or 200 (updated). `If-Match: *`
//!   updates only (404 when missing), `If-Match: W/"n"` only that
//!   version (412 `0x80060882`), `If-None-Match: *` creates only (412).
//!   A key that is no alternate key of the table: 400 `0x80060890`.
//! - **Read** `GET /leads(<key>)` (404 `0x80040217` "lead With Id = … Does
//!   Not Exist", by alternate key 404 `0x80048d02`), `GET
//!   /leads?$select=…&$filter=…&$top=…&$orderby=…&$count=true`, `DELETE
//!   /leads(<key>)`.
//! - **`$batch`**: `multipart/mixed` parts and change sets, answered 200
//!   `multipart/mixed; boundary=batchresponse_<guid>` with one part per
//!   request in order; a change set is all or nothing and a failed one is
//!   answered by its failing request's part alone; without `Prefer:
//!   odata.continue-on-error` processing stops at the first failure and
//!   the batch answers with that failure's status (the documented 400
//!   example). At most 1,000 requests (400 otherwise). `Content-ID`
//!   references (`$1`) work in URLs.
//! - **Bulk messages** `POST /leads/Microsoft.Dynamics.CRM.CreateMultiple`
//!   and `…/UpsertMultiple` with `{"Targets":[…]}` (an upsert target names
//!   its row with `@odata.id`), all or nothing, answered `{"Ids":[…]}`.
//! - **Metadata** `GET /EntityDefinitions…` (entity set and id column of a
//!   table, its attributes with choice labels, its keys): see [`metadata`].
//! - **Duplicates**: with `MSCRM.SuppressDuplicateDetection: false` a row
//!   whose `emailaddress1` another row of the table has is refused 500
//!   `0x80040333` (the default duplicate detection rules; without the
//!   header nothing is checked); a second row with an alternate key's
//!   values is refused 412 `0x80060892`.
//! - **Service protection** per user (one user for every Entra token,
//!   one per static token): see [`limits`]. An injected 429 storm
//!   (`Faults::rate_limit_next`) answers the `0x80072322` 429 with
//!   `Retry-After: 1`; outages, 5xx bursts (a 500 is `0x80040216`),
//!   latency and silently dropped writes apply as for the other CRMs.
//!
//! Chosen here where Microsoft documents nothing: a `$batch` dropped by
//! `fail_silently_next` is dropped whole; the `If-None-Match: *` conflict
//! carries `0x80040237` with the documented message; duplicate detection
//! compares a row with rows of its own table only.

mod batch;
mod control;
mod limits;
mod metadata;
mod odata;
mod schema;
mod store;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};

use crate::faults::GatewayError;
use crate::oauth::Vendor;
use crate::wire::Query;
use crate::{Crm, Shared, SimHandle, State as SimState};

pub use limits::DataverseLimits;
pub use schema::{LEADGATE_KEY_COLUMN, Table as DataverseTable};
pub use store::DataverseRecord;

pub(crate) use store::DataverseState;

use batch::{Item, ItemAnswer, Operation};
use odata::Key;
use schema::Table;
use store::{Condition, Journal, WriteOptions};
use wire::{Answer, DvError, entity_url};

/// The tenant the `WWW-Authenticate` challenge names.
pub const DATAVERSE_TENANT_ID: &str = "8f4c2d1e-6b3a-4e5f-9a7b-1c2d3e4f5a6b";
/// API versions served.
pub const VERSIONS: [&str; 3] = ["v9.0", "v9.1", "v9.2"];

const USER_ID: &str = "5e9e3f1c-2b7a-4d8e-9f10-a1b2c3d4e5f6";
const BUSINESS_UNIT_ID: &str = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d";
const ORGANIZATION_ID: &str = "7d6c5b4a-3f2e-4d1c-8b9a-0f1e2d3c4b5a";

/// This server's base URL as the caller reached it.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Holds a request's place among its user's concurrent requests; when the
/// answer is out, the place frees and the time it took is counted.
struct Slot {
    shared: Arc<Shared>,
    user: String,
    start: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let now = Instant::now();
        self.shared
            .lock()
            .dataverse
            .usage
            .finish(&self.user, now.duration_since(self.start), now);
    }
}

enum Admission {
    Admitted(String, limits::RemainingHeaders),
    Refused(Response),
}

fn throttled(error: DvError, retry_after: u64) -> Response {
    Answer::from(error)
        .with("Retry-After", retry_after.to_string())
        .into_response()
}

impl SimState {
    /// The user a token belongs to, if it opens a session.
    fn dataverse_user(&self, token: Option<&str>) -> Option<String> {
        let token = token?;
        if self
            .oauth
            .access_valid(Vendor::Entra, token, crate::now_ms())
        {
            return Some("entra".into());
        }
        self.tokens
            .check(Some(token), Instant::now())
            .is_ok()
            .then(|| format!("token:{token}"))
    }

    /// Faults, auth, then service protection.
    fn dataverse_admit(&mut self, token: Option<&str>, base: &str) -> Admission {
        if let Some(error) = self.faults.take_gateway_error() {
            return Admission::Refused(match error {
                GatewayError::Internal => DvError::unexpected().into_response(),
                other => other.into_response(),
            });
        }
        let Some(user) = self.dataverse_user(token) else {
            return Admission::Refused(wire::unauthorized(
                base,
                DATAVERSE_TENANT_ID,
                token.is_some(),
            ));
        };
        let limits = self.dataverse.limits;
        if self.faults.take_rate_limit().is_some() {
            return Admission::Refused(throttled(limits.requests_exceeded(), 1));
        }
        match self.dataverse.usage.admit(&limits, &user, Instant::now()) {
            Ok(headers) => Admission::Admitted(user, headers),
            Err(t) => Admission::Refused(throttled(t.error, t.retry_after)),
        }
    }
}

/// The gate in front of the Web API.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let write = request.method() != Method::GET && request.method() != Method::HEAD;
    let token = crate::auth::bearer(request.headers()).map(str::to_owned);
    let base = base_url(request.headers());
    let (latency_ms, admission) = {
        let mut state = shared.lock();
        let latency_ms = state.faults.faults.latency_ms;
        (latency_ms, state.dataverse_admit(token.as_deref(), &base))
    };
    match admission {
        Admission::Refused(response) => {
            let refused: Result<fn(&mut HeaderMap), Response> = Err(response);
            crate::gate::pass(&shared, write, latency_ms, refused, request, next).await
        }
        Admission::Admitted(user, remaining) => {
            let slot = Slot {
                shared: shared.clone(),
                user,
                start: Instant::now(),
            };
            let add = move |headers: &mut HeaderMap| {
                headers.insert(
                    "x-ms-ratelimit-burst-remaining-xrm-requests",
                    HeaderValue::from(remaining.requests),
                );
                if let Ok(value) = HeaderValue::from_str(&remaining.time_value()) {
                    headers.insert("x-ms-ratelimit-time-remaining-xrm-requests", value);
                }
            };
            crate::gate::pass_holding(&shared, write, latency_ms, Ok(add), request, next, slot)
                .await
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/data", any(dispatch))
        .route("/api/data/", any(dispatch))
        .route("/api/data/{*rest}", any(dispatch))
        .layer(middleware::from_fn_with_state(shared, gate))
        .merge(control::router())
}

/// Where an operation runs: the base URL and the API version.
struct Env<'a> {
    base: &'a str,
    version: &'a str,
}

/// What the request's headers ask for.
#[derive(Clone, Debug, Default)]
struct Directives {
    representation: bool,
    condition: Condition,
    options: WriteOptions,
    /// `If-None-Match: W/"n"` on a read.
    unchanged_if: Option<String>,
}

fn directives(get: impl Fn(&str) -> Option<String>) -> Directives {
    let prefer = get("prefer").unwrap_or_default();
    let representation = prefer
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("return=representation"));
    let if_match = get("if-match").map(|v| v.trim().to_owned());
    let if_none_match = get("if-none-match")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.eq_ignore_ascii_case("null") && !v.is_empty());
    let condition = match (if_match.as_deref(), if_none_match.as_deref()) {
        (Some("*"), _) => Condition::Exists,
        (Some(tag), _) if !tag.is_empty() => Condition::Version(normal_etag(tag)),
        (_, Some("*")) => Condition::Absent,
        _ => Condition::None,
    };
    let detect = get("mscrm.suppressduplicatedetection")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    Directives {
        representation,
        condition,
        options: WriteOptions {
            detect_duplicates: detect,
        },
        unchanged_if: if_none_match.filter(|v| v != "*").map(|v| normal_etag(&v)),
    }
}

/// `W/"5"`, `"5"` or `5` → `W/"5"`.
fn normal_etag(tag: &str) -> String {
    let bare = tag.trim().trim_start_matches("W/").trim_matches('"');
    wire::etag(bare.parse().unwrap_or(0))
}

/// One request to run: from the HTTP request or a batch part.
struct Call<'a> {
    method: &'a str,
    /// The path after the version, percent-encoded.
    path: &'a str,
    query: Query,
    directives: Directives,
    body: &'a [u8],
}

/// `@odata.context` of a row or a collection.
fn context(env: &Env<'_>, table: Table, select: Option<&[String]>, entity: bool) -> String {
    let mut out = format!(
        "{}/api/data/{}/$metadata#{}",
        env.base,
        env.version,
        table.entity_set()
    );
    if let Some(columns) = select {
        out.push('(');
        out.push_str(&columns.join(","));
        out.push(')');
    }
    if entity {
        out.push_str("/$entity");
    }
    out
}

/// A row as the Web API answers it: `@odata.etag`, the asked columns
/// (every column when none; null when unset) and the id column.
fn render(
    dv: &DataverseState,
    table: Table,
    record: &DataverseRecord,
    select: Option<&[String]>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("@odata.etag".into(), record.etag().into());
    let all;
    let names: &[String] = match select {
        Some(names) => names,
        None => {
            all = dv.schema.readable_names(table);
            &all
        }
    };
    for name in names {
        out.insert(
            name.clone(),
            record.fields.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    out.insert(table.id_column().into(), record.id.clone().into());
    out
}

/// Runs one operation against the org.
fn execute(
    dv: &mut DataverseState,
    env: &Env<'_>,
    call: &Call<'_>,
    journal: &mut Journal,
) -> Answer {
    match run(dv, env, call, journal) {
        Ok(answer) => answer,
        Err(error) => error.into(),
    }
}

fn run(
    dv: &mut DataverseState,
    env: &Env<'_>,
    call: &Call<'_>,
    journal: &mut Journal,
) -> Result<Answer, DvError> {
    let resource = odata::parse_resource(call.path)?;
    let method = call.method;
    if resource.set.is_empty() && resource.key.is_none() {
        return match method {
            "GET" => Ok(service_document(env)),
            _ => Err(DvError::method(method, "")),
        };
    }
    if resource.set == "WhoAmI" && resource.key.is_none() {
        return Ok(Answer::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}/api/data/{}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", env.base, env.version),
                "BusinessUnitId": BUSINESS_UNIT_ID,
                "UserId": USER_ID,
                "OrganizationId": ORGANIZATION_ID,
            }),
        ));
    }
    if resource.set == "EntityDefinitions" {
        return metadata::answer(dv, env, &resource, method, &call.query);
    }
    let Some(table) = Table::from_entity_set(&resource.set) else {
        return Err(DvError::segment(&resource.set));
    };
    let q = &call.query;
    match (resource.key, resource.rest, method) {
        (None, None, "GET") => list(dv, env, table, q),
        (None, None, "POST") => {
            let select = odata::select(&dv.schema, table, q.get("$select"))?;
            let changes = dv.changes(table, call.body)?;
            let id = dv.create(table, &changes, None, call.directives.options, journal)?;
            written(
                dv,
                env,
                table,
                &id,
                select,
                call.directives.representation,
                StatusCode::CREATED,
            )
        }
        (None, None, _) => Err(DvError::method(method, table.entity_set())),
        (Some(key), None, "GET") => {
            let select = odata::select(&dv.schema, table, q.get("$select"))?;
            let record = found(dv, table, &key)?;
            if call.directives.unchanged_if.as_deref() == Some(record.etag().as_str()) {
                return Ok(Answer::empty(StatusCode::NOT_MODIFIED));
            }
            let mut body = render(dv, table, record, select.as_deref());
            body.insert(
                "@odata.context".into(),
                context(env, table, select.as_deref(), true).into(),
            );
            Ok(Answer::json(StatusCode::OK, Value::Object(body)))
        }
        (Some(key), None, "PATCH") => {
            let select = odata::select(&dv.schema, table, q.get("$select"))?;
            let changes = dv.changes(table, call.body)?;
            let (id, created) = dv.upsert(
                table,
                &key,
                &changes,
                &call.directives.condition,
                call.directives.options,
                journal,
            )?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            written(
                dv,
                env,
                table,
                &id,
                select,
                call.directives.representation,
                status,
            )
        }
        (Some(key), None, "DELETE") => {
            let id = found(dv, table, &key)?.id.clone();
            dv.delete(table, &id, journal)?;
            Ok(Answer::empty(StatusCode::NO_CONTENT))
        }
        (Some(_), None, _) => Err(DvError::method(method, table.entity_set())),
        (None, Some(action), "POST")
            if action == "Microsoft.Dynamics.CRM.CreateMultiple"
                || action == "Microsoft.Dynamics.CRM.UpsertMultiple" =>
        {
            multiple(dv, env, table, &action, call, journal)
        }
        (Some(key), Some(property), "GET") => {
            if !dv.schema.readable(table, &property) {
                return Err(DvError::segment(&property));
            }
            let record = found(dv, table, &key)?;
            let value = record.fields.get(&property).cloned().unwrap_or(Value::Null);
            Ok(Answer::json(
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}/api/data/{}/$metadata#{}({})/{property}", env.base, env.version, table.entity_set(), record.id),
                    "value": value,
                }),
            ))
        }
        (_, Some(property), _) => Err(DvError::segment(&property)),
    }
}

fn found<'d>(
    dv: &'d DataverseState,
    table: Table,
    key: &Key,
) -> Result<&'d DataverseRecord, DvError> {
    dv.find(table, key)?.ok_or_else(|| match key {
        Key::Id(id) => DvError::not_found_id(table, id),
        Key::Alternate(_) => DvError::not_found_key(table),
    })
}

/// The answer to a write: 204 + `OData-EntityId`, or with
/// `return=representation` the row (201 created, 200 updated).
fn written(
    dv: &DataverseState,
    env: &Env<'_>,
    table: Table,
    id: &str,
    select: Option<Vec<String>>,
    representation: bool,
    status: StatusCode,
) -> Result<Answer, DvError> {
    if !representation {
        return Ok(Answer::empty(StatusCode::NO_CONTENT).with(
            "OData-EntityId",
            entity_url(env.base, env.version, table, id),
        ));
    }
    let record = dv
        .get(table, id)
        .ok_or_else(|| DvError::not_found_id(table, id))?;
    let mut body = render(dv, table, record, select.as_deref());
    body.insert(
        "@odata.context".into(),
        context(env, table, select.as_deref(), true).into(),
    );
    Ok(Answer::json(status, Value::Object(body))
        .with("Preference-Applied", "return=representation"))
}

fn list(dv: &DataverseState, env: &Env<'_>, table: Table, q: &Query) -> Result<Answer, DvError> {
    let select = odata::select(&dv.schema, table, q.get("$select"))?;
    let filter = odata::filter(&dv.schema, table, q.get("$filter"))?;
    let top = odata::top(q.get("$top"))?;
    let order = odata::order_by(&dv.schema, table, q.get("$orderby"))?;
    let rows = dv.query(table, filter.as_ref(), &order);
    let total = rows.len();
    let value: Vec<Value> = rows
        .into_iter()
        .take(top.unwrap_or(usize::MAX))
        .map(|r| Value::Object(render(dv, table, r, select.as_deref())))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        context(env, table, select.as_deref(), false).into(),
    );
    if q.get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    {
        body.insert("@odata.count".into(), total.into());
    }
    body.insert("value".into(), value.into());
    Ok(Answer::json(StatusCode::OK, Value::Object(body)))
}

fn service_document(env: &Env<'_>) -> Answer {
    let sets: Vec<Value> = Table::ALL
        .iter()
        .map(|t| json!({"name": t.entity_set(), "kind": "EntitySet", "url": t.entity_set()}))
        .collect();
    Answer::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/api/data/{}/$metadata", env.base, env.version),
            "value": sets,
        }),
    )
}

/// `CreateMultiple` / `UpsertMultiple`: `{"Targets":[{…}]}`, all or
/// nothing, answered `{"Ids":[…]}`. An upsert target names its row with
/// `@odata.id` (`leads(new_leadgateid='k')`), its id column, or the
/// columns of an alternate key.
fn multiple(
    dv: &mut DataverseState,
    env: &Env<'_>,
    table: Table,
    action: &str,
    call: &Call<'_>,
    journal: &mut Journal,
) -> Result<Answer, DvError> {
    let upsert = action.ends_with("UpsertMultiple");
    let body: Value = serde_json::from_slice(call.body).map_err(|err| {
        DvError::payload(
            table,
            &format!("Microsoft.OData.ODataException: Invalid JSON. {err}"),
        )
    })?;
    let Some(targets) = body.get("Targets").and_then(Value::as_array) else {
        return Err(DvError::bad_query(
            "The parameter 'Targets' in the request payload is not a valid parameter for the operation.",
        ));
    };
    let mut own = Journal::default();
    let mut ids = Vec::with_capacity(targets.len());
    for target in targets {
        let result = (|| {
            let bytes = serde_json::to_vec(target).unwrap_or_default();
            let changes = dv.changes(table, &bytes)?;
            if !upsert {
                return dv.create(table, &changes, None, call.directives.options, &mut own);
            }
            let key = match target.get("@odata.id").and_then(Value::as_str) {
                Some(reference) => {
                    let tail = reference.rsplit('/').next().unwrap_or(reference);
                    odata::parse_resource(tail)?.key
                }
                None => changes.id.clone().map(Key::Id).or_else(|| {
                    dv.schema.keys(table).iter().find_map(|k| {
                        k.columns
                            .iter()
                            .map(|c| {
                                target
                                    .get(c)
                                    .and_then(Value::as_str)
                                    .map(|v| (c.clone(), v.to_owned()))
                            })
                            .collect::<Option<Vec<_>>>()
                            .map(Key::Alternate)
                    })
                }),
            };
            match key {
                Some(key) => dv
                    .upsert(
                        table,
                        &key,
                        &changes,
                        &Condition::None,
                        call.directives.options,
                        &mut own,
                    )
                    .map(|(id, _)| id),
                None => dv.create(table, &changes, None, call.directives.options, &mut own),
            }
        })();
        match result {
            Ok(id) => ids.push(id),
            Err(error) => {
                dv.rollback(own);
                return Err(error);
            }
        }
    }
    journal.absorb(own);
    let name = action.trim_start_matches("Microsoft.Dynamics.CRM.");
    Ok(Answer::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/api/data/{}/$metadata#Microsoft.Dynamics.CRM.{name}Response", env.base, env.version),
            "Ids": ids,
        }),
    ))
}

/// Logs and counts what a journal created and updated.
fn commit(state: &mut SimState, journal: Journal) {
    for id in &journal.created {
        let Some(record) = Table::ALL.iter().find_map(|t| state.dataverse.get(*t, id)) else {
            continue;
        };
        let emails: Vec<String> = ["emailaddress1", "emailaddress2"]
            .iter()
            .filter_map(|c| record.text(c).map(str::to_owned))
            .collect();
        let phones: Vec<String> = ["telephone1", "mobilephone"]
            .iter()
            .filter_map(|c| record.text(c).map(str::to_owned))
            .collect();
        state
            .creates
            .record(Crm::Dynamics, id.clone(), emails, phones);
    }
    state.stats.records_created += journal.created.len() as u64;
    state.stats.records_updated += journal.updated;
}

/// Keeps a request's changes (logging them), or drops them while the
/// answer says they were made (`fail_silently_next`).
fn settle(state: &mut SimState, journal: Journal) {
    if journal.is_empty() {
        return;
    }
    if state.faults.take_silent_write() {
        state.stats.writes_dropped += 1;
        state.dataverse.rollback(journal);
        return;
    }
    commit(state, journal);
}

/// The version segment and the rest of `/api/data/{version}/{rest}`.
fn split_version(path: &str) -> Result<(&'static str, &str), DvError> {
    let rest = path
        .strip_prefix("/api/data")
        .unwrap_or_default()
        .trim_start_matches('/');
    let (segment, rest) = rest.split_once('/').unwrap_or((rest, ""));
    VERSIONS
        .into_iter()
        .find(|v| *v == segment)
        .map(|v| (v, rest))
        .ok_or_else(|| DvError::segment(if segment.is_empty() { "data" } else { segment }))
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (version, path) = match split_version(uri.path()) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let base = base_url(&headers);
    let env = Env {
        base: &base,
        version,
    };
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if path == "$batch" {
        if method != Method::POST {
            return DvError::method(method.as_str(), "$batch").into_response();
        }
        let content_type = get("content-type");
        let items = match batch::parse(content_type.as_deref(), &body) {
            Ok(items) => items,
            Err(e) => return e.into_response(),
        };
        let continue_on_error = get("prefer").is_some_and(|p| {
            p.split(',').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                matches!(
                    p.as_str(),
                    "odata.continue-on-error"
                        | "continue-on-error"
                        | "odata.continue-on-error=true"
                        | "continue-on-error=true"
                )
            })
        });
        return run_batch(&shared, &env, &items, continue_on_error);
    }
    let call = Call {
        method: method.as_str(),
        path,
        query: Query::parse(uri.query()),
        directives: directives(get),
        body: &body,
    };
    let mut guard = shared.lock();
    let state = &mut *guard;
    let mut journal = Journal::default();
    let answer = execute(&mut state.dataverse, &env, &call, &mut journal);
    settle(state, journal);
    drop(guard);
    answer.into_response()
}

/// The version and path an operation in a batch addresses.
fn operation_target<'o>(
    url: &'o str,
    env: &Env<'_>,
) -> Result<(&'static str, &'o str, Option<&'o str>), DvError> {
    let without_scheme = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let path = match without_scheme {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    if path.starts_with("/api/data") {
        let (version, rest) = split_version(path)?;
        return Ok((version, rest, query));
    }
    if path.starts_with('/') {
        return Err(DvError::segment(path.trim_start_matches('/')));
    }
    let version = VERSIONS
        .into_iter()
        .find(|v| *v == env.version)
        .unwrap_or("v9.2");
    Ok((version, path, query))
}

/// Runs one batch operation; `ids` maps Content-IDs to the URLs of rows
/// written earlier in the change set.
fn run_operation(
    dv: &mut DataverseState,
    env: &Env<'_>,
    op: &Operation,
    ids: &[(String, String)],
    journal: &mut Journal,
) -> Answer {
    if op.url.eq_ignore_ascii_case("$batch") || op.url.ends_with("/$batch") {
        return DvError::batch("A batch request cannot contain another batch request.").into();
    }
    let url = match op.url.strip_prefix('$') {
        Some(reference) => {
            let (id, rest) = reference
                .find(['/', '?'])
                .map_or((reference, ""), |i| reference.split_at(i));
            match ids.iter().find(|(cid, _)| cid == id) {
                Some((_, target)) => format!("{target}{rest}"),
                None => {
                    return DvError::batch(format!(
                        "Content-ID Reference: '${id}' does not exist in the batch context."
                    ))
                    .into();
                }
            }
        }
        None => op.url.clone(),
    };
    let (version, path, query) = match operation_target(&url, env) {
        Ok(t) => t,
        Err(e) => return e.into(),
    };
    let call = Call {
        method: &op.method,
        path,
        query: Query::parse(query),
        directives: directives(|name| op.header(name).map(str::to_owned)),
        body: &op.body,
    };
    let env = Env {
        base: env.base,
        version,
    };
    execute(dv, &env, &call, journal)
}

fn run_batch(
    shared: &Arc<Shared>,
    env: &Env<'_>,
    items: &[Item],
    continue_on_error: bool,
) -> Response {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let dv = &mut state.dataverse;
    let mut journal = Journal::default();
    let mut answers = Vec::with_capacity(items.len());
    let mut stopped = None;
    for item in items {
        let answer = match item {
            Item::Single(op) => {
                let answer = run_operation(dv, env, op, &[], &mut journal);
                ItemAnswer::Single(answer, op.content_id.clone())
            }
            Item::ChangeSet(ops) => {
                let mut set_journal = Journal::default();
                let mut done = Vec::with_capacity(ops.len());
                let mut ids: Vec<(String, String)> = Vec::new();
                let mut failure = None;
                for op in ops {
                    let answer = if op.method == "GET" {
                        DvError::batch("A GET request cannot be part of a change set.").into()
                    } else {
                        run_operation(dv, env, op, &ids, &mut set_journal)
                    };
                    if !answer.is_success() {
                        failure = Some((answer, op.content_id.clone()));
                        break;
                    }
                    if let (Some(cid), Some(url)) =
                        (&op.content_id, answer.header("OData-EntityId"))
                    {
                        ids.push((cid.clone(), url.to_owned()));
                    }
                    done.push((answer, op.content_id.clone()));
                }
                match failure {
                    Some((answer, cid)) => {
                        dv.rollback(set_journal);
                        ItemAnswer::Failed(answer, cid)
                    }
                    None => {
                        journal.absorb(set_journal);
                        ItemAnswer::ChangeSet(done)
                    }
                }
            }
        };
        let failed = batch::failed_status(&answer);
        answers.push(answer);
        if let Some(status) = failed
            && !continue_on_error
        {
            stopped = Some(status);
            break;
        }
    }
    settle(state, journal);
    drop(guard);
    let (boundary, text) = batch::render(&answers);
    let status = stopped.unwrap_or(StatusCode::OK);
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert("odata-version", HeaderValue::from_static("4.0"));
    if continue_on_error {
        headers.insert(
            "preference-applied",
            HeaderValue::from_static("odata.continue-on-error"),
        );
    }
    response
}

impl SimHandle {
    /// Every Dataverse row of `table` (`lead`/`leads`, `contact`/`contacts`),
    /// in creation order; empty for an unknown table.
    pub fn dataverse_records(&self, table: &str) -> Vec<DataverseRecord> {
        let Some(table) = Table::parse(table) else {
            return Vec::new();
        };
        self.shared.lock().dataverse.rows(table).cloned().collect()
    }

    /// One Dataverse row by its GUID.
    pub fn dataverse_record(&self, table: &str, id: &str) -> Option<DataverseRecord> {
        let table = Table::parse(table)?;
        self.shared.lock().dataverse.get(table, id).cloned()
    }

    /// Rows of `table` whose `emailaddress1` is `email`, ignoring case.
    /// More than one is a duplicate.
    pub fn dataverse_count_by_email(&self, table: &str, email: &str) -> usize {
        self.dataverse_records(table)
            .iter()
            .filter(|r| {
                r.email()
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
            })
            .count()
    }

    /// Service protection: requests per user per window.
    pub fn set_dataverse_request_limit(&self, requests: u32) {
        self.shared.lock().dataverse.limits.requests = requests;
    }

    /// Replaces every service protection limit.
    pub fn set_dataverse_limits(&self, limits: DataverseLimits) {
        self.shared.lock().dataverse.limits = limits;
    }

    pub fn dataverse_limits(&self) -> DataverseLimits {
        self.shared.lock().dataverse.limits
    }

    /// Requests counted against `user`'s window now (`entra` for every
    /// Entra token, `token:<t>` for a static one).
    pub fn dataverse_requests_used(&self, user: &str) -> u32 {
        let mut state = self.shared.lock();
        let limits = state.dataverse.limits;
        state
            .dataverse
            .usage
            .requests(&limits, user, Instant::now())
    }

    /// Defines an alternate key on one column of `table` (adding the
    /// column as text when it does not exist). False for an unknown table
    /// or a name that is not a logical name.
    pub fn define_dataverse_alternate_key(&self, table: &str, column: &str) -> bool {
        self.define_dataverse_compound_key(table, &[column])
    }

    /// Defines an alternate key made of several columns.
    pub fn define_dataverse_compound_key(&self, table: &str, columns: &[&str]) -> bool {
        let Some(table) = Table::parse(table) else {
            return false;
        };
        self.shared.lock().dataverse.define_key(table, columns)
    }

    /// Adds a custom text column (`new_…`) to `table`.
    pub fn define_dataverse_column(&self, table: &str, name: &str, max_length: usize) -> bool {
        let Some(table) = Table::parse(table) else {
            return false;
        };
        self.shared
            .lock()
            .dataverse
            .schema
            .define_column(table, name, max_length)
    }

    /// Publishes (on, the default) or unpublishes the org's duplicate
    /// detection rules; `MSCRM.SuppressDuplicateDetection: false` only
    /// finds duplicates while they are published.
    pub fn set_dataverse_duplicate_detection(&self, on: bool) {
        self.shared.lock().dataverse.duplicate_detection = on;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_targets_and_directives() {
        assert_eq!(
            split_version("/api/data/v9.2/leads").unwrap(),
            ("v9.2", "leads")
        );
        assert_eq!(split_version("/api/data/v9.0/").unwrap(), ("v9.0", ""));
        assert_eq!(
            split_version("/api/data/v8.2/leads").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
        let env = Env {
            base: "http://x",
            version: "v9.1",
        };
        assert_eq!(
            operation_target(
                "https://org.crm.dynamics.com/api/data/v9.2/leads(1)?$select=a",
                &env
            )
            .unwrap(),
            ("v9.2", "leads(1)", Some("$select=a"))
        );
        assert_eq!(
            operation_target("leads", &env).unwrap(),
            ("v9.1", "leads", None)
        );
        assert!(operation_target("/other/leads", &env).is_err());
        let d = directives(|n| match n {
            "prefer" => Some("odata.include-annotations=\"*\", return=representation".into()),
            "if-none-match" => Some("null".into()),
            "mscrm.suppressduplicatedetection" => Some("False".into()),
            _ => None,
        });
        assert!(d.representation);
        assert_eq!(d.condition, Condition::None);
        assert!(d.options.detect_duplicates);
        let d = directives(|n| (n == "if-match").then(|| "W/\"12\"".into()));
        assert_eq!(d.condition, Condition::Version("W/\"12\"".into()));
        let d = directives(|n| (n == "if-none-match").then(|| "*".into()));
        assert_eq!(d.condition, Condition::Absent);
    }
}
