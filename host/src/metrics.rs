//! Metrics: counters kept in memory and rendered in the Prometheus text
//! format at `GET /metrics`. Names follow `leadgate_<stage>_<what>_total`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;

use crate::pipeline::route::Priority;
use crate::store::StoreCounts;

/// What `/metrics` shows of one destination (from the plugin registry's
/// status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationGauges {
    pub destination: String,
    pub adapter: String,
    pub version: String,
    pub calls: u64,
    pub reload_failures: u64,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: u8,
    pub breaker_opened: u64,
}

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
    /// Writes the CRM reported as done that a read-back found missing or
    /// different (retried).
    pub delivery_readback_mismatches: AtomicU64,
    /// Lead-to-CRM latency and SLA breaches per priority class.
    pub latency: LatencyByClass,
}

/// Lead-to-CRM latency (acceptance to the CRM's confirmation) per priority
/// class, and how many deliveries missed the class's SLA.
#[derive(Debug)]
pub struct LatencyByClass {
    classes: [Mutex<Histogram<u64>>; 3],
    breaches: [AtomicU64; 3],
}

impl Default for LatencyByClass {
    fn default() -> Self {
        let histogram = || {
            // 1 ms to 1 day, 3 significant figures.
            Mutex::new(Histogram::new_with_bounds(1, 86_400_000, 3).expect("valid bounds"))
        };
        LatencyByClass {
            classes: [histogram(), histogram(), histogram()],
            breaches: Default::default(),
        }
    }
}

/// A class's latency figures in ms.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub priority: String,
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    pub sla_breaches: u64,
}

impl LatencyByClass {
    /// Records one delivery of a job of class `class` accepted at
    /// `accepted_ms` and confirmed at `now_ms`.
    pub fn record(&self, class: Priority, accepted_ms: i64, now_ms: i64) {
        let i = class.as_i64() as usize;
        let ms = (now_ms - accepted_ms).max(1) as u64;
        self.classes[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(ms);
        if ms > class.sla().as_millis() as u64 {
            self.breaches[i].fetch_add(1, Relaxed);
        }
    }

    pub fn summaries(&self) -> Vec<LatencySummary> {
        [Priority::P0, Priority::P1, Priority::P2]
            .into_iter()
            .map(|class| {
                let i = class.as_i64() as usize;
                let h = self.classes[i].lock().unwrap_or_else(|e| e.into_inner());
                LatencySummary {
                    priority: format!("{class:?}"),
                    count: h.len(),
                    p50_ms: h.value_at_quantile(0.5),
                    p95_ms: h.value_at_quantile(0.95),
                    p99_ms: h.value_at_quantile(0.99),
                    max_ms: h.max(),
                    sla_breaches: self.breaches[i].load(Relaxed),
                }
            })
            .collect()
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn render(&self, counts: Option<&StoreCounts>, plugins: &[DestinationGauges]) -> String {
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
        counter(
            "leadgate_delivery_readback_mismatches_total",
            "Writes the CRM reported as done that a read-back found missing or different (retried).",
            self.delivery_readback_mismatches.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP leadgate_delivery_latency_ms Lead-to-CRM latency, acceptance to the CRM's confirmation, per priority class.\n# TYPE leadgate_delivery_latency_ms summary"
        );
        let summaries = self.latency.summaries();
        for s in &summaries {
            for (q, v) in [("0.5", s.p50_ms), ("0.95", s.p95_ms), ("0.99", s.p99_ms)] {
                let _ = writeln!(
                    out,
                    "leadgate_delivery_latency_ms{{priority=\"{}\",quantile=\"{q}\"}} {v}",
                    s.priority
                );
            }
            let _ = writeln!(
                out,
                "leadgate_delivery_latency_ms_count{{priority=\"{}\"}} {}",
                s.priority, s.count
            );
        }
        family(
            &mut out,
            "leadgate_delivery_sla_breaches_total",
            "Deliveries later than their class's SLA (P0 1 min, P1 5 min, P2 30 min).",
            "counter",
            summaries
                .iter()
                .map(|s| (format!("priority=\"{}\"", s.priority), s.sla_breaches)),
        );
        if let Some(c) = counts {
            family(
                &mut out,
                "leadgate_outbox_jobs",
                "Jobs by state.",
                "gauge",
                [
                    ("pending", c.jobs_pending),
                    ("leased", c.jobs_leased),
                    ("delivered", c.jobs_delivered),
                    ("dead", c.jobs_dead),
                ]
                .map(|(state, n)| (format!("state=\"{state}\""), n)),
            );
        }
        let per_destination = |value: fn(&DestinationGauges) -> u64| {
            plugins
                .iter()
                .map(move |p| (format!("destination=\"{}\"", p.destination), value(p)))
        };
        family(
            &mut out,
            "leadgate_plugin_calls_total",
            "Plugin calls.",
            "counter",
            plugins.iter().map(|p| {
                (
                    format!(
                        "destination=\"{}\",adapter=\"{}\",version=\"{}\"",
                        p.destination, p.adapter, p.version
                    ),
                    p.calls,
                )
            }),
        );
        family(
            &mut out,
            "leadgate_plugin_reload_failures_total",
            "Plugin or mapping files refused at reload.",
            "counter",
            per_destination(|p| p.reload_failures),
        );
        family(
            &mut out,
            "leadgate_delivery_breaker_state",
            "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
            "gauge",
            per_destination(|p| u64::from(p.breaker_state)),
        );
        family(
            &mut out,
            "leadgate_delivery_breaker_opened_total",
            "Times a destination's circuit breaker opened (re-openings after a failed probe included).",
            "counter",
            per_destination(|p| p.breaker_opened),
        );
        out
    }
}

/// One labelled metric family: its HELP and TYPE lines, then a line per
/// (labels, value).
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    rows: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_per_class_and_sla_breaches() {
        let m = Metrics::default();
        for ms in 1..=100 {
            m.latency.record(Priority::P0, 0, ms * 10);
        }
        // A P2 lead delivered after 31 minutes missed its SLA.
        m.latency.record(Priority::P2, 0, 31 * 60_000);
        m.latency.record(Priority::P2, 0, 60_000);
        let s = m.latency.summaries();
        assert_eq!((s[0].count, s[1].count, s[2].count), (100, 0, 2));
        assert!((495..=505).contains(&s[0].p50_ms), "{:?}", s[0]);
        assert!((985..=995).contains(&s[0].p99_ms), "{:?}", s[0]);
        assert_eq!((s[0].sla_breaches, s[2].sla_breaches), (0, 1));
        let text = m.render(None, &[]);
        assert!(text.contains("leadgate_delivery_latency_ms{priority=\"P0\",quantile=\"0.99\"}"));
        assert!(text.contains("leadgate_delivery_sla_breaches_total{priority=\"P2\"} 1"));
    }
}
