//! A component built for `leadgate:plugin@0.1.0` (a third party's adapter,
//! built before the host moved to 0.2.0) still loads and delivers: the
//! host serves its imports and types its conventions at one conversion
//! boundary. `tests/guests/wit-0-1-adapter` is that component, written
//! against the frozen `wit/v0.1.0` with nothing but wit-bindgen.

use leadgate_e2e::{SCRAPER_KEY, TestEnv, distinct_person};
use leadgate_sim::{Faults, SimConfig};
use serde_json::Value;

#[tokio::test]
async fn a_0_1_0_component_still_loads_and_delivers() -> anyhow::Result<()> {
    let plugins = tempfile::tempdir()?;
    std::fs::copy(
        leadgate_test_guests::WIT_0_1_ADAPTER,
        plugins.path().join("hubspot-legacy.wasm"),
    )?;
    let extra = format!(
        "[plugins]\ndir = \"{}\"\n[destinations.hubspot]\nadapter = \"hubspot-legacy\"\n",
        plugins.path().display()
    );
    let env = TestEnv::start(SimConfig::default(), &extra).await?;

    // What the host made of the 0.1.0 self-description.
    let (_, plugins_view) = env.get_json("/v1/plugins").await?;
    let status = plugins_view["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["destination"] == "hubspot"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(status["adapter"], "hubspot-legacy", "{status}");
    assert_eq!(status["wit"], "0.1.0", "{status}");
    assert_eq!(status["auth"]["scheme"], "undeclared", "{status}");
    let search = status["rate_limits"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "search"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        search["kinds"],
        serde_json::json!(["search"]),
        "a 0.1.0 window named search counts searches only: {status}"
    );

    // The first write answers success and stores nothing: the adapter's
    // `readback:` retry must reach the host as a read-back mismatch.
    env.sim().set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let leads: Vec<Value> = (0..12).map(|n| distinct_person("legacy", n)).collect();
    env.post_accepted(SCRAPER_KEY, &leads).await?;
    let counts = env.drain(30).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (12, 0));
    for n in 0..12 {
        let email = format!("legacy.{n}@example.com");
        assert_eq!(env.sim().contacts_by_email(&email).len(), 1, "{email}");
    }
    assert!(env.sim().stats().writes_dropped >= 1);
    let mismatches = env
        .metric("leadgate_delivery_readback_mismatches_total")
        .await?
        .unwrap_or(0.0);
    assert!(mismatches >= 1.0, "read-back mismatches: {mismatches}");
    let typed = env
        .metric(
            "leadgate_delivery_outcomes_total{class=\"retry_readback_mismatch\",destination=\"hubspot\"}",
        )
        .await?
        .unwrap_or(0.0);
    assert!(typed >= 1.0, "counted in the taxonomy: {typed}");
    env.stop().await
}

/// The same for a source transform built for 0.1.0
/// (`tests/guests/wit-0-1-transform`): its leads, its filtering and its
/// errors come through as a 0.2.0 transform's do.
#[tokio::test]
async fn a_0_1_0_transform_still_loads_and_transforms() -> anyhow::Result<()> {
    const KEY: &str = "test-legacy-form-key-0009";
    let plugins = tempfile::tempdir()?;
    let bundled = leadgate::config::Config::load(None)?.plugins_dir();
    std::fs::copy(
        bundled.join("hubspot.wasm"),
        plugins.path().join("hubspot.wasm"),
    )?;
    std::fs::copy(
        leadgate_test_guests::WIT_0_1_TRANSFORM,
        plugins.path().join("legacy-form.wasm"),
    )?;
    let extra = format!(
        "[plugins]\ndir = \"{}\"\n\
         [sources.legacy]\napi_key = \"{KEY}\"\ntransform = \"legacy-form\"\n",
        plugins.path().display()
    );
    let env = TestEnv::start(SimConfig::default(), &extra).await?;
    let submission = serde_json::json!({"submission": {"fields":
        {"Email": "Legacy.Form@Example.com", "Name": "Lee Gacy"}}});
    let (status, answer) = env.post_leads(Some(KEY), &submission.to_string()).await?;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let test_entry = serde_json::json!({"submission": {"test": true, "fields": {}}});
    let (_, answer) = env.post_leads(Some(KEY), &test_entry.to_string()).await?;
    assert_eq!(answer["accepted"], 0, "filtered: {answer}");
    let (status, answer) = env.post_leads(Some(KEY), r#"{"submission": {}}"#).await?;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("submission.fields")),
        "{answer}"
    );
    env.drain(20).await?;
    let contact = &env.sim().contacts_by_email("legacy.form@example.com")[0];
    assert_eq!(contact.properties["firstname"], "Lee");
    assert_eq!(contact.properties["lastname"], "Gacy");
    env.stop().await
}
