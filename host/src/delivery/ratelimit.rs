//! Rate limits that model each CRM's quota, so delivery stays under it
//! rather than merely surviving 429s.
//!
//! An adapter declares its CRM's windows in `describe()` (HubSpot: 190
//! requests per rolling 10 s, 650,000 a day, search 5 per second; Pipedrive:
//! 80 per 2 s, search 10 per 2 s). One [`Limiter`] per destination, shared
//! by all its workers and every call, admits each outbound request through
//! the host's HTTP import:
//!
//! - a window counts the request kinds it declares (a CRM's search quota
//!   counts searches only; the adapter says what each request is); one
//!   that declares none counts every request;
//! - a CRM that caps requests in flight (Zoho CRM: 10; Dataverse: 52) has
//!   that cap kept: a request waits for one in flight to be answered;
//! - windows up to an hour are rolling logs: a request holds its place in
//!   a window from the moment it is sent until one window after its answer
//!   (the CRM counted it when it arrived, somewhere in between), so no
//!   network delay, however long or uneven, can put one request too many
//!   in any of the CRM's windows; longer windows (daily quotas) are
//!   counters that reset;
//! - the CRM corrects the model: a 429's `Retry-After`, or a response saying
//!   no requests remain (`X-HubSpot-RateLimit-Remaining: 0`,
//!   `x-ratelimit-remaining: 0` with `x-ratelimit-reset`), blocks the
//!   destination until then;
//! - a request that would wait longer than `max_wait` is not held: the
//!   plugin gets a local 429 with that `Retry-After` and the worker pauses
//!   the destination.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use leadgate_runtime::{RateLimit, RequestGate, RequestKind};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a window is kept as a log of send times.
const LOG_WINDOW_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug)]
enum Usage {
    /// Answer times within the window, oldest first, and the requests
    /// sent and not answered yet.
    Log {
        answered: VecDeque<Instant>,
        in_flight: u32,
    },
    /// Requests since `start`.
    Counter { start: Instant, count: u32 },
}

#[derive(Debug)]
struct Window {
    name: String,
    max: u32,
    window: Duration,
    /// The request kinds it counts; empty: all.
    kinds: Vec<RequestKind>,
    usage: Usage,
}

impl Window {
    fn new(limit: &RateLimit, now: Instant) -> Option<Window> {
        if limit.max_requests == 0 || limit.window_ms == 0 {
            return None;
        }
        let declared = Duration::from_millis(limit.window_ms);
        let (window, usage) = if declared <= LOG_WINDOW_MAX {
            let usage = Usage::Log {
                answered: VecDeque::new(),
                in_flight: 0,
            };
            (declared, usage)
        } else {
            (
                declared,
                Usage::Counter {
                    start: now,
                    count: 0,
                },
            )
        };
        Some(Window {
            name: limit.name.clone(),
            max: limit.max_requests,
            window,
            kinds: limit.kinds.clone(),
            usage,
        })
    }

    fn applies(&self, kind: RequestKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// This host's part of the window: its maximum cut into `shares`
    /// (the hosts sharing the CRM account), at least one request.
    fn max(&self, shares: u32) -> u32 {
        (self.max / shares.max(1)).max(1)
    }

    /// When the window has room again (now if it has), for this host's
    /// part of it.
    fn free_at(&mut self, now: Instant, shares: u32) -> Instant {
        let max = self.max(shares);
        match &mut self.usage {
            Usage::Log {
                answered,
                in_flight,
            } => {
                while answered
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    answered.pop_front();
                }
                let used = answered.len() as u32 + *in_flight;
                if used < max {
                    return now;
                }
                // The (used - max + 1)-th oldest answer frees the last place
                // needed; a request still in flight frees its place one
                // window after its answer at the earliest.
                let needed = (used - max) as usize;
                match answered.get(needed) {
                    Some(t) => *t + self.window,
                    None => now + self.window,
                }
            }
            Usage::Counter { start, count } => {
                if now.duration_since(*start) >= self.window {
                    *start = now;
                    *count = 0;
                }
                if *count < max {
                    now
                } else {
                    *start + self.window
                }
            }
        }
    }

