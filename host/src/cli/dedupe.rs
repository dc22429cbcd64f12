//! `leadgate dedupe --input F.jsonl --output G.jsonl`: the server's dedupe
//! ([`crate::pipeline::dedupe::Deduper`], same configuration) over a file of leads.
//! Every input line gets one output line, in input order; acceptance rules
//! do not apply, a lead is clustered on whatever fields it has.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;

use crate::pipeline::dedupe::train::{TrainOptions, train};
use crate::pipeline::dedupe::{
    Decision, DedupeConfig, Deduper, Features, Model, ModelFile, ModelHandle, Verdict, fingerprints,
};
use crate::pipeline::normalize::{NormalizeOptions, NormalizedLead, normalize};

/// `leadgate dedupe …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DedupeCommand {
    /// Train the match model on unlabelled leads: u from random pairs, m
    /// by expectation-maximisation over the candidate pairs blocking
    /// makes. Writes the model file the server reloads (`dedupe.model`,
    /// by default `dedupe-model.json` beside an SQLite store).
    Train {
        /// Leads to train on (JSONL, as `leadgate dedupe` reads); without
        /// it, the configured store's leads inside the dedupe window.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Where to write the model (default: the configured model file).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Most EM rounds.
        #[arg(long, default_value_t = TrainOptions::default().max_iterations)]
        max_iterations: usize,
        /// Random pairs u is counted on.
        #[arg(long, default_value_t = TrainOptions::default().random_pairs)]
        random_pairs: usize,
    },
}

/// Runs a `leadgate dedupe` subcommand.
pub async fn command(command: DedupeCommand) -> anyhow::Result<()> {
    match command {
        DedupeCommand::Train {
            input,
            output,
            config,
            max_iterations,
            random_pairs,
        } => {
            let config = Config::load(config.as_deref())?;
            let output = output.or_else(|| config.dedupe_model_file()).context(
                "no model file to write: give --output, set dedupe.model, or use an SQLite store",
            )?;
            let records = match input {
                Some(input) => file_features(&input, &config.dedupe)?,
                None => store_features(&config).await?,
            };
            let start = start_model(&config)?;
            let opts = TrainOptions {
                max_iterations,
                random_pairs,
                ..TrainOptions::default()
            };
            let started = std::time::Instant::now();
            let model = train(&records, &config.dedupe.custom_fields, &start, &opts)?;
            print_model(&model);
            model
                .write(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            eprintln!(
                "trained on {} leads in {:.2} s; wrote {} (a running server reloads it)",
                records.len(),
                started.elapsed().as_secs_f64(),
                output.display()
            );
            Ok(())
        }
    }
}

/// `leadgate dedupe --train`: the model trained on the input file, starting
/// from the configured one.
pub fn trained_on(input: &Path, config: &Config) -> anyhow::Result<ModelHandle> {
    let started = std::time::Instant::now();
    let records = file_features(input, &config.dedupe)?;
    let model = train(
        &records,
        &config.dedupe.custom_fields,
        &start_model(config)?,
        &TrainOptions::default(),
    )?;
    print_model(&model);
    eprintln!(
        "trained on {} leads in {:.2} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ModelHandle::fixed(Model::new(
        &model,
        &config.dedupe.custom_fields,
    )))
}

/// The model training starts from: the model file, else the bundled one.
fn start_model(config: &Config) -> anyhow::Result<ModelFile> {
    Ok(match config.dedupe_model_file().filter(|p| p.exists()) {
        Some(path) => ModelFile::read(&path)?,
        None => ModelFile::bundled(),
    })
}

/// The features of lead objects, normalized as `leadgate dedupe` does.
pub fn leads_features(leads: &[Value], config: &DedupeConfig) -> Vec<Features> {
    let opts = options(config);
    leads
        .iter()
        .map(|raw| Features::from_lead(&normalize_lenient(raw, &opts), config, 0))
        .collect()
}

/// The features of every lead in a JSONL file.
fn file_features(input: &Path, config: &DedupeConfig) -> anyhow::Result<Vec<Features>> {
    let opts = options(config);
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| finish(parse_line(line, i + 1, &opts).0, config, &opts).features)
        .collect())
}

/// The features of the store's leads inside the dedupe window.
async fn store_features(config: &Config) -> anyhow::Result<Vec<Features>> {
    let store = crate::store::open(
        &config.store.url,
        config.store.durability,
        crate::app::crypt(config)?,
    )
    .await
    .with_context(|| format!("opening the store at {}", config.store.url))?;
    let since = config.dedupe.window_start_ms(crate::now_ms());
    let mut records = Vec::new();
    store
        .load_dedupe_records(since, &mut |r| {
            if let Ok(lead) = serde_json::from_str::<NormalizedLead>(&r.normalized) {
                records.push(Features::from_lead(&lead, &config.dedupe, r.received_at_ms));
            }
        })
        .await?;
    Ok(records)
}

