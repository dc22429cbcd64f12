//! Delivery: workers lease due jobs per destination, hand them to the
//! destination's adapter in batches, and record each outcome in the outbox:
//! delivered, rescheduled (exponential backoff with full jitter; a CRM's
//! `Retry-After` wins), or dead-lettered after the last attempt or at once
//! for a fatal rejection. Retries are rescheduled in the store, never slept
//! on in memory, so a crash loses nothing: an unfinished lease expires and
//! the job comes back.
//!
//! Each destination has a circuit breaker ([`crate::breaker`]): while it is
//! open its workers lease nothing, and past the cool-down one worker sends
//! a probe batch of one job. A failed probe reschedules its job without
//! using up an attempt: the CRM failed, not the job.
//!
//! Shutdown: workers stop leasing at once; batches in flight get
//! `shutdown_grace_ms` to finish, then the calls are abandoned and their
//! jobs given back to the queue (no attempt counted) rather than left
//! leased until the lease expires.

use std::sync::Arc;
use std::time::Duration;

use leadgate_runtime::{CallError, Delivery, Outcome, PushContext};
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::breaker::Verdict;
use crate::config::DeliveryConfig;
use crate::metrics::Metrics;
use crate::plugins::Registry;
use crate::store::{JobResult, LeaseRequest, LeasedJob, Store};

/// The retry policy: pure functions of the attempt count and the outcome.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_ms: u64,
    pub cap_ms: u64,
    /// A job queued this long ago is dead-lettered at its next failure,
    /// counted or not; 0 never.
    pub give_up_after_ms: u64,
}

/// Full jitter: a random delay in `[0, min(cap, base · 2^(attempt-1))]`.
pub fn backoff_ms(policy: &RetryPolicy, attempt: u32, rng: &mut impl Rng) -> u64 {
    let exp = attempt.saturating_sub(1).min(32);
    let ceiling = policy
        .base_ms
        .saturating_mul(1u64 << exp)
        .min(policy.cap_ms);
    rng.random_range(0..=ceiling)
}

/// What to do with one job after one outcome. `attempts` counts the
/// attempts before this one; `queued_at_ms` is when the job was made.
pub fn decide(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempts: u32,
    queued_at_ms: i64,
    now_ms: i64,
    rng: &mut impl Rng,
) -> JobResult {
    let attempt = attempts + 1;
    let (after_ms, error, counts) = match outcome {
        Outcome::Created(id) | Outcome::Updated(id) | Outcome::DuplicateOf(id) => {
            return JobResult::Delivered {
                crm_id: id.clone(),
                outcome: outcome.to_string(),
            };
        }
        Outcome::Rejected(_) => {
            return JobResult::Dead {
                error: outcome.to_string(),
            };
        }
        // Held back by the adapter so another record goes first: not a failure.
        Outcome::Retry {
            after_ms: Some(0),
            reason,
        } => (Some(0), reason.clone(), false),
        Outcome::Retry { after_ms, reason } => (*after_ms, reason.clone(), true),
        Outcome::RateLimited { after_ms } => (
            Some(*after_ms),
            format!("rate limited for {after_ms} ms"),
            false,
        ),
    };
    if counts && attempt >= policy.max_attempts {
        return JobResult::Dead {
            error: format!("gave up after {attempt} attempts: {error}"),
        };
    }
    // Rate limits and failed probes use up no attempts: the age limit is
    // what ends a job that a CRM never takes.
    let age_ms = now_ms.saturating_sub(queued_at_ms);
    if policy.give_up_after_ms > 0 && age_ms >= policy.give_up_after_ms as i64 {
        return JobResult::Dead {
            error: format!(
                "gave up {} s after it was queued ({} attempts): {error}",
                age_ms / 1000,
                attempts + u32::from(counts)
            ),
        };
    }
    let delay = after_ms.unwrap_or_else(|| backoff_ms(policy, attempt, rng));
    JobResult::Retry {
        next_attempt_at_ms: now_ms + delay as i64,
        error,
        count_attempt: counts,
    }
}

/// How long workers get, past the grace period, to give their jobs back
/// before they are aborted (their leases then expire as after a crash).
const RELEASE_BOUND: Duration = Duration::from_secs(10);

