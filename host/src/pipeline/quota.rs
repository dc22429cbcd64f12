//! A source's ingest rate limit: how many leads its key may post, as a
//! token bucket (GCRA, by `governor`) refilled at `leads_per_second` and
//! holding `burst`. A payload takes as many tokens as it has leads, all or
//! none; refused, it learns how long until it would fit.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::IngestRateLimit;

pub struct SourceQuota {
    pub limit: IngestRateLimit,
    limiter: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for SourceQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceQuota")
    }
}

impl SourceQuota {
    /// None for a limit of zero leads per second or a burst of zero (the
    /// configuration refuses both).
    pub fn new(limit: IngestRateLimit) -> Option<SourceQuota> {
        let quota = Quota::per_second(NonZeroU32::new(limit.leads_per_second)?)
            .allow_burst(NonZeroU32::new(limit.burst)?);
        Some(SourceQuota {
            limit,
            limiter: RateLimiter::direct_with_clock(quota, DefaultClock::default()),
        })
    }

    /// Takes `leads` tokens, or says how long until they would be there.
    /// A payload larger than the burst can never pass: `Err(None)`.
    pub fn take(&self, leads: usize) -> Result<(), Option<Duration>> {
        let Some(n) = u32::try_from(leads).ok().and_then(NonZeroU32::new) else {
            return if leads == 0 { Ok(()) } else { Err(None) };
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Some(not_until.wait_time_from(self.limiter.clock().now()))),
            Err(_) => Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let quota = SourceQuota::new(IngestRateLimit {
            leads_per_second: 10,
            burst: 50,
        })
        .unwrap();
        assert_eq!(quota.take(0), Ok(()));
        assert_eq!(quota.take(50), Ok(()));
        let wait = quota.take(5).unwrap_err().expect("fits later");
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(quota.take(51), Err(None), "never fits");
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(quota.take(1), Ok(()), "refilled at 10/s");
    }
}
