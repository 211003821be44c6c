//! Per-event limits and the resource limiter that tells an out-of-memory apart from a panic.

use std::time::Duration;

/// What one event may consume. Defaults follow the contract.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory cap per plugin instance.
    pub memory_bytes: usize,
    /// Time spent *running wasm* per event; time inside capability calls is not counted,
    /// because upstream hooks legitimately wait minutes for Patroni.
    pub wasm_deadline: Duration,
    /// Bound on each capability call (clock sleeps excepted: they are the plugin's own waits).
    pub call_timeout: Duration,
    /// Bound on the whole event, waits included.
    pub event_timeout: Duration,
    /// Largest string or byte list a plugin may pass to one capability call.
    pub max_argument_bytes: usize,
    /// Guest stdout/stderr kept per event; the rest is counted and dropped.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            wasm_deadline: Duration::from_secs(30),
            call_timeout: Duration::from_secs(120),
            event_timeout: Duration::from_secs(15 * 60),
            max_argument_bytes: 4 << 20,
            max_output_bytes: 64 << 10,
        }
    }
}

/// A `ResourceLimiter` that records a refused growth, so that an out-of-memory is reported as
/// such: with a plain `StoreLimits` a refused `memory.grow` surfaces as the guest allocator's
/// abort, indistinguishable from a panic.
pub struct MemoryCap {
    pub limit: usize,
    /// The size a refused growth asked for.
    pub refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            // Trap right here instead of letting the guest see -1 and abort: the trap is
            // unambiguous and stops the plugin at the allocation that broke the cap.
            return Err(wasmtime::Error::msg(format!(
                "memory growth to {desired} bytes refused (limit {} bytes)",
                self.limit
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}
