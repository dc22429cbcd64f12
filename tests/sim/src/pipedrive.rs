//! Pipedrive's persons API (v2), beside HubSpot on the same server.
//!
//! What an adapter meets on the real service (`shared/crm-apis.md` §3):
//! auth by `x-api-token` header, `api_token` query parameter or an OAuth
//! bearer token; the `{"success":…,"data":…,"additional_data":…}` envelope;
//! **no upsert and no duplicate check** (a second POST with the same email
//! makes a second person, so an adapter must search first); a search index
//! that lags writes (a person just created or changed is found, or found
//! with its new values, only `search_lag_ms` later), so "search, then
//! create" alone can make a second person; a rolling 2-second burst limit
//! per token with a separate, much lower search limit;
//! `x-ratelimit-*` headers on every answer, `x-daily-requests-left` on
//! writes, and 429 `Request over limit` with `Retry-After`. The shared fault
//! injection (outage, 5xx, latency, 429 storms, silent writes) applies here
//! too.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::Shared;
use crate::errors::json_response;
use crate::store::{format_iso, now_millis};

const ERROR_INFO: &str =
    "Please check developers.pipedrive.com for more information about Pipedrive API.";

/// Pipedrive's limits for one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipedriveLimits {
    /// Requests per rolling window (Professional plan, api_token: 80 per 2 s).
    pub burst: u32,
    pub window_ms: u64,
    /// Search requests per window (10 per 2 s on every plan).
    pub search: u32,
    /// POST/PUT/PATCH requests per UTC day (fair-use cap: 10,000).
    pub daily_writes: u32,
    /// How long a write takes to reach the search index. Pipedrive's
    /// search is eventually consistent (seconds, undocumented); the
    /// simulator lags by this much so that an adapter relying on a search
    /// right after its own create fails here, not in production.
    pub search_lag_ms: u64,
}

impl Default for PipedriveLimits {
    fn default() -> Self {
        PipedriveLimits {
            burst: 80,
            window_ms: 2_000,
            search: 10,
            daily_writes: 10_000,
            search_lag_ms: 2_000,
        }
    }
}

/// One `{value, primary, label}` entry of a person's emails or phones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labeled {
    pub value: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_label() -> String {
    "work".into()
}

/// A stored person, as `GET /api/v2/persons/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Person {
    pub id: u64,
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub emails: Vec<Labeled>,
    pub phones: Vec<Labeled>,
    pub org_id: Option<u64>,
    pub owner_id: u64,
    pub visible_to: u8,
    pub job_title: Option<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub add_time: String,
    pub update_time: String,
    /// Always `false` here: a deleted person is gone at once (Pipedrive
    /// keeps it 30 days), but the field is part of every v2 person.
    pub is_deleted: bool,
    pub label_ids: Vec<u64>,
    /// No pictures in the simulator: always `None` (`null`).
    pub picture_id: Option<u64>,
}

impl Person {
    /// Whether any of the person's emails equals `email`, ignoring case.
    pub fn has_email(&self, email: &str) -> bool {
        self.emails
            .iter()
            .any(|e| e.value.eq_ignore_ascii_case(email))
    }
}

/// The body of a create or update. Unknown fields are refused, as the v2
/// API does, so an adapter sending v1 shapes (`email` as a string) fails
/// here rather than in production.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonInput {
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    emails: Option<Vec<Labeled>>,
    phones: Option<Vec<Labeled>>,
    org_id: Option<u64>,
    owner_id: Option<u64>,
    visible_to: Option<u8>,
    job_title: Option<String>,
    label_ids: Option<Vec<u64>>,
    custom_fields: Option<Map<String, Value>>,
}

#[derive(Debug, Default)]
struct Usage {
    recent: VecDeque<Instant>,
    searches: VecDeque<Instant>,
    day: u64,
    daily_writes: u32,
}

/// What the search index holds of one person: the values of a write.
#[derive(Debug)]
struct Indexed {
    /// When the write becomes searchable.
    visible_at: Instant,
    name: String,
    emails: Vec<String>,
    phones: Vec<String>,
}

