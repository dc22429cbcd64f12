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
