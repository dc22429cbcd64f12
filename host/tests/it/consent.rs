//! A destination's consent policy on a running host: leads of persons in
//! the EU or the UK (by their country, or their phone's) without a lawful
//! basis are held for it (`consent_missing`: shown on the job, in the
//! audit trail and the stats, never sent to the CRM), others go out; a
//! later lead of a held person that brings consent releases what waited,
//! and it is delivered once.

use std::time::{Duration, Instant};

use leadgate_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, free_port, generated_admin_token, get_admin_json, host_config, wait_ready,
};

const KEY: &str = "consent-test-source-01";

#[tokio::test]
async fn leads_without_consent_wait_until_a_lead_brings_it() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("leadgate.db");
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("leadgate.toml");
    let base = host_config(
        port,
        &db,
        KEY,
        &sim.base_url(),
        "linger_ms = 5\npoll_ms = 20",
    );
    std::fs::write(
        &config,
        format!("{base}\n[destinations.hubspot.consent]\nrequired_in = [\"EU\", \"UK\"]\n"),
    )
    .unwrap();
    let host = Host::spawn(&config, &dir.path().join("host.log"));
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    let token = generated_admin_token(&db);
    let post = async |lead: Value| -> Value {
        let answer = client
            .post(format!("{url}/v1/leads"))
            .bearer_auth(KEY)
            .json(&lead)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        answer.json::<Value>().await.unwrap()["results"][0].clone()
    };
    let settled = async |held: u64| -> Value {
        let started = Instant::now();
        loop {
            let stats = get_admin_json(&client, &token, &format!("{url}/v1/stats")).await;
            let store = &stats["store"];
            if store["jobs_pending"] == 0 && store["jobs_leased"] == 0 && store["jobs_held"] == held
            {
                return stats;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{stats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let berlin = "greta.held@consent-example.de";
    let london = "oliver.held@consent-example.co.uk";
    let boston = "ruth.free@consent-example.com";
    let german = post(json!({"email": berlin, "first_name": "Greta", "country": "Germany"})).await;
    // No country: the phone's (+44) counts.
    post(json!({"email": london, "phone": "+44 20 7946 0018"})).await;
    post(json!({"email": boston, "country": "US"})).await;
    let stats = settled(2).await;
    assert_eq!(
        stats["store"]["destinations"]["hubspot"]["held"], 2,
        "{stats}"
    );
    assert_eq!(stats["store"]["jobs_delivered"], 1, "{stats}");
    let metrics = client
        .get(format!("{url}/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("leadgate_outbox_jobs{state=\"held\"} 2"),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sim.handle().contacts_by_email(boston).len(), 1);
    assert!(sim.handle().contacts_by_email(berlin).is_empty());
    assert!(sim.handle().contacts_by_email(london).is_empty());
    let id = german["id"].as_str().unwrap();
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{id}")).await;
    assert_eq!(view["deliveries"][0]["held"], "consent_missing", "{view}");
    assert_eq!(view["deliveries"][0]["state"], "pending", "{view}");
    let queued = view["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "queued")
        .unwrap();
    assert_eq!(queued["detail"]["held"], "consent_missing", "{view}");

    // Greta's next lead brings consent: the held job goes, once.
    let again = post(json!({
        "email": berlin,
        "consent": {"basis": "consent", "given_at": "2026-11-30T10:00:00Z"}
    }))
    .await;
    assert_eq!(again["status"], "duplicate", "{again}");
    let stats = settled(1).await;
    assert_eq!(
        stats["store"]["destinations"]["hubspot"]["held"], 1,
        "{stats}"
    );
    let started = Instant::now();
    while sim.handle().contacts_by_email(berlin).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.handle().contacts_by_email(berlin).len(), 1);
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{id}")).await;
    assert_eq!(view["deliveries"][0]["state"], "delivered", "{view}");
    assert!(view["deliveries"][0]["held"].is_null(), "{view}");
    // Oliver still waits.
    assert!(sim.handle().contacts_by_email(london).is_empty());
    host.terminate(Duration::from_secs(30)).await;
    sim.shutdown().await;
}
