//! The production Kubernetes capability: the `kube` client against the model's namespace.
//!
//! In a Juju sidecar charm the charm container runs with the application's service account,
//! so the client is built from the in-cluster configuration; off-cluster (development, tests)
//! it falls back to the kubeconfig. The namespace is the model name and the field manager of
//! server-side apply is the application name, as the upstream charm's lightkube client uses.
//!
//! Errors keep the API server's `Status` message and map to the contract's kinds: the charm
//! branches on 403 (the app is not trusted) and 404 (already gone).

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::StatefulSet;
#[allow(deprecated)] // Endpoints is deprecated in Kubernetes 1.33, but Patroni's DCS uses it.
use k8s_openapi::api::core::v1::Endpoints as K8sEndpoints;
use k8s_openapi::api::core::v1::{Node, Pod as K8sPod, Service as K8sService};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference as K8sOwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::bindings::Error;
use crate::bindings::kubernetes::{
    Container, Endpoints, NodeAllocatable, ObjectKind, OwnerReference, Pod, Service, ServicePort,
};
use crate::bindings::types::Kv;
use crate::capability::{CapResult, Kubernetes};

/// How long one API request may take, end to end, unless configured otherwise. The runtime
/// bounds a whole capability call at 120 s; a single request should fail well before that.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The Kubernetes capability over a real API server.
pub struct KubernetesBackend {
    client: kube::Client,
    namespace: String,
    field_manager: String,
    request_timeout: Duration,
}

/// rustls needs one process-wide crypto provider; kube is built with `ring` (toolchain
/// pitfall 5). Installing twice is harmless (the second attempt reports the first).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl KubernetesBackend {
    /// The client a hook gets in production: the pod's service account when running in a
    /// cluster (`KUBERNETES_SERVICE_HOST` is set), else the kubeconfig (`KUBECONFIG` or
    /// `~/.kube/config`). `namespace` is the model name, `field_manager` the application name.
    pub async fn from_environment(
        namespace: impl Into<String>,
        field_manager: impl Into<String>,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        let config = match kube::Config::incluster() {
            Ok(c) => c,
            Err(in_cluster) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default()).await.map_err(|kubeconfig| {
                anyhow::anyhow!("no Kubernetes configuration: not in a cluster ({in_cluster}) and no usable kubeconfig ({kubeconfig})")
            })?,
        };
        Self::from_config(config, namespace, field_manager)
    }

    /// A client for an API server at `url` without credentials (tests, the k8s stand-in).
    pub fn from_url(
        url: &str,
        namespace: impl Into<String>,
        field_manager: impl Into<String>,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid Kubernetes API URL {url:?}: {e}"))?;
        Self::from_config(kube::Config::new(uri), namespace, field_manager)
    }

    /// A client from an explicit configuration.
    pub fn from_config(
        mut config: kube::Config,
        namespace: impl Into<String>,
        field_manager: impl Into<String>,
    ) -> anyhow::Result<Self> {
        install_crypto_provider();
        // kube 5 has no read timeout by default; a hung API server would then hold the hook
        // until the runtime's 120 s call timeout. Bound each read as well as the whole call.
        if config.read_timeout.is_none() {
            config.read_timeout = Some(DEFAULT_REQUEST_TIMEOUT);
        }
        // kube retries 429/503/504 up to 15 times with backoff growing to minutes, which turns
        // an overloaded API server into a silent stall. The upstream charm's client does not
        // retry; its handlers decide (and defer). Keep that: every answer reaches the plugin.
        config.default_retry = false;
        let namespace = namespace.into();
        config.default_namespace = namespace.clone();
        let client = kube::Client::try_from(config)
            .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client: {e}"))?;
        Ok(KubernetesBackend {
            client,
            namespace,
            field_manager: field_manager.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Bound every request at `timeout` (end to end, including a slow response body).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Run one request under the deadline and map its error.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> CapResult<T> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_error(what, &e)),
            Err(_) => Err(Error::timeout(format!(
                "{what}: no answer from the Kubernetes API within {:?}",
                self.request_timeout
            ))),
        }
    }

    fn apply_params(&self) -> PatchParams {
        PatchParams::apply(&self.field_manager).force()
    }
}

