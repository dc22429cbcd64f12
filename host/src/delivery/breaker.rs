//! Circuit breaker, one per destination: stops calling a CRM that keeps
//! failing, and probes it before resuming.
//!
//! - **Closed**: batches go out. A failed batch (the plugin call failed, or
//!   the CRM answered nothing but transient errors: 5xx, timeouts,
//!   transport errors) adds to a count of consecutive failures; a batch
//!   with at least one record written resets it. Rate limiting, records
//!   held back by the adapter and per-record rejections count neither way.
//!   `failures` consecutive failures open the breaker.
//! - **Open**: workers lease nothing for the destination, so no attempt is
//!   used up and every job stays pending, until the cool-down has passed.
//! - **Half-open**: exactly one probe batch (of one job) goes out. Success
//!   closes the breaker; failure opens it again with the cool-down doubled,
//!   up to `cooldown_max_ms`; an inconclusive probe (rate limited,
//!   rejected) lets the next probe go.
//! - **Several hosts**: an opening is told to the other hosts delivering to
//!   the CRM (`delivery/cluster.rs`) only when a failure of its streak was
//!   an answer from the CRM (a 5xx). Calls none of whose requests were
//!   answered (refused connections, timeouts) open this host's breaker
//!   alone: its own network may be what failed, and the others, which may
//!   reach the CRM, keep delivering.
//!
//! The breaker is a pure state machine over the time its callers pass in
//! (`now_ms`), so tests drive it with their own clock. Outcomes of batches
//! that started before the last change of state are ignored: a slow batch
//! sent before the breaker opened must not re-open it with a longer
//! cool-down, nor close it.

use std::sync::Mutex;

use leadgate_runtime::Outcome;
use serde::Serialize;

use super::retry::{Action, classify};

/// The breaker's thresholds (from `[delivery]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed batches that open the breaker; 0 never opens it.
    pub failures: u32,
    /// The first cool-down after opening.
    pub cooldown_ms: u64,
    /// The longest cool-down, however often probes fail.
    pub cooldown_max_ms: u64,
}

