//! Outbox: the durable hand-off between ingest and delivery.
//!
//! One writer task owns the dedupe index and the write path. Concurrent
//! requests queue their prepared leads; the writer takes everything queued,
//! decides dedupe for each lead in arrival order, and commits the whole
//! group (leads, fingerprints, one job per lead × destination, audit events)
//! in one transaction: one fsync for many requests. Only then does each
//! request get its answer, so a 202 always means "stored".

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::dedupe::{Decision, ExactIndex, FINGERPRINT_VERSION};
use crate::mapping::MappingError;
use crate::normalize::{NormalizedLead, RULES_VERSION};
use crate::route::Route;
use crate::store::{Event, JobState, NewJob, NewLead, Store, StoreError};

/// A lead that passed validation, mapped for each of its routes.
#[derive(Debug)]
pub struct PreparedLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub raw: String,
    pub normalized: NormalizedLead,
    pub fingerprints: Vec<String>,
    pub routes: Vec<MappedRoute>,
}

/// One destination's payload for a lead, or why there is none.
#[derive(Debug)]
pub struct MappedRoute {
    pub route: Route,
    pub mapping_version: String,
    pub payload: Result<Vec<(String, String)>, MappingError>,
}

/// What the outbox did with a lead.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    pub id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

type Reply = oneshot::Sender<Result<Vec<Committed>, Arc<StoreError>>>;

/// The handle requests use to commit leads.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(Vec<PreparedLead>, Reply)>,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the store refused the write: {0}")]
    Store(Arc<StoreError>),
    #[error("the outbox is shut down")]
    Closed,
}

impl Outbox {
    /// Starts the writer. `index` holds the stored fingerprints;
    /// `delivered_work` is notified after every commit that made jobs.
    pub fn start(
        store: Arc<dyn Store>,
        index: ExactIndex,
        group_max: usize,
        delivered_work: Arc<Notify>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let task = tokio::spawn(writer(store, index, group_max, rx, delivered_work));
        (Outbox { tx }, task)
    }

    /// Commits `leads`; the answer comes after the transaction is durable.
    pub async fn commit(&self, leads: Vec<PreparedLead>) -> Result<Vec<Committed>, OutboxError> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((leads, reply))
            .await
            .map_err(|_| OutboxError::Closed)?;
        answer
            .await
            .map_err(|_| OutboxError::Closed)?
            .map_err(OutboxError::Store)
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut index: ExactIndex,
    group_max: usize,
    mut rx: mpsc::Receiver<(Vec<PreparedLead>, Reply)>,
    work: Arc<Notify>,
) {
    let mut queue: Vec<(Vec<PreparedLead>, Reply)> = Vec::new();
    loop {
        if rx.recv_many(&mut queue, 256).await == 0 {
            return;
        }
        // Take more while it fits in one group.
        let mut total: usize = queue.iter().map(|(l, _)| l.len()).sum();
        while total < group_max {
            match rx.try_recv() {
                Ok(item) => {
                    total += item.0.len();
                    queue.push(item);
                }
                Err(_) => break,
            }
        }
        let requests = std::mem::take(&mut queue);
        let mut rows = Vec::with_capacity(total);
        let mut answers = Vec::with_capacity(requests.len());
        let mut added_fps: Vec<String> = Vec::new();
        let mut made_jobs = false;
        for (leads, reply) in requests {
            let mut committed = Vec::with_capacity(leads.len());
            for lead in leads {
                let (decision, added) = index.decide(&lead.id, &lead.fingerprints);
                added_fps.extend(added.iter().cloned());
                let row = build_row(lead, &decision, added);
                made_jobs |= !row.jobs.is_empty();
                committed.push(Committed {
                    id: row.id.clone(),
                    decision,
                });
                rows.push(row);
            }
            answers.push((reply, committed));
        }
        match store.insert_leads(&rows).await {
            Ok(()) => {
                for (reply, committed) in answers {
                    let _ = reply.send(Ok(committed));
                }
                if made_jobs {
                    work.notify_waiters();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, leads = rows.len(), "outbox commit failed");
                // Nothing was stored: forget the fingerprints of this group.
                for fp in &added_fps {
                    index.remove(fp);
                }
                let e = Arc::new(e);
                for (reply, _) in answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn build_row(lead: PreparedLead, decision: &Decision, new_fingerprints: Vec<String>) -> NewLead {
    let now = lead.received_at_ms;
    let mut events = vec![
        Event {
            lead_id: lead.id.clone(),
            job_id: None,
            at_ms: now,
            stage: "ingest".into(),
            event: "received".into(),
            detail: serde_json::json!({ "source": lead.source }),
        },
        Event {
            lead_id: lead.id.clone(),
            job_id: None,
            at_ms: now,
            stage: "normalize".into(),
            event: "normalized".into(),
            detail: serde_json::json!({
                "rules_version": RULES_VERSION,
                "flags": lead.normalized.flags,
            }),
        },
        Event {
            lead_id: lead.id.clone(),
            job_id: None,
            at_ms: now,
            stage: "dedupe".into(),
            event: match decision {
                Decision::New => "new_person",
                Decision::Duplicate { .. } => "duplicate",
            }
            .into(),
            detail: serde_json::json!({
                "fingerprint_version": FINGERPRINT_VERSION,
                "fingerprints": lead.fingerprints,
                "decision": decision,
            }),
        },
    ];
    let (duplicate, person_id) = match decision {
        Decision::New => (false, lead.id.clone()),
        Decision::Duplicate { person_id, .. } => (true, person_id.clone()),
    };
    let mut jobs = Vec::new();
    if !duplicate {
        for mapped in lead.routes {
            let job_id = format!("{}:{}", lead.id, mapped.route.destination);
            let (state, payload, last_error) = match mapped.payload {
                Ok(props) => (
                    JobState::Pending,
                    serde_json::to_string(&props).expect("properties serialize"),
                    None,
                ),
                Err(e) => (
                    JobState::Dead,
                    "[]".to_string(),
                    Some(format!("mapping: {e}")),
                ),
            };
            events.push(Event {
                lead_id: lead.id.clone(),
                job_id: Some(job_id.clone()),
                at_ms: now,
                stage: "route".into(),
                event: if state == JobState::Dead {
                    "unmappable"
                } else {
                    "queued"
                }
                .into(),
                detail: serde_json::json!({
                    "destination": mapped.route.destination,
                    "priority": mapped.route.priority,
                    "sla_deadline_ms": mapped.route.sla_deadline_ms,
                    "mapping_version": mapped.mapping_version,
                    "error": last_error,
                }),
            });
            jobs.push(NewJob {
                idempotency_key: idempotency_key(&person_id, &mapped.route.destination),
                id: job_id,
                destination: mapped.route.destination,
                priority: mapped.route.priority.as_i64(),
                sla_deadline_ms: mapped.route.sla_deadline_ms,
                payload,
                mapping_version: mapped.mapping_version,
                state,
                last_error,
            });
        }
    }
    NewLead {
        normalized: serde_json::to_string(&lead.normalized).expect("lead serializes"),
        id: lead.id,
        source: lead.source,
        received_at_ms: now,
        duplicate,
        person_id,
        decision: serde_json::to_string(decision).expect("decision serializes"),
        rules_version: RULES_VERSION,
        fp_version: FINGERPRINT_VERSION,
        raw: lead.raw,
        new_fingerprints,
        jobs,
        events,
    }
}

/// One key per person × destination: a retry, a replay or a crash can never
/// make a second job, or a second CRM record, for the same person.
pub fn idempotency_key(person_id: &str, destination: &str) -> String {
    format!("{person_id}/{destination}/v1")
}
