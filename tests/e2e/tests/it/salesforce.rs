//! The Salesforce adapter through the whole host, with the host's OAuth 2.0
//! token source, into the simulator's Salesforce (REST sObject Collections)
//! and its token endpoint: one record per person, a session that expires
//! renewed with one token call and the records sent again, a revoked
//! refresh token pausing the destination (few token calls, nothing
//! dead-lettered) until an operator resumes it.

use std::time::Duration;

use leadgate_e2e::{SCRAPER_KEY, TestEnv, distinct_person, refresh_token_grant};
use leadgate_sim::{DEFAULT_REFRESH_TOKEN, SimConfig, SimHandle, Vendor};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A Salesforce destination whose token comes from the simulator's
/// `/services/oauth2/token`; the token answer's `instance_url` (the
/// simulator) is where the adapter calls.
fn salesforce() -> String {
    "[destinations.salesforce]\nadapter = \"salesforce\"\nmapping = \"salesforce.yaml\"\n\
     allowed_hosts = [\"127.0.0.1\"]\n"
        .to_string()
        + &refresh_token_grant("salesforce", "/services/oauth2/token")
}

fn person(n: u32) -> Value {
    distinct_person("sf", n)
}

async fn post(env: &TestEnv, leads: &[Value]) -> anyhow::Result<Value> {
    env.post_accepted(SCRAPER_KEY, leads).await
}

fn assert_one_lead_each(sim: &SimHandle, people: std::ops::Range<u32>) {
    for n in people {
        let email = format!("sf.{n}@example.com");
        assert_eq!(sim.salesforce_count_by_email("Lead", &email), 1, "{email}");
    }
}

/// The destination's entry in `GET /v1/plugins`.
async fn status(env: &TestEnv) -> anyhow::Result<Value> {
    let (code, plugins) = env.get_json("/v1/plugins").await?;
    assert_eq!(code, StatusCode::OK);
    Ok(plugins["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["destination"] == "salesforce"))
        .cloned()
        .unwrap_or(Value::Null))
}

#[tokio::test]
async fn leads_reach_salesforce_once_per_person_with_a_host_owned_token() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &salesforce()).await?;
    let sim = env.sim();
    // 10 people, the first 3 twice with a new title: the merge's update
    // lands on the same Lead (upsert by the External ID, leadgate's key of
    // the person).
    let mut leads: Vec<Value> = (0..10).map(person).collect();
    for n in 0..3 {
        let mut again = person(n);
        again["title"] = json!("Chief Engineer");
        leads.push(again);
    }
    post(&env, &leads).await?;
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_eq!(sim.salesforce_records("Lead").len(), 10);
    assert_one_lead_each(&sim, 0..10);
    let lead = sim
        .salesforce_records("Lead")
        .into_iter()
        .find(|r| r.fields["Email"] == "sf.0@example.com")
        .unwrap();
    assert_eq!(lead.fields["Title"], "Chief Engineer");
    assert_eq!(lead.fields["LastName"], "Tester");
    assert_eq!(lead.fields["Company"], "SF 0 Holdings");
    assert!(
        lead.fields["Leadgate_Id__c"]
            .as_str()
            .is_some_and(|k| k.ends_with("/salesforce/v1")),
        "{:?}",
        lead.fields
    );
    // One token for all of it; the adapter never saw it.
    assert_eq!(sim.oauth_calls(Vendor::Salesforce), 1);
    let s = status(&env).await?;
    assert_eq!(s["oauth"]["paused"], false, "{s}");
    assert_eq!(s["oauth"]["token_requests"], 1, "{s}");
    env.stop().await
}

#[tokio::test]
async fn an_expired_session_costs_one_token_call_and_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &salesforce()).await?;
    let sim = env.sim();
    post(&env, &(0..5).map(person).collect::<Vec<_>>()).await?;
    env.drain(60).await?;
    assert_eq!(sim.oauth_calls(Vendor::Salesforce), 1);
    // The session dies (Salesforce's answer carries no lifetime: the host
    // learns it from the 401 INVALID_SESSION_ID).
    sim.expire_oauth_access_tokens();
    // Several posts at once, so several deliveries meet the dead session.
    let chunk = |c: u32| -> Vec<Value> { (10 + c * 8..18 + c * 8).map(person).collect() };
    let (c0, c1, c2, c3, c4) = (chunk(0), chunk(1), chunk(2), chunk(3), chunk(4));
    let answers = tokio::join!(
        post(&env, &c0),
        post(&env, &c1),
        post(&env, &c2),
        post(&env, &c3),
        post(&env, &c4)
    );
    for answer in [answers.0, answers.1, answers.2, answers.3, answers.4] {
        answer?;
    }
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_one_lead_each(&sim, 10..50);
    assert_eq!(
        sim.oauth_calls(Vendor::Salesforce),
        2,
        "one renewal for every delivery that met the expired session"
    );
    // The refused records went again at once with the new token: none of
    // them waited out a retry.
    assert_eq!(
        env.metric("leadgate_delivery_retries_total").await?,
        Some(0.0)
    );
    env.stop().await
}

