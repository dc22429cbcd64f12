//! Nothing is open by default: a host with no admin token configured
//! generates one into a file only its owner can read (beside the store),
//! logs the file's path and never the token, keeps it across restarts,
//! and `leadgate dlq` on the same machine finds it through the host's
//! configuration; `--token` and `LEADGATE_TOKEN` stand in for it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::support::{Host, free_port, generated_admin_token, host_config, leadgate, wait_ready};

#[tokio::test]
async fn a_host_without_tokens_generates_one_for_its_owner_and_the_cli_reads_it() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("leadgate.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        host_config(port, &db, "admin-token-key-0001", "http://127.0.0.1:9", ""),
    )
    .unwrap();
    let log = dir.path().join("host.log");
    let client = reqwest::Client::new();
    let host = Host::spawn_with_env(&config, &log, &[("LEADGATE_LOG", "info")]);
    wait_ready(&client, &url).await;

    let token_file = db.parent().unwrap().join("admin-token");
    let token = generated_admin_token(&db);
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&token_file.display().to_string()),
        "the path is logged: {logged}"
    );
    assert!(!logged.contains(&token), "the token is never logged");

    // The admin API wants it...
    let stats = |token: Option<&str>| {
        let mut request = client.get(format!("{url}/v1/stats"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(stats(None).await.unwrap().status(), 401);
    assert_eq!(stats(Some(&token)).await.unwrap().status(), 200);

    // ...and the CLI finds it through the host's configuration.
    let config_arg = config.to_str().unwrap();
    let (ok, out) = leadgate(
        &["dlq", "list", "--server", &url, "--config", config_arg],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("no dead letters"), "{out}");
    let (ok, out) = leadgate(
        &["dlq", "list", "--server", &url],
        &[("LEADGATE_CONFIG", config_arg)],
    );
    assert!(ok, "{out}");
    let (ok, out) = leadgate(
        &["dlq", "list", "--server", &url],
        &[("LEADGATE_TOKEN", token.as_str())],
    );
    assert!(ok, "{out}");
    let (ok, out) = leadgate(
        &[
            "dlq",
            "list",
            "--server",
            &url,
            "--token",
            "not-the-token-0123456789",
        ],
        &[],
    );
    assert!(!ok, "a wrong token is refused: {out}");
    assert!(out.contains("401") && out.contains("unauthorized"), "{out}");
    let (ok, out) = leadgate(
        &[
            "destination",
            "resume",
            "hubspot",
            "--server",
            &url,
            "--config",
            config_arg,
        ],
        &[],
    );
    assert!(ok, "{out}");

    // A restart keeps the token.
    host.terminate(Duration::from_secs(30)).await;
    let _host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    assert_eq!(generated_admin_token(&db), token);
    assert_eq!(stats(Some(&token)).await.unwrap().status(), 200);
}