    /// A request sent now.
    fn record(&mut self) {
        match &mut self.usage {
            Usage::Log { in_flight, .. } => *in_flight += 1,
            Usage::Counter { count, .. } => *count += 1,
        }
    }

    /// A request sent earlier was answered (or failed) now.
    fn answered(&mut self, now: Instant) {
        if let Usage::Log {
            answered,
            in_flight,
        } = &mut self.usage
        {
            // A window adopted after the request was sent never counted it.
            if *in_flight > 0 {
                *in_flight -= 1;
                answered.push_back(now);
            }
        }
    }

    fn used(&self) -> u32 {
        match &self.usage {
            Usage::Log {
                answered,
                in_flight,
            } => answered.len() as u32 + in_flight,
            Usage::Counter { count, .. } => *count,
        }
    }
}

#[derive(Debug)]
struct State {
    windows: Vec<Window>,
    /// The CRM said to stop until then.
    blocked_until: Option<Instant>,
    /// The same, as wall-clock ms (what other hosts are told).
    blocked_until_ms: Option<i64>,
    /// Requests sent and not answered yet, and the CRM's cap on them.
    in_flight: u32,
    max_concurrent: Option<u32>,
    /// How many hosts share the CRM account: each keeps its part of every
    /// window and of the cap on requests in flight.
    shares: u32,
    /// A host that joined others sends nothing until then (their requests
    /// made at larger parts are still in the CRM's windows).
    joining_until: Option<Instant>,
}

impl Default for State {
    fn default() -> State {
        State {
            windows: Vec::new(),
            blocked_until: None,
            blocked_until_ms: None,
            in_flight: 0,
            max_concurrent: None,
            shares: 1,
            joining_until: None,
        }
    }
}

impl State {
    /// This host's part of the CRM's cap on requests in flight.
    fn concurrency_full(&self) -> bool {
        self.max_concurrent
            .is_some_and(|max| self.in_flight >= (max / self.shares.max(1)).max(1))
    }
}

/// Why a request cannot go now.
enum Wait {
    /// A window has room (or the CRM's pause ends) then.
    Until(Instant),
    /// As many requests are in flight as the CRM takes at once.
    Busy,
}

/// One destination's model of its CRM's quota.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    /// Signalled when a request in flight is answered.
    freed: Notify,
    max_wait: Duration,
}

/// A snapshot for the API and metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WindowStatus {
    pub name: String,
    pub max_requests: u32,
    pub window_ms: u64,
    /// The request kinds it counts; empty: all.
    pub kinds: Vec<RequestKind>,
    pub used: u32,
}

/// Requests in flight, and the CRM's cap on them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct InFlight {
    pub now: u32,
    pub max: Option<u32>,
}

impl Limiter {
    /// A limiter for `limits`; calls wait at most `max_wait` for room.
    pub fn new(limits: &[RateLimit], max_concurrent: Option<u32>, max_wait: Duration) -> Limiter {
        let limiter = Limiter {
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            max_wait,
        };
        limiter.set_limits(limits, max_concurrent);
        limiter
    }

