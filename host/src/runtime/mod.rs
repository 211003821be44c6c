//! The plugin runtime: one wasmtime engine, plugins loaded from disk at dispatch time, and one
//! fresh, limited store per event.
//!
//! Data flow of one event: [`Runtime::load`] reads `<plugins>/<name>.wasm` (so replacing the
//! file changes behaviour on the next dispatch), finds its compiled form in memory or in the
//! on-disk [`cache::Cache`], and [`Runtime::run`] instantiates it in a new `Store` whose data
//! ([`HostState`]) holds the capabilities, then calls `handle(event)` under the [`Limits`].

pub mod cache;
mod host_impl;
pub mod limits;
mod output;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{Event, Outcome, Plugin, PluginPre};
use crate::capability::Capabilities;
pub use cache::{Cache, CacheOutcome};
pub use limits::{Limits, MemoryCap};
use output::GuestOutput;

/// How often the epoch ticks; the wasm deadline is checked at this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One capability call, as recorded in a trace.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceEntry {
    /// `juju`, `kubernetes`, `pebble`, `patroni`, `postgresql`, `clock`, `random`.
    pub family: Cow<'static, str>,
    /// The WIT function, e.g. `patch-pod-labels`.
    pub call: Cow<'static, str>,
    /// The arguments, abbreviated, passwords masked (read it as a `&str`).
    pub args: TraceArgs,
    /// `ok`, or the error kind and message.
    pub result: Cow<'static, str>,
    /// The object a Kubernetes write names, also in `args`: kept apart so that the fuzzer's
    /// own-objects invariant reads it without formatting every write's arguments. Not part
    /// of the trace's printed or serialised form.
    #[serde(skip)]
    pub object: Option<String>,
}

/// A capability call's arguments as a trace shows them, formatted the first time they are
/// read. A fuzz execution records every call but reads the arguments of a few (its invariants
/// and flowchart coverage); formatting them all was a twentieth of its time. The copy holds
/// the raw arguments, passwords included, in this process's memory until the trace is
/// dropped; only the masked form is ever shown, printed or serialised.
pub struct TraceArgs {
    shown: std::sync::OnceLock<String>,
    format: Option<Box<dyn Fn() -> String + Send + Sync>>,
}

impl TraceArgs {
    /// Arguments to be formatted by `format` when first read.
    pub fn lazy(format: impl Fn() -> String + Send + Sync + 'static) -> Self {
        TraceArgs {
            shown: std::sync::OnceLock::new(),
            format: Some(Box::new(format)),
        }
    }

    pub fn as_str(&self) -> &str {
        self.shown
            .get_or_init(|| self.format.as_ref().map(|f| f()).unwrap_or_default())
    }
}

impl Default for TraceArgs {
    fn default() -> Self {
        TraceArgs::from(String::new())
    }
}

impl From<String> for TraceArgs {
    fn from(shown: String) -> Self {
        TraceArgs {
            shown: std::sync::OnceLock::from(shown),
            format: None,
        }
    }
}

impl From<&str> for TraceArgs {
    fn from(shown: &str) -> Self {
        TraceArgs::from(shown.to_owned())
    }
}

impl std::ops::Deref for TraceArgs {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Clone for TraceArgs {
    fn clone(&self) -> Self {
        TraceArgs::from(self.as_str())
    }
}

impl PartialEq for TraceArgs {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for TraceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for TraceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for TraceArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TraceArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(TraceArgs::from)
    }
}

/// Why a plugin did not produce an outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("plugin file {path} is missing")]
    Missing { path: PathBuf },
    #[error("plugin file {path} is not a valid component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("panicked: {message}")]
    Panic { message: String },
    #[error("out of memory: {detail}")]
    OutOfMemory { detail: String },
    #[error("deadline exceeded: ran wasm for more than {limit:?}")]
    Deadline { limit: Duration },
    #[error("event timed out after {limit:?} (capability waits included)")]
    EventTimeout { limit: Duration },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("returned an error: {message}")]
    Plugin { message: String },
}

