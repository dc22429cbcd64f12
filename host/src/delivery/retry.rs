//! Retry: what an adapter's outcome means, and what becomes of the job.
//!
//! [`classify`] is the one place an [`Outcome`] is read: it maps each to an
//! [`Action`], which [`decide`] turns into the job's result, the circuit
//! breaker turns into a verdict on the CRM's health, and the worker counts
//! in the metrics. Timing is pure functions of the attempt count, the clock
//! and a caller's RNG: exponential backoff with full jitter, capped; a
//! CRM's `Retry-After` wins; an age limit ends a job the CRM never takes.

use leadgate_runtime::{CallError, Outcome, RejectionKind, RetryKind};
use rand::Rng;

use crate::store::JobResult;

/// What one adapter outcome asks of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Written: created, updated, or found as an existing CRM record.
    Delivered,
    /// The CRM (or the adapter) refused the record: dead-letter it.
    Reject,
    /// Held back by the adapter so another record goes first: due again at
    /// once; not a failure and no attempt used.
    HeldBack,
    /// The CRM throttled: wait `after_ms`; no attempt used.
    RateLimited { after_ms: u64 },
    /// A read-back found the write missing or different: retry, an attempt
    /// used.
    ReadbackMismatch { after_ms: Option<u64> },
    /// The CRM refused the credential: the worker renews an OAuth token
    /// and sends the record again at once; if it is refused again, a retry
    /// with an attempt used.
    AuthExpired { after_ms: Option<u64> },
    /// A transient failure (5xx, timeout, transport, a failed plugin call):
    /// retry after `after_ms` or the backoff, an attempt used.
    Transient { after_ms: Option<u64> },
}

impl Action {
    /// Whether the outcome uses up one of the job's attempts.
    pub fn counts_attempt(&self) -> bool {
        matches!(
            self,
            Action::Transient { .. } | Action::ReadbackMismatch { .. } | Action::AuthExpired { .. }
        )
    }
}

/// The one reading of an adapter outcome.
pub fn classify(outcome: &Outcome) -> Action {
    match outcome {
        Outcome::Created(_)
        | Outcome::Updated(_)
        | Outcome::DuplicateOf(_)
        | Outcome::Deleted(_)
        | Outcome::NotFound(_) => Action::Delivered,
        Outcome::Rejected(_) => Action::Reject,
        Outcome::Retry { kind, after_ms, .. } => {
            let after_ms = *after_ms;
            match kind {
                RetryKind::HeldBack => Action::HeldBack,
                RetryKind::ReadbackMismatch => Action::ReadbackMismatch { after_ms },
                RetryKind::AuthExpired => Action::AuthExpired { after_ms },
                RetryKind::Transient => Action::Transient { after_ms },
            }
        }
        Outcome::RateLimited { after_ms } => Action::RateLimited {
            after_ms: *after_ms,
        },
    }
}

/// An outcome's class in leadgate's one error taxonomy, as
/// `leadgate_delivery_outcomes_total` counts it.
pub fn outcome_class(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Created(_) => "created",
        Outcome::Updated(_) => "updated",
        Outcome::DuplicateOf(_) => "duplicate",
        Outcome::Rejected(r) => match r.kind {
            RejectionKind::Validation => "rejected_validation",
            RejectionKind::Conflict => "rejected_conflict",
            RejectionKind::Forbidden => "rejected_forbidden",
            RejectionKind::Config => "rejected_config",
            RejectionKind::Other => "rejected_other",
        },
        Outcome::Retry { kind, .. } => match kind {
            RetryKind::Transient => "retry_transient",
            RetryKind::HeldBack => "retry_held_back",
            RetryKind::ReadbackMismatch => "retry_readback_mismatch",
            RetryKind::AuthExpired => "retry_auth_expired",
        },
        Outcome::RateLimited { .. } => "rate_limited",
        Outcome::Deleted(_) => "deleted",
        Outcome::NotFound(_) => "not_found",
    }
}

/// A failed plugin call is a transient failure of every job in the batch.
pub fn call_error_outcome(e: &CallError) -> Outcome {
    Outcome::Retry {
        kind: RetryKind::Transient,
        after_ms: None,
        reason: format!("adapter call failed: {e}"),
    }
}

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

/// A batch sent as a half-open circuit breaker's probe. Its failure is the
/// breaker's question, not the job's attempt: it never uses up an attempt,
/// and the job waits past the next probe, so that probe takes another job
/// (one record the CRM keeps failing on never holds the breaker open for
/// the rest of the queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// When the breaker sends its next probe, if it is open again.
    pub next_probe_at_ms: Option<i64>,
}

/// One job's attempt, as [`decide`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct Attempt {
    /// Attempts before this one.
    pub attempts: u32,
    /// When the job was made.
    pub queued_at_ms: i64,
    pub now_ms: i64,
    /// Set when the batch was a breaker's probe.
    pub probe: Option<Probe>,
}

