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

/// The process's plugin engine. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) engine: Engine,
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

        let mut transform_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut transform_linker)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        bindings::transform::SourceTransform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut transform_linker,
            |s| s,
        )
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

    /// The underlying engine, for precompiled-artifact caching.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> CallLimits {
        self.limits
    }
}
