//! Metrics: counters kept in memory and rendered in the Prometheus text
//! format at `GET /metrics` by the `prometheus` crate's encoder. Names
//! follow `leadgate_<stage>_<what>_total`. Counters live in a registry;
//! what is read at scrape time (the store's job counts, each destination's
//! plugin and breaker, the latency quantiles) is added as families then.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hdrhistogram::Histogram;
use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary,
};
use prometheus::{Encoder as _, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

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
    /// 1 while the destination's jobs wait: its adapter file is missing
    /// or its OAuth grant was refused.
    pub paused: bool,
    /// Calls to the destination's OAuth token endpoint.
    pub oauth_token_calls: u64,
}

/// What `/metrics` shows of the outbox writer's memory: the golden
/// records it caches and its dedupe index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterGauges {
    pub cached_persons: u64,
    pub index_records: u64,
    pub index_fingerprints: u64,
    /// The index's heap, estimated.
    pub index_bytes: u64,
}

/// Declares the host's counters: each a field and a registered series.
macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident: $name:literal, $help:literal;)+) => {
        /// The host's counters, and the latency of deliveries per class.
        pub struct Metrics {
            registry: Registry,
            $($(#[$doc])* pub $field: IntCounter,)+
            /// How long `POST /v1/leads` took in its handler, from the key
            /// check to the answer (for an accepted lead: until it was
            /// durable).
            pub ingest_seconds: prometheus::Histogram,
            /// Lead-to-CRM latency and SLA breaches per priority class.
            pub latency: LatencyByClass,
            /// Adapter outcomes per destination and class of the one
            /// taxonomy (`delivery::retry::outcome_class`).
            pub outcomes: IntCounterVec,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let registry = Registry::new();
                $(
                    let $field = IntCounter::new($name, $help).expect("a valid counter");
                    registry
                        .register(Box::new($field.clone()))
                        .expect("each counter once");
                )+
                let outcomes = IntCounterVec::new(
                    Opts::new(
                        "leadgate_delivery_outcomes_total",
                        "Adapter outcomes per destination and class: created, updated, duplicate, rejected_<kind>, retry_<kind>, rate_limited.",
                    ),
                    &["destination", "class"],
                )
                .expect("a valid counter");
                registry
                    .register(Box::new(outcomes.clone()))
                    .expect("each counter once");
                let ingest_seconds = prometheus::Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "leadgate_ingest_request_duration_seconds",
                        "POST /v1/leads in its handler, from the key check and the body read to the answer (for accepted leads: until they were durable).",
                    )
                    .buckets(INGEST_BUCKETS.to_vec()),
                )
                .expect("a valid histogram");
                registry
                    .register(Box::new(ingest_seconds.clone()))
                    .expect("each histogram once");
                Metrics {
                    registry,
                    $($field,)+
                    ingest_seconds,
                    latency: LatencyByClass::default(),
                    outcomes,
                }
            }
        }
    };
}

/// The ingest histogram's buckets, in seconds: a durable commit takes
/// milliseconds, a slow disk or a stalled store seconds.
const INGEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

