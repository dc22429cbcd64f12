//! `leadgate normalize --input F --output G`: the server's normalization
//! ([`crate::pipeline::normalize::normalize`], same options) over a file of leads.
//! CSV or JSONL in (by extension), the same format out: every input row or
//! line keeps its columns/keys and gains the normalized fields
//! (`norm_<field>`), `flags` (fields that could not be normalized) and
//! `errors` (why the server would reject the lead). A bad row gets its
//! errors and never stops the run.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::pipeline::normalize::{FieldIssue, NormalizeOptions, NormalizedLead, normalize};

/// Input and output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// From a file name: `.csv` is CSV; `.jsonl`,
    /// `.ndjson` and `.json` are JSON lines.
    pub fn from_path(path: &Path) -> anyhow::Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
            _ => anyhow::bail!(
                "{}: unknown format (use a .csv, .jsonl or .ndjson file)",
                path.display()
            ),
        }
    }
}

/// The normalized columns, in output order.
pub const NORMALIZED_COLUMNS: &[&str] = &[
    "email",
    "email_suggestion",
    "email_role",
    "email_disposable",
    "phone",
    "phone_extension",
    "phone_type",
    "name_prefix",
    "first_name",
    "middle_name",
    "last_name",
    "name_suffix",
    "full_name",
    "company",
    "company_key",
    "company_domain",
    "title",
    "website",
    "street",
    "city",
    "region",
    "postcode",
    "country",
    "date_of_birth",
    "priority",
];

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub flagged: usize,
}

/// One lead's outcome: its normalized fields (even when rejected), flags
/// and acceptance errors.
pub fn normalize_row(raw: &Value, options: &NormalizeOptions) -> (NormalizedLead, Vec<FieldIssue>) {
    match normalize(raw, options) {
        Ok(lead) => (lead, Vec::new()),
        Err(errors) => {
            let lenient = options.clone().without_acceptance();
            let lead = normalize(raw, &lenient).unwrap_or_default();
            (lead, errors)
        }
    }
}

fn column_value(lead: &NormalizedLead, column: &str) -> Value {
    match column {
        "email_role" => Value::Bool(lead.email_role),
        "email_disposable" => Value::Bool(lead.email_disposable),
        _ => {
            use crate::pipeline::mapping::LeadFields;
            lead.field(&[column.to_string()])
                .map(Value::String)
                .unwrap_or(Value::Null)
        }
    }
}

/// The `normalize` command: options from a configured source (the
/// server's exact settings) or from `--region` with the default
/// acceptance rule; prints a summary to stderr.
pub fn main(
    input: &Path,
    output: &Path,
    region: &str,
    source: Option<String>,
    config: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let options = match source {
        Some(name) => {
            let config = crate::config::Config::load(config.as_deref())?;
            let source = config
                .sources
                .get(&name)
                .with_context(|| format!("no source {name:?} in the configuration"))?;
            source
                .normalize_options()
                .map_err(|e| anyhow::anyhow!("sources.{name}: {e}"))?
        }
        None => {
            let mut options = NormalizeOptions::with_region(phonenumber::country::Id::US);
            options.default_region = crate::pipeline::normalize::phone::region_setting(region)
                .map_err(|e| anyhow::anyhow!("--region: {e}"))?;
            options
        }
    };
    let s = run(input, output, &options)?;
    eprintln!(
        "normalized {} lead(s): {} accepted, {} rejected, {} with flags",
        s.rows, s.accepted, s.rejected, s.flagged
    );
    Ok(())
}

/// Normalizes `input` into `output`, in the format their extension says.
pub fn run(input: &Path, output: &Path, options: &NormalizeOptions) -> anyhow::Result<Summary> {
    let format = Format::from_path(input)?;
    let out_format = Format::from_path(output)?;
    anyhow::ensure!(
        format == out_format,
        "the output must have the input's format ({:?})",
        format
    );
    let reader =
        BufReader::new(File::open(input).with_context(|| format!("opening {}", input.display()))?);
    let writer = BufWriter::new(
        File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    match format {
        Format::Jsonl => jsonl(reader, writer, options),
        Format::Csv => csv_file(reader, writer, options),
    }
}

fn tally(summary: &mut Summary, lead: &NormalizedLead, errors: &[FieldIssue]) {
    summary.rows += 1;
    if errors.is_empty() {
        summary.accepted += 1;
    } else {
        summary.rejected += 1;
    }
    if !lead.flags.is_empty() {
        summary.flagged += 1;
    }
}

/// JSON lines: each line's object gains `norm_<field>` keys, `flags` and
/// `errors`; a line that is not a JSON object is kept under `input`.
pub fn jsonl(
    reader: impl BufRead,
    mut writer: impl Write,
    options: &NormalizeOptions,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    for line in reader.lines() {
        let line = line.context("reading the input")?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(obj)) => {
                let raw = Value::Object(obj.clone());
                let (lead, errors) = normalize_row(&raw, options);
                tally(&mut summary, &lead, &errors);
                let mut out = obj;
                for column in NORMALIZED_COLUMNS {
                    out.insert(format!("norm_{column}"), column_value(&lead, column));
                }
                out.insert("flags".into(), json!(lead.flags));
                out.insert("errors".into(), json!(errors));
                Value::Object(out)
            }
            Ok(other) => {
                let (lead, errors) = normalize_row(&other, options);
                tally(&mut summary, &lead, &errors);
                json!({"input": other, "flags": [], "errors": errors})
            }
            Err(e) => {
                let errors = vec![FieldIssue::new("", "invalid_json", e.to_string())];
                tally(&mut summary, &NormalizedLead::default(), &errors);
                json!({"input": line, "flags": [], "errors": errors})
            }
        };
        serde_json::to_writer(&mut writer, &out)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(summary)
}

