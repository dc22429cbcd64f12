//! `leadgate new adapter`: the generated crate passes its own unit tests,
//! builds into a component, and that component loads in the host's engine
//! and answers under the sandbox.

use std::path::Path;
use std::process::Command;

use leadgate_runtime::{AdapterPlugin, Capabilities, Delivery, Outcome, PushContext};

fn cargo(dir: &Path, args: &[&str], target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer test run's settings are not the new crate's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("running cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_adapter_tests_builds_and_loads() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let made =
        leadgate::cli::new::new_adapter("acme-crm", Some(&tmp.path().join("acme-crm")), None)?;
    assert!(!made.in_workspace);
    assert!(made.mapping.is_file());
    // A target folder kept between runs, so only the first run compiles the
    // SDK's dependencies.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    cargo(&made.crate_dir, &["test", "--offline", "--quiet"], &target);
    cargo(
        &made.crate_dir,
        &[
            "build",
            "--offline",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
        &target,
    );
    let wasm = target.join("wasm32-wasip2/release/leadgate_adapter_acme_crm.wasm");

    leadgate_runtime::outbound::install_crypto_provider();
    let config = leadgate::config::Config::from_toml("")?;
    let engine = leadgate::plugins::engine(&config.plugins)?;
    let component = engine.compile(&std::fs::read(&wasm)?)?;
    let adapter =
        AdapterPlugin::load(&engine, "acme-crm", &component, Capabilities::none()).await?;
    assert_eq!(adapter.info().name, "acme-crm");
    assert_eq!(adapter.info().rate_limits[0].max_requests, 100);
    // No host is granted: the call is refused by the sandbox, and the
    // template reports it as a configuration error, not a retry.
    let outcomes = adapter
        .push(
            &[Delivery {
                id: "1".into(),
                idempotency_key: "k1".into(),
                properties: vec![("email".into(), "jane@example.com".into())],
            }],
            &PushContext::default(),
        )
        .await?;
    match &outcomes[0] {
        Outcome::Rejected(r) => assert_eq!(r.rule, "config", "{r:?}"),
        other => panic!("{other:?}"),
    }
    Ok(())
}