counters! {
    ingest_requests: "leadgate_ingest_requests_total", "POST /v1/leads requests.";
    ingest_accepted: "leadgate_ingest_accepted_total", "Leads accepted and stored.";
    ingest_duplicates: "leadgate_ingest_duplicates_total", "Accepted leads that were duplicates.";
    ingest_rejected: "leadgate_ingest_rejected_total", "Leads rejected at validation.";
    /// Posts answered 429 because the backlog was full.
    ingest_backlog_refused: "leadgate_ingest_backlog_refused_total",
        "POST /v1/leads answered 429 because the outbox backlog was over its limit.";
    /// Posts answered 429 because their source was over its rate limit.
    ingest_rate_limited: "leadgate_ingest_rate_limited_total",
        "POST /v1/leads answered 429 because its source was over its rate limit.";
    delivery_batches: "leadgate_delivery_batches_total", "Adapter push calls.";
    delivery_delivered: "leadgate_delivery_delivered_total", "Jobs delivered.";
    delivery_retries: "leadgate_delivery_retries_total", "Jobs rescheduled.";
    delivery_rate_limited: "leadgate_delivery_rate_limited_total", "Jobs the CRM throttled.";
    delivery_dead: "leadgate_delivery_dead_lettered_total", "Jobs moved to the dead-letter queue.";
    delivery_lease_lost: "leadgate_delivery_lease_lost_total",
        "Results dropped because the lease had passed to another worker.";
    /// Leased jobs given back to the queue at shutdown.
    delivery_released: "leadgate_delivery_released_total",
        "Leased jobs given back to the queue at shutdown.";
    plugin_call_errors: "leadgate_plugin_call_errors_total",
        "Plugin calls that trapped, timed out or misbehaved.";
    webhook_events: "leadgate_webhook_events_total", "Verified webhook events.";
    webhook_rejected: "leadgate_webhook_rejected_total", "Webhooks refused.";
    webhook_replays: "leadgate_webhook_replays_total",
        "Verified webhook deliveries seen before (answered, events not taken again).";
    erasures: "leadgate_erasures_total", "Persons erased (DELETE /v1/persons/{id}).";
    /// Writes the CRM reported as done that a read-back found missing or
    /// different (retried).
    delivery_readback_mismatches: "leadgate_delivery_readback_mismatches_total",
        "Writes the CRM reported as done that a read-back found missing or different (retried).";
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
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
    /// The sum of the latencies (from the histogram's mean).
    #[serde(skip)]
    pub sum_ms: f64,
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
                    sum_ms: h.mean() * h.len() as f64,
                    sla_breaches: self.breaches[i].load(Relaxed),
                }
            })
            .collect()
    }

    /// The latency summary family: p50, p95 and p99 per class.
    fn family(&self, summaries: &[LatencySummary]) -> MetricFamily {
        let metrics = summaries
            .iter()
            .map(|s| {
                let quantiles = [(0.5, s.p50_ms), (0.95, s.p95_ms), (0.99, s.p99_ms)]
                    .into_iter()
                    .map(|(q, v)| {
                        let mut quantile = Quantile::default();
                        quantile.set_quantile(q);
                        quantile.set_value(v as f64);
                        quantile
                    })
                    .collect();
                let mut summary = Summary::default();
                summary.set_sample_count(s.count);
                summary.set_sample_sum(s.sum_ms);
                summary.set_quantile(quantiles);
                let mut metric = Metric::default();
                metric.set_label(labels(vec![("priority", s.priority.clone())]));
                metric.set_summary(summary);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name("leadgate_delivery_latency_ms".into());
        family.set_help(
            "Lead-to-CRM latency, acceptance to the CRM's confirmation, per priority class.".into(),
        );
        family.set_field_type(MetricType::SUMMARY);
        family.set_metric(metrics);
        family
    }
}

impl Metrics {
    pub fn add(counter: &IntCounter, n: u64) {
        counter.inc_by(n);
    }

    /// The Prometheus text: the registered counters and what is read now
    /// (the store's `counts`, the writer's memory, each destination's
    /// plugin and breaker, the latency per class).
    pub fn render(
        &self,
        counts: Option<&StoreCounts>,
        writer: Option<&WriterGauges>,
        destinations: &[DestinationGauges],
    ) -> String {
        let mut families = self.registry.gather();
        let summaries = self.latency.summaries();
        families.push(self.latency.family(&summaries));
        families.push(family(
            "leadgate_delivery_sla_breaches_total",
            "Deliveries later than their class's SLA (P0 1 min, P1 5 min, P2 30 min).",
            MetricType::COUNTER,
            summaries
                .iter()
                .map(|s| (vec![("priority", s.priority.clone())], s.sla_breaches)),
        ));
        if let Some(c) = counts {
            families.push(family(
                "leadgate_outbox_jobs",
                "Jobs by state (held: pending, waiting for the person's consent).",
                MetricType::GAUGE,
                [
                    ("pending", c.jobs_pending),
                    ("held", c.jobs_held),
                    ("leased", c.jobs_leased),
                    ("delivered", c.jobs_delivered),
                    ("dead", c.jobs_dead),
                ]
                .map(|(state, n)| (vec![("state", state.to_string())], n)),
            ));
        }
        if let Some(w) = writer {
            families.extend(writer_families(w));
        }
        families.extend(destination_families(destinations));
        // The text format has no empty family (no destination configured).
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("metric families encode");
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }
}

/// The writer's memory: one unlabelled gauge each.
fn writer_families(w: &WriterGauges) -> Vec<MetricFamily> {
    [
        (
            "leadgate_writer_cached_persons",
            "Golden records the outbox writer keeps in memory (given back after 1 s idle).",
            w.cached_persons,
        ),
        (
            "leadgate_dedupe_index_records",
            "Leads in the fuzzy dedupe index (those received within the window).",
            w.index_records,
        ),
        (
            "leadgate_dedupe_index_fingerprints",
            "Exact-match fingerprints in the dedupe index.",
            w.index_fingerprints,
        ),
        (
            "leadgate_dedupe_index_bytes",
            "Heap bytes the dedupe index holds (estimated).",
            w.index_bytes,
        ),
    ]
    .into_iter()
    .map(|(name, help, value)| family(name, help, MetricType::GAUGE, [(vec![], value)]))
    .collect()
}

/// Per destination: plugin calls, reload failures and its breaker.
fn destination_families(destinations: &[DestinationGauges]) -> Vec<MetricFamily> {
    let per_destination = |value: fn(&DestinationGauges) -> u64| {
        destinations
            .iter()
            .map(move |d| (vec![("destination", d.destination.clone())], value(d)))
    };
    vec![
        family(
            "leadgate_plugin_calls_total",
            "Plugin calls.",
            MetricType::COUNTER,
            destinations.iter().map(|d| {
                let labels = vec![
                    ("destination", d.destination.clone()),
                    ("adapter", d.adapter.clone()),
                    ("version", d.version.clone()),
                ];
                (labels, d.calls)
            }),
        ),
        family(
            "leadgate_plugin_reload_failures_total",
            "Plugin or mapping files refused at reload.",
            MetricType::COUNTER,
            per_destination(|d| d.reload_failures),
        ),
        family(
            "leadgate_delivery_breaker_state",
            "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
            MetricType::GAUGE,
            per_destination(|d| u64::from(d.breaker_state)),
        ),
        family(
            "leadgate_delivery_breaker_opened_total",
            "Times a destination's circuit breaker opened (re-openings after a failed probe included).",
            MetricType::COUNTER,
            per_destination(|d| d.breaker_opened),
        ),
        family(
            "leadgate_destination_paused",
            "1 while a destination's jobs wait for an operator: its adapter file is missing or its OAuth grant was refused (see GET /v1/plugins).",
            MetricType::GAUGE,
            per_destination(|d| u64::from(d.paused)),
        ),
        family(
            "leadgate_oauth_token_requests_total",
            "Calls to a destination's OAuth 2.0 token endpoint.",
            MetricType::COUNTER,
            per_destination(|d| d.oauth_token_calls),
        ),
    ]
}

/// Label pairs for a series.
fn labels(pairs: Vec<(&str, String)>) -> Vec<LabelPair> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value);
            pair
        })
        .collect()
}

