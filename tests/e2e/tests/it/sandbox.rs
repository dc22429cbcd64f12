//! The sandbox, proven with a deliberately bad guest built from source: an
//! infinite loop, a memory bomb, a trap, garbage or oversize output, and
//! attempts to reach a host, a secret, a file or the environment it was not
//! given each fail that call only, with a clear reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadgate_runtime::{
    AdapterPlugin, CallError, CallLimits, Capabilities, Delivery, EngineOptions, HostServices,
    MemoryKv, Outcome, PluginEngine, PushContext, ReqwestOutbound,
};

const DEADLINE: Duration = Duration::from_millis(500);

async fn bad_plugin() -> AdapterPlugin {
    leadgate_runtime::outbound::install_crypto_provider();
    let engine = PluginEngine::new(
        EngineOptions {
            limits: CallLimits {
                deadline: DEADLINE,
                max_memory_bytes: 32 << 20,
                max_output_bytes: 4 << 20,
            },
            ..EngineOptions::default()
        },
        HostServices {
            outbound: Arc::new(ReqwestOutbound::new().unwrap()),
            kv: Arc::new(MemoryKv::default()),
            max_http_timeout: Duration::from_secs(2),
            max_response_bytes: 1 << 20,
        },
    )
    .unwrap();
    let wasm = std::fs::read(leadgate_test_guests::BAD_ADAPTER).expect("the bad guest is built");
    let component = engine.compile(&wasm).unwrap();
    let caps = Capabilities::new(
        &["api.example.com"],
        [("token", "s3cret-token")].into_iter().collect(),
    );
    AdapterPlugin::load(&engine, "bad", &component, caps)
        .await
        .unwrap()
}

fn batch() -> Vec<Delivery> {
    ["d1", "d2"]
        .iter()
        .map(|id| Delivery {
            id: id.to_string(),
            idempotency_key: format!("k-{id}"),
            properties: vec![("email".into(), format!("{id}@example.com"))],
        })
        .collect()
}

fn mode(m: &str) -> PushContext {
    PushContext {
        destination: "bad".into(),
        config: vec![("mode".into(), m.into())],
        attempt: 1,
    }
}

async fn push(plugin: &AdapterPlugin, m: &str) -> Result<Vec<Outcome>, CallError> {
    plugin.push(&batch(), &mode(m)).await
}

fn probe_message(outcomes: &[Outcome]) -> String {
    match &outcomes[0] {
        Outcome::Rejected(r) => r.message.clone(),
        other => panic!("expected a probe report, got {other}"),
    }
}

#[tokio::test]
async fn an_infinite_loop_hits_the_deadline_and_the_plugin_still_works() {
    let plugin = bad_plugin().await;
    let started = Instant::now();
    let err = push(&plugin, "loop").await.unwrap_err();
    assert_eq!(err, CallError::Timeout(500));
    // An unenforced deadline never ends; 10x the deadline leaves a loaded
    // machine room to schedule the epoch ticker and this test.
    assert!(
        started.elapsed() < DEADLINE * 10,
        "stopped near its deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(
        push(&plugin, "ok").await.unwrap().len(),
        2,
        "the next call is fine"
    );
}

/// On a one-thread runtime, so a guest that kept its thread until the
/// deadline would hold up everything else (the loop's call would finish
/// before the sleep below even returned).
#[tokio::test(flavor = "current_thread")]
async fn a_loop_does_not_hold_up_other_calls() {
    let plugin = bad_plugin().await;
    let looping = tokio::spawn({
        let plugin = plugin.clone();
        async move { push(&plugin, "loop").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    push(&plugin, "ok").await.unwrap();
    // Ordered by events, not by a clock: the call finished while the loop
    // was still spinning towards its deadline (a call queued behind the
    // loop would only finish after it).
    assert!(!looping.is_finished(), "the call waited for the loop");
    assert!(matches!(looping.await.unwrap(), Err(CallError::Timeout(_))));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap() {
    let plugin = bad_plugin().await;
    assert_eq!(
        push(&plugin, "bomb").await.unwrap_err(),
        CallError::MemoryLimit(32 << 20)
    );
    assert!(push(&plugin, "ok").await.is_ok());
}

#[tokio::test]
async fn a_trap_fails_the_call_only() {
    let plugin = bad_plugin().await;
    let err = push(&plugin, "trap").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Trap(m) if !m.is_empty()),
        "{err:?}"
    );
    assert!(push(&plugin, "ok").await.is_ok());
}

#[tokio::test]
async fn garbage_output_is_refused() {
    let plugin = bad_plugin().await;
    let err = push(&plugin, "garbage").await.unwrap_err();
    assert_eq!(
        err,
        CallError::BadOutput("0 outcomes for a batch of 2".into())
    );
    let err = push(&plugin, "unknown-id").await.unwrap_err();
    assert!(matches!(err, CallError::BadOutput(_)), "{err:?}");
}

#[tokio::test]
async fn oversize_output_is_refused() {
    let plugin = bad_plugin().await;
    let err = push(&plugin, "oversize").await.unwrap_err();
    assert!(
        matches!(err, CallError::OutputTooLarge { limit, .. } if limit == 4 << 20),
        "{err:?}"
    );
}

#[tokio::test]
async fn hosts_and_secrets_outside_the_grant_are_refused() {
    let plugin = bad_plugin().await;
    let report = probe_message(&push(&plugin, "evil-host").await.unwrap());
    assert!(report.contains("HostNotAllowed(\"127.0.0.1\")"), "{report}");
    let report = probe_message(&push(&plugin, "secret-probe").await.unwrap());
    assert!(
        report.contains("SecretNotGranted(\"not-mine\")"),
        "{report}"
    );
    assert!(
        plugin
            .counters()
            .http_denied
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn no_files_no_environment_no_sockets_no_clock() {
    let plugin = bad_plugin().await;
    let report = probe_message(&push(&plugin, "ambient").await.unwrap());
    assert!(report.contains("file=Err"), "{report}");
    assert!(report.contains("env=[]"), "{report}");
    assert!(report.contains("dir=Err"), "{report}");
    assert!(
        report.contains("clock=Ok(0)"),
        "the WASI clock is frozen: {report}"
    );
    assert!(report.contains("net=Err"), "{report}");
    assert!(!report.contains("s3cret-token"));
}
