//! Plugin runtime figures: the cost of the component boundary, of a fresh
//! instance per call, of loading adapters at start-up (cold and from the
//! compiled-component cache), of a hot reload, and resident memory.
//!
//! `cargo bench -p leadgate --bench plugins`. Uses the HubSpot adapter this
//! build compiled and the test guest `bad-adapter` in its `ok` mode (which
//! answers without HTTP, so the figures are the boundary's own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadgate_runtime::{
    AdapterPlugin, Capabilities, Delivery, EngineOptions, HostServices, MemoryKv, PluginEngine,
    PushContext, ReqwestOutbound,
};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn engine() -> PluginEngine {
    leadgate_runtime::outbound::install_crypto_provider();
    PluginEngine::new(
        EngineOptions::default(),
        HostServices {
            outbound: Arc::new(ReqwestOutbound::new().unwrap()),
            kv: Arc::new(MemoryKv::default()),
            max_http_timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
        },
    )
    .unwrap()
}

fn deliveries(n: usize) -> Vec<Delivery> {
    (0..n)
        .map(|i| Delivery {
            id: format!("job-{i}"),
            idempotency_key: format!("person-{i}/hubspot/v1"),
            properties: vec![
                ("email".into(), format!("lead.{i}@example.com")),
                ("firstname".into(), "Ada".into()),
                ("lastname".into(), "Lovelace".into()),
                ("phone".into(), "+14155550100".into()),
                ("company".into(), "Analytical Engines Ltd".into()),
                ("lifecyclestage".into(), "lead".into()),
            ],
        })
        .collect()
}

async fn per_call(plugin: &AdapterPlugin, batch: usize, rounds: usize) -> Duration {
    let batch = deliveries(batch);
    let ctx = PushContext {
        destination: "bench".into(),
        config: vec![("mode".into(), "ok".into())],
        attempt: 1,
    };
    for _ in 0..rounds / 10 {
        plugin.push(&batch, &ctx).await.unwrap();
    }
    let started = Instant::now();
    for _ in 0..rounds {
        plugin.push(&batch, &ctx).await.unwrap();
    }
    started.elapsed() / rounds as u32
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rss_start = rss_mb();
    let engine = engine();
    let bad = std::fs::read(leadgate_test_guests::BAD_ADAPTER)?;
    let hubspot_path = std::path::Path::new(env!("LEADGATE_BUNDLED_PLUGINS")).join("hubspot.wasm");
    let hubspot = std::fs::read(&hubspot_path)?;

    // Boundary cost: a fresh instance per call, records copied in and out.
    let component = engine.compile(&bad)?;
    let plugin = AdapterPlugin::load(&engine, "bad", &component, Capabilities::none()).await?;
    let empty = per_call(&plugin, 0, 5_000).await;
    let one = per_call(&plugin, 1, 5_000).await;
    let hundred = per_call(&plugin, 100, 1_000).await;
    println!("component boundary (Rust guest, pooling allocator, fresh instance per call):");
    println!("  instantiate + empty call     {}", us(empty));
    println!("  push(1)                      {}", us(one));
    println!(
        "  push(100)                    {}  = {} per lead",
        us(hundred),
        us(hundred / 100)
    );

    // Start-up: compiling vs loading from the compiled-component cache.
    let cache = std::env::temp_dir().join(format!("leadgate-bench-cache-{}", std::process::id()));
    let started = Instant::now();
    engine.compile_cached(&hubspot, Some(&cache))?;
    let cold = started.elapsed();
    let started = Instant::now();
    let cached = engine.compile_cached(&hubspot, Some(&cache))?;
    let warm = started.elapsed();
    let started = Instant::now();
    AdapterPlugin::load(&engine, "hubspot", &cached, Capabilities::none()).await?;
    let link = started.elapsed();
    println!("adapter load (hubspot.wasm, {} KB):", hubspot.len() / 1024);
    println!("  compile (cold)               {}", ms(cold));
    println!("  from the compiled cache      {}", ms(warm));
    println!("  link + describe()            {}", ms(link));
    let _ = std::fs::remove_dir_all(&cache);

    // Hot reload: a file landing → the new version serving.
    let figures = reload_latency(&hubspot).await?;
    println!("hot reload (host with one destination, watcher on):");
    println!(
        "  file written → serving       {} (median of {})",
        ms(figures.0),
        figures.1
    );

    // Memory: both adapters loaded, 4 concurrent callers pushing batches of 100.
    let hub = AdapterPlugin::load(&engine, "hubspot", &cached, Capabilities::none()).await?;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let plugin = plugin.clone();
        tasks.push(tokio::spawn(
            async move { per_call(&plugin, 100, 500).await },
        ));
    }
    for t in tasks {
        t.await?;
    }
    drop(hub);
    println!("resident memory:");
    println!("  at start                     {rss_start:.0} MB");
    println!("  adapters loaded, after load  {:.0} MB", rss_mb());
    Ok(())
}

/// Starts a host whose plugin folder holds hubspot.wasm, then rewrites the
/// file (a new version: a custom section appended) several times and times
/// each change until the registry serves it.
async fn reload_latency(hubspot: &[u8]) -> anyhow::Result<(Duration, usize)> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("hubspot.wasm"), hubspot)?;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n\
         [plugins]\ndir = \"{}\"\n\
         [destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\n",
        dir.path().join("db/leadgate.db").display(),
        dir.path().display()
    );
    let host = leadgate::app::start(leadgate::config::Config::from_toml(&toml)?).await?;
    let mut events = host.registry.subscribe();
    let mut times = Vec::new();
    for round in 0..5 {
        let mut bytes = hubspot.to_vec();
        // A custom section: id 0, size, name length 1, name "r", round byte.
        bytes.extend_from_slice(&[0, 3, 1, b'r', round as u8]);
        let started = Instant::now();
        std::fs::write(dir.path().join("hubspot.wasm"), &bytes)?;
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await??;
        event.result.map_err(|e| anyhow::anyhow!(e))?;
        times.push(started.elapsed());
    }
    times.sort();
    host.shutdown().await?;
    Ok((times[times.len() / 2], times.len()))
}
