//! Per-call limits and the resource limiter that records why a call died.

use std::time::Duration;

/// Limits applied to every plugin call.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// Wall-clock deadline of one call, enforced with epoch interruption.
    pub deadline: Duration,
    /// Largest linear memory a guest may grow to.
    pub max_memory_bytes: usize,
    /// Largest total size of what a call may return.
    pub max_output_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            deadline: Duration::from_secs(30),
            max_memory_bytes: 64 << 20,
            max_output_bytes: 4 << 20,
        }
    }
}

/// A `ResourceLimiter` that remembers when a guest hit the memory cap, so
/// the trap that follows can be reported as what it is.
pub(crate) struct Limiter {
    max_memory_bytes: usize,
    pub(crate) memory_limit_hit: bool,
}

impl Limiter {
    pub(crate) fn new(max_memory_bytes: usize) -> Self {
        Limiter {
            max_memory_bytes,
            memory_limit_hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
