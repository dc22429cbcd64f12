//! Ingest: one payload of a source becomes stored leads. The payload is one
//! lead, a JSON array or NDJSON, or whatever the source's transform plugin
//! reads; each lead is validated and normalized, routed and mapped for each
//! destination, and the good ones are handed to the outbox. Bad leads get
//! their own errors (field and rule) and never hold up good ones in the
//! same payload; [`Ingest::accept`] answers only after the good ones are
//! stored.
//!
//! Transport-free: the HTTP handler (`POST /v1/leads`) authenticates the
//! source and turns the answer into a response; a queue consumer or a test
//! calls [`Ingest::accept`] the same way.
//!
//! Backpressure: when the outbox holds more outstanding jobs than the
//! source's (or the host's) limit, a payload is refused before anything is
//! read ([`Backlog`]).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::metrics::Metrics;
use crate::outbox::{Outbox, OutboxError, PreparedLead};
use crate::pipeline::backlog::Backlog;
use crate::pipeline::dedupe::{Decision, Features};
use crate::pipeline::mapping::Renderer;
use crate::pipeline::normalize::{FieldIssue, NormalizeOptions, normalize};
use crate::pipeline::route::{Priority, route};

/// A source as ingest sees it.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub options: NormalizeOptions,
    pub priority: Priority,
    /// The transform plugin that reads this source's payloads, if any.
    pub transform: Option<SourceTransform>,
    /// How many leads this source may post.
    pub quota: Option<crate::pipeline::quota::SourceQuota>,
}

/// A source's transform plugin and its settings.
#[derive(Clone, Debug)]
pub struct SourceTransform {
    pub plugin: String,
    pub config: Vec<(String, String)>,
}

/// Why a transform gave no leads.
#[derive(Debug, thiserror::Error)]
pub enum TransformFailure {
    #[error("transform {0} is not loaded")]
    Unavailable(String),
    /// The plugin read the payload and refused it.
    #[error("{0}")]
    Refused(leadgate_runtime::TransformError),
    /// The call itself failed (trap, deadline, bad output).
    #[error("transform {plugin} failed: {reason}")]
    Failed { plugin: String, reason: String },
}

/// The source-transform plugins (the plugin registry).
#[async_trait]
pub trait Transforms: Send + Sync {
    /// The leads (JSON texts) the plugin reads from `payload`.
    async fn transform(
        &self,
        transform: &SourceTransform,
        source: &str,
        payload: &[u8],
    ) -> Result<Vec<String>, TransformFailure>;
}

/// Why a payload was refused whole: nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "the outbox holds {outstanding} undelivered jobs, over the limit of {limit} for source {source_name}; nothing was accepted, retry after {retry_after_s} s"
    )]
    BacklogFull {
        source_name: String,
        outstanding: u64,
        limit: u64,
        retry_after_s: u64,
    },
    #[error(
        "source {source_name} posted {leads} leads, over its rate limit of {leads_per_second} leads/s (burst {burst}); nothing was accepted{}",
        match retry_after_s { Some(s) => format!(", retry after {s} s"), None => String::new() }
    )]
    RateLimited {
        source_name: String,
        leads: usize,
        leads_per_second: u32,
        burst: u32,
        /// None: the payload is larger than the burst and never fits.
        retry_after_s: Option<u64>,
    },
    #[error("{0}")]
    Payload(#[from] PayloadError),
    #[error("{0}")]
    Transform(TransformFailure),
    #[error("{count} leads in one payload; the limit is {limit}")]
    TooManyLeads { count: usize, limit: usize },
    #[error("{0}")]
    Outbox(#[from] OutboxError),
}

/// A payload that is not one lead, a JSON array or NDJSON.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("no lead in the payload")]
    Empty,
    #[error("{0}")]
    Malformed(String),
}

/// What became of one lead of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    /// Stored, a new person.
    Accepted,
    /// Stored and merged into an earlier lead's person.
    Duplicate,
    /// Not stored: see its errors.
    Rejected,
}

/// One lead's answer, by its index in the payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeadOutcome {
    pub index: usize,
    pub status: LeadStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldIssue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<FieldIssue>,
}

/// What ingest did with a payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestReport {
    /// Stored (new persons and duplicates).
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<LeadOutcome>,
}

/// How a payload's leads are named.
#[derive(Clone, Copy, Debug)]
pub enum LeadIds<'a> {
    /// A new id each (UUID v7): a payload sent again is new leads.
    Fresh,
    /// Ids derived from the payload's name (a message's stream and
    /// sequence) and each lead's place in it: a payload delivered again
    /// names the same leads, so it can be recognized as already stored.
    /// They are laid out as UUID v7 of the time the payload was first
    /// published (`at_ms`), the rest a hash of name and place: ordered in
    /// time as fresh ids are, so the store's indexes grow at their end
    /// (random ids scatter every insert over the whole index).
    Derived { name: &'a str, at_ms: u64 },
}

