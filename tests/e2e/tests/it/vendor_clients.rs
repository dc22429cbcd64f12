//! Clients nobody on this team wrote drive the simulator: the CRM vendors'
//! own (or most used) client libraries, installed pinned from PyPI by
//! `tests/vendor-clients/setup.sh` and from npm by
//! `tests/vendor-clients/setup-js.sh`, must accept the simulator's answers
//! as they accept the real API's. An adapter that passes against a
//! simulator these clients accept speaks the real wire format.

use std::path::{Path, PathBuf};
use std::process::Command;

use leadgate_sim::{SimConfig, Simulator};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/vendor-clients/<setup>` (which installs the vendors' clients
/// on first use) and returns the one line it prints.
fn setup(setup: &str, registry: &str) -> String {
    let setup = workspace().join("tests/vendor-clients").join(setup);
    let out = Command::new("bash")
        .arg(&setup)
        .output()
        .unwrap_or_else(|e| panic!("bash is needed to run {}: {e}", setup.display()));
    assert!(
        out.status.success(),
        "{} failed (it installs the vendors' clients from {registry}):\n{}",
        setup.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The command that runs `script`: the vendor-clients venv's python for a
/// `.py`, `node` with the vendor-clients `node_modules` on `NODE_PATH` for
/// a `.mjs`.
fn interpreter(script: &str) -> Command {
    match Path::new(script).extension().and_then(|e| e.to_str()) {
        Some("py") => Command::new(setup("setup.sh", "PyPI")),
        Some("mjs") => {
            let mut node = Command::new("node");
            node.env("NODE_PATH", setup("setup-js.sh", "npm"));
            node
        }
        _ => panic!("{script}: no interpreter known for it (.py or .mjs)"),
    }
}

/// Runs `script` (in tests/vendor-clients) against a fresh simulator, with
/// the simulator's base URL and a scratch folder as its arguments.
async fn drive(script: &str) -> Simulator {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut command = interpreter(script);
    let path = workspace().join("tests/vendor-clients").join(script);
    let base = sim.base_url();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || command.arg(&path).arg(&base).arg(&dir).output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {script} (is its interpreter installed?): {e}"));
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
    assert_eq!(h.count_by_email("vendor.hs3@example.com"), 0, "purged");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_pipedrive_client_accepts_the_simulator() {
    let sim = drive("pipedrive_client.mjs").await;
    let h = sim.handle();
    // Exactly the person the client created and updated (no duplicate from
    // a retry), its look-alike, and not the one it deleted.
    assert_eq!(h.pipedrive_count_by_email("vendor.pd@example.com"), 1);
    assert_eq!(h.pipedrive_count_by_email("other.vendor.pd@example.com"), 1);
    assert_eq!(h.pipedrive_persons().len(), 2);
    let person = h
        .pipedrive_persons()
        .into_iter()
        .find(|p| p.has_email("vendor.pd@example.com"))
        .expect("the created person");
    assert_eq!(person.name, "Vendor Pipedrive-Client");
    assert_eq!(person.job_title.as_deref(), Some("CEO"));
    let phones: Vec<_> = person.phones.iter().map(|p| p.value.as_str()).collect();
    assert_eq!(phones, ["+4722334455", "+4799887766"]);
    assert!(person.phones[1].primary);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataverse_client_accepts_the_simulator() {
    // Microsoft's PowerPlatform-Dataverse-Client (https only: the script
    // puts a TLS front on 127.0.0.1 before the simulator).
    let sim = drive("dataverse_client.py").await;
    let h = sim.handle();
    // The lead created, updated and upserted by its alternate key is one
    // row; the one created by UpsertMultiple another; the one the $batch
    // created was deleted.
    assert_eq!(h.dataverse_count_by_email("leads", "ada.dv@example.com"), 1);
    assert_eq!(
        h.dataverse_count_by_email("leads", "grace.dv@example.com"),
        1
    );
    assert_eq!(
        h.dataverse_count_by_email("leads", "alan.dv@example.com"),
        0
    );
    assert_eq!(h.dataverse_records("leads").len(), 2);
    assert!(h.dataverse_records("contacts").is_empty());
    let ada = h
        .dataverse_records("leads")
        .into_iter()
        .find(|r| r.text("emailaddress1") == Some("ada.dv@example.com"))
        .expect("the created lead");
    assert_eq!(ada.text("new_leadgateid"), Some("dv-1"));
    assert_eq!(ada.text("firstname"), Some("Ada"));
    assert_eq!(ada.text("lastname"), Some("King"));
    assert_eq!(ada.text("companyname"), Some("Analytical Society"));
    assert_eq!(ada.text("jobtitle"), Some("Countess"));
    assert_eq!(ada.text("address1_city"), Some("London"));
    // "Web", resolved by the client from the choice column's metadata.
    assert_eq!(ada.get("leadsourcecode"), Some(&serde_json::json!(8)));
    let grace = h
        .dataverse_records("leads")
        .into_iter()
        .find(|r| r.text("emailaddress1") == Some("grace.dv@example.com"))
        .expect("the upserted lead");
    assert_eq!(grace.text("new_leadgateid"), Some("o'hopper-2"));
    sim.shutdown().await;
}
