//! The Zoho CRM adapter through the whole host, with the host's OAuth 2.0
//! token source, into the simulator's Zoho CRM (v8 Records API) and its
//! accounts token endpoint: one record per person, the `api_domain` of the
//! token answer as where to call, an expired token renewed with one token
//! call and the records sent again.

use leadgate_e2e::{SCRAPER_KEY, TestEnv, distinct_person, refresh_token_grant};
use leadgate_sim::{SimConfig, SimHandle, Vendor};
use serde_json::{Value, json};

fn zoho() -> String {
    "[destinations.zoho]\nadapter = \"zoho\"\nmapping = \"zoho.yaml\"\n\
     allowed_hosts = [\"127.0.0.1\"]\n"
        .to_string()
        + &refresh_token_grant("zoho", "/oauth/v2/token")
}

fn person(n: u32) -> Value {
    distinct_person("zoho", n)
}

async fn post(env: &TestEnv, leads: &[Value]) -> anyhow::Result<Value> {
    env.post_accepted(SCRAPER_KEY, leads).await
}

fn assert_one_lead_each(sim: &SimHandle, people: std::ops::Range<u32>) {
    for n in people {
        let email = format!("zoho.{n}@example.com");
        assert_eq!(sim.zoho_count_by_email("Leads", &email), 1, "{email}");
    }
}

#[tokio::test]
async fn leads_reach_zoho_once_per_person_with_a_host_owned_token() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &zoho()).await?;
    let sim = env.sim();
    let mut leads: Vec<Value> = (0..10).map(person).collect();
    for n in 0..3 {
        let mut again = person(n);
        again["title"] = json!("Chief Engineer");
        leads.push(again);
    }
    post(&env, &leads).await?;
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_eq!(sim.zoho_records("Leads").len(), 10);
    assert_one_lead_each(&sim, 0..10);
    let lead = sim
        .zoho_records("Leads")
        .into_iter()
        .find(|r| r.fields["Email"] == "zoho.0@example.com")
        .unwrap();
    assert_eq!(lead.fields["Designation"], "Chief Engineer");
    assert_eq!(lead.fields["Company"], "ZOHO 0 Holdings");
    assert!(
        lead.fields["Leadgate_Id"]
            .as_str()
            .is_some_and(|k| k.ends_with("/zoho/v1")),
        "{:?}",
        lead.fields
    );
    assert_eq!(sim.oauth_calls(Vendor::Zoho), 1);
    env.stop().await
}

#[tokio::test]
async fn an_expired_zoho_token_costs_one_token_call_and_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &zoho()).await?;
    let sim = env.sim();
    post(&env, &(0..5).map(person).collect::<Vec<_>>()).await?;
    env.drain(60).await?;
    assert_eq!(sim.oauth_calls(Vendor::Zoho), 1);
    // Zoho's token says it lives an hour; this one dies early (revoked
    // sessions do), so only the 401 INVALID_TOKEN tells the host.
    sim.expire_oauth_access_tokens();
    post(&env, &(10..30).map(person).collect::<Vec<_>>()).await?;
    let counts = env.drain(60).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_one_lead_each(&sim, 10..30);
    assert_eq!(sim.oauth_calls(Vendor::Zoho), 2);
    assert_eq!(
        env.metric("leadgate_delivery_retries_total").await?,
        Some(0.0)
    );
    env.stop().await
}

/// Zoho takes 10 calls at once per org (Standard edition) and answers the
/// eleventh 429 `TOO_MANY_REQUESTS`. The adapter declares the cap, and the
/// host's limiter keeps it across every worker of the destination: with 16
/// batches in flight wanted and every call slow, Zoho never says 429.
#[tokio::test]
async fn sixteen_workers_stay_under_zohos_ten_calls_at_once() -> anyhow::Result<()> {
    let config = "[delivery]\nconcurrency = 16\npoll_ms = 10\nlinger_ms = 0\n\
                  [destinations.zoho]\nadapter = \"zoho\"\nmapping = \"zoho.yaml\"\n\
                  allowed_hosts = [\"127.0.0.1\"]\nbatch_size = 2\n"
        .to_string()
        + &refresh_token_grant("zoho", "/oauth/v2/token");
    let env = TestEnv::start(SimConfig::default(), &config).await?;
    let sim = env.sim();
    sim.set_faults(leadgate_sim::Faults {
        latency_ms: 40,
        ..Default::default()
    });
    let leads: Vec<Value> = (0..120).map(person).collect();
    post(&env, &leads).await?;
    let counts = env.drain(90).await?;
    let zoho = &counts.destinations["zoho"];
    assert_eq!((zoho.delivered, zoho.dead), (120, 0));
    assert_one_lead_each(&sim, 0..120);
    assert_eq!(sim.stats().rate_limited, 0, "{:?}", sim.stats());
    env.stop().await
}

/// The right to erasure reaches Zoho CRM: the person's Lead is deleted
/// (`DELETE /Leads?ids=`), the other person's stays.
#[tokio::test]
async fn an_erased_person_is_deleted_at_zoho() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &zoho()).await?;
    let sim = env.sim();
    let answer = post(&env, &[person(0), person(1)]).await?;
    env.drain(60).await?;
    assert_one_lead_each(&sim, 0..2);
    let (_, ids) = env.erase_and_wait(&answer, "zoho").await?;
    assert!(sim.zoho_record(&ids[0]).is_none());
    assert_one_lead_each(&sim, 1..2);
    assert_eq!(sim.zoho_records("Leads").len(), 1);
    env.stop().await
}
