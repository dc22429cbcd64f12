//! Encryption at rest over a host's life: a store written in plain text
//! (encryption off) is sealed by the first start with encryption on, in
//! the background while the host serves; `leadgate keys rotate --wait`
//! makes a new data key and re-seals everything under it; dedupe (blind
//! indexes) keeps matching across the switch, the rotation and a restart;
//! and afterwards no lead value is in any file of the store.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    Host, files_holding, free_port, generated_admin_token, get_admin_json, host_config_with,
    leadgate, wait_ready,
};

const KEY: &str = "keys-test-source-0001";
const PERSONS: usize = 30;

fn email(n: usize) -> String {
    format!("ottoline.wren{n:03}@sealed-example.org")
}

fn lead(n: usize) -> Value {
    json!({
        "email": email(n),
        "phone": format!("+1 415 555 {:04}", 3000 + n),
        "first_name": "Ottoline",
        "last_name": format!("Wrenfield{n:03}"),
    })
}

/// The files under `dir` holding any of the persons' emails.
fn holding_emails(dir: &Path) -> Vec<String> {
    files_holding(dir, &(0..PERSONS).map(email).collect::<Vec<_>>())
}

async fn post(client: &reqwest::Client, url: &str, leads: Vec<Value>) -> Value {
    let answer = client
        .post(format!("{url}/v1/leads"))
        .bearer_auth(KEY)
        .json(&Value::Array(leads))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json().await.unwrap()
}

async fn keys(client: &reqwest::Client, url: &str, token: &str) -> Value {
    get_admin_json(client, token, &format!("{url}/v1/keys")).await
}

async fn until_sealed(client: &reqwest::Client, url: &str, token: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = keys(client, url, token).await;
        if view["pass"]["state"] == "done" {
            return view;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_plain_store_is_sealed_then_rotated_and_dedupe_still_matches() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("leadgate.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let base = host_config_with(port, &db, KEY, "poll_ms = 50", "");
    let config = dir.path().join("leadgate.toml");
    let log = dir.path().join("host.log");
    let client = reqwest::Client::new();

    // 1. Written with encryption off: the emails are on disk as they are.
    std::fs::write(
        &config,
        format!("{base}\n[store.encryption]\nenabled = false\n"),
    )
    .unwrap();
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let first = post(&client, &url, (0..PERSONS).map(lead).collect()).await;
    assert_eq!(first["accepted"], PERSONS, "{first}");
    let token = generated_admin_token(&db);
    let plain = keys(&client, &url, &token).await;
    assert_eq!(plain["encryption"], false, "{plain}");
    host.terminate(Duration::from_secs(30)).await;
    assert!(!holding_emails(&data).is_empty(), "plain text before");
    assert!(!data.join("keys").exists());

    // 2. Encryption on (the default): keys generated, the old values
    // sealed in the background, the persons still known.
    std::fs::write(&config, &base).unwrap();
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let again = post(&client, &url, (0..10).map(lead).collect()).await;
    assert_eq!(again["duplicates"], 10, "{again}");
    let sealed = until_sealed(&client, &url, &token).await;
    assert_eq!(sealed["encryption"], true);
    assert_eq!(sealed["source"], "file");
    assert_eq!(sealed["current"], "k1");
    assert!(
        sealed["pass"]["resealed"].as_u64().unwrap() >= 4 * PERSONS as u64,
        "{sealed}"
    );
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(data.join("keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600, "the key file is the owner's alone");

    // 3. A rotation through the CLI, waiting for the pass.
    let config_arg = config.to_str().unwrap();
    let (ok, out) = leadgate(
        &[
            "keys", "rotate", "--wait", "--server", &url, "--config", config_arg,
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("sealed under k2"), "{out}");
    assert!(out.contains("re-sealing: done"), "{out}");
    let (ok, out) = leadgate(
        &["keys", "status", "--server", &url, "--config", config_arg],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("current key k2 (file), keys: k1, k2"), "{out}");
    let lead_id = first["results"][0]["id"].as_str().unwrap().to_string();
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{lead_id}")).await;
    assert_eq!(view["raw"]["email"], email(0), "{view}");
    host.terminate(Duration::from_secs(30)).await;

    // 4. Nothing readable on disk; after a restart, the same persons.
    assert_eq!(holding_emails(&data), Vec::<String>::new());
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    let later = post(&client, &url, vec![lead(PERSONS - 1)]).await;
    assert_eq!(later["duplicates"], 1, "{later}");
    assert_eq!(
        later["results"][0]["duplicate_of"],
        first["results"][PERSONS - 1]["id"],
        "{later}"
    );
    let after = keys(&client, &url, &token).await;
    assert_eq!(after["current"], "k2");
    assert_eq!(after["pass"]["state"], "done", "nothing left to re-seal");
    assert_eq!(after["pass"]["scanned"], 0, "{after}");
    let view = get_admin_json(&client, &token, &format!("{url}/v1/leads/{lead_id}")).await;
    assert_eq!(view["normalized"]["email"], email(0), "{view}");
    host.terminate(Duration::from_secs(30)).await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(&email(0)));
}
