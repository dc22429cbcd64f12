//! Clients nobody on this team wrote drive the simulator: the CRM vendors'
//! own (or most used) client libraries, installed from PyPI by
//! `tests/vendor-clients/setup.sh`, must accept the simulator's answers as
//! they accept the real API's. An adapter that passes against a simulator
//! these clients accept speaks the real wire format.

use std::path::{Path, PathBuf};
use std::process::Command;

use leadgate_sim::{SimConfig, Simulator};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The vendor-clients venv's python (installed on first use).
fn python() -> String {
    let setup = workspace().join("tests/vendor-clients/setup.sh");
    let out = Command::new("bash")
        .arg(&setup)
        .output()
        .unwrap_or_else(|e| panic!("bash is needed to run {}: {e}", setup.display()));
    assert!(
        out.status.success(),
        "{} failed (it installs the vendors' clients from PyPI):\n{}",
        setup.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `script` (in tests/vendor-clients) against a fresh simulator, with
/// the simulator's base URL and a scratch folder as its arguments.
async fn drive(script: &str) -> Simulator {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let python = python();
    let path = workspace().join("tests/vendor-clients").join(script);
    let base = sim.base_url();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&path)
            .arg(&base)
            .arg(&dir)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script}:\n{text}");
    println!("{text}");
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_salesforce_accepts_the_simulators_salesforce() {
    let sim = drive("salesforce_client.py").await;
    // What the client wrote is what the simulator holds.
    let h = sim.handle();
    assert_eq!(
        h.salesforce_count_by_email("Lead", "vendor.client@example.com"),
        1
    );
    let upserted = h
        .salesforce_records("Lead")
        .into_iter()
        .find(|r| r.fields.get("Leadgate_Id__c").and_then(|v| v.as_str()) == Some("vendor-1"))
        .expect("the upserted lead");
    assert_eq!(upserted.fields["Title"], "CEO");
    assert_eq!(upserted.fields["City"], "Oslo");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspots_own_python_client_accepts_the_simulators_hubspot() {
    let sim = drive("hubspot_client.py").await;
    let h = sim.handle();
    assert_eq!(h.count_by_email("vendor.hs@example.com"), 1);
    assert_eq!(h.count_by_email("vendor.hs2@example.com"), 1);
    let contact = &h.contacts_by_email("vendor.hs@example.com")[0];
    assert_eq!(contact.properties["jobtitle"], "CEO");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zohos_own_python_sdk_accepts_the_simulators_zoho_crm() {
    let sim = drive("zoho_client.py").await;
    let h = sim.handle();
    let leads = h.zoho_records("Leads");
    assert_eq!(
        leads.len(),
        2,
        "the bad email and the duplicate were refused"
    );
    let first = leads
        .iter()
        .find(|r| r.fields.get("Leadgate_Id").and_then(|v| v.as_str()) == Some("lg-1"))
        .expect("lg-1");
    assert_eq!(first.fields["Last_Name"], "Doe-Smith");
    assert_eq!(first.fields["City"], "Oslo");
    sim.shutdown().await;
}