/// What to do with one job after one outcome.
pub fn decide(
    policy: &RetryPolicy,
    outcome: &Outcome,
    attempt: Attempt,
    rng: &mut impl Rng,
) -> JobResult {
    let action = classify(outcome);
    let (after_ms, error) = match &action {
        Action::Delivered => {
            return JobResult::Delivered {
                crm_id: crm_id(outcome).to_string(),
                outcome: outcome.to_string(),
            };
        }
        Action::Reject => {
            return JobResult::Dead {
                error: outcome.to_string(),
            };
        }
        Action::HeldBack => (Some(0), retry_reason(outcome)),
        Action::RateLimited { after_ms } => {
            (Some(*after_ms), format!("rate limited for {after_ms} ms"))
        }
        Action::ReadbackMismatch { after_ms }
        | Action::Transient { after_ms }
        | Action::AuthExpired { after_ms } => (*after_ms, retry_reason(outcome)),
    };
    let counts = action.counts_attempt() && attempt.probe.is_none();
    let this = attempt.attempts + 1;
    if counts && this >= policy.max_attempts {
        return JobResult::Dead {
            error: format!("gave up after {this} attempts: {error}"),
        };
    }
    // Rate limits and failed probes use up no attempts: the age limit is
    // what ends a job that a CRM never takes.
    let age_ms = attempt.now_ms.saturating_sub(attempt.queued_at_ms);
    if policy.give_up_after_ms > 0 && age_ms >= policy.give_up_after_ms as i64 {
        return JobResult::Dead {
            error: format!(
                "gave up {} s after it was queued ({} attempts): {error}",
                age_ms / 1000,
                attempt.attempts + u32::from(action.counts_attempt())
            ),
        };
    }
    let delay = after_ms.unwrap_or_else(|| backoff_ms(policy, this, rng));
    let mut next_attempt_at_ms = attempt.now_ms + delay as i64;
    if let Some(Probe {
        next_probe_at_ms: Some(at),
    }) = attempt.probe
    {
        next_attempt_at_ms = next_attempt_at_ms.max(at + 1);
    }
    JobResult::Retry {
        next_attempt_at_ms,
        error,
        count_attempt: counts,
    }
}

fn crm_id(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Created(id)
        | Outcome::Updated(id)
        | Outcome::DuplicateOf(id)
        | Outcome::Deleted(id)
        | Outcome::NotFound(id) => id,
        _ => "",
    }
}

fn retry_reason(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. } => reason.clone(),
        other => other.to_string(),
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

    /// The attempt after `attempts` earlier ones, of a job queued at
    /// `queued_at_ms`, at `now_ms`.
    fn at(attempts: u32, queued_at_ms: i64, now_ms: i64) -> Attempt {
        Attempt {
            attempts,
            queued_at_ms,
            now_ms,
            probe: None,
        }
    }

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
        let r = decide(
            &POLICY,
            &Outcome::Created("9".into()),
            at(0, 0, 0),
            &mut rng,
        );
        assert!(matches!(r, JobResult::Delivered { crm_id, .. } if crm_id == "9"));
        let rejected = Outcome::Rejected(Rejection {
            kind: RejectionKind::Validation,
            field: Some("email".into()),
            rule: "invalid_email".into(),
            message: "bad".into(),
        });
        assert!(matches!(
            decide(&POLICY, &rejected, at(0, 0, 0), &mut rng),
            JobResult::Dead { .. }
        ));
        let retry = Outcome::Retry {
            kind: RetryKind::Transient,
            after_ms: Some(2_500),
            reason: "503".into(),
        };
        match decide(&POLICY, &retry, at(0, 0, 1_000), &mut rng) {
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
            matches!(decide(&POLICY, &retry, at(2, 0, 0), &mut rng), JobResult::Dead { error } if error.contains("3 attempts"))
        );
        // Rate limiting never uses up attempts.
        let limited = Outcome::RateLimited { after_ms: 10_000 };
        assert!(matches!(
            decide(&POLICY, &limited, at(99, 0, 0), &mut rng),
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
            kind: RetryKind::Transient,
            after_ms: None,
            reason: "503".into(),
        };
        // Younger than the limit: rescheduled, attempts unused.
        assert!(matches!(
            decide(&POLICY, &limited, at(0, 1_000, 60_999), &mut rng),
            JobResult::Retry { .. }
        ));
        // At the limit: rate limited or failed, the job ends in the DLQ.
        for outcome in [&limited, &retry] {
            match decide(&POLICY, outcome, at(0, 1_000, 61_000), &mut rng) {
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
                at(0, 0, i64::MAX),
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
            decide(&forever, &limited, at(0, 0, i64::MAX / 2), &mut rng),
            JobResult::Retry { .. }
        ));
    }

    #[test]
    fn one_classification_of_every_outcome() {
        let retry = |kind, after_ms| Outcome::Retry {
            kind,
            after_ms,
            reason: "why".into(),
        };
        assert_eq!(
            classify(&Outcome::DuplicateOf("7".into())),
            Action::Delivered
        );
        assert_eq!(
            classify(&retry(RetryKind::HeldBack, None)),
            Action::HeldBack
        );
        assert_eq!(
            classify(&retry(RetryKind::ReadbackMismatch, None)),
            Action::ReadbackMismatch { after_ms: None }
        );
        assert_eq!(
            classify(&retry(RetryKind::Transient, Some(5))),
            Action::Transient { after_ms: Some(5) }
        );
        assert_eq!(
            classify(&retry(RetryKind::AuthExpired, None)),
            Action::AuthExpired { after_ms: None }
        );
        assert!(Action::AuthExpired { after_ms: None }.counts_attempt());
        assert!(!Action::HeldBack.counts_attempt());
        assert!(!Action::RateLimited { after_ms: 1 }.counts_attempt());
        assert!(Action::ReadbackMismatch { after_ms: None }.counts_attempt());
    }

    #[test]
    fn a_failed_probe_uses_no_attempt_and_waits_past_the_next_probe() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let failed = Outcome::Retry {
            kind: RetryKind::Transient,
            after_ms: Some(10),
            reason: "503".into(),
        };
        let probe = Attempt {
            probe: Some(Probe {
                next_probe_at_ms: Some(5_000),
            }),
            ..at(7, 0, 1_000)
        };
        assert_eq!(
            decide(&POLICY, &failed, probe, &mut rng),
            JobResult::Retry {
                next_attempt_at_ms: 5_001,
                error: "503".into(),
                count_attempt: false,
            }
        );
    }
}