/// How an adapter's retry reason starts when a read-back found a write the
/// CRM reported as done missing or different (`retry-info` in the WIT).
const READBACK_PREFIX: &str = "readback:";

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
                let worker = Worker {
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
                    match store.reclaim_expired(crate::now_ms()).await {
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

struct Worker {
    owner: String,
    destination: String,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    work: Arc<Notify>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    lease_ms: i64,
    linger: Duration,
    poll: Duration,
    /// Set at shutdown once the grace period is over.
    abandoned: watch::Receiver<bool>,
    /// Jobs leased in the same write that completed the last batch (a full
    /// one: more are likely due), to send next.
    prefetched: Vec<LeasedJob>,
}

impl Worker {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                break;
            }
            match self.once(&stopped).await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = self.work.notified() => tokio::time::sleep(self.linger).await,
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(destination = %self.destination, error = %e, "delivery round failed");
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let prefetched = std::mem::take(&mut self.prefetched);
        if let Err(e) = self.give_back(prefetched).await {
            tracing::warn!(destination = %self.destination, error = %e, "giving back prefetched jobs failed; their leases will expire");
        }
    }

    /// Returns jobs leased but not sent to the queue, due now, no attempt
    /// counted.
    async fn give_back(&self, jobs: Vec<LeasedJob>) -> anyhow::Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let adapter = self
            .registry
            .active(&self.destination)
            .map(|d| d.adapter_label())
            .unwrap_or_default();
        self.release(
            &adapter,
            Vec::new(),
            jobs,
            "leased with the last batch's results, not sent (the destination paused or the host is stopping)",
        )
        .await
    }

    /// Leases and delivers one batch (or sends the one leased with the last
    /// completion); false when there was nothing to do. Once `stopped` is
    /// set, nothing is leased ahead.
    async fn once(&mut self, stopped: &watch::Receiver<bool>) -> anyhow::Result<bool> {
        let prefetched = std::mem::take(&mut self.prefetched);
        let Some(dest) = self.registry.active(&self.destination) else {
            self.give_back(prefetched).await?;
            return Ok(false);
        };
        // Lease only what can go now: a job leased while the CRM's quota is
        // spent would only sit in a waiting call.
        if !dest.limiter.has_room() {
            self.give_back(prefetched).await?;
            return Ok(false);
        }
        // An open circuit breaker leases nothing: no job uses up an attempt
        // on a CRM that is down. A probe is a batch of one.
        let Some(permit) = dest.breaker.try_acquire(crate::now_ms()) else {
            self.give_back(prefetched).await?;
            return Ok(false);
        };
        let probe = permit.is_probe();
        // (A reload may have made the adapter's batches smaller since.)
        let jobs =
            if !prefetched.is_empty() && !probe && prefetched.len() <= dest.batch_size as usize {
                prefetched
            } else {
                self.give_back(prefetched).await?;
                self.store
                    .lease(
                        &self.destination,
                        &self.owner,
                        if probe { 1 } else { dest.batch_size },
                        self.lease_ms,
                        crate::now_ms(),
                    )
                    .await?
            };
        // A full batch says more jobs are likely due: the completion of
        // this one leases the next in the same write.
        let full = !probe && jobs.len() >= dest.batch_size as usize;
        if jobs.is_empty() {
            // The permit goes unused (a probe slot is freed).
            return Ok(false);
        }
        let mut deliveries = Vec::with_capacity(jobs.len());
        let mut results = Vec::with_capacity(jobs.len());
        let mut sendable = Vec::with_capacity(jobs.len());
        for job in jobs {
            match serde_json::from_str::<Vec<(String, String)>>(&job.payload) {
                Ok(properties) => {
                    deliveries.push(Delivery {
                        id: job.id.clone(),
                        idempotency_key: job.idempotency_key.clone(),
                        properties,
                    });
                    sendable.push(job);
                }
                Err(e) => results.push((
                    job,
                    JobResult::Dead {
                        error: format!("stored payload is unreadable: {e}"),
                    },
                )),
            }
        }
        let attempt = sendable.iter().map(|j| j.attempts).min().unwrap_or(0) + 1;
        let ctx = PushContext {
            destination: self.destination.clone(),
            config: dest.config.clone(),
            attempt,
        };
        let adapter = dest.adapter_label();
        Metrics::add(&self.metrics.delivery_batches, 1);
        let mut abandoned = self.abandoned.clone();
        let outcome = tokio::select! {
            biased;
            // Shutdown's grace period is over: the CRM's answer will not be
            // recorded, so the jobs go back to the queue now (an upsert by
            // idempotency key makes a repeat harmless).
            true = async { abandoned.wait_for(|a| *a).await.is_ok() } => {
                drop(permit);
                self.release(
                    &adapter,
                    results,
                    sendable,
                    "the host shut down before the CRM answered",
                )
                .await?;
                return Ok(false);
            }
            outcome = push_splitting(&dest.adapter, &deliveries, &ctx) => outcome,
        };
        let now = crate::now_ms();
        let verdict = match &outcome {
            Ok(outcomes) => Verdict::of(outcomes),
            Err(_) => Verdict::Failure,
        };
        permit.record(verdict, now);
        // A failed probe is the breaker's question, not the job's attempt:
        // it never dead-letters the job and is not counted.
        let policy = if probe {
            RetryPolicy {
                max_attempts: u32::MAX,
                ..self.policy
            }
        } else {
            self.policy
        };
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        match outcome {
            Ok(outcomes) => {
                for (job, outcome) in sendable.into_iter().zip(outcomes) {
                    // A throttled destination pauses for all its workers:
                    // its limiter admits nothing (and no lease is taken)
                    // until then.
                    if let Outcome::RateLimited { after_ms } = outcome {
                        dest.limiter.block_for(Duration::from_millis(after_ms));
                    }
                    let result = decide(
                        &policy,
                        &outcome,
                        job.attempts,
                        job.created_at_ms,
                        now,
                        &mut rng,
                    );
                    results.push((job, result));
                }
            }
            Err(e) => {
                Metrics::add(&self.metrics.plugin_call_errors, 1);
                tracing::warn!(destination = %self.destination, error = %e, "adapter call failed");
                for job in sendable {
                    let result = decide(
                        &policy,
                        &call_error_outcome(&e),
                        job.attempts,
                        job.created_at_ms,
                        now,
                        &mut rng,
                    );
                    results.push((job, result));
                }
            }
        }
        for (job, r) in &results {
            let counter = match r {
                JobResult::Delivered { .. } => {
                    self.metrics
                        .latency
                        .record(job.priority, job.created_at_ms, now);
                    &self.metrics.delivery_delivered
                }
                JobResult::Retry { error, .. } if error.starts_with(READBACK_PREFIX) => {
                    Metrics::add(&self.metrics.delivery_readback_mismatches, 1);
                    &self.metrics.delivery_retries
                }
                JobResult::Retry {
                    count_attempt: false,
                    ..
                } => &self.metrics.delivery_rate_limited,
                JobResult::Retry { .. } => &self.metrics.delivery_retries,
                JobResult::Dead { .. } => &self.metrics.delivery_dead,
            };
            Metrics::add(counter, 1);
        }
        if probe {
            // A failed probe's job waits past the next probe, so that probe
            // takes another job: one record the CRM keeps failing on (a
            // poison job, even a P0 one) never holds the breaker open for
            // the rest of the queue.
            let next_probe = dest.breaker.status().next_probe_at_ms;
            for (_, r) in &mut results {
                if let JobResult::Retry {
                    count_attempt,
                    next_attempt_at_ms,
                    ..
                } = r
                {
                    *count_attempt = false;
                    if let Some(at) = next_probe {
                        *next_attempt_at_ms = (*next_attempt_at_ms).max(at + 1);
                    }
                }
            }
        }
        let lease_ahead = full
            && !*stopped.borrow()
            && dest.breaker.state() == crate::breaker::BreakerState::Closed
            && dest.limiter.has_room();
        let applied = if lease_ahead {
            let next = LeaseRequest {
                destination: &self.destination,
                limit: dest.batch_size,
                lease_ms: self.lease_ms,
            };
            let (applied, jobs) = self
                .store
                .complete_and_lease(&self.owner, &adapter, &results, next, now)
                .await?;
            self.prefetched = jobs;
            applied
        } else {
            self.store
                .complete(&self.owner, &adapter, &results, now)
                .await?
        };
        let lost = applied.iter().filter(|ok| !**ok).count();
        if lost > 0 {
            Metrics::add(&self.metrics.delivery_lease_lost, lost as u64);
            tracing::warn!(destination = %self.destination, jobs = lost, "results dropped: lease expired and passed on");
        }
        Ok(true)
    }

    /// Gives leased jobs back to the queue, due now, without counting an
    /// attempt, with `why` in their trail; `decided` (results known without
    /// a call) are recorded too.
    async fn release(
        &self,
        adapter: &str,
        mut decided: Vec<(LeasedJob, JobResult)>,
        leased: Vec<LeasedJob>,
        why: &str,
    ) -> anyhow::Result<()> {
        let now = crate::now_ms();
        let first = decided.len();
        decided.extend(leased.into_iter().map(|job| {
            (
                job,
                JobResult::Retry {
                    next_attempt_at_ms: now,
                    error: format!("released: {why}"),
                    count_attempt: false,
                },
            )
        }));
        let applied = self
            .store
            .complete(&self.owner, adapter, &decided, now)
            .await?;
        let released = applied[first..].iter().filter(|ok| **ok).count();
        Metrics::add(&self.metrics.delivery_released, released as u64);
        tracing::info!(destination = %self.destination, jobs = released, "leased jobs given back to the queue");
        Ok(())
    }
}

