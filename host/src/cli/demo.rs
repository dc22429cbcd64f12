//! `leadgate demo`: a simulated HubSpot, the host with the real HubSpot
//! adapter component, and about 1,000 messy scraped leads from two sources
//! (`demo/leads.jsonl`, each row labelled with the person it really is).
//! Posts them in file order, waits for the outbox to drain, and checks that
//! the CRM ends with exactly one contact per real person.
//!
//! `--crm all` delivers the same leads into every CRM leadgate ships an
//! adapter for at once: HubSpot, Salesforce, Zoho CRM and Dynamics 365
//! (Rust, the last three with host-owned OAuth tokens from the simulated
//! token endpoints), Pipedrive (Python) and a Standard Webhooks receiver
//! (JavaScript). Each must end with one record per person. The Python and
//! JavaScript components are built first if the plugin folder lacks them
//! (their scripts install their toolchains on first use).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use leadgate_sim::SimHandle;

/// The bundled demo file.
pub const DEMO_LEADS: &str = include_str!("../../demo/leads.jsonl");

const SOURCES: [(&str, &str, &str); 2] = [
    ("scraper", "demo-scraper-key-0001", "US"),
    ("webform", "demo-webform-key-0002", "GB"),
];

#[derive(Deserialize)]
struct DemoRow {
    source: String,
    truth: Option<String>,
    lead: Value,
}

/// What the demo prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub received: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub rejected_by_reason: BTreeMap<String, usize>,
    pub duplicates: usize,
    pub delivered: u64,
    /// Of the deliveries, updates of a contact after a duplicate merged new
    /// fields into its person.
    pub updates_from_merges: u64,
    pub dead_lettered: u64,
    pub unique_persons: usize,
    pub crm_records: usize,
    pub crm_duplicate_emails: usize,
    pub crm_requests: u64,
    pub seconds: f64,
    /// With `--crm all`: each destination's deliveries and CRM records.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub destinations: BTreeMap<String, DestinationSummary>,
}

/// One destination of `--crm all`.
#[derive(Debug, Default, Serialize)]
pub struct DestinationSummary {
    pub delivered: u64,
    pub dead_lettered: u64,
    /// Records the simulated CRM holds (for the webhook receiver: distinct
    /// records its messages were about).
    pub crm_records: usize,
    /// Records holding an email another record holds too.
    pub crm_duplicate_emails: usize,
}

/// Which CRMs the demo delivers to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoCrms {
    /// A simulated HubSpot.
    #[default]
    Hubspot,
    /// HubSpot, Salesforce, Zoho CRM, Dynamics 365, Pipedrive and a webhook
    /// receiver at once.
    All,
}

pub async fn run(json: bool, crms: DemoCrms) -> anyhow::Result<()> {
    let summary = run_demo_with(DEMO_LEADS, crms).await?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.crm_records != summary.unique_persons || summary.crm_duplicate_emails > 0 {
        bail!(
            "the CRM holds {} contacts for {} people ({} emails twice)",
            summary.crm_records,
            summary.unique_persons,
            summary.crm_duplicate_emails
        );
    }
    for (name, d) in &summary.destinations {
        if d.crm_records != summary.unique_persons || d.crm_duplicate_emails > 0 {
            bail!(
                "{name} holds {} records for {} people ({} emails twice)",
                d.crm_records,
                summary.unique_persons,
                d.crm_duplicate_emails
            );
        }
    }
    Ok(())
}

/// The destinations `--crm all` adds beside HubSpot, as configuration
/// (`{sim}` is the simulator's base URL).
const MORE_CRMS: &str = r#"
[destinations.salesforce]
adapter = "salesforce"
mapping = "salesforce.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.salesforce.oauth]
grant = "refresh_token"
token_url = "{sim}/services/oauth2/token"
client_id = "sim-client"
client_secret = "sim-client-secret"
refresh_token = "sim-refresh-token"

