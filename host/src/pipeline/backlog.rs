//! Backlog: the outstanding jobs (pending or leased), the host's and each
//! source's, and the limits ingest holds them to. When the outbox holds
//! more than a source's (or the host's) limit, ingest refuses a payload
//! before reading it ([`crate::pipeline::ingest`]), instead of accepting
//! work the host cannot hold. The count lives in memory, never a query per
//! request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{Store, StoreError};

/// How often the outstanding-job count is read from the store, at most.
pub const BACKLOG_REFRESH: Duration = Duration::from_millis(200);
/// The refresh waits at least this many times as long as its last count
/// took: counting a large backlog (≈ 50 ms for 1M outstanding jobs on
/// SQLite) then costs at most a tenth of a core, not a quarter.
const BACKLOG_REFRESH_SHARE: u32 = 10;
/// What a refused payload's sender is told to wait.
pub const RETRY_AFTER_S: u64 = 1;

/// The outstanding jobs (pending or leased), the host's and each source's,
/// and the limits ingest holds them to. A background task reads the counts
/// every [`BACKLOG_REFRESH`], less often for a large backlog
/// (`Store::outstanding_by_source`, answered from a partial index), and
/// every request adds the jobs it queues in between (counted before its
/// commit, see [`crate::pipeline::ingest::Ingest::accept`]).
pub struct Backlog {
    /// Jobs pending or leased, the whole host's.
    outstanding: AtomicU64,
    /// 0: no host-wide limit.
    host_limit: u64,
    /// Each configured source: its limit (0: none) and its own jobs.
    sources: HashMap<String, SourceBacklog>,
}

struct SourceBacklog {
    limit: u64,
    outstanding: AtomicU64,
}

impl Backlog {
    pub fn new(host_limit: u64, source_limits: HashMap<String, u64>) -> Backlog {
        Backlog {
            outstanding: AtomicU64::new(0),
            host_limit,
            sources: source_limits
                .into_iter()
                .map(|(name, limit)| {
                    let outstanding = AtomicU64::new(0);
                    (name, SourceBacklog { limit, outstanding })
                })
                .collect(),
        }
    }

    /// The host's outstanding jobs.
    pub fn outstanding(&self) -> u64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts jobs just queued for `source` (until the next refresh reads
    /// the exact counts).
    pub fn add(&self, source: &str, jobs: u64) {
        self.outstanding.fetch_add(jobs, Ordering::Relaxed);
        if let Some(s) = self.sources.get(source) {
            s.outstanding.fetch_add(jobs, Ordering::Relaxed);
        }
    }

    /// Takes back what [`Backlog::add`] counted for jobs that were not
    /// made (never below zero).
    pub fn sub(&self, source: &str, jobs: u64) {
        let less = |n: u64| Some(n.saturating_sub(jobs));
        let _ = self
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        if let Some(s) = self.sources.get(source) {
            let _ = s
                .outstanding
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less);
        }
    }

    /// (outstanding, limit) when a post from `source` must be refused: the
    /// host's backlog is at the host's limit, or the source's own backlog
    /// at the source's limit.
    pub fn over_limit(&self, source: &str) -> Option<(u64, u64)> {
        let host = self.outstanding();
        if self.host_limit > 0 && host >= self.host_limit {
            return Some((host, self.host_limit));
        }
        let s = self.sources.get(source).filter(|s| s.limit > 0)?;
        let own = s.outstanding.load(Ordering::Relaxed);
        (own >= s.limit).then_some((own, s.limit))
    }

    /// Reads the exact counts from the store; returns the host's.
    pub async fn refresh(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let by_source: HashMap<String, u64> =
            store.outstanding_by_source().await?.into_iter().collect();
        for (name, s) in &self.sources {
            let n = by_source.get(name).copied().unwrap_or(0);
            s.outstanding.store(n, Ordering::Relaxed);
        }
        let total = by_source.values().sum();
        self.outstanding.store(total, Ordering::Relaxed);
        Ok(total)
    }

    /// Refreshes the counts until aborted: every [`BACKLOG_REFRESH`], or
    /// less often when counting takes long (`refresh_pause`).
    pub fn spawn_refresh(self: Arc<Self>, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(e) = self.refresh(&*store).await {
                    tracing::warn!(error = %e, "reading the outbox backlog failed; the last count stands");
                }
                tokio::time::sleep(refresh_pause(started.elapsed())).await;
            }
        })
    }
}

/// How long the backlog refresh waits after a count that took `took`:
/// [`BACKLOG_REFRESH`] from start to start, or [`BACKLOG_REFRESH_SHARE`]
/// times the count's own time when that is longer.
fn refresh_pause(took: Duration) -> Duration {
    BACKLOG_REFRESH
        .saturating_sub(took)
        .max(took * (BACKLOG_REFRESH_SHARE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_count_is_refreshed_less_often() {
        let ms = Duration::from_millis;
        // Start to start: 200 ms while counting is quick.
        assert_eq!(refresh_pause(ms(0)), ms(200));
        assert_eq!(refresh_pause(ms(5)) + ms(5), ms(200));
        // A count of 50 ms (about 1M outstanding jobs) runs every 500 ms.
        assert_eq!(refresh_pause(ms(50)) + ms(50), ms(500));
        assert_eq!(refresh_pause(ms(2_000)) + ms(2_000), ms(20_000));
    }

    #[test]
    fn backlog_limits() {
        let backlog = Backlog::new(
            100,
            HashMap::from([("small".to_string(), 10), ("open".to_string(), 0)]),
        );
        assert_eq!(backlog.over_limit("small"), None);
        backlog.add("small", 10);
        assert_eq!(backlog.over_limit("small"), Some((10, 10)));
        assert_eq!(backlog.over_limit("open"), None, "a source's own count");
        assert_eq!(backlog.over_limit("unknown"), None);
        // Another source's jobs count against the host's limit only.
        backlog.add("open", 80);
        assert_eq!(backlog.over_limit("open"), None);
        backlog.add("unknown", 10);
        assert_eq!(backlog.over_limit("open"), Some((100, 100)));
        assert_eq!(backlog.over_limit("small"), Some((100, 100)));
        backlog.sub("small", 15);
        assert_eq!(backlog.outstanding(), 85);
        assert_eq!(backlog.over_limit("small"), None, "never below zero");
        let unlimited = Backlog::new(0, HashMap::from([("open".to_string(), 0)]));
        unlimited.add("open", u64::MAX / 2);
        assert_eq!(unlimited.over_limit("open"), None);
    }
}
