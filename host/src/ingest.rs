//! Ingest: `POST /v1/leads`. Authenticates the source, parses one lead, a
//! JSON array or NDJSON, validates and normalizes each lead, maps it for
//! each destination, and hands the good ones to the outbox. Bad leads get
//! their own errors (field and rule) and never hold up good ones in the
//! same request; a 202 is sent only after the good ones are stored.
//!
//! Backpressure: when the outbox holds more outstanding jobs than the
//! source's (or the host's) limit, a post is answered 429 with
//! `Retry-After` before anything is read, instead of accepting work the
//! host cannot hold. The count comes from memory ([`Backlog`]), never from
//! a query per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::api::{ApiError, AppState, SourceRuntime};
use crate::dedupe::{Decision, Features, fingerprints};
use crate::metrics::Metrics;
use crate::normalize::{FieldIssue, normalize};
use crate::outbox::PreparedLead;
use crate::route::route;
use crate::store::{Store, StoreError};

/// How often the outstanding-job count is read from the store, at most.
pub const BACKLOG_REFRESH: Duration = Duration::from_millis(200);
/// The refresh waits at least this many times as long as its last count
/// took: counting a large backlog (≈ 50 ms for 1M outstanding jobs on
/// SQLite) then costs at most a tenth of a core, not a quarter.
const BACKLOG_REFRESH_SHARE: u32 = 10;
/// What a refused post is told to wait.
const BACKLOG_RETRY_AFTER_S: u64 = 1;

/// The outstanding jobs (pending or leased), the host's and each source's,
/// and the limits ingest holds them to. A background task reads the counts
/// every [`BACKLOG_REFRESH`], less often for a large backlog
/// (`Store::outstanding_by_source`, answered from a partial index), and
/// every request adds the jobs it queues in between (counted before its
/// commit, see `post_leads`).
pub struct Backlog {
    /// Jobs pending or leased, the whole host's.
    outstanding: AtomicU64,
    /// 0: no host-wide limit.
    host_limit: u64,
    /// Each configured source: its limit (0: none) and its own jobs.
    sources: HashMap<String, SourceBacklog>,
}

struct SourceBacklog {
    limit: u64,
    outstanding: AtomicU64,
}

impl Backlog {
    pub fn new(host_limit: u64, source_limits: HashMap<String, u64>) -> Backlog {
        Backlog {
            outstanding: AtomicU64::new(0),
            host_limit,
            sources: source_limits
                .into_iter()
                .map(|(name, limit)| {
                    let outstanding = AtomicU64::new(0);
                    (name, SourceBacklog { limit, outstanding })
                })
                .collect(),
        }
    }

    /// The host's outstanding jobs.
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts jobs just queued for `source` (until the next refresh reads
    /// the exact counts).
    pub fn add(&self, source: &str, jobs: u64) {
        self.outstanding.fetch_add(jobs, Ordering::Relaxed);
        if let Some(s) = self.sources.get(source) {
            s.outstanding.fetch_add(jobs, Ordering::Relaxed);
        }
    }

    /// Takes back what [`Backlog::add`] counted for jobs that were not
    /// made (never below zero).
    pub fn sub(&self, source: &str, jobs: u64) {
        let less = |n: u64| Some(n.saturating_sub(jobs));
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        if let Some(s) = self.sources.get(source) {
            let _ = s
                .outstanding
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        }
    }

    /// (outstanding, limit) when a post from `source` must be refused: the
    /// host's backlog is at the host's limit, or the source's own backlog
    /// at the source's limit.
    pub fn over_limit(&self, source: &str) -> Option<(u64, u64)> {
        let host = self.outstanding();
        if self.host_limit > 0 && host >= self.host_limit {
            return Some((host, self.host_limit));
        }
        let s = self.sources.get(source).filter(|s| s.limit > 0)?;
        let own = s.outstanding.load(Ordering::Relaxed);
        (own >= s.limit).then_some((own, s.limit))
    }

    /// Reads the exact counts from the store; returns the host's.
    pub async fn refresh(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let by_source: HashMap<String, u64> =
            store.outstanding_by_source().await?.into_iter().collect();
        for (name, s) in &self.sources {
            let n = by_source.get(name).copied().unwrap_or(0);
            s.outstanding.store(n, Ordering::Relaxed);
        }
        let total = by_source.values().sum();
        self.outstanding.store(total, Ordering::Relaxed);
        Ok(total)
    }

    /// Refreshes the counts until aborted: every [`BACKLOG_REFRESH`], or
    /// less often when counting takes long ([`refresh_pause`]).
    pub fn spawn_refresh(self: Arc<Self>, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(e) = self.refresh(&*store).await {
                    tracing::warn!(error = %e, "reading the outbox backlog failed; the last count stands");
                }
                tokio::time::sleep(refresh_pause(started.elapsed())).await;
            }
        })
    }
}

