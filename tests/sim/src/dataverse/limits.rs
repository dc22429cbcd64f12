//! Service protection API limits (`shared/crm-apis.md` §4.6; Microsoft's
//! "Service protection API limits" article): per user, over a sliding
//! 5-minute window, 6,000 requests and 20 minutes of combined execution
//! time, and 52 requests at once. Past a limit the answer is 429 with
//! `Retry-After` (seconds) and one of three codes:
//!
//! - `0x80072322` "Number of requests exceeded the limit of 6000 over
//!   time window of 300 seconds."
//! - `0x80072321` "Combined execution time of incoming requests exceeded
//!   limit of 1,200,000 milliseconds over time window of 300 seconds.
//!   Decrease number of concurrent requests or reduce the duration of
//!   requests and try again later."
//! - `0x80072326` "Number of concurrent requests exceeded the limit of 52."
//!
//! Admitted answers carry `x-ms-ratelimit-burst-remaining-xrm-requests`
//! (requests left in the window) and
//! `x-ms-ratelimit-time-remaining-xrm-requests` (execution seconds left,
//! printed like `1,199.97`). A `$batch` is one request; its whole
//! execution time counts. Refused requests use up nothing.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::wire::{DvError, thousands};

/// The limits in force (per user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataverseLimits {
    /// Requests per window (6,000).
    pub requests: u32,
    /// The sliding window (300,000 ms).
    pub window_ms: u64,
    /// Combined execution time per window (1,200,000 ms).
    pub execution_ms: u64,
    /// Requests in flight at once (52).
    pub concurrent: u32,
}

impl Default for DataverseLimits {
    fn default() -> Self {
        DataverseLimits {
            requests: 6_000,
            window_ms: 300_000,
            execution_ms: 1_200_000,
            concurrent: 52,
        }
    }
}

impl DataverseLimits {
    fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.max(1))
    }

    pub fn requests_exceeded(&self) -> DvError {
        DvError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "0x80072322",
            format!(
                "Number of requests exceeded the limit of {} over time window of {} seconds.",
                self.requests,
                self.window_ms / 1000
            ),
        )
    }

    pub fn execution_exceeded(&self) -> DvError {
        DvError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "0x80072321",
            format!(
                "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                thousands(self.execution_ms),
                self.window_ms / 1000
            ),
        )
    }

    pub fn concurrency_exceeded(&self) -> DvError {
        DvError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "0x80072326",
            format!(
                "Number of concurrent requests exceeded the limit of {}.",
                self.concurrent
            ),
        )
    }
}

/// One user's use of the limits.
#[derive(Debug, Default)]
struct UserUsage {
    requests: VecDeque<Instant>,
    /// When each request ended and how long it took.
    executions: VecDeque<(Instant, Duration)>,
    in_flight: u32,
}

impl UserUsage {
    fn prune(&mut self, window: Duration, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.requests.pop_front();
        }
        while self
            .executions
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.executions.pop_front();
        }
    }

    fn executed(&self) -> Duration {
        self.executions.iter().map(|(_, d)| *d).sum()
    }
}

/// The values of the two debug headers on an admitted answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemainingHeaders {
    pub requests: u32,
    pub execution_ms: u64,
}

impl RemainingHeaders {
    /// `1,199.97`: seconds with two decimals.
    pub fn time_value(&self) -> String {
        format!(
            "{}.{:02}",
            thousands(self.execution_ms / 1000),
            (self.execution_ms % 1000) / 10
        )
    }
}

/// A 429: the error and its `Retry-After` in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub error: DvError,
    pub retry_after: u64,
}

/// Usage of every user.
#[derive(Debug, Default)]
pub struct Usage {
    users: HashMap<String, UserUsage>,
}

fn ceil_secs(wait: Duration) -> u64 {
    (wait.as_millis() as u64).div_ceil(1000).max(1)
}

impl Usage {
    pub fn clear(&mut self) {
        for usage in self.users.values_mut() {
            usage.requests.clear();
            usage.executions.clear();
        }
    }

