//! Ingest load generator: how many leads per second leadgate acknowledges
//! durably, next to the machine's ceiling for the same HTTP traffic.
//!
//! Four scenarios, all in this process, all on loopback, with concurrent
//! reqwest posters:
//!
//! 1. a bare axum 0.8 endpoint that parses the JSON body and answers 202
//!    (the ceiling of this machine for this traffic);
//! 2. the real host (SQLite, WAL, synchronous FULL) with no destinations,
//!    one lead per request;
//! 3. the same host, 100 leads per request;
//! 4. the host with the HubSpot adapter delivering to the CRM simulator,
//!    from the first post until the outbox is drained;
//! 5. steady state: a constant offered load (`LEADGATE_BENCH_STEADY_RATE`
//!    leads/s, default 10,000, for `LEADGATE_BENCH_STEADY_SECS`, default 10)
//!    of 10% P0 / 30% P1 / 60% P2 leads through the HubSpot adapter into the
//!    simulator with its limits lifted: leads/s, lead-to-CRM p50/p95/p99 per
//!    class from the host's own histograms, SLA breaches, 429s;
//! 6. the same at `LEADGATE_BENCH_REAL_RATE` (default 800 leads/s) against
//!    HubSpot's real limits (190 requests per 10 s): the limiter must keep
//!    the simulator's 429 count at 0. `LEADGATE_BENCH_READBACK` sets the
//!    adapter's read-back share (default 100%);
//! 7. each OAuth CRM adapter (Salesforce, Zoho CRM, Dynamics 365) beside
//!    HubSpot's in the same run: `LEADGATE_BENCH_CRM_LEADS` (default 10,000)
//!    leads posted at once, leads/s from the first post until every one is
//!    in the simulated CRM, the CRM's and the destination's limits raised
//!    (scenario `crms`).
//!
//! Scenarios 2–4 run with encryption at rest on and off, side by side
//! (`LEADGATE_BENCH_ENCRYPTION=on|off` runs one), on SQLite
//! (`LEADGATE_BENCH_STORE=postgres` runs them on PostgreSQL instead,
//! `both` side by side).
//!
//! `cargo bench -p leadgate --bench ingest`. Environment knobs:
//! `LEADGATE_BENCH_SECS` (measured seconds per timed scenario, default 5),
//! `LEADGATE_BENCH_WARMUP_SECS` (default 1), `LEADGATE_BENCH_CONCURRENCY`
//! (single-lead posters, default 64), `LEADGATE_BENCH_BATCH_CONCURRENCY`
//! (batch posters, default 8), `LEADGATE_BENCH_BATCH` (leads per batch,
//! default 100), `LEADGATE_BENCH_E2E_LEADS` (default 50,000),
//! `LEADGATE_BENCH_DRAIN_SECS` (longest wait for the outbox to drain,
//! default 60), `LEADGATE_BENCH_DURABILITY` (`full` or `normal`, default
//! `full`), `LEADGATE_BENCH_DELIVERY_CONCURRENCY` (the host's
//! `[delivery] concurrency`, default the host's own), `LEADGATE_BENCH_ONLY` (comma-separated subset of
//! `bare,single,batch,e2e,steady,steady-real,crms`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::StatusCode;
use hdrhistogram::Histogram;
use leadgate::app::RunningHost;
use leadgate::config::Config;

/// The allocator the `leadgate` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const API_KEY: &str = "bench-source-key-0001";

#[path = "support/bare.rs"]
mod bare;
#[path = "support/leads.rs"]
mod leads;
use leads::{AREAS, PER_AREA, phone_of, write_lead};
/// Every lead of the run gets the next number: unique email, unique phone.
static NEXT_LEAD: AtomicU64 = AtomicU64::new(0);

fn body(leads: usize) -> String {
    let start = NEXT_LEAD.fetch_add(leads as u64, Ordering::Relaxed);
    let mut s = String::with_capacity(leads * 480 + 2);
    if leads == 1 {
        write_lead(&mut s, start);
    } else {
        s.push('[');
        for i in 0..leads as u64 {
            if i > 0 {
                s.push(',');
            }
            write_lead(&mut s, start + i);
        }
        s.push(']');
    }
    s
}