impl BreakerConfig {
    pub fn from_delivery(d: &crate::config::DeliveryConfig) -> BreakerConfig {
        BreakerConfig {
            failures: d.breaker_failures,
            cooldown_ms: d.breaker_cooldown_ms,
            cooldown_max_ms: d.breaker_cooldown_max_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `/metrics` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What one batch says about the CRM's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At least one record was written (created, updated, or found).
    Success,
    /// The call failed, or every record came back with a transient error,
    /// and the CRM answered at least one of its requests (a 5xx, say).
    Failure,
    /// The same, but no request of the call got an answer (refused
    /// connections, timeouts): this host's path to the CRM may be what
    /// failed. It counts as a failure here; an opening no answered failure
    /// led to stays this host's own (other hosts are not told).
    Unreached,
    /// Nothing to learn: rate limited, held back, or rejected records.
    Inconclusive,
}

impl Verdict {
    /// The verdict on a call: its outcomes (or its failure), and whether
    /// the CRM answered any of its requests.
    pub fn of_call(
        outcome: &Result<Vec<Outcome>, leadgate_runtime::CallError>,
        answered: bool,
    ) -> Verdict {
        let verdict = match outcome {
            Ok(outcomes) => Verdict::of(outcomes),
            Err(_) => Verdict::Failure,
        };
        if verdict == Verdict::Failure && !answered {
            Verdict::Unreached
        } else {
            verdict
        }
    }

    /// The verdict on a batch the adapter answered.
    pub fn of(outcomes: &[Outcome]) -> Verdict {
        let mut failed = false;
        for o in outcomes {
            match classify(o) {
                Action::Delivered => return Verdict::Success,
                Action::Transient { .. } | Action::ReadbackMismatch { .. } => failed = true,
                // Held back by the adapter so another record goes first; a
                // rejection may be the adapter's own (no call made), a rate
                // limit is the limiter's business, and a refused credential
                // the token source's.
                Action::HeldBack
                | Action::Reject
                | Action::RateLimited { .. }
                | Action::AuthExpired { .. } => {}
            }
        }
        if failed {
            Verdict::Failure
        } else {
            Verdict::Inconclusive
        }
    }
}

/// What `GET /v1/plugins` and `/metrics` show of a breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// Consecutive failed batches that open it (0: never).
    pub failure_threshold: u32,
    /// When it last opened (ms since the epoch).
    pub opened_at_ms: Option<i64>,
    /// While open: when the next probe may go.
    pub next_probe_at_ms: Option<i64>,
    /// The cool-down in force (doubles with each failed probe).
    pub cooldown_ms: u64,
    pub probe_in_flight: bool,
    /// Times it opened (including re-openings after a failed probe).
    pub times_opened: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Bumped at every change of state; permits of older generations are
    /// not counted.
    generation: u64,
    consecutive_failures: u32,
    opened_at_ms: Option<i64>,
    next_probe_at_ms: i64,
    cooldown_ms: u64,
    probe_in_flight: bool,
    times_opened: u64,
    /// Whether a failure of the current streak was answered by the CRM:
    /// an opening with one is the CRM's (other hosts are told of it), one
    /// without is this host's path's alone.
    answered: bool,
}

/// A destination's circuit breaker, shared by its workers and kept across
/// plugin reloads.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to send one batch. Report how it went with [`Permit::record`];
/// a permit dropped unrecorded (nothing to lease, shutdown) counts for
/// nothing and frees the probe slot.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// A half-open probe: the batch must hold one job.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The batch's verdict, at `now_ms`.
    pub fn record(mut self, verdict: Verdict, now_ms: i64) {
        self.recorded = true;
        self.breaker
            .record(self.generation, self.probe, verdict, now_ms);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}

impl Breaker {
    pub fn new(mut config: BreakerConfig) -> Breaker {
        config.cooldown_ms = config.cooldown_ms.max(1);
        config.cooldown_max_ms = config.cooldown_max_ms.max(config.cooldown_ms);
        Breaker {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                generation: 0,
                consecutive_failures: 0,
                opened_at_ms: None,
                next_probe_at_ms: 0,
                cooldown_ms: config.cooldown_ms,
                probe_in_flight: false,
                times_opened: 0,
                answered: false,
            }),
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leave to send a batch now, or `None` while the breaker is open (or
    /// half-open with its probe out). Past the cool-down, the first caller
    /// gets the probe.
    pub fn try_acquire(&self, now_ms: i64) -> Option<Permit<'_>> {
        let mut inner = self.lock();
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::Open if now_ms < inner.next_probe_at_ms => return None,
            BreakerState::Open => {
                inner.state = BreakerState::HalfOpen;
                inner.generation += 1;
                inner.probe_in_flight = true;
                true
            }
            BreakerState::HalfOpen if inner.probe_in_flight => return None,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                true
            }
        };
        Some(Permit {
            breaker: self,
            generation: inner.generation,
            probe,
            recorded: false,
        })
    }

    fn record(&self, generation: u64, probe: bool, verdict: Verdict, now_ms: i64) {
        let mut inner = self.lock();
        if generation != inner.generation {
            return;
        }
        match (inner.state, probe) {
            (BreakerState::Closed, false) => match verdict {
                Verdict::Success => {
                    inner.consecutive_failures = 0;
                    inner.answered = false;
                }
                Verdict::Inconclusive => {}
                Verdict::Failure | Verdict::Unreached => {
                    inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                    inner.answered |= verdict == Verdict::Failure;
                    if self.config.failures > 0
                        && inner.consecutive_failures >= self.config.failures
                    {
                        inner.cooldown_ms = self.config.cooldown_ms;
                        self.open(&mut inner, now_ms);
                    }
                }
            },
            (BreakerState::HalfOpen, true) => {
                inner.probe_in_flight = false;
                match verdict {
                    Verdict::Success => {
                        inner.state = BreakerState::Closed;
                        inner.generation += 1;
                        inner.consecutive_failures = 0;
                        inner.answered = false;
                        inner.cooldown_ms = self.config.cooldown_ms;
                        tracing::info!("circuit breaker closed: the probe went through");
                    }
                    Verdict::Inconclusive => {}
                    Verdict::Failure | Verdict::Unreached => {
                        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                        inner.answered = verdict == Verdict::Failure;
                        inner.cooldown_ms = inner
                            .cooldown_ms
                            .saturating_mul(2)
                            .min(self.config.cooldown_max_ms);
                        self.open(&mut inner, now_ms);
                    }
                }
            }
            // Not reachable with a matching generation.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now_ms: i64) {
        inner.state = BreakerState::Open;
        inner.generation += 1;
        inner.opened_at_ms = Some(now_ms);
        inner.next_probe_at_ms = now_ms.saturating_add(inner.cooldown_ms as i64);
        inner.times_opened += 1;
        tracing::warn!(
            failures = inner.consecutive_failures,
            cooldown_ms = inner.cooldown_ms,
            "circuit breaker open: no calls until the probe"
        );
    }

    fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation && inner.state == BreakerState::HalfOpen {
            inner.probe_in_flight = false;
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// While open on the CRM's answers: when its next probe may go (what
    /// other hosts delivering to the same CRM are told). An opening on
    /// unanswered calls alone is not told: another host may well reach
    /// the CRM this one cannot.
    pub fn open_until_ms(&self) -> Option<i64> {
        let inner = self.lock();
        (inner.state == BreakerState::Open && inner.answered).then_some(inner.next_probe_at_ms)
    }

    /// Another host's breaker for the same CRM opened: this one opens too,
    /// until that host's next probe (a half-open breaker, its own probe
    /// out, is left to it).
    pub fn open_until(&self, until_ms: i64, now_ms: i64) {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed if until_ms > now_ms => {
                inner.state = BreakerState::Open;
                inner.answered = true;
                inner.generation += 1;
                inner.opened_at_ms = Some(now_ms);
                inner.next_probe_at_ms = until_ms;
                inner.times_opened += 1;
                tracing::warn!(
                    until_ms,
                    "circuit breaker open: another host's breaker for this CRM opened"
                );
            }
            BreakerState::Open => {
                inner.next_probe_at_ms = inner.next_probe_at_ms.max(until_ms);
            }
            _ => {}
        }
    }

    pub fn status(&self) -> BreakerStatus {
        let inner = self.lock();
        BreakerStatus {
            state: inner.state,
            consecutive_failures: inner.consecutive_failures,
            failure_threshold: self.config.failures,
            opened_at_ms: inner.opened_at_ms,
            next_probe_at_ms: (inner.state == BreakerState::Open).then_some(inner.next_probe_at_ms),
            cooldown_ms: inner.cooldown_ms,
            probe_in_flight: inner.probe_in_flight,
            times_opened: inner.times_opened,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_runtime::{Rejection, RejectionKind, RetryKind};

    const CONFIG: BreakerConfig = BreakerConfig {
        failures: 3,
        cooldown_ms: 1_000,
        cooldown_max_ms: 3_000,
    };

    /// A test clock: time moves only when the test says so.
    struct Clock(std::cell::Cell<i64>);

    impl Clock {
        fn now(&self) -> i64 {
            self.0.get()
        }
        fn advance(&self, ms: i64) {
            self.0.set(self.0.get() + ms);
        }
    }

    fn fail(b: &Breaker, clock: &Clock) {
        b.try_acquire(clock.now())
            .expect("a permit")
            .record(Verdict::Failure, clock.now());
    }

    fn trip(b: &Breaker, clock: &Clock) {
        for _ in 0..CONFIG.failures {
            fail(b, clock);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let clock = Clock(1_000_000.into());
        let b = Breaker::new(CONFIG);
        fail(&b, &clock);
        fail(&b, &clock);
        // A success in between resets the count.
        b.try_acquire(clock.now())
            .unwrap()
            .record(Verdict::Success, clock.now());
        fail(&b, &clock);
        fail(&b, &clock);
        // Inconclusive batches change nothing.
        b.try_acquire(clock.now())
            .unwrap()
            .record(Verdict::Inconclusive, clock.now());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.status().consecutive_failures, 2);
        fail(&b, &clock);
        let s = b.status();
        assert_eq!(s.state, BreakerState::Open);
        assert_eq!(s.times_opened, 1);
        assert_eq!(s.opened_at_ms, Some(1_000_000));
        assert_eq!(s.next_probe_at_ms, Some(1_001_000));
    }

    #[test]
    fn another_hosts_opening_opens_it_until_that_hosts_probe() {
        let clock = Clock(0.into());
        let (a, b) = (Breaker::new(CONFIG), Breaker::new(CONFIG));
        trip(&a, &clock);
        let until = a.open_until_ms().expect("open");
        assert_eq!(until, 1_000);
        // B had seen no failure: it opens on A's word.
        b.open_until(until, clock.now());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire(clock.now()).is_none());
        assert_eq!(b.status().times_opened, 1);
        // A later opening moves the probe; an earlier one does not.
        b.open_until(1_500, clock.now());
        b.open_until(200, clock.now());
        assert_eq!(b.open_until_ms(), Some(1_500));
        clock.advance(1_500);
        let probe = b.try_acquire(clock.now()).expect("its own probe");
        assert!(probe.is_probe());
        // While its probe is out, another host's opening changes nothing.
        b.open_until(9_000, clock.now());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe.record(Verdict::Success, clock.now());
        assert_eq!(b.state(), BreakerState::Closed);
        // An opening already over does not open it.
        b.open_until(clock.now(), clock.now());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn an_opening_on_unanswered_calls_alone_is_not_told_to_other_hosts() {
        let clock = Clock(0.into());
        let b = Breaker::new(CONFIG);
        let record = |verdict| {
            b.try_acquire(clock.now())
                .expect("a permit")
                .record(verdict, clock.now())
        };
        // This host cannot reach the CRM: it stops calling, on its own.
        for _ in 0..CONFIG.failures {
            record(Verdict::Unreached);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.open_until_ms(), None);
        // The probe gets a 503 from the CRM: now the others are told.
        clock.advance(1_000);
        record(Verdict::Failure);
        assert_eq!(b.open_until_ms(), Some(3_000));
        // Its next probe is not answered: its own again.
        clock.advance(2_000);
        record(Verdict::Unreached);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.open_until_ms(), None);
        // One answered failure in a streak is enough.
        clock.advance(3_000);
        record(Verdict::Success);
        record(Verdict::Failure);
        record(Verdict::Unreached);
        record(Verdict::Unreached);
        assert_eq!(b.open_until_ms(), Some(clock.now() + 1_000));
    }

    #[test]
    fn open_admits_nothing_until_the_cooldown_then_exactly_one_probe() {
        let clock = Clock(0.into());
        let b = Breaker::new(CONFIG);
        trip(&b, &clock);
        clock.advance(999);
        assert!(b.try_acquire(clock.now()).is_none());
        clock.advance(1);
        let probe = b.try_acquire(clock.now()).expect("the probe");
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one probe at a time, however many workers ask.
        for _ in 0..5 {
            assert!(b.try_acquire(clock.now()).is_none());
        }
        probe.record(Verdict::Success, clock.now());
        let s = b.status();
        assert_eq!(
            (s.state, s.consecutive_failures, s.cooldown_ms),
            (BreakerState::Closed, 0, 1_000)
        );
        let normal = b.try_acquire(clock.now()).unwrap();
        assert!(!normal.is_probe());
    }

    #[test]
    fn a_failed_probe_reopens_with_a_growing_capped_cooldown() {
        let clock = Clock(0.into());
        let b = Breaker::new(CONFIG);
        trip(&b, &clock);
        for expected in [2_000, 3_000, 3_000] {
            clock.advance(b.status().cooldown_ms as i64);
            let probe = b.try_acquire(clock.now()).unwrap();
            probe.record(Verdict::Failure, clock.now());
            let s = b.status();
            assert_eq!(s.state, BreakerState::Open);
            assert_eq!(s.cooldown_ms, expected);
            assert_eq!(s.next_probe_at_ms, Some(clock.now() + expected as i64));
        }
        assert_eq!(b.status().times_opened, 4);
        // Closing resets the cool-down for the next opening.
        clock.advance(3_000);
        b.try_acquire(clock.now())
            .unwrap()
            .record(Verdict::Success, clock.now());
        trip(&b, &clock);
        assert_eq!(b.status().cooldown_ms, 1_000);
    }

    #[test]
    fn an_unused_or_inconclusive_probe_frees_the_slot() {
        let clock = Clock(0.into());
        let b = Breaker::new(CONFIG);
        trip(&b, &clock);
        clock.advance(1_000);
        // Nothing to lease: the permit is dropped unrecorded.
        drop(b.try_acquire(clock.now()).unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire(clock.now()).expect("the slot is free again");
        probe.record(Verdict::Inconclusive, clock.now());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire(clock.now()).expect("another probe");
        assert!(probe.is_probe());
    }

    #[test]
    fn batches_sent_before_a_change_of_state_do_not_count() {
        let clock = Clock(0.into());
        let b = Breaker::new(CONFIG);
        // Four workers take permits while the CRM still looks healthy.
        let slow: Vec<_> = (0..4)
            .map(|_| b.try_acquire(clock.now()).unwrap())
            .collect();
        trip(&b, &clock);
        // Their late failures do not re-open it with a longer cool-down, and
        // a late success does not close it without a probe.
        let mut slow = slow.into_iter();
        slow.next().unwrap().record(Verdict::Failure, clock.now());
        slow.next().unwrap().record(Verdict::Success, clock.now());
        let s = b.status();
        assert_eq!(
            (s.state, s.times_opened, s.cooldown_ms),
            (BreakerState::Open, 1, 1_000)
        );
        // Nor do they disturb a probe.
        clock.advance(1_000);
        let probe = b.try_acquire(clock.now()).unwrap();
        slow.next().unwrap().record(Verdict::Failure, clock.now());
        drop(slow.next().unwrap());
        assert!(b.status().probe_in_flight);
        probe.record(Verdict::Success, clock.now());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn zero_failures_never_opens() {
        let clock = Clock(0.into());
        let b = Breaker::new(BreakerConfig {
            failures: 0,
            ..CONFIG
        });
        for _ in 0..100 {
            fail(&b, &clock);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn verdicts() {
        let retry = |after_ms| Outcome::Retry {
            kind: RetryKind::Transient,
            after_ms,
            reason: "503".into(),
        };
        let held_back = Outcome::Retry {
            kind: RetryKind::HeldBack,
            after_ms: None,
            reason: "another first".into(),
        };
        let rejected = Outcome::Rejected(Rejection {
            kind: RejectionKind::Validation,
            field: None,
            rule: "invalid".into(),
            message: "bad".into(),
        });
        let limited = Outcome::RateLimited { after_ms: 1_000 };
        assert_eq!(
            Verdict::of(&[retry(None), retry(Some(5_000))]),
            Verdict::Failure
        );
        assert_eq!(
            Verdict::of(&[retry(None), Outcome::Created("1".into())]),
            Verdict::Success
        );
        assert_eq!(
            Verdict::of(&[Outcome::DuplicateOf("1".into())]),
            Verdict::Success
        );
        assert_eq!(
            Verdict::of(&[rejected.clone(), limited.clone()]),
            Verdict::Inconclusive
        );
        assert_eq!(Verdict::of(&[held_back]), Verdict::Inconclusive);
        assert_eq!(Verdict::of(&[rejected, retry(None)]), Verdict::Failure);
        assert_eq!(Verdict::of(&[limited]), Verdict::Inconclusive);
        assert_eq!(Verdict::of(&[]), Verdict::Inconclusive);
    }
}
