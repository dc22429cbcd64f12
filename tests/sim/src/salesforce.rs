//! Salesforce's REST API (Lead and Contact), beside HubSpot and Pipedrive
//! on the same server, under `/services/data/v{NN}.0/` (any version from
//! 46.0, when upserts started answering `created`, to [`LATEST_VERSION`]).
//!
//! What an adapter meets on the real service (`shared/crm-apis.md` §2):
//!
//! - **Auth**: `Authorization: Bearer <token>`, valid when the simulator's
//!   `/services/oauth2/token` issued it (and it has not expired, been
//!   expired with [`crate::SimHandle::expire_oauth_access_tokens`], or sat
//!   idle past the 2-hour session timeout, which every call resets) or it
//!   is one of the configured static tokens. Otherwise 401
//!   `[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`.
//! - **Records**: `POST /sobjects/{Object}` (201 SaveResult), `GET` and
//!   `PATCH` (204) `/sobjects/{Object}/{id}`, upsert by External ID
//!   `PATCH /sobjects/{Object}/{Field}/{value}` (201 `created:true` / 200
//!   `created:false`, 300 with the matching records' URLs when the value
//!   is not unique, 404 `NOT_FOUND` when `Field` is not an External ID,
//!   400 `INVALID_FIELD` "The {Field} field should not be specified in the
//!   sobject data." when the body repeats it) and `GET` by External ID.
//! - **sObject Collections**: `POST /composite/sobjects` (create, mixed
//!   types), `PATCH /composite/sobjects/{Object}/{Field}` (upsert),
//!   `GET|POST /composite/sobjects/{Object}` (retrieve, `null` for ids not
//!   found). At most 200 records (else 400 `EXCEEDED_ID_LIMIT`), processed
//!   in order, answered 200 with one result per record; a failed record is
//!   `{"success":false,"errors":[{"statusCode",…}]}`; with `allOrNone`
//!   nothing is written when one fails and the others report
//!   `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
//! - **SOQL** `GET /query?q=` for the subset in [`soql`].
//! - **Duplicate rule** on Lead (default on): a new lead whose email is an
//!   existing lead's or contact's is refused with `DUPLICATES_DETECTED`
//!   (with `duplicateResult` naming the matches in a whole-call answer;
//!   in a Collections answer only `statusCode`/`message`/`fields`, no ids,
//!   as Salesforce sends it), unless `Sforce-Duplicate-Rule-Header:
//!   allowSave=true`.
//! - **Converted leads** are read-only: `CANNOT_UPDATE_CONVERTED_LEAD`.
//! - **Limits**: a daily allocation (100,000 by default) per org, rolling
//!   over 24 hours; `Sforce-Limit-Info: api-usage=N/M` on every answer
//!   but the version list; past it every call is 403
//!   `REQUEST_LIMIT_EXCEEDED` "TotalRequests Limit exceeded.". Salesforce
//!   never answers 429: an injected 429 storm (`Faults::rate_limit_next`)
//!   answers 403 `REQUEST_LIMIT_EXCEEDED` "ConcurrentRequests (Concurrent
//!   API Requests) Limit exceeded." instead, the transient limit
//!   Salesforce has. Outages, 5xx bursts (a 500 is Salesforce's
//!   `UNKNOWN_EXCEPTION` array), latency and silent writes apply as for
//!   the other CRMs.
//!
//! Not documented by Salesforce, so chosen here: the duplicate rule does
//! not compare records of one Collections call with each other (only with
//! records saved before it), and it ignores converted leads (their
//! contact matches instead).

mod schema;
mod soql;
mod store;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};

use crate::errors::json_response;
use crate::faults::GatewayError;
use crate::oauth::Vendor;
use crate::wire::Query;
use crate::{Crm, Shared, State as SimState};

pub use store::{DuplicateRuleAction, SalesforceRecord};

pub(crate) use schema::SObject;
pub(crate) use store::SalesforceState;

use schema::Field;
use store::{Tx, UpsertFailure, WriteOptions, looks_like_id};
use wire::{SfError, attributes, errors_response, failed, record_url, saved};

/// The oldest API version served: upserts answer `created` from 46.0.
pub const FIRST_VERSION: u32 = 46;
/// The newest API version served.
pub const LATEST_VERSION: u32 = 66;
/// Most records one sObject Collections call may carry.
pub const MAX_COLLECTION: usize = 200;
/// The daily API request allocation of a new org (Enterprise Edition base).
pub const DEFAULT_DAILY_LIMIT: u32 = 100_000;

