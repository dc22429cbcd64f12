//! Adapters written in Python (Pipedrive, componentize-py) and JavaScript
//! (Standard Webhooks, componentize-js), loaded by the host from
//! `target/plugins` beside the Rust HubSpot adapter and driven through the
//! whole pipeline into the simulator: every lead reaches all three CRMs,
//! once per person.

use std::ops::Range;

use leadgate_e2e::{SCRAPER_KEY, TestEnv};
use leadgate_sim::{Faults, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The three destinations: HubSpot (from the default test config), Pipedrive
/// through the Python adapter, a signed webhook through the JS adapter.
const POLYGLOT: &str = r#"
[plugins]
# Python and JavaScript runtimes live inside the component.
max_memory_mb = 128

[destinations.pipedrive]
adapter = "pipedrive-py"
mapping = "pipedrive.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.pipedrive.config]
base-url = "{sim}"
[destinations.pipedrive.secrets]
api-token = "sim-token"
webhook-password = "pd-hook-password"

[destinations.webhook]
adapter = "webhook-js"
mapping = "webhook.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.webhook.config]
url = "{sim}/hooks/leads"
[destinations.webhook.secrets]
signing-key = "whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="
"#;

/// Distinct people (distinct names, companies, emails and phones, so the
/// fuzzy dedupe keeps them apart).
fn person(n: u32) -> Value {
    const FIRST: [&str; 10] = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Niklaus", "Radia",
        "Tony",
    ];
    const LAST: [&str; 7] = [
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
    ];
    json!({
        "email": format!("poly.{n}@example.com"),
        "first_name": FIRST[n as usize % 10],
        "last_name": format!("{}-{}", LAST[n as usize % 7], n * 37 % 101),
        "phone": format!("+1 415 555 {:04}", 1000 + n * 97 % 9000),
        "company": format!("{} Works {n}", LAST[(n as usize + 3) % 7]),
        "title": "Engineer",
    })
}

