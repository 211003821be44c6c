//! The world's Kubernetes: the namespace's pods, services, endpoints, nodes and statefulsets.

use async_trait::async_trait;

use super::{
    Bag, EndpointsState, Inner, OwnerRef, ServicePortState, ServiceState, UnitSession, bag_to_kvs,
    kvs_to_bag,
};
use crate::bindings::Error;
use crate::bindings::kubernetes::{
    Container, Endpoints, NodeAllocatable, ObjectKind, OwnerReference, Pod, Service, ServicePort,
};
use crate::bindings::types::Kv;
use crate::capability::{CapResult, Kubernetes};

fn to_ref(o: &OwnerRef) -> OwnerReference {
    OwnerReference {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
        controller: o.controller,
        block_owner_deletion: o.block_owner_deletion,
    }
}

fn from_ref(o: &OwnerReference) -> OwnerRef {
    OwnerRef {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
        controller: o.controller,
        block_owner_deletion: o.block_owner_deletion,
    }
}

fn selects(selector: &[Kv], labels: &Bag) -> bool {
    selector
        .iter()
        .all(|kv| labels.get(&kv.key) == Some(&kv.value))
}

fn to_service(name: &str, s: &ServiceState) -> Service {
    Service {
        name: name.to_string(),
        labels: bag_to_kvs(&s.labels),
        selector: bag_to_kvs(&s.selector),
        ports: s
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                port: p.port,
                target_port: p.target_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        service_type: s.service_type.clone(),
        owner_references: s.owner_references.iter().map(to_ref).collect(),
    }
}

fn to_endpoints(name: &str, e: &EndpointsState) -> Endpoints {
    Endpoints {
        name: name.to_string(),
        labels: bag_to_kvs(&e.labels),
        annotations: bag_to_kvs(&e.annotations),
        owner_references: e.owner_references.iter().map(to_ref).collect(),
    }
}

impl UnitSession {
    /// Fault rules first, then trust: an untrusted application gets 403 for everything.
    fn k8s(&self, call: &str) -> CapResult<std::sync::MutexGuard<'_, Inner>> {
        let mut g = self.world.lock();
        self.fault(&mut g, "kubernetes", call)?;
        if !g.state.kubernetes.trusted {
            let ns = g.state.model.name.clone();
            return Err(Error::forbidden(format!(
                "{call} is forbidden: User \"system:serviceaccount:{ns}:{}\" cannot do this in namespace \"{ns}\" (403)",
                g.state.app
            )));
        }
        // Patroni labels pods and writes its DCS objects as time passes.
        super::patroni::tick(&mut g.state);
        Ok(g)
    }
}

fn not_found(kind: &str, name: &str) -> Error {
    Error::not_found(format!("{kind} \"{name}\" not found (404)"))
}

#[async_trait]
impl Kubernetes for UnitSession {
    fn in_memory(&self) -> bool {
        true
    }

    async fn get_pod(&self, name: String) -> CapResult<Pod> {
        let g = self.k8s("get-pod")?;
        let p = g
            .state
            .kubernetes
            .pods
            .get(&name)
            .ok_or_else(|| not_found("pods", &name))?;
        Ok(Pod {
            name: name.clone(),
            labels: bag_to_kvs(&p.labels),
            annotations: bag_to_kvs(&p.annotations),
            owner_references: p.owner_references.iter().map(to_ref).collect(),
            node_name: p.node_name.clone(),
            pod_ip: p.ip.clone(),
            containers: p
                .limits
                .iter()
                .map(|(c, limits)| Container {
                    name: c.clone(),
                    limits: bag_to_kvs(limits),
                    requests: vec![],
                })
                .collect(),
        })
    }

    async fn patch_pod_labels(&self, name: String, labels: Vec<Kv>) -> CapResult<()> {
        let mut g = self.k8s("patch-pod-labels")?;
        let k = &mut g.state.kubernetes;
        k.resource_version += 1;
        let rv = k.resource_version;
        let p = k
            .pods
            .get_mut(&name)
            .ok_or_else(|| not_found("pods", &name))?;
        p.labels.extend(kvs_to_bag(&labels));
        p.resource_version = rv;
        Ok(())
    }