const TOTAL_REQUESTS: &str = "TotalRequests Limit exceeded.";
const CONCURRENT_REQUESTS: &str = "ConcurrentRequests (Concurrent API Requests) Limit exceeded.";

/// The release name of API version `v` (46 = Summer '19, three a year).
fn release_label(v: u32) -> String {
    let k = v - FIRST_VERSION;
    let season = ["Summer", "Winter", "Spring"][(k % 3) as usize];
    format!("{season} '{:02}", 19 + k.div_ceil(3))
}

/// `GET /services/data/`: every version served, oldest first.
fn versions() -> Value {
    (FIRST_VERSION..=LATEST_VERSION)
        .map(|v| {
            json!({
                "label": release_label(v),
                "url": format!("/services/data/v{v}.0"),
                "version": format!("{v}.0"),
            })
        })
        .collect()
}

/// `v59.0` → `59.0`, if served.
fn parse_version(segment: &str) -> Option<String> {
    let (major, minor) = segment.strip_prefix('v')?.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    (minor == "0" && (FIRST_VERSION..=LATEST_VERSION).contains(&major))
        .then(|| format!("{major}.0"))
}

fn is_version_list(path: &str) -> bool {
    matches!(path, "/services/data" | "/services/data/")
}

/// A Salesforce 500: the `UNKNOWN_EXCEPTION` array with an ErrorId.
fn unknown_exception() -> Response {
    let error_id = rand::random::<u32>() % 2_000_000_000;
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!([{
            "errorCode": "UNKNOWN_EXCEPTION",
            "message": format!("An unexpected error occurred. Please include this ErrorId if you contact support: {error_id}-{} (-{error_id})", error_id % 100_000),
        }]),
    )
}

fn limit_header(used: u32, max: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("api-usage={used}/{max}"))
        .unwrap_or_else(|_| HeaderValue::from_static("api-usage=0/0"))
}

fn with_limit(mut response: Response, used: u32, max: u32) -> Response {
    response
        .headers_mut()
        .insert("sforce-limit-info", limit_header(used, max));
    response
}

impl SimState {
    /// Whether `token` opens a session: a live access token from the
    /// Salesforce token endpoint (its idle timer restarts) or a static one.
    fn salesforce_session(&mut self, token: Option<&str>, now_ms: u64) -> bool {
        let Some(token) = token else { return false };
        self.oauth.touch(Vendor::Salesforce, token, now_ms)
            || self
                .tokens
                .check(Some(token), std::time::Instant::now())
                .is_ok()
    }

    /// Faults, auth, limits, in Salesforce's order.
    fn salesforce_admit(&mut self, token: Option<&str>, version_list: bool) -> Admission {
        if let Some(error) = self.faults.take_gateway_error() {
            return Admission::Refused(match error {
                GatewayError::Internal => unknown_exception(),
                other => other.into_response(),
            });
        }
        if version_list {
            return Admission::Admitted(None);
        }
        let now = crate::now_ms();
        if !self.salesforce_session(token, now) {
            return Admission::Refused(wire::invalid_session());
        }
        if self.faults.take_rate_limit().is_some() {
            let (used, max) = self.salesforce.usage(now);
            let refusal = wire::limit_exceeded(CONCURRENT_REQUESTS);
            return Admission::Refused(with_limit(refusal, used, max));
        }
        match self.salesforce.count_request(now) {
            Ok((used, max)) => Admission::Admitted(Some(limit_header(used, max))),
            Err((used, max)) => {
                let refusal = wire::limit_exceeded(TOTAL_REQUESTS);
                Admission::Refused(with_limit(refusal, used, max))
            }
        }
    }
}

/// A request let through (with its `Sforce-Limit-Info` value, none for
/// the version list) or the answer that refuses it.
enum Admission {
    Admitted(Option<HeaderValue>),
    Refused(Response),
}

