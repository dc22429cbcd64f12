//! The walking skeleton, end to end: HTTP ingest → normalize → dedupe →
//! map → outbox → the real HubSpot adapter component → the simulator.

use base64::Engine as _;
use leadgate_e2e::{SCRAPER_KEY, TestEnv, WEBFORM_KEY, WEBHOOK_SECRET};
use leadgate_sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Distinct people: distinct emails, names and companies.
fn lead(n: u32) -> Value {
    const FIRST: [&str; 8] = [
        "jane", "omar", "li", "sofia", "kwame", "ingrid", "raj", "mia",
    ];
    const LAST: [&str; 8] = [
        "DOE", "haddad", "wei", "rossi", "mensah", "berg", "patel", "novak",
    ];
    json!({
        "email": format!("Person.{n}@Example.com"),
        "first_name": format!("  {} ", FIRST[n as usize % 8]),
        "last_name": format!("{}-{}", LAST[(n as usize / 8) % 8], n),
        "company": format!("Company {n} Inc"),
    })
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let body = lead(1).to_string();
    let (status, answer) = env.post_leads(None, &body).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (status, _) = env.post_leads(Some("not-a-key-at-all"), &body).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    env.stop().await
}

#[tokio::test]
async fn malformed_json_is_400() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    for body in [
        "{\"email\": ",
        "[{\"email\":\"a@b.co\"},",
        "{\"a\":1}\n{oops}",
    ] {
        let (status, answer) = env.post_leads(Some(SCRAPER_KEY), body).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["error"]["code"], "malformed_json");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("line")
        );
    }
    env.stop().await
}

#[tokio::test]
async fn invalid_leads_are_422_naming_field_and_rule() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let cases = [
        (json!({"first_name": "Ann"}), "email", "required_one_of"),
        (json!({"email": "jane@"}), "email", "invalid_email"),
        (json!({"phone": "12345"}), "phone", "invalid_phone"),
        (json!({"email": ["a@b.com"]}), "email", "wrong_type"),
        (
            json!({"email": "a@b.com", "first_name": {"x": 1}}),
            "first_name",
            "wrong_type",
        ),
        (json!("just a string"), "", "not_an_object"),
    ];
    for (body, field, rule) in cases {
        let (status, answer) = env.post_leads(Some(SCRAPER_KEY), &body.to_string()).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error = &answer["results"][0]["errors"][0];
        assert_eq!(
            (error["field"].as_str(), error["rule"].as_str()),
            (Some(field), Some(rule)),
            "{body}"
        );
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        env.host.store.counts().await?.leads,
        0,
        "nothing invalid is stored"
    );
    env.stop().await
}

#[tokio::test]
async fn a_batch_keeps_good_leads_and_reports_bad_ones() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let body = json!([
        lead(1),
        {"email": "broken@", "first_name": "X"},
        lead(2),
        {"phone": 4155552671u64},
    ]);
    let (status, answer) = env.post_leads(Some(SCRAPER_KEY), &body.to_string()).await?;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["errors"][0]["rule"], "invalid_email");
    assert_eq!(results[2]["status"], "accepted");
    assert_eq!(results[3]["errors"][0]["field"], "phone");
    assert_eq!(results[3]["errors"][0]["rule"], "wrong_type");
    env.drain(20).await?;
    let sim = env.sim();
    assert_eq!(sim.count_by_email("person.1@example.com"), 1);
    assert_eq!(sim.count_by_email("person.2@example.com"), 1);
    assert_eq!(sim.contact_count(), 2);
    env.stop().await
}

#[tokio::test]
async fn ndjson_is_accepted() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let body = format!("{}\n{}\n", lead(1), lead(2));
    let (status, answer) = env.post_leads(Some(SCRAPER_KEY), &body).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["accepted"], 2);
    env.stop().await
}