/// Pipedrive's part of the simulator state.
#[derive(Debug)]
pub(crate) struct PipedriveState {
    pub persons: BTreeMap<u64, Person>,
    /// Per person, the writes on their way into the search index, oldest
    /// first; search sees the newest one that is visible.
    index: BTreeMap<u64, VecDeque<Indexed>>,
    next_id: u64,
    limits: PipedriveLimits,
    usage: HashMap<String, Usage>,
}

impl PipedriveState {
    pub(crate) fn new(limits: PipedriveLimits) -> Self {
        PipedriveState {
            persons: BTreeMap::new(),
            index: BTreeMap::new(),
            next_id: 1,
            limits,
            usage: HashMap::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.persons.clear();
        self.index.clear();
        self.usage.clear();
    }

    /// Stores a written person; search finds its new values only after
    /// the index lag.
    fn store(&mut self, person: Person, now: Instant) {
        let versions = self.index.entry(person.id).or_default();
        versions.push_back(Indexed {
            visible_at: now + Duration::from_millis(self.limits.search_lag_ms),
            name: person.name.clone(),
            emails: values(&person.emails),
            phones: values(&person.phones),
        });
        self.persons.insert(person.id, person);
    }

    /// The search index as of `now`: each person's newest visible write.
    fn searchable(&mut self, now: Instant) -> impl Iterator<Item = (&u64, &Indexed)> {
        for versions in self.index.values_mut() {
            while versions.len() > 1 && versions[1].visible_at <= now {
                versions.pop_front();
            }
        }
        self.index.iter().filter_map(move |(id, versions)| {
            versions
                .front()
                .filter(|v| v.visible_at <= now)
                .map(|v| (id, v))
        })
    }

    pub(crate) fn count_by_email(&self, email: &str) -> usize {
        self.persons.values().filter(|p| p.has_email(email)).count()
    }
}

/// Rate-limit headers of one answer.
struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset_secs: u64,
    daily_left: Option<u32>,
}

impl RateHeaders {
    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", self.limit.into());
        headers.insert("x-ratelimit-remaining", self.remaining.into());
        headers.insert("x-ratelimit-reset", self.reset_secs.into());
        if let Some(left) = self.daily_left {
            headers.insert("x-daily-requests-left", left.into());
        }
    }
}

enum Admission {
    Admitted(RateHeaders),
    Refused(Response),
}

fn utc_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

impl PipedriveState {
    /// Counts one request against the token's windows, or refuses it.
    fn check(&mut self, token: &str, now: Instant, search: bool, write: bool) -> Admission {
        let limits = self.limits;
        let window = Duration::from_millis(limits.window_ms);
        let usage = self.usage.entry(token.to_owned()).or_default();
        for queue in [&mut usage.recent, &mut usage.searches] {
            while queue
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                queue.pop_front();
            }
        }
        let day = utc_day();
        if usage.day != day {
            usage.day = day;
            usage.daily_writes = 0;
        }
        let (queue, limit) = if search {
            (&usage.searches, limits.search)
        } else {
            (&usage.recent, limits.burst)
        };
        let reset_secs = |queue: &VecDeque<Instant>| {
            queue.front().map_or(0, |t| {
                let left = window.saturating_sub(now.duration_since(*t));
                left.as_millis().div_ceil(1000) as u64
            })
        };
        if queue.len() as u32 >= limit
            || usage.recent.len() as u32 >= limits.burst
            || (write && usage.daily_writes >= limits.daily_writes)
        {
            let wait = if write && usage.daily_writes >= limits.daily_writes {
                86_400 - (now_unix() % 86_400)
            } else {
                reset_secs(queue).max(1)
            };
            let headers = RateHeaders {
                limit,
                remaining: 0,
                reset_secs: wait,
                daily_left: write.then(|| limits.daily_writes.saturating_sub(usage.daily_writes)),
            };
            return Admission::Refused(over_limit(wait, headers));
        }
        usage.recent.push_back(now);
        if search {
            usage.searches.push_back(now);
        }
        if write {
            usage.daily_writes += 1;
        }
        let queue = if search {
            &usage.searches
        } else {
            &usage.recent
        };
        Admission::Admitted(RateHeaders {
            limit,
            remaining: limit.saturating_sub(queue.len() as u32),
            reset_secs: reset_secs(queue),
            daily_left: write.then(|| limits.daily_writes.saturating_sub(usage.daily_writes)),
        })
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn failure(status: StatusCode, error: &str) -> Response {
    json_response(
        status,
        &json!({
            "success": false,
            "error": error,
            "errorCode": status.as_u16(),
            "error_info": ERROR_INFO,
            "data": null,
            "additional_data": null,
        }),
    )
}

fn over_limit(retry_after_secs: u64, headers: RateHeaders) -> Response {
    let mut response = failure(StatusCode::TOO_MANY_REQUESTS, "Request over limit");
    headers.apply(response.headers_mut());
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(retry_after_secs));
    response
}

