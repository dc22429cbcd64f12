//! No personal data in the host's log, at any level: leads with known
//! emails, phones and names go through ingest (some refused), dedupe,
//! delivery through the HubSpot adapter, a CRM outage (retries and their
//! errors) and rate limits, with `LEADGATE_LOG=trace`; none of those
//! values (as posted, normalized or as digits) appears in the log, nor in
//! the bytes of any file the host wrote (database, WAL, key and token
//! files, plugin cache), while it runs and after it stopped.

use std::time::{Duration, Instant};

use leadgate_sim::{Faults, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, files_under, free_port, generated_admin_token, get_admin_json, host_config, wait_ready,
};

const KEY: &str = "log-privacy-key-0001";
const PERSONS: usize = 40;

/// Person `n`: a lead and the values that must never be logged.
fn person(n: usize) -> (Value, Vec<String>) {
    let email = format!("Zelda.Quokka{n:03}@privacy-example.org");
    // Real ranges (the phone library refuses fictional ones).
    let phone = format!("+1 (415) 555-{:04}", 2000 + n);
    let e164 = format!("+1415555{:04}", 2000 + n);
    let last = format!("Quokkasson{n:03}x");
    let lead = json!({
        "email": email,
        "phone": phone,
        "first_name": "Zelda",
        "last_name": last,
        "company": format!("Quokka Works {n}"),
    });
    let secrets = vec![
        email.clone(),
        email.to_lowercase(),
        format!("{}", &e164[1..]),
        e164,
        phone,
        last.clone(),
        last.to_lowercase(),
    ];
    (lead, secrets)
}

#[tokio::test]
async fn no_lead_value_reaches_the_log_at_trace_level_or_the_disk() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = dir.path().join("leadgate.db");
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        host_config(
            port,
            &db,
            KEY,
            &sim.base_url(),
            "backoff_base_ms = 20\nbackoff_cap_ms = 200\nlinger_ms = 5\npoll_ms = 20",
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    // Compiling a component logs at trace level for a minute (Cranelift):
    // a first start at the usual level fills the plugin cache.
    let warm = Host::spawn(&config, &dir.path().join("warm-up.log"));
    wait_ready(&client, &url).await;
    warm.terminate(Duration::from_secs(30)).await;
    let log = dir.path().join("host.log");
    let host = Host::spawn_with_env(&config, &log, &[("LEADGATE_LOG", "trace")]);
    wait_ready(&client, &url).await;

    let mut secrets = Vec::new();
    let mut leads = Vec::new();
    for n in 0..PERSONS {
        let (lead, values) = person(n);
        leads.push(lead);
        secrets.extend(values);
    }
    // A lead refused at validation quotes nothing back into the log.
    let refused = json!({"email": "not-an-email-Quokkabad", "phone": "+1 415 5"});
    secrets.push("Quokkabad".into());
    // The CRM is down for the first half, throttles the second.
    sim.handle().set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    let post = async |body: Value| {
        client
            .post(format!("{url}/v1/leads"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(post(Value::Array(leads[..20].to_vec())).await, 202);
    assert_eq!(post(refused).await, 422);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.handle().set_faults(Faults {
        rate_limit_next: 3,
        ..Faults::default()
    });
    assert_eq!(post(Value::Array(leads[20..].to_vec())).await, 202);
    // The same persons again: duplicates and merges.
    assert_eq!(post(Value::Array(leads[..10].to_vec())).await, 202);

    let token = generated_admin_token(&db);
    let started = Instant::now();
    loop {
        let stats = get_admin_json(&client, &token, &format!("{url}/v1/stats")).await;
        let store = &stats["store"];
        if store["jobs_pending"] == 0 && store["jobs_leased"] == 0 {
            assert_eq!(store["jobs_delivered"], PERSONS, "{stats}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The WAL holds the latest pages while the host runs.
    let on_disk = |when: &str| {
        let files = files_under(dir.path(), &[&log, &config]);
        assert!(
            files.iter().any(|f| f.to_string_lossy().ends_with("-wal")) || when == "stopped",
            "{files:?}"
        );
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            for secret in &secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret:?} is in {} ({when})",
                    file.display()
                );
            }
        }
        files.len()
    };
    on_disk("running");
    host.terminate(Duration::from_secs(30)).await;
    sim.shutdown().await;
    assert!(on_disk("stopped") >= 3, "the database, the keys, the token");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 100 && text.contains("TRACE"),
        "the log is at trace level: {} lines",
        text.lines().count()
    );
    for secret in &secrets {
        if let Some(at) = text.find(secret.as_str()) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("{secret:?} is in the log:\n{}", &text[line_start..line_end]);
        }
    }
}