    /// Admits a request of `user` (counting it and marking it in flight)
    /// or refuses it.
    pub fn admit(
        &mut self,
        limits: &DataverseLimits,
        user: &str,
        now: Instant,
    ) -> Result<RemainingHeaders, Throttled> {
        let window = limits.window();
        let usage = self.users.entry(user.to_owned()).or_default();
        usage.prune(window, now);
        if usage.in_flight >= limits.concurrent {
            return Err(Throttled {
                error: limits.concurrency_exceeded(),
                retry_after: 1,
            });
        }
        if usage.requests.len() >= limits.requests as usize {
            let wait = usage
                .requests
                .front()
                .map_or(window, |t| (*t + window).saturating_duration_since(now));
            return Err(Throttled {
                error: limits.requests_exceeded(),
                retry_after: ceil_secs(wait),
            });
        }
        let executed = usage.executed();
        if executed.as_millis() as u64 >= limits.execution_ms {
            let wait = usage.executions.front().map_or(window, |(t, _)| {
                (*t + window).saturating_duration_since(now)
            });
            return Err(Throttled {
                error: limits.execution_exceeded(),
                retry_after: ceil_secs(wait),
            });
        }
        usage.requests.push_back(now);
        usage.in_flight += 1;
        Ok(RemainingHeaders {
            requests: limits
                .requests
                .saturating_sub(u32::try_from(usage.requests.len()).unwrap_or(u32::MAX)),
            execution_ms: limits
                .execution_ms
                .saturating_sub(executed.as_millis() as u64),
        })
    }

    /// An admitted request of `user` ended after `took`.
    pub fn finish(&mut self, user: &str, took: Duration, now: Instant) {
        if let Some(usage) = self.users.get_mut(user) {
            usage.in_flight = usage.in_flight.saturating_sub(1);
            usage.executions.push_back((now, took));
        }
    }

    /// Requests counted in the window for `user`.
    pub fn requests(&mut self, limits: &DataverseLimits, user: &str, now: Instant) -> u32 {
        self.users.get_mut(user).map_or(0, |u| {
            u.prune(limits.window(), now);
            u32::try_from(u.requests.len()).unwrap_or(u32::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_concurrency_and_execution() {
        let limits = DataverseLimits {
            requests: 3,
            window_ms: 10_000,
            execution_ms: 1_000,
            concurrent: 2,
        };
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut usage = Usage::default();
        let h = usage.admit(&limits, "u", at(0)).unwrap();
        assert_eq!(h.requests, 2);
        assert_eq!(h.time_value(), "1.00");
        usage.admit(&limits, "u", at(1)).unwrap();
        // Two in flight: the third is refused at once.
        let refused = usage.admit(&limits, "u", at(2)).unwrap_err();
        assert_eq!(refused.error.code, "0x80072326");
        assert_eq!(
            refused.error.message,
            "Number of concurrent requests exceeded the limit of 2."
        );
        usage.finish("u", Duration::from_millis(400), at(3));
        usage.finish("u", Duration::from_millis(700), at(4));
        // 1,100 ms executed of 1,000.
        let refused = usage.admit(&limits, "u", at(5)).unwrap_err();
        assert_eq!(refused.error.code, "0x80072321");
        assert_eq!(refused.retry_after, 10);
        // Another user is not affected.
        usage.admit(&limits, "v", at(5)).unwrap();
        usage.finish("v", Duration::ZERO, at(5));
        usage.admit(&limits, "v", at(6)).unwrap();
        usage.finish("v", Duration::ZERO, at(6));
        usage.admit(&limits, "v", at(7)).unwrap();
        usage.finish("v", Duration::ZERO, at(7));
        let refused = usage.admit(&limits, "v", at(2_500)).unwrap_err();
        assert_eq!(refused.error.code, "0x80072322");
        assert_eq!(
            refused.error.message,
            "Number of requests exceeded the limit of 3 over time window of 10 seconds."
        );
        assert_eq!(refused.retry_after, 8);
        assert!(usage.admit(&limits, "v", at(10_005)).is_ok());
        assert_eq!(
            DataverseLimits::default().execution_exceeded().message,
            "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
        );
        let h = RemainingHeaders {
            requests: 0,
            execution_ms: 1_199_973,
        };
        assert_eq!(h.time_value(), "1,199.97");
    }
}
