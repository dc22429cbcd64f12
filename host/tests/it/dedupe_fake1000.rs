//! Dedupe on Splink's fake_1000 (251 people, up to 7 noisy records each):
//! reports pairwise precision, recall and F1 (asserts only a sanity floor).

use std::io::Read;
use std::path::PathBuf;

use leadgate::cli::dedupe::dedupe_values;
use leadgate::pipeline::dedupe::DedupeConfig;
use leadgate::pipeline::dedupe::corpus::pairwise;
use serde_json::Value;

fn read_gz(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fake_1000")
        .join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "the fake_1000 dataset is missing: {} ({e}); it is part of the repository",
            path.display()
        )
    });
    let mut s = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut s)
        .expect("gzip");
    s
}

fn run(config: &DedupeConfig) -> (f64, f64, f64) {
    let mut leads: Vec<Value> = Vec::new();
    for line in read_gz("fake_1000.leads.jsonl.gz").lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut v: Value = serde_json::from_str(line).expect("lead JSON");
        let o = v.as_object_mut().expect("object");
        let id = o.remove("input_id").expect("input_id");
        o.insert("id".into(), id);
        leads.push(v);
    }
    let mut truth_of = std::collections::HashMap::new();
    for line in read_gz("fake_1000.truth.csv.gz").lines().skip(1) {
        let mut cols = line.split(',');
        let (id, cluster) = (cols.next().unwrap(), cols.next().unwrap());
        truth_of.insert(id.to_string(), cluster.to_string());
    }
    let out = dedupe_values(&leads, config);
    let predicted: Vec<String> = out.iter().map(|o| o.cluster_id.clone()).collect();
    let truth: Vec<String> = out.iter().map(|o| truth_of[&o.id].clone()).collect();
    pairwise(&predicted, &truth)
}

#[test]
fn fake_1000_pairwise_metrics() {
    let (p, r, f1) = run(&DedupeConfig::default());
    eprintln!("fake_1000, default config: precision {p:.4} recall {r:.4} F1 {f1:.4}");
    let with_dob = DedupeConfig {
        custom_fields: vec!["dob".into()],
        ..Default::default()
    };
    let (p2, r2, f2) = run(&with_dob);
    eprintln!("fake_1000, custom_fields = [\"dob\"]: precision {p2:.4} recall {r2:.4} F1 {f2:.4}");
    assert!(p > 0.5 && p2 > 0.5, "precision collapsed: {p} / {p2}");
    assert!(f1 > 0.1 && f2 > 0.1, "F1 collapsed: {f1} / {f2}");
}
