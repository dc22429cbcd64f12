//! The fuzz targets' corpora (`fuzz/corpus/TARGET/`: inputs the fuzzer
//! kept because they reached new code, minimized, plus the crashes it
//! found once fixed) replayed as regression tests: every input passes its
//! target (`leadgate::fuzz`) without a panic.

use std::path::Path;

type Target = fn(&[u8]);

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let targets: [(&str, Target); 3] = [
        ("ingest_payload", leadgate::fuzz::ingest_payload),
        ("mapping_render", leadgate::fuzz::mapping_render),
        ("stored_value", leadgate::fuzz::stored_value),
    ];
    for (name, target) in targets {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 3,
            "{name}: {} inputs; the corpus is committed with the targets",
            inputs.len()
        );
        for input in &inputs {
            let bytes = std::fs::read(input).unwrap();
            let run = std::panic::catch_unwind(|| target(&bytes));
            assert!(run.is_ok(), "{name} panics on {}", input.display());
        }
        eprintln!("{name}: {} inputs replayed", inputs.len());
    }
}