fn unauthorized() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({
            "success": false,
            "error": "unauthorized access",
            "errorCode": 401,
            "error_info": ERROR_INFO,
        }),
    )
}

fn ok(data: Value) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"success": true, "data": data, "additional_data": null}),
    )
}

/// The presented token: `x-api-token`, `?api_token=` or `Bearer`.
fn token_of(request: &Request) -> Option<String> {
    if let Some(v) = request.headers().get("x-api-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    if let Some(t) = crate::auth::bearer(request.headers()) {
        return Some(t.to_owned());
    }
    request.uri().query().and_then(|q| {
        query_pairs(q)
            .into_iter()
            .find(|(k, _)| k == "api_token")
            .map(|(_, v)| v)
    })
}

/// `a=1&b=x%40y` → pairs, percent- and plus-decoded.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The gate in front of Pipedrive's routes: faults, auth, rate limits.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let search = request.uri().path().ends_with("/search");
    let write = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    let token = token_of(&request);
    let (latency_ms, admission) = {
        let mut state = shared.lock();
        let latency_ms = state.faults.faults.latency_ms;
        let admission = if let Some(error) = state.faults.take_gateway_error() {
            Admission::Refused(error.into_response())
        } else {
            match token
                .as_deref()
                .map(|t| state.tokens.check(Some(t), Instant::now()))
            {
                None | Some(Err(_)) => Admission::Refused(unauthorized()),
                Some(Ok(token)) => {
                    if state.faults.take_rate_limit().is_some() {
                        let headers = RateHeaders {
                            limit: state.pipedrive.limits.burst,
                            remaining: 0,
                            reset_secs: 2,
                            daily_left: None,
                        };
                        Admission::Refused(over_limit(2, headers))
                    } else {
                        state.pipedrive.check(token, Instant::now(), search, write)
                    }
                }
            }
        };
        (latency_ms, admission)
    };
    let admitted = match admission {
        Admission::Refused(response) => Err(response),
        Admission::Admitted(headers) => Ok(move |h: &mut HeaderMap| headers.apply(h)),
    };
    crate::gate::pass(&shared, write, latency_ms, admitted, request, next).await
}

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/persons", get(list).post(create))
        .route("/api/v2/persons/search", get(search))
        .route(
            "/api/v2/persons/{id}",
            get(read).patch(update).delete(remove),
        )
        .layer(middleware::from_fn_with_state(shared, gate))
}

/// A valid create or update body, or the message of Pipedrive's 400.
fn parse_input(body: &Bytes) -> Result<PersonInput, String> {
    let input = serde_json::from_slice::<PersonInput>(body)
        .map_err(|e| format!("Invalid request body: {e}"))?;
    validate(&input)?;
    Ok(input)
}

