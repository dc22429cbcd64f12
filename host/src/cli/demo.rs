//! `leadgate demo`: a simulated HubSpot, the host with the real HubSpot
//! adapter component, and about 1,000 messy scraped leads from two sources
//! (`demo/leads.jsonl`, each row labelled with the person it really is).
//! Posts them in file order, waits for the outbox to drain, and checks that
//! the CRM ends with exactly one contact per real person.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;

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
}

pub async fn run(json: bool) -> anyhow::Result<()> {
    let summary = run_demo(DEMO_LEADS).await?;
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
    Ok(())
}

/// Runs the demo on `rows` (the demo file's format) and returns the summary.
pub async fn run_demo(rows: &str) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rows: Vec<DemoRow> = rows
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("demo row {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;

    let sim = leadgate_sim::Simulator::start(leadgate_sim::SimConfig::default()).await?;
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
    let config = Config::from_toml(&toml)?;
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
    println!(
        "leadgate demo: {} messy leads from 2 sources into a simulated HubSpot",
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
    println!("  result          {verdict}, in {:.1} s", s.seconds);
}