/// A counter or gauge family read at scrape time: one series per row.
fn family<'a>(
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Vec<(&'a str, String)>, u64)>,
) -> MetricFamily {
    let metrics = rows
        .into_iter()
        .map(|(pairs, value)| {
            let mut metric = Metric::default();
            metric.set_label(labels(pairs));
            if kind == MetricType::GAUGE {
                let mut gauge = Gauge::default();
                gauge.set_value(value as f64);
                metric.set_gauge(gauge);
            } else {
                let mut counter = Counter::default();
                counter.set_value(value as f64);
                metric.set_counter(counter);
            }
            metric
        })
        .collect();
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_durations_fill_cumulative_buckets() {
        let m = Metrics::default();
        for seconds in [0.0004, 0.003, 0.004, 0.03, 12.0] {
            m.ingest_seconds.observe(seconds);
        }
        let text = m.render(None, None, &[]);
        let sample = |series: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
                .map(str::to_string)
        };
        let bucket = |le: &str| {
            sample(&format!(
                "leadgate_ingest_request_duration_seconds_bucket{{le=\"{le}\"}}"
            ))
        };
        assert_eq!(bucket("0.0005").as_deref(), Some("1"), "{text}");
        assert_eq!(bucket("0.005").as_deref(), Some("3"), "{text}");
        assert_eq!(bucket("0.05").as_deref(), Some("4"), "{text}");
        assert_eq!(bucket("10").as_deref(), Some("4"), "{text}");
        assert_eq!(bucket("+Inf").as_deref(), Some("5"), "{text}");
        assert_eq!(
            sample("leadgate_ingest_request_duration_seconds_count").as_deref(),
            Some("5")
        );
    }

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
        let text = m.render(None, None, &[]);
        assert!(text.contains("leadgate_delivery_latency_ms{priority=\"P0\",quantile=\"0.99\"}"));
        assert!(text.contains("leadgate_delivery_sla_breaches_total{priority=\"P2\"} 1"));
        let text = m.render(
            Some(&StoreCounts {
                jobs_dead: 3,
                ..Default::default()
            }),
            Some(&WriterGauges {
                cached_persons: 7,
                index_records: 1200,
                index_fingerprints: 1500,
                index_bytes: 450_000,
            }),
            &[DestinationGauges {
                destination: "hubspot".into(),
                breaker_state: 2,
                reload_failures: 4,
                paused: true,
                ..Default::default()
            }],
        );
        for line in [
            "leadgate_outbox_jobs{state=\"dead\"} 3",
            "leadgate_writer_cached_persons 7",
            "leadgate_dedupe_index_records 1200",
            "leadgate_dedupe_index_fingerprints 1500",
            "leadgate_dedupe_index_bytes 450000",
            "# TYPE leadgate_dedupe_index_bytes gauge",
            "leadgate_delivery_breaker_state{destination=\"hubspot\"} 2",
            "leadgate_plugin_reload_failures_total{destination=\"hubspot\"} 4",
            "leadgate_destination_paused{destination=\"hubspot\"} 1",
            "# TYPE leadgate_delivery_latency_ms summary",
            "leadgate_delivery_latency_ms_count{priority=\"P0\"} 100",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
