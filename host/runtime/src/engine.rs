//! One wasmtime `Engine` per process: epoch interruption driven by a ticker
//! thread, the pooling allocator, and one linker per world with exactly the
//! imports a plugin is granted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::imports::{CallState, HostServices};
use crate::limits::CallLimits;

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub limits: CallLimits,
    /// Use the pooling instance allocator (fast instantiation).
    pub pooling: bool,
    /// Most component instances alive at once (pooling only).
    pub max_instances: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            limits: CallLimits::default(),
            pooling: true,
            max_instances: 256,
        }
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiles a component's bytes into a file of machine code for an engine
/// configured like this one (`Engine::precompile_component`), elsewhere:
/// in a child process, so that the compiler's memory (hundreds of MB for a
/// Python or JavaScript component, kept by the allocator once freed) never
/// becomes the host's. An error makes the engine compile in-process.
pub type ExternalCompiler =
    Arc<dyn Fn(&[u8], &std::path::Path) -> anyhow::Result<()> + Send + Sync>;

/// The process's plugin engine. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) engine: Engine,
    compiler: Option<ExternalCompiler>,
    pub(crate) adapter_linker: Arc<Linker<CallState>>,
    pub(crate) transform_linker: Arc<Linker<CallState>>,
    pub(crate) services: HostServices,
    pub(crate) limits: CallLimits,
    _ticker: Arc<Ticker>,
}

impl PluginEngine {
    pub fn new(options: EngineOptions, services: HostServices) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = options.max_instances;
            pool.total_component_instances(n);
            pool.total_core_instances(n * 8);
            pool.total_memories(n * 2);
            pool.total_tables(n * 8);
            pool.max_memories_per_component(4);
            pool.max_core_instances_per_component(64);
            pool.max_tables_per_component(64);
            pool.max_memory_size(options.limits.max_memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let mut adapter_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut adapter_linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::adapter::CrmAdapter::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut adapter_linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // 0.1.0 components import the same interfaces at 0.1.0: served by
        // the conversion boundary (`compat.rs`).
        bindings::v0_1::adapter::CrmAdapter::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut adapter_linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let mut transform_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut transform_linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::transform::SourceTransform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut transform_linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::v0_1::transform::SourceTransform::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut transform_linker, |s| s)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?;
        }

        Ok(PluginEngine {
            engine,
            compiler: None,
            adapter_linker: Arc::new(adapter_linker),
            transform_linker: Arc::new(transform_linker),
            services,
            limits: options.limits,
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// Compiles a component. CPU-heavy (tens of ms for a Rust adapter,
    /// seconds for Python or JavaScript): call it off the async runtime.
    pub fn compile(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        Component::new(&self.engine, wasm).map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// Compiles cache misses with `compiler` (see [`ExternalCompiler`]).
    pub fn with_compiler(mut self, compiler: ExternalCompiler) -> Self {
        self.compiler = Some(compiler);
        self
    }

    /// Compiles a component, or loads the machine code this host compiled
    /// for the same bytes and engine before (`cache_dir`, keyed by the
    /// bytes' hash and the engine's compatibility hash). On a miss the
    /// external compiler, if any, writes the entry; else this process
    /// does. CPU-heavy on a miss: call it off the async runtime.
    pub fn compile_cached(
        &self,
        wasm: &[u8],
        cache_dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Component> {
        let Some(dir) = cache_dir else {
            return self.compile(wasm);
        };
        let path = self.cache_path(wasm, dir);
        if path.exists() {
            match self.load_compiled(&path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compiled-component cache entry unusable; recompiling")
                }
            }
        }
        if let Some(compiler) = &self.compiler {
            match compiler(wasm, &path).and_then(|()| self.load_compiled(&path)) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "external compile failed; compiling in this process")
                }
            }
        }
        self.precompile_to(wasm, &path)?;
        self.load_compiled(&path)
    }

    /// Where the cache keeps the machine code of `wasm` for this engine.
    pub fn cache_path(&self, wasm: &[u8], dir: &std::path::Path) -> std::path::PathBuf {
        use sha2::Digest;
        let mut key = sha2::Sha256::new();
        key.update(wasm);
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut HashWriter(&mut key),
        );
        let name: String = key.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        dir.join(format!("{name}.cwasm"))
    }

    /// Compiles `wasm` to machine code for this engine and writes it to
    /// `path` atomically (a reader never sees half a file).
    pub fn precompile_to(&self, wasm: &[u8], path: &std::path::Path) -> anyhow::Result<()> {
        let bytes = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        // Unique per process and call: two threads may compile one file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    fn load_compiled(&self, path: &std::path::Path) -> anyhow::Result<Component> {
        // SAFETY: the file is in the host's own cache folder, written by
        // `precompile_to` of this program (in this process or a child it
        // started) under a name that holds this engine's compatibility
        // hash; wasmtime checks that hash and the format again on load.
        unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| anyhow::anyhow!("{e:#}"))
    }

    /// The underlying engine, for precompiled-artifact caching.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> CallLimits {
        self.limits
    }
}

/// Feeds `Hash` output into a SHA-256.
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(self.0, bytes);
    }
}