impl Failure {
    /// A short word for the cause, for tables and JSON.
    pub fn cause(&self) -> &'static str {
        match self {
            Failure::Missing { .. } => "missing",
            Failure::Invalid { .. } => "invalid",
            Failure::Panic { .. } => "panic",
            Failure::OutOfMemory { .. } => "out-of-memory",
            Failure::Deadline { .. } => "deadline",
            Failure::EventTimeout { .. } => "event-timeout",
            Failure::Trap { .. } => "trap",
            Failure::Plugin { .. } => "error",
        }
    }
}

/// The result of running one event through one plugin.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub plugin: String,
    pub result: Result<Outcome, Failure>,
    /// Capability calls in order (empty unless tracing was requested).
    pub trace: Vec<TraceEntry>,
    pub stdout: String,
    pub stderr: String,
    /// Time spent running wasm, and inside capability calls.
    pub wasm_time: Duration,
    pub host_time: Duration,
}

/// Per-store data: the capabilities and the bookkeeping of the limits.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    caps: Capabilities,
    limits: Arc<Limits>,
    plugin: Arc<str>,
    started: Instant,
    host_time: Duration,
    deadline_hit: bool,
    trace: Option<Vec<TraceEntry>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// Set by the kernel on every change, content or metadata, and never settable by a user:
    /// a rewrite that restores the old mtime still changes it.
    ctime_ns: i128,
}

impl FileIdentity {
    /// Modified long enough ago that any further write gets a later mtime.
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        self.mtime_ns + 2_000_000_000 < now
    }

    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }

    /// The form kept in the cache's plugin records (see [`Cache::known_digest`]).
    fn record(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }
}

/// A loaded, linked plugin, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub name: String,
    pub digest: [u8; 32],
    pub cache: CacheOutcome,
    pre: PluginPre<HostState>,
}

