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

/// The server compiles in a child process (`leadgate plugin precompile`):
/// the child writes the cache entry, the host maps it and the component
/// works; a compiler that fails leaves the host compiling in process.
#[tokio::test(flavor = "multi_thread")]
async fn a_child_process_compiles_what_the_host_loads() -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    leadgate_runtime::outbound::install_crypto_provider();
    let wasm = std::fs::read(leadgate_test_guests::BAD_ADAPTER)?;
    let cache = tempfile::tempdir()?;
    let config = leadgate::config::Config::from_toml("")?;
    let child = leadgate::plugins::child_compiler(env!("CARGO_BIN_EXE_leadgate").into(), None);
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let engine = leadgate::plugins::engine(&config.plugins)?.with_compiler(Arc::new(
        move |wasm: &[u8], out: &std::path::Path| {
            counted.fetch_add(1, Ordering::SeqCst);
            let result = child(wasm, out);
            assert!(out.exists(), "the child wrote {}", out.display());
            result
        },
    ));
    let component = engine.compile_cached(&wasm, Some(cache.path()))?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cwasm_files(cache.path()).len(), 1);
    let plugin = AdapterPlugin::load(&engine, "bad", &component, Capabilities::none()).await?;
    assert!(!plugin.info().name.is_empty());
    // A hit does not call the compiler again.
    engine.compile_cached(&wasm, Some(cache.path()))?;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A child that cannot run: the host compiles it itself.
    let cache = tempfile::tempdir()?;
    let broken = leadgate::plugins::child_compiler("/nonexistent/leadgate".into(), None);
    let engine = leadgate::plugins::engine(&config.plugins)?.with_compiler(broken);
    let component = engine.compile_cached(&wasm, Some(cache.path()))?;
    AdapterPlugin::load(&engine, "bad", &component, Capabilities::none()).await?;
    assert_eq!(cwasm_files(cache.path()).len(), 1);

    // Bytes that are no component: the child refuses them and so does the
    // host, with the compiler's reason.
    let engine = leadgate::plugins::engine(&config.plugins)?.with_compiler(
        leadgate::plugins::child_compiler(env!("CARGO_BIN_EXE_leadgate").into(), None),
    );
    let err = engine
        .compile_cached(b"not a component", Some(cache.path()))
        .unwrap_err();
    assert!(format!("{err:#}").contains("magic"), "{err:#}");
    Ok(())
}
