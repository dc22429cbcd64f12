//! The outbox committer: writes the groups the writer built in one
//! transaction, then answers every payload of them. Every group built
//! while a commit runs goes into the next transaction together, so a
//! commit's cost (its fsync above all) is shared by everything that arrived
//! meanwhile. After a failed commit it raises the minimum epoch, so groups
//! the writer decided against the lost rows are refused and the writer
//! reloads its index first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};

use super::{Committed, Erasure, OutboxError, Reply};
use crate::store::{NewLead, Store};

/// Rows decided with one epoch of the dedupe index, and who waits for them.
pub(super) struct Group {
    pub epoch: u64,
    pub rows: Vec<NewLead>,
    pub answers: Vec<(Reply, Vec<Committed>)>,
    /// Whether any row queues a job (delivery workers are woken).
    pub made_jobs: bool,
    /// A person to erase (a group of its own, without rows).
    pub erasure: Option<Erasure>,
}

/// A group as sent, with its share of the leads the writer may have sent
/// and not yet seen committed: held until the group is answered.
pub(super) type Sent = (Group, OwnedSemaphorePermit);

pub(super) async fn run(
    store: Arc<dyn Store>,
    mut groups: mpsc::UnboundedReceiver<Sent>,
    min_epoch: Arc<AtomicU64>,
    work: Arc<Notify>,
) {
    let mut ready = Vec::new();
    while groups.recv_many(&mut ready, usize::MAX).await > 0 {
        commit(&*store, std::mem::take(&mut ready), &min_epoch, &work).await;
    }
}

/// Commits `sent` (in the order the groups were built) and answers it:
/// the groups' rows in one transaction, but an erasure after the rows of
/// the groups before it and before those after it. A group decided with an
/// outdated index is refused. The groups' permits are given back once
/// every group is answered.
async fn commit(store: &dyn Store, sent: Vec<Sent>, min_epoch: &AtomicU64, work: &Notify) {
    let (groups, _permits): (Vec<Group>, Vec<OwnedSemaphorePermit>) = sent.into_iter().unzip();
    let mut batch = Vec::new();
    for mut group in groups {
        if let Some(erasure) = group.erasure.take() {
            insert(store, std::mem::take(&mut batch), min_epoch, work).await;
            erase(store, erasure, group.epoch, min_epoch).await;
        } else if group.epoch < min_epoch.load(Ordering::Acquire) {
            for (reply, _) in group.answers {
                let _ = reply.send(Err(OutboxError::Superseded));
            }
        } else {
            batch.push(group);
        }
    }
    insert(store, batch, min_epoch, work).await;
}

/// Inserts the rows of `groups` in one transaction and answers them.
async fn insert(store: &dyn Store, groups: Vec<Group>, min_epoch: &AtomicU64, work: &Notify) {
    if groups.is_empty() {
        return;
    }
    let mut rows = Vec::with_capacity(groups.iter().map(|g| g.rows.len()).sum());
    let mut answers = Vec::with_capacity(groups.iter().map(|g| g.answers.len()).sum());
    let (mut made_jobs, mut epoch) = (false, 0);
    for group in groups {
        rows.extend(group.rows);
        answers.extend(group.answers);
        made_jobs |= group.made_jobs;
        epoch = epoch.max(group.epoch);
    }
    let (result, leads) = (store.insert_leads(&rows).await, rows.len());
    // The rows' many small allocations are freed off the commit path.
    super::writer::drop_aside(rows);
    match result {
        Ok(()) => {
            for (reply, committed) in answers {
                let _ = reply.send(Ok(committed));
            }
            if made_jobs {
                work.notify_waiters();
            }
        }
        Err(e) => {
            tracing::error!(error = %e, leads, "outbox commit failed");
            min_epoch.fetch_max(epoch + 1, Ordering::AcqRel);
            let e = OutboxError::Store(Arc::new(e));
            for (reply, _) in answers {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Erases a person from the store. The writer forgot it when it queued
/// the erasure (index epoch `epoch`); if a failed commit since made the
/// writer reload its index from the store, the reload may have read the
/// person back before this erasure: raising the minimum epoch again makes
/// the writer reload once more, from the erased store.
async fn erase(store: &dyn Store, erasure: Erasure, epoch: u64, min_epoch: &AtomicU64) {
    let result = store
        .erase_person(&erasure.person_id, crate::now_ms(), &erasure.deletable)
        .await;
    let reloaded = min_epoch.load(Ordering::Acquire);
    if reloaded > epoch {
        min_epoch.fetch_max(reloaded + 1, Ordering::AcqRel);
    }
    let answer = result
        .map(|receipt| {
            receipt.map(|mut r| {
                r.dedupe_records = erasure.forgotten;
                r
            })
        })
        .map_err(|e| {
            tracing::error!(error = %e, "erasure failed");
            OutboxError::Store(Arc::new(e))
        });
    let _ = erasure.reply.send(answer);
}
