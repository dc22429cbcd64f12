//! Delivery that never loses or doubles a lead: the circuit breaker during
//! a CRM outage, ingest backpressure when the outbox is full, and graceful
//! shutdown with batches in flight.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use leadgate_e2e::{SCRAPER_KEY, TestEnv, WEBFORM_KEY};
use leadgate_sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn lead(n: u32) -> Value {
    json!({
        "email": format!("reliable.{n}@example.com"),
        "first_name": "Ada",
        "last_name": format!("Lovelace-{n}"),
        "company": format!("Engines {n} Ltd"),
    })
}

fn outage() -> Faults {
    Faults {
        outage: true,
        ..Faults::default()
    }
}

/// The hubspot destination's breaker as `GET /v1/plugins` shows it.
async fn breaker(env: &TestEnv) -> anyhow::Result<Value> {
    let (status, plugins) = env.get_json("/v1/plugins").await?;
    anyhow::ensure!(status == StatusCode::OK, "GET /v1/plugins: {status}");
    Ok(plugins["plugins"][0]["breaker"].clone())
}

async fn wait_for_breaker(env: &TestEnv, state: &str, secs: u64) -> anyhow::Result<Value> {
    let started = Instant::now();
    loop {
        let b = breaker(env).await?;
        if b["state"] == state {
            return Ok(b);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(secs),
            "breaker not {state} within {secs} s: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until some job is leased (a batch is in flight).
async fn wait_for_lease(env: &TestEnv) -> anyhow::Result<()> {
    let started = Instant::now();
    while env.host.store.counts().await?.jobs_leased == 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "no job leased");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn the_breaker_opens_during_an_outage_and_every_lead_lands_once() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nbreaker_failures = 3\nbreaker_cooldown_ms = 400\nbreaker_cooldown_max_ms = 800\n",
    )
    .await?;
    let sim = env.sim();
    sim.set_faults(outage());
    let body: Vec<Value> = (0..20).map(lead).collect();
    env.post_accepted(SCRAPER_KEY, &body).await?;

    let open = wait_for_breaker(&env, "open", 15).await?;
    assert!(open["times_opened"].as_u64().unwrap() >= 1, "{open}");
    assert!(open["next_probe_at_ms"].as_i64().is_some(), "{open}");
    assert_eq!(open["failure_threshold"], 3);

    // While open, only probes reach the CRM: one per cool-down (400 ms,
    // doubling to 800 ms), each failing and re-opening the breaker.
    let requests_before = sim.stats().requests_total;
    let opened_before = breaker(&env).await?["times_opened"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let requests = sim.stats().requests_total - requests_before;
    let after = breaker(&env).await?;
    let probes = after["times_opened"].as_u64().unwrap() - opened_before;
    assert!(
        requests <= probes + 2 && requests <= 6,
        "{requests} requests in 2 s with the breaker open ({probes} failed probes)"
    );
    assert!(after["cooldown_ms"].as_u64().unwrap() <= 800, "{after}");
    let counts = env.host.store.counts().await?;
    assert_eq!(
        (counts.jobs_pending + counts.jobs_leased, counts.jobs_dead),
        (20, 0),
        "nothing is lost or dead-lettered while the CRM is down"
    );

    // A hot reload keeps the breaker: a new adapter does not heal the CRM.
    env.host
        .registry
        .reload_paths(&BTreeSet::from([PathBuf::from("hubspot.wasm")]))
        .await;
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    let p = &plugins["plugins"][0];
    assert_eq!(p["reloads"], 1, "{p}");
    assert_ne!(p["breaker"]["state"], "closed", "{p}");
    assert!(
        p["breaker"]["times_opened"].as_u64().unwrap() >= opened_before + probes,
        "{p}"
    );

    // The outage ends: the next probe closes the breaker and the rest goes.
    sim.set_faults(Faults::default());
    let counts = env.drain(30).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (20, 0));
    let closed = breaker(&env).await?;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["consecutive_failures"], 0);
    assert_eq!(sim.contact_count(), 20);
    for n in 0..20 {
        assert_eq!(
            sim.count_by_email(&format!("reliable.{n}@example.com")),
            1,
            "lead {n} delivered exactly once"
        );
    }
    let metrics = env
        .admin
        .get(env.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("leadgate_delivery_breaker_state{destination=\"hubspot\"} 0"),
        "{metrics}"
    );
    let opened = env
        .metric("leadgate_delivery_breaker_opened_total{destination=\"hubspot\"}")
        .await?
        .expect("the openings counter") as u64;
    assert_eq!(opened, closed["times_opened"].as_u64().unwrap());
    assert!(opened >= 1);
    env.stop().await
}