/// Field checks shared by create and update.
fn validate(input: &PersonInput) -> Result<(), String> {
    let bad = Err;
    for (field, list) in [("emails", &input.emails), ("phones", &input.phones)] {
        for (i, entry) in list.iter().flatten().enumerate() {
            if entry.value.trim().is_empty() {
                return bad(format!("{field}[{i}].value must not be empty"));
            }
        }
    }
    for key in input.custom_fields.iter().flat_map(|m| m.keys()) {
        if key.len() != 40 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "custom_fields: '{key}' is not a custom field key (40 hex characters)"
            ));
        }
    }
    if let Some(v) = input.visible_to
        && ![1, 3, 5, 7].contains(&v)
    {
        return bad(format!("visible_to must be one of 1, 3, 5, 7; got {v}"));
    }
    Ok(())
}

fn split_name(name: &str) -> (Option<String>, Option<String>) {
    let mut parts = name.split_whitespace();
    let first = parts.next().map(str::to_owned);
    let rest: Vec<&str> = parts.collect();
    let last = (!rest.is_empty()).then(|| rest.join(" "));
    (first, last)
}

async fn create(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let input = match parse_input(&body) {
        Ok(i) => i,
        Err(m) => return failure(StatusCode::BAD_REQUEST, &m),
    };
    let name = input
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| {
            let joined = [input.first_name.as_deref(), input.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!joined.trim().is_empty()).then_some(joined)
        });
    let Some(name) = name else {
        return failure(StatusCode::BAD_REQUEST, "Name must be given.");
    };
    let now = format_iso(now_millis());
    let mut state = shared.lock();
    let silent = state.faults.take_silent_write();
    let pd = &mut state.pipedrive;
    let id = pd.next_id;
    pd.next_id += 1;
    let (first, last) = split_name(&name);
    let person = Person {
        id,
        first_name: input.first_name.or(first),
        last_name: input.last_name.or(last),
        name: name.trim().to_owned(),
        emails: primary_first(input.emails.unwrap_or_default()),
        phones: primary_first(input.phones.unwrap_or_default()),
        org_id: input.org_id,
        owner_id: input.owner_id.unwrap_or(1),
        visible_to: input.visible_to.unwrap_or(3),
        job_title: input.job_title,
        custom_fields: input
            .custom_fields
            .unwrap_or_default()
            .into_iter()
            .collect(),
        add_time: now.clone(),
        update_time: now,
        is_deleted: false,
        label_ids: input.label_ids.unwrap_or_default(),
        picture_id: None,
    };
    let data = serde_json::to_value(&person).unwrap_or(Value::Null);
    if silent {
        state.stats.writes_dropped += 1;
    } else {
        state.creates.record(
            crate::Crm::Pipedrive,
            id.to_string(),
            values(&person.emails),
            values(&person.phones),
        );
        state.pipedrive.store(person, Instant::now());
        state.stats.records_created += 1;
    }
    drop(state);
    ok(data)
}

/// The values of a person's emails or phones.
fn values(list: &[Labeled]) -> Vec<String> {
    list.iter().map(|l| l.value.clone()).collect()
}

/// The first entry is primary when none is marked.
fn primary_first(mut list: Vec<Labeled>) -> Vec<Labeled> {
    if !list.is_empty() && !list.iter().any(|e| e.primary) {
        list[0].primary = true;
    }
    list
}

fn parse_id(id: &str) -> Result<u64, String> {
    id.parse::<u64>()
        .map_err(|_| format!("id must be an integer, got '{id}'"))
}

fn not_found() -> Response {
    failure(StatusCode::NOT_FOUND, "Person not found")
}

async fn read(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(m) => return failure(StatusCode::BAD_REQUEST, &m),
    };
    let person = shared.lock().pipedrive.persons.get(&id).cloned();
    match person {
        Some(p) => ok(serde_json::to_value(p).unwrap_or(Value::Null)),
        None => not_found(),
    }
}