#[tokio::test]
async fn a_revoked_grant_pauses_the_destination_until_resumed() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &salesforce()).await?;
    let sim = env.sim();
    post(&env, &[person(0)]).await?;
    env.drain(60).await?;
    // The authorization is revoked at Salesforce: the session dies and the
    // refresh token is refused with invalid_grant.
    sim.revoke_refresh_tokens();
    sim.expire_oauth_access_tokens();
    post(&env, &(1..6).map(person).collect::<Vec<_>>()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let paused = loop {
        let s = status(&env).await?;
        if s["oauth"]["paused"] == true {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "never paused: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(paused["paused"], true, "{paused}");
    let error = paused["oauth"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("invalid_grant"), "{error}");
    // Paused, the host stops calling: a few seconds more add no token call.
    let calls = sim.oauth_calls(Vendor::Salesforce);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sim.oauth_calls(Vendor::Salesforce), calls);
    assert!(calls <= 3, "{calls} token calls");
    assert_eq!(
        env.metric("leadgate_destination_paused{destination=\"salesforce\"}")
            .await?,
        Some(1.0)
    );
    let (_, health) = env.get_json("/v1/stats").await?;
    assert_eq!(
        health["store"]["jobs_dead"], 0,
        "nothing dead-lettered: {health}"
    );
    assert_eq!(sim.salesforce_records("Lead").len(), 1);

    // The customer authorizes again; the operator resumes the destination.
    sim.add_refresh_token(DEFAULT_REFRESH_TOKEN, Some(Vendor::Salesforce));
    let resumed = env
        .admin
        .post(env.url("/v1/destinations/salesforce/resume"))
        .send()
        .await?;
    assert_eq!(resumed.status(), StatusCode::OK);
    let answer: Value = resumed.json().await?;
    assert_eq!(answer["was_paused"], true, "{answer}");
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_one_lead_each(&sim, 0..6);
    assert_eq!(status(&env).await?["paused"], false);
    env.stop().await
}

#[tokio::test]
async fn a_lead_salesforces_duplicate_rule_blocks_is_the_record_it_matched() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &salesforce()).await?;
    let sim = env.sim();
    // A sales rep typed this lead in by hand before leadgate saw it.
    let typed = reqwest::Client::new()
        .post(format!(
            "{}/services/data/v62.0/sobjects/Lead",
            env.sim.base_url()
        ))
        .bearer_auth("sim-token")
        .json(&json!({"LastName": "Hand", "Company": "Typed Inc", "Email": "sf.7@example.com"}))
        .send()
        .await?;
    assert_eq!(typed.status(), StatusCode::CREATED);
    let existing: Value = typed.json().await?;
    let existing = existing["id"].as_str().unwrap().to_string();
    let answer = post(&env, &[person(7)]).await?;
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    // Salesforce's standard lead rule refused a second record; the
    // delivery is the record it matched, and the CRM still has one.
    assert_eq!(sim.salesforce_count_by_email("Lead", "sf.7@example.com"), 1);
    let id = answer["results"][0]["id"].as_str().unwrap();
    let (_, lead) = env.get_json(&format!("/v1/leads/{id}")).await?;
    assert!(lead.to_string().contains(&existing), "{lead}");
    env.stop().await
}

/// The right to erasure reaches Salesforce: the person's Lead is deleted
/// (`DELETE /sobjects/Lead/{id}`), the other person's stays.
#[tokio::test]
async fn an_erased_person_is_deleted_at_salesforce() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &salesforce()).await?;
    let sim = env.sim();
    let answer = post(&env, &[person(0), person(1)]).await?;
    env.drain(60).await?;
    assert_one_lead_each(&sim, 0..2);
    let (_, ids) = env.erase_and_wait(&answer, "salesforce").await?;
    assert!(sim.salesforce_record(&ids[0]).is_none());
    assert_eq!(sim.salesforce_count_by_email("Lead", "sf.0@example.com"), 0);
    assert_one_lead_each(&sim, 1..2);
    env.stop().await
}