#[tokio::test]
async fn a_full_backlog_turns_ingest_to_429_and_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nbreaker_failures = 3\nbreaker_cooldown_ms = 200\nbreaker_cooldown_max_ms = 400\n\
         [sources.scraper]\nmax_backlog = 10\n[sources.webform]\nmax_backlog = 5\n",
    )
    .await?;
    let sim = env.sim();
    sim.set_faults(outage());

    let post = |n: u32, key: &'static str| {
        env.client
            .post(env.url("/v1/leads"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(lead(n).to_string())
            .send()
    };
    let mut accepted = Vec::new();
    let refused = loop {
        let n = accepted.len() as u32;
        anyhow::ensure!(n < 40, "ingest never pushed back");
        let response = post(n, SCRAPER_KEY).await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        accepted.push(n);
    };
    // The limit holds to within what the count can miss between refreshes.
    assert!(
        (10..=13).contains(&accepted.len()),
        "{} accepted before the first 429",
        accepted.len()
    );
    assert_eq!(refused.headers()["retry-after"], "1");
    let error: Value = refused.json().await?;
    assert_eq!(error["error"]["code"], "backlog_full", "{error}");
    assert_eq!(error["error"]["limit"], 10);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scraper")
    );
    // It stays refused while the CRM is down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = post(99, SCRAPER_KEY).await?;
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another source's limit counts its own jobs only: the webform's (5)
    // is below the scraper's backlog, and the webform still gets through.
    let other = post(100, WEBFORM_KEY).await?;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    accepted.push(100);

    sim.set_faults(Faults::default());
    let counts = env.drain(30).await?;
    assert_eq!(
        (counts.jobs_delivered, counts.jobs_dead),
        (accepted.len() as u64, 0)
    );
    assert_eq!(sim.contact_count(), accepted.len());
    for n in &accepted {
        assert_eq!(
            sim.count_by_email(&format!("reliable.{n}@example.com")),
            1,
            "lead {n} delivered exactly once"
        );
    }
    assert_eq!(sim.count_by_email("reliable.99@example.com"), 0);
    // With the backlog gone, ingest takes work again.
    let started = Instant::now();
    loop {
        let response = post(200, SCRAPER_KEY).await?;
        if response.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(5),
            "still refused after the backlog drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = env
        .admin
        .get(env.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leadgate_ingest_backlog_refused_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    env.stop().await
}

#[tokio::test]
async fn shutdown_lets_a_batch_in_flight_finish() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    env.sim().set_faults(Faults {
        latency_ms: 800,
        ..Faults::default()
    });
    let body: Vec<Value> = (0..5).map(lead).collect();
    env.post_accepted(SCRAPER_KEY, &body).await?;
    wait_for_lease(&env).await?;
    let store = env.host.store.clone();
    let TestEnv { sim, host, .. } = env;
    host.shutdown().await?;
    let counts = store.counts().await?;
    assert_eq!(
        (counts.jobs_leased, counts.jobs_delivered),
        (0, 5),
        "the batch finished and was recorded: {counts:?}"
    );
    assert_eq!(sim.handle().contact_count(), 5);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_gives_unfinished_jobs_back_after_the_grace_period() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nshutdown_grace_ms = 300\n",
    )
    .await?;
    env.sim().set_faults(Faults {
        latency_ms: 30_000,
        ..Faults::default()
    });
    let body: Vec<Value> = (0..5).map(lead).collect();
    let answer = env.post_accepted(SCRAPER_KEY, &body).await?;
    let id = answer["results"][0]["id"].as_str().unwrap().to_string();
    wait_for_lease(&env).await?;
    let store = env.host.store.clone();
    let metrics = env.host.metrics.clone();
    let TestEnv { sim, host, .. } = env;
    let started = Instant::now();
    host.shutdown().await?;
    let took = started.elapsed();
    // A shutdown that waited for the call would take 30 s; half that is
    // 50x the grace period, room for a loaded machine.
    assert!(
        took < Duration::from_secs(15),
        "shutdown waited {took:?} for a 30 s call with a 300 ms grace period"
    );
    let counts = store.counts().await?;
    assert_eq!(
        (counts.jobs_leased, counts.jobs_pending, counts.jobs_dead),
        (0, 5, 0),
        "every lease given back, none left to expire: {counts:?}"
    );
    assert_eq!(metrics.delivery_released.get(), 5);
    let view = store.lead(&id).await?.expect("the lead");
    let job = &view.deliveries[0];
    assert_eq!(job.attempts, 0, "a released job has not used an attempt");
    assert!(
        job.next_attempt_at_ms <= leadgate::now_ms(),
        "due at once on restart"
    );
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("shut down"),
        "{job:?}"
    );
    sim.shutdown().await;
    Ok(())
}