/// CSV: the header names the fields; each row gains `norm_<field>`
/// columns, `flags` and `errors` (JSON arrays). A malformed row keeps what
/// could be read and gets an `invalid_csv` error.
pub fn csv_file(
    reader: impl std::io::Read,
    writer: impl Write,
    options: &NormalizeOptions,
) -> anyhow::Result<Summary> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let mut wtr = csv::WriterBuilder::new().flexible(true).from_writer(writer);
    let headers = rdr.headers().context("reading the CSV header")?.clone();
    let mut out_header: Vec<String> = headers.iter().map(str::to_string).collect();
    out_header.extend(NORMALIZED_COLUMNS.iter().map(|c| format!("norm_{c}")));
    out_header.push("flags".into());
    out_header.push("errors".into());
    wtr.write_record(&out_header)?;
    let mut summary = Summary::default();
    let mut record = csv::StringRecord::new();
    loop {
        let mut row_errors = Vec::new();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // Invalid UTF-8 and the like: the row is reported, the run goes on.
                record.clear();
                row_errors.push(FieldIssue::new("", "invalid_csv", e.to_string()));
            }
        }
        if record.len() != headers.len() && row_errors.is_empty() {
            row_errors.push(FieldIssue::new(
                "",
                "invalid_csv",
                format!("{} columns, the header has {}", record.len(), headers.len()),
            ));
        }
        let mut obj = Map::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            if !v.is_empty() {
                obj.insert(h.to_string(), Value::String(v.to_string()));
            }
        }
        let (lead, mut errors) = normalize_row(&Value::Object(obj), options);
        row_errors.append(&mut errors);
        tally(&mut summary, &lead, &row_errors);
        let mut row: Vec<String> = (0..headers.len())
            .map(|i| record.get(i).unwrap_or("").to_string())
            .collect();
        for column in NORMALIZED_COLUMNS {
            row.push(match column_value(&lead, column) {
                Value::Null => String::new(),
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
        row.push(serde_json::to_string(&lead.flags)?);
        row.push(serde_json::to_string(&row_errors)?);
        wtr.write_record(&row)?;
    }
    wtr.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> NormalizeOptions {
        NormalizeOptions::with_region("US".parse().unwrap())
    }

    #[test]
    fn jsonl_keeps_keys_and_reports_bad_lines() {
        let input = "{\"email\":\" A@B.com \",\"phone\":\"12345\",\"ref\":7}\nnot json\n[1]\n{\"name\":\"Ann Lee\"}\n";
        let mut out = Vec::new();
        let s = jsonl(input.as_bytes(), &mut out, &opts()).unwrap();
        assert_eq!((s.rows, s.accepted, s.rejected, s.flagged), (4, 1, 3, 1));
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["email"], " A@B.com ");
        assert_eq!(lines[0]["ref"], 7);
        assert_eq!(lines[0]["norm_email"], "a@b.com");
        assert_eq!(lines[0]["norm_phone"], Value::Null);
        assert_eq!(lines[0]["flags"][0]["rule"], "invalid_phone");
        assert_eq!(lines[0]["errors"], json!([]));
        assert_eq!(lines[1]["errors"][0]["rule"], "invalid_json");
        assert_eq!(lines[2]["errors"][0]["rule"], "not_an_object");
        assert_eq!(lines[3]["norm_last_name"], "Lee");
        assert_eq!(lines[3]["errors"][0]["rule"], "required_one_of");
    }

    #[test]
    fn csv_adds_columns() {
        let input = "email,phone,name,extra\nJO@Gmial.com,(415) 231-2671,\"smith, john\",x\nbad,,,\n\"a@b.co\",1\n";
        let mut out = Vec::new();
        let s = csv_file(input.as_bytes(), &mut out, &opts()).unwrap();
        assert_eq!((s.rows, s.accepted, s.rejected), (3, 1, 2));
        let mut rdr = csv::Reader::from_reader(out.as_slice());
        let headers = rdr.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(&rows[0][col("email")], "JO@Gmial.com");
        assert_eq!(&rows[0][col("extra")], "x");
        assert_eq!(&rows[0][col("norm_email")], "jo@gmial.com");
        assert_eq!(&rows[0][col("norm_email_suggestion")], "jo@gmail.com");
        assert_eq!(&rows[0][col("norm_phone")], "+14152312671");
        assert_eq!(&rows[0][col("norm_first_name")], "John");
        assert_eq!(&rows[0][col("norm_last_name")], "Smith");
        assert_eq!(&rows[0][col("errors")], "[]");
        assert!(rows[1][col("errors")].contains("invalid_email"));
        // A short row is normalized on what it has and says it is short.
        assert_eq!(&rows[2][col("norm_email")], "a@b.co");
        assert!(rows[2][col("errors")].contains("invalid_csv"));
    }
}
