//! HubSpot's rate limits per token: a burst limit over a rolling window
//! (190 per 10 s for private apps), a daily quota that resets at midnight UTC,
//! and the CRM search API's own per-second limit. Refused requests do not use
//! up quota.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::errors::Policy;

const SEARCH_WINDOW: Duration = Duration::from_secs(1);
const SECONDS_PER_DAY: u64 = 86_400;

/// The limits in force, taken from [`crate::SimConfig`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub burst: u32,
    pub window: Duration,
    pub daily: u32,
    pub search_per_sec: u32,
}

/// "Now" on both clocks: `Instant` for windows, Unix seconds for the day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    pub now: Instant,
    pub unix_secs: u64,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Clock {
            now: Instant::now(),
            unix_secs,
        }
    }

    fn day(self) -> u64 {
        self.unix_secs / SECONDS_PER_DAY
    }

    fn seconds_to_midnight(self) -> u64 {
        SECONDS_PER_DAY - self.unix_secs % SECONDS_PER_DAY
    }
}

/// Values of the `X-HubSpot-RateLimit-*` headers for one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    pub daily: u32,
    pub daily_remaining: u32,
    pub interval_ms: u64,
    pub max: u32,
    pub remaining: u32,
    pub secondly: u32,
    pub secondly_remaining: u32,
}

impl RateHeaders {
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let pairs: [(&'static str, u64); 7] = [
            ("x-hubspot-ratelimit-daily", u64::from(self.daily)),
            (
                "x-hubspot-ratelimit-daily-remaining",
                u64::from(self.daily_remaining),
            ),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                self.interval_ms,
            ),
            ("x-hubspot-ratelimit-max", u64::from(self.max)),
            ("x-hubspot-ratelimit-remaining", u64::from(self.remaining)),
            ("x-hubspot-ratelimit-secondly", u64::from(self.secondly)),
            (
                "x-hubspot-ratelimit-secondly-remaining",
                u64::from(self.secondly_remaining),
            ),
        ];
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// Outcome of a rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed(RateHeaders),
    Limited {
        policy: Policy,
        retry_after: u64,
        headers: RateHeaders,
    },
}

#[derive(Debug, Default)]
struct Usage {
    /// Accepted requests within the rolling window, oldest first.
    recent: VecDeque<Instant>,
    /// Accepted search requests within the last second.
    searches: VecDeque<Instant>,
    day: u64,
    daily_used: u32,
}

impl Usage {
    fn prune(&mut self, limits: &Limits, clock: Clock) {
        while let Some(front) = self.recent.front() {
            if clock.now.duration_since(*front) >= limits.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        while let Some(front) = self.searches.front() {
            if clock.now.duration_since(*front) >= SEARCH_WINDOW {
                self.searches.pop_front();
            } else {
                break;
            }
        }
        if self.day != clock.day() {
            self.day = clock.day();
            self.daily_used = 0;
        }
    }

    fn headers(&self, limits: &Limits, clock: Clock, search: bool) -> RateHeaders {
        let (secondly, secondly_used) = if search {
            (limits.search_per_sec, self.searches.len())
        } else {
            let window_ms = limits.window.as_millis().max(1) as u64;
            let per_second = (u64::from(limits.burst) * 1000).div_ceil(window_ms);
            let one_second_ago = clock.now.checked_sub(SEARCH_WINDOW);
            let used = match one_second_ago {
                Some(start) => self.recent.len() - self.recent.partition_point(|t| *t <= start),
                None => self.recent.len(),
            };
            (u32::try_from(per_second).unwrap_or(u32::MAX), used)
        };
        RateHeaders {
            daily: limits.daily,
            daily_remaining: limits.daily.saturating_sub(self.daily_used),
            interval_ms: limits.window.as_millis() as u64,
            max: limits.burst,
            remaining: remaining(limits.burst, self.recent.len()),
            secondly,
            secondly_remaining: remaining(secondly, secondly_used),
        }
    }
}

fn remaining(limit: u32, used: usize) -> u32 {
    limit.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
}

/// Whole seconds until `wait` has passed, at least 1.
fn ceil_secs(wait: Duration) -> u64 {
    let millis = wait.as_millis() as u64;
    millis.div_ceil(1000).max(1)
}

/// Usage per token.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: Limits,
    usage: HashMap<String, Usage>,
}

