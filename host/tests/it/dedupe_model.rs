//! The match model over a host's life: `leadgate dedupe train` reads the
//! leads of the store a running host writes to and writes the model file
//! beside it; the host reloads the file while it serves, and its fuzzy
//! decisions are explained by the new model's per-comparison match weights
//! in `GET /v1/leads/{id}`; a broken model file is refused and the last
//! good model goes on deciding.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Host, free_port, generated_admin_token, get_admin_json, host_config_with, leadgate, post_batch,
    post_lead, wait_ready,
};

const KEY: &str = "model-test-source-0001";

/// Posts a batch; some leads may be refused (207: a consumer lead
/// without an email or a phone, say). Returns how many were accepted.
async fn post(client: &reqwest::Client, url: &str, leads: &[Value]) -> u64 {
    let (status, answer) = post_batch(client, url, KEY, leads).await;
    assert!([202, 207].contains(&status), "{status}: {answer}");
    answer["accepted"].as_u64().unwrap()
}

/// Waits until the host's log holds `needle` (at most 20 s).
async fn log_says(log: &Path, needle: &str) {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the host never logged {needle:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consumer lead: names, date of birth, city, and no email or phone, so
/// only the fuzzy tier can join two of them.
fn consumer(first: &str, last: &str, dob: &str) -> Value {
    json!({"first_name": first, "last_name": last, "date_of_birth": dob, "city": "Coventry"})
}

/// The decision of lead `id`, as the admin API shows it.
async fn decision(client: &reqwest::Client, url: &str, token: &str, id: &str) -> Value {
    let view = get_admin_json(client, token, &format!("{url}/v1/leads/{id}")).await;
    view["dedupe"].clone()
}

#[tokio::test]
async fn a_model_trained_on_the_store_is_reloaded_and_explains_decisions() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("leadgate.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("leadgate.toml");
    // (Appended to `[sources.test]`: consumers without an email or a
    // phone are accepted, so only the fuzzy tier can join them.)
    let accept_all = "require_any = []\n";
    let text = host_config_with(port, &db, KEY, "poll_ms = 50", accept_all);
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("host.log");
    let client = reqwest::Client::new();
    let host = Host::spawn_with_env(&config, &log, &[("LEADGATE_LOG", "info")]);
    wait_ready(&client, &url).await;
    let token = generated_admin_token(&db);
    let model_file = db.parent().unwrap().join("dedupe-model.json");
    assert!(!model_file.exists(), "no model file before training");

    // The store's own leads: generated persons with their noisy copies.
    let leads: Vec<Value> = leadgate::pipeline::dedupe::corpus::generate(31, 400)
        .into_iter()
        .map(|(mut lead, _)| {
            lead.as_object_mut().unwrap().remove("id");
            lead
        })
        .collect();
    let mut accepted = 0;
    for chunk in leads.chunks(200) {
        accepted += post(&client, &url, chunk).await;
    }
    assert!(
        accepted * 10 >= leads.len() as u64 * 7,
        "{accepted} of {}",
        leads.len()
    );

    // Before training: the bundled model decides and says so.
    let first = post_lead(
        &client,
        &url,
        KEY,
        consumer("Jessica", "Miller", "2001-04-21"),
    )
    .await;
    let copy = post_lead(
        &client,
        &url,
        KEY,
        consumer("Jessica", "Milller", "2001-04-21"),
    )
    .await;
    assert_eq!(copy["status"], "duplicate", "{copy}");
    assert_eq!(copy["duplicate_of"], first["id"], "{copy}");
    let bundled = decision(&client, &url, &token, copy["id"].as_str().unwrap()).await;
    assert_eq!(bundled["rule"], "fellegi-sunter-v1", "{bundled}");
    assert_eq!(bundled["explain"]["model"], "bundled-1", "{bundled}");

    // Training on the store, while the host serves.
    let config_arg = config.to_str().unwrap();
    let (ok, out) = leadgate(&["dedupe", "train", "--config", config_arg], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("random pairs"), "{out}");
    let trained: Value = serde_json::from_slice(&std::fs::read(&model_file).unwrap()).unwrap();
    let version = trained["version"].as_str().unwrap().to_string();
    assert!(version.starts_with("trained-"), "{trained}");
    assert!(trained["training"]["leads"].as_u64().unwrap() >= accepted);
    assert_eq!(
        trained["training"]["converged"], true,
        "{}",
        trained["training"]
    );
    log_says(&log, "dedupe model file changed").await;

    // Decided and explained by the trained model: one term per comparison
    // with data on both sides, each a named level and its weight.
    let again = post_lead(
        &client,
        &url,
        KEY,
        consumer("Jesica", "Miller", "2001-04-21"),
    )
    .await;
    assert_eq!(again["status"], "duplicate", "{again}");
    let explained = decision(&client, &url, &token, again["id"].as_str().unwrap()).await;
    let explain = &explained["explain"];
    assert_eq!(explain["model"], version.as_str(), "{explained}");
    let terms: Vec<(String, String)> = explain["terms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["weight"].is_number(), "{t}");
            (
                t["comparison"].as_str().unwrap().to_string(),
                t["level"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("first_name", "jaro_winkler_0.92"),
        ("last_name", "exact"),
        ("dob", "exact"),
        ("city", "exact"),
    ] {
        assert!(
            terms.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {explained}"
        );
    }
    let sum: f64 = explain["prior"].as_f64().unwrap()
        + explain["terms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["weight"].as_f64().unwrap())
            .sum::<f64>();
    let weight = explain["match_weight"].as_f64().unwrap();
    assert!(
        (sum - weight).abs() < 0.05,
        "the waterfall adds up: {explained}"
    );
    assert!(
        explain["probability"].as_f64().unwrap() >= 0.95,
        "{explained}"
    );

    // A broken file: refused, the trained model keeps deciding.
    std::fs::write(&model_file, "{\"format\": 1, \"version\": \"half").unwrap();
    log_says(&log, "the dedupe model file changed but is not valid").await;
    let later = post_lead(
        &client,
        &url,
        KEY,
        consumer("Jessica", "Millr", "2001-04-21"),
    )
    .await;
    assert_eq!(later["status"], "duplicate", "{later}");
    let kept = decision(&client, &url, &token, later["id"].as_str().unwrap()).await;
    assert_eq!(kept["explain"]["model"], version.as_str(), "{kept}");
    host.terminate(Duration::from_secs(30)).await;
}