pub struct RuntimeConfig {
    pub limits: Limits,
    /// Where compiled code is cached; `None` compiles in memory on every process start.
    pub cache_dir: Option<PathBuf>,
    /// Reuse instance slots across events ([`pool_config`]): worth it when one process runs
    /// many events (simulate, scenario, fuzz, tests). A `dispatch` runs one event, for which a
    /// pool only adds resident memory and a large address-space reservation (which a
    /// `ulimit -v` in a charm container could refuse), so it allocates on demand.
    pub instance_pool: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            cache_dir: None,
            instance_pool: true,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<Cache>,
    limits: Arc<Limits>,
    /// Compiled components by content hash: a hot-swapped file hashes differently.
    memo: Mutex<HashMap<[u8; 32], PluginPre<HostState>>>,
    /// Content hash by file identity, so an unchanged file is not re-read on every dispatch.
    seen: Mutex<HashMap<PathBuf, (FileIdentity, [u8; 32])>>,
    /// Plugin files are taken as unchanged once loaded (`pin_plugins`): no stat per load.
    pinned: AtomicBool,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let mut c = Config::new();
        c.epoch_interruption(true);
        // Fixed so that cache entries stay valid across runs of one host build.
        c.max_wasm_stack(1 << 20);
        // `perf record` can name JIT'd plugin functions through /tmp/perf-<pid>.map.
        if std::env::var_os("CHARM_HOST_PERFMAP").is_some() {
            c.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if config.instance_pool {
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(
                &config.limits,
            )));
        }
        let engine = Engine::new(&c)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?;
        }
        let cache = config.cache_dir.map(|d| Cache::new(d, &engine));
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits: Arc::new(config.limits),
            memo: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            pinned: AtomicBool::new(false),
            ticker_stop,
        })
    }

    /// Take plugin files as unchanged once loaded: `load` answers from memory without the
    /// stat that notices a hot swap. For runs that own their plugin directory for their
    /// whole length (the fuzzer: the stat was a fortieth of a leader-elected execution).
    pub fn pin_plugins(&self) {
        self.pinned.store(true, Ordering::Relaxed);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The plugin file for a hook or action name.
    pub fn plugin_path(plugins_dir: &Path, name: &str) -> PathBuf {
        plugins_dir.join(format!("{name}.wasm"))
    }

    /// Read and prepare `<plugins_dir>/<name>.wasm`. The file is read on every call, so a
    /// replaced file takes effect at once; unchanged content reuses the compiled code.
    pub fn load(&self, plugins_dir: &Path, name: &str) -> Result<LoadedPlugin, Failure> {
        let path = Self::plugin_path(plugins_dir, name);
        // Pinned: whatever was loaded from this path, without a stat.
        if self.pinned.load(Ordering::Relaxed)
            && let Some(hit) = self.seen_hit(&path, name, |_| true)
        {
            return Ok(hit);
        }
        // Fast path: the same file (device, inode, size, mtime) as last time. Replacing the file
        // (a rename, or a write that changes mtime) changes its identity and re-reads it.
        let identity = std::fs::metadata(&path).ok().map(|m| FileIdentity::of(&m));
        if let Some(id) = identity {
            if let Some(hit) = self.seen_hit(&path, name, |known| *known == id) {
                return Ok(hit);
            }
            // A fresh process (every `dispatch`): the cache's record of this very file gives
            // its digest, and a verified compiled entry needs no wasm bytes at all. Reading
            // and hashing the component was a tenth of a warm dispatch's own work.
            if let Some(cache) = &self.cache
                && id.settled()
                && let Some(digest) = cache.known_digest(name, &id.record())
                && let Some(component) = cache.load_hit(&self.engine, &digest)
                && let Ok(pre) = self.link(&component, digest)
            {
                self.seen.lock().unwrap().insert(path, (id, digest));
                return Ok(LoadedPlugin {
                    name: name.into(),
                    digest,
                    cache: CacheOutcome::Hit,
                    pre,
                });
            }
        }
        let wasm = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::Missing { path });
            }
            Err(e) => {
                return Err(Failure::Invalid {
                    path,
                    reason: format!("cannot read: {e}"),
                });
            }
        };
        let loaded = self.load_bytes(name, &path, &wasm)?;
        // Remember the identity only when it cannot hide a later change: the file did not
        // change while it was read, and its mtime is old enough that a rewrite now would get a
        // different one (file timestamps are coarse; a rewrite of the same size in the same
        // tick would otherwise look unchanged). A recent file is simply hashed again next time.
        let after = std::fs::metadata(&path).ok().map(|m| FileIdentity::of(&m));
        if let (Some(id), true) = (identity, identity == after) {
            if id.settled() {
                if let Some(cache) = &self.cache {
                    cache.remember_digest(name, &id.record(), &loaded.digest);
                }
                self.seen.lock().unwrap().insert(path, (id, loaded.digest));
            } else if self.pinned.load(Ordering::Relaxed) {
                // Pinned: the caller promised no change for the run, settled or not.
                self.seen.lock().unwrap().insert(path, (id, loaded.digest));
            }
        }
        Ok(loaded)
    }

    /// The plugin last loaded from `path`, still compiled in memory, if its recorded identity
    /// passes `accept`.
    fn seen_hit(
        &self,
        path: &Path,
        name: &str,
        accept: impl Fn(&FileIdentity) -> bool,
    ) -> Option<LoadedPlugin> {
        let digest = self
            .seen
            .lock()
            .unwrap()
            .get(path)
            .filter(|(id, _)| accept(id))
            .map(|(_, d)| *d)?;
        let pre = self.memo.lock().unwrap().get(&digest)?.clone();
        Some(LoadedPlugin {
            name: name.into(),
            digest,
            cache: CacheOutcome::Hit,
            pre,
        })
    }

    /// Prepare a component from bytes; `path` only names it in errors.
    pub fn load_bytes(
        &self,
        name: &str,
        path: &Path,
        wasm: &[u8],
    ) -> Result<LoadedPlugin, Failure> {
        let digest: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(pre) = self.memo.lock().unwrap().get(&digest) {
            return Ok(LoadedPlugin {
                name: name.into(),
                digest,
                cache: CacheOutcome::Hit,
                pre: pre.clone(),
            });
        }
        let invalid = |reason: String| Failure::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(invalid("not a WebAssembly binary (bad magic)".into()));
        }
        let (component, outcome) = match &self.cache {
            Some(cache) => cache
                .load(&self.engine, wasm, &digest)
                .map_err(|e| invalid(format!("{e:#}")))?,
            None => (
                Component::new(&self.engine, wasm).map_err(|e| invalid(format!("{e:#}")))?,
                CacheOutcome::CompiledUncached,
            ),
        };
        let pre = self
            .link(&component, digest)
            .map_err(|e| invalid(format!("does not fit the charm:host contract: {e:#}")))?;
        Ok(LoadedPlugin {
            name: name.into(),
            digest,
            cache: outcome,
            pre,
        })
    }

    /// Link a component against the host's contract, and remember it under its digest.
    fn link(
        &self,
        component: &Component,
        digest: [u8; 32],
    ) -> wasmtime::Result<PluginPre<HostState>> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .and_then(PluginPre::new)?;
        self.memo.lock().unwrap().insert(digest, pre.clone());
        Ok(pre)
    }

    /// Compile a plugin into the on-disk cache (for `charm-host precompile`).
    pub fn precompile(&self, plugins_dir: &Path, name: &str) -> Result<CacheOutcome, Failure> {
        Ok(self.load(plugins_dir, name)?.cache)
    }

    /// Run one event in a fresh store.
    pub async fn run(
        &self,
        plugin: &LoadedPlugin,
        event: Event,
        caps: Capabilities,
        trace: bool,
    ) -> RunReport {
        let stdout = GuestOutput::new(self.limits.max_output_bytes);
        let stderr = GuestOutput::new(self.limits.max_output_bytes);
        let wasi = {
            let mut b = WasiCtx::builder();
            // Nothing ambient: no preopens, env, args or network. Time and randomness come from
            // the capabilities so that a simulated world is deterministic.
            b.allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .wall_clock(host_impl::WallClock(caps.clock.clone()))
                .monotonic_clock(host_impl::MonotonicClock(caps.clock.clone()))
                .secure_random(host_impl::HostRng(caps.random.clone()))
                .insecure_random(host_impl::HostRng(caps.random.clone()));
            b.build()
        };
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: self.limits.memory_bytes,
                refused: None,
            },
            caps,
            limits: self.limits.clone(),
            plugin: plugin.name.as_str().into(),
            started: Instant::now(),
            host_time: Duration::ZERO,
            deadline_hit: false,
            trace: trace.then(Vec::new),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let st = ctx.data_mut();
            let wasm_time = st.started.elapsed().saturating_sub(st.host_time);
            if wasm_time >= st.limits.wasm_deadline {
                st.deadline_hit = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield so the whole-event timeout can fire even while the guest spins.
            Ok(UpdateDeadline::Yield(1))
        });

        let event_name = event.name.clone();
        let call = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.call_handle(&mut store, &event).await
        };
        let outcome = tokio::time::timeout(self.limits.event_timeout, call).await;
        let st = store.data();
        let wasm_time = st.started.elapsed().saturating_sub(st.host_time);
        let result = match outcome {
            Err(_) => Err(Failure::EventTimeout {
                limit: self.limits.event_timeout,
            }),
            Ok(Ok(Ok(outcome))) => Ok(outcome),
            Ok(Ok(Err(message))) => Err(Failure::Plugin { message }),
            Ok(Err(e)) => Err(classify(&e, st, &stderr.text())),
        };
        let report = RunReport {
            plugin: plugin.name.clone(),
            result,
            trace: store.data_mut().trace.take().unwrap_or_default(),
            stdout: stdout.text(),
            stderr: stderr.text(),
            wasm_time,
            host_time: store.data().host_time,
        };
        for line in report.stdout.lines() {
            tracing::info!(plugin = %report.plugin, event = %event_name, "guest stdout: {line}");
        }
        for line in report.stderr.lines() {
            tracing::info!(plugin = %report.plugin, event = %event_name, "guest stderr: {line}");
        }
        report
    }
}