/// How long the backlog refresh waits after a count that took `took`:
/// [`BACKLOG_REFRESH`] from start to start, or [`BACKLOG_REFRESH_SHARE`]
/// times the count's own time when that is longer.
fn refresh_pause(took: Duration) -> Duration {
    BACKLOG_REFRESH
        .saturating_sub(took)
        .max(took * (BACKLOG_REFRESH_SHARE - 1))
}

/// The 429 of a full backlog: `Retry-After` and a machine-readable error
/// in the API's shape.
fn backlog_full(source: &str, outstanding: u64, limit: u64) -> Response {
    let body = serde_json::json!({
        "error": {
            "code": "backlog_full",
            "message": format!(
                "the outbox holds {outstanding} undelivered jobs, over the limit of {limit} for source {source}; nothing was accepted, retry after {BACKLOG_RETRY_AFTER_S} s"
            ),
            "outstanding": outstanding,
            "limit": limit,
            "retry_after_s": BACKLOG_RETRY_AFTER_S,
        }
    });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, BACKLOG_RETRY_AFTER_S.to_string())],
        Json(body),
    )
        .into_response()
}

#[derive(Serialize)]
struct LeadResult {
    index: usize,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldIssue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<FieldIssue>,
}

#[derive(Serialize)]
struct IngestAnswer {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<LeadResult>,
}

pub async fn post_leads(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Metrics::add(&state.metrics.ingest_requests, 1);
    let source = authenticate(&state, &headers)?;
    if let Some((outstanding, limit)) = state.backlog.over_limit(&source.name) {
        Metrics::add(&state.metrics.ingest_backlog_refused, 1);
        return Ok(backlog_full(&source.name, outstanding, limit));
    }
    let leads = match &source.transform {
        None => parse_body(&body)?,
        Some((name, config)) => transform(&state, &source, name, config, &body).await?,
    };
    if leads.len() > state.max_leads_per_request {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_leads",
            format!(
                "{} leads in one request; the limit is {}",
                leads.len(),
                state.max_leads_per_request
            ),
        ));
    }

    let now = crate::now_ms();
    let destinations = state.registry.names();
    let mut results: Vec<LeadResult> = Vec::with_capacity(leads.len());
    let mut prepared = Vec::with_capacity(leads.len());
    let mut prepared_index = Vec::with_capacity(leads.len());
    for (index, raw) in leads.into_iter().enumerate() {
        match normalize(&raw, &source.options) {
            Err(errors) => results.push(LeadResult {
                index,
                status: "rejected",
                id: None,
                duplicate_of: None,
                errors,
                warnings: Vec::new(),
            }),
            Ok(lead) => {
                let id = uuid::Uuid::now_v7().to_string();
                let routes = state.outbox.render(
                    &lead,
                    route(
                        &destinations,
                        source.priority,
                        lead.priority.as_deref(),
                        now,
                    ),
                );
                results.push(LeadResult {
                    index,
                    status: "accepted",
                    id: Some(id.clone()),
                    duplicate_of: None,
                    errors: Vec::new(),
                    warnings: lead.flags.clone(),
                });
                prepared_index.push(results.len() - 1);
                prepared.push(PreparedLead {
                    id,
                    source: source.name.clone(),
                    received_at_ms: now,
                    raw: raw.to_string(),
                    fingerprints: fingerprints(&lead),
                    features: Features::from_lead(&lead, state.outbox.dedupe_config(), now),
                    normalized: serde_json::to_string(&lead).expect("lead serializes"),
                    lead,
                    routes,
                });
            }
        }
    }

    // Counted before the commit: a refresh that reads the committed rows
    // replaces the count (never counting them twice); one that reads just
    // before the commit misses them until the next refresh.
    let reserved = (prepared.len() * destinations.len()) as u64;
    state.backlog.add(&source.name, reserved);
    let committed = match state.outbox.commit(prepared).await {
        Ok(committed) => committed,
        Err(e) => {
            state.backlog.sub(&source.name, reserved);
            return Err(ApiError::internal(e));
        }
    };
    let mut duplicates = 0;
    for (slot, c) in prepared_index.into_iter().zip(committed) {
        if let Decision::Duplicate { person_id, .. } = c.decision {
            duplicates += 1;
            results[slot].status = "duplicate";
            results[slot].duplicate_of = Some(person_id);
        }
    }
    let rejected = results.iter().filter(|r| r.status == "rejected").count();
    let accepted = results.len() - rejected;
    Metrics::add(&state.metrics.ingest_accepted, accepted as u64);
    Metrics::add(&state.metrics.ingest_duplicates, duplicates as u64);
    Metrics::add(&state.metrics.ingest_rejected, rejected as u64);
    // A duplicate makes no new job (an update job, if any, is counted by
    // the next refresh).
    state
        .backlog
        .sub(&source.name, (duplicates * destinations.len()) as u64);

    let status = match (accepted, rejected) {
        (_, 0) => StatusCode::ACCEPTED,
        (0, _) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::MULTI_STATUS,
    };
    Ok((
        status,
        Json(IngestAnswer {
            accepted,
            duplicates,
            rejected,
            results,
        }),
    )
        .into_response())
}