#[tokio::test]
async fn exact_duplicates_across_sources_are_pushed_once() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let first = json!({"email": "  Mary.OBrien@Example.COM ", "phone": "(415) 231-2671", "name": "mary o'brien"});
    let (status, a) = env
        .post_leads(Some(SCRAPER_KEY), &first.to_string())
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let first_id = a["results"][0]["id"].as_str().unwrap().to_string();
    // Same person from the other source: same email, other case.
    let again = json!({"email": "mary.obrien@example.com", "first_name": "Mary"});
    let (_, b) = env
        .post_leads(Some(WEBFORM_KEY), &again.to_string())
        .await?;
    assert_eq!(b["results"][0]["status"], "duplicate");
    assert_eq!(b["results"][0]["duplicate_of"], first_id.as_str());
    // Same person by phone only, written the international way.
    let by_phone = json!({"phone": "+1 415-231-2671"});
    let (_, c) = env
        .post_leads(Some(WEBFORM_KEY), &by_phone.to_string())
        .await?;
    assert_eq!(c["results"][0]["status"], "duplicate");
    env.drain(20).await?;
    let sim = env.sim();
    assert_eq!(sim.contact_count(), 1);
    let contact = &sim.contacts()[0];
    assert_eq!(contact.properties["email"], "mary.obrien@example.com");
    assert_eq!(contact.properties["phone"], "+14152312671");
    assert_eq!(contact.properties["firstname"], "Mary");
    assert_eq!(contact.properties["lastname"], "O'Brien");
    env.stop().await
}

#[tokio::test]
async fn lead_view_shows_decision_deliveries_and_audit_trail() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let (_, a) = env
        .post_leads(Some(SCRAPER_KEY), &lead(7).to_string())
        .await?;
    let id = a["results"][0]["id"].as_str().unwrap().to_string();
    env.drain(20).await?;
    let (status, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["normalized"]["email"], "person.7@example.com");
    assert_eq!(view["normalized"]["first_name"], "Mia");
    assert_eq!(view["dedupe"]["decision"], "new");
    let delivery = &view["deliveries"][0];
    assert_eq!(delivery["destination"], "hubspot");
    assert_eq!(delivery["state"], "delivered");
    let crm_id = delivery["crm_id"].as_str().unwrap();
    assert!(
        env.sim().contact(crm_id).is_some(),
        "the CRM id is the simulator's"
    );
    let stages: Vec<&str> = view["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["ingest", "normalize", "dedupe", "route", "delivery"]
    );
    assert!(
        view["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at_ms"].as_i64().unwrap() > 0)
    );
    let (status, _) = env.get_json("/v1/leads/nope").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.stop().await
}

#[tokio::test]
async fn a_429_storm_recovers_without_duplicate_records() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    env.sim().set_faults(Faults {
        rate_limit_next: 4,
        ..Faults::default()
    });
    let body: Vec<Value> = (0..30).map(lead).collect();
    env.post_accepted(SCRAPER_KEY, &body).await?;
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_delivered, 30);
    let sim = env.sim();
    assert!(sim.stats().rate_limited >= 4, "the storm happened");
    assert_eq!(sim.contact_count(), 30);
    for n in 0..30 {
        assert_eq!(sim.count_by_email(&format!("person.{n}@example.com")), 1);
    }
    env.stop().await
}

#[tokio::test]
async fn a_5xx_burst_recovers_without_duplicate_records() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    env.sim().set_faults(Faults {
        error_5xx_next: 5,
        ..Faults::default()
    });
    for n in 0..10 {
        let (status, _) = env
            .post_leads(Some(SCRAPER_KEY), &lead(n).to_string())
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let counts = env.drain(60).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (10, 0));
    let sim = env.sim();
    assert!(sim.stats().server_errors >= 5);
    assert_eq!(sim.contact_count(), 10);
    env.stop().await
}