[destinations.zoho]
adapter = "zoho"
mapping = "zoho.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.zoho.oauth]
grant = "refresh_token"
token_url = "{sim}/oauth/v2/token"
client_id = "sim-client"
client_secret = "sim-client-secret"
refresh_token = "sim-refresh-token"

[destinations.dynamics]
adapter = "dynamics"
mapping = "dynamics.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.dynamics.config]
org-url = "{sim}"
[destinations.dynamics.oauth]
grant = "client_credentials"
token_url = "{sim}/demo-tenant/oauth2/v2.0/token"
client_id = "sim-client"
client_secret = "sim-client-secret"
scope = "{sim}/.default"

[destinations.pipedrive]
adapter = "pipedrive-py"
mapping = "pipedrive.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.pipedrive.config]
base-url = "{sim}"
[destinations.pipedrive.secrets]
api-token = "sim-token"
webhook-password = "demo-hook-password"
# The demo's Pipedrive account has ten times the usual limits (the
# simulator's too): Pipedrive's search allowance of 10 per 2 s would make
# the demo's 600 persons take two minutes. Tests run the real limits.
[destinations.pipedrive.rate_limits]
burst = { max_requests = 800, window_ms = 2000 }
search = { max_requests = 100, window_ms = 2000 }

[destinations.webhook]
adapter = "webhook-js"
mapping = "webhook.yaml"
allowed_hosts = ["127.0.0.1"]
[destinations.webhook.config]
url = "{sim}/hooks/leads"
[destinations.webhook.secrets]
signing-key = "whsec_c2ltLXdlYmhvb2stc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="

[plugins]
# The Python and JavaScript runtimes live inside their components.
max_memory_mb = 128
"#;

/// Builds the Python and JavaScript adapters into the plugin folder if it
/// lacks them (their build scripts install their toolchains on first use).
fn ensure_polyglot_plugins(dir: &std::path::Path) -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("LEADGATE_SOURCE_ROOT"));
    for (plugin, script) in [
        ("pipedrive-py", "adapters/pipedrive-py/build.sh"),
        ("webhook-js", "adapters/webhook-js/build.sh"),
    ] {
        let out = dir.join(format!("{plugin}.wasm"));
        if out.is_file() {
            continue;
        }
        eprintln!("building the {plugin} adapter (first run only)…");
        let status = std::process::Command::new("bash")
            .arg(root.join(script))
            .arg(&out)
            .status()
            .with_context(|| format!("running {script}"))?;
        if !status.success() {
            bail!(
                "{script} failed ({status}); the demo needs {}",
                out.display()
            );
        }
    }
    Ok(())
}

/// Emails held by more than one of `emails` (case-insensitive).
fn repeated(emails: impl IntoIterator<Item = String>) -> usize {
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for e in emails {
        *per.entry(e.to_lowercase()).or_default() += 1;
    }
    per.values().filter(|n| **n > 1).count()
}

/// What each simulated CRM of `--crm all` holds.
fn crm_records(h: &SimHandle, name: &str) -> (usize, usize) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    match name {
        "salesforce" => {
            let all = h.salesforce_records("Lead");
            let emails = all.iter().filter_map(|r| text(r.fields.get("Email")));
            (all.len(), repeated(emails))
        }
        "zoho" => {
            let all = h.zoho_records("Leads");
            let emails = all.iter().filter_map(|r| text(r.fields.get("Email")));
            (all.len(), repeated(emails))
        }
        "dynamics" => {
            let all = h.dataverse_records("leads");
            let emails = all
                .iter()
                .filter_map(|r| text(r.fields.get("emailaddress1")));
            (all.len(), repeated(emails))
        }
        "pipedrive" => {
            let all = h.pipedrive_persons();
            let emails = all
                .iter()
                .filter_map(|p| p.emails.first().map(|e| e.value.clone()));
            (all.len(), repeated(emails))
        }
        "webhook" => {
            // A receiver holds messages, not records: the records they are
            // about are the distinct keys (the idempotency key less its
            // revision).
            let keys: BTreeSet<String> = h
                .hook_messages("leads")
                .iter()
                .filter_map(|m| m.body["data"]["idempotency_key"].as_str())
                .map(|k| match k.rsplit_once("/r") {
                    Some((base, n)) if n.bytes().all(|b| b.is_ascii_digit()) => base.to_string(),
                    _ => k.to_string(),
                })
                .collect();
            (keys.len(), 0)
        }
        _ => (0, 0),
    }
}