/// The gate in front of Salesforce's routes.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let version_list = is_version_list(request.uri().path());
    let write =
        !version_list && request.method() != Method::GET && request.method() != Method::HEAD;
    let token = crate::auth::bearer(request.headers()).map(str::to_owned);
    let (latency_ms, admission) = {
        let mut state = shared.lock();
        let latency_ms = state.faults.faults.latency_ms;
        (
            latency_ms,
            state.salesforce_admit(token.as_deref(), version_list),
        )
    };
    let admitted = match admission {
        Admission::Refused(response) => Err(response),
        Admission::Admitted(header) => Ok(move |headers: &mut HeaderMap| {
            if let Some(value) = header {
                headers.insert("sforce-limit-info", value);
            }
        }),
    };
    crate::gate::pass(&shared, write, latency_ms, admitted, request, next).await
}

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/services/data", any(dispatch))
        .route("/services/data/", any(dispatch))
        .route("/services/data/{*rest}", any(dispatch))
        .layer(middleware::from_fn_with_state(shared, gate))
}

/// What every handler gets.
struct Ctx {
    shared: Arc<Shared>,
    /// `59.0`.
    version: String,
    query: Query,
    options: WriteOptions,
    body: Bytes,
}

/// `Sforce-Duplicate-Rule-Header: allowSave=true; includeRecordDetails=true`.
fn write_options(headers: &HeaderMap) -> WriteOptions {
    let allow_save = headers
        .get("sforce-duplicate-rule-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .filter_map(|part| part.split_once('='))
                .any(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("allowSave")
                        && v.trim().eq_ignore_ascii_case("true")
                })
        });
    WriteOptions { allow_save }
}

/// A path segment, percent-decoded (`+` stays a plus: it is a path).
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

fn method_not_allowed(method: &Method, allowed: &str) -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!([{
            "errorCode": "METHOD_NOT_ALLOWED",
            "message": format!("HTTP Method '{method}' not allowed. Allowed are {allowed}"),
        }]),
    )
}

fn not_found() -> Response {
    SfError::not_found().into_response()
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rest = uri
        .path()
        .strip_prefix("/services/data")
        .unwrap_or_default();
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let Some((first, rest)) = segments.split_first() else {
        return match method {
            Method::GET => json_response(StatusCode::OK, &versions()),
            _ => method_not_allowed(&method, "GET,HEAD"),
        };
    };
    let Some(version) = parse_version(first) else {
        return not_found();
    };
    let ctx = Ctx {
        shared,
        version,
        query: Query::parse(uri.query()),
        options: write_options(&headers),
        body,
    };
    let path: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (path.as_slice(), &method) {
        ([], &Method::GET) => resources(&ctx),
        (["limits"], &Method::GET) => limits(&ctx),
        (["query"], &Method::GET) => query(&ctx),
        (["sobjects"], &Method::GET) => describe_global(&ctx),
        (["sobjects", object], _) => with_object(object, |o| match method {
            Method::POST => create(&ctx, o),
            Method::GET => basic_info(&ctx, o),
            _ => method_not_allowed(&method, "GET,HEAD,POST"),
        }),
        (["sobjects", object, "describe"], &Method::GET) => {
            with_object(object, |o| describe(&ctx, o))
        }
        (["sobjects", object, id], _) => with_object(object, |o| match method {
            Method::GET => read(&ctx, o, id),
            Method::PATCH => update(&ctx, o, id),
            Method::DELETE => delete(&ctx, o, id),
            // Upsert with Id as the External ID and a null value: a create.
            Method::POST if id.eq_ignore_ascii_case("Id") => create(&ctx, o),
            _ => method_not_allowed(&method, "GET,PATCH,HEAD,DELETE"),
        }),
        (["sobjects", object, field, value], _) => with_object(object, |o| match method {
            Method::GET => read_by_external_id(&ctx, o, field, value),
            Method::PATCH => upsert(&ctx, o, field, value),
            _ => method_not_allowed(&method, "GET,PATCH,HEAD,DELETE"),
        }),
        (["composite", "sobjects"], &Method::POST) => create_collection(&ctx),
        (["composite", "sobjects"], _) => method_not_allowed(&method, "POST,PATCH,DELETE"),
        (["composite", "sobjects", object], _) => with_object(object, |o| match method {
            Method::GET | Method::POST => retrieve_collection(&ctx, o, &method),
            _ => method_not_allowed(&method, "GET,POST"),
        }),
        (["composite", "sobjects", object, field], &Method::PATCH) => {
            with_object(object, |o| upsert_collection(&ctx, o, field))
        }
        _ => not_found(),
    }
}

/// Runs `f` for a known sObject; 404 `NOT_FOUND` for any other.
fn with_object(name: &str, f: impl FnOnce(SObject) -> Response) -> Response {
    match SObject::parse(name) {
        Some(object) => f(object),
        None => not_found(),
    }
}

