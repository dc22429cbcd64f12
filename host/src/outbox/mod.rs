//! Outbox: the durable hand-off between ingest and delivery.
//!
//! One [`writer`] task owns the dedupe index: it takes every queued
//! payload, decides dedupe for each lead in arrival order, merges
//! duplicates into their person and builds the rows (the lead, its new
//! fingerprints, one job per lead × destination: [`jobs`]). A [`committer`]
//! task writes each group in one transaction (one fsync for many payloads)
//! while the writer already builds the next group. Only after the commit
//! does each payload get its answer, so an answer always means "stored".
//!
//! If a commit fails, nothing of that group is stored, but the writer may
//! already have decided the next group against it. Each group carries the
//! epoch of the index it was decided with; after a failure the committer
//! refuses groups of older epochs, and the writer reloads the index from
//! the store before deciding again.
//!
//! Dead letters go back into the queue through [`replay`].

pub mod committer;
pub mod jobs;
pub mod replay;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::pipeline::dedupe::{Decision, DedupeConfig, Deduper, Features};
use crate::pipeline::mapping::{MappedRoute, Renderer};
use crate::pipeline::merge::MergeConfig;
use crate::pipeline::normalize::NormalizedLead;
use crate::store::{Store, StoreError};

pub use jobs::{idempotency_key, revision_key};
pub use writer::load_index;

/// A lead that passed validation, routed and mapped for each destination
/// by ingest (work done in parallel, off the writer's path).
#[derive(Debug)]
pub struct PreparedLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    /// The lead as posted.
    pub raw: Value,
    /// The normalized lead.
    pub lead: NormalizedLead,
    pub fingerprints: Vec<String>,
    /// The lead's comparable form for the fuzzy dedupe tier.
    pub features: Features,
    pub routes: Vec<MappedRoute>,
}

/// How the writer merges duplicates into their persons.
#[derive(Clone)]
pub struct Merging {
    pub config: MergeConfig,
    pub renderer: Arc<dyn Renderer>,
}

/// What the outbox did with a lead.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    pub id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

type Reply = oneshot::Sender<Result<Vec<Committed>, OutboxError>>;

/// The handle ingest uses to commit leads.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(Vec<PreparedLead>, Reply)>,
    dedupe: Arc<DedupeConfig>,
    work: Arc<Notify>,
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
        merging: Merging,
        work: Arc<Notify>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let dedupe = Arc::new(index.config().clone());
        let (tx, rx) = mpsc::channel(4096);
        // One group building while one commits.
        let (groups_tx, groups_rx) = mpsc::channel(1);
        let min_epoch = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer::run(
            writer::Writer {
                store: store.clone(),
                index,
                group_max,
                merging,
                min_epoch: min_epoch.clone(),
                persons: writer::PersonCache::new(writer::PERSON_CACHE.max(4 * group_max)),
                epoch: 0,
            },
            rx,
            groups_tx,
        ));
        let committer = tokio::spawn(committer::run(store, groups_rx, min_epoch, work.clone()));
        let task = tokio::spawn(async move {
            let _ = writer.await;
            let _ = committer.await;
        });
        (Outbox { tx, dedupe, work }, task)
    }

    /// Tells idle delivery workers there is new work (after a replay).
    pub fn wake_delivery(&self) {
        self.work.notify_waiters();
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
