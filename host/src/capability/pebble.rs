use async_trait::async_trait;

use super::CapResult;
use crate::bindings::pebble::{
    ExecOutput, ExecRequest, FileInfo, FileOwner, Layer, Plan, ServiceInfo, SystemInfo,
};

/// Pebble in the workload container.
#[async_trait]
pub trait Pebble: Send + Sync {
    /// Answers from memory without waiting on anything (the simulated world). The host then
    /// skips the per-call timeout, which guards against a hung backend: it cannot fire, and
    /// its timer and runtime-handle clone were a visible share of a fuzz execution.
    fn in_memory(&self) -> bool {
        false
    }
    async fn system_info(&self) -> CapResult<SystemInfo>;
    async fn plan(&self) -> CapResult<Plan>;
    async fn add_layer(&self, label: String, layer: Layer, combine: bool) -> CapResult<()>;
    async fn replan(&self) -> CapResult<()>;
    async fn start(&self, services: Vec<String>) -> CapResult<()>;
    async fn stop(&self, services: Vec<String>) -> CapResult<()>;
    async fn restart(&self, services: Vec<String>) -> CapResult<()>;
    async fn services(&self, names: Vec<String>) -> CapResult<Vec<ServiceInfo>>;
    async fn push(
        &self,
        path: String,
        content: Vec<u8>,
        permissions: Option<u32>,
        owner: FileOwner,
        make_dirs: bool,
    ) -> CapResult<()>;
    async fn pull(&self, path: String) -> CapResult<Vec<u8>>;
    async fn exists(&self, path: String) -> CapResult<bool>;
    async fn list_files(&self, path: String, itself: bool) -> CapResult<Vec<FileInfo>>;
    async fn make_dir(
        &self,
        path: String,
        make_parents: bool,
        permissions: Option<u32>,
        owner: FileOwner,
    ) -> CapResult<()>;
    async fn remove_path(&self, path: String, recursive: bool) -> CapResult<()>;
    async fn exec(&self, request: ExecRequest) -> CapResult<ExecOutput>;
    async fn send_signal(&self, signal: String, services: Vec<String>) -> CapResult<()>;
}
