//! NATS JetStream ingest: a source fed by a JetStream subject. Messages
//! (each a payload of leads, as an HTTP post) are published before the
//! host starts; the host is killed with SIGKILL while it consumes them and
//! started again. At the end every good lead is stored exactly once
//! (nothing lost, nothing doubled: a message delivered again after its
//! commit is recognized by its leads' ids), a message published twice
//! with one `Nats-Msg-Id` counts once, the malformed messages were
//! terminated (not redelivered forever) with their errors published on
//! `leadgate.rejected.<source>`, as was the refused lead of a message
//! whose other leads went in.
//!
//! It needs NATS with JetStream (`LEADGATE_TEST_NATS`, default
//! `nats://127.0.0.1:4222`) and fails saying so without it.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt as _;
use serde_json::json;

use crate::support::{
    Host, free_port, generated_admin_token, get_admin_json, host_config_with, letters, wait_ready,
};

const KEY: &str = "nats-test-source-key-0001";

#[tokio::test]
async fn a_jetstream_source_loses_nothing_and_doubles_nothing_across_a_kill() {
    leadgate_runtime::outbound::install_crypto_provider();
    let url =
        std::env::var("LEADGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "NATS is not reachable at {url} ({e}): the JetStream ingest test needs it \
             (start nats-server -js, or set LEADGATE_TEST_NATS)"
        )
    });
    let js = jetstream::new(client.clone());
    let tag = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (stream, subject) = (format!("LGTEST_{tag}"), format!("lgtest.{tag}.leads"));
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let source = format!("nats{tag}");
    let mut rejected = client
        .subscribe(format!("leadgate.rejected.{source}"))
        .await
        .unwrap();

    // 300 messages of 4 leads (1,200 persons), published with ids; one
    // published twice with the same id; two that are not leads; one with a
    // lead that is refused beside two good ones.
    let messages = 300;
    let publish = async |id: String, body: String| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        js.publish_with_headers(subject.clone(), headers, body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    };
    for m in 0..messages {
        let leads: Vec<_> = (0..4)
            .map(|i| {
                let p = m * 4 + i;
                json!({"email": format!("nats.{p}@example.com"), "first_name": "Nat", "last_name": format!("Person{}", letters(p))})
            })
            .collect();
        publish(format!("m{m}"), serde_json::to_string(&leads).unwrap()).await;
        if m == 7 {
            publish(format!("m{m}"), serde_json::to_string(&leads).unwrap()).await;
        }
    }
    publish("bad-1".into(), "{this is not json".into()).await;
    publish(
        "bad-2".into(),
        r#"{"email": "a@example.com"} {"email": "b@example.com"}"#.into(),
    )
    .await;
    let mixed = json!([
        {"email": "mixed.1@example.com"},
        {"email": "not an email", "first_name": "Nobody"},
        {"email": "mixed.2@example.com"},
    ]);
    publish("mixed".into(), mixed.to_string()).await;
    let expected = messages * 4 + 2;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = dir.path().join("nats.db");
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        format!(
            // No api_key: the source is fed by NATS alone.
            "{}[sources.{source}]\ndefault_region = \"US\"\n\
             [sources.{source}.nats]\nurl = \"{url}\"\nstream = \"{stream}\"\nsubject = \"{subject}\"\nbatch = 4\n",
            host_config_with(port, &db, KEY, "", ""),
        ),
    )
    .unwrap();
    let log = dir.path().join("host.log");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let host = Host::spawn(&config, &log);
    wait_ready(&http, &base).await;
    let token = generated_admin_token(&db);
    let stats = format!("{base}/v1/stats");
    let leads = async || {
        get_admin_json(&http, &token, &stats).await["store"]["leads"]
            .as_u64()
            .unwrap()
    };
    // Killed while consuming.
    let started = Instant::now();
    while leads().await < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host does not consume"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    host.kill9();
    let host = Host::spawn(&config, &log);
    wait_ready(&http, &base).await;
    let consumer_name = format!("leadgate-{source}");
    let started = Instant::now();
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream(&stream)
            .await
            .unwrap()
            .get_consumer(&consumer_name)
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 && leads().await >= expected as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not consumed: {} pending, {} unacknowledged, {} leads of {expected}",
            info.num_pending,
            info.num_ack_pending,
            leads().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = &get_admin_json(&http, &token, &stats).await["store"];
    assert_eq!(store["leads"], expected, "every good lead once: {store}");
    assert_eq!(store["duplicates"], 0, "no message taken twice: {store}");

    // The refusals: two terminated messages and one refused lead.
    let mut refusals = Vec::new();
    while refusals.len() < 3 {
        let Ok(next) = tokio::time::timeout(Duration::from_secs(10), rejected.next()).await else {
            panic!(
                "the refusals are published: got {refusals:?}; host log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let next = next.unwrap();
        refusals.push(serde_json::from_slice::<serde_json::Value>(&next.payload).unwrap());
    }
    let errors: Vec<&str> = refusals
        .iter()
        .filter_map(|r| r["error"].as_str())
        .collect();
    assert_eq!(errors.len(), 2, "{refusals:?}");
    assert!(
        errors.iter().any(|e| e.contains("invalid JSON")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("one JSON object per line")),
        "{errors:?}"
    );
    let lead = refusals
        .iter()
        .find(|r| r["results"].is_array())
        .expect("the refused lead");
    assert_eq!(lead["results"][0]["index"], 1, "{lead}");
    assert_eq!(lead["results"][0]["errors"][0]["field"], "email", "{lead}");
    host.kill9();
    let _ = js.delete_stream(&stream).await;
}
