//! Hot reload: adapters replaced, broken or removed on disk while leads
//! flow, without a restart and without losing a lead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leadgate::plugins::ReloadEvent;
use leadgate_e2e::{SCRAPER_KEY, TestEnv, hubspot_mapping_with_stage};
use leadgate_sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The adapter this build compiled.
fn built_adapter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins/hubspot.wasm")
}

/// The same component with a custom section appended: other bytes, other
/// hash, same behaviour — a "new version" as ops would drop it in.
fn with_custom_section(wasm: &[u8], note: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"leadgate-test";
    let mut contents = Vec::new();
    leb(name.len(), &mut contents);
    contents.extend_from_slice(name);
    contents.extend_from_slice(note.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(contents.len(), &mut out);
    out.extend_from_slice(&contents);
    out
}

async fn next_event(events: &mut broadcast::Receiver<ReloadEvent>) -> ReloadEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("a reload event within 20 s")
        .expect("event channel open")
}

async fn env_with_plugin_dir() -> anyhow::Result<(TestEnv, tempdir::Dir)> {
    let dir = tempdir::Dir::new()?;
    std::fs::copy(built_adapter(), dir.path().join("hubspot.wasm"))?;
    let extra = format!(
        "[plugins]\ndir = \"{}\"\nhot_reload = true\n",
        dir.path().display()
    );
    Ok((TestEnv::start(SimConfig::default(), &extra).await?, dir))
}

mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> std::io::Result<Dir> {
            let p = std::env::temp_dir().join(format!("leadgate-plugins-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn lead(n: u32) -> Value {
    json!({"email": format!("reload.{n}@example.com"), "name": format!("Reload Person{n}")})
}

async fn plugin_status(env: &TestEnv) -> anyhow::Result<Value> {
    let (_, v) = env.get_json("/v1/plugins").await?;
    Ok(v["plugins"][0].clone())
}

#[tokio::test]
async fn replacing_an_adapter_while_leads_flow_loses_nothing() -> anyhow::Result<()> {
    let (env, dir) = env_with_plugin_dir().await?;
    let mut events = env.host.registry.subscribe();
    let first_hash = plugin_status(&env).await?["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let original = std::fs::read(built_adapter())?;

    // Leads keep coming while the file is replaced.
    let url = env.url("/v1/leads");
    let client = env.client.clone();
    let poster = tokio::spawn(async move {
        for n in 0..60u32 {
            let resp = client
                .post(&url)
                .bearer_auth(SCRAPER_KEY)
                .body(lead(n).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    // A new version, written in place (not atomically), as `cp` would.
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(
        dir.path().join("hubspot.wasm"),
        with_custom_section(&original, "v2"),
    )?;
    let event = next_event(&mut events).await;
    let new_hash = event.result.expect("the new version loads");
    assert_ne!(new_hash, first_hash);

    // A broken replacement is refused; the new version keeps serving.
    std::fs::write(
        dir.path().join("hubspot.wasm"),
        b"\0asm not really a component",
    )?;
    let event = next_event(&mut events).await;
    assert!(event.result.is_err(), "garbage must not load");
    let status = plugin_status(&env).await?;
    assert_eq!(
        status["hash"],
        new_hash.as_str(),
        "the last good version serves"
    );
    assert!(
        status["last_error"].as_str().unwrap().contains("compile"),
        "{status}"
    );

    poster.await?;
    let counts = env.drain(30).await?;
    assert_eq!(
        (counts.jobs_delivered, counts.jobs_dead),
        (60, 0),
        "no failed delivery"
    );
    assert_eq!(env.sim().contact_count(), 60);
    let status = plugin_status(&env).await?;
    assert!(
        status["calls"].as_u64().unwrap() > 0,
        "the new version delivered"
    );
    assert!(status["reloads"].as_u64().unwrap() >= 1);
    assert!(status["reload_failures"].as_u64().unwrap() >= 1);
    // The audit trail names the adapter version each delivery ran on: the
    // last leads went through the new one.
    let (_, last) = env
        .post_leads(Some(SCRAPER_KEY), &lead(99).to_string())
        .await?;
    let id = last["results"][0]["id"].as_str().unwrap().to_string();
    env.drain(20).await?;
    let delivered = delivered_event(&env, &id).await?;
    assert!(
        delivered["detail"]["adapter"]
            .as_str()
            .unwrap()
            .ends_with(&new_hash),
        "{delivered}"
    );
    env.stop().await
}

#[tokio::test]
async fn a_removed_adapter_pauses_its_jobs_until_it_is_back() -> anyhow::Result<()> {
    let (env, dir) = env_with_plugin_dir().await?;
    let mut events = env.host.registry.subscribe();
    let path = dir.path().join("hubspot.wasm");
    let bytes = std::fs::read(&path)?;
    std::fs::remove_file(&path)?;
    assert!(next_event(&mut events).await.result.is_err());
    assert_eq!(plugin_status(&env).await?["paused"], true);

    let (status, _) = env
        .post_leads(Some(SCRAPER_KEY), &lead(1).to_string())
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "leads are still accepted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.host.store.outstanding_jobs().await?, 1, "the job waits");
    assert_eq!(env.sim().contact_count(), 0);

    std::fs::write(&path, &bytes)?;
    assert!(next_event(&mut events).await.result.is_ok());
    env.drain(20).await?;
    assert_eq!(env.sim().count_by_email("reload.1@example.com"), 1);
    env.stop().await
}

#[tokio::test]
async fn a_broken_mapping_is_refused_and_the_old_one_serves() -> anyhow::Result<()> {
    let (env, mappings) = TestEnv::with_mappings_dir("").await?;
    let mut events = env.host.registry.subscribe();
    // Drops the required email property: must not go live.
    std::fs::write(
        mappings.path().join("hubspot.yaml"),
        "version: 1\ncrm: hubspot\nrequired: []\nproperties:\n  firstname: { from: first_name }\n",
    )?;
    let event = next_event(&mut events).await;
    let error = event
        .result
        .expect_err("a mapping without email must be refused");
    assert!(error.contains("email"), "{error}");
    assert_eq!(
        env.metric("leadgate_plugin_reload_failures_total{destination=\"hubspot\"}")
            .await?,
        Some(1.0),
        "the refused reload is counted"
    );
    env.post_leads(Some(SCRAPER_KEY), &lead(5).to_string())
        .await?;
    env.drain(20).await?;
    assert_eq!(env.sim().count_by_email("reload.5@example.com"), 1);
    env.stop().await
}

#[tokio::test]
async fn a_valid_new_mapping_goes_live_by_hot_reload() -> anyhow::Result<()> {
    let (env, mappings) = TestEnv::with_mappings_dir("").await?;
    let mut events = env.host.registry.subscribe();
    env.post_leads(Some(SCRAPER_KEY), &lead(6).to_string())
        .await?;
    env.drain(20).await?;
    let stage = |email: &str| {
        env.sim().contacts_by_email(email)[0]
            .properties
            .get("lifecyclestage")
            .cloned()
    };
    assert_eq!(stage("reload.6@example.com").as_deref(), Some("lead"));
    // The same mapping with another constant, written while serving.
    std::fs::write(
        mappings.path().join("hubspot.yaml"),
        hubspot_mapping_with_stage("opportunity")?,
    )?;
    let event = next_event(&mut events).await;
    event.result.expect("a valid mapping goes live");
    env.post_leads(Some(SCRAPER_KEY), &lead(7).to_string())
        .await?;
    env.drain(20).await?;
    assert_eq!(
        stage("reload.7@example.com").as_deref(),
        Some("opportunity")
    );
    // What was delivered before stays as it was.
    assert_eq!(stage("reload.6@example.com").as_deref(), Some("lead"));
    assert_eq!(
        env.metric("leadgate_plugin_reload_failures_total{destination=\"hubspot\"}")
            .await?,
        Some(0.0)
    );
    env.stop().await
}

#[tokio::test]
async fn another_adapter_copied_over_the_file_is_refused_and_the_serving_one_stays()
-> anyhow::Result<()> {
    let (env, dir) = env_with_plugin_dir().await?;
    let mut events = env.host.registry.subscribe();
    let serving = plugin_status(&env).await?;
    let path = dir.path().join("hubspot.wasm");

    // A valid crm-adapter component that declares itself another adapter.
    std::fs::copy(leadgate_test_guests::BAD_ADAPTER, &path)?;
    let error = next_event(&mut events)
        .await
        .result
        .expect_err("another adapter must not take over the destination");
    assert!(
        error.contains("declares itself adapter \"bad\"") && error.contains("\"hubspot\""),
        "{error}"
    );
    // A source transform is not an adapter at all.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins/form-fields.wasm"),
        &path,
    )?;
    let error = next_event(&mut events)
        .await
        .result
        .expect_err("a transform is no adapter");
    assert!(error.contains("not a crm-adapter component"), "{error}");

    let status = plugin_status(&env).await?;
    assert_eq!(status["hash"], serving["hash"], "the serving version stays");
    assert_eq!(status["adapter"], "hubspot");
    assert_eq!(status["reload_failures"], 2);
    let failures = env
        .metric("leadgate_plugin_reload_failures_total{destination=\"hubspot\"}")
        .await?;
    assert_eq!(failures, Some(2.0));
    env.post_leads(Some(SCRAPER_KEY), &lead(7).to_string())
        .await?;
    env.drain(20).await?;
    assert_eq!(env.sim().count_by_email("reload.7@example.com"), 1);
    env.stop().await
}

/// The delivered event of a lead's audit trail.
async fn delivered_event(env: &TestEnv, id: &str) -> anyhow::Result<Value> {
    let (_, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
    Ok(view["audit"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["event"] == "delivered"))
        .cloned()
        .unwrap_or_else(|| panic!("no delivered event: {view}")))
}

/// A call in flight when a new version goes live finishes on the version
/// it started on (its instance is its own), and the trail says so; the
/// next delivery runs on the new one.
#[tokio::test]
async fn a_call_in_flight_finishes_on_the_version_it_started_on() -> anyhow::Result<()> {
    let (env, dir) = env_with_plugin_dir().await?;
    let mut events = env.host.registry.subscribe();
    let first_hash = plugin_status(&env).await?["hash"]
        .as_str()
        .unwrap()
        .to_string();
    env.sim().set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let (_, answer) = env
        .post_leads(Some(SCRAPER_KEY), &lead(40).to_string())
        .await?;
    let first = answer["results"][0]["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while env.sim().in_flight() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no call started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let original = std::fs::read(built_adapter())?;
    std::fs::write(
        dir.path().join("hubspot.wasm"),
        with_custom_section(&original, "v2"),
    )?;
    let new_hash = next_event(&mut events)
        .await
        .result
        .expect("the new version loads");
    assert_ne!(new_hash, first_hash);
    assert!(
        env.sim().in_flight() > 0,
        "the call was still in flight at the reload"
    );
    env.sim().set_faults(Faults::default());
    env.drain(30).await?;
    let event = delivered_event(&env, &first).await?;
    let adapter = event["detail"]["adapter"].as_str().unwrap_or_default();
    assert!(adapter.ends_with(&first_hash), "{event}");
    let (_, answer) = env
        .post_leads(Some(SCRAPER_KEY), &lead(41).to_string())
        .await?;
    let next = answer["results"][0]["id"].as_str().unwrap().to_string();
    env.drain(30).await?;
    let event = delivered_event(&env, &next).await?;
    let adapter = event["detail"]["adapter"].as_str().unwrap_or_default();
    assert!(adapter.ends_with(&new_hash), "{event}");
    assert_eq!(env.sim().contact_count(), 2);
    env.stop().await
}