#[tokio::test]
async fn a_job_that_always_fails_ends_in_the_dead_letter_queue() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), "[delivery]\nmax_attempts = 3\n").await?;
    env.sim().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let (_, a) = env
        .post_leads(Some(SCRAPER_KEY), &lead(1).to_string())
        .await?;
    let id = a["results"][0]["id"].as_str().unwrap().to_string();
    let counts = env.drain(30).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (0, 1));
    let (_, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
    let job = &view["deliveries"][0];
    assert_eq!(job["state"], "dead");
    assert_eq!(job["attempts"], 3);
    let error = job["last_error"].as_str().unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("503"),
        "{error}"
    );
    let (_, dlq) = env.get_json("/v1/dead-letters").await?;
    assert_eq!(dlq["dead_letters"][0]["lead_id"], id.as_str());
    assert_eq!(env.sim().contact_count(), 0);
    env.stop().await
}

#[tokio::test]
async fn a_lead_the_crm_cannot_take_is_dead_lettered_with_the_property_named() -> anyhow::Result<()>
{
    let env = TestEnv::default().await?;
    // Valid for the source (a phone), but HubSpot upserts by email.
    let (status, a) = env
        .post_leads(
            Some(SCRAPER_KEY),
            &json!({"phone": "415-231-2671"}).to_string(),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = a["results"][0]["id"].as_str().unwrap().to_string();
    env.drain(10).await?;
    let (_, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
    let job = &view["deliveries"][0];
    assert_eq!(job["state"], "dead");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap()
            .contains("required CRM property email")
    );
    env.stop().await
}

#[tokio::test]
async fn the_adapter_cannot_call_hosts_outside_its_allow_list() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[delivery]\nmax_attempts = 2\n[destinations.hubspot]\nallowed_hosts = [\"api.hubapi.com\"]\n",
    )
    .await?;
    let (_, a) = env
        .post_leads(Some(SCRAPER_KEY), &lead(1).to_string())
        .await?;
    let id = a["results"][0]["id"].as_str().unwrap().to_string();
    env.drain(20).await?;
    let (_, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
    let error = view["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1 is not allowed"), "{error}");
    assert_eq!(
        env.sim().stats().requests_total,
        0,
        "no request left the host"
    );
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    assert!(plugins["plugins"][0]["http_denied"].as_u64().unwrap() >= 1);
    env.stop().await
}

#[tokio::test]
async fn plugins_endpoint_shows_the_loaded_component() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    env.post_leads(Some(SCRAPER_KEY), &lead(1).to_string())
        .await?;
    env.drain(20).await?;
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    let p = &plugins["plugins"][0];
    assert_eq!(p["adapter"], "hubspot");
    assert_eq!(p["version"], "0.1.0");
    assert_eq!(p["hash"].as_str().unwrap().len(), 16);
    assert_eq!(p["wit"], "0.2.1");
    assert_eq!(p["erasure"], true, "the HubSpot adapter can delete");
    assert!(
        p["calls"].as_u64().unwrap() >= 1,
        "push ran in the component"
    );
    env.stop().await
}

fn sign(method: &str, url: &str, body: &str, ts: &str) -> String {
    let source = format!("{method}{url}{body}{ts}");
    base64::engine::general_purpose::STANDARD.encode(leadgate_runtime::hmac_sha256(
        WEBHOOK_SECRET.as_bytes(),
        source.as_bytes(),
    ))
}