// ---------------------------------------------------------------- error mapping

/// Map a kube error to the contract's kinds, keeping the API's own message.
pub fn map_error(what: &str, e: &kube::Error) -> Error {
    if let kube::Error::Api(status) = e {
        let code = status.code;
        let detail = if status.reason.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code} {}", status.reason)
        };
        let message = format!("{what}: {} ({detail})", status.message.trim());
        return match code {
            403 => Error::forbidden(message),
            404 => Error::not_found(message),
            409 => Error::conflict(message),
            400 | 422 => Error::invalid(message),
            // 504 with reason Timeout is the API server's own request timeout.
            408 | 504 => Error::timeout(message),
            _ => Error::other(message),
        };
    }
    let message = format!("{what}: {}", chain(e));
    // Transport failures: look through the source chain for what really happened.
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                TimedOut => return Error::timeout(message),
                ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected
                | AddrNotAvailable | BrokenPipe | UnexpectedEof | HostUnreachable
                | NetworkUnreachable => return Error::unreachable(message),
                _ => {}
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Error::timeout(message);
            }
            // The connection closed before the whole response arrived (a truncated body, a
            // server that died mid-answer): the API was not reachable for this request.
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                return Error::unreachable(message);
            }
        }
        if let Some(c) = s.downcast_ref::<hyper_util::client::legacy::Error>()
            && c.is_connect()
        {
            return Error::unreachable(message);
        }
        source = s.source();
    }
    if message.contains("timed out") || message.contains("deadline has elapsed") {
        return Error::timeout(message);
    }
    Error::other(message)
}

use super::error_chain as chain;

// ---------------------------------------------------------------- conversions

fn kvs(map: Option<&BTreeMap<String, String>>) -> Vec<Kv> {
    map.map(|m| m.iter().map(|(k, v)| Kv::new(k, v)).collect())
        .unwrap_or_default()
}

fn quantities(map: Option<&BTreeMap<String, Quantity>>) -> Vec<Kv> {
    map.map(|m| m.iter().map(|(k, v)| Kv::new(k, &v.0)).collect())
        .unwrap_or_default()
}

fn to_owner(o: &K8sOwnerReference) -> OwnerReference {
    OwnerReference {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
        controller: o.controller,
        block_owner_deletion: o.block_owner_deletion,
    }
}

fn owner_json(o: &OwnerReference) -> Value {
    let mut v = json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid});
    if let Some(c) = o.controller {
        v["controller"] = json!(c);
    }
    if let Some(b) = o.block_owner_deletion {
        v["blockOwnerDeletion"] = json!(b);
    }
    v
}

fn owners(refs: Option<&Vec<K8sOwnerReference>>) -> Vec<OwnerReference> {
    refs.map(|r| r.iter().map(to_owner).collect())
        .unwrap_or_default()
}

fn selector_string(selector: &[Kv]) -> String {
    selector
        .iter()
        .map(|kv| format!("{}={}", kv.key, kv.value))
        .collect::<Vec<_>>()
        .join(",")
}

