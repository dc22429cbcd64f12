//! Survivorship end to end: a duplicate's new fields merge into its
//! person's golden record, with provenance, and reach the CRM as an update
//! of the same record, in acceptance order.

use leadgate_e2e::{SCRAPER_KEY, TestEnv, WEBFORM_KEY};
use leadgate_sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post(env: &TestEnv, key: &str, lead: Value) -> anyhow::Result<Value> {
    let answer = env.post_accepted(key, &[lead]).await?;
    Ok(answer["results"][0].clone())
}

#[tokio::test]
async fn a_duplicate_updates_the_same_crm_record_with_provenance() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let first = post(
        &env,
        WEBFORM_KEY,
        json!({"email": "Ann@Acme.com", "first_name": "ann", "company": "Acme Inc"}),
    )
    .await?;
    let person_id = first["id"].as_str().unwrap().to_string();
    env.drain(30).await?;
    let before = env.sim().contacts_by_email("ann@acme.com");
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].properties.get("phone"), None);

    // Days later a scraper finds her again with a phone, a title and her
    // full name.
    let second = post(
        &env,
        SCRAPER_KEY,
        json!({"email": "ann@acme.com", "name": "Ann Lee", "phone": "(415) 555-0100", "title": "CTO"}),
    )
    .await?;
    assert_eq!(second["status"], "duplicate");
    assert_eq!(second["duplicate_of"], person_id);
    env.drain(30).await?;
    let after = env.sim().contacts_by_email("ann@acme.com");
    assert_eq!(after.len(), 1, "the same record, updated");
    assert_eq!(after[0].id, before[0].id);
    let props = &after[0].properties;
    assert_eq!(props["phone"], "+14155550100");
    assert_eq!(props["jobtitle"], "CTO");
    assert_eq!(props["lastname"], "Lee");
    assert_eq!(props["company"], "Acme Inc", "kept from the first lead");

    // A third copy with only another phone: kept as an alternate; HubSpot's
    // mapping does not carry alternates, so no update is sent.
    let third = post(
        &env,
        SCRAPER_KEY,
        json!({"email": "ann@acme.com", "phone": "+1 415 555 0199"}),
    )
    .await?;
    env.drain(30).await?;
    let third_id = third["id"].as_str().unwrap();
    let (_, view) = env.get_json(&format!("/v1/leads/{third_id}")).await?;
    assert_eq!(view["merge"][0]["action"], "alternate_added", "{view}");
    assert!(view["deliveries"].as_array().unwrap().is_empty());
    assert!(
        view["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "merged")
    );

    let (status, person) = env.get_json(&format!("/v1/persons/{person_id}")).await?;
    assert_eq!(status, StatusCode::OK);
    let p = &person["person"];
    assert_eq!(p["record"]["phone"], "+14155550100");
    assert_eq!(p["other_phones"], json!(["+14155550199"]));
    assert_eq!(p["provenance"]["phone"]["source"], "scraper");
    assert_eq!(p["provenance"]["company"]["source"], "webform");
    assert_eq!(p["provenance"]["company"]["rule"], "first");
    assert_eq!(p["provenance"]["last_name"]["rule"], "most_complete");
    assert_eq!(p["revision"], 2);
    assert_eq!(person["leads"].as_array().unwrap().len(), 3);
    let (status, _) = env.get_json("/v1/persons/nobody").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await
}

#[tokio::test]
async fn updates_to_one_person_arrive_in_acceptance_order() -> anyhow::Result<()> {
    // Slow CRM answers keep the earlier jobs in flight while later updates
    // queue up behind them.
    let env = TestEnv::start(SimConfig::default(), "[delivery]\nconcurrency = 4\n").await?;
    env.sim().set_faults(Faults {
        latency_ms: 40,
        // The first attempts fail: the person's jobs wait for their retries.
        error_5xx_next: 3,
        ..Faults::default()
    });
    let titles = ["Engineer", "Lead", "Manager", "Director", "VP", "CTO"];
    post(&env, WEBFORM_KEY, json!({"email": "ord@example.com"})).await?;
    for title in titles {
        post(
            &env,
            SCRAPER_KEY,
            json!({"email": "ord@example.com", "title": title}),
        )
        .await?;
    }
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0);
    let contacts = env.sim().contacts_by_email("ord@example.com");
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].properties["jobtitle"], "CTO",
        "the last update wins"
    );
    env.stop().await
}
