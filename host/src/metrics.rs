//! Metrics: counters kept in memory and rendered in the Prometheus text
//! format at `GET /metrics`. Names follow `leadgate_<stage>_<what>_total`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::plugins::PluginStatus;
use crate::store::StoreCounts;

#[derive(Debug, Default)]
pub struct Metrics {
    pub ingest_requests: AtomicU64,
    pub ingest_accepted: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    pub ingest_rejected: AtomicU64,
    /// Posts answered 429 because the backlog was full.
    pub ingest_backlog_refused: AtomicU64,
    pub delivery_batches: AtomicU64,
    pub delivery_delivered: AtomicU64,
    pub delivery_retries: AtomicU64,
    pub delivery_rate_limited: AtomicU64,
    pub delivery_dead: AtomicU64,
    pub delivery_lease_lost: AtomicU64,
    /// Leased jobs given back to the queue at shutdown.
    pub delivery_released: AtomicU64,
    pub plugin_call_errors: AtomicU64,
    pub webhook_events: AtomicU64,
    pub webhook_rejected: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self, counts: Option<&StoreCounts>, plugins: &[PluginStatus]) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "leadgate_ingest_requests_total",
            "POST /v1/leads requests.",
            self.ingest_requests.load(Relaxed),
        );
        counter(
            "leadgate_ingest_accepted_total",
            "Leads accepted and stored.",
            self.ingest_accepted.load(Relaxed),
        );
        counter(
            "leadgate_ingest_duplicates_total",
            "Accepted leads that were duplicates.",
            self.ingest_duplicates.load(Relaxed),
        );
        counter(
            "leadgate_ingest_rejected_total",
            "Leads rejected at validation.",
            self.ingest_rejected.load(Relaxed),
        );
        counter(
            "leadgate_ingest_backlog_refused_total",
            "POST /v1/leads answered 429 because the outbox backlog was over its limit.",
            self.ingest_backlog_refused.load(Relaxed),
        );
        counter(
            "leadgate_delivery_batches_total",
            "Adapter push calls.",
            self.delivery_batches.load(Relaxed),
        );
        counter(
            "leadgate_delivery_delivered_total",
            "Jobs delivered.",
            self.delivery_delivered.load(Relaxed),
        );
        counter(
            "leadgate_delivery_retries_total",
            "Jobs rescheduled.",
            self.delivery_retries.load(Relaxed),
        );
        counter(
            "leadgate_delivery_rate_limited_total",
            "Jobs the CRM throttled.",
            self.delivery_rate_limited.load(Relaxed),
        );
        counter(
            "leadgate_delivery_dead_lettered_total",
            "Jobs moved to the dead-letter queue.",
            self.delivery_dead.load(Relaxed),
        );
        counter(
            "leadgate_delivery_lease_lost_total",
            "Results dropped because the lease had passed to another worker.",
            self.delivery_lease_lost.load(Relaxed),
        );
        counter(
            "leadgate_delivery_released_total",
            "Leased jobs given back to the queue at shutdown.",
            self.delivery_released.load(Relaxed),
        );
        counter(
            "leadgate_plugin_call_errors_total",
            "Plugin calls that trapped, timed out or misbehaved.",
            self.plugin_call_errors.load(Relaxed),
        );
        counter(
            "leadgate_webhook_events_total",
            "Verified webhook events.",
            self.webhook_events.load(Relaxed),
        );
        counter(
            "leadgate_webhook_rejected_total",
            "Webhooks refused.",
            self.webhook_rejected.load(Relaxed),
        );
        if let Some(c) = counts {
            let _ = writeln!(
                out,
                "# HELP leadgate_outbox_jobs Jobs by state.\n# TYPE leadgate_outbox_jobs gauge"
            );
            for (state, n) in [
                ("pending", c.jobs_pending),
                ("leased", c.jobs_leased),
                ("delivered", c.jobs_delivered),
                ("dead", c.jobs_dead),
            ] {
                let _ = writeln!(out, "leadgate_outbox_jobs{{state=\"{state}\"}} {n}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP leadgate_plugin_calls_total Plugin calls.\n# TYPE leadgate_plugin_calls_total counter"
        );
        for p in plugins {
            let _ = writeln!(
                out,
                "leadgate_plugin_calls_total{{destination=\"{}\",adapter=\"{}\",version=\"{}\"}} {}",
                p.destination, p.adapter, p.version, p.calls
            );
        }
        let _ = writeln!(
            out,
            "# HELP leadgate_plugin_reload_failures_total Plugin or mapping files refused at reload.\n# TYPE leadgate_plugin_reload_failures_total counter"
        );
        for p in plugins {
            let _ = writeln!(
                out,
                "leadgate_plugin_reload_failures_total{{destination=\"{}\"}} {}",
                p.destination, p.reload_failures
            );
        }
        let _ = writeln!(
            out,
            "# HELP leadgate_delivery_breaker_state Circuit breaker per destination: 0 closed, 1 half-open, 2 open.\n# TYPE leadgate_delivery_breaker_state gauge"
        );
        for p in plugins {
            let _ = writeln!(
                out,
                "leadgate_delivery_breaker_state{{destination=\"{}\"}} {}",
                p.destination,
                p.breaker.state.gauge()
            );
        }
        let _ = writeln!(
            out,
            "# HELP leadgate_delivery_breaker_opened_total Times a destination's circuit breaker opened (re-openings after a failed probe included).\n# TYPE leadgate_delivery_breaker_opened_total counter"
        );
        for p in plugins {
            let _ = writeln!(
                out,
                "leadgate_delivery_breaker_opened_total{{destination=\"{}\"}} {}",
                p.destination, p.breaker.times_opened
            );
        }
        out
    }
}
