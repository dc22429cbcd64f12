//! Read-back reconciliation: a CRM answer of "success" for a write that
//! stored nothing is caught by reading the records back, counted, and
//! retried until the record is really there.

use leadgate_e2e::{SCRAPER_KEY, TestEnv};
use leadgate_sim::Faults;
use serde_json::{Value, json};

#[tokio::test]
async fn a_silent_no_op_is_detected_and_retried() -> anyhow::Result<()> {
    let env = TestEnv::default().await?;
    // The first write request answers success and stores nothing.
    env.sim().set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let leads: Vec<Value> = (0..5)
        .map(|n| json!({"email": format!("silent.{n}@example.com"), "first_name": "Sil"}))
        .collect();
    env.post_accepted(SCRAPER_KEY, &leads).await?;
    let counts = env.drain(30).await?;
    assert_eq!((counts.jobs_delivered, counts.jobs_dead), (5, 0));
    let sim = env.sim();
    assert!(sim.stats().writes_dropped >= 1, "{:?}", sim.stats());
    for n in 0..5 {
        let email = format!("silent.{n}@example.com");
        assert_eq!(sim.contacts_by_email(&email).len(), 1, "{email}");
    }
    let mismatches = env
        .metric("leadgate_delivery_readback_mismatches_total")
        .await?
        .unwrap_or(0.0);
    assert!(mismatches >= 1.0, "{mismatches}");
    env.stop().await
}
