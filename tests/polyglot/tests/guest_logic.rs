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
    run(&dir, "node", &["--test", "test/"]);
}