fn to_pod(p: K8sPod) -> Pod {
    let meta = &p.metadata;
    let spec = p.spec.as_ref();
    Pod {
        name: meta.name.clone().unwrap_or_default(),
        labels: kvs(meta.labels.as_ref()),
        annotations: kvs(meta.annotations.as_ref()),
        owner_references: owners(meta.owner_references.as_ref()),
        node_name: spec.and_then(|s| s.node_name.clone()),
        pod_ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
        containers: spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| Container {
                        name: c.name.clone(),
                        limits: quantities(c.resources.as_ref().and_then(|r| r.limits.as_ref())),
                        requests: quantities(
                            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn to_service(s: K8sService) -> Service {
    let spec = s.spec.as_ref();
    Service {
        name: s.metadata.name.clone().unwrap_or_default(),
        labels: kvs(s.metadata.labels.as_ref()),
        selector: kvs(spec.and_then(|s| s.selector.as_ref())),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone().unwrap_or_default(),
                        port: u16::try_from(p.port).unwrap_or(0),
                        // A named target port (`targetPort: postgresql`) has no number to
                        // report; Kubernetes defaults an absent one to `port`.
                        target_port: match &p.target_port {
                            Some(IntOrString::Int(i)) => u16::try_from(*i).unwrap_or(0),
                            Some(IntOrString::String(_)) => 0,
                            None => u16::try_from(p.port).unwrap_or(0),
                        },
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        service_type: spec.and_then(|s| s.type_.clone()).unwrap_or_default(),
        owner_references: owners(s.metadata.owner_references.as_ref()),
    }
}

#[allow(deprecated)]
fn to_endpoints(e: K8sEndpoints) -> Endpoints {
    Endpoints {
        name: e.metadata.name.clone().unwrap_or_default(),
        labels: kvs(e.metadata.labels.as_ref()),
        annotations: kvs(e.metadata.annotations.as_ref()),
        owner_references: owners(e.metadata.owner_references.as_ref()),
    }
}

fn kv_object(kvs: &[Kv]) -> Value {
    Value::Object(
        kvs.iter()
            .map(|kv| (kv.key.clone(), Value::String(kv.value.clone())))
            .collect(),
    )
}

// ---------------------------------------------------------------- the capability

#[async_trait]
impl Kubernetes for KubernetesBackend {
    async fn get_pod(&self, name: String) -> CapResult<Pod> {
        let api = self.api::<K8sPod>();
        self.call(&format!("get pod {name}"), api.get(&name))
            .await
            .map(to_pod)
    }

    async fn patch_pod_labels(&self, name: String, labels: Vec<Kv>) -> CapResult<()> {
        let api = self.api::<K8sPod>();
        let patch = json!({"metadata": {"labels": kv_object(&labels)}});
        self.call(
            &format!("patch labels of pod {name}"),
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        .map(drop)
    }

    async fn apply_service(&self, service: Service) -> CapResult<()> {
        let api = self.api::<K8sService>();
        let ports: Vec<Value> = service
            .ports
            .iter()
            .map(|p| {
                let mut port = json!({"port": p.port, "targetPort": p.target_port});
                if !p.name.is_empty() {
                    port["name"] = json!(p.name);
                }
                if !p.protocol.is_empty() {
                    port["protocol"] = json!(p.protocol);
                }
                port
            })
            .collect();
        let mut spec = json!({"selector": kv_object(&service.selector), "ports": ports});
        if !service.service_type.is_empty() {
            spec["type"] = json!(service.service_type);
        }
        let mut metadata = json!({"name": service.name, "namespace": self.namespace, "labels": kv_object(&service.labels)});
        if !service.owner_references.is_empty() {
            metadata["ownerReferences"] =
                Value::Array(service.owner_references.iter().map(owner_json).collect());
        }
        let body =
            json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec});
        self.call(
            &format!("apply service {}", service.name),
            api.patch(&service.name, &self.apply_params(), &Patch::Apply(&body)),
        )
        .await
        .map(drop)
    }

    async fn get_service(&self, name: String) -> CapResult<Service> {
        let api = self.api::<K8sService>();
        self.call(&format!("get service {name}"), api.get(&name))
            .await
            .map(to_service)
    }

    async fn delete_service(&self, name: String) -> CapResult<()> {
        let api = self.api::<K8sService>();
        self.call(
            &format!("delete service {name}"),
            api.delete(&name, &DeleteParams::default()),
        )
        .await
        .map(drop)
    }

    async fn list_services(&self, selector: Vec<Kv>) -> CapResult<Vec<Service>> {
        let api = self.api::<K8sService>();
        let sel = selector_string(&selector);
        let list = self
            .call(
                &format!("list services {sel:?}"),
                api.list(&ListParams::default().labels(&sel)),
            )
            .await?;
        Ok(list.items.into_iter().map(to_service).collect())
    }

    #[allow(deprecated)]
    async fn get_endpoints(&self, name: String) -> CapResult<Endpoints> {
        let api = self.api::<K8sEndpoints>();
        self.call(&format!("get endpoints {name}"), api.get(&name))
            .await
            .map(to_endpoints)
    }

    #[allow(deprecated)]
    async fn patch_endpoints_annotations(
        &self,
        name: String,
        annotations: Vec<(String, Option<String>)>,
    ) -> CapResult<()> {
        let api = self.api::<K8sEndpoints>();
        // A null value removes the key in a strategic merge patch.
        let values: serde_json::Map<String, Value> = annotations
            .into_iter()
            .map(|(k, v)| (k, v.map(Value::String).unwrap_or(Value::Null)))
            .collect();
        let patch = json!({"metadata": {"annotations": values}});
        self.call(
            &format!("patch annotations of endpoints {name}"),
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        .map(drop)
    }

    #[allow(deprecated)]
    async fn delete_endpoints(&self, name: String) -> CapResult<()> {
        let api = self.api::<K8sEndpoints>();
        self.call(
            &format!("delete endpoints {name}"),
            api.delete(&name, &DeleteParams::default()),
        )
        .await
        .map(drop)
    }

    #[allow(deprecated)]
    async fn list_endpoints(&self, selector: Vec<Kv>) -> CapResult<Vec<Endpoints>> {
        let api = self.api::<K8sEndpoints>();
        let sel = selector_string(&selector);
        let list = self
            .call(
                &format!("list endpoints {sel:?}"),
                api.list(&ListParams::default().labels(&sel)),
            )
            .await?;
        Ok(list.items.into_iter().map(to_endpoints).collect())
    }

    /// The `stop` hook's fix (spec 6.5): make pod 0's StatefulSet own Patroni's objects so
    /// Kubernetes garbage-collects them with the application.
    ///
    /// Upstream re-applies the whole object with `managedFields` dropped. Applying only
    /// `metadata.ownerReferences` has the same effect on the owners while claiming no other
    /// field for this manager (a forced apply of the whole object would take over Patroni's
    /// annotations). The object is read first: server-side apply would otherwise *create* a
    /// missing object, and an object already owned as asked needs no write.
    #[allow(deprecated)]
    async fn set_owner_references(
        &self,
        kind: ObjectKind,
        name: String,
        owners_wanted: Vec<OwnerReference>,
    ) -> CapResult<()> {
        let (kind_name, current) = match kind {
            ObjectKind::Service => {
                let api = self.api::<K8sService>();
                (
                    "Service",
                    self.call(&format!("get service {name}"), api.get(&name))
                        .await?
                        .metadata
                        .owner_references,
                )
            }
            ObjectKind::Endpoints => {
                let api = self.api::<K8sEndpoints>();
                (
                    "Endpoints",
                    self.call(&format!("get endpoints {name}"), api.get(&name))
                        .await?
                        .metadata
                        .owner_references,
                )
            }
        };
        if owners(current.as_ref()) == owners_wanted {
            return Ok(());
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": kind_name,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "ownerReferences": owners_wanted.iter().map(owner_json).collect::<Vec<_>>(),
            },
        });
        let what = format!(
            "apply owner references of {} {name}",
            kind_name.to_lowercase()
        );
        match kind {
            ObjectKind::Service => self
                .call(
                    &what,
                    self.api::<K8sService>().patch(
                        &name,
                        &self.apply_params(),
                        &Patch::Apply(&body),
                    ),
                )
                .await
                .map(drop),
            ObjectKind::Endpoints => self
                .call(
                    &what,
                    self.api::<K8sEndpoints>().patch(
                        &name,
                        &self.apply_params(),
                        &Patch::Apply(&body),
                    ),
                )
                .await
                .map(drop),
        }
    }

    async fn get_node_allocatable(&self, name: String) -> CapResult<NodeAllocatable> {
        // Nodes are cluster-scoped: this is why the charm needs `juju trust --scope=cluster`.
        let api: Api<Node> = Api::all(self.client.clone());
        let node = self
            .call(&format!("get node {name}"), api.get(&name))
            .await?;
        let alloc = node.status.and_then(|s| s.allocatable).unwrap_or_default();
        let get = |k: &str| {
            alloc
                .get(k)
                .map(|q| q.0.clone())
                .ok_or_else(|| Error::other(format!("node {name} reports no allocatable {k}")))
        };
        Ok(NodeAllocatable {
            cpu: get("cpu")?,
            memory: get("memory")?,
        })
    }

    async fn patch_statefulset_partition(&self, name: String, partition: u32) -> CapResult<()> {
        let api = self.api::<StatefulSet>();
        let patch =
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}}});
        self.call(
            &format!("patch partition of statefulset {name}"),
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        .map(drop)
    }
}