/// Pushes a batch. When the CRM refuses a batch of several records whole
/// (every record rejected, as a CRM does for one bad record it cannot key
/// its error to), each half is pushed again, down to single records: the
/// good records go through, and only the bad ones are dead-lettered, each
/// with its own error.
async fn push_splitting(
    adapter: &leadgate_runtime::AdapterPlugin,
    deliveries: &[Delivery],
    ctx: &PushContext,
) -> Result<Vec<Outcome>, CallError> {
    let outcomes = adapter.push(deliveries, ctx).await?;
    let refused_whole = deliveries.len() > 1
        && outcomes.len() == deliveries.len()
        && outcomes.iter().all(|o| matches!(o, Outcome::Rejected(_)));
    if !refused_whole {
        return Ok(outcomes);
    }
    let (left, right) = deliveries.split_at(deliveries.len() / 2);
    let mut out = Box::pin(push_splitting(adapter, left, ctx)).await?;
    out.extend(Box::pin(push_splitting(adapter, right, ctx)).await?);
    Ok(out)
}

/// A failed plugin call is a transient failure of every job in the batch.
fn call_error_outcome(e: &CallError) -> Outcome {
    Outcome::Retry {
        after_ms: None,
        reason: format!("adapter call failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_runtime::Rejection;
    use rand::SeedableRng;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_ms: 100,
        cap_ms: 1_000,
        give_up_after_ms: 60_000,
    };

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 1..40 {
            let ceiling = (100u64 << (attempt - 1).min(32)).min(1_000);
            for _ in 0..50 {
                assert!(backoff_ms(&POLICY, attempt, &mut rng) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<u64> =
            (0..100).map(|_| backoff_ms(&POLICY, 5, &mut rng)).collect();
        assert!(spread.len() > 50, "jittered, not fixed");
    }

    #[test]
    fn outcomes_map_to_results() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = decide(&POLICY, &Outcome::Created("9".into()), 0, 0, 0, &mut rng);
        assert!(matches!(r, JobResult::Delivered { crm_id, .. } if crm_id == "9"));
        let rejected = Outcome::Rejected(Rejection {
            field: Some("email".into()),
            rule: "invalid_email".into(),
            message: "bad".into(),
        });
        assert!(matches!(
            decide(&POLICY, &rejected, 0, 0, 0, &mut rng),
            JobResult::Dead { .. }
        ));
        let retry = Outcome::Retry {
            after_ms: Some(2_500),
            reason: "503".into(),
        };
        match decide(&POLICY, &retry, 0, 0, 1_000, &mut rng) {
            JobResult::Retry {
                next_attempt_at_ms,
                count_attempt,
                ..
            } => {
                assert_eq!(next_attempt_at_ms, 3_500, "Retry-After wins");
                assert!(count_attempt);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(decide(&POLICY, &retry, 2, 0, 0, &mut rng), JobResult::Dead { error } if error.contains("3 attempts"))
        );
        // Rate limiting never uses up attempts.
        let limited = Outcome::RateLimited { after_ms: 10_000 };
        assert!(matches!(
            decide(&POLICY, &limited, 99, 0, 0, &mut rng),
            JobResult::Retry {
                next_attempt_at_ms: 10_000,
                count_attempt: false,
                ..
            }
        ));
    }

    #[test]
    fn a_job_past_the_age_limit_is_dead_lettered_at_its_next_failure() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let limited = Outcome::RateLimited { after_ms: 1_000 };
        let retry = Outcome::Retry {
            after_ms: None,
            reason: "503".into(),
        };
        // Younger than the limit: rescheduled, attempts unused.
        assert!(matches!(
            decide(&POLICY, &limited, 0, 1_000, 60_999, &mut rng),
            JobResult::Retry { .. }
        ));
        // At the limit: rate limited or failed, the job ends in the DLQ.
        for outcome in [&limited, &retry] {
            match decide(&POLICY, outcome, 0, 1_000, 61_000, &mut rng) {
                JobResult::Dead { error } => {
                    assert!(error.starts_with("gave up 60 s after"), "{error}")
                }
                other => panic!("{other:?}"),
            }
        }
        // Success is never refused for age.
        assert!(matches!(
            decide(
                &POLICY,
                &Outcome::Updated("1".into()),
                0,
                0,
                i64::MAX,
                &mut rng
            ),
            JobResult::Delivered { .. }
        ));
        // 0 turns the limit off.
        let forever = RetryPolicy {
            give_up_after_ms: 0,
            ..POLICY
        };
        assert!(matches!(
            decide(&forever, &limited, 0, 0, i64::MAX / 2, &mut rng),
            JobResult::Retry { .. }
        ));
    }
}