/// Posts `person(n)` for every n in `people` as NDJSON; fails unless the
/// post succeeds.
async fn post_people(env: &TestEnv, people: Range<u32>) -> anyhow::Result<()> {
    let body = people
        .map(|n| person(n).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let (status, answer) = env.post_leads(Some(SCRAPER_KEY), &body).await?;
    anyhow::ensure!(status.is_success(), "{status}: {answer}");
    Ok(())
}

/// Exactly one Pipedrive person for each of `people`.
fn assert_one_pipedrive_person_each(sim: &SimHandle, people: Range<u32>) {
    for n in people {
        let email = format!("poly.{n}@example.com");
        assert_eq!(sim.pipedrive_count_by_email(&email), 1, "{email}");
    }
}

async fn start() -> anyhow::Result<TestEnv> {
    // Built by leadgate-polyglot's build script; name them so a missing
    // build fails here, not as a confusing load error.
    for path in [
        leadgate_polyglot::PIPEDRIVE_PY,
        leadgate_polyglot::WEBHOOK_JS,
    ] {
        assert!(std::path::Path::new(path).is_file(), "{path} was not built");
    }
    TestEnv::start(SimConfig::default(), POLYGLOT).await
}

#[tokio::test]
async fn python_and_javascript_adapters_deliver_one_record_per_person() -> anyhow::Result<()> {
    let env = start().await?;
    let (status, plugins) = env.get_json("/v1/plugins").await?;
    assert_eq!(status, StatusCode::OK);
    let text = plugins.to_string();
    assert!(
        text.contains("pipedrive") && text.contains("webhook"),
        "{plugins}"
    );

    // 12 people, the first 4 of them twice (the second time with a new
    // title: the dedupe stage merges those into the first person, and the
    // merged title goes out as an update of the same record, so each CRM
    // still has one record per person).
    let mut leads: Vec<Value> = (0..12).map(person).collect();
    for n in 0..4 {
        let mut again = person(n);
        again["title"] = json!("Chief Engineer");
        leads.push(again);
    }
    let body = leads
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let (status, answer) = env.post_leads(Some(SCRAPER_KEY), &body).await?;
    assert!(status.is_success(), "{status} {answer}");
    let counts = env.drain(90).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");

    let sim = env.sim();
    let persons = sim.pipedrive_persons();
    assert_eq!(persons.len(), 12, "one Pipedrive person per person");
    for n in 0..12 {
        let email = format!("poly.{n}@example.com");
        assert_eq!(sim.pipedrive_count_by_email(&email), 1, "{email}");
        assert_eq!(sim.count_by_email(&email), 1, "HubSpot: {email}");
    }
    let ada0 = persons
        .iter()
        .find(|p| p.has_email("poly.0@example.com"))
        .unwrap();
    assert!(ada0.name.starts_with("Ada Lovelace"), "{}", ada0.name);
    assert_eq!(ada0.phones[0].value, "+14155551000");
    assert_eq!(
        ada0.job_title.as_deref(),
        Some("Chief Engineer"),
        "the merge's update was PATCHed onto the same person"
    );
    for n in 0..4 {
        let email = format!("poly.{n}@example.com");
        let contact = &sim.contacts_by_email(&email)[0];
        assert_eq!(contact.properties["jobtitle"], "Chief Engineer", "{email}");
    }

    // The webhook receiver gets one message per person and one per update.
    let messages = sim.hook_messages("leads");
    assert_eq!(messages.len(), 16, "12 persons, 4 updates");
    let emails: std::collections::BTreeSet<&str> = messages
        .iter()
        .filter_map(|m| m.body["data"]["properties"]["email"].as_str())
        .collect();
    assert_eq!(emails.len(), 12);
    let first = &messages[0];
    assert_eq!(first.body["type"], "lead.upserted");
    assert!(first.body["data"]["properties"]["email"].is_string());

    // The lead's audit trail names the Python adapter's version.
    let id = answer["results"][0]["id"].as_str().unwrap().to_string();
    let (_, lead) = env.get_json(&format!("/v1/leads/{id}")).await?;
    let trail = lead.to_string();
    assert!(
        trail.contains("pipedrive") && trail.contains("webhook"),
        "{lead}"
    );
    env.stop().await
}

#[tokio::test]
async fn polyglot_adapters_ride_out_429s_and_5xx_without_duplicates() -> anyhow::Result<()> {
    let env = start().await?;
    let sim = env.sim();
    sim.set_faults(Faults {
        rate_limit_next: 6,
        error_5xx_next: 6,
        ..Faults::default()
    });
    post_people(&env, 100..120).await?;
    let counts = env.drain(120).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_eq!(sim.pipedrive_persons().len(), 20);
    assert_eq!(sim.hook_messages("leads").len(), 20);
    assert_one_pipedrive_person_each(&sim, 100..120);
    let stats = sim.stats();
    assert!(
        stats.rate_limited >= 6 && stats.server_errors >= 6,
        "{stats:?}"
    );
    env.stop().await
}

#[tokio::test]
async fn a_bad_signing_key_is_refused_by_the_receiver_and_dead_letters() -> anyhow::Result<()> {
    let extra = POLYGLOT.replace(
        "signing-key = \"whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ==\"",
        "signing-key = \"whsec_d3Jvbmcta2V5\"",
    ) + "\n[delivery]\nmax_attempts = 2\n";
    let env = TestEnv::start(SimConfig::default(), &extra).await?;
    let (status, _) = env
        .post_leads(Some(SCRAPER_KEY), &person(7).to_string())
        .await?;
    assert!(status.is_success());
    let counts = env.drain(60).await?;
    // One dead letter (the webhook), two deliveries (HubSpot, Pipedrive):
    // the other destinations were not held back by the failing one.
    assert_eq!(
        (counts.jobs_dead, counts.jobs_delivered),
        (1, 2),
        "{counts:?}"
    );
    let (_, dead) = env.get_json("/v1/dead-letters").await?;
    let letters = dead["dead_letters"].as_array().expect("a list");
    assert_eq!(letters.len(), 1, "{dead:#}");
    let job = &letters[0]["job"];
    assert_eq!(job["destination"], "webhook", "{dead:#}");
    // The receiver's 401 is a refusal, not retried: one attempt of two.
    assert_eq!(job["attempts"], 1, "{dead:#}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        // The receiver refusing the signature: class `forbidden` of the
        // one taxonomy.
        error.starts_with("rejected (forbidden): http_401") && error.contains("no valid signature"),
        "{error}"
    );
    assert!(env.sim().hook_messages("leads").is_empty());
    assert_eq!(env.sim().pipedrive_persons().len(), 1);
    env.stop().await
}

#[tokio::test]
async fn the_declared_limits_keep_the_crm_from_ever_sending_a_429() -> anyhow::Result<()> {
    // Pipedrive allows 10 searches per 2 s and the adapter searches before
    // every write: 30 people is three windows' worth. Sent as fast as the
    // workers can, the simulator would answer 429s; paced by the limiter
    // built from the adapter's declared limits, it never has to.
    let env = start().await?;
    post_people(&env, 200..230).await?;
    let counts = env.drain(90).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    let sim = env.sim();
    assert_eq!(sim.pipedrive_persons().len(), 30);
    assert_eq!(sim.hook_messages("leads").len(), 30);
    assert_eq!(sim.stats().rate_limited, 0, "{:?}", sim.stats());
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    let pipedrive = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["destination"] == "pipedrive")
        .unwrap()
        .clone();
    let search = pipedrive["rate_limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "search")
        .unwrap()
        .clone();
    assert_eq!(search["max_requests"], 10, "{pipedrive}");
    env.stop().await
}

#[tokio::test]
async fn pipedrive_reads_back_and_retries_writes_that_did_not_stick() -> anyhow::Result<()> {
    // Pipedrive on a simulator of its own, so that its silent writes are
    // the only ones: the other destinations write to the shared one.
    let pipedrive = leadgate_sim::Simulator::start(SimConfig::default()).await?;
    let pd = pipedrive.handle();
    let extra = POLYGLOT.replacen(
        "base-url = \"{sim}\"",
        &format!("base-url = \"{}\"", pipedrive.base_url()),
        1,
    );
    let env = TestEnv::start(SimConfig::default(), &extra).await?;

    // The first two person creations answer success and store nothing.
    pd.set_faults(Faults {
        fail_silently_next: 2,
        ..Faults::default()
    });
    post_people(&env, 300..305).await?;
    let counts = env.drain(90).await?;
    assert_eq!(counts.jobs_dead, 0, "{counts:?}");
    assert_eq!(pd.stats().writes_dropped, 2, "{:?}", pd.stats());
    assert_eq!(pd.pipedrive_persons().len(), 5);
    assert_one_pipedrive_person_each(&pd, 300..305);
    let mismatches = |v: Option<f64>| v.unwrap_or(0.0);
    let after_creates = mismatches(
        env.metric("leadgate_delivery_readback_mismatches_total")
            .await?,
    );
    assert!(after_creates >= 2.0, "{after_creates}");

    // A merged update (a new title) whose PATCH answers success and changes
    // nothing: the read-back sees the old title and the update is sent again.
    pd.set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let mut again = person(300);
    again["title"] = json!("Chief Engineer");
    let (status, answer) = env
        .post_leads(Some(SCRAPER_KEY), &again.to_string())
        .await?;
    assert!(status.is_success(), "{answer}");
    env.drain(90).await?;
    assert_eq!(pd.stats().writes_dropped, 3, "{:?}", pd.stats());
    let persons = pd.pipedrive_persons();
    assert_eq!(persons.len(), 5);
    let updated = persons
        .iter()
        .find(|p| p.has_email("poly.300@example.com"))
        .unwrap();
    assert_eq!(updated.job_title.as_deref(), Some("Chief Engineer"));
    let after_update = mismatches(
        env.metric("leadgate_delivery_readback_mismatches_total")
            .await?,
    );
    assert!(after_update > after_creates, "{after_update}");
    env.stop().await?;
    pipedrive.shutdown().await;
    Ok(())
}

/// CRM webhooks into the Python and JavaScript components: each verifies
/// its CRM's scheme with the host's HMAC (the secret never enters the
/// guest), and a forged, tampered or stale request is refused.
#[tokio::test]
async fn webhooks_are_verified_by_the_python_and_javascript_components() -> anyhow::Result<()> {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let env = start().await?;
    let post = |path: &str, headers: Vec<(&'static str, String)>, body: &'static str| {
        let mut request = env.client.post(env.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let code = async |r: reqwest::Response| -> anyhow::Result<(StatusCode, Value)> {
        let status = r.status();
        Ok((status, r.json().await?))
    };

    // Pipedrive: Basic auth whose password is hex(HMAC-SHA256(the
    // webhook-password secret, user)).
    let body = r#"{"meta":{"entity":"person","action":"change","entity_id":"42","timestamp":"2026-01-02T03:04:05Z"},"data":{"id":42,"name":"New"},"previous":{"name":"Old"}}"#;
    let basic = |user: &str, password: &str| {
        vec![(
            "authorization",
            format!("Basic {}", b64(format!("{user}:{password}").as_bytes())),
        )]
    };
    let good: String = leadgate_runtime::hmac_sha256(b"pd-hook-password", b"leadgate")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, answer) =
        code(post("/v1/webhooks/pipedrive", basic("leadgate", &good), body).await?).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["received"], 1, "{answer}");
    let (status, answer) =
        code(post("/v1/webhooks/pipedrive", basic("leadgate", &good), body).await?).await?;
    assert_eq!(
        (status, &answer["replayed"]),
        (StatusCode::OK, &json!(true)),
        "a replay: {answer}"
    );
    let (status, answer) =
        code(post("/v1/webhooks/pipedrive", basic("other", &good), body).await?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another user: {answer}");
    assert_eq!(answer["error"]["code"], "bad_signature", "{answer}");
    let (status, _) = code(post("/v1/webhooks/pipedrive", vec![], body).await?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no credentials");

    // The Standard Webhooks receiver side of the JavaScript component.
    let key = leadgate_sim::secret_key("whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ==");
    let body = r#"{"type":"contact.updated","data":{"id":"abc","email":"a@b.example"}}"#;
    let signed = |id: &str, ts: i64, signed_body: &str| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                leadgate_sim::sign(&key, id, ts, signed_body.as_bytes()),
            ),
        ]
    };
    let now = leadgate::now_ms() / 1000;
    let (status, answer) =
        code(post("/v1/webhooks/webhook", signed("msg_1", now, body), body).await?).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["received"], 1, "{answer}");
    let (status, answer) =
        code(post("/v1/webhooks/webhook", signed("msg_1", now, body), body).await?).await?;
    assert_eq!(
        (status, &answer["replayed"]),
        (StatusCode::OK, &json!(true)),
        "msg_1 again: {answer}"
    );
    let (status, answer) =
        code(post("/v1/webhooks/webhook", signed("msg_2", now, "{}"), body).await?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tampered body: {answer}");
    assert_eq!(answer["error"]["code"], "bad_signature", "{answer}");
    let stale = now - 10 * 60;
    let (status, answer) =
        code(post("/v1/webhooks/webhook", signed("msg_3", stale, body), body).await?).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "stale: {answer}");
    assert_eq!(answer["error"]["code"], "stale_timestamp", "{answer}");
    assert_eq!(
        env.metric("leadgate_webhook_events_total").await?,
        Some(2.0)
    );
    assert_eq!(
        env.metric("leadgate_webhook_replays_total").await?,
        Some(2.0)
    );
    env.stop().await
}

