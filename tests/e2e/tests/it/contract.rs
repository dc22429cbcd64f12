//! The API keeps its contract: schemathesis (pinned from PyPI by
//! `tests/openapi/setup.sh`) reads the host's `/openapi.json` and sends
//! what it generates from it, valid and invalid, to every operation, with
//! the right credential for each: no answer may be a 5xx, and every answer
//! must match the document (status, content type, headers, body schema).
//! `LEADGATE_SCHEMATHESIS_EXAMPLES` (default 25, deterministic) sets how
//! many examples per operation and explores at random; the README's long
//! run uses 1,000.

use std::path::Path;
use std::process::Command;

use leadgate_e2e::{ADMIN_TOKEN, SCRAPER_KEY, TestEnv};
use leadgate_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_answer_off_the_document() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), "[delivery]\nmax_attempts = 1\n").await?;
    // Something to read: a delivered lead and a dead letter.
    let (lead, job) = env.lead_and_dead_letter("contract").await?;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi");
    let setup = Command::new("bash").arg(dir.join("setup.sh")).output()?;
    assert!(
        setup.status.success(),
        "tests/openapi/setup.sh failed (it installs schemathesis from PyPI):\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let st = String::from_utf8_lossy(&setup.stdout).trim().to_string();
    // The suite's run is deterministic (the same cases every time); a
    // long run (LEADGATE_SCHEMATHESIS_EXAMPLES) explores at random.
    let long = std::env::var("LEADGATE_SCHEMATHESIS_EXAMPLES").ok();
    let deterministic = long.is_none();
    let examples = long.unwrap_or_else(|| "25".into());
    let url = env.url("/openapi.json");
    let config = dir.join("schemathesis.toml");
    // Schemathesis keeps a cache where it runs: not in the source tree.
    let scratch = tempfile::tempdir()?;
    let cwd = scratch.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut st = Command::new(st);
        st.current_dir(cwd)
            .args(["--config-file"])
            .arg(&config)
            .args(["run", &url, "--max-examples", &examples, "--workers", "2"]);
        if deterministic {
            st.arg("--generation-deterministic");
        }
        st.env("LEADGATE_SOURCE_KEY", SCRAPER_KEY)
            .env("LEADGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("LEADGATE_LEAD_ID", &lead)
            .env("LEADGATE_JOB_ID", &job)
            .env("NO_COLOR", "1")
            .output()
    })
    .await??;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    env.stop().await
}
