//! Outbox: the durable hand-off between ingest and delivery.
//!
//! One writer task owns the dedupe index: it takes every queued request,
//! decides dedupe for each lead in arrival order and builds the rows (the
//! lead, its new fingerprints, one job per lead × destination). A committer
//! task writes each group in one transaction (one fsync for many requests)
//! while the writer already builds the next group. Only after the commit
//! does each request get its answer, so a 202 always means "stored".
//!
//! If a commit fails, nothing of that group is stored, but the writer may
//! already have decided the next group against it. Each group carries the
//! epoch of the index it was decided with; after a failure the committer
//! refuses groups of older epochs, and the writer reloads the index from
//! the store before deciding again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::dedupe::{Decision, DedupeConfig, Deduper, FINGERPRINT_VERSION, Features};
use crate::normalize::RULES_VERSION;
use crate::route::Route;
use crate::store::{JobState, NewJob, NewLead, Store, StoreError};

/// A lead that passed validation, serialized and mapped for each route by
/// the request handler (work done in parallel, off the writer's path).
#[derive(Debug)]
pub struct PreparedLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    /// The lead as posted (JSON).
    pub raw: String,
    /// The normalized lead (JSON).
    pub normalized: String,
    pub fingerprints: Vec<String>,
    /// The lead's comparable form for the fuzzy dedupe tier.
    pub features: Features,
    pub routes: Vec<MappedRoute>,
}

/// One destination's payload for a lead, or why there is none.
#[derive(Debug)]
pub struct MappedRoute {
    pub route: Route,
    pub mapping_version: String,
    /// The CRM properties as JSON, or the mapping error.
    pub payload: Result<String, String>,
}

/// What the outbox did with a lead.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    pub id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

type Reply = oneshot::Sender<Result<Vec<Committed>, OutboxError>>;

/// The handle requests use to commit leads.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(Vec<PreparedLead>, Reply)>,
    dedupe: Arc<DedupeConfig>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the store refused the write: {0}")]
    Store(Arc<StoreError>),
    #[error("not stored: an earlier write failed and dedupe decisions are being rebuilt")]
    Superseded,
    #[error("the outbox is shut down")]
    Closed,
}

struct Group {
    epoch: u64,
    rows: Vec<NewLead>,
    answers: Vec<(Reply, Vec<Committed>)>,
    made_jobs: bool,
}