#[derive(Clone)]
struct Settings {
    warmup: Duration,
    measure: Duration,
    concurrency: usize,
    batch_concurrency: usize,
    batch: usize,
    e2e_leads: usize,
    drain_timeout: Duration,
    /// The single, batch and end-to-end scenarios' variants: encryption at
    /// rest on, off, or both side by side (`LEADGATE_BENCH_ENCRYPTION`), on
    /// SQLite, PostgreSQL or both (`LEADGATE_BENCH_STORE`).
    variants: Vec<Variant>,
    only: Option<Vec<String>>,
    steady_rate: f64,
    steady_secs: f64,
    real_rate: f64,
    readback_percent: u32,
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            warmup: Duration::from_secs_f64(env_f64("LEADGATE_BENCH_WARMUP_SECS", 1.0)),
            measure: Duration::from_secs_f64(env_f64("LEADGATE_BENCH_SECS", 5.0).max(0.1)),
            concurrency: env_f64("LEADGATE_BENCH_CONCURRENCY", 64.0).max(1.0) as usize,
            batch_concurrency: env_f64("LEADGATE_BENCH_BATCH_CONCURRENCY", 8.0).max(1.0) as usize,
            batch: (env_f64("LEADGATE_BENCH_BATCH", 100.0).max(2.0) as usize).min(10_000),
            e2e_leads: env_f64("LEADGATE_BENCH_E2E_LEADS", 50_000.0).max(100.0) as usize,
            drain_timeout: Duration::from_secs_f64(env_f64("LEADGATE_BENCH_DRAIN_SECS", 60.0)),
            steady_rate: env_f64("LEADGATE_BENCH_STEADY_RATE", 10_000.0).max(100.0),
            steady_secs: env_f64("LEADGATE_BENCH_STEADY_SECS", 10.0).max(1.0),
            real_rate: env_f64("LEADGATE_BENCH_REAL_RATE", 800.0).max(10.0),
            readback_percent: env_f64("LEADGATE_BENCH_READBACK", 100.0).clamp(0.0, 100.0) as u32,
            variants: {
                let sealing = match std::env::var("LEADGATE_BENCH_ENCRYPTION").as_deref() {
                    Ok("on") => vec![true],
                    Ok("off") => vec![false],
                    _ => vec![true, false],
                };
                let stores = match std::env::var("LEADGATE_BENCH_STORE").as_deref() {
                    Ok("postgres") => vec![true],
                    Ok("both") => vec![false, true],
                    _ => vec![false],
                };
                stores
                    .iter()
                    .flat_map(|&postgres| {
                        sealing
                            .iter()
                            .map(move |&sealed| Variant { sealed, postgres })
                    })
                    .collect()
            },
            only: std::env::var("LEADGATE_BENCH_ONLY")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        }
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}

/// What the posters expect back.
#[derive(Clone, Copy)]
enum Expect {
    /// Any 202.
    Accepted,
    /// A 202 whose answer says every lead was accepted, none duplicate.
    AllAccepted,
}

