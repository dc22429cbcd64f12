//! The right to erasure, end to end on a running host with encryption at
//! rest off (so the bytes on disk show what the erasure itself removed):
//! a person with a merged duplicate, one delivery done and an update
//! waiting on a CRM outage, is erased with `DELETE /v1/persons/{id}`. The
//! receipt names what went where; the person's email is nowhere in any
//! file of the store (database, WAL); the waiting update never reaches the
//! CRM; the same person sent again is a new person, before and after a
//! restart; another person is untouched.

use std::path::Path;
use std::time::{Duration, Instant};

use leadgate_sim::{Faults, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, files_holding, free_port, generated_admin_token, get_admin_json, host_config, post_lead,
    wait_ready,
};

const KEY: &str = "erasure-test-source-01";
const GONE: &str = "philippa.erasable@forget-example.org";
const KEPT: &str = "theodore.kept@forget-example.org";

fn on_disk(dir: &Path, needle: &str) -> Vec<String> {
    files_holding(dir, &[needle.to_string()])
}

#[tokio::test]
async fn an_erased_person_is_gone_from_disk_index_and_queue() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("leadgate.db");
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("leadgate.toml");
    let base = host_config(
        port,
        &db,
        KEY,
        &sim.base_url(),
        // The deletion waits out the CRM's outage below (retried, never
        // dead-lettered, however slow the machine).
        "backoff_base_ms = 50\nbackoff_cap_ms = 200\nlinger_ms = 5\npoll_ms = 20\nmax_attempts = 100000",
    );
    std::fs::write(
        &config,
        format!("{base}\n[store.encryption]\nenabled = false\n"),
    )
    .unwrap();
    let log = dir.path().join("host.log");
    let host = Host::spawn(&config, &log);
    let client = reqwest::Client::new();
    wait_ready(&client, &url).await;
    let token = generated_admin_token(&db);
    let post = async |lead: Value| post_lead(&client, &url, KEY, lead).await;
    let drained = async || {
        let started = Instant::now();
        loop {
            let stats = get_admin_json(&client, &token, &format!("{url}/v1/stats")).await;
            if stats["store"]["jobs_pending"] == 0 && stats["store"]["jobs_leased"] == 0 {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{stats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let first =
        post(json!({"email": GONE, "first_name": "Philippa", "last_name": "Erasable"})).await;
    let person = first["id"].as_str().unwrap().to_string();
    let kept = post(json!({"email": KEPT, "first_name": "Theodore"})).await;
    drained().await;
    assert_eq!(sim.handle().contacts_by_email(GONE).len(), 1);
    // The CRM goes down; the person sends a phone: merged, the update waits.
    sim.handle().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let second =
        post(json!({"email": GONE, "phone": "+1 415 555 0199", "company": "Forget Co"})).await;
    assert_eq!(second["status"], "duplicate", "{second}");
    assert!(
        !on_disk(&data, GONE).is_empty(),
        "plain text before the erasure"
    );

    let erase = |id: &str| {
        client
            .delete(format!("{url}/v1/persons/{id}"))
            .bearer_auth(&token)
            .send()
    };
    let answer = erase(&person).await.unwrap();
    assert_eq!(answer.status(), 200);
    let receipt: Value = answer.json().await.unwrap();
    assert_eq!(receipt["person_id"], person, "{receipt}");
    assert_eq!(receipt["leads"].as_array().unwrap().len(), 2, "{receipt}");
    assert_eq!(receipt["golden_record"], true, "{receipt}");
    assert!(
        receipt["deliveries_stopped"].as_u64().unwrap() >= 1,
        "{receipt}"
    );
    assert!(receipt["jobs"].as_u64().unwrap() >= 2, "{receipt}");
    assert!(receipt["audit_entries"].as_u64().unwrap() >= 1, "{receipt}");
    assert_eq!(receipt["dedupe_records"], 2, "{receipt}");
    assert_eq!(receipt["scrubbed"], true, "{receipt}");
    let crm = &receipt["destinations"][0];
    assert_eq!(crm["destination"], "hubspot", "{receipt}");
    assert_eq!(
        crm["crm_ids"][0],
        sim.handle().contacts_by_email(GONE)[0].id.as_str(),
        "{receipt}"
    );
    // Its deletion at the CRM is a job of the outbox (the CRM is down).
    assert_eq!(crm["deleted"], false, "{receipt}");
    let deletion = crm["deletion_jobs"][0].as_str().expect("a deletion job");
    assert_eq!(
        crm["deletion_jobs"].as_array().unwrap().len(),
        1,
        "{receipt}"
    );
    let crm_id = crm["crm_ids"][0].as_str().unwrap().to_string();
    assert!(
        !receipt.to_string().contains("philippa"),
        "no personal data in the receipt"
    );

    // Nothing of the person in any file; the other person still there.
    assert_eq!(on_disk(&data, GONE), Vec::<String>::new());
    assert_eq!(on_disk(&data, "Erasable"), Vec::<String>::new());
    assert_eq!(on_disk(&data, "4155550199"), Vec::<String>::new());
    assert!(!on_disk(&data, KEPT).is_empty());
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{person}")).await;
    assert!(view["erased_at_ms"].is_i64(), "{view}");
    assert_eq!(view["raw"], json!({}), "{view}");
    assert!(
        view["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["stage"] == "privacy" && e["event"] == "erased"),
        "{view}"
    );
    let kept_view = get_admin_json(
        &client,
        &token,
        &format!("{url}/v1/leads/{}", kept["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(kept_view["raw"]["email"], KEPT);
    let gone = client
        .get(format!("{url}/v1/persons/{person}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "an erased person is no person");
    let unknown = erase("no-such-person").await.unwrap();
    assert_eq!(unknown.status(), 404);

    // The CRM comes back: the stopped update never goes out, and the
    // contact is deleted there for good (HubSpot's GDPR delete).
    let before = sim.handle().stats();
    sim.handle().set_faults(Faults::default());
    drained().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{person}")).await;
    assert!(
        sim.handle().contacts_by_email(GONE).is_empty(),
        "the contact is deleted at the CRM: {view}"
    );
    assert!(sim.handle().contact(&crm_id).is_none());
    assert_eq!(sim.handle().contacts_by_email(KEPT).len(), 1);
    let after = sim.handle().stats();
    assert_eq!(
        (after.records_created, after.records_updated),
        (before.records_created, before.records_updated),
        "the stopped update went out"
    );
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{person}")).await;
    let job = view["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == deletion)
        .unwrap_or_else(|| panic!("the deletion job among the lead's deliveries: {view}"));
    assert_eq!(job["state"], "delivered", "{job}");
    assert_eq!(job["crm_id"], crm_id, "{job}");
    assert_eq!(job["outcome"], format!("deleted {crm_id}"), "{job}");
    // The person sent again is a new person, now and after a restart.
    let again = post(json!({"email": GONE})).await;
    assert_eq!(again["status"], "accepted", "{again}");
    host.terminate(Duration::from_secs(30)).await;
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let later = post(json!({"email": GONE})).await;
    assert_eq!(later["status"], "duplicate", "{later}");
    assert_eq!(later["duplicate_of"], again["id"], "{later}");
    host.terminate(Duration::from_secs(30)).await;
    sim.shutdown().await;
}
