//! Dedupe decisions with 10k, 100k and 1M leads indexed: decisions/s
//! (criterion), p99 latency (hdrhistogram over 20,000 decisions) and
//! memory per indexed lead (index estimate and resident-set growth).
//!
//! Two workloads: the labelled corpus (people and their duplicates, with
//! typos, nicknames and missing fields), and full blocks: the ingest
//! bench's leads (`support/leads.rs`: distinct people among 256 names,
//! each at its own look-alike company, in one city), so that every lead has
//! `max_candidates` candidates to compare (the matcher's worst case; the
//! one a slower comparison shows first).
//!
//! Then ten erasures (`Deduper::forget_person`) in the full-block index,
//! each timed.
//!
//! `LEADGATE_BENCH_SIZES=10000,100000` limits the sizes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use leadgate::pipeline::dedupe::corpus::prepared;
use leadgate::pipeline::dedupe::{DedupeConfig, Deduper, Features, fingerprints};
use leadgate::pipeline::normalize::{NormalizeOptions, normalize};

#[path = "support/leads.rs"]
mod leads;

/// Lead `n` of the full-block workload: the ingest bench's lead `n`.
fn namesake(n: u64, cfg: &DedupeConfig) -> (String, Vec<String>, Features) {
    let mut json = String::new();
    leads::write_lead(&mut json, n);
    let lead: serde_json::Value = serde_json::from_str(&json).expect("the bench's lead is JSON");
    let opts = NormalizeOptions::with_region(phonenumber::country::Id::US).without_acceptance();
    let lead = normalize(&lead, &opts).expect("a valid lead");
    (
        format!("n{n}"),
        fingerprints(&lead),
        Features::from_lead(&lead, cfg, 0),
    )
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn build(size: usize, cfg: &DedupeConfig) -> Deduper {
    let mut d = Deduper::new(cfg.clone());
    let mut chunk = 0u64;
    while d.len() < size {
        // About 2.2 leads per person.
        for (id, fps, f) in prepared(1000 + chunk, 4_500, &format!("c{chunk}-"), cfg) {
            if d.len() >= size {
                break;
            }
            d.decide(&id, "bench", &fps, f);
        }
        chunk += 1;
    }
    d
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let sizes: Vec<usize> = std::env::var("LEADGATE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let cfg = DedupeConfig::default();
    let queries = prepared(7, 9_000, "q-", &cfg);
    for size in sizes {
        let rss0 = rss_bytes();
        let t = Instant::now();
        let mut d = build(size, &cfg);
        let built = t.elapsed();
        let rss1 = rss_bytes();
        // p99 over 20,000 decisions (each also indexes its lead).
        let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        let t = Instant::now();
        for (i, (id, fps, f)) in queries.iter().cycle().take(20_000).enumerate() {
            let start = Instant::now();
            let v = d.decide(&format!("{id}-{i}"), "bench", fps, f.clone());
            black_box(&v);
            hist.record(start.elapsed().as_nanos() as u64).ok();
        }
        let per_s = 20_000.0 / t.elapsed().as_secs_f64();
        println!(
            "dedupe/{size}: built in {:.1} s; {:.0} decisions/s; p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; \
             index ≈ {:.0} B/lead (estimate), RSS growth {:.0} B/lead",
            built.as_secs_f64(),
            per_s,
            hist.value_at_quantile(0.50) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.max() as f64 / 1000.0,
            d.approx_bytes() as f64 / d.len() as f64,
            rss1.saturating_sub(rss0) as f64 / size as f64,
        );
        let mut group = c.benchmark_group("dedupe");
        group.throughput(Throughput::Elements(1));
        let mut i = 0usize;
        group.bench_function(format!("decide/{size}"), |b| {
            b.iter(|| {
                let (id, fps, f) = &queries[i % queries.len()];
                i += 1;
                black_box(d.decide(id, "bench", fps, f.clone()))
            })
        });
        group.finish();
        drop(d);

        // Full blocks: every decision compares `max_candidates` namesakes.
        // Timed in one pass: each lead is new only once (criterion's
        // repetitions would find it by its fingerprints).
        let mut d = Deduper::new(cfg.clone());
        for n in 0..size as u64 {
            let (id, fps, f) = namesake(n, &cfg);
            d.decide(&id, "bench", &fps, f);
        }
        let namesakes: Vec<_> = (0..20_000)
            .map(|i| namesake(size as u64 + i, &cfg))
            .collect();
        let t = Instant::now();
        for (id, fps, f) in namesakes {
            black_box(d.decide(&id, "bench", &fps, f));
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "dedupe/{size}, full blocks: {:.0} decisions/s ({:.1} µs each)",
            20_000.0 / secs,
            secs * 1e6 / 20_000.0,
        );

        // Erasures: ten persons forgotten, from the oldest lead to the
        // newest, each timed (the writer holds every lead meanwhile).
        let mut times = Vec::new();
        for k in 0..10u64 {
            let (id, _, _) = namesake(k * (size as u64 / 10), &cfg);
            let t = Instant::now();
            let dropped = d.forget_person(&id);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(dropped, 1, "{id}");
        }
        times.sort_by(f64::total_cmp);
        println!(
            "dedupe/{size}, full blocks: forgetting a person took {:.1} ms (median of 10), {:.1} ms at most",
            times[5], times[9],
        );
    }
    c.final_summary();
}