/// The trained weights, comparison by comparison.
fn print_model(model: &ModelFile) {
    if let Some(t) = &model.training {
        eprintln!(
            "{} candidate pairs ({} EM rounds{}), {} random pairs; matches among candidates {:.4}, prior λ {:.3e}",
            t.blocked_pairs,
            t.iterations,
            if t.converged {
                ", converged"
            } else {
                ", not converged"
            },
            t.random_pairs,
            t.blocked_match_share,
            model.prior
        );
    }
    for (comparison, levels) in &model.comparisons {
        let terms: Vec<String> = levels
            .iter()
            .map(|(level, p)| format!("{level} {:+.1}", (p.m / p.u).log2()))
            .collect();
        eprintln!("  {comparison}: {}", terms.join(", "));
    }
}

/// One output line.
#[derive(Clone, Debug, Serialize)]
pub struct BatchResult {
    pub id: String,
    pub cluster_id: String,
    pub decision: &'static str,
    /// The best candidate's match weight (bits).
    pub score: Option<f64>,
    /// Its match probability (1 for an exact match).
    pub probability: Option<f64>,
    pub matched_id: Option<String>,
}

fn options(config: &DedupeConfig) -> NormalizeOptions {
    let mut options = NormalizeOptions::with_region(phonenumber::country::Id::US);
    // (Validated with the configuration.)
    options.default_region =
        crate::pipeline::normalize::phone::region_setting(&config.default_region)
            .unwrap_or(options.default_region);
    options.without_acceptance()
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
    dedupe_values_with(leads, config, ModelHandle::bundled(&config.custom_fields))
}

/// [`dedupe_values`] with `model`.
pub fn dedupe_values_with(
    leads: &[Value],
    config: &DedupeConfig,
    model: ModelHandle,
) -> Vec<BatchResult> {
    let mut d = Deduper::with_model(config.clone(), model);
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
    batch_result(id, v)
}

/// One output line: the verdict for lead `id`.
fn batch_result(id: String, v: Verdict) -> BatchResult {
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
        probability: v.probability.map(|p| (p * 10_000.0).round() / 10_000.0),
        matched_id: v.matched_id,
    }
}

/// A lead read from the input, normalized but for its phone (which needs
/// the phone metadata, loaded meanwhile on another thread).
struct Parsed {
    id: String,
    lead: NormalizedLead,
    /// The `phone` value as posted, normalized in the second stage.
    phone: Option<Value>,
}

/// Stage one: parse a line, take its id, normalize everything but the
/// phone. A line that is not JSON is an empty lead (`bad`).
fn parse_line(line: &str, line_no: usize, opts: &NormalizeOptions) -> (Parsed, bool) {
    let (mut raw, bad) = match serde_json::from_str::<Value>(line) {
        Ok(v) => (v, false),
        Err(_) => (Value::Null, true),
    };
    let id = lead_id(&mut raw, line_no);
    // Normalization treats each field on its own (the phone only sets the
    // phone fields), so the phone can join the lead afterwards (the test
    // below holds this against normalizing the whole lead).
    let phone = raw.as_object_mut().and_then(|o| o.remove("phone"));
    let lead = normalize_lenient(&raw, opts);
    (Parsed { id, lead, phone }, bad)
}

/// Stage two: the phone, then what the dedupe index needs.
fn finish(p: Parsed, config: &DedupeConfig, opts: &NormalizeOptions) -> Prepared {
    let mut lead = p.lead;
    if let Some(phone) = p.phone {
        let mut obj = serde_json::Map::new();
        obj.insert("phone".into(), phone);
        let only = normalize_lenient(&Value::Object(obj), opts);
        lead.phone = only.phone;
        lead.phone_extension = only.phone_extension;
        lead.phone_type = only.phone_type;
    }
    Prepared {
        fps: fingerprints(&lead),
        features: Features::from_lead(&lead, config, 0),
        id: p.id,
    }
}

/// What [`Deduper::decide`] needs for one lead.
struct Prepared {
    id: String,
    fps: Vec<String>,
    features: Features,
}

fn decide_prepared(d: &mut Deduper, p: Prepared) -> BatchResult {
    let v = d.decide(&p.id, "batch", &p.fps, p.features);
    batch_result(p.id, v)
}

/// Whether some `"phone": "…"` is in the text (a quick look for whether
/// the phone metadata will be needed; a miss only costs time).
fn has_phone_string(text: &str) -> bool {
    text.match_indices("\"phone\"").any(|(i, m)| {
        let rest = text[i + m.len()..].trim_start();
        rest.strip_prefix(':')
            .is_some_and(|v| v.trim_start().starts_with('"'))
    })
}

/// Leads per hand-off between the two threads (small in tests, to go
/// through the hand-offs many times).
const CHUNK: usize = if cfg!(test) { 16 } else { 256 };