/// A call that outlasts its lease keeps its jobs: the worker renews the
/// leases while the call runs, so no other worker takes the batch over and
/// the CRM gets it once. (Without the renewal, with a 300 ms lease and
/// 1.5 s answers, the reclaimer hands the batch to another worker mid-call
/// and the CRM gets it again: records updated, "lease lost" counted.)
#[tokio::test]
async fn a_call_longer_than_its_lease_keeps_its_jobs() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nlease_ms = 300\nconcurrency = 4\n",
    )
    .await?;
    env.sim().set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let body: Vec<Value> = (0..5).map(lead).collect();
    env.post_accepted(SCRAPER_KEY, &body).await?;
    let counts = env.drain(60).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (5, 0));
    let stats = env.sim().stats();
    assert_eq!(
        (stats.records_created, stats.records_updated),
        (5, 0),
        "each person written once: {stats:?}"
    );
    assert_eq!(env.host.metrics.delivery_lease_lost.get(), 0);
    env.stop().await
}

/// Failed probes use up no attempts, so during an endless outage the age
/// limit is what ends a job: it goes to the dead-letter queue (never lost,
/// never stuck), and a replay once the CRM is back makes one record.
#[tokio::test]
async fn a_job_the_crm_never_takes_is_dead_lettered_at_the_age_limit() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nbreaker_failures = 1\nbreaker_cooldown_ms = 200\nbreaker_cooldown_max_ms = 400\n\
         max_attempts = 1000\ngive_up_after_ms = 2000\n",
    )
    .await?;
    let sim = env.sim();
    sim.set_faults(outage());
    env.post_accepted(SCRAPER_KEY, &[lead(1)]).await?;
    let counts = env.drain(20).await?;
    assert_eq!(
        (counts.jobs_delivered, counts.jobs_dead),
        (0, 1),
        "{counts:?}"
    );

    let (_, list) = env.get_json("/v1/dead-letters?destination=hubspot").await?;
    let dead = &list["dead_letters"][0]["job"];
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("gave up 2 s after it was queued"),
        "{dead}"
    );
    assert!(
        dead["attempts"].as_u64().unwrap() <= 2,
        "probes used up no attempts: {dead}"
    );
    let requests = sim.stats().requests_total;
    assert!(
        requests >= 3,
        "the job was probed again and again: {requests}"
    );

    sim.set_faults(Faults::default());
    let id = dead["id"].as_str().unwrap();
    let resp = env
        .admin
        .post(env.url("/v1/dead-letters/replay"))
        .json(&json!({ "ids": [id] }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let counts = env.drain(20).await?;
    assert_eq!(
        (counts.jobs_delivered, counts.jobs_dead),
        (1, 0),
        "{counts:?}"
    );
    assert_eq!(sim.count_by_email("reliable.1@example.com"), 1);
    env.stop().await
}

/// An account whose quota is below the adapter's default says so in its
/// destination, and the host keeps to it: the simulated HubSpot allows 2
/// requests per 2 s here, the adapter declares 190 per 10 s, and five
/// deliveries one after another draw no 429 (without the override the
/// third would).
#[tokio::test]
async fn a_destination_rate_limit_override_is_kept() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig {
            burst_limit: 2,
            burst_window_ms: 2_000,
            ..SimConfig::default()
        },
        "[destinations.hubspot.rate_limits]\nburst = { max_requests = 2, window_ms = 2000 }\n\
         [destinations.hubspot.config]\nreadback-percent = \"0\"\n",
    )
    .await?;
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    let burst = plugins["plugins"][0]["rate_limits"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "burst"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&burst["max_requests"], &burst["window_ms"]),
        (&json!(2), &json!(2000)),
        "{plugins}"
    );
    for n in 0..5 {
        env.post_accepted(SCRAPER_KEY, &[lead(n)]).await?;
        env.drain(30).await?;
    }
    let stats = env.sim().stats();
    assert_eq!(stats.records_created, 5, "{stats:?}");
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    env.stop().await
}

/// While the quota is spent, workers lease nothing: the jobs wait in the
/// queue (where another worker, or a restart, can take them), not in a
/// worker's lease.
#[tokio::test]
async fn no_job_is_leased_while_the_quota_is_spent() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[destinations.hubspot.rate_limits]\nburst = { max_requests = 1, window_ms = 4000 }\n\
         [destinations.hubspot.config]\nreadback-percent = \"0\"\n",
    )
    .await?;
    env.post_accepted(SCRAPER_KEY, &[lead(0)]).await?;
    env.drain(30).await?;
    // The one request of the window is spent for the next 4 s.
    let spent = Instant::now();
    env.post_accepted(SCRAPER_KEY, &[lead(1), lead(2), lead(3)])
        .await?;
    let mut polls = 0;
    while spent.elapsed() < Duration::from_millis(1_500) {
        let (_, health) = env.get_json("/v1/stats").await?;
        let store = &health["store"];
        assert_eq!(store["jobs_leased"], 0, "leased with no quota: {health}");
        assert_eq!(store["jobs_pending"], 3, "{health}");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(polls >= 5, "the store was read {polls} times");
    // Once the window passes, they go out (in one batch).
    env.drain(30).await?;
    assert_eq!(env.sim().stats().records_created, 4);
    assert_eq!(env.sim().stats().rate_limited, 0);
    env.stop().await
}
