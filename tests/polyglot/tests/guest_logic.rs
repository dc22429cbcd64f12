//! The Python and JavaScript adapters' own unit tests, run with their own
//! languages' test runners as part of `cargo test`.

use std::path::Path;
use std::process::Command;

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for these tests and could not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {}:\n{text}",
        dir.display()
    );
    println!("{text}");
}

#[test]
fn python_adapter_logic() {
    let dir = Path::new(leadgate_polyglot::WORKSPACE).join("adapters/pipedrive-py");
    run(&dir, "python3", &["-m", "unittest", "-v"]);
}

#[test]
fn javascript_adapter_logic() {
    let dir = Path::new(leadgate_polyglot::WORKSPACE).join("adapters/webhook-js");
    // The test files by name: `node --test DIR` runs a directory on Node 20
    // only (from Node 21 its arguments are glob patterns, and a bare
    // directory matches no file), while named files work on every version.
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("adapters/webhook-js/test")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test/*.test.mjs in {}", dir.display());
    let mut args = vec!["--test"];
    args.extend(files.iter().map(String::as_str));
    run(&dir, "node", &args);
}
