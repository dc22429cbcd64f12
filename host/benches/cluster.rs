//! Several hosts as several processes: what a cluster of `leadgate serve`
//! does on this machine, with each process's CPU.
//!
//! 1. **hosts**: end-to-end leads/s with 1, 2 and 3 hosts on one PostgreSQL
//!    schema, and one host on SQLite beside them: `LEADGATE_BENCH_CLUSTER_LEADS`
//!    leads (default 20,000; one in five a second copy of a person) posted
//!    in batches of 100 by 8 posters spread over the hosts, through the
//!    HubSpot adapter into the CRM simulator (in this process, its limits
//!    and the destination's lifted), from the first post until the store
//!    holds no pending or leased job. CPU seconds of each host, of the
//!    PostgreSQL server's processes, of the NATS server, and of this
//!    process (simulator and posters).
//! 2. **nats**: NATS JetStream ingest into the store: one host (SQLite, and
//!    PostgreSQL) consuming a stream while this process publishes
//!    `LEADGATE_BENCH_NATS_LEADS` leads (default 200,000) as messages of
//!    `LEADGATE_BENCH_NATS_MESSAGE` leads (default 100), publishing
//!    asynchronously with acknowledgements awaited 256 at a time; leads/s
//!    from the first publish until the store holds them all. Beside it, the
//!    same leads posted over HTTP (batches of 100, 8 posters) to the same
//!    kind of host: the reference.
//!
//! `cargo bench -p leadgate --bench cluster`; `LEADGATE_BENCH_ONLY=hosts`
//! or `nats` runs one. It needs PostgreSQL (`LEADGATE_TEST_POSTGRES`,
//! default `postgres://root@127.0.0.1:5432/test`) and NATS
//! (`LEADGATE_TEST_NATS`, default `nats://127.0.0.1:4222`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

const API_KEY: &str = "bench-cluster-key-000001";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) a process has used, from `/proc`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf with a valid name.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU seconds of every process whose command starts with `name`.
fn server_cpu(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with(name))
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// A store for one run: a fresh PostgreSQL schema or an SQLite file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The store URL (an SQLite file in `dir`, or a fresh schema).
    async fn url(self, dir: &Path) -> anyhow::Result<String> {
        Ok(match self {
            Backend::Sqlite => format!("sqlite://{}", dir.join("leadgate.db").display()),
            Backend::Postgres => leadgate::testing::TestSchema::create("lgbench")
                .await
                .map_err(anyhow::Error::msg)?
                .store_url(&leadgate::testing::postgres_url()),
        })
    }
}

/// `leadgate serve` processes sharing one store.
struct Cluster {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    urls: Vec<String>,
    token: String,
}