/// `leadgate demo --crm all`: the demo file into HubSpot, Salesforce, Zoho,
/// Dynamics 365, Pipedrive (Python) and the webhook receiver (JavaScript)
/// at once, each ending with one record per person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_delivers_into_every_crm_at_once() -> anyhow::Result<()> {
    leadgate_runtime::outbound::install_crypto_provider();
    let s = leadgate::cli::demo::run_demo_with(
        leadgate::cli::demo::DEMO_LEADS,
        leadgate::cli::demo::DemoCrms::All,
    )
    .await?;
    assert_eq!(s.unique_persons, 600);
    let names: Vec<&str> = s.destinations.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "dynamics",
            "hubspot",
            "pipedrive",
            "salesforce",
            "webhook",
            "zoho"
        ]
    );
    for (name, d) in &s.destinations {
        assert_eq!(d.crm_records, 600, "{name}: {d:?}");
        assert_eq!(d.crm_duplicate_emails, 0, "{name}: {d:?}");
        assert_eq!(d.dead_lettered, 0, "{name}: {d:?}");
        assert!(d.delivered >= 600, "{name}: {d:?}");
    }
    Ok(())
}

/// The right to erasure reaches Pipedrive through the Python adapter's
/// `erasure` export (`DELETE /api/v2/persons/{id}`) and HubSpot through the
/// Rust one; the JavaScript webhook adapter, a 0.2.0 component, cannot
/// delete: the receipt says so and queues nothing for it.
#[tokio::test]
async fn an_erased_person_is_deleted_where_the_adapter_can_delete() -> anyhow::Result<()> {
    let env = start().await?;
    let sim = env.sim();
    let answer = env
        .post_accepted(SCRAPER_KEY, &[person(0), person(1)])
        .await?;
    env.drain(60).await?;
    assert_one_pipedrive_person_each(&sim, 0..2);
    let (receipt, ids) = env.erase_and_wait(&answer, "pipedrive").await?;
    assert!(sim.pipedrive_person(&ids[0]).is_none(), "{receipt}");
    assert_eq!(sim.pipedrive_count_by_email("poly.0@example.com"), 0);
    assert_one_pipedrive_person_each(&sim, 1..2);
    assert!(
        sim.contacts_by_email("poly.0@example.com").is_empty(),
        "{receipt}"
    );
    assert_eq!(sim.contacts_by_email("poly.1@example.com").len(), 1);
    let webhook = receipt["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["destination"] == "webhook")
        .expect("the webhook's record is in the receipt");
    assert!(webhook.get("deletion_jobs").is_none(), "{receipt}");
    assert!(
        webhook["note"]
            .as_str()
            .unwrap()
            .starts_with("not deleted at the CRM"),
        "{receipt}"
    );
    env.stop().await
}