impl Outbox {
    /// Starts the writer and the committer. `index` holds the stored
    /// leads (see [`load_index`]); `work` is notified after every commit
    /// that made jobs.
    /// The returned task ends when every `Outbox` handle is dropped and the
    /// queue is committed.
    pub fn start(
        store: Arc<dyn Store>,
        index: Deduper,
        group_max: usize,
        work: Arc<Notify>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let dedupe = Arc::new(index.config().clone());
        let (tx, rx) = mpsc::channel(4096);
        // One group building while one commits.
        let (groups_tx, groups_rx) = mpsc::channel(1);
        let min_epoch = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer(
            store.clone(),
            index,
            group_max,
            rx,
            groups_tx,
            min_epoch.clone(),
        ));
        let committer = tokio::spawn(committer(store, groups_rx, min_epoch, work));
        let task = tokio::spawn(async move {
            let _ = writer.await;
            let _ = committer.await;
        });
        (Outbox { tx, dedupe }, task)
    }

    /// The dedupe configuration the writer decides with (for computing
    /// [`Features`] off the writer's path).
    pub fn dedupe_config(&self) -> &DedupeConfig {
        &self.dedupe
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
        answer.await.map_err(|_| OutboxError::Closed)?
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut index: Deduper,
    group_max: usize,
    mut rx: mpsc::Receiver<(Vec<PreparedLead>, Reply)>,
    groups: mpsc::Sender<Group>,
    min_epoch: Arc<AtomicU64>,
) {
    let mut epoch = 0u64;
    let mut queue: Vec<(Vec<PreparedLead>, Reply)> = Vec::new();
    loop {
        if rx.recv_many(&mut queue, 256).await == 0 {
            return;
        }
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
        let required = min_epoch.load(Ordering::Acquire);
        if epoch < required {
            match load_index(&*store, index.config()).await {
                Ok(fresh) => {
                    index = fresh;
                    epoch = required;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reloading the dedupe index failed");
                    let e = OutboxError::Store(Arc::new(e));
                    for (_, reply) in queue.drain(..) {
                        let _ = reply.send(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        let mut group = Group {
            epoch,
            rows: Vec::with_capacity(total),
            answers: Vec::with_capacity(queue.len()),
            made_jobs: false,
        };
        for (leads, reply) in queue.drain(..) {
            let mut committed = Vec::with_capacity(leads.len());
            for mut lead in leads {
                let features = std::mem::take(&mut lead.features);
                let verdict = index.decide(&lead.id, &lead.source, &lead.fingerprints, features);
                let decision = verdict.decision;
                let row = build_row(lead, &decision, verdict.added);
                group.made_jobs |= !row.jobs.is_empty();
                committed.push(Committed {
                    id: row.id.clone(),
                    decision,
                });
                group.rows.push(row);
            }
            group.answers.push((reply, committed));
        }
        if groups.send(group).await.is_err() {
            return;
        }
    }
}

/// Builds the dedupe index from the store: every stored lead's
/// fingerprints and, for the fuzzy tier, its features.
pub async fn load_index(store: &dyn Store, config: &DedupeConfig) -> Result<Deduper, StoreError> {
    let records = store.load_dedupe_records().await?;
    let mut index = Deduper::new(config.clone());
    for r in records {
        let features = if config.fuzzy {
            serde_json::from_str::<crate::normalize::NormalizedLead>(&r.normalized)
                .ok()
                .map(|lead| Features::from_lead(&lead, config, r.received_at_ms))
        } else {
            None
        };
        index.insert_stored(
            &r.id,
            &r.person_id,
            &r.fingerprints,
            features,
            r.received_at_ms,
        );
    }
    Ok(index)
}

async fn committer(
    store: Arc<dyn Store>,
    mut groups: mpsc::Receiver<Group>,
    min_epoch: Arc<AtomicU64>,
    work: Arc<Notify>,
) {
    while let Some(group) = groups.recv().await {
        if group.epoch < min_epoch.load(Ordering::Acquire) {
            for (reply, _) in group.answers {
                let _ = reply.send(Err(OutboxError::Superseded));
            }
            continue;
        }
        match store.insert_leads(&group.rows).await {
            Ok(()) => {
                for (reply, committed) in group.answers {
                    let _ = reply.send(Ok(committed));
                }
                if group.made_jobs {
                    work.notify_waiters();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, leads = group.rows.len(), "outbox commit failed");
                min_epoch.fetch_max(group.epoch + 1, Ordering::AcqRel);
                let e = OutboxError::Store(Arc::new(e));
                for (reply, _) in group.answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn build_row(lead: PreparedLead, decision: &Decision, new_fingerprints: Vec<String>) -> NewLead {
    let (duplicate, person_id) = match decision {
        // A possible duplicate is a new person, flagged for review.
        Decision::New | Decision::Possible { .. } => (false, lead.id.clone()),
        Decision::Duplicate { person_id, .. } => (true, person_id.clone()),
    };
    let mut jobs = Vec::new();
    if !duplicate {
        for mapped in lead.routes {
            let (state, payload, last_error) = match mapped.payload {
                Ok(props) => (JobState::Pending, props, None),
                Err(e) => (
                    JobState::Dead,
                    "[]".to_string(),
                    Some(format!("mapping: {e}")),
                ),
            };
            jobs.push(NewJob {
                idempotency_key: idempotency_key(&person_id, &mapped.route.destination),
                id: format!("{}:{}", lead.id, mapped.route.destination),
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
        decision: serde_json::to_string(decision).expect("decision serializes"),
        normalized: lead.normalized,
        id: lead.id,
        source: lead.source,
        received_at_ms: lead.received_at_ms,
        duplicate,
        person_id,
        rules_version: RULES_VERSION,
        fp_version: FINGERPRINT_VERSION,
        raw: lead.raw,
        new_fingerprints,
        jobs,
    }
}

/// One key per person × destination: a retry, a replay or a crash can never
/// make a second job, or a second CRM record, for the same person.
pub fn idempotency_key(person_id: &str, destination: &str) -> String {
    format!("{person_id}/{destination}/v1")
}
