//! The dead-letter queue end to end: a job that exhausted its attempts is
//! listed with every attempt and error, replayed (by the API and by
//! `leadgate dlq`) into exactly one CRM record, and discarded with a reason.

use leadgate::cli::dlq::{DlqCommand, Selection, run};
use leadgate_e2e::{SCRAPER_KEY, TestEnv, hubspot_mapping_with_stage, replayed_event};
use leadgate_sim::{Faults, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_json(env: &TestEnv, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
    let resp = env.admin.post(env.url(path)).json(&body).send().await?;
    let status = resp.status();
    Ok((status, resp.json().await?))
}

/// Three leads whose jobs die: the CRM is down for every attempt.
async fn dead_letters(env: &TestEnv) -> anyhow::Result<Vec<String>> {
    env.sim().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let leads: Vec<Value> = (0..3)
        .map(|n| json!({"email": format!("dlq.{n}@example.com"), "first_name": "Dee"}))
        .collect();
    env.post_accepted(SCRAPER_KEY, &leads).await?;
    let counts = env.drain(30).await?;
    assert_eq!(counts.jobs_dead, 3, "{counts:?}");
    env.sim().set_faults(Faults::default());
    let (_, list) = env.get_json("/v1/dead-letters?destination=hubspot").await?;
    let ids: Vec<String> = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["job"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    Ok(ids)
}

#[tokio::test]
async fn a_replayed_dead_letter_makes_one_record() -> anyhow::Result<()> {
    // The HubSpot mapping in a folder of its own, hot reloaded.
    let (env, mappings) = TestEnv::with_mappings_dir("[delivery]\nmax_attempts = 2").await?;
    let ids = dead_letters(&env).await?;
    // The mapping changes after the jobs died: "original" replays what
    // was mapped then, "current" maps the lead again with the new one.
    let mut events = env.host.registry.subscribe();
    std::fs::write(
        mappings.path().join("hubspot.yaml"),
        hubspot_mapping_with_stage("opportunity")?,
    )?;
    tokio::time::timeout(std::time::Duration::from_secs(20), events.recv())
        .await??
        .result
        .expect("the new mapping goes live");
    // The lifecycle stage of the CRM record of a dead letter's lead.
    let stage = async |id: &str| -> anyhow::Result<Option<String>> {
        let (_, detail) = env.get_json(&format!("/v1/dead-letters/{id}")).await?;
        let email = detail["job"]["payload"]
            .as_array()
            .and_then(|p| p.iter().find(|kv| kv[0] == "email"))
            .and_then(|kv| kv[1].as_str())
            .unwrap_or_else(|| panic!("no email in {detail}"))
            .to_string();
        let contacts = env.sim().contacts_by_email(&email);
        assert_eq!(contacts.len(), 1, "{email}: {contacts:?}");
        Ok(contacts[0].properties.get("lifecyclestage").cloned())
    };

    // Inspect: the payload and every attempt with its error.
    let (status, detail) = env
        .get_json(&format!("/v1/dead-letters/{}", ids[0]))
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["job"]["state"], "dead");
    assert!(detail["job"]["payload"].is_array());
    let events: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["retry_scheduled", "dead_lettered"], "{detail}");
    assert!(
        detail["events"][0]["detail"]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );

    // Replay one, twice at once: one delivery.
    let body = json!({"ids": [ids[0]]});
    let (a, b) = tokio::join!(
        post_json(&env, "/v1/dead-letters/replay", body.clone()),
        post_json(&env, "/v1/dead-letters/replay", body)
    );
    let statuses: Vec<String> = [a?.1, b?.1]
        .iter()
        .map(|r| r["results"][0]["status"].as_str().unwrap().to_string())
        .collect();
    assert!(statuses.contains(&"replayed".to_string()), "{statuses:?}");
    env.drain(30).await?;
    let (_, detail) = env
        .get_json(&format!("/v1/dead-letters/{}", ids[0]))
        .await?;
    assert_eq!(detail["job"]["state"], "delivered");
    let replayed = replayed_event(&detail);
    assert_eq!(replayed["detail"]["mapping"], "original");
    assert_eq!(
        stage(&ids[0]).await?.as_deref(),
        Some("lead"),
        "replayed as first mapped"
    );
    assert!(
        replayed["detail"]["adapter"]
            .as_str()
            .unwrap()
            .starts_with("hubspot@")
    );
    // Replaying a delivered job does nothing.
    let (_, again) = post_json(&env, "/v1/dead-letters/replay", json!({"ids": [ids[0]]})).await?;
    assert_eq!(again["results"][0]["status"], "not_dead");

    // The CLI replays the rest with the current mapping.
    run(
        env.cli_api()?,
        DlqCommand::Replay {
            selection: Selection {
                jobs: vec![],
                all: true,
                destination: Some("hubspot".into()),
            },
            current_mapping: true,
        },
    )
    .await?;
    env.drain(30).await?;
    for id in &ids[1..] {
        assert_eq!(
            stage(id).await?.as_deref(),
            Some("opportunity"),
            "mapped again"
        );
        let (_, detail) = env.get_json(&format!("/v1/dead-letters/{id}")).await?;
        let replayed = replayed_event(&detail);
        assert_eq!(replayed["detail"]["mapping"], "current", "{detail}");
    }
    assert_eq!(stage(&ids[0]).await?.as_deref(), Some("lead"));
    assert_eq!(env.sim().contact_count(), 3);
    env.stop().await
}