impl LeadIds<'_> {
    /// The id of the payload's lead `index`.
    pub fn id(self, index: usize) -> String {
        match self {
            LeadIds::Fresh => uuid::Uuid::now_v7().to_string(),
            LeadIds::Derived { name, at_ms } => {
                let hash = uuid::Uuid::new_v5(&DERIVED_IDS, format!("{name}/{index}").as_bytes());
                let rest: [u8; 10] = hash.as_bytes()[6..].try_into().expect("10 bytes");
                uuid::Builder::from_unix_timestamp_millis(at_ms, &rest)
                    .into_uuid()
                    .to_string()
            }
        }
    }
}

/// The namespace of derived lead ids (a UUID v5 of `leadgate.lead`).
const DERIVED_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6c9a_1f0e_3d5b_5c47_9a61_8e2f_0b4d_7c13);

/// The ingest stage with what it hands leads to.
pub struct Ingest {
    pub outbox: Outbox,
    pub renderer: Arc<dyn Renderer>,
    pub transforms: Arc<dyn Transforms>,
    pub backlog: Arc<Backlog>,
    pub metrics: Arc<Metrics>,
    pub max_leads_per_payload: usize,
}

impl Ingest {
    /// Reads a payload of `source` into leads, and stores the good ones.
    /// Bad leads are answered one by one in the report; an error refuses
    /// the whole payload.
    pub async fn accept(
        &self,
        source: &Source,
        payload: &[u8],
    ) -> Result<IngestReport, IngestError> {
        self.accept_as(source, payload, LeadIds::Fresh).await
    }

    /// [`Ingest::accept`], the leads named as `ids` says.
    pub async fn accept_as(
        &self,
        source: &Source,
        payload: &[u8],
        ids: LeadIds<'_>,
    ) -> Result<IngestReport, IngestError> {
        if let Some((outstanding, limit)) = self.backlog.over_limit(&source.name) {
            Metrics::add(&self.metrics.ingest_backlog_refused, 1);
            return Err(IngestError::BacklogFull {
                source_name: source.name.clone(),
                outstanding,
                limit,
                retry_after_s: crate::pipeline::backlog::RETRY_AFTER_S,
            });
        }
        let leads = self.read(source, payload).await?;
        if leads.len() > self.max_leads_per_payload {
            return Err(IngestError::TooManyLeads {
                count: leads.len(),
                limit: self.max_leads_per_payload,
            });
        }
        if let Some(quota) = &source.quota
            && let Err(wait) = quota.take(leads.len())
        {
            Metrics::add(&self.metrics.ingest_rate_limited, 1);
            return Err(IngestError::RateLimited {
                source_name: source.name.clone(),
                leads: leads.len(),
                leads_per_second: quota.limit.leads_per_second,
                burst: quota.limit.burst,
                retry_after_s: wait.map(|w| w.as_secs_f64().ceil().max(1.0) as u64),
            });
        }
        let now = crate::now_ms();
        let destinations = self.renderer.destinations();
        let mut results = Vec::with_capacity(leads.len());
        let mut prepared = Vec::with_capacity(leads.len());
        let mut prepared_slots = Vec::with_capacity(leads.len());
        for (index, raw) in leads.into_iter().enumerate() {
            match self.prepare(source, raw, ids.id(index), &destinations, now) {
                Err(errors) => results.push(LeadOutcome {
                    index,
                    status: LeadStatus::Rejected,
                    id: None,
                    duplicate_of: None,
                    errors,
                    warnings: Vec::new(),
                }),
                Ok(lead) => {
                    prepared_slots.push(results.len());
                    results.push(LeadOutcome {
                        index,
                        status: LeadStatus::Accepted,
                        id: Some(lead.id.clone()),
                        duplicate_of: None,
                        errors: Vec::new(),
                        warnings: lead.lead.flags.clone(),
                    });
                    prepared.push(lead);
                }
            }
        }
        let committed = self
            .commit(&source.name, prepared, destinations.len())
            .await?;
        for (slot, decision) in prepared_slots.into_iter().zip(committed) {
            if let Decision::Duplicate { person_id, .. } = decision {
                results[slot].status = LeadStatus::Duplicate;
                results[slot].duplicate_of = Some(person_id);
            }
        }
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (duplicates, rejected) = (count(LeadStatus::Duplicate), count(LeadStatus::Rejected));
        let accepted = results.len() - rejected;
        Metrics::add(&self.metrics.ingest_accepted, accepted as u64);
        Metrics::add(&self.metrics.ingest_duplicates, duplicates as u64);
        Metrics::add(&self.metrics.ingest_rejected, rejected as u64);
        // A duplicate makes no new job (an update job, if any, is counted
        // by the next refresh).
        self.backlog
            .sub(&source.name, (duplicates * destinations.len()) as u64);
        Ok(IngestReport {
            accepted,
            duplicates,
            rejected,
            results,
        })
    }