/// The body as a JSON object, or Salesforce's `JSON_PARSER_ERROR`.
fn body_object(body: &[u8]) -> Result<Map<String, Value>, SfError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(SfError::json_parser(format!(
            "Cannot deserialize instance of {} from {} value",
            "SObject",
            if other.is_array() {
                "START_ARRAY"
            } else {
                "VALUE_STRING"
            }
        ))),
        Err(err) => Err(SfError::json_parser(format!(
            "Unexpected character: {err} at [line:{}, column:{}]",
            err.line(),
            err.column()
        ))),
    }
}

fn resources(ctx: &Ctx) -> Response {
    let base = format!("/services/data/v{}", ctx.version);
    json_response(
        StatusCode::OK,
        &json!({
            "sobjects": format!("{base}/sobjects"),
            "query": format!("{base}/query"),
            "limits": format!("{base}/limits"),
            "composite": format!("{base}/composite"),
        }),
    )
}

fn limits(ctx: &Ctx) -> Response {
    let (used, max) = ctx.shared.lock().salesforce.usage(crate::now_ms());
    json_response(
        StatusCode::OK,
        &json!({"DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)}}),
    )
}

fn object_summary(object: SObject, version: &str) -> Value {
    let base = format!("/services/data/v{version}/sobjects/{}", object.name());
    json!({
        "name": object.name(),
        "label": object.name(),
        "keyPrefix": object.prefix(),
        "custom": false,
        "createable": true,
        "updateable": true,
        "queryable": true,
        "urls": {
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        },
    })
}

fn describe_global(ctx: &Ctx) -> Response {
    let objects: Vec<Value> = SObject::ALL
        .into_iter()
        .map(|o| object_summary(o, &ctx.version))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"encoding": "UTF-8", "maxBatchSize": MAX_COLLECTION, "sobjects": objects}),
    )
}

fn basic_info(ctx: &Ctx, object: SObject) -> Response {
    let state = ctx.shared.lock();
    let recent: Vec<Value> = state
        .salesforce
        .of(object)
        .rev()
        .take(10)
        .map(|r| json!({"attributes": attributes(object.name(), &r.id, &ctx.version), "Id": r.id}))
        .collect();
    drop(state);
    json_response(
        StatusCode::OK,
        &json!({"objectDescribe": object_summary(object, &ctx.version), "recentItems": recent}),
    )
}

fn describe(ctx: &Ctx, object: SObject) -> Response {
    let state = ctx.shared.lock();
    let fields: Vec<Value> = state
        .salesforce
        .schema
        .fields(object)
        .iter()
        .map(Field::describe)
        .collect();
    drop(state);
    let mut answer = object_summary(object, &ctx.version);
    answer["fields"] = fields.into();
    json_response(StatusCode::OK, &answer)
}

