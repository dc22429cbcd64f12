//! One delivery worker of one destination: lease a batch (when the breaker
//! and the quota allow), call the adapter, decide each job's result, count
//! it, and record the results (leasing the next batch in the same write
//! when this one was full).

use std::sync::Arc;
use std::time::Duration;

use leadgate_runtime::{
    AdapterPlugin, CallError, CallSecrets, Delivery, Erasure, Outcome, PushContext, Secrets,
};
use rand::SeedableRng;
use tokio::sync::{Notify, watch};

use super::breaker::{BreakerState, Permit, Verdict};
use super::oauth::{AccessToken, OAuthError, TokenSource};
use super::retry::{
    Action, Attempt, Probe, RetryPolicy, call_error_outcome, classify, decide, outcome_class,
};
use super::{STORE_CALL, within};
use crate::config::OAUTH_ACCESS_TOKEN;
use crate::metrics::Metrics;
use crate::plugins::{Destination, Registry};
use crate::store::{JobPayload, JobResult, LeaseRequest, LeasedJob, Store};

pub(super) struct Worker {
    pub owner: String,
    pub destination: String,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub work: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    pub lease_ms: i64,
    pub linger: Duration,
    pub poll: Duration,
    /// Set at shutdown once the grace period is over.
    pub abandoned: watch::Receiver<bool>,
    /// Jobs leased in the same write that completed the last batch (a full
    /// one: more are likely due), to send next.
    pub prefetched: Vec<LeasedJob>,
}

/// A leased batch, split into what goes to the adapter and what was
/// decided without a call (unreadable payloads). `sendable` holds the
/// jobs of `deliveries`, then those of `erasures`, in that order.
struct Batch {
    sendable: Vec<LeasedJob>,
    deliveries: Vec<Delivery>,
    erasures: Vec<Erasure>,
    decided: Vec<(LeasedJob, JobResult)>,
}

/// What a call sends an adapter: deliveries (`push`) or deletions
/// (`erase`); one outcome per item, in order.
trait Work: Clone + Send + Sync + 'static {
    fn send(
        adapter: &AdapterPlugin,
        items: &[Self],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> impl Future<Output = Result<Vec<Outcome>, CallError>> + Send;
}

impl Work for Delivery {
    async fn send(
        adapter: &AdapterPlugin,
        items: &[Self],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<Vec<Outcome>, CallError> {
        adapter.push_with(items, ctx, call).await
    }
}

impl Work for Erasure {
    async fn send(
        adapter: &AdapterPlugin,
        items: &[Self],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<Vec<Outcome>, CallError> {
        adapter.erase_with(items, ctx, call).await
    }
}

impl Worker {
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) {
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
        // An OAuth destination leases only with a token in hand: while its
        // grant is refused or its token endpoint is down, jobs wait in the
        // queue (no attempt used, nothing dead-lettered).
        let auth = match &dest.oauth {
            None => None,
            Some(source) => match source.token().await {
                Ok(token) => Some(CallAuth {
                    source: source.clone(),
                    token,
                }),
                Err(e) => {
                    if !matches!(e, OAuthError::Refused { .. }) {
                        tracing::debug!(destination = %self.destination, error = %e, "no access token; jobs wait");
                    }
                    drop(permit);
                    self.give_back(prefetched).await?;
                    return Ok(false);
                }
            },
        };
        let jobs = self.take_batch(&dest, &permit, prefetched).await?;
        if jobs.is_empty() {
            // The permit goes unused (a probe slot is freed).
            return Ok(false);
        }
        // A full batch says more jobs are likely due: the completion of
        // this one leases the next in the same write.
        let full = !permit.is_probe() && jobs.len() >= dest.batch_size as usize;
        let batch = read_batch(jobs);
        let adapter = dest.adapter_label();
        Metrics::add(&self.metrics.delivery_batches, 1);
        let Some(outcome) = self.call(&dest, &batch, auth).await else {
            // Shutdown's grace period is over: the CRM's answer will not be
            // recorded, so the jobs go back to the queue now (an upsert by
            // idempotency key makes a repeat harmless).
            drop(permit);
            self.release(
                &adapter,
                batch.decided,
                batch.sendable,
                "the host shut down before the CRM answered",
            )
            .await?;
            return Ok(false);
        };
        let results = self.decide_all(&dest, permit, batch, outcome);
        let lease_ahead = full
            && !*stopped.borrow()
            && dest.breaker.state() == BreakerState::Closed
            && dest.limiter.has_room();
        self.finish(&dest, &adapter, &results, lease_ahead).await?;
        Ok(true)
    }