    /// The leads of a payload: parsed, or read by the source's transform.
    async fn read(&self, source: &Source, payload: &[u8]) -> Result<Vec<Value>, IngestError> {
        let Some(transform) = &source.transform else {
            return Ok(parse_payload(payload)?);
        };
        let leads = self
            .transforms
            .transform(transform, &source.name, payload)
            .await
            .map_err(IngestError::Transform)?;
        Ok(leads
            .iter()
            .map(|text| {
                // A transform that emits something other than JSON gets
                // that lead rejected, with the reason, like any bad lead.
                serde_json::from_str(text).unwrap_or_else(|e| {
                    Value::String(format!(
                        "transform {} emitted invalid JSON: {e}",
                        transform.plugin
                    ))
                })
            })
            .collect())
    }

    /// Validates and normalizes one lead, routes it and maps it for each
    /// destination: everything but the dedupe decision, which the outbox's
    /// writer makes in arrival order.
    fn prepare(
        &self,
        source: &Source,
        raw: Value,
        id: String,
        destinations: &[String],
        now: i64,
    ) -> Result<PreparedLead, Vec<FieldIssue>> {
        let lead = normalize(&raw, &source.options)?;
        let routes = route(destinations, source.priority, lead.priority.as_deref(), now);
        Ok(PreparedLead {
            forms: self.outbox.stored_forms(&id, &raw, &lead),
            id,
            source: source.name.clone(),
            received_at_ms: now,
            fingerprints: self.outbox.fingerprints(&lead),
            features: Features::from_lead(&lead, self.outbox.dedupe_config(), now),
            routes: self.renderer.render_all(&lead, routes),
            lead,
        })
    }

    /// Commits the prepared leads; each one's dedupe decision, in order.
    async fn commit(
        &self,
        source: &str,
        prepared: Vec<PreparedLead>,
        destinations: usize,
    ) -> Result<Vec<Decision>, OutboxError> {
        // Counted before the commit: a refresh that reads the committed rows
        // replaces the count (never counting them twice); one that reads
        // just before the commit misses them until the next refresh.
        let reserved = (prepared.len() * destinations) as u64;
        self.backlog.add(source, reserved);
        match self.outbox.commit(prepared).await {
            Ok(committed) => Ok(committed.into_iter().map(|c| c.decision).collect()),
            Err(e) => {
                self.backlog.sub(source, reserved);
                Err(e)
            }
        }
    }
}

/// One object, an array of objects, or NDJSON (one object per line).
pub fn parse_payload(body: &[u8]) -> Result<Vec<Value>, PayloadError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| PayloadError::Malformed(format!("body is not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(PayloadError::Empty);
    }
    let malformed = |e: serde_json::Error| {
        PayloadError::Malformed(format!(
            "invalid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    };
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(text).map_err(malformed)? {
            // `[]` holds no lead: refused like an empty body, not a 202
            // that stored nothing.
            Value::Array(items) if items.is_empty() => Err(PayloadError::Empty),
            Value::Array(items) => Ok(items),
            _ => unreachable!("starts with ["),
        };
    }
    // A single object, or NDJSON: parse the stream of values and insist on
    // one per line.
    let mut leads = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        leads.push(item.map_err(malformed)?);
    }
    if leads.len() > 1 {
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        if lines != leads.len() {
            return Err(PayloadError::Malformed(
                "NDJSON must hold exactly one JSON object per line".into(),
            ));
        }
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse_payload(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(parse_payload(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert_eq!(parse_payload(b"{\"a\":1}\n{\"b\":2}\n\n").unwrap().len(), 2);
        let e = parse_payload(b"{\"a\":1}\n{\"b\":").unwrap_err();
        assert!(
            matches!(&e, PayloadError::Malformed(m) if m.contains("line 2")),
            "{e}"
        );
        assert!(matches!(
            parse_payload(b"{\"a\":1} {\"b\":2}").unwrap_err(),
            PayloadError::Malformed(_)
        ));
        assert_eq!(parse_payload(b"  ").unwrap_err(), PayloadError::Empty);
        assert_eq!(parse_payload(b" [ ]\n").unwrap_err(), PayloadError::Empty);
        assert!(matches!(
            parse_payload(b"[1,").unwrap_err(),
            PayloadError::Malformed(_)
        ));
    }
}
