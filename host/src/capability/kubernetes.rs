use async_trait::async_trait;

use super::CapResult;
use crate::bindings::kubernetes::{
    Endpoints, NodeAllocatable, ObjectKind, OwnerReference, Pod, Service,
};
use crate::bindings::types::Kv;

/// Kubernetes, in the model's namespace: the operations the charm performs.
#[async_trait]
pub trait Kubernetes: Send + Sync {
    /// Answers from memory without waiting on anything (the simulated world). The host then
    /// skips the per-call timeout, which guards against a hung backend: it cannot fire, and
    /// its timer and runtime-handle clone were a visible share of a fuzz execution.
    fn in_memory(&self) -> bool {
        false
    }
    async fn get_pod(&self, name: String) -> CapResult<Pod>;
    async fn patch_pod_labels(&self, name: String, labels: Vec<Kv>) -> CapResult<()>;
    async fn apply_service(&self, service: Service) -> CapResult<()>;
    async fn get_service(&self, name: String) -> CapResult<Service>;
    async fn delete_service(&self, name: String) -> CapResult<()>;
    async fn list_services(&self, selector: Vec<Kv>) -> CapResult<Vec<Service>>;
    async fn get_endpoints(&self, name: String) -> CapResult<Endpoints>;
    async fn patch_endpoints_annotations(
        &self,
        name: String,
        annotations: Vec<(String, Option<String>)>,
    ) -> CapResult<()>;
    async fn delete_endpoints(&self, name: String) -> CapResult<()>;
    async fn list_endpoints(&self, selector: Vec<Kv>) -> CapResult<Vec<Endpoints>>;
    async fn set_owner_references(
        &self,
        kind: ObjectKind,
        name: String,
        owners: Vec<OwnerReference>,
    ) -> CapResult<()>;
    async fn get_node_allocatable(&self, name: String) -> CapResult<NodeAllocatable>;
    async fn patch_statefulset_partition(&self, name: String, partition: u32) -> CapResult<()>;
}
