//! A Kubernetes API server stand-in that speaks the real REST/JSON wire protocol.
//!
//! No real API server can run in this project's environments, yet the charm's hooks, the
//! `kube` client and Patroni's Kubernetes DCS all need one. This crate serves the subset
//! they use — core/v1 pods, endpoints, services, configmaps, secrets,
//! persistentvolumeclaims, nodes, namespaces and apps/v1 statefulsets — over plain HTTP
//! with the semantics clients depend on: global `resourceVersion`s with optimistic
//! concurrency, label/field selectors, paging, chunked watch streams that resume from a
//! revision, every PATCH flavour, the status subresource split, finalizers, and `Status`
//! error bodies.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let handle = k8s_standin::StandIn::start("127.0.0.1:0").await?;
//! handle.write_kubeconfig("/tmp/kubeconfig", "demo")?;
//! handle.store().create(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "pg-0", "namespace": "demo", "labels": {"app": "pg"}},
//! }))?;
//! handle.controls().deny(k8s_standin::DenyRule::new("delete", "pods"));
//! handle.controls().inject(k8s_standin::Fault::new(500).method("PATCH").times(1));
//! # Ok(()) }
//! ```

mod control;
mod discovery;
mod error;
mod patch;
mod resource;
mod selector;
mod server;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::{JoinHandle, JoinSet};

pub use control::{Access, Controls, DenyRule, Fault, VERBS};
pub use error::{ApiError, Reason};
pub use patch::PatchType;
pub use resource::{RESOURCES, ResourceType};
pub use selector::{FieldSelector, LabelSelector};
pub use server::ServerOptions;
pub use store::{
    DEFAULT_HISTORY, EventType, ListOptions, ListPage, Preconditions, Store, WatchEvent,
    WatchStart, WriteScope,
};

/// Name of the context (and cluster and user) in kubeconfigs written by
/// [`Handle::write_kubeconfig`]. Patroni selects a context by name (`kubernetes.context`,
/// default `kind-kind`), so configure it with this value.
pub const KUBECONFIG_CONTEXT: &str = "k8s-standin";

/// Entry point: starts servers.
pub struct StandIn;

impl StandIn {
    /// Starts a server with an empty store and default options on `addr` (use port 0 for
    /// a free port). Must be called inside a tokio runtime; the server runs on it until
    /// the [`Handle`] is dropped or shut down.
    pub async fn start(addr: impl ToSocketAddrs) -> std::io::Result<Handle> {
        Self::start_with(addr, Arc::new(Store::new()), ServerOptions::default()).await
    }

    /// Starts a server over an existing (possibly pre-seeded) store.
    pub async fn start_with(
        addr: impl ToSocketAddrs,
        store: Arc<Store>,
        options: ServerOptions,
    ) -> std::io::Result<Handle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let controls = Arc::new(Controls::default());
        let state = Arc::new(server::State {
            store: store.clone(),
            controls: controls.clone(),
            options,
            addr,
        });
        let task = tokio::spawn(accept_loop(listener, state));
        tracing::info!(%addr, "k8s stand-in listening");
        Ok(Handle {
            addr,
            store,
            controls,
            task,
        })
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<server::State>) {
    // Connections live in this JoinSet so that aborting the accept task (shutdown, or the
    // handle being dropped) also ends every open connection and, with them, their watches.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                // Watch events are small writes that must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| server::handle(state.clone(), req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// A running stand-in. Dropping it stops the server.
pub struct Handle {
    addr: SocketAddr,
    store: Arc<Store>,
    controls: Arc<Controls>,
    task: JoinHandle<()>,
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The object store, for seeding and inspecting state directly.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// RBAC switch and fault injection.
    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    /// A kubeconfig document pointing at this server, with `namespace` as the context's
    /// default namespace.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        kubeconfig_yaml(&self.url(), namespace)
    }

    /// Writes [`Handle::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig(namespace))
    }

    /// Stops accepting requests and closes open connections and watches.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig for `server` using [`KUBECONFIG_CONTEXT`] and no credentials.
pub fn kubeconfig_yaml(server: &str, namespace: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": KUBECONFIG_CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": KUBECONFIG_CONTEXT, "user": {}}],
        "contexts": [{"name": KUBECONFIG_CONTEXT,
                      "context": {"cluster": KUBECONFIG_CONTEXT, "user": KUBECONFIG_CONTEXT, "namespace": namespace}}],
        "current-context": KUBECONFIG_CONTEXT,
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a JSON value always serialises to YAML")
}

/// Errors from loading seed objects.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file could not be read.
    #[error("reading seed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A YAML document did not parse.
    #[error("parsing seed document {index} of {path}: {source}")]
    Parse {
        path: String,
        index: usize,
        source: serde_yaml::Error,
    },
    /// The store rejected an object.
    #[error("seeding object {index} of {path}: {source}")]
    Rejected {
        path: String,
        index: usize,
        source: Box<ApiError>,
    },
}

/// Loads objects from a YAML file (several `---`-separated documents, each an object or a
/// `kind: List` with `items`) into the store, creating or replacing each. Returns how many
/// objects were written.
pub fn seed_from_file(store: &Store, path: impl AsRef<Path>) -> Result<usize, SeedError> {
    let display = path.as_ref().display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| SeedError::Read {
        path: display.clone(),
        source,
    })?;
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value: Value =
            serde::Deserialize::deserialize(document).map_err(|source| SeedError::Parse {
                path: display.clone(),
                index,
                source,
            })?;
        match value {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                objects.extend(
                    map.get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            other => objects.push(other),
        }
    }
    for (index, object) in objects.iter().enumerate() {
        store
            .upsert(object.clone())
            .map_err(|source| SeedError::Rejected {
                path: display.clone(),
                index,
                source: Box::new(source),
            })?;
    }
    Ok(objects.len())
}
