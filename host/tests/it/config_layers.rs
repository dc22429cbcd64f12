//! The configuration layers of the real binary: `LEADGATE_SECTION__KEY`
//! environment variables over the file, and `file:` / `env:` secrets.

use std::time::Duration;

use leadgate_sim::{SimConfig, Simulator};
use serde_json::json;

use crate::support::{Host, free_port, host_config, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_overrides_the_file_and_secrets_come_from_files_and_env() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let (file_port, env_port) = (free_port(), free_port());
    let key_file = dir.path().join("web.key");
    std::fs::write(&key_file, "key-from-a-file-0001\n").unwrap();
    let config = dir.path().join("leadgate.toml");
    let mut text = host_config(
        file_port,
        &dir.path().join("leadgate.db"),
        "env:LEADGATE_TEST_INGEST_KEY",
        &sim.base_url(),
        "max_attempts = 3",
    );
    text.push_str(&format!(
        "[sources.web]\napi_key = \"file:{}\"\n",
        key_file.display()
    ));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("host.log");
    let env_listen = format!("127.0.0.1:{env_port}");
    let host = Host::spawn_with_env(
        &config,
        &log,
        &[
            ("LEADGATE_SERVER__LISTEN", &env_listen),
            ("LEADGATE_TEST_INGEST_KEY", "key-from-the-env-0001"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The environment's listen address won over the file's.
    let url = format!("http://{env_listen}");
    wait_ready(&client, &url).await;
    assert!(
        client
            .get(format!("http://127.0.0.1:{file_port}/v1/health"))
            .send()
            .await
            .is_err(),
        "the file's listen address is not used"
    );
    // Both sources authenticate with the keys their references resolve to
    // (the file's trailing newline trimmed); the references themselves are
    // not keys.
    let post = |key: &'static str| {
        client
            .post(format!("{url}/v1/leads"))
            .bearer_auth(key)
            .json(&json!({"email": "layers@example.com", "first_name": "Lay"}))
            .send()
    };
    for (key, want) in [
        ("key-from-a-file-0001", 202),
        ("key-from-the-env-0001", 202),
        ("env:LEADGATE_TEST_INGEST_KEY", 401),
        (" key-from-a-file", 401),
    ] {
        let status = post(key).await.map(|r| r.status().as_u16()).unwrap_or(0);
        assert_eq!(status, want, "key {key:?}");
    }
    let status = host.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    sim.shutdown().await;
}