    async fn apply_service(&self, service: Service) -> CapResult<()> {
        let mut g = self.k8s("apply-service")?;
        let manager = g.state.app.clone();
        let k = &mut g.state.kubernetes;
        k.resource_version += 1;
        let rv = k.resource_version;
        k.services.insert(
            service.name.clone(),
            ServiceState {
                labels: kvs_to_bag(&service.labels),
                selector: kvs_to_bag(&service.selector),
                ports: service
                    .ports
                    .iter()
                    .map(|p| ServicePortState {
                        name: p.name.clone(),
                        port: p.port,
                        target_port: p.target_port,
                        protocol: p.protocol.clone(),
                    })
                    .collect(),
                service_type: service.service_type.clone(),
                owner_references: service.owner_references.iter().map(from_ref).collect(),
                field_manager: Some(manager),
                resource_version: rv,
            },
        );
        Ok(())
    }

    async fn get_service(&self, name: String) -> CapResult<Service> {
        let g = self.k8s("get-service")?;
        g.state
            .kubernetes
            .services
            .get(&name)
            .map(|s| to_service(&name, s))
            .ok_or_else(|| not_found("services", &name))
    }

    async fn delete_service(&self, name: String) -> CapResult<()> {
        let mut g = self.k8s("delete-service")?;
        g.state
            .kubernetes
            .services
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_found("services", &name))
    }

    async fn list_services(&self, selector: Vec<Kv>) -> CapResult<Vec<Service>> {
        let g = self.k8s("list-services")?;
        Ok(g.state
            .kubernetes
            .services
            .iter()
            .filter(|(_, s)| selects(&selector, &s.labels))
            .map(|(n, s)| to_service(n, s))
            .collect())
    }

    async fn get_endpoints(&self, name: String) -> CapResult<Endpoints> {
        let g = self.k8s("get-endpoints")?;
        g.state
            .kubernetes
            .endpoints
            .get(&name)
            .map(|e| to_endpoints(&name, e))
            .ok_or_else(|| not_found("endpoints", &name))
    }

    async fn patch_endpoints_annotations(
        &self,
        name: String,
        annotations: Vec<(String, Option<String>)>,
    ) -> CapResult<()> {
        let mut g = self.k8s("patch-endpoints-annotations")?;
        let k = &mut g.state.kubernetes;
        k.resource_version += 1;
        let rv = k.resource_version;
        let e = k
            .endpoints
            .get_mut(&name)
            .ok_or_else(|| not_found("endpoints", &name))?;
        for (key, value) in annotations {
            match value {
                Some(v) => e.annotations.insert(key, v),
                None => e.annotations.remove(&key),
            };
        }
        e.resource_version = rv;
        Ok(())
    }

    async fn delete_endpoints(&self, name: String) -> CapResult<()> {
        let mut g = self.k8s("delete-endpoints")?;
        g.state
            .kubernetes
            .endpoints
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_found("endpoints", &name))
    }

    async fn list_endpoints(&self, selector: Vec<Kv>) -> CapResult<Vec<Endpoints>> {
        let g = self.k8s("list-endpoints")?;
        Ok(g.state
            .kubernetes
            .endpoints
            .iter()
            .filter(|(_, e)| selects(&selector, &e.labels))
            .map(|(n, e)| to_endpoints(n, e))
            .collect())
    }

    async fn set_owner_references(
        &self,
        kind: ObjectKind,
        name: String,
        owners: Vec<OwnerReference>,
    ) -> CapResult<()> {
        let mut g = self.k8s("set-owner-references")?;
        let refs: Vec<OwnerRef> = owners.iter().map(from_ref).collect();
        let k = &mut g.state.kubernetes;
        match kind {
            ObjectKind::Service => {
                k.services
                    .get_mut(&name)
                    .ok_or_else(|| not_found("services", &name))?
                    .owner_references = refs
            }
            ObjectKind::Endpoints => {
                k.endpoints
                    .get_mut(&name)
                    .ok_or_else(|| not_found("endpoints", &name))?
                    .owner_references = refs
            }
        }
        Ok(())
    }

    async fn get_node_allocatable(&self, name: String) -> CapResult<NodeAllocatable> {
        let g = self.k8s("get-node-allocatable")?;
        let n = g
            .state
            .kubernetes
            .nodes
            .get(&name)
            .ok_or_else(|| not_found("nodes", &name))?;
        Ok(NodeAllocatable {
            cpu: n.cpu.clone(),
            memory: n.memory.clone(),
        })
    }

    async fn patch_statefulset_partition(&self, name: String, partition: u32) -> CapResult<()> {
        let mut g = self.k8s("patch-statefulset-partition")?;
        g.state
            .kubernetes
            .statefulsets
            .get_mut(&name)
            .ok_or_else(|| not_found("statefulsets", &name))?
            .partition = partition;
        Ok(())
    }
}
