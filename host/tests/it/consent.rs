//! A destination's consent policy on a running host: leads of persons in
//! the EU or the UK (by their country, or their phone's) without a lawful
//! basis are held for it (`consent_missing`: shown on the job, in the
//! audit trail and the stats, never sent to the CRM), others go out; a
//! later lead of a held person that brings consent releases what waited,
//! and it is delivered once. A withdrawal (`POST /v1/persons/{id}/consent`)
//! reaches the CRM where the mapping sends it, stops what had not gone
//! out, and holds every later update (`consent_withdrawn`).

use std::time::{Duration, Instant};

use leadgate_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, free_port, generated_admin_token, get_admin_json, host_config, metrics_text, post_lead,
    wait_ready,
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
    // The shipped HubSpot mapping, sending the withdrawal too.
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/hubspot.yaml"),
    )
    .unwrap();
    std::fs::write(
        mappings.join("hubspot.yaml"),
        format!("{shipped}  leadgate_consent_withdrawn_at:\n    from: consent_withdrawn_at\n"),
    )
    .unwrap();
    sim.handle()
        .define_property("leadgate_consent_withdrawn_at");
    let base = host_config(
        port,
        &db,
        KEY,
        &sim.base_url(),
        "linger_ms = 5\npoll_ms = 20",
    )
    .replace(
        "[plugins]\n",
        &format!("[plugins]\nmappings_dir = \"{}\"\n", mappings.display()),
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
    let post = async |lead: Value| post_lead(&client, &url, KEY, lead).await;
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
    let oliver = post(json!({"email": london, "phone": "+44 20 7946 0018"})).await;
    let ruth = post(json!({"email": boston, "country": "US"})).await;
    let stats = settled(2).await;
    assert_eq!(
        stats["store"]["destinations"]["hubspot"]["held"], 2,
        "{stats}"
    );
    assert_eq!(stats["store"]["jobs_delivered"], 1, "{stats}");
    let metrics = metrics_text(&client, &url, Some(&token)).await;
    assert!(
        metrics.contains("leadgate_outbox_jobs{state=\"held\"} 2"),
        "{metrics}"
    );
    // The writer's memory as it left it: three leads of three persons.
    let gauge = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
    };
    assert_eq!(gauge("leadgate_dedupe_index_records"), Some(3), "{metrics}");
    assert!(
        gauge("leadgate_dedupe_index_fingerprints").is_some_and(|n| n >= 3),
        "{metrics}"
    );
    assert!(
        gauge("leadgate_dedupe_index_bytes").is_some_and(|n| n > 3 * 100),
        "{metrics}"
    );
    assert!(
        gauge("leadgate_writer_cached_persons").is_some(),
        "{metrics}"
    );
    // The three posts, each timed until its lead was durable.
    assert_eq!(
        gauge("leadgate_ingest_request_duration_seconds_count"),
        Some(3),
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

    // Withdrawals: Ruth's reaches HubSpot (the mapping sends it); Oliver's
    // stops the job that waited.
    let withdraw = async |person: &Value, body: Value| {
        let id = person["id"].as_str().unwrap();
        client
            .post(format!("{url}/v1/persons/{id}/consent"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let refused = withdraw(&ruth, json!({"withdrawn": false})).await;
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "invalid_consent");
    assert_eq!(refused["error"]["field"], "withdrawn");
    let answer = withdraw(
        &ruth,
        json!({"withdrawn": true, "at": "2026-12-01T09:30:00+01:00"}),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let receipt: Value = answer.json().await.unwrap();
    assert_eq!(receipt["withdrawn_at"], "2026-12-01T08:30:00Z", "{receipt}");
    assert_eq!(receipt["updates"][0]["destination"], "hubspot", "{receipt}");
    assert!(receipt["updates"][0]["held"].is_null(), "{receipt}");
    let answer = withdraw(&oliver, json!({"withdrawn": true})).await;
    assert_eq!(answer.status(), 200);
    let started = Instant::now();
    loop {
        let contact = sim.handle().contacts_by_email(boston)[0].clone();
        if contact
            .properties
            .get("leadgate_consent_withdrawn_at")
            .map(String::as_str)
            == Some("2026-12-01T08:30:00Z")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{contact:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = settled(0).await;
    assert!(sim.handle().contacts_by_email(london).is_empty());
    let oliver_view = get_admin_json(
        &client,
        &token,
        &format!("{url}/v1/leads/{}", oliver["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        oliver_view["deliveries"][0]["state"], "dead",
        "{oliver_view}"
    );
    assert_eq!(
        oliver_view["deliveries"][0]["discarded"]["reason"], "consent withdrawn",
        "{oliver_view}"
    );
    let missing = withdraw(&json!({"id": "no-such-person"}), json!({"withdrawn": true})).await;
    assert_eq!(missing.status(), 404, "{stats}");

    // Ruth's next lead changes her record, but nothing more goes out.
    let later = post(json!({"email": boston, "phone": "+1 415 555 0142"})).await;
    assert_eq!(later["status"], "duplicate", "{later}");
    let stats = settled(1).await;
    assert_eq!(
        stats["store"]["destinations"]["hubspot"]["held"], 1,
        "{stats}"
    );
    let id = later["id"].as_str().unwrap();
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{id}")).await;
    assert_eq!(view["deliveries"][0]["held"], "consent_withdrawn", "{view}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let contact = &sim.handle().contacts_by_email(boston)[0];
    assert!(!contact.properties.contains_key("phone"), "{contact:?}");
    host.terminate(Duration::from_secs(30)).await;
    sim.shutdown().await;
}