/// How many plugin instances may be alive at once in one runtime (one per running event;
/// the simulator and the fuzzer run one at a time, tests a few).
const POOL_INSTANCES: u32 = 64;

/// The pooling allocator: instance, memory, table and fiber-stack slots are reserved once and
/// reused, so a fresh store per event costs no mmap/munmap of a stack or a memory, and linear
/// memory is reset to its copy-on-write image instead of being built again. Reservations are
/// virtual address space only; what stays resident after an event is bounded by the
/// `keep_resident` sizes.
fn pool_config(limits: &Limits) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::default();
    // The limiter (MemoryCap) refuses growth past the cap before the pool's own maximum is
    // consulted; the pool's maximum must not be lower, or growth would fail silently first.
    let max_memory = limits.memory_bytes.max(1 << 20).next_multiple_of(64 << 10);
    p.total_component_instances(POOL_INSTANCES)
        // A Rust wasip2 component holds 3 core modules (the program, the WASI adapter, glue).
        .max_core_instances_per_component(16)
        .total_core_instances(POOL_INSTANCES * 4)
        .max_memories_per_component(4)
        .total_memories(POOL_INSTANCES * 2)
        .max_tables_per_component(8)
        .total_tables(POOL_INSTANCES * 4)
        .table_elements(1 << 16)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(max_memory)
        // Reset a reused slot by restoring its dirty pages (found with the PAGEMAP_SCAN ioctl,
        // Linux 6.7+) up to this size, the rest by madvise. Without the scan, wasmtime zeroes
        // the first `keep_resident` bytes whether dirty or not; the madvise, the TLB flush and
        // the page faults on the next event cost a fuzz execution about a quarter of its CPU.
        // Measured on the fuzzer with the scan: 64 KiB, 256 KiB and 1 MiB alike (within noise).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(16 << 10)
        .async_stack_keep_resident(64 << 10);
    p
}