/// A record as a read answers it: `attributes`, `Id`, then the asked
/// fields (every field of the object, null when unset, when none are
/// asked).
fn render(
    state: &SalesforceState,
    record: &SalesforceRecord,
    fields: Option<&[String]>,
    version: &str,
) -> Value {
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        attributes(&record.object, &record.id, version),
    );
    let object = record.sobject();
    let all: Vec<String>;
    let names: &[String] = match fields {
        Some(names) => names,
        None => {
            all = object
                .map(|o| {
                    state
                        .schema
                        .fields(o)
                        .iter()
                        .map(|f| f.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            &all
        }
    };
    out.insert("Id".into(), record.id.clone().into());
    for name in names {
        out.insert(
            name.clone(),
            record.fields.get(name).cloned().unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// `?fields=A,B` as API names, or `INVALID_FIELD` for an unknown one.
fn selected_fields(
    state: &SalesforceState,
    object: SObject,
    query: &Query,
) -> Result<Option<Vec<String>>, SfError> {
    let asked = query.list("fields");
    if asked.is_empty() {
        return Ok(None);
    }
    asked
        .iter()
        .map(|name| {
            state
                .schema
                .field(object, name)
                .map(|f| f.name.clone())
                .ok_or_else(|| {
                    SfError::new(
                        StatusCode::BAD_REQUEST,
                        "INVALID_FIELD",
                        format!(
                            "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                            object.name()
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Resolves the `{id}` of a record path: the record's id, or the answer
/// Salesforce gives for that kind of miss.
fn resolve_id(state: &SalesforceState, object: SObject, id: &str) -> Result<String, SfError> {
    if !looks_like_id(id) {
        return Err(SfError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {id}"),
        ));
    }
    if SObject::of_id(id) != Some(object) {
        return Err(SfError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_ID",
            format!("{} ID: id value of incorrect type: {id}", object.name()),
        )
        .with_fields(vec!["Id".into()]));
    }
    state
        .find(id)
        .map(|r| r.id.clone())
        .ok_or_else(SfError::not_found)
}

fn read(ctx: &Ctx, object: SObject, id: &str) -> Response {
    let state = ctx.shared.lock();
    let sf = &state.salesforce;
    let result = resolve_id(sf, object, id).and_then(|id| {
        let fields = selected_fields(sf, object, &ctx.query)?;
        let record = sf.find(&id).ok_or_else(SfError::not_found)?;
        Ok(render(sf, record, fields.as_deref(), &ctx.version))
    });
    drop(state);
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    }
}

/// 300 Multiple Choices: the URLs of the records sharing the value.
fn multiple_choices(object: SObject, ids: &[String], version: &str) -> Response {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| record_url(object.name(), id, version))
        .collect();
    json_response(StatusCode::MULTIPLE_CHOICES, &urls)
}

/// The External ID field of an upsert or read path, or 404 `NOT_FOUND`.
fn external_field(state: &SalesforceState, object: SObject, name: &str) -> Result<Field, SfError> {
    state
        .schema
        .field(object, name)
        .filter(|f| f.is_external_id())
        .cloned()
        .ok_or_else(SfError::not_found)
}

fn read_by_external_id(ctx: &Ctx, object: SObject, field: &str, value: &str) -> Response {
    let state = ctx.shared.lock();
    let sf = &state.salesforce;
    if field.eq_ignore_ascii_case("Id") {
        let answer = resolve_id(sf, object, value).and_then(|id| {
            let record = sf.find(&id).ok_or_else(SfError::not_found)?;
            Ok(render(
                sf,
                record,
                selected_fields(sf, object, &ctx.query)?.as_deref(),
                &ctx.version,
            ))
        });
        return match answer {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(e) => e.into_response(),
        };
    }
    let field = match external_field(sf, object, field) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let fields = match selected_fields(sf, object, &ctx.query) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let tx = Tx::new(sf, &ctx.version, ctx.options);
    let ids = tx.find_by(object, &field.name, value);
    match ids.as_slice() {
        [] => not_found(),
        [id] => match sf.find(id) {
            Some(record) => json_response(
                StatusCode::OK,
                &render(sf, record, fields.as_deref(), &ctx.version),
            ),
            None => not_found(),
        },
        _ => multiple_choices(object, &ids, &ctx.version),
    }
}

/// Logs and counts the records a transaction created and updated.
fn committed(state: &mut SimState, created: &[String], updated: usize) {
    for id in created {
        let Some(record) = state.salesforce.record(id) else {
            continue;
        };
        let emails: Vec<String> = record.email().map(str::to_owned).into_iter().collect();
        let phones: Vec<String> = ["Phone", "MobilePhone"]
            .iter()
            .filter_map(|f| record.text(f).map(str::to_owned))
            .collect();
        state
            .creates
            .record(Crm::Salesforce, id.clone(), emails, phones);
    }
    state.stats.records_created += created.len() as u64;
    state.stats.records_updated += updated as u64;
}

/// Runs `work` in a transaction and commits it (or, for a silently
/// failing write, drops it while the answer says it succeeded).
fn transact<T>(ctx: &Ctx, work: impl FnOnce(&mut Tx<'_>) -> (T, bool)) -> T {
    let mut guard = ctx.shared.lock();
    let state = &mut *guard;
    let (answer, keep, staged) = {
        let mut tx = Tx::new(&state.salesforce, &ctx.version, ctx.options);
        let (answer, keep) = work(&mut tx);
        (answer, keep, tx.finish())
    };
    if !keep {
        return answer;
    }
    if state.faults.take_silent_write() {
        state.stats.writes_dropped += 1;
        state.salesforce.discard(staged);
        return answer;
    }
    let (created, updated) = state.salesforce.commit(staged);
    committed(state, &created, updated);
    answer
}

fn create(ctx: &Ctx, object: SObject) -> Response {
    let body = match body_object(&ctx.body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    transact(ctx, |tx| match tx.create(object, &body, &[]) {
        Ok(id) => (json_response(StatusCode::CREATED, &saved(&id, None)), true),
        Err(errors) => (errors_response(&errors), false),
    })
}

fn update(ctx: &Ctx, object: SObject, id: &str) -> Response {
    let resolved = resolve_id(&ctx.shared.lock().salesforce, object, id);
    let id = match resolved {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let body = match body_object(&ctx.body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    transact(ctx, |tx| match tx.update(&id, &body) {
        Ok(_) => (StatusCode::NO_CONTENT.into_response(), true),
        Err(errors) => (errors_response(&errors), false),
    })
}

fn delete(ctx: &Ctx, object: SObject, id: &str) -> Response {
    let mut state = ctx.shared.lock();
    let id = match resolve_id(&state.salesforce, object, id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if state.faults.take_silent_write() {
        state.stats.writes_dropped += 1;
    } else {
        state.salesforce.take(&id);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The body's key naming `field`, if it has one.
fn key_for<'b>(body: &'b Map<String, Value>, field: &str) -> Option<&'b String> {
    body.keys().find(|k| k.eq_ignore_ascii_case(field))
}

fn upsert(ctx: &Ctx, object: SObject, field: &str, value: &str) -> Response {
    if field.eq_ignore_ascii_case("Id") {
        return update(ctx, object, value);
    }
    let field = match external_field(&ctx.shared.lock().salesforce, object, field) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let body = match body_object(&ctx.body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if key_for(&body, &field.name).is_some() {
        return SfError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD",
            format!(
                "The {} field should not be specified in the sobject data.",
                field.name
            ),
        )
        .into_response();
    }
    let update_only = ctx
        .query
        .get("updateOnly")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    transact(ctx, |tx| {
        match tx.upsert(object, &field, value, &body, update_only) {
            Ok((id, created)) => {
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                (json_response(status, &saved(&id, Some(created))), true)
            }
            Err(UpsertFailure::Errors(errors)) => (errors_response(&errors), false),
            Err(UpsertFailure::Ambiguous(ids)) => {
                (multiple_choices(object, &ids, &ctx.version), false)
            }
            Err(UpsertFailure::NotFound) => (not_found(), false),
        }
    })
}

/// `{"allOrNone":bool,"records":[…]}` of a Collections write.
struct CollectionInput {
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

fn collection_input(body: &[u8]) -> Result<CollectionInput, SfError> {
    let body = body_object(body)?;
    let all_or_none = match body.get("allOrNone") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(SfError::json_parser(format!(
                "Cannot deserialize instance of boolean from {} value",
                if other.is_string() {
                    "VALUE_STRING"
                } else {
                    "VALUE_NUMBER_INT"
                }
            )));
        }
    };
    let Some(Value::Array(records)) = body.get("records") else {
        return Err(SfError::json_parser(
            "The records array is required for sObject Collections".to_owned(),
        ));
    };
    if records.len() > MAX_COLLECTION {
        return Err(SfError::new(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {MAX_COLLECTION} records into this call"
            ),
        ));
    }
    let records = records
        .iter()
        .map(|r| match r {
            Value::Object(map) => Ok(map.clone()),
            _ => Err(SfError::json_parser(
                "Cannot deserialize instance of SObject from VALUE_STRING value".to_owned(),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CollectionInput {
        all_or_none,
        records,
    })
}

/// A record's `attributes.type`, or `INVALID_TYPE`.
fn record_type(record: &Map<String, Value>) -> Result<&str, SfError> {
    record
        .get("attributes")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SfError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                "Must send a concrete entity type.".to_owned(),
            )
        })
}

/// One record's outcome in a Collections write.
type ItemOutcome = Result<(String, Option<bool>), (Vec<SfError>, Option<String>)>;

/// The Collections answer: per-record results aligned with the input;
/// with `allOrNone` and a failure, everything is rolled back (a record
/// that existed keeps its id in the answer, a new one has none).
fn collection_answer(
    outcomes: Vec<ItemOutcome>,
    all_or_none: bool,
    existed: &[bool],
) -> (Value, bool) {
    let any_failed = outcomes.iter().any(Result::is_err);
    let rollback = all_or_none && any_failed;
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(i, outcome)| match outcome {
            Ok((id, created)) if !rollback => saved(id, *created),
            Ok((id, _)) => {
                let keep = existed.get(i).copied().unwrap_or(false);
                failed(keep.then_some(id.as_str()), &[SfError::rolled_back()])
            }
            Err((errors, id)) => failed(id.as_deref(), errors),
        })
        .collect();
    (
        Value::Array(results),
        !rollback && outcomes.iter().any(Result::is_ok),
    )
}

fn create_collection(ctx: &Ctx) -> Response {
    let input = match collection_input(&ctx.body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let mut objects = Vec::with_capacity(input.records.len());
    for record in &input.records {
        match record_type(record) {
            Ok(name) => objects.push(SObject::parse(name)),
            Err(e) => return e.into_response(),
        }
    }
    transact(ctx, |tx| {
        let outcomes: Vec<ItemOutcome> = input
            .records
            .iter()
            .zip(&objects)
            .map(|(record, object)| {
                let Some(object) = object else {
                    let name = record_type(record).unwrap_or_default();
                    return Err((
                        vec![
                            SfError::new(
                                StatusCode::BAD_REQUEST,
                                "INVALID_TYPE",
                                format!("sObject type '{name}' is not supported."),
                            )
                            .with_fields(Vec::new()),
                        ],
                        None,
                    ));
                };
                tx.create(*object, record, &[])
                    .map(|id| (id, None))
                    .map_err(|e| (e, None))
            })
            .collect();
        let existed = vec![false; outcomes.len()];
        let (answer, keep) = collection_answer(outcomes, input.all_or_none, &existed);
        (json_response(StatusCode::OK, &answer), keep)
    })
}

fn upsert_collection(ctx: &Ctx, object: SObject, field: &str) -> Response {
    let field = match external_field(&ctx.shared.lock().salesforce, object, field) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let input = match collection_input(&ctx.body) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    for record in &input.records {
        match record_type(record) {
            Ok(name) if SObject::parse(name) == Some(object) => {}
            Ok(name) => {
                return SfError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_TYPE",
                    format!(
                        "All records must be of type {} to upsert on {}; found {name}",
                        object.name(),
                        field.name
                    ),
                )
                .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    // The External ID value of each record, and how often each value
    // (ignoring case) occurs in the call.
    let values: Vec<Option<String>> = input
        .records
        .iter()
        .map(|r| {
            key_for(r, &field.name)
                .and_then(|k| r.get(k))
                .and_then(|v| match v {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        })
        .collect();
    let mut counts = std::collections::HashMap::new();
    for value in values.iter().flatten() {
        *counts.entry(value.to_lowercase()).or_insert(0usize) += 1;
    }
    transact(ctx, |tx| {
        let mut existed = Vec::with_capacity(input.records.len());
        let outcomes: Vec<ItemOutcome> = input
            .records
            .iter()
            .zip(&values)
            .map(|(record, value)| {
                existed.push(false);
                let Some(value) = value else {
                    return Err((
                        vec![
                            SfError::new(
                                StatusCode::BAD_REQUEST,
                                "MISSING_ARGUMENT",
                                format!("{} not specified", field.name),
                            )
                            .with_fields(Vec::new()),
                        ],
                        None,
                    ));
                };
                if counts.get(&value.to_lowercase()).copied().unwrap_or(0) > 1 {
                    return Err((
                        vec![
                            SfError::new(
                                StatusCode::BAD_REQUEST,
                                "DUPLICATE_VALUE",
                                format!("Duplicate external id specified: {value}"),
                            )
                            .with_fields(vec![field.name.clone()]),
                        ],
                        None,
                    ));
                }
                let mut body = record.clone();
                if let Some(key) = key_for(record, &field.name) {
                    body.remove(key);
                }
                if let Some(last) = existed.last_mut() {
                    *last = tx.find_by(object, &field.name, value).len() == 1;
                }
                match tx.upsert(object, &field, value, &body, false) {
                    Ok((id, created)) => Ok((id, Some(created))),
                    Err(UpsertFailure::Errors(errors)) => Err((errors, None)),
                    Err(UpsertFailure::Ambiguous(ids)) => Err((
                        vec![
                            SfError::new(
                                StatusCode::BAD_REQUEST,
                                "DUPLICATE_EXTERNAL_ID",
                                format!(
                                    "{}: more than one record found for external id field: [{}]",
                                    field.label(),
                                    ids.join(", ")
                                ),
                            )
                            .with_fields(vec![field.name.clone()]),
                        ],
                        None,
                    )),
                    Err(UpsertFailure::NotFound) => {
                        Err((vec![SfError::not_found().with_fields(Vec::new())], None))
                    }
                }
            })
            .collect();
        let (answer, keep) = collection_answer(outcomes, input.all_or_none, &existed);
        (json_response(StatusCode::OK, &answer), keep)
    })
}

/// `GET ?ids=a,b&fields=X,Y` or `POST {"ids":[…],"fields":[…]}`: the
/// records in id order, `null` for an id not found.
fn retrieve_collection(ctx: &Ctx, object: SObject, method: &Method) -> Response {
    let (ids, fields): (Vec<String>, Vec<String>) = if method == Method::POST {
        let body = match body_object(&ctx.body) {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let list = |key: &str| -> Vec<String> {
            body.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        (list("ids"), list("fields"))
    } else {
        (ctx.query.list("ids"), ctx.query.list("fields"))
    };
    if ids.is_empty() || fields.is_empty() {
        return SfError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            format!(
                "{} must be specified",
                if ids.is_empty() { "ids" } else { "fields" }
            ),
        )
        .into_response();
    }
    let state = ctx.shared.lock();
    let sf = &state.salesforce;
    let mut names = Vec::with_capacity(fields.len());
    for name in &fields {
        match sf.schema.field(object, name) {
            Some(f) => names.push(f.name.clone()),
            None => {
                return SfError::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    format!("No such column '{name}' on entity '{}'.", object.name()),
                )
                .into_response();
            }
        }
    }
    let records: Vec<Value> = ids
        .iter()
        .map(|id| {
            sf.find(id)
                .filter(|r| r.sobject() == Some(object))
                .map_or(Value::Null, |r| {
                    let mut out = Map::new();
                    out.insert(
                        "attributes".into(),
                        attributes(object.name(), &r.id, &ctx.version),
                    );
                    for name in &names {
                        out.insert(
                            name.clone(),
                            r.fields.get(name).cloned().unwrap_or(Value::Null),
                        );
                    }
                    Value::Object(out)
                })
        })
        .collect();
    drop(state);
    json_response(StatusCode::OK, &records)
}

fn query(ctx: &Ctx) -> Response {
    let Some(text) = ctx.query.get("q").filter(|q| !q.trim().is_empty()) else {
        return SfError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified".to_owned(),
        )
        .into_response();
    };
    let state = ctx.shared.lock();
    let sf = &state.salesforce;
    let parsed = match soql::parse(text.trim(), &sf.schema) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let records: Vec<Value> = sf
        .select(&parsed)
        .into_iter()
        .map(|r| {
            let mut out = Map::new();
            out.insert(
                "attributes".into(),
                attributes(&r.object, &r.id, &ctx.version),
            );
            for name in &parsed.fields {
                out.insert(
                    name.clone(),
                    r.fields.get(name).cloned().unwrap_or(Value::Null),
                );
            }
            Value::Object(out)
        })
        .collect();
    drop(state);
    json_response(
        StatusCode::OK,
        &json!({"totalSize": records.len(), "done": true, "records": records}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_labels() {
        assert_eq!(release_label(46), "Summer '19");
        assert_eq!(release_label(47), "Winter '20");
        assert_eq!(release_label(59), "Winter '24");
        assert_eq!(release_label(62), "Winter '25");
        assert_eq!(parse_version("v59.0").as_deref(), Some("59.0"));
        assert_eq!(parse_version("v45.0"), None);
        assert_eq!(parse_version("v59.1"), None);
        assert_eq!(parse_version(&format!("v{}.0", LATEST_VERSION + 1)), None);
        assert_eq!(parse_version("59.0"), None);
        let list = versions();
        assert_eq!(list[0]["url"], "/services/data/v46.0");
    }

    #[test]
    fn duplicate_rule_header() {
        let mut headers = HeaderMap::new();
        assert!(!write_options(&headers).allow_save);
        headers.insert(
            "Sforce-Duplicate-Rule-Header",
            HeaderValue::from_static("allowSave=true; includeRecordDetails=true"),
        );
        assert!(write_options(&headers).allow_save);
        headers.insert(
            "Sforce-Duplicate-Rule-Header",
            HeaderValue::from_static("allowSave=false"),
        );
        assert!(!write_options(&headers).allow_save);
    }

    #[test]
    fn path_segments_decode_percent_but_not_plus() {
        assert_eq!(decode_segment("jane%40x.io"), "jane@x.io");
        assert_eq!(decode_segment("a+b%2"), "a+b%2");
    }
}