    /// The jobs to send: the batch leased ahead if it still fits, else a
    /// fresh lease (one job for a probe).
    async fn take_batch(
        &self,
        dest: &Destination,
        permit: &Permit<'_>,
        prefetched: Vec<LeasedJob>,
    ) -> anyhow::Result<Vec<LeasedJob>> {
        let probe = permit.is_probe();
        // (A reload may have made the adapter's batches smaller since.)
        if !prefetched.is_empty() && !probe && prefetched.len() <= dest.batch_size as usize {
            return Ok(prefetched);
        }
        self.give_back(prefetched).await?;
        let lease = self.store.lease(
            &self.destination,
            &self.owner,
            if probe { 1 } else { dest.batch_size },
            self.lease_ms,
            crate::now_ms(),
        );
        within(STORE_CALL, lease).await.map_err(anyhow::Error::msg)
    }

    /// Calls the adapter, keeping the batch's leases while the call runs;
    /// None when shutdown abandoned the call.
    async fn call(
        &self,
        dest: &Destination,
        batch: &Batch,
        auth: Option<CallAuth>,
    ) -> Option<Pushed> {
        let attempt = batch.sendable.iter().map(|j| j.attempts).min().unwrap_or(0) + 1;
        let ctx = PushContext {
            destination: self.destination.clone(),
            config: dest.config.clone(),
            attempt,
        };
        let mut abandoned = self.abandoned.clone();
        let ids: Vec<String> = batch.sendable.iter().map(|j| j.id.clone()).collect();
        // Deliveries first, then deletions (rare: an erasure's).
        let both = async {
            let pushed =
                push_authorized(&dest.adapter, &batch.deliveries, ctx.clone(), auth.clone()).await;
            if batch.erasures.is_empty() {
                return pushed;
            }
            let erased = push_authorized(&dest.adapter, &batch.erasures, ctx, auth).await;
            Pushed {
                answered: pushed.answered || erased.answered,
                outcome: pushed.outcome.and_then(|mut outcomes| {
                    outcomes.extend(erased.outcome?);
                    Ok(outcomes)
                }),
            }
        };
        tokio::select! {
            biased;
            true = async { abandoned.wait_for(|a| *a).await.is_ok() } => None,
            outcome = both => Some(outcome),
            never = self.keep_leases(&ids) => match never {},
        }
    }