    /// Adopts the limits a reloaded adapter declares, keeping the usage of
    /// windows that did not change.
    pub fn set_limits(&self, limits: &[RateLimit], max_concurrent: Option<u32>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.max_concurrent = max_concurrent.filter(|&n| n > 0);
        self.freed.notify_waiters();
        let mut old = std::mem::take(&mut state.windows);
        state.windows = limits
            .iter()
            .filter_map(|l| {
                let fresh = Window::new(l, now)?;
                match old.iter().position(|w| {
                    w.name == fresh.name
                        && w.max == fresh.max
                        && w.window == fresh.window
                        && w.kinds == fresh.kinds
                }) {
                    Some(i) => Some(old.swap_remove(i)),
                    None => Some(fresh),
                }
            })
            .collect();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request now if every window it falls under has room and
    /// the CRM takes another at once; else says what it waits for.
    fn try_admit(&self, kind: RequestKind, now: Instant) -> Result<(), Wait> {
        let mut state = self.lock();
        let mut at = now.max(state.joining_until.unwrap_or(now));
        if let Some(until) = state.blocked_until {
            if until > now {
                at = until;
            } else {
                state.blocked_until = None;
            }
        }
        let shares = state.shares;
        for w in state.windows.iter_mut().filter(|w| w.applies(kind)) {
            at = at.max(w.free_at(now, shares));
        }
        if at > now {
            return Err(Wait::Until(at));
        }
        if state.concurrency_full() {
            return Err(Wait::Busy);
        }
        for w in state.windows.iter_mut().filter(|w| w.applies(kind)) {
            w.record();
        }
        state.in_flight += 1;
        Ok(())
    }

    /// An admitted request is no longer in flight.
    fn answered(&self, kind: RequestKind) {
        let mut state = self.lock();
        // Taken under the lock, so answers go into the logs in time order.
        let now = Instant::now();
        for w in state.windows.iter_mut().filter(|w| w.applies(kind)) {
            w.answered(now);
        }
        state.in_flight = state.in_flight.saturating_sub(1);
        drop(state);
        self.freed.notify_one();
    }

    /// Waits for room (at most `max_wait`) and counts the request.
    pub async fn acquire(&self, kind: RequestKind) -> Result<(), u64> {
        /// What a request refused for concurrency is told to wait.
        const BUSY_RETRY_MS: u64 = 1_000;
        let deadline = Instant::now() + self.max_wait;
        loop {
            // Registered before the check, so an answer between the check
            // and the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let now = Instant::now();
            match self.try_admit(kind, now) {
                Ok(()) => return Ok(()),
                Err(Wait::Until(at)) if at > deadline => {
                    return Err(at.duration_since(now).as_millis() as u64);
                }
                Err(Wait::Until(at)) => tokio::time::sleep_until(at).await,
                Err(Wait::Busy) => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(BUSY_RETRY_MS);
                    }
                }
            }
        }
    }

    /// Whether a request could go now without waiting (does not count it).
    pub fn has_room(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        if state.blocked_until.is_some_and(|u| u > now)
            || state.joining_until.is_some_and(|u| u > now)
        {
            return false;
        }
        if state.concurrency_full() {
            return false;
        }
        let shares = state.shares;
        state
            .windows
            .iter_mut()
            .filter(|w| w.applies(RequestKind::Write))
            .all(|w| w.free_at(now, shares) <= now)
    }

    /// Stops every request until `now + wait`.
    pub fn block_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let until_ms = crate::now_ms().saturating_add(wait.as_millis() as i64);
        let mut state = self.lock();
        state.blocked_until = Some(state.blocked_until.map_or(until, |u| u.max(until)));
        state.blocked_until_ms = Some(state.blocked_until_ms.map_or(until_ms, |u| u.max(until_ms)));
    }

    /// Stops every request until the wall-clock time `until_ms` (a pause
    /// another host was told by the CRM, or a newcomer's wait for its part
    /// of the quota).
    pub fn block_until_ms(&self, until_ms: i64) {
        let wait = until_ms.saturating_sub(crate::now_ms());
        if wait > 0 {
            self.block_for(Duration::from_millis(wait as u64));
        }
    }

    /// Until when the destination is paused (wall clock), if it is.
    pub fn blocked_until_ms(&self) -> Option<i64> {
        self.lock()
            .blocked_until_ms
            .filter(|&u| u > crate::now_ms())
    }

    /// Cuts every window and the cap on requests in flight into `shares`
    /// parts, one for this host (several hosts delivering to one CRM
    /// account).
    pub fn set_shares(&self, shares: u32, joining_until_ms: Option<i64>) {
        let mut state = self.lock();
        state.joining_until = joining_until_ms.map(|ms| {
            Instant::now() + Duration::from_millis(ms.saturating_sub(crate::now_ms()).max(0) as u64)
        });
        if state.shares != shares.max(1) {
            state.shares = shares.max(1);
            drop(state);
            self.freed.notify_waiters();
        }
    }

    /// How long a request stays in this limiter's view of the CRM's
    /// windows: the longest rolling window.
    pub fn longest_window(&self) -> Duration {
        self.lock()
            .windows
            .iter()
            .filter(|w| matches!(w.usage, Usage::Log { .. }))
            .map(|w| w.window)
            .max()
            .unwrap_or_default()
    }

    pub fn status(&self) -> Vec<WindowStatus> {
        let now = Instant::now();
        let mut state = self.lock();
        let shares = state.shares;
        state
            .windows
            .iter_mut()
            .map(|w| {
                w.free_at(now, shares);
                WindowStatus {
                    name: w.name.clone(),
                    max_requests: w.max(shares),
                    window_ms: w.window.as_millis() as u64,
                    kinds: w.kinds.clone(),
                    used: w.used(),
                }
            })
            .collect()
    }

    pub fn in_flight(&self) -> InFlight {
        let state = self.lock();
        InFlight {
            now: state.in_flight,
            max: state.max_concurrent,
        }
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn number(headers: &[(String, String)], name: &str) -> Option<f64> {
    header(headers, name)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Salesforce's `Sforce-Limit-Info: api-usage=N/M` (requests used of the
/// org's rolling 24-hour allocation), as (used, limit).
fn salesforce_usage(headers: &[(String, String)]) -> Option<(u64, u64)> {
    let info = header(headers, "sforce-limit-info")?;
    let usage = info
        .split(';')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, limit) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

/// How long to stop when Salesforce's daily allocation is spent: it is a
/// rolling 24 hours and the answer does not say when room comes back.
const SALESFORCE_SPENT: Duration = Duration::from_secs(15 * 60);

/// How long the CRM's answer says to stop sending, if it says so.
pub fn stop_for(status: u16, headers: &[(String, String)]) -> Option<Duration> {
    let secs = |v: f64| Duration::from_millis((v * 1000.0).ceil() as u64);
    if let Some((used, limit)) = salesforce_usage(headers)
        && used >= limit
    {
        return Some(SALESFORCE_SPENT);
    }
    if status == 429 {
        return Some(
            number(headers, "retry-after")
                .map(secs)
                .or_else(|| number(headers, "x-ratelimit-reset").map(secs))
                .or_else(|| {
                    number(headers, "x-hubspot-ratelimit-interval-milliseconds")
                        .map(|ms| Duration::from_millis(ms as u64))
                })
                .unwrap_or(Duration::from_secs(1)),
        );
    }
    let remaining = number(headers, "x-hubspot-ratelimit-remaining")
        .or_else(|| number(headers, "x-ratelimit-remaining"))?;
    if remaining > 0.0 {
        return None;
    }
    number(headers, "x-ratelimit-reset").map(secs).or_else(|| {
        number(headers, "x-hubspot-ratelimit-interval-milliseconds")
            .map(|ms| Duration::from_millis(ms as u64))
    })
}

impl RequestGate for Limiter {
    fn admit(&self, kind: RequestKind) -> BoxFuture<'_, Result<(), u64>> {
        Box::pin(self.acquire(kind))
    }

    fn observe(&self, kind: RequestKind, status: u16, headers: &[(String, String)]) {
        self.answered(kind);
        // A search's own window running out does not stop other calls.
        if kind == RequestKind::Search && status != 429 {
            return;
        }
        if let Some(wait) = stop_for(status, headers) {
            self.block_for(wait);
        }
    }

    fn failed(&self, kind: RequestKind) {
        self.answered(kind);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const WRITE: RequestKind = RequestKind::Write;
    const SEARCH: RequestKind = RequestKind::Search;

    fn limit(name: &str, max: u32, ms: u64) -> RateLimit {
        RateLimit {
            name: name.into(),
            max_requests: max,
            window_ms: ms,
            kinds: if name == "search" {
                vec![SEARCH]
            } else {
                vec![]
            },
        }
    }

    /// A request sent and answered at once.
    async fn send(limiter: &Limiter, kind: RequestKind) {
        limiter.acquire(kind).await.unwrap();
        limiter.answered(kind);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rolling_window_is_never_exceeded() {
        let limiter = Limiter::new(&[limit("burst", 5, 1_000)], None, Duration::from_secs(10));
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..12 {
            send(&limiter, WRITE).await;
            sent.push(Instant::now().duration_since(start));
        }
        // Of any six consecutive sends, the last is a full window after the
        // first.
        for pair in sent.windows(6) {
            assert!(
                pair[5] - pair[0] >= Duration::from_millis(1_000),
                "{sent:?}"
            );
        }
        assert_eq!(sent[4], Duration::ZERO, "the first five go at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_keeps_to_its_part_of_a_shared_quota() {
        // Three hosts share 10 per second and a cap of 4 in flight: this
        // one sends 3 per second, 1 at a time.
        let limiter = Limiter::new(
            &[limit("burst", 10, 1_000)],
            Some(4),
            Duration::from_secs(10),
        );
        limiter.set_shares(3, None);
        let start = Instant::now();
        for _ in 0..3 {
            send(&limiter, WRITE).await;
        }
        assert_eq!(Instant::now(), start, "its three go at once");
        assert!(!limiter.has_room());
        send(&limiter, WRITE).await;
        assert!(Instant::now() >= start + Duration::from_millis(1_000));
        limiter.acquire(WRITE).await.unwrap();
        assert!(!limiter.has_room(), "one in flight is its part of the cap");
        limiter.answered(WRITE);
        assert_eq!(limiter.status()[0].max_requests, 3);
        // A host joining waits for its turn at the quota, then has half.
        limiter.set_shares(2, Some(crate::now_ms() + 5_000));
        assert!(!limiter.has_room());
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        assert!(limiter.has_room());
        assert_eq!(limiter.status()[0].max_requests, 5);
        // A pause is told in wall-clock time (for the other hosts).
        limiter.block_for(Duration::from_secs(30));
        let until = limiter.blocked_until_ms().unwrap();
        assert!((until - crate::now_ms() - 30_000).abs() < 1_000, "{until}");
    }

    #[tokio::test(start_paused = true)]
    async fn searches_have_their_own_window_on_top() {
        let limiter = Limiter::new(
            &[limit("burst", 100, 2_000), limit("search", 2, 2_000)],
            None,
            Duration::from_secs(10),
        );
        let t0 = Instant::now();
        send(&limiter, SEARCH).await;
        send(&limiter, SEARCH).await;
        // Writes are not held by the spent search window.
        send(&limiter, WRITE).await;
        assert_eq!(Instant::now(), t0);
        send(&limiter, SEARCH).await;
        assert!(Instant::now() - t0 >= Duration::from_secs(2));
        // The three sends at t0 have left the rolling window since.
        assert_eq!(limiter.status()[0].used, 1);
    }

    /// The CRM counts a request when it arrives, anywhere between its send
    /// and its answer: a slow answer keeps the request's place until one
    /// window after the answer, so however uneven the network, no window
    /// of the CRM's sees one request too many.
    #[tokio::test(start_paused = true)]
    async fn a_request_holds_its_place_until_a_window_after_its_answer() {
        let limiter = Limiter::new(&[limit("burst", 2, 1_000)], None, Duration::from_secs(10));
        let t0 = Instant::now();
        limiter.acquire(WRITE).await.unwrap();
        limiter.acquire(WRITE).await.unwrap();
        // Both in flight for 3 s, longer than the window: still no room.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!limiter.has_room());
        assert_eq!(limiter.status()[0].used, 2);
        limiter.observe(WRITE, 200, &[]);
        // One answered at t0 + 3 s (a failure ends a call as well).
        limiter.failed(WRITE);
        limiter.acquire(WRITE).await.unwrap();
        assert_eq!(Instant::now() - t0, Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn long_waits_are_refused_not_held() {
        let limiter = Limiter::new(
            &[limit("daily", 2, 86_400_000)],
            None,
            Duration::from_secs(5),
        );
        limiter.acquire(WRITE).await.unwrap();
        limiter.acquire(WRITE).await.unwrap();
        let wait = limiter.acquire(WRITE).await.unwrap_err();
        assert!(wait > 86_000_000, "{wait}");
        assert!(!limiter.has_room());
    }

    #[tokio::test(start_paused = true)]
    async fn the_crm_corrects_the_model() {
        let limiter = Limiter::new(
            &[limit("burst", 100, 10_000)],
            None,
            Duration::from_secs(30),
        );
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        limiter.observe(WRITE, 200, &h(&[("X-HubSpot-RateLimit-Remaining", "57")]));
        assert!(limiter.has_room());
        limiter.observe(WRITE, 429, &h(&[("Retry-After", "3")]));
        assert!(!limiter.has_room());
        let t0 = Instant::now();
        limiter.acquire(WRITE).await.unwrap();
        assert!(Instant::now() - t0 >= Duration::from_secs(3));
        limiter.observe(
            WRITE,
            200,
            &h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "2")]),
        );
        assert!(!limiter.has_room());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_stay_under_the_crms_cap() {
        let limiter = Arc::new(Limiter::new(
            &[limit("burst", 1_000, 10_000)],
            Some(2),
            Duration::from_secs(5),
        ));
        limiter.acquire(WRITE).await.unwrap();
        limiter.acquire(SEARCH).await.unwrap();
        assert!(!limiter.has_room(), "two in flight of two");
        let third = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(WRITE).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished(), "the third waits for an answer");
        limiter.answered(SEARCH);
        assert_eq!(third.await.unwrap(), Ok(()));
        // Nobody answers now: a wait past max_wait is refused, not held.
        let t0 = Instant::now();
        assert_eq!(limiter.acquire(WRITE).await, Err(1_000));
        assert_eq!(Instant::now() - t0, Duration::from_secs(5));
        // A reload lifting the cap lets it through at once.
        limiter.set_limits(&[limit("burst", 1_000, 10_000)], None);
        limiter.acquire(WRITE).await.unwrap();
    }

    #[test]
    fn stop_for_reads_each_crms_headers() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(stop_for(429, &h(&[])), Some(Duration::from_secs(1)));
        assert_eq!(
            stop_for(
                429,
                &h(&[("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")])
            ),
            Some(Duration::from_secs(10))
        );
        assert_eq!(stop_for(200, &h(&[("x-ratelimit-remaining", "3")])), None);
        assert_eq!(
            stop_for(200, &h(&[("Sforce-Limit-Info", "api-usage=18/5000")])),
            None
        );
        assert_eq!(
            stop_for(
                200,
                &h(&[("Sforce-Limit-Info", "api-usage=5000/5000; api-bursts=1/750")])
            ),
            Some(SALESFORCE_SPENT)
        );
        assert_eq!(stop_for(200, &h(&[])), None);
    }

    #[test]
    fn reloads_keep_the_usage_of_unchanged_windows() {
        let limiter = Limiter::new(&[limit("burst", 2, 1_000)], None, Duration::ZERO);
        assert!(limiter.try_admit(WRITE, Instant::now()).is_ok());
        limiter.set_limits(
            &[limit("burst", 2, 1_000), limit("daily", 10, 86_400_000)],
            None,
        );
        let status = limiter.status();
        assert_eq!((status[0].used, status[1].used), (1, 0));
    }
}