/// What one load run measured.
struct Load {
    /// Requests answered as expected within the measured window.
    requests: u64,
    leads: u64,
    /// Seconds the figures cover.
    seconds: f64,
    /// Acknowledgement latency per request, microseconds.
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// Leads posted in all (warm-up included) and answered as expected.
    leads_acked_total: u64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn lead_rate(&self) -> f64 {
        self.leads as f64 / self.seconds
    }
    fn p(&self, q: f64) -> Duration {
        Duration::from_micros(self.hist.value_at_quantile(q))
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn client() -> anyhow::Result<reqwest::Client> {
    leadgate_runtime::outbound::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Posts one request; `Ok(())` when it was answered as expected.
async fn post(
    client: &reqwest::Client,
    url: &str,
    leads: usize,
    expect: Expect,
) -> Result<(), String> {
    let response = client
        .post(url)
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(body(leads))
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let answer = response
        .bytes()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status != StatusCode::ACCEPTED {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        ));
    }
    if let Expect::AllAccepted = expect {
        // The answer's first fields, in the order the host writes them.
        let want = format!("{{\"accepted\":{leads},\"duplicates\":0,\"rejected\":0,");
        if !answer.starts_with(want.as_bytes()) {
            return Err(format!(
                "unexpected answer: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            ));
        }
    }
    Ok(())
}

/// Runs `concurrency` posters for warm-up + measure; counts and times the
/// requests answered within the measured window.
async fn timed_load(
    url: &str,
    concurrency: usize,
    leads_per_request: usize,
    expect: Expect,
    s: &Settings,
) -> anyhow::Result<Load> {
    let client = client()?;
    let url: Arc<str> = url.into();
    let start = Instant::now();
    let window_start = start + s.warmup;
    let end = window_start + s.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        tasks.spawn(async move {
            let mut hist = new_hist();
            let (mut requests, mut errors, mut acked) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let outcome = post(&client, &url, leads_per_request, expect).await;
                let done = Instant::now();
                match outcome {
                    Ok(()) => {
                        acked += leads_per_request as u64;
                        if done >= window_start && done <= end {
                            requests += 1;
                            hist.saturating_record((done - sent).as_micros() as u64);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                        // Do not spin on a broken server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (hist, requests, errors, acked, first_error)
        });
    }
    let mut load = Load {
        requests: 0,
        leads: 0,
        seconds: s.measure.as_secs_f64(),
        hist: new_hist(),
        errors: 0,
        first_error: None,
        leads_acked_total: 0,
    };
    while let Some(joined) = tasks.join_next().await {
        let (hist, requests, errors, acked, first_error) = joined?;
        load.hist.add(&hist).context("merging histograms")?;
        load.requests += requests;
        load.errors += errors;
        load.leads_acked_total += acked;
        if load.first_error.is_none() {
            load.first_error = first_error;
        }
    }
    load.leads = load.requests * leads_per_request as u64;
    Ok(load)
}

// ---------------------------------------------------------------------------
// Scenario 1: the bare endpoint.

async fn bare(s: &Settings) -> anyhow::Result<Load> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Served the way the host serves (plain `axum::serve`), so the two
    // differ only in what the handler does.
    let app = axum::Router::new().route("/v1/leads", axum::routing::post(bare::accept));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let load = timed_load(
        &format!("http://{addr}/v1/leads"),
        s.concurrency,
        1,
        Expect::Accepted,
        s,
    )
    .await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    load
}

// ---------------------------------------------------------------------------
// Scenarios 2 and 3: durable ingest, no destinations.

struct Host {
    host: RunningHost,
    dir: tempfile::TempDir,
}

/// How a scenario's host keeps its store.
#[derive(Clone, Copy, Debug)]
struct Variant {
    /// Encryption at rest on.
    sealed: bool,
    /// PostgreSQL (a schema of its own on `LEADGATE_TEST_POSTGRES`, default
    /// `postgres://root@127.0.0.1:5432/test`) instead of SQLite.
    postgres: bool,
}

impl Variant {
    const SQLITE_SEALED: Variant = Variant {
        sealed: true,
        postgres: false,
    };

    /// The scenario's label.
    fn label(self) -> String {
        format!(
            ", {}{}",
            if self.sealed { "sealed" } else { "plain" },
            if self.postgres { ", PostgreSQL" } else { "" }
        )
    }

    /// The `[store]` section (and what a PostgreSQL store needs beside it)
    /// for a host whose files go in `dir`.
    async fn store_toml(self, dir: &std::path::Path) -> anyhow::Result<String> {
        let durability = durability();
        let url = if self.postgres {
            leadgate::testing::TestSchema::create("lgbench")
                .await
                .map_err(anyhow::Error::msg)?
                .store_url(&leadgate::testing::postgres_url())
        } else {
            format!("sqlite://{}", dir.join("leadgate.db").display())
        };
        Ok(format!(
            "[store]\nurl = \"{url}\"\ndurability = \"{durability}\"\n\
             [store.encryption]\nenabled = {}\nkey_file = \"{}\"\n\
             [auth]\ntoken_file = \"{}\"\n",
            self.sealed,
            dir.join("keys").display(),
            dir.join("admin-token").display(),
        ))
    }
}

/// `full` (fsync per commit, the default) or `normal`.
fn durability() -> String {
    std::env::var("LEADGATE_BENCH_DURABILITY").unwrap_or_else(|_| "full".into())
}

async fn start_host(destination: Option<&str>, variant: Variant) -> anyhow::Result<Host> {
    start_host_with(destination, 100, true, variant).await
}

/// `lifted`: the account's HubSpot quota is raised to match a simulator
/// whose limits are lifted (otherwise the host holds itself to HubSpot's
/// 190 requests per 10 s, as it should).
async fn start_host_with(
    destination: Option<&str>,
    readback: u32,
    lifted: bool,
    variant: Variant,
) -> anyhow::Result<Host> {
    let dir = tempfile::Builder::new()
        .prefix("leadgate-bench-")
        .tempdir_in(std::env::temp_dir())?;
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\
         [sources.bench]\napi_key = \"{API_KEY}\"\ndefault_region = \"US\"\n",
        variant.store_toml(dir.path()).await?
    );
    if let Ok(n) = std::env::var("LEADGATE_BENCH_DELIVERY_CONCURRENCY") {
        toml.push_str(&format!("[delivery]\nconcurrency = {n}\n"));
    }
    if let Some(base_url) = destination {
        toml.push_str(&format!(
            "[destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\n\
             allowed_hosts = [\"127.0.0.1\"]\n\
             [destinations.hubspot.config]\nbase-url = \"{base_url}\"\nreadback-percent = \"{readback}\"\n\
             [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\n"
        ));
        if lifted {
            toml.push_str(
                "[destinations.hubspot.rate_limits]\n\
                 burst = { max_requests = 1000000000, window_ms = 10000 }\n\
                 daily = { max_requests = 1000000000, window_ms = 86400000 }\n",
            );
        }
    }
    let config = Config::from_toml(&toml)?;
    let host = leadgate::app::start(config).await?;
    Ok(Host { host, dir })
}

async fn stop_host(h: Host) -> anyhow::Result<()> {
    let Host { host, dir } = h;
    match tokio::time::timeout(Duration::from_secs(20), host.shutdown()).await {
        Ok(r) => r?,
        Err(_) => eprintln!("warning: the host did not shut down within 20 s"),
    }
    drop(dir);
    Ok(())
}

async fn durable(
    s: &Settings,
    concurrency: usize,
    leads: usize,
    variant: Variant,
) -> anyhow::Result<Load> {
    let h = start_host(None, variant).await?;
    let url = format!("{}/v1/leads", h.host.url());
    let load = timed_load(&url, concurrency, leads, Expect::AllAccepted, s).await;
    let counts = h.host.store.counts().await;
    stop_host(h).await?;
    let load = load?;
    let counts = counts?;
    if counts.leads != load.leads_acked_total {
        eprintln!(
            "warning: the store holds {} leads but {} were acknowledged",
            counts.leads, load.leads_acked_total
        );
    }
    Ok(load)
}

// ---------------------------------------------------------------------------
// Scenario 4: end to end.

struct EndToEnd {
    leads: u64,
    requests: u64,
    hist: Histogram<u64>,
    ingest_secs: f64,
    /// Contacts in the CRM when the last post was acknowledged.
    contacts_at_ingest_end: usize,
    /// Until the simulator held every contact.
    crm_secs: f64,
    /// Until `wait_until_drained` confirmed the drain.
    total_secs: f64,
    /// How long one `Store::counts` (what `wait_until_drained` polls) takes
    /// once the store holds the run's leads.
    counts_query: Duration,
    drained: bool,
    contacts: usize,
    delivered: u64,
    dead: u64,
    sim_requests: u64,
    sim_429: u64,
    sim_5xx: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn end_to_end(s: &Settings, variant: Variant) -> anyhow::Result<EndToEnd> {
    let sim = leadgate_sim::Simulator::start(leadgate_sim::SimConfig {
        burst_limit: u32::MAX / 2,
        daily_limit: u32::MAX / 2,
        ..Default::default()
    })
    .await?;
    let h = start_host(Some(&sim.base_url()), variant).await?;
    let url: Arc<str> = format!("{}/v1/leads", h.host.url()).into();
    let client = client()?;
    let batches = s.e2e_leads.div_ceil(s.batch);
    let next_batch = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.batch_concurrency {
        let (client, url, next_batch) = (client.clone(), url.clone(), next_batch.clone());
        let (batch, total) = (s.batch, s.e2e_leads);
        tasks.spawn(async move {
            let mut hist = new_hist();
            let (mut leads, mut requests, mut errors) = (0u64, 0u64, 0u64);
            let mut first_error = None;
            loop {
                let i = next_batch.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    break;
                }
                let n = batch.min(total - i * batch);
                let sent = Instant::now();
                match post(&client, &url, n, Expect::AllAccepted).await {
                    Ok(()) => {
                        hist.saturating_record(sent.elapsed().as_micros() as u64);
                        leads += n as u64;
                        requests += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (hist, leads, requests, errors, first_error)
        });
    }
    let mut e = EndToEnd {
        leads: 0,
        requests: 0,
        hist: new_hist(),
        ingest_secs: 0.0,
        contacts_at_ingest_end: 0,
        crm_secs: 0.0,
        total_secs: 0.0,
        counts_query: Duration::ZERO,
        drained: false,
        contacts: 0,
        delivered: 0,
        dead: 0,
        sim_requests: 0,
        sim_429: 0,
        sim_5xx: 0,
        errors: 0,
        first_error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        let (hist, leads, requests, errors, first_error) = joined?;
        e.hist.add(&hist).context("merging histograms")?;
        e.leads += leads;
        e.requests += requests;
        e.errors += errors;
        if e.first_error.is_none() {
            e.first_error = first_error;
        }
    }
    e.ingest_secs = started.elapsed().as_secs_f64();
    e.contacts_at_ingest_end = sim.handle().contact_count();
    // Watch the simulator (in memory, cheap) until every contact is there,
    // then confirm with `wait_until_drained`. Polling the host's counts all
    // along would slow the drain: `Store::counts` scans every lead row.
    let handle = sim.handle();
    let deadline = Instant::now() + s.drain_timeout;
    let mut last_store_check = Instant::now();
    while handle.contact_count() < e.leads as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // A dead-lettered lead would never reach the CRM: look at the
        // outbox itself now and then.
        if last_store_check.elapsed() > Duration::from_secs(2) {
            last_store_check = Instant::now();
            let c = h.host.store.counts().await?;
            if c.jobs_pending == 0 && c.jobs_leased == 0 {
                break;
            }
        }
    }
    e.crm_secs = started.elapsed().as_secs_f64();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let (drained, counts) = h
        .host
        .wait_until_drained(remaining.max(Duration::from_secs(1)))
        .await?;
    e.total_secs = started.elapsed().as_secs_f64();
    let probe = Instant::now();
    h.host.store.counts().await?;
    e.counts_query = probe.elapsed();
    e.drained = drained;
    e.delivered = counts.jobs_delivered;
    e.dead = counts.jobs_dead;
    let handle = sim.handle();
    let stats = handle.stats();
    e.contacts = handle.contact_count();
    e.sim_requests = stats.requests_total;
    e.sim_429 = stats.rate_limited;
    e.sim_5xx = stats.server_errors;
    stop_host(h).await?;
    sim.shutdown().await;
    Ok(e)
}

/// What a run through one CRM adapter measured.
struct Through {
    secs: f64,
    records: usize,
    dead: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

/// The destination for `crm` (HubSpot with a static token, the others
/// with the host's OAuth token from the simulated token endpoints), its
/// quota raised to match the simulator's.
fn crm_destination(crm: &str) -> String {
    let oauth = |path: &str, grant: &str| {
        format!(
            "[destinations.{crm}.oauth]\ngrant = \"{grant}\"\ntoken_url = \"{{sim}}{path}\"\n\
             client_id = \"{}\"\nclient_secret = \"{}\"\n",
            leadgate_sim::DEFAULT_CLIENT_ID,
            leadgate_sim::DEFAULT_CLIENT_SECRET
        )
    };
    let refresh = format!(
        "refresh_token = \"{}\"\n",
        leadgate_sim::DEFAULT_REFRESH_TOKEN
    );
    let head = format!(
        "[destinations.{crm}]\nadapter = \"{crm}\"\nmapping = \"{crm}.yaml\"\nallowed_hosts = [\"127.0.0.1\"]\n"
    );
    let raised = format!(
        "[destinations.{crm}.rate_limits]\nburst = {{ max_requests = 1000000000, window_ms = 10000 }}\n\
         daily = {{ max_requests = 1000000000, window_ms = 86400000 }}\n"
    );
    let body = match crm {
        "hubspot" => "[destinations.hubspot.config]\nbase-url = \"{sim}\"\n\
                      [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\n"
            .to_string(),
        "salesforce" => oauth("/services/oauth2/token", "refresh_token") + &refresh,
        "zoho" => oauth("/oauth/v2/token", "refresh_token") + &refresh,
        _ => {
            format!("[destinations.{crm}.config]\norg-url = \"{{sim}}\"\n")
                + &oauth("/bench-tenant/oauth2/v2.0/token", "client_credentials")
                + "scope = \"{sim}/.default\"\n"
        }
    };
    head + &body + &raised
}

/// Records the simulated `crm` holds.
fn crm_records(h: &leadgate_sim::SimHandle, crm: &str) -> usize {
    match crm {
        "hubspot" => h.contact_count(),
        "salesforce" => h.salesforce_records("Lead").len(),
        "zoho" => h.zoho_records("Leads").len(),
        _ => h.dataverse_records("leads").len(),
    }
}

/// `leads` distinct leads posted at once (batches of `s.batch`, `s.batch_concurrency`
/// posters) into a host whose only destination is `crm`, until all are in
/// the simulated CRM.
async fn through_crm(s: &Settings, crm: &str, leads: usize) -> anyhow::Result<Through> {
    let mut sim_config = leadgate_sim::SimConfig {
        burst_limit: u32::MAX / 2,
        daily_limit: u32::MAX / 2,
        salesforce_daily_limit: u32::MAX / 2,
        ..Default::default()
    };
    sim_config.zoho.daily_credits = u32::MAX / 2;
    sim_config.zoho.concurrency = 1_000;
    sim_config.dataverse.requests = u32::MAX / 2;
    sim_config.dataverse.concurrent = 1_000;
    sim_config.dataverse.execution_ms = u64::MAX / 4;
    let sim = leadgate_sim::Simulator::start(sim_config).await?;
    let dir = tempfile::Builder::new()
        .prefix("leadgate-bench-")
        .tempdir_in(std::env::temp_dir())?;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://{}\"\ndurability = \"{}\"\n\
         [sources.bench]\napi_key = \"{API_KEY}\"\ndefault_region = \"US\"\n",
        dir.path().join("leadgate.db").display(),
        durability()
    ) + &crm_destination(crm).replace("{sim}", &sim.base_url());
    let host = leadgate::app::start(Config::from_toml(&toml)?).await?;
    let h = Host { host, dir };
    let url: Arc<str> = format!("{}/v1/leads", h.host.url()).into();
    let client = client()?;
    let batches = leads.div_ceil(s.batch);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.batch_concurrency {
        let (client, url, next, batch) = (client.clone(), url.clone(), next.clone(), s.batch);
        tasks.spawn(async move {
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= batches {
                    break;
                }
                let n = batch.min(leads - i * batch);
                if let Err(e) = post(&client, &url, n, Expect::AllAccepted).await {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (errors, first_error)
        });
    }
    let (mut errors, mut first_error) = (0u64, None);
    while let Some(joined) = tasks.join_next().await {
        let (e, first) = joined?;
        errors += e;
        if first_error.is_none() {
            first_error = first;
        }
    }
    let handle = sim.handle();
    let deadline = Instant::now() + s.drain_timeout;
    while crm_records(&handle, crm) < leads && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (_, counts) = h.host.wait_until_drained(Duration::from_secs(5)).await?;
    let out = Through {
        secs,
        records: crm_records(&handle, crm),
        dead: counts.jobs_dead,
        requests: handle.stats().requests_total,
        errors,
        first_error,
    };
    stop_host(h).await?;
    sim.shutdown().await;
    Ok(out)
}

/// What a steady-state run measured.
struct Steady {
    offered: f64,
    acknowledged: u64,
    secs: f64,
    delivered_in_window: usize,
    drained_after: f64,
    contacts: usize,
    sim_429: u64,
    sim_requests: u64,
    latency: Vec<leadgate::metrics::LatencySummary>,
    errors: u64,
    first_error: Option<String>,
}

/// A constant offered load (batches of `s.batch` at `rate` leads/s) for
/// `s.steady_secs`, through the HubSpot adapter into the simulator: with
/// its limits lifted (`real == false`) or with HubSpot's real ones. The
/// host's own per-class histograms give lead-to-CRM latency.
async fn steady(s: &Settings, rate: f64, real: bool) -> anyhow::Result<Steady> {
    let sim_config = if real {
        leadgate_sim::SimConfig::default()
    } else {
        leadgate_sim::SimConfig {
            burst_limit: u32::MAX / 2,
            daily_limit: u32::MAX / 2,
            ..Default::default()
        }
    };
    let sim = leadgate_sim::Simulator::start(sim_config).await?;
    let h = start_host_with(
        Some(&sim.base_url()),
        s.readback_percent,
        !real,
        Variant::SQLITE_SEALED,
    )
    .await?;
    let url: Arc<str> = format!("{}/v1/leads", h.host.url()).into();
    let client = client()?;
    let period = Duration::from_secs_f64(s.batch as f64 / rate);
    let total_batches = (rate * s.steady_secs / s.batch as f64).ceil() as usize;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total_batches {
        ticker.tick().await;
        let (client, url, batch) = (client.clone(), url.clone(), s.batch);
        tasks.spawn(async move { post(&client, &url, batch, Expect::AllAccepted).await });
    }
    let (mut acknowledged, mut errors, mut first_error) = (0u64, 0u64, None);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(()) => acknowledged += s.batch as u64,
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let handle = sim.handle();
    let delivered_in_window = handle.contact_count();
    let (drained, _) = h.host.wait_until_drained(s.drain_timeout).await?;
    let drained_after = if drained {
        started.elapsed().as_secs_f64()
    } else {
        f64::NAN
    };
    let stats = handle.stats();
    let out = Steady {
        offered: rate,
        acknowledged,
        secs,
        delivered_in_window,
        drained_after,
        contacts: handle.contact_count(),
        sim_429: stats.rate_limited,
        sim_requests: stats.requests_total,
        latency: h.host.metrics.latency.summaries(),
        errors,
        first_error,
    };
    stop_host(h).await?;
    sim.shutdown().await;
    Ok(out)
}

fn steady_row(name: &str, s: &Settings, st: &Steady) -> Row {
    let class = |p: &str| {
        st.latency
            .iter()
            .find(|l| l.priority == p)
            .cloned()
            .unwrap_or_default()
    };
    let (p0, p1, p2) = (class("P0"), class("P1"), class("P2"));
    println!(
        "  {name}: offered {}/s, acknowledged {} leads in {:.1} s ({}/s), {} in the CRM by then,          drained after {:.1} s; {} contacts; simulator {} requests, {} 429s;          lead-to-CRM p50/p95/p99 ms: P0 {}/{}/{} (n={}), P1 {}/{}/{} (n={}), P2 {}/{}/{} (n={});          SLA breaches {}/{}/{}",
        thousands(st.offered),
        st.acknowledged,
        st.secs,
        thousands(st.acknowledged as f64 / st.secs),
        st.delivered_in_window,
        st.drained_after,
        st.contacts,
        st.sim_requests,
        st.sim_429,
        p0.p50_ms,
        p0.p95_ms,
        p0.p99_ms,
        p0.count,
        p1.p50_ms,
        p1.p95_ms,
        p1.p99_ms,
        p1.count,
        p2.p50_ms,
        p2.p95_ms,
        p2.p99_ms,
        p2.count,
        p0.sla_breaches,
        p1.sla_breaches,
        p2.sla_breaches,
    );
    Row {
        scenario: name.into(),
        rate: format!("{}/s", thousands(st.acknowledged as f64 / st.secs)),
        p50: format!("{} ms", p0.p50_ms),
        p99: format!("{} ms", p0.p99_ms),
        notes: format!(
            "steady {}/s offered, {}/batch, readback {}%: P0 lead-to-CRM (P1 p99 {} ms, P2 p99 {} ms);              {} of {} in the CRM, {} 429s{}",
            thousands(st.offered),
            s.batch,
            s.readback_percent,
            p1.p99_ms,
            p2.p99_ms,
            st.contacts,
            st.acknowledged,
            st.sim_429,
            errors_note(st.errors, &st.first_error)
        ),
    }
}

// ---------------------------------------------------------------------------
// Output.

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

struct Row {
    scenario: String,
    rate: String,
    p50: String,
    p99: String,
    notes: String,
}

fn errors_note(errors: u64, first: &Option<String>) -> String {
    if errors == 0 {
        String::new()
    } else {
        format!(
            "; {errors} FAILED requests (first: {})",
            first.as_deref().unwrap_or("?")
        )
    }
}

/// Sanity checks before anything is measured: the leads are what the
/// benchmark says they are.
fn check_leads() -> anyhow::Result<usize> {
    let region = phonenumber::country::Id::US;
    // Every area code × exchange once, with a changing line number, and
    // the edges.
    let samples: std::collections::BTreeSet<u64> = (0..AREAS.len() as u64 * 800)
        .map(|k| k * 10_000 + (k * 7_919) % 10_000)
        .chain([0, 1, 9_999, PER_AREA - 1, PER_AREA * AREAS.len() as u64 - 1])
        .collect();
    let mut seen = std::collections::HashSet::new();
    for n in samples {
        let raw = phone_of(n);
        let e164 = leadgate::pipeline::normalize::normalize_phone(&raw, Some(region))
            .map_err(|e| anyhow::anyhow!("lead {n}: phone {raw} is not valid: {}", e.message))?;
        if !seen.insert(e164.clone()) {
            bail!("phone {e164} repeats");
        }
    }
    let mut one = String::new();
    write_lead(&mut one, 1_234_567);
    let v: serde_json::Value = serde_json::from_str(&one)?;
    let email = v["email"].as_str().context("email")?;
    leadgate::pipeline::normalize::normalize_email(email)
        .map_err(|e| anyhow::anyhow!("email {email} is not valid: {}", e.message))?;
    Ok(one.len())
}

async fn run(s: Settings) -> anyhow::Result<()> {
    let lead_bytes = check_leads()?;
    println!(
        "leadgate ingest benchmark: loopback, {} CPUs, {:.0} s warm-up + {:.0} s measured per timed scenario",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.warmup.as_secs_f64(),
        s.measure.as_secs_f64()
    );
    println!(
        "lead: {lead_bytes}-byte JSON object, unique email and valid unique US phone (+1 415 NXX XXXX from a counter) per lead; \
         posters, host and simulator share this process"
    );
    let mut rows = Vec::new();
    let mut bare_rate = None;

    if s.wants("bare") {
        let l = bare(&s).await?;
        println!(
            "  bare axum: {} requests in {:.1} s, {} errors",
            l.requests, l.seconds, l.errors
        );
        bare_rate = Some(l.rate());
        rows.push(Row {
            scenario: format!("bare axum (1 lead/post, c={})", s.concurrency),
            rate: format!("{}/s", thousands(l.rate())),
            p50: ms(l.p(0.50)),
            p99: ms(l.p(0.99)),
            notes: format!(
                "parse to serde_json::Value, answer 202{}",
                errors_note(l.errors, &l.first_error)
            ),
        });
    }

    for &variant in &s.variants {
        if s.wants("single") {
            let l = durable(&s, s.concurrency, 1, variant).await?;
            println!(
                "  durable single: {} leads in {:.1} s, {} errors",
                l.leads, l.seconds, l.errors
            );
            let ratio = bare_rate
                .map(|b| format!("{:.0}% of bare; ", 100.0 * l.rate() / b))
                .unwrap_or_default();
            rows.push(Row {
                scenario: format!(
                    "durable ingest (1 lead, c={}){}",
                    s.concurrency,
                    variant.label()
                ),
                rate: format!("{}/s", thousands(l.lead_rate())),
                p50: ms(l.p(0.50)),
                p99: ms(l.p(0.99)),
                notes: format!(
                    "{ratio}{}, durability {}, no destinations{}",
                    if variant.postgres {
                        "PostgreSQL"
                    } else {
                        "SQLite WAL"
                    },
                    durability(),
                    errors_note(l.errors, &l.first_error)
                ),
            });
        }

        if s.wants("batch") {
            let l = durable(&s, s.batch_concurrency, s.batch, variant).await?;
            println!(
                "  durable batch: {} leads ({} requests) in {:.1} s, {} errors",
                l.leads, l.requests, l.seconds, l.errors
            );
            rows.push(Row {
                scenario: format!(
                    "durable ingest ({}/batch, c={}){}",
                    s.batch,
                    s.batch_concurrency,
                    variant.label()
                ),
                rate: format!("{}/s", thousands(l.lead_rate())),
                p50: ms(l.p(0.50)),
                p99: ms(l.p(0.99)),
                notes: format!(
                    "{} req/s; latency per request; durability {}; no destinations{}",
                    thousands(l.rate()),
                    durability(),
                    errors_note(l.errors, &l.first_error)
                ),
            });
        }

        if s.wants("e2e") {
            let e = end_to_end(&s, variant).await?;
            println!(
                "  end to end: {} leads acknowledged in {:.2} s ({} leads/s; {} contacts delivered meanwhile, {}/s), \
             all in the CRM after {:.2} s (delivery alone: {}/s), outbox {} after {:.2} s \
             (one Store::counts: {}); {} contacts, {} jobs delivered, {} dead; \
             simulator: {} requests, {} 429s, {} 5xx",
                e.leads,
                e.ingest_secs,
                thousands(e.leads as f64 / e.ingest_secs),
                e.contacts_at_ingest_end,
                thousands(e.contacts_at_ingest_end as f64 / e.ingest_secs),
                e.crm_secs,
                thousands(
                    (e.leads as f64 - e.contacts_at_ingest_end as f64).max(0.0)
                        / (e.crm_secs - e.ingest_secs).max(1e-3)
                ),
                if e.drained { "drained" } else { "NOT drained" },
                e.total_secs,
                ms(e.counts_query),
                e.contacts,
                e.delivered,
                e.dead,
                e.sim_requests,
                e.sim_429,
                e.sim_5xx
            );
            let verdict = if e.drained && e.contacts as u64 == e.leads && e.errors == 0 {
                "ok"
            } else {
                "MISMATCH"
            };
            rows.push(Row {
                scenario: format!("end-to-end to simulator{}", variant.label()),
                rate: format!("{}/s", thousands(e.leads as f64 / e.total_secs)),
                p50: ms(Duration::from_micros(e.hist.value_at_quantile(0.50))),
                p99: ms(Duration::from_micros(e.hist.value_at_quantile(0.99))),
                notes: format!(
                    "{} leads, {}/batch, c={}, first post to drain {:.1} s (ingest {:.1} s); \
                 {} contacts ({verdict}), {} 429s; sim rate limit lifted{}",
                    thousands(e.leads as f64),
                    s.batch,
                    s.batch_concurrency,
                    e.total_secs,
                    e.ingest_secs,
                    thousands(e.contacts as f64),
                    e.sim_429,
                    errors_note(e.errors, &e.first_error)
                ),
            });
        }
    }

    if s.wants("crms") {
        let leads = env_f64("LEADGATE_BENCH_CRM_LEADS", 10_000.0).max(100.0) as usize;
        for crm in ["hubspot", "salesforce", "zoho", "dynamics"] {
            let t = through_crm(&s, crm, leads).await?;
            let verdict = if t.records == leads && t.dead == 0 && t.errors == 0 {
                "ok"
            } else {
                "MISMATCH"
            };
            rows.push(Row {
                scenario: format!("into {crm} (limits raised)"),
                rate: format!("{}/s", thousands(leads as f64 / t.secs)),
                p50: "-".into(),
                p99: "-".into(),
                notes: format!(
                    "{} leads, first post to the last record in the CRM {:.1} s; {} records ({verdict}), \
                     {} dead; {} CRM requests{}",
                    thousands(leads as f64),
                    t.secs,
                    thousands(t.records as f64),
                    t.dead,
                    thousands(t.requests as f64),
                    errors_note(t.errors, &t.first_error)
                ),
            });
        }
    }

    if s.wants("steady") {
        let st = steady(&s, s.steady_rate, false).await?;
        rows.push(steady_row("steady state (limits lifted)", &s, &st));
    }

    if s.wants("steady-real") {
        let st = steady(&s, s.real_rate, true).await?;
        rows.push(steady_row("steady state (HubSpot's limits)", &s, &st));
    }

    println!();
    println!(
        "{:<34} {:>14} {:>9} {:>9}   notes",
        "scenario", "rate", "p50", "p99"
    );
    for r in &rows {
        println!(
            "{:<34} {:>14} {:>9} {:>9}   {}",
            r.scenario, r.rate, r.p50, r.p99, r.notes
        );
    }
    println!(
        "(rates of the durable and end-to-end rows are leads/s; p50/p99 are per request, \
         from send to the 202)"
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter or other flags are ignored.
    let settings = Settings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(leadgate::allocator::on_worker_park)
        .build()?;
    let result = rt.block_on(run(settings));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}