impl Cluster {
    /// Starts `n` hosts on `backend`, with `extra` TOML added to each
    /// configuration; one after the other (the first makes the keys and
    /// the admin token).
    async fn start(n: usize, backend: Backend, extra: &str) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("leadgate-bench-cluster-")
            .tempdir()?;
        let store = backend.url(dir.path()).await?;
        let client = reqwest::Client::new();
        let mut cluster = Cluster {
            children: Vec::new(),
            urls: Vec::new(),
            token: String::new(),
            dir,
        };
        for i in 0..n {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let config = cluster.dir.path().join(format!("host{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\n\
                     [store]\nurl = \"{store}\"\n\
                     [store.encryption]\nkey_file = \"{keys}\"\n\
                     [auth]\ntoken_file = \"{token}\"\n\
                     [plugins]\ncache_dir = \"{cache}\"\nhot_reload = false\n\
                     [sources.bench]\napi_key = \"{API_KEY}\"\ndefault_region = \"US\"\n{extra}",
                    keys = cluster.dir.path().join("keys").display(),
                    token = cluster.dir.path().join("admin-token").display(),
                    cache = std::env::temp_dir()
                        .join("leadgate-e2e-plugin-cache")
                        .display(),
                ),
            )?;
            let log = std::fs::File::create(cluster.dir.path().join(format!("host{i}.log")))?;
            cluster.children.push(
                Command::new(env!("CARGO_BIN_EXE_leadgate"))
                    .args(["serve", "--config"])
                    .arg(&config)
                    .env("LEADGATE_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .context("starting leadgate serve")?,
            );
            let url = format!("http://127.0.0.1:{port}");
            let started = Instant::now();
            while !client
                .get(format!("{url}/v1/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(60),
                    "host {i} did not come up (log in {})",
                    cluster.dir.path().display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            cluster.urls.push(url);
        }
        cluster.token = std::fs::read_to_string(cluster.dir.path().join("admin-token"))?
            .trim()
            .to_string();
        Ok(cluster)
    }

    fn pids(&self) -> Vec<String> {
        self.children.iter().map(|c| c.id().to_string()).collect()
    }

    async fn stats(&self, client: &reqwest::Client) -> anyhow::Result<serde_json::Value> {
        Ok(client
            .get(format!("{}/v1/stats", self.urls[0]))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const FIRST: [&str; 8] = ["Ana", "Bo", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana"];

/// Lead `n` of a run: one in five a second copy of an earlier person.
fn lead(n: usize, run: &str) -> serde_json::Value {
    let person = if n % 5 == 4 { n / 2 } else { n };
    serde_json::json!({
        "email": format!("p{person}.{run}@bench.example"),
        "first_name": FIRST[person % FIRST.len()],
        "last_name": format!("Q{}", leadgate::testing::letters(person)),
        "phone": format!("+1 415 {} {:04}", 230 + person / 10_000, person % 10_000),
        "company": if n % 5 == 4 { "Copy Co" } else { "Bench Co" },
    })
}

/// CPU seconds used during a run.
struct Cpu {
    hosts: Vec<f64>,
    postgres: f64,
    nats: f64,
    this: f64,
}

impl Cpu {
    fn now(pids: &[String]) -> Cpu {
        Cpu {
            hosts: pids.iter().map(|p| cpu_seconds(p)).collect(),
            postgres: server_cpu("postgres"),
            nats: server_cpu("nats-server"),
            this: cpu_seconds("self"),
        }
    }

    fn since(&self, pids: &[String]) -> Cpu {
        let now = Cpu::now(pids);
        Cpu {
            hosts: now
                .hosts
                .iter()
                .zip(&self.hosts)
                .map(|(a, b)| a - b)
                .collect(),
            postgres: now.postgres - self.postgres,
            nats: now.nats - self.nats,
            this: now.this - self.this,
        }
    }

    fn describe(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|s| format!("{s:.1}")).collect();
        format!(
            "hosts [{}] s, PostgreSQL {:.1} s, NATS {:.1} s, this process {:.1} s",
            hosts.join(", "),
            self.postgres,
            self.nats,
            self.this
        )
    }
}

/// End-to-end: `leads` posted over `n` hosts on `backend` until delivered.
async fn end_to_end(n: usize, backend: Backend, leads: usize) -> anyhow::Result<String> {
    let sim = leadgate_sim::Simulator::start(leadgate_sim::SimConfig {
        burst_limit: u32::MAX / 2,
        daily_limit: u32::MAX / 2,
        search_limit_per_sec: u32::MAX / 2,
        ..Default::default()
    })
    .await?;
    let destination = format!(
        "[destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.hubspot.config]\nbase-url = \"{}\"\n\
         [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\n\
         [destinations.hubspot.rate_limits]\n\
         burst = {{ max_requests = 1000000000, window_ms = 10000 }}\n\
         daily = {{ max_requests = 1000000000, window_ms = 86400000 }}\n",
        sim.base_url()
    );
    let cluster = Cluster::start(n, backend, &destination).await?;
    // A host joining others sends nothing for two heartbeats and the
    // quota's longest window (10 s): every host has joined before the run.
    if n > 1 {
        tokio::time::sleep(Duration::from_secs(13)).await;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let run = format!("{n}{}", backend.label());
    let pids = cluster.pids();
    let cpu = Cpu::now(&pids);
    let started = Instant::now();
    post_all(&client, &cluster.urls, leads, &run).await?;
    let acknowledged = started.elapsed();
    loop {
        let stats = cluster.stats(&client).await?;
        let store = &stats["store"];
        if store["jobs_pending"] == 0 && store["jobs_leased"] == 0 {
            anyhow::ensure!(store["jobs_dead"] == 0, "dead jobs: {stats}");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "not drained: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    let used = cpu.since(&pids);
    let contacts = sim.handle().contact_count();
    drop(cluster);
    sim.shutdown().await;
    Ok(format!(
        "| {n} host{} on {} | {leads} | {:.0} | {:.0} | {contacts} | {} |",
        if n > 1 { "s" } else { "" },
        backend.label(),
        leads as f64 / acknowledged.as_secs_f64(),
        leads as f64 / drained.as_secs_f64(),
        used.describe(),
    ))
}

/// Posts `leads` in batches of 100 from 8 posters, spread over `urls`.
async fn post_all(
    client: &reqwest::Client,
    urls: &[String],
    leads: usize,
    run: &str,
) -> anyhow::Result<()> {
    let batches: Vec<usize> = (0..leads).step_by(100).collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = tokio::task::JoinSet::new();
    for poster in 0..8 {
        let (client, next, urls, batches, run) = (
            client.clone(),
            next.clone(),
            urls.to_vec(),
            batches.clone(),
            run.to_string(),
        );
        posters.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&first) = batches.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let body: Vec<_> = (first..(first + 100).min(leads))
                    .map(|n| lead(n, &run))
                    .collect();
                let url = &urls[(poster + i) % urls.len()];
                let response = client
                    .post(format!("{url}/v1/leads"))
                    .bearer_auth(API_KEY)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == reqwest::StatusCode::ACCEPTED,
                    "{url}: {}",
                    response.status()
                );
            }
        });
    }
    while let Some(done) = posters.join_next().await {
        done??;
    }
    Ok(())
}

/// The reference for NATS ingest: the same leads posted over HTTP to one
/// host with no destination, until acknowledged (stored).
async fn http_ingest(backend: Backend, leads: usize) -> anyhow::Result<String> {
    let cluster = Cluster::start(1, backend, "").await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let pids = cluster.pids();
    let cpu = Cpu::now(&pids);
    let started = Instant::now();
    post_all(
        &client,
        &cluster.urls,
        leads,
        &format!("http{}", backend.label()),
    )
    .await?;
    let stored = started.elapsed();
    let used = cpu.since(&pids);
    Ok(format!(
        "| HTTP into {} | {leads} (100 per request) | 8 posters | stored {:.0}/s | {} |",
        backend.label(),
        leads as f64 / stored.as_secs_f64(),
        used.describe(),
    ))
}

/// NATS ingest: `leads` published as messages of `per_message` into a
/// stream one host on `backend` consumes, until the store holds them all.
async fn nats_ingest(backend: Backend, leads: usize, per_message: usize) -> anyhow::Result<String> {
    let url =
        std::env::var("LEADGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("NATS at {url} (LEADGATE_TEST_NATS)"))?;
    let js = async_nats::jetstream::new(client);
    let name = format!("LGBENCH_{}_{}", std::process::id(), backend.label());
    let subject = format!("lgbench.{}.{}", std::process::id(), backend.label());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await?;
    let source = format!(
        "[sources.bench.nats]\nurl = \"{url}\"\nstream = \"{name}\"\nsubject = \"{subject}\"\nbatch = 256\n"
    );
    let cluster = Cluster::start(1, backend, &source).await?;
    let http = reqwest::Client::new();
    let pids = cluster.pids();
    let cpu = Cpu::now(&pids);
    let run = format!("nats{}", backend.label());
    let started = Instant::now();
    let mut acks = Vec::with_capacity(256);
    for first in (0..leads).step_by(per_message) {
        let body: Vec<_> = (first..(first + per_message).min(leads))
            .map(|n| lead(n, &run))
            .collect();
        acks.push(
            js.publish(subject.clone(), serde_json::to_vec(&body)?.into())
                .await?,
        );
        if acks.len() == 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks.drain(..) {
        ack.await?;
    }
    let published = started.elapsed();
    loop {
        let stats = cluster.stats(&http).await?;
        if stats["store"]["leads"].as_u64().unwrap_or(0) >= leads as u64 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not all leads stored: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = started.elapsed();
    let used = cpu.since(&pids);
    drop(cluster);
    js.delete_stream(&name).await?;
    Ok(format!(
        "| NATS into {} | {leads} ({per_message} per message) | published {:.0}/s | stored {:.0}/s | {} |",
        backend.label(),
        leads as f64 / published.as_secs_f64(),
        leads as f64 / stored.as_secs_f64(),
        used.describe(),
    ))
}

async fn run() -> anyhow::Result<()> {
    leadgate_runtime::outbound::install_crypto_provider();
    let only = std::env::var("LEADGATE_BENCH_ONLY").unwrap_or_default();
    let wants = |s: &str| only.is_empty() || only.split(',').any(|o| o.trim() == s);
    if wants("hosts") {
        let leads = env_usize("LEADGATE_BENCH_CLUSTER_LEADS", 20_000);
        println!(
            "| hosts | leads | acknowledged/s | end to end/s | CRM records | CPU seconds |\n|---|---|---|---|---|---|"
        );
        for (n, backend) in [
            (1, Backend::Sqlite),
            (1, Backend::Postgres),
            (2, Backend::Postgres),
            (3, Backend::Postgres),
        ] {
            let row = end_to_end(n, backend, leads).await?;
            println!("{row}");
        }
    }
    if wants("nats") {
        let leads = env_usize("LEADGATE_BENCH_NATS_LEADS", 200_000);
        let per_message = env_usize("LEADGATE_BENCH_NATS_MESSAGE", 100).max(1);
        println!(
            "| ingest | leads | publishing | into the store | CPU seconds |\n|---|---|---|---|---|"
        );
        for backend in [Backend::Sqlite, Backend::Postgres] {
            println!("{}", nats_ingest(backend, leads, per_message).await?);
            println!("{}", http_ingest(backend, leads).await?);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter or other flags are ignored.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run());
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}
