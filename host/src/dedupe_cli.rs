//! `leadgate dedupe --input F.jsonl --output G.jsonl`: the server's dedupe
//! ([`crate::dedupe::Deduper`], same configuration) over a file of leads.
//! Every input line gets one output line, in input order; acceptance rules
//! do not apply, a lead is clustered on whatever fields it has.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::dedupe::{Decision, DedupeConfig, Deduper, Features, fingerprints};
use crate::normalize::{Acceptance, NormalizeOptions, NormalizedLead, normalize};

/// One output line.
#[derive(Clone, Debug, Serialize)]
pub struct BatchResult {
    pub id: String,
    pub cluster_id: String,
    pub decision: &'static str,
    pub score: Option<f64>,
    pub matched_id: Option<String>,
}

fn options(config: &DedupeConfig) -> NormalizeOptions {
    NormalizeOptions {
        default_region: config
            .default_region
            .to_ascii_uppercase()
            .parse()
            .unwrap_or(phonenumber::country::Id::US),
        acceptance: Acceptance {
            require_any: Vec::new(),
        },
        email_typos: Default::default(),
    }
}

/// Normalizes a lead object without acceptance rules: a field that cannot
/// be normalized is dropped, the rest is kept.
fn normalize_lenient(raw: &Value, options: &NormalizeOptions) -> NormalizedLead {
    match normalize(raw, options) {
        Ok(lead) => lead,
        Err(issues) => {
            let Value::Object(obj) = raw else {
                return NormalizedLead::default();
            };
            let mut obj = obj.clone();
            for issue in &issues {
                obj.remove(&issue.field);
            }
            normalize(&Value::Object(obj), options).unwrap_or_default()
        }
    }
}

fn lead_id(raw: &mut Value, line: usize) -> String {
    let id = raw.as_object_mut().and_then(|o| o.remove("id"));
    match id {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => format!("line-{line}"),
        Some(v) => v.to_string(),
    }
}

/// Dedupes lead objects in order (the shared implementation; the CLI and
/// the tests call it).
pub fn dedupe_values(leads: &[Value], config: &DedupeConfig) -> Vec<BatchResult> {
    let mut d = Deduper::new(config.clone());
    let opts = options(config);
    leads
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let mut raw = raw.clone();
            let id = lead_id(&mut raw, i + 1);
            decide_one(&mut d, &opts, id, &raw)
        })
        .collect()
}

fn decide_one(d: &mut Deduper, opts: &NormalizeOptions, id: String, raw: &Value) -> BatchResult {
    let lead = normalize_lenient(raw, opts);
    let features = Features::from_lead(&lead, d.config(), 0);
    let v = d.decide(&id, "batch", &fingerprints(&lead), features);
    let decision = match v.decision {
        Decision::New => "new",
        Decision::Duplicate { .. } => "duplicate",
        Decision::Possible { .. } => "possible",
    };
    BatchResult {
        cluster_id: v.person_id,
        id,
        decision,
        score: v.score.map(|s| (s * 100.0).round() / 100.0),
        matched_id: v.matched_id,
    }
}

/// Runs the command.
pub fn run(input: &Path, output: &Path, config: &DedupeConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let file =
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    let mut out = BufWriter::new(file);
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(lines.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} leads {per_sec} {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut d = Deduper::new(config.clone());
    let opts = options(config);
    let (mut new, mut dup, mut possible, mut bad) = (0usize, 0usize, 0usize, 0usize);
    for (i, line) in lines.iter().enumerate() {
        let mut raw: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                bad += 1;
                Value::Null
            }
        };
        let id = lead_id(&mut raw, i + 1);
        let r = decide_one(&mut d, &opts, id, &raw);
        match r.decision {
            "new" => new += 1,
            "duplicate" => dup += 1,
            _ => possible += 1,
        }
        serde_json::to_writer(&mut out, &r)?;
        out.write_all(b"\n")?;
        if let Some(bar) = &bar
            && i % 256 == 0
        {
            bar.set_position(i as u64);
        }
    }
    out.flush()?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "{} leads in {:.3} s: {new} new persons, {dup} duplicates, {possible} possible duplicates{}",
        lines.len(),
        started.elapsed().as_secs_f64(),
        if bad > 0 {
            format!(", {bad} lines not JSON (kept as empty leads)")
        } else {
            String::new()
        }
    );
    Ok(())
}