#[tokio::test]
async fn signed_webhooks_are_verified_by_the_adapter() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let url = env.url("/v1/webhooks/hubspot");
    let body = r#"[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":1700000000000,"subscriptionType":"contact.creation","objectId":51000000001}]"#;
    let ts = leadgate::now_ms().to_string();
    let send = |sig: String, ts: String| {
        env.client
            .post(&url)
            .header("X-HubSpot-Signature-v3", sig)
            .header("X-HubSpot-Signature-Version", "v3")
            .header("X-HubSpot-Request-Timestamp", ts)
            .body(body)
            .send()
    };
    let ok = send(sign("POST", &url, body, &ts), ts.clone()).await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await?["received"], 1);
    // The same delivery again, even freshly signed (HubSpot retries with a
    // new timestamp): answered, not taken twice.
    let later = (leadgate::now_ms() + 1).to_string();
    let again = send(sign("POST", &url, body, &later), later).await?;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await?["replayed"], true);
    assert_eq!(
        env.metric("leadgate_webhook_events_total").await?,
        Some(1.0)
    );
    let forged = send(sign("POST", &url, "[]", &ts), ts.clone()).await?;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        forged.json::<Value>().await?["error"]["code"],
        "bad_signature"
    );
    let old = (leadgate::now_ms() - 10 * 60 * 1000).to_string();
    let stale = send(sign("POST", &url, body, &old), old).await?;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        stale.json::<Value>().await?["error"]["code"],
        "stale_timestamp"
    );
    let nowhere = env
        .client
        .post(env.url("/v1/webhooks/nope"))
        .body("[]")
        .send()
        .await?;
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    env.stop().await
}

#[tokio::test]
async fn the_demo_file_ends_with_one_contact_per_person() -> anyhow::Result<()> {
    leadgate_runtime::outbound::install_crypto_provider();
    let s = leadgate::cli::demo::run_demo(leadgate::cli::demo::DEMO_LEADS).await?;
    assert_eq!(s.received, 1000);
    assert_eq!(s.unique_persons, 600);
    assert_eq!(s.rejected, 55);
    assert_eq!(s.accepted, 945);
    assert_eq!(s.duplicates, 345);
    // The host's deliveries are what the CRM took: 600 creates, and an
    // update for each duplicate that brought a field the contact lacked (a
    // phone, a company, a fuller name), as the simulator counted them. A
    // job delivered twice, or a person created twice under one email (an
    // update in HubSpot's upsert), breaks the sum.
    assert_eq!(s.delivered, 600 + s.updates_from_merges);
    assert!(s.updates_from_merges > 0 && s.updates_from_merges <= 345);
    assert_eq!(s.dead_lettered, 0);
    assert_eq!(s.crm_records, 600);
    assert_eq!(s.crm_duplicate_emails, 0);
    Ok(())
}

/// HubSpot's trap: a contact keeps the address of a contact merged into
/// it as a secondary email (`hs_additional_emails`), and an upsert by that
/// address updates it, answering with the contact's primary email. The
/// adapter must take that contact as the record (not retry, not create a
/// second one) and its read-back must accept the address as a secondary.
#[tokio::test]
async fn a_contact_known_by_a_secondary_email_is_updated_not_duplicated() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    let first = json!({"email": "ada@old.example", "first_name": "Ada", "last_name": "Byron",
                       "company": "Analytical Engines"});
    env.post_accepted(SCRAPER_KEY, &[first]).await?;
    env.drain(30).await?;
    // In HubSpot, someone merged a contact with ada@new.example into hers.
    let contact = env
        .sim()
        .add_additional_email("ada@old.example", "ada@new.example")
        .map_err(anyhow::Error::msg)?;
    // To leadgate this lead is someone else (other name, no shared key).
    let second = json!({"email": "ada@new.example", "first_name": "Augusta", "last_name": "King",
                        "company": "Lovelace Consulting", "title": "Countess"});
    env.post_accepted(SCRAPER_KEY, &[second]).await?;
    let counts = env.drain(30).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (2, 0));
    assert_eq!(env.sim().contact_count(), 1, "no second contact");
    let stored = env.sim().contact(&contact).expect("the contact");
    assert_eq!(stored.email(), Some("ada@old.example"), "the primary stays");
    assert_eq!(stored.properties["jobtitle"], "Countess");
    let mismatches = env
        .metric("leadgate_delivery_readback_mismatches_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(mismatches, 0.0, "the read-back accepts the secondary email");
    env.stop().await
}