/// Runs the demo on `rows` (the demo file's format) into HubSpot and
/// returns the summary.
pub async fn run_demo(rows: &str) -> anyhow::Result<Summary> {
    run_demo_with(rows, DemoCrms::Hubspot).await
}

/// Runs the demo on `rows` into `crms`.
pub async fn run_demo_with(rows: &str, crms: DemoCrms) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rows: Vec<DemoRow> = rows
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("demo row {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;

    let mut sim_config = leadgate_sim::SimConfig::default();
    if crms == DemoCrms::All {
        // As the Pipedrive destination's rate_limits in MORE_CRMS say.
        sim_config.pipedrive.burst *= 10;
        sim_config.pipedrive.search *= 10;
    }
    let sim = leadgate_sim::Simulator::start(sim_config).await?;
    let data_dir = std::env::temp_dir().join(format!("leadgate-demo-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&data_dir)?;
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://{}\"\n\
         [delivery]\nconcurrency = 2\npoll_ms = 20\nbackoff_base_ms = 200\n\
         [destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\nallowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.hubspot.config]\nbase-url = \"{}\"\n\
         [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\nclient-secret = \"demo-client-secret\"\n",
        data_dir.join("leadgate.db").display(),
        sim.base_url()
    );
    for (name, key, region) in SOURCES {
        toml.push_str(&format!(
            "[sources.{name}]\napi_key = \"{key}\"\ndefault_region = \"{region}\"\n"
        ));
    }
    if crms == DemoCrms::All {
        toml.push_str(&MORE_CRMS.replace("{sim}", &sim.base_url()));
    }
    let config = Config::from_toml(&toml)?;
    if crms == DemoCrms::All {
        ensure_polyglot_plugins(&config.plugins_dir())?;
    }
    let host = crate::app::start(config).await?;
    let client = reqwest::Client::new();

    let mut summary = Summary {
        received: rows.len(),
        accepted: 0,
        rejected: 0,
        rejected_by_reason: BTreeMap::new(),
        duplicates: 0,
        delivered: 0,
        updates_from_merges: 0,
        dead_lettered: 0,
        unique_persons: rows
            .iter()
            .filter_map(|r| r.truth.as_deref())
            .collect::<BTreeSet<_>>()
            .len(),
        crm_records: 0,
        crm_duplicate_emails: 0,
        crm_requests: 0,
        seconds: 0.0,
        destinations: BTreeMap::new(),
    };

    // Post in file order, consecutive rows of one source as one NDJSON batch.
    let mut i = 0;
    while i < rows.len() {
        let source = rows[i].source.as_str();
        let mut j = i;
        let mut body = String::new();
        while j < rows.len() && rows[j].source == source && j - i < 50 {
            body.push_str(&rows[j].lead.to_string());
            body.push('\n');
            j += 1;
        }
        let key = SOURCES
            .iter()
            .find(|(name, _, _)| *name == source)
            .map(|(_, key, _)| *key)
            .with_context(|| format!("demo row names unknown source {source:?}"))?;
        let answer: Value = client
            .post(format!("{}/v1/leads", host.url()))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        tally(&answer, &mut summary)?;
        i = j;
    }

    let (drained, counts) = host.wait_until_drained(Duration::from_secs(60)).await?;
    if !drained {
        bail!("the outbox did not drain within 60 s: {counts:?}");
    }
    let handle = sim.handle();
    let contacts = handle.contacts();
    let mut per_email: BTreeMap<String, usize> = BTreeMap::new();
    for c in &contacts {
        if let Some(email) = c.properties.get("email") {
            *per_email.entry(email.to_lowercase()).or_default() += 1;
        }
    }
    let stats = handle.stats();
    summary.delivered = counts.jobs_delivered;
    // As the CRM counted them: each new person is one create, the other
    // writes are updates carrying merged fields. (The host's own count of
    // deliveries must agree: creates + updates.)
    summary.updates_from_merges = stats.records_updated;
    summary.dead_lettered = counts.jobs_dead;
    summary.crm_records = contacts.len();
    summary.crm_duplicate_emails = per_email.values().filter(|n| **n > 1).count();
    summary.crm_requests = stats.requests_total;
    if crms == DemoCrms::All {
        for (name, jobs) in &counts.destinations {
            let (records, repeats) = if name == "hubspot" {
                (summary.crm_records, summary.crm_duplicate_emails)
            } else {
                crm_records(&handle, name)
            };
            summary.destinations.insert(
                name.clone(),
                DestinationSummary {
                    delivered: jobs.delivered,
                    dead_lettered: jobs.dead,
                    crm_records: records,
                    crm_duplicate_emails: repeats,
                },
            );
        }
    }
    host.shutdown().await?;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn tally(answer: &Value, summary: &mut Summary) -> anyhow::Result<()> {
    let results = answer["results"]
        .as_array()
        .with_context(|| format!("unexpected ingest answer: {answer}"))?;
    for r in results {
        match r["status"].as_str() {
            Some("accepted") => summary.accepted += 1,
            Some("duplicate") => {
                summary.accepted += 1;
                summary.duplicates += 1;
            }
            Some("rejected") => {
                summary.rejected += 1;
                let e = &r["errors"][0];
                let reason = format!(
                    "{}: {}",
                    e["field"].as_str().unwrap_or("?"),
                    e["rule"].as_str().unwrap_or("?")
                );
                *summary.rejected_by_reason.entry(reason).or_default() += 1;
            }
            other => bail!("unexpected lead status {other:?}"),
        }
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    let into = if s.destinations.is_empty() {
        "a simulated HubSpot".to_string()
    } else {
        format!("{} simulated CRMs at once", s.destinations.len())
    };
    println!(
        "leadgate demo: {} messy leads from 2 sources into {into}",
        s.received
    );
    println!("  received        {:>6}", s.received);
    println!("  accepted        {:>6}", s.accepted);
    println!("  rejected        {:>6}", s.rejected);
    for (reason, n) in &s.rejected_by_reason {
        println!("    {reason:<22}{n:>4}");
    }
    println!(
        "  duplicates      {:>6}  (same person: merged into its record, no second contact)",
        s.duplicates
    );
    println!(
        "  delivered       {:>6}  ({} of them updates carrying merged fields)",
        s.delivered, s.updates_from_merges
    );
    println!("  dead-lettered   {:>6}", s.dead_lettered);
    println!(
        "  unique persons  {:>6}  (by the file's truth column)",
        s.unique_persons
    );
    println!(
        "  CRM contacts    {:>6}  in {} API requests",
        s.crm_records, s.crm_requests
    );
    let verdict = if s.crm_records == s.unique_persons && s.crm_duplicate_emails == 0 {
        "exactly one contact per person"
    } else {
        "MISMATCH"
    };
    if !s.destinations.is_empty() {
        println!("  per destination  delivered  dead-lettered  CRM records");
        for (name, d) in &s.destinations {
            let ok = d.crm_records == s.unique_persons && d.crm_duplicate_emails == 0;
            println!(
                "    {name:<14}{:>9}  {:>13}  {:>11}  {}",
                d.delivered,
                d.dead_lettered,
                d.crm_records,
                if ok { "one per person" } else { "MISMATCH" }
            );
        }
    }
    println!("  result          {verdict}, in {:.1} s", s.seconds);
}