/// Runs the source's transform plugin over the payload; its leads go
/// through the same validation as posted ones. Zero leads is a filtered
/// payload (202, nothing stored).
async fn transform(
    state: &AppState,
    source: &SourceRuntime,
    name: &str,
    config: &[(String, String)],
    body: &[u8],
) -> Result<Vec<Value>, ApiError> {
    let loaded = state.registry.transform(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transform_unavailable",
            format!("transform {name} is not loaded"),
        )
    })?;
    match loaded.plugin.transform(body, &source.name, config).await {
        Ok(Ok(leads)) => Ok(leads
            .iter()
            .map(|text| {
                // A transform that emits something other than JSON gets
                // that lead rejected, with the reason, like any bad lead.
                serde_json::from_str(text).unwrap_or_else(|e| {
                    Value::String(format!("transform {name} emitted invalid JSON: {e}"))
                })
            })
            .collect()),
        Ok(Err(e)) => {
            let (code, field) = match &e {
                leadgate_runtime::TransformError::Malformed(_) => ("transform_malformed", None),
                leadgate_runtime::TransformError::InvalidField { field, .. } => {
                    ("transform_invalid_field", Some(field.clone()))
                }
            };
            let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string());
            err.field = field;
            Err(err)
        }
        Err(e) => {
            tracing::error!(transform = %name, error = %e, "transform call failed");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "transform_failed",
                format!("transform {name} failed: {e}; nothing was accepted, retry later"),
            ))
        }
    }
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Arc<SourceRuntime>, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.to_string(),
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <source API key>"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("Authorization must be Bearer <source API key>"))?;
    state
        .sources
        .get(token)
        .cloned()
        .ok_or_else(|| unauthorized("unknown API key"))
}

/// One object, an array of objects, or NDJSON (one object per line).
fn parse_body(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not UTF-8: {e}"),
        )
    })?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "no lead in the body",
        ));
    }
    let malformed = |e: serde_json::Error, line_offset: usize| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!(
                "invalid JSON at line {}, column {}: {e}",
                e.line() + line_offset,
                e.column()
            ),
        )
    };
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text).map_err(|e| malformed(e, 0))? {
            Value::Array(items) => Ok(items),
            _ => unreachable!("starts with ["),
        };
    }
    // A single object, or NDJSON: parse the stream of values and insist on
    // one per line.
    let mut leads = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        leads.push(item.map_err(|e| malformed(e, 0))?);
    }
    if leads.len() > 1 {
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        if lines != leads.len() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "NDJSON must hold exactly one JSON object per line",
            ));
        }
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_count_is_refreshed_less_often() {
        let ms = Duration::from_millis;
        // Start to start: 200 ms while counting is quick.
        assert_eq!(refresh_pause(ms(0)), ms(200));
        assert_eq!(refresh_pause(ms(5)) + ms(5), ms(200));
        // A count of 50 ms (about 1M outstanding jobs) runs every 500 ms.
        assert_eq!(refresh_pause(ms(50)) + ms(50), ms(500));
        assert_eq!(refresh_pause(ms(2_000)) + ms(2_000), ms(20_000));
    }

    #[test]
    fn backlog_limits() {
        let backlog = Backlog::new(
            100,
            HashMap::from([("small".to_string(), 10), ("open".to_string(), 0)]),
        );
        assert_eq!(backlog.over_limit("small"), None);
        backlog.add("small", 10);
        assert_eq!(backlog.over_limit("small"), Some((10, 10)));
        assert_eq!(backlog.over_limit("open"), None, "a source's own count");
        assert_eq!(backlog.over_limit("unknown"), None);
        // Another source's jobs count against the host's limit only.
        backlog.add("open", 80);
        assert_eq!(backlog.over_limit("open"), None);
        backlog.add("unknown", 10);
        assert_eq!(backlog.over_limit("open"), Some((100, 100)));
        assert_eq!(backlog.over_limit("small"), Some((100, 100)));
        backlog.sub("small", 15);
        assert_eq!(backlog.outstanding(), 85);
        assert_eq!(backlog.over_limit("small"), None, "never below zero");
        let unlimited = Backlog::new(0, HashMap::from([("open".to_string(), 0)]));
        unlimited.add("open", u64::MAX / 2);
        assert_eq!(unlimited.over_limit("open"), None);
    }

    #[tokio::test]
    async fn a_full_backlog_answers_429_with_retry_after() {
        let response = backlog_full("web", 12, 10);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "backlog_full");
        assert_eq!(body["error"]["limit"], 10);
        assert_eq!(body["error"]["outstanding"], 12);
    }

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(parse_body(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert_eq!(parse_body(b"{\"a\":1}\n{\"b\":2}\n\n").unwrap().len(), 2);
        let e = parse_body(b"{\"a\":1}\n{\"b\":").unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert_eq!(
            parse_body(b"{\"a\":1} {\"b\":2}").unwrap_err().code,
            "malformed_json"
        );
        assert_eq!(parse_body(b"  ").unwrap_err().code, "empty_body");
        assert_eq!(parse_body(b"[1,").unwrap_err().code, "malformed_json");
    }
}