#[tokio::test]
async fn a_discarded_dead_letter_leaves_the_queue_with_its_reason() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), "[delivery]\nmax_attempts = 1\n").await?;
    let ids = dead_letters(&env).await?;
    let (status, answer) =
        post_json(&env, "/v1/dead-letters/discard", json!({"ids": [ids[0]]})).await?;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required"
    );
    assert_eq!(answer["error"]["code"], "reason_required");
    run(
        env.cli_api()?,
        DlqCommand::Discard {
            selection: Selection {
                jobs: vec![ids[0].clone()],
                ..Selection::default()
            },
            reason: "test lead".into(),
        },
    )
    .await?;
    let (_, list) = env.get_json("/v1/dead-letters").await?;
    assert_eq!(list["dead_letters"].as_array().unwrap().len(), 2);
    let (_, detail) = env
        .get_json(&format!("/v1/dead-letters/{}", ids[0]))
        .await?;
    assert_eq!(detail["job"]["discarded"]["reason"], "test lead");
    let (_, replay) = post_json(
        &env,
        "/v1/dead-letters/replay",
        json!({"ids": [ids[0], "nope"]}),
    )
    .await?;
    assert_eq!(replay["counts"], json!({"not_dead": 1, "not_found": 1}));
    env.stop().await
}

/// A dead first delivery whose person was delivered since by a merge
/// update: replaying the old payload would overwrite newer data in the
/// CRM, so it is refused as superseded; replayed with the current mapping
/// it is rendered from the person's golden record as it is now.
#[tokio::test]
async fn an_old_payload_is_superseded_and_the_current_mapping_replays_it() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), "[delivery]\nmax_attempts = 1\n").await?;
    env.sim().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let email = "superseded@example.com";
    env.post_accepted(SCRAPER_KEY, &[json!({"email": email, "first_name": "Sue"})])
        .await?;
    let counts = env.drain(30).await?;
    assert_eq!(counts.jobs_dead, 1, "{counts:?}");
    let (_, list) = env.get_json("/v1/dead-letters?destination=hubspot").await?;
    let id = list["dead_letters"][0]["job"]["id"]
        .as_str()
        .expect("the dead letter")
        .to_string();
    // The CRM is back; a second copy brings a phone: the merge update is
    // delivered (the dead first job no longer holds the person's chain).
    env.sim().set_faults(Faults::default());
    let answer = env
        .post_accepted(
            SCRAPER_KEY,
            &[json!({"email": email, "first_name": "Sue", "phone": "+1 415 555 0142"})],
        )
        .await?;
    assert_eq!(answer["results"][0]["status"], "duplicate", "{answer}");
    env.drain(30).await?;
    let record = |env: &TestEnv| env.sim().contacts_by_email(email);
    assert_eq!(record(&env).len(), 1);
    assert_eq!(
        record(&env)[0].properties.get("phone").map(String::as_str),
        Some("+14155550142")
    );

    let (status, out) = post_json(&env, "/v1/dead-letters/replay", json!({"ids": [id]})).await?;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["results"][0]["status"], "superseded", "{out}");
    let (status, out) = post_json(
        &env,
        "/v1/dead-letters/replay",
        json!({"ids": [id], "mapping": "current"}),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["results"][0]["status"], "replayed", "{out}");
    env.drain(30).await?;
    // Still one record, and the replay did not take the phone away.
    let created = env.sim().creates(None, &[email], &[]);
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(
        record(&env)[0].properties.get("phone").map(String::as_str),
        Some("+14155550142")
    );
    env.stop().await
}
