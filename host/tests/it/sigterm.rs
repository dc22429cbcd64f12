//! SIGTERM through the real signal: `leadgate serve` runs as its own
//! process, is sent SIGTERM while CRM calls are in flight, and must exit
//! cleanly having given every lease back (nothing waits for a lease to
//! expire) and lost nothing; restarted, it delivers every person once.

use std::time::{Duration, Instant};

use leadgate::store::{Durability, SqliteStore, Store};
use leadgate_sim::{Crm, Faults, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, free_port, generated_admin_token, get_admin_json, host_config, post_batch, wait_ready,
};

const KEY: &str = "sigterm-source-key-0001";
const PERSONS: usize = 20;

fn email(p: usize) -> String {
    format!("term.{p}@example.com")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_delivery_gives_every_lease_back_and_loses_nothing() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim.handle();
    // Every CRM call takes 3 s, longer than the 300 ms grace period: the
    // calls in flight at SIGTERM cannot finish and must be given back.
    handle.set_faults(Faults {
        latency_ms: 3_000,
        ..Faults::default()
    });
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = dir.path().join("leadgate.db");
    let config = dir.path().join("leadgate.toml");
    // Leases of ten minutes: a lease left behind would still be held when
    // the store is read below.
    let delivery = "shutdown_grace_ms = 300\nlease_ms = 600000\nlinger_ms = 5\npoll_ms = 20";
    std::fs::write(
        &config,
        host_config(port, &db, KEY, &sim.base_url(), delivery),
    )
    .unwrap();
    let log = dir.path().join("host.log");
    let client = reqwest::Client::new();

    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let leads: Vec<Value> = (0..PERSONS)
        .map(|p| json!({"email": email(p), "first_name": "Terry", "last_name": format!("Term{p}")}))
        .collect();
    let (status, answer) = post_batch(&client, &url, KEY, &leads).await;
    assert_eq!(status, 202, "{answer}");

    // SIGTERM while a CRM call is in flight.
    let started = Instant::now();
    while handle.in_flight() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no CRM call started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = host.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "leadgate serve exited with {status}");

    // Read the store the process left behind.
    // With the keys the host generated beside it.
    let crypt = leadgate::store::seal::Crypt::from_key_file(&db.with_file_name("keys")).unwrap();
    let store = SqliteStore::open(
        &format!("sqlite://{}", db.display()),
        Durability::Full,
        crypt,
    )
    .await
    .unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.leads, PERSONS as u64, "{counts:?}");
    assert_eq!(
        counts.jobs_leased, 0,
        "a lease was left to expire: {counts:?}"
    );
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_eq!(
        counts.jobs_pending + counts.jobs_delivered,
        PERSONS as u64,
        "{counts:?}"
    );
    assert!(counts.jobs_pending > 0, "nothing was in flight: {counts:?}");
    drop(store);

    // Restarted with a fast CRM, it delivers the rest: one create each.
    handle.set_faults(Faults::default());
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let token = generated_admin_token(&db);
    let started = Instant::now();
    loop {
        let health = get_admin_json(&client, &token, &format!("{url}/v1/stats")).await;
        let s = &health["store"];
        if s["jobs_pending"] == 0 && s["jobs_leased"] == 0 {
            assert_eq!(s["jobs_delivered"], PERSONS, "{health}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not drained: {health}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = host.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "leadgate serve exited with {status}");
    for p in 0..PERSONS {
        let creates = handle.creates(Some(Crm::Hubspot), &[&email(p)], &[]);
        assert_eq!(creates.len(), 1, "person {p}: {creates:?}");
    }
    sim.shutdown().await;
}
