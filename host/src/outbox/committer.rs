//! The outbox committer: writes each group the writer built in one
//! transaction, then answers every payload of the group. After a failed
//! commit it raises the minimum epoch, so groups the writer decided against
//! the lost rows are refused and the writer reloads its index first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};

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

pub(super) async fn run(
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
