use async_trait::async_trait;

use super::CapResult;
use crate::bindings::patroni::{Auth, Cluster, ConfigPatch, Health, Target};

/// Patroni's REST API. Timeouts and retries of transport failures belong here, in the
/// host, not hidden in plugins.
#[async_trait]
pub trait Patroni: Send + Sync {
    /// Answers from memory without waiting on anything (the simulated world). The host then
    /// skips the per-call timeout, which guards against a hung backend: it cannot fire, and
    /// its timer and runtime-handle clone were a visible share of a fuzz execution.
    fn in_memory(&self) -> bool {
        false
    }
    async fn cluster(&self, at: Target, auth: Auth) -> CapResult<Cluster>;
    async fn health(&self, at: Target, auth: Auth) -> CapResult<Health>;
    async fn patch_config(&self, at: Target, auth: Auth, patch: ConfigPatch) -> CapResult<()>;
    async fn switchover(
        &self,
        at: Target,
        auth: Auth,
        leader: Option<String>,
        candidate: Option<String>,
    ) -> CapResult<()>;
    async fn restart(&self, at: Target, auth: Auth) -> CapResult<()>;
    async fn reinitialize(&self, at: Target, auth: Auth) -> CapResult<()>;
}