async fn update(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(m) => return failure(StatusCode::BAD_REQUEST, &m),
    };
    let input = match parse_input(&body) {
        Ok(i) => i,
        Err(m) => return failure(StatusCode::BAD_REQUEST, &m),
    };
    if input.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return failure(StatusCode::BAD_REQUEST, "Name must not be empty.");
    }
    let mut state = shared.lock();
    let silent = state.faults.take_silent_write();
    let Some(existing) = state.pipedrive.persons.get(&id) else {
        return not_found();
    };
    let mut person = existing.clone();
    if let Some(name) = input.name {
        person.name = name.trim().to_owned();
    }
    if let Some(v) = input.first_name {
        person.first_name = Some(v);
    }
    if let Some(v) = input.last_name {
        person.last_name = Some(v);
    }
    // v2 replaces the whole list when one is given.
    if let Some(v) = input.emails {
        person.emails = primary_first(v);
    }
    if let Some(v) = input.phones {
        person.phones = primary_first(v);
    }
    if let Some(v) = input.org_id {
        person.org_id = Some(v);
    }
    if let Some(v) = input.owner_id {
        person.owner_id = v;
    }
    if let Some(v) = input.visible_to {
        person.visible_to = v;
    }
    if let Some(v) = input.job_title {
        person.job_title = Some(v);
    }
    if let Some(v) = input.label_ids {
        person.label_ids = v;
    }
    for (k, v) in input.custom_fields.unwrap_or_default() {
        person.custom_fields.insert(k, v);
    }
    person.update_time = format_iso(now_millis());
    let data = serde_json::to_value(&person).unwrap_or(Value::Null);
    if silent {
        state.stats.writes_dropped += 1;
    } else {
        state.pipedrive.store(person, Instant::now());
        state.stats.records_updated += 1;
    }
    drop(state);
    ok(data)
}

async fn remove(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(m) => return failure(StatusCode::BAD_REQUEST, &m),
    };
    let mut state = shared.lock();
    state.pipedrive.index.remove(&id);
    match state.pipedrive.persons.remove(&id) {
        Some(_) => ok(json!({ "id": id })),
        None => not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    term: Option<String>,
    fields: Option<String>,
    exact_match: Option<bool>,
    limit: Option<usize>,
}

/// `GET /api/v2/persons`: `limit` (default 100, at most 500), the opaque
/// `cursor` of the previous page, `ids` (comma-separated), `sort_by`
/// `id` (the only order kept here) and `sort_direction` `asc` or `desc`.
#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    ids: Option<String>,
    sort_by: Option<String>,
    sort_direction: Option<String>,
}

/// The cursor after person `id`.
fn cursor_after(id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("id:{id}"))
}

fn cursor_id(cursor: &str) -> Option<u64> {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    String::from_utf8(text)
        .ok()?
        .strip_prefix("id:")?
        .parse()
        .ok()
}

async fn list(State(shared): State<Arc<Shared>>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return failure(StatusCode::BAD_REQUEST, "limit: must be between 1 and 500");
    }
    if q.sort_by.as_deref().is_some_and(|s| s != "id") {
        return failure(
            StatusCode::BAD_REQUEST,
            "sort_by: only id is supported by this simulator",
        );
    }
    let descending = match q.sort_direction.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "sort_direction: must be asc or desc",
            );
        }
    };
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match cursor_id(c) {
            Some(id) => Some(id),
            None => return failure(StatusCode::BAD_REQUEST, "cursor: invalid cursor"),
        },
    };
    let ids: Option<Vec<u64>> = match q.ids.as_deref() {
        None | Some("") => None,
        Some(list) => match list.split(',').map(|i| i.trim().parse()).collect() {
            Ok(ids) => Some(ids),
            Err(_) => return failure(StatusCode::BAD_REQUEST, "ids: must be person ids"),
        },
    };
    let state = shared.lock();
    let persons = &state.pipedrive.persons;
    let wanted = |id: &u64| ids.as_ref().is_none_or(|ids| ids.contains(id));
    let page: Vec<&Person> = if descending {
        persons
            .range(..after.unwrap_or(u64::MAX))
            .rev()
            .filter(|(id, _)| wanted(id))
            .take(limit + 1)
            .map(|(_, p)| p)
            .collect()
    } else {
        persons
            .range(after.map_or(0, |a| a + 1)..)
            .filter(|(id, _)| wanted(id))
            .take(limit + 1)
            .map(|(_, p)| p)
            .collect()
    };
    let more = page.len() > limit;
    let data: Vec<Value> = page
        .iter()
        .take(limit)
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .collect();
    let next = more.then(|| cursor_after(page[limit - 1].id));
    json_response(
        StatusCode::OK,
        &json!({"success": true, "data": data, "additional_data": {"next_cursor": next}}),
    )
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

