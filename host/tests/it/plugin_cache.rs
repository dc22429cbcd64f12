//! The compiled-component cache: a restart loads the machine code the host
//! compiled before instead of recompiling; an unusable entry is recompiled
//! and replaced; another engine configuration gets its own entry.

use leadgate_runtime::{AdapterPlugin, Capabilities};

fn cwasm_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_load_the_cached_machine_code() -> anyhow::Result<()> {
    leadgate_runtime::outbound::install_crypto_provider();
    let wasm = std::fs::read(leadgate_test_guests::BAD_ADAPTER)?;
    let cache = tempfile::tempdir()?;
    let config = leadgate::config::Config::from_toml("")?;

    // First start: compiled and written.
    let engine = leadgate::plugins::engine(&config.plugins)?;
    let first = engine.compile_cached(&wasm, Some(cache.path()))?;
    let files = cwasm_files(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let written = std::fs::metadata(&files[0])?.modified()?;

    // "Restart": a new engine with the same settings reuses the entry
    // without writing it again, and the component works.
    let engine = leadgate::plugins::engine(&config.plugins)?;
    let again = engine.compile_cached(&wasm, Some(cache.path()))?;
    assert_eq!(cwasm_files(cache.path()), files);
    assert_eq!(std::fs::metadata(&files[0])?.modified()?, written);
    let plugin = AdapterPlugin::load(&engine, "bad", &again, Capabilities::none()).await?;
    assert!(!plugin.info().name.is_empty());
    // Loaded components map the entry's file: let go of them before
    // damaging it, and damage it as a new file (as the host itself only
    // ever replaces entries by rename, never in place).
    drop((first, again, plugin));

    // A damaged entry is not trusted: recompiled and replaced.
    let damaged = cache.path().join("damaged.tmp");
    std::fs::write(&damaged, b"not machine code")?;
    std::fs::rename(&damaged, &files[0])?;
    let repaired = engine.compile_cached(&wasm, Some(cache.path()))?;
    AdapterPlugin::load(&engine, "bad", &repaired, Capabilities::none()).await?;
    assert!(
        std::fs::metadata(&files[0])?.len() > 1000,
        "entry rewritten"
    );

    // Other bytes get their own entry.
    let mut other = wasm.clone();
    // A custom section appended to a component changes its hash, not its meaning.
    other.extend_from_slice(&[0, 6, 5, b'x', b'-', b'l', b'g', b'!']);
    engine.compile_cached(&other, Some(cache.path()))?;
    assert_eq!(cwasm_files(cache.path()).len(), 2);
    Ok(())
}