    /// Renews the leases of the jobs in a call every third of `lease_ms`,
    /// for as long as the call runs. A call may outlast a lease (a slow
    /// CRM, the quota's pacing, a large batch): without this, another
    /// worker would take the expired jobs and deliver them a second time
    /// while the first call still runs, and a CRM without an upsert would
    /// create those persons twice. A host that dies stops renewing, so its
    /// jobs still come back after `lease_ms`.
    async fn keep_leases(&self, ids: &[String]) -> std::convert::Infallible {
        let every = Duration::from_millis((self.lease_ms / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            let renew = self
                .store
                .renew_leases(&self.owner, ids, self.lease_ms, crate::now_ms());
            let renewed = within(STORE_CALL, renew).await;
            match renewed {
                Ok(n) if n < ids.len() as u64 => {
                    tracing::warn!(destination = %self.destination, jobs = ids.len() as u64 - n, "leases lost during a call");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(destination = %self.destination, error = %e, "renewing the leases of a call failed");
                }
            }
        }
    }

    /// Tells the breaker how the batch went and decides each job's result
    /// (counting it in the metrics).
    fn decide_all(
        &self,
        dest: &Destination,
        permit: Permit<'_>,
        batch: Batch,
        outcome: Pushed,
    ) -> Vec<(LeasedJob, JobResult)> {
        let now = crate::now_ms();
        let probe = permit.is_probe();
        let Pushed { outcome, answered } = outcome;
        permit.record(Verdict::of_call(&outcome, answered), now);
        let probe = probe.then(|| Probe {
            next_probe_at_ms: dest.breaker.status().next_probe_at_ms,
        });
        let outcomes = match outcome {
            Ok(outcomes) => outcomes,
            Err(e) => {
                Metrics::add(&self.metrics.plugin_call_errors, 1);
                tracing::warn!(destination = %self.destination, error = %leadgate_runtime::mask::mask_pii(&e.to_string()), "adapter call failed");
                vec![call_error_outcome(&e); batch.sendable.len()]
            }
        };
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let mut results = batch.decided;
        for (job, result) in &results {
            self.count(job, None, result, now);
        }
        for (job, outcome) in batch.sendable.into_iter().zip(outcomes) {
            let action = classify(&outcome);
            self.metrics
                .outcomes
                .with_label_values(&[self.destination.as_str(), outcome_class(&outcome)])
                .inc();
            // A throttled destination pauses for all its workers: its
            // limiter admits nothing (and no lease is taken) until then.
            if let Action::RateLimited { after_ms } = action {
                dest.limiter.block_for(Duration::from_millis(after_ms));
            }
            let attempt = Attempt {
                attempts: job.attempts,
                queued_at_ms: job.created_at_ms,
                now_ms: now,
                probe,
            };
            let result = decide(&self.policy, &outcome, attempt, &mut rng);
            self.count(&job, Some(&action), &result, now);
            results.push((job, result));
        }
        results
    }

    /// Counts one job's result; `action` is the adapter's outcome for it
    /// (None: decided without a call).
    fn count(&self, job: &LeasedJob, action: Option<&Action>, result: &JobResult, now: i64) {
        let m = &self.metrics;
        let counter = match (result, action) {
            (JobResult::Delivered { .. }, _) => {
                m.latency.record(job.priority, job.created_at_ms, now);
                &m.delivery_delivered
            }
            (JobResult::Dead { .. }, _) => &m.delivery_dead,
            (JobResult::Retry { .. }, Some(Action::ReadbackMismatch { .. })) => {
                Metrics::add(&m.delivery_readback_mismatches, 1);
                &m.delivery_retries
            }
            (JobResult::Retry { .. }, Some(Action::RateLimited { .. } | Action::HeldBack)) => {
                &m.delivery_rate_limited
            }
            (JobResult::Retry { .. }, _) => &m.delivery_retries,
        };
        Metrics::add(counter, 1);
    }

    /// Records the results, and leases the next batch in the same write
    /// when `lease_ahead`.
    async fn finish(
        &mut self,
        dest: &Destination,
        adapter: &str,
        results: &[(LeasedJob, JobResult)],
        lease_ahead: bool,
    ) -> anyhow::Result<()> {
        let now = crate::now_ms();
        let applied = if lease_ahead {
            let next = LeaseRequest {
                destination: &self.destination,
                limit: dest.batch_size,
                lease_ms: self.lease_ms,
            };
            let call = self
                .store
                .complete_and_lease(&self.owner, adapter, results, next, now);
            let (applied, jobs) = within(STORE_CALL, call).await.map_err(anyhow::Error::msg)?;
            self.prefetched = jobs;
            applied
        } else {
            let call = self.store.complete(&self.owner, adapter, results, now);
            within(STORE_CALL, call).await.map_err(anyhow::Error::msg)?
        };
        let lost = applied.iter().filter(|ok| !**ok).count();
        if lost > 0 {
            Metrics::add(&self.metrics.delivery_lease_lost, lost as u64);
            tracing::warn!(destination = %self.destination, jobs = lost, "results dropped: lease expired and passed on");
        }
        Ok(())
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
        let call = self.store.complete(&self.owner, adapter, &decided, now);
        let applied = within(STORE_CALL, call).await.map_err(anyhow::Error::msg)?;
        let released = applied[first..].iter().filter(|ok| **ok).count();
        Metrics::add(&self.metrics.delivery_released, released as u64);
        tracing::info!(destination = %self.destination, jobs = released, "leased jobs given back to the queue");
        Ok(())
    }
}

/// Reads each leased job's stored payload: a readable one becomes a
/// delivery, an unreadable one a dead letter (never the whole batch).
fn read_batch(jobs: Vec<LeasedJob>) -> Batch {
    let mut batch = Batch {
        sendable: Vec::with_capacity(jobs.len()),
        deliveries: Vec::with_capacity(jobs.len()),
        erasures: Vec::new(),
        decided: Vec::new(),
    };
    let mut erasing = Vec::new();
    for job in jobs {
        match JobPayload::parse(&job.payload) {
            Ok(JobPayload::V1 { properties }) => {
                batch.deliveries.push(Delivery {
                    id: job.id.clone(),
                    idempotency_key: job.idempotency_key.clone(),
                    properties,
                });
                batch.sendable.push(job);
            }
            Ok(JobPayload::Erase { record_id }) => {
                batch.erasures.push(Erasure {
                    id: job.id.clone(),
                    record_id,
                });
                erasing.push(job);
            }
            Err(e) => batch.decided.push((
                job,
                JobResult::Dead {
                    error: format!("stored payload is unreadable: {e}"),
                },
            )),
        }
    }
    batch.sendable.extend(erasing);
    batch
}

/// An OAuth destination's token for one call, and where it came from.
#[derive(Clone)]
struct CallAuth {
    source: Arc<TokenSource>,
    token: AccessToken,
}

impl CallAuth {
    /// The call's secret (`access-token`) and the context's configuration
    /// with where the token says to call (`instance-url`, `api-domain`),
    /// which wins over a configured value.
    fn apply(&self, ctx: &mut PushContext) -> Arc<CallSecrets> {
        for (key, value) in [
            ("instance-url", &self.token.instance_url),
            ("api-domain", &self.token.api_domain),
        ] {
            if let Some(value) = value {
                ctx.config.retain(|(k, _)| k != key);
                ctx.config.push((key.to_string(), value.clone()));
            }
        }
        let mut secrets = Secrets::new();
        secrets.insert(OAUTH_ACCESS_TOKEN, self.token.token.as_str());
        Arc::new(CallSecrets::new(secrets))
    }
}

/// What a push came to, and whether the CRM answered any of its requests
/// (a failed call nothing answered may be this host's network, not the
/// CRM: the breaker keeps such an opening to itself).
struct Pushed {
    outcome: Result<Vec<Outcome>, CallError>,
    answered: bool,
}

/// Pushes a batch with the destination's access token, if it has one.
/// When the CRM answers 401 to the token, the source renews it (once for
/// every call refused with that token) and the records not yet written
/// go again at once with the new one; a refused grant pauses the
/// destination and those records wait as retries.
async fn push_authorized<W: Work>(
    adapter: &AdapterPlugin,
    deliveries: &[W],
    mut ctx: PushContext,
    auth: Option<CallAuth>,
) -> Pushed {
    let mut calls = Vec::new();
    let outcome = push_authorized_with(adapter, deliveries, &mut ctx, auth, &mut calls).await;
    Pushed {
        outcome,
        answered: calls.iter().any(|c| c.answered()),
    }
}

async fn push_authorized_with<W: Work>(
    adapter: &AdapterPlugin,
    deliveries: &[W],
    ctx: &mut PushContext,
    auth: Option<CallAuth>,
    calls: &mut Vec<Arc<CallSecrets>>,
) -> Result<Vec<Outcome>, CallError> {
    let Some(auth) = auth else {
        let call = Arc::new(CallSecrets::new(Secrets::new()));
        calls.push(call.clone());
        return push_splitting(adapter, deliveries, ctx, Some(&call)).await;
    };
    let call = auth.apply(ctx);
    calls.push(call.clone());
    let mut outcomes = push_splitting(adapter, deliveries, ctx, Some(&call)).await?;
    // The runtime saw a 401, or the adapter read the CRM's answer as a
    // refused credential (a CRM that says so with another status).
    let refused = call.refused()
        || outcomes
            .iter()
            .any(|o| matches!(classify(o), Action::AuthExpired { .. }));
    if !refused {
        return Ok(outcomes);
    }
    let token = match auth.source.refused(auth.token.generation).await {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(destination = %ctx.destination, error = %e, "the CRM refused the access token and no new one came");
            return Ok(outcomes);
        }
    };
    let again: Vec<usize> = (0..outcomes.len())
        .filter(|&i| classify(&outcomes[i]) != Action::Delivered)
        .collect();
    if again.is_empty() {
        return Ok(outcomes);
    }
    let renewed = CallAuth {
        source: auth.source,
        token,
    };
    let call = renewed.apply(ctx);
    calls.push(call.clone());
    let retry: Vec<W> = again.iter().map(|&i| deliveries[i].clone()).collect();
    let second = push_splitting(adapter, &retry, ctx, Some(&call)).await?;
    for (i, outcome) in again.into_iter().zip(second) {
        outcomes[i] = outcome;
    }
    Ok(outcomes)
}

/// Pushes a batch. When the CRM refuses a batch of several records whole
/// (every record rejected, as a CRM does for one bad record it cannot key
/// its error to), each half is pushed again, down to single records: the
/// good records go through, and only the bad ones are dead-lettered, each
/// with its own error.
async fn push_splitting<W: Work>(
    adapter: &AdapterPlugin,
    deliveries: &[W],
    ctx: &PushContext,
    call: Option<&Arc<CallSecrets>>,
) -> Result<Vec<Outcome>, CallError> {
    let outcomes = W::send(adapter, deliveries, ctx, call.cloned()).await?;
    let refused_whole = deliveries.len() > 1
        && outcomes.len() == deliveries.len()
        && outcomes.iter().all(|o| classify(o) == Action::Reject);
    if !refused_whole {
        return Ok(outcomes);
    }
    let (left, right) = deliveries.split_at(deliveries.len() / 2);
    let mut out = Box::pin(push_splitting(adapter, left, ctx, call)).await?;
    out.extend(Box::pin(push_splitting(adapter, right, ctx, call)).await?);
    Ok(out)
}