async fn search(State(shared): State<Arc<Shared>>, Query(q): Query<SearchQuery>) -> Response {
    let exact = q.exact_match.unwrap_or(false);
    let term = q.term.unwrap_or_default();
    let min = if exact { 1 } else { 2 };
    if term.trim().chars().count() < min {
        return failure(
            StatusCode::BAD_REQUEST,
            &format!("term must be at least {min} characters long"),
        );
    }
    let fields: Vec<String> = match q.fields.as_deref() {
        None | Some("") => vec!["name".into(), "email".into(), "phone".into()],
        Some(f) => f.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    for f in &fields {
        if !["name", "email", "phone", "notes", "custom_fields"].contains(&f.as_str()) {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("fields: '{f}' is not a searchable person field"),
            );
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let needle = term.trim().to_lowercase();
    let matches = |value: &str, is_phone: bool| {
        if is_phone {
            let (a, b) = (digits(value), digits(&needle));
            !b.is_empty() && if exact { a == b } else { a.contains(&b) }
        } else {
            let v = value.to_lowercase();
            if exact {
                v == needle
            } else {
                v.contains(&needle)
            }
        }
    };
    let mut state = shared.lock();
    let pd = &mut state.pipedrive;
    let hits: Vec<u64> = pd
        .searchable(Instant::now())
        .filter(|(_, v)| {
            fields.iter().any(|f| match f.as_str() {
                "name" => matches(&v.name, false),
                "email" => v.emails.iter().any(|e| matches(e, false)),
                "phone" => v.phones.iter().any(|e| matches(e, true)),
                _ => false,
            })
        })
        .map(|(id, _)| *id)
        .take(limit)
        .collect();
    // A hit shows the person as stored now (Pipedrive's items carry the
    // current record; only the match itself lags).
    let items: Vec<Value> = hits
        .iter()
        .filter_map(|id| pd.persons.get(id))
        .map(|p| {
            json!({
                "result_score": if exact { 1.0 } else { 0.5 },
                "item": {
                    "id": p.id,
                    "type": "person",
                    "name": p.name,
                    "phones": p.phones.iter().map(|e| &e.value).collect::<Vec<_>>(),
                    "emails": p.emails.iter().map(|e| &e.value).collect::<Vec<_>>(),
                    "visible_to": p.visible_to,
                    "owner": {"id": p.owner_id},
                    "organization": null,
                    "custom_fields": [],
                    "notes": [],
                    "update_time": p.update_time,
                }
            })
        })
        .collect();
    drop(state);
    json_response(
        StatusCode::OK,
        &json!({
            "success": true,
            "data": {"items": items},
            "additional_data": {"next_cursor": null},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        assert_eq!(
            query_pairs("term=jane%40example.com&exact_match=true&x"),
            vec![
                ("term".to_string(), "jane@example.com".to_string()),
                ("exact_match".to_string(), "true".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(query_pairs("a=1+2%2"), vec![("a".into(), "1 2%2".into())]);
    }

    fn person(id: u64, email: &str) -> Person {
        Person {
            id,
            name: format!("Person {id}"),
            first_name: None,
            last_name: None,
            emails: vec![Labeled {
                value: email.into(),
                primary: true,
                label: "work".into(),
            }],
            phones: Vec::new(),
            org_id: None,
            owner_id: 1,
            visible_to: 3,
            job_title: None,
            custom_fields: BTreeMap::new(),
            add_time: String::new(),
            update_time: String::new(),
            is_deleted: false,
            label_ids: Vec::new(),
            picture_id: None,
        }
    }

    /// Every field of the `Person` model of Pipedrive's own clients
    /// (`pipedrive` on npm, `models/person.d.ts`) that a person without
    /// contact sync carries.
    #[test]
    fn a_person_shows_the_v2_models_fields() {
        let v = serde_json::to_value(person(7, "a@example.com")).unwrap();
        for key in [
            "id",
            "name",
            "first_name",
            "last_name",
            "owner_id",
            "org_id",
            "add_time",
            "update_time",
            "emails",
            "phones",
            "is_deleted",
            "visible_to",
            "label_ids",
            "picture_id",
            "custom_fields",
        ] {
            assert!(v.get(key).is_some(), "{key} missing from {v}");
        }
        assert_eq!(v["is_deleted"], json!(false));
        assert_eq!(v["label_ids"], json!([]));
        assert_eq!(v["picture_id"], Value::Null);
        assert_eq!(
            v["emails"],
            json!([{"value": "a@example.com", "primary": true, "label": "work"}])
        );
    }

    #[test]
    fn label_ids_are_an_array_of_ids() {
        let input = parse_input(&Bytes::from_static(br#"{"name":"A","label_ids":[3,5]}"#));
        assert_eq!(input.unwrap().label_ids, Some(vec![3, 5]));
        let bad = parse_input(&Bytes::from_static(br#"{"name":"A","label_ids":"3"}"#));
        assert!(bad.is_err(), "label_ids is an array of integers");
    }

    fn found(pd: &mut PipedriveState, at: Instant) -> Vec<(u64, Vec<String>)> {
        pd.searchable(at)
            .map(|(id, v)| (*id, v.emails.clone()))
            .collect()
    }

    #[test]
    fn search_sees_a_write_only_after_the_lag() {
        let mut pd = PipedriveState::new(PipedriveLimits {
            search_lag_ms: 1_000,
            ..PipedriveLimits::default()
        });
        let ms = |n| Duration::from_millis(n);
        let t0 = Instant::now();
        pd.store(person(1, "a@example.com"), t0);
        assert!(pd.persons.contains_key(&1), "stored at once");
        assert_eq!(found(&mut pd, t0 + ms(999)), vec![], "not searchable yet");
        let a = vec![(1, vec!["a@example.com".to_string()])];
        assert_eq!(found(&mut pd, t0 + ms(1_000)), a);
        // An update: search answers with the old values until the new ones
        // are indexed.
        pd.store(person(1, "b@example.com"), t0 + ms(1_500));
        assert_eq!(found(&mut pd, t0 + ms(2_499)), a);
        let b = vec![(1, vec!["b@example.com".to_string()])];
        assert_eq!(found(&mut pd, t0 + ms(2_500)), b);
    }

    #[test]
    fn burst_and_search_windows() {
        let mut pd = PipedriveState::new(PipedriveLimits {
            burst: 3,
            window_ms: 2_000,
            search: 1,
            daily_writes: 2,
            search_lag_ms: 0,
        });
        let t0 = Instant::now();
        assert!(matches!(
            pd.check("t", t0, true, false),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            pd.check("t", t0, true, false),
            Admission::Refused(_)
        ));
        assert!(matches!(
            pd.check("t", t0, false, true),
            Admission::Admitted(_)
        ));
        assert!(matches!(
            pd.check("t", t0, false, true),
            Admission::Admitted(_)
        ));
        // burst of 3 used (one search + two writes)
        assert!(matches!(
            pd.check("t", t0, false, false),
            Admission::Refused(_)
        ));
        // another token has its own windows
        assert!(matches!(
            pd.check("u", t0, false, false),
            Admission::Admitted(_)
        ));
        let later = t0 + Duration::from_millis(2_001);
        assert!(matches!(
            pd.check("t", later, true, false),
            Admission::Admitted(_)
        ));
        // the daily write cap outlives the window
        assert!(matches!(
            pd.check("t", later, false, true),
            Admission::Refused(_)
        ));
    }
}
