//! The capability-using layer: what the upstream charm's handlers do, against the host's
//! capabilities (spec sections 2, 3, 6).
//!
//! - [`context`]: the per-dispatch context ([`Ctx`]): identity, leadership, the peer
//!   relation's databags (read once, written once at the end), config, status.
//! - [`secrets`]: peer secrets and password generation (spec 2.3.1).
//! - [`k8s`]: Services, pod labels, stale DCS cleanup, the leader annotation (spec 2.2, 2.3).
//! - [`patroni`]: the Patroni REST helper with its per-dispatch snapshot (spec 10.1, 13.7).
//! - [`reconcile`]: `update_config`, `_initialize_cluster`, `_add_members`, `_fix_pod`,
//!   extensions, the Pebble layer (spec 3.3).
//! - [`status`]: status texts and `_set_active_status` (spec 3.3.10, 8).
//! - [`upgrade`]: `upgrade.idle` and the `upgrade` relation's unit state (spec 6.7).
//! - [`hooks`]: one function per hook; the plugin crates are thin wrappers around them.
//!
//! Every capability call is a hook-tool process or a network request in production, so each
//! value is read once per dispatch where upstream's behaviour allows it (see [`Ctx`]).

pub mod context;
pub mod hooks;
pub mod k8s;
pub mod patroni;
pub mod reconcile;
pub mod secrets;
pub mod status;
pub mod upgrade;

pub use context::Ctx;

use crate::bindings::charm::host::types::{Error, Event, Outcome};
use core::fmt;

/// A hook failure: the plugin returns an error, the host fails the dispatch, and Juju retries
/// the hook later (nothing of the dispatch is committed). Upstream's uncaught exceptions.
#[derive(Debug, Clone, PartialEq)]
pub struct HookError(pub String);

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for HookError {
    fn from(e: Error) -> Self {
        HookError(describe(&e))
    }
}

impl From<String> for HookError {
    fn from(s: String) -> Self {
        HookError(s)
    }
}

pub type HookResult<T> = Result<T, HookError>;

/// `<kind>: <message>`, the text a capability error is logged and shown with.
pub fn describe(e: &Error) -> String {
    format!("{:?}: {}", e.kind, e.message)
}

/// Run one hook: build the context, run the handler, and write the batched Juju changes
/// (databags, secrets) when the handler finished or deferred. On an error nothing is written;
/// the host would discard the writes anyway.
///
/// The context is never dropped: the host instantiates a plugin for one event and throws its
/// linear memory away after it (`Runtime::run`), so freeing the context's caches (the config,
/// ~100 PostgreSQL parameters, the rendered `patroni.yml`, the databags) one by one would be
/// work for nothing: a few per cent of a pebble-ready fuzz execution (docs/BENCHMARKS.md,
/// session 10).
pub fn run(event: Event, handler: fn(&mut Ctx) -> HookResult<Outcome>) -> Result<Outcome, String> {
    let mut ctx = core::mem::ManuallyDrop::new(Ctx::new(event));
    let outcome = handler(&mut ctx).map_err(|e| e.0)?;
    ctx.flush().map_err(|e| e.0)?;
    Ok(outcome)
}

/// Export a hook plugin whose handler is `$handler` (a `fn(&mut Ctx) -> HookResult<Outcome>`).
#[macro_export]
macro_rules! hook_plugin {
    ($handler:path) => {
        struct HookPlugin;

        impl $crate::bindings::Guest for HookPlugin {
            fn handle(
                event: $crate::bindings::charm::host::types::Event,
            ) -> Result<$crate::bindings::charm::host::types::Outcome, String> {
                $crate::charm::run(event, $handler)
            }
        }

        $crate::bindings::export_plugin!(HookPlugin);
    };
}
