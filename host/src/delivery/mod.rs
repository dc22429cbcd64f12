//! Delivery: workers lease due jobs per destination, hand them to the
//! destination's adapter in batches, and record each outcome in the outbox:
//! delivered, rescheduled (exponential backoff with full jitter; a CRM's
//! `Retry-After` wins), or dead-lettered after the last attempt or at once
//! for a fatal rejection ([`retry`]). Retries are rescheduled in the store,
//! never slept on in memory, so a crash loses nothing: an unfinished lease
//! expires and the job comes back.
//!
//! Each destination has a circuit breaker ([`breaker`]): while it is open
//! its workers lease nothing, and past the cool-down one worker sends a
//! probe batch of one job. A failed probe reschedules its job without
//! using up an attempt: the CRM failed, not the job. Each destination's
//! quota is modelled by its rate limiter ([`ratelimit`]).
//!
//! Shutdown: workers stop leasing at once; batches in flight get
//! `shutdown_grace_ms` to finish, then the calls are abandoned and their
//! jobs given back to the queue (no attempt counted) rather than left
//! leased until the lease expires.

pub mod breaker;
pub mod cluster;
pub mod oauth;
pub mod ratelimit;
pub mod retry;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::store::Store;

pub use retry::{RetryPolicy, backoff_ms, classify, decide};

/// The longest a delivery store call (a lease, a completion, a renewal,
/// a reclaim) may take; the heartbeat has its own, shorter bound. A
/// connection the network cut without a word (a reset lost on the way, a
/// middlebox that forgot the flow) never answers, and the PostgreSQL
/// driver has no timeout of its own: without this bound a worker waits for
/// good (seen in the partition test, healed just as the far end gave the
/// connection up).
/// Giving up is safe: a lease not recorded expires, a completion whose
/// lease passed on is refused by its token.
pub(crate) const STORE_CALL: Duration = Duration::from_secs(10);

/// `call`, or a timeout error after `limit`.
pub(crate) async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// How long workers get, past the grace period, to give their jobs back
/// before they are aborted (their leases then expire as after a crash).
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// Running delivery workers.
pub struct Workers {
    /// Stop leasing.
    stop: watch::Sender<bool>,
    /// Abandon the calls in flight and give their jobs back.
    abandon: watch::Sender<bool>,
    tasks: JoinSet<()>,
    grace: Duration,
    stop_requested: Option<tokio::time::Instant>,
}

impl Workers {
    /// Starts `concurrency` workers per destination and the lease reaper.
    pub fn start(
        config: &DeliveryConfig,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        work: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let (abandon, abandoned) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let policy = RetryPolicy {
            max_attempts: config.max_attempts,
            base_ms: config.backoff_base_ms,
            cap_ms: config.backoff_cap_ms,
            give_up_after_ms: config.give_up_after_ms,
        };
        let host_id = uuid::Uuid::now_v7().simple().to_string();
        for destination in registry.names() {
            for n in 0..config.concurrency {
                let worker = worker::Worker {
                    owner: format!("{host_id}-{destination}-{n}"),
                    destination: destination.clone(),
                    store: store.clone(),
                    registry: registry.clone(),
                    work: work.clone(),
                    metrics: metrics.clone(),
                    policy,
                    lease_ms: config.lease_ms as i64,
                    linger: Duration::from_millis(config.linger_ms),
                    poll: Duration::from_millis(config.poll_ms),
                    abandoned: abandoned.clone(),
                    prefetched: Vec::new(),
                };
                tasks.spawn(worker.run(stopped.clone()));
            }
        }
        if store.shared() {
            tasks.spawn(cluster::run(
                store.clone(),
                registry.clone(),
                host_id.clone(),
                stopped.clone(),
            ));
        }
        {
            let store = store.clone();
            let mut stopped = stopped.clone();
            let every = Duration::from_millis((config.lease_ms / 4).clamp(100, 10_000));
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match within(STORE_CALL, store.reclaim_expired(crate::now_ms())).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(jobs = n, "expired leases returned to the queue"),
                        Err(e) => tracing::error!(error = %e, "reclaiming leases failed"),
                    }
                }
            });
        }
        Workers {
            stop,
            abandon,
            tasks,
            grace: Duration::from_millis(config.shutdown_grace_ms),
            stop_requested: None,
        }
    }

    /// Stops leasing now; batches in flight go on. The grace period of
    /// [`Workers::shutdown`] runs from the first call.
    pub fn stop_leasing(&mut self) {
        if self.stop_requested.is_none() {
            self.stop_requested = Some(tokio::time::Instant::now());
        }
        let _ = self.stop.send(true);
    }

    /// Stops leasing, lets in-flight batches finish within the grace
    /// period, then abandons the rest and gives their jobs back to the
    /// queue, and waits.
    pub async fn shutdown(mut self) {
        self.stop_leasing();
        let deadline = self
            .stop_requested
            .unwrap_or_else(tokio::time::Instant::now)
            + self.grace;
        if tokio::time::timeout_at(deadline, join_all(&mut self.tasks))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            grace_ms = self.grace.as_millis() as u64,
            "batches still in flight after the grace period: abandoning them and giving their jobs back to the queue"
        );
        let _ = self.abandon.send(true);
        if tokio::time::timeout(RELEASE_BOUND, join_all(&mut self.tasks))
            .await
            .is_err()
        {
            tracing::error!("delivery workers did not stop; their leases will expire");
            self.tasks.shutdown().await;
        }
    }
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}
