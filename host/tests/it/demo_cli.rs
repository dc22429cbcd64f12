//! `leadgate demo --json` as a user runs it: the real binary, its exit
//! code, and standard output holding exactly one JSON summary.

use std::process::{Command, Stdio};

use serde_json::Value;

#[test]
fn demo_json_prints_one_summary_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args(["demo", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("running leadgate demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line, no log: {stdout}");
    let s: Value = serde_json::from_str(lines[0]).expect("the summary is JSON");
    assert_eq!(s["received"], 1000, "{s}");
    assert_eq!(s["accepted"], 945, "{s}");
    assert_eq!(s["rejected"], 55, "{s}");
    assert_eq!(s["duplicates"], 345, "{s}");
    assert_eq!(s["unique_persons"], 600, "{s}");
    assert_eq!(s["crm_records"], 600, "{s}");
    assert_eq!(s["crm_duplicate_emails"], 0, "{s}");
    assert_eq!(s["dead_lettered"], 0, "{s}");
    let (delivered, updates) = (s["delivered"].as_u64(), s["updates_from_merges"].as_u64());
    assert_eq!(delivered, updates.map(|u| 600 + u), "{s}");
    let reasons = s["rejected_by_reason"].as_object().expect("reasons");
    assert_eq!(
        reasons.values().filter_map(Value::as_u64).sum::<u64>(),
        55,
        "{s}"
    );
}