/// Name the cause of a wasm-level failure. Order matters: the limiter's and the deadline's
/// own records are more precise than the trap code they cause.
fn classify(e: &wasmtime::Error, st: &HostState, stderr: &str) -> Failure {
    if let Some(desired) = st.memory.refused {
        return Failure::OutOfMemory {
            detail: format!(
                "linear memory growth to {} MiB refused (limit {} MiB)",
                desired >> 20,
                st.memory.limit >> 20
            ),
        };
    }
    if st.deadline_hit {
        return Failure::Deadline {
            limit: st.limits.wasm_deadline,
        };
    }
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::UnreachableCodeReached) {
        // Rust guests abort through `unreachable` after printing the panic message.
        if let Some(msg) = panic_message(stderr) {
            return Failure::Panic { message: msg };
        }
        if stderr.contains("memory allocation of") {
            return Failure::OutOfMemory {
                detail: stderr.trim().to_string(),
            };
        }
    }
    match trap {
        Some(Trap::StackOverflow) => Failure::Trap {
            message: "stack overflow (call stack exhausted)".into(),
        },
        Some(t) => Failure::Trap {
            message: t.to_string(),
        },
        None => Failure::Trap {
            message: format!("{:#}", e)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        },
    }
}

fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at")?;
    let rest = &stderr[start..];
    // "panicked at src/lib.rs:1:2:\n<message>"
    let mut lines = rest.lines();
    let location = lines.next()?.trim_end_matches(':').to_string();
    let message = lines.next().unwrap_or("").trim().to_string();
    Some(format!("{message} ({location})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written just now may be rewritten within the same timestamp tick, so its
    /// identity must not be trusted yet; an old file's identity changes on any rewrite.
    #[test]
    fn only_a_settled_file_identity_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"\0asm").unwrap();
        let fresh = FileIdentity::of(&std::fs::metadata(&path).unwrap());
        assert!(!fresh.settled());
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let settled = FileIdentity::of(&std::fs::metadata(&path).unwrap());
        assert!(settled.settled());
        assert_ne!(fresh, settled);
    }

    /// Formatted once, when first read, and the same text whichever way it is read.
    #[test]
    fn trace_args_are_formatted_once_when_first_read() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let args = TraceArgs::lazy(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            "(\"postgresql-k8s-0\",)".to_string()
        });
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not formatted until read");
        assert!(args.starts_with("(\"postgresql-k8s-0\""));
        assert_eq!(args.to_string(), "(\"postgresql-k8s-0\",)");
        assert_eq!(args.clone(), TraceArgs::from("(\"postgresql-k8s-0\",)"));
        assert_eq!(
            serde_json::to_string(&args).unwrap(),
            r#""(\"postgresql-k8s-0\",)""#
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "formatted once");
        assert_eq!(&*TraceArgs::default(), "");
    }
}
