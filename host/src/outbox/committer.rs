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

use super::{Committed, OutboxError, Reply};
use crate::store::{NewLead, Store};

/// Rows decided with one epoch of the dedupe index, and who waits for them.
pub(super) struct Group {
    pub epoch: u64,
    pub rows: Vec<NewLead>,
    pub answers: Vec<(Reply, Vec<Committed>)>,
    /// Whether any row queues a job (delivery workers are woken).
    pub made_jobs: bool,
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

/// Commits `sent` (in the order the groups were built) in one transaction
/// and answers them; a group decided with an outdated index is refused.
/// The groups' permits are given back once every group is answered.
async fn commit(store: &dyn Store, sent: Vec<Sent>, min_epoch: &AtomicU64, work: &Notify) {
    let floor = min_epoch.load(Ordering::Acquire);
    let (groups, _permits): (Vec<Group>, Vec<OwnedSemaphorePermit>) = sent.into_iter().unzip();
    let (live, stale): (Vec<Group>, Vec<Group>) =
        groups.into_iter().partition(|g| g.epoch >= floor);
    for group in stale {
        for (reply, _) in group.answers {
            let _ = reply.send(Err(OutboxError::Superseded));
        }
    }
    if live.is_empty() {
        return;
    }
    let mut rows = Vec::with_capacity(live.iter().map(|g| g.rows.len()).sum());
    let mut answers = Vec::with_capacity(live.iter().map(|g| g.answers.len()).sum());
    let (mut made_jobs, mut epoch) = (false, 0);
    for group in live {
        rows.extend(group.rows);
        answers.extend(group.answers);
        made_jobs |= group.made_jobs;
        epoch = epoch.max(group.epoch);
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
            min_epoch.fetch_max(epoch + 1, Ordering::AcqRel);
            let e = OutboxError::Store(Arc::new(e));
            for (reply, _) in answers {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
