use async_trait::async_trait;

use super::CapResult;
use crate::bindings::juju::{ConfigEntry, Identity, Port, SecretOwner, Status};
use crate::bindings::types::{Kv, LogLevel, NamedValue};

/// Juju: what a charm reaches through hook tools. Writes (relation data, secrets, state,
/// ports) become durable only at [`Juju::commit`], which the host calls when the dispatch
/// succeeded, as Juju commits hook-tool writes only when the hook exits 0.
#[async_trait]
pub trait Juju: Send + Sync {
    /// Answers from memory without waiting on anything (the simulated world). The host then
    /// skips the per-call timeout, which guards against a hung backend: it cannot fire, and
    /// its timer and runtime-handle clone were a visible share of a fuzz execution.
    fn in_memory(&self) -> bool {
        false
    }
    fn identity(&self) -> Identity;
    async fn is_leader(&self) -> CapResult<bool>;
    async fn config(&self) -> CapResult<Vec<ConfigEntry>>;
    async fn unit_status(&self) -> CapResult<Status>;
    async fn set_unit_status(&self, status: Status) -> CapResult<()>;
    async fn app_status(&self) -> CapResult<Status>;
    async fn set_app_status(&self, status: Status) -> CapResult<()>;
    async fn relation_ids(&self, endpoint: String) -> CapResult<Vec<u32>>;
    async fn relation_units(&self, relation_id: u32) -> CapResult<Vec<String>>;
    async fn relation_remote_app(&self, relation_id: u32) -> CapResult<String>;
    async fn relation_get(&self, relation_id: u32, of: String, app: bool) -> CapResult<Vec<Kv>>;
    async fn relation_set(&self, relation_id: u32, app: bool, changes: Vec<Kv>) -> CapResult<()>;
    async fn secret_get(&self, label: String) -> CapResult<Option<Vec<Kv>>>;
    async fn secret_add(
        &self,
        label: String,
        owner: SecretOwner,
        content: Vec<Kv>,
    ) -> CapResult<String>;
    async fn secret_set(&self, label: String, content: Vec<Kv>) -> CapResult<()>;
    async fn secret_remove(&self, id: String, revision: Option<u32>) -> CapResult<()>;
    async fn planned_units(&self) -> CapResult<u32>;
    async fn set_workload_version(&self, version: String) -> CapResult<()>;
    async fn state_get(&self, key: String) -> CapResult<Option<String>>;
    async fn state_set(&self, key: String, value: String) -> CapResult<()>;
    async fn state_delete(&self, key: String) -> CapResult<()>;
    async fn action_params(&self) -> CapResult<Vec<NamedValue>>;
    async fn action_set(&self, results: Vec<Kv>) -> CapResult<()>;
    async fn action_fail(&self, message: String) -> CapResult<()>;
    async fn action_log(&self, message: String) -> CapResult<()>;
    async fn set_ports(&self, ports: Vec<Port>) -> CapResult<()>;
    async fn log(&self, level: LogLevel, message: String);

    /// Make this dispatch's writes durable. Host-only: not part of the WIT contract.
    async fn commit(&self) -> anyhow::Result<()>;
}