impl RateLimiter {
    pub(crate) fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            usage: HashMap::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.usage.clear();
    }

    fn usage(&mut self, token: &str, clock: Clock) -> &mut Usage {
        if !self.usage.contains_key(token) {
            self.usage.insert(token.to_owned(), Usage::default());
        }
        let limits = self.limits;
        let usage = self.usage.get_mut(token).expect("inserted above");
        usage.prune(&limits, clock);
        usage
    }

    /// Counts one request against `token`'s limits, or refuses it.
    pub(crate) fn check(&mut self, token: &str, clock: Clock, search: bool) -> Decision {
        let limits = self.limits;
        let usage = self.usage(token, clock);
        let refusal = if usage.daily_used >= limits.daily {
            Some((Policy::Daily, clock.seconds_to_midnight()))
        } else if usage.recent.len() >= limits.burst as usize {
            let wait = match usage.recent.front() {
                Some(oldest) => (*oldest + limits.window).saturating_duration_since(clock.now),
                None => limits.window,
            };
            Some((Policy::TenSecondlyRolling, ceil_secs(wait)))
        } else if search && usage.searches.len() >= limits.search_per_sec as usize {
            let wait = match usage.searches.front() {
                Some(oldest) => (*oldest + SEARCH_WINDOW).saturating_duration_since(clock.now),
                None => SEARCH_WINDOW,
            };
            Some((Policy::Secondly, ceil_secs(wait)))
        } else {
            None
        };
        if let Some((policy, retry_after)) = refusal {
            let mut headers = usage.headers(&limits, clock, search);
            match policy {
                Policy::Daily => headers.daily_remaining = 0,
                Policy::TenSecondlyRolling => headers.remaining = 0,
                Policy::Secondly => headers.secondly_remaining = 0,
            }
            return Decision::Limited {
                policy,
                retry_after,
                headers,
            };
        }
        usage.recent.push_back(clock.now);
        if search {
            usage.searches.push_back(clock.now);
        }
        usage.daily_used += 1;
        Decision::Allowed(usage.headers(&limits, clock, search))
    }

    /// Current header values without counting a request.
    pub(crate) fn peek(&mut self, token: &str, clock: Clock, search: bool) -> RateHeaders {
        let limits = self.limits;
        self.usage(token, clock).headers(&limits, clock, search)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, window_ms: u64, daily: u32) -> RateLimiter {
        RateLimiter::new(Limits {
            burst,
            window: Duration::from_millis(window_ms),
            daily,
            search_per_sec: 2,
        })
    }

    fn at(start: Instant, ms: u64) -> Clock {
        Clock {
            now: start + Duration::from_millis(ms),
            unix_secs: 1_700_000_000,
        }
    }

    #[test]
    fn burst_window_refuses_then_frees() {
        let start = Instant::now();
        let mut rl = limiter(3, 10_000, 1000);
        for i in 0..3u32 {
            match rl.check("t", at(start, u64::from(i) * 100), false) {
                Decision::Allowed(h) => {
                    assert_eq!(h.remaining, 2 - i);
                    assert_eq!(h.max, 3);
                    assert_eq!(h.interval_ms, 10_000);
                    assert_eq!(h.daily_remaining, 999 - i);
                }
                other => panic!("{other:?}"),
            }
        }
        match rl.check("t", at(start, 2_500), false) {
            Decision::Limited {
                policy,
                retry_after,
                headers,
            } => {
                assert_eq!(policy, Policy::TenSecondlyRolling);
                // the first slot frees at 10.0 s: 7.5 s away, rounded up
                assert_eq!(retry_after, 8);
                assert_eq!(headers.remaining, 0);
                assert_eq!(headers.daily_remaining, 997, "refusals use no quota");
            }
            other => panic!("{other:?}"),
        }
        // another token has its own window
        assert!(matches!(
            rl.check("u", at(start, 2_500), false),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            rl.check("t", at(start, 10_000), false),
            Decision::Allowed(_)
        ));
    }

    #[test]
    fn daily_quota() {
        let start = Instant::now();
        let mut rl = limiter(100, 10_000, 2);
        assert!(matches!(
            rl.check("t", at(start, 0), false),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            rl.check("t", at(start, 1), false),
            Decision::Allowed(_)
        ));
        match rl.check("t", at(start, 2), false) {
            Decision::Limited {
                policy,
                retry_after,
                ..
            } => {
                assert_eq!(policy, Policy::Daily);
                assert_eq!(
                    retry_after,
                    SECONDS_PER_DAY - 1_700_000_000 % SECONDS_PER_DAY
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn search_has_its_own_secondly_limit() {
        let start = Instant::now();
        let mut rl = limiter(100, 10_000, 1000);
        assert!(matches!(
            rl.check("t", at(start, 0), true),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            rl.check("t", at(start, 10), true),
            Decision::Allowed(_)
        ));
        match rl.check("t", at(start, 20), true) {
            Decision::Limited {
                policy,
                retry_after,
                ..
            } => {
                assert_eq!(policy, Policy::Secondly);
                assert_eq!(retry_after, 1);
            }
            other => panic!("{other:?}"),
        }
        // other endpoints are not affected
        assert!(matches!(
            rl.check("t", at(start, 20), false),
            Decision::Allowed(_)
        ));
        assert!(matches!(
            rl.check("t", at(start, 1_001), true),
            Decision::Allowed(_)
        ));
    }

    #[test]
    fn secondly_header_is_derived_from_the_burst() {
        let start = Instant::now();
        let mut rl = limiter(190, 10_000, 1000);
        let h = rl.peek("t", at(start, 0), false);
        assert_eq!(h.secondly, 19);
        assert_eq!(h.secondly_remaining, 19);
        assert_eq!(h.remaining, 190);
    }
}