/// Chunks parsed but not yet decided, at most (bounds the memory of a big
/// input; a 10,000-lead file fits whole).
const AHEAD: usize = if cfg!(test) { 4 } else { 64 };

/// Runs the command.
///
/// The phone metadata takes about 85 ms to load, so one thread loads it
/// (if the input has phones) while the other parses the input and
/// normalizes everything but the phones; then the first normalizes the
/// phones and computes the fingerprints and features chunk by chunk while
/// the second decides, in input order, as chunks arrive. The output is
/// what deciding each line in turn would give.
pub fn run(
    input: &Path,
    output: &Path,
    config: &DedupeConfig,
    model: ModelHandle,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let opts = options(config);
    let (parsed_tx, parsed_rx) = std::sync::mpsc::channel::<Vec<Parsed>>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Vec<Prepared>>(AHEAD);
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    // Without any phone the metadata is never needed (and never loaded).
    let phones = has_phone_string(&text);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let region = opts.default_region;
        let opts_b = &opts;
        scope.spawn(move || {
            if phones {
                crate::pipeline::normalize::phone::warm_up(region);
            }
            for chunk in parsed_rx {
                let prepared = chunk
                    .into_iter()
                    .map(|p| finish(p, config, opts_b))
                    .collect();
                if ready_tx.send(prepared).is_err() {
                    return;
                }
            }
        });
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let file = std::fs::File::create(output)
            .with_context(|| format!("creating {}", output.display()))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(lines.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} leads {per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(bar)
        } else {
            None
        };
        let mut d = Deduper::with_model(config.clone(), model);
        let (mut new, mut dup, mut possible, mut bad) = (0usize, 0usize, 0usize, 0usize);
        let mut done = 0usize;
        let mut decide_chunk = |chunk: Vec<Prepared>| -> anyhow::Result<()> {
            for p in chunk {
                let r = decide_prepared(&mut d, p);
                match r.decision {
                    "new" => new += 1,
                    "duplicate" => dup += 1,
                    _ => possible += 1,
                }
                serde_json::to_writer(&mut out, &r)?;
                out.write_all(b"\n")?;
                done += 1;
            }
            if let Some(bar) = &bar {
                bar.set_position(done as u64);
            }
            Ok(())
        };
        // Parse ahead (all of a small file while the metadata loads), but
        // decide what is ready on the way and never hold more than
        // `AHEAD` chunks in flight.
        let (mut sent, mut decided) = (0usize, 0usize);
        for (c, chunk) in lines.chunks(CHUNK).enumerate() {
            let parsed = chunk
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    let (p, is_bad) = parse_line(line, c * CHUNK + i + 1, &opts);
                    bad += usize::from(is_bad);
                    p
                })
                .collect();
            if parsed_tx.send(parsed).is_err() {
                break;
            }
            sent += 1;
            loop {
                let ready = if sent - decided >= AHEAD {
                    ready_rx.recv().ok()
                } else {
                    ready_rx.try_recv().ok()
                };
                let Some(ready) = ready else {
                    break;
                };
                decide_chunk(ready)?;
                decided += 1;
            }
        }
        drop(parsed_tx);
        for ready in ready_rx {
            decide_chunk(ready)?;
        }
        out.flush()?;
        anyhow::ensure!(
            done == lines.len(),
            "the normalizing thread stopped after {done} of {} leads",
            lines.len()
        );
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-stage command decides every line as deciding the whole
    /// lead in one go ([`dedupe_values`]) does.
    #[test]
    fn the_command_decides_as_the_shared_implementation() {
        let mut lines: Vec<String> = crate::pipeline::dedupe::corpus::generate(11, 900)
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect();
        lines.extend(
            [
                r#"{"id": 7, "phone": 4152312671, "email": "a@b.com"}"#,
                r#"{"phone": "(415) 231-2671 ext. 9", "name": "Ann Lee", "priority": "urgent"}"#,
                r#"{"phone": null, "email": "A@B.com"}"#,
                r#"{"phone": "12345", "first_name": "Ann", "last_name": "Lee"}"#,
                r#"not json"#,
                r#"[1, 2]"#,
                r#"{"id": null, "phone": "+44 20 3595 3876"}"#,
            ]
            .map(String::from),
        );
        // Spread the odd lines through the file.
        let n = lines.len();
        for i in 0..7 {
            lines.swap(n - 1 - i, i * 97);
        }
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.jsonl");
        let output = dir.path().join("out.jsonl");
        std::fs::write(&input, lines.join("\n\n")).unwrap();
        let config = DedupeConfig::default();
        run(&input, &output, &config, ModelHandle::bundled(&[])).unwrap();
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
            .collect();
        let want: String = dedupe_values(&values, &config)
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        assert_eq!(std::fs::read_to_string(&output).unwrap(), want);
    }
}
