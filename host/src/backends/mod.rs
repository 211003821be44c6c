//! Production implementations of the capability families, talking to the real thing:
//!
//! - [`juju::HookToolsJuju`]: Juju's hook tools, each value read once per dispatch and each
//!   databag written once at commit.
//! - [`kubernetes::KubernetesBackend`]: the `kube` client in the model's namespace.
//!
//! - [`PebbleBackend`]: Pebble in the workload container, over its unix socket
//!   (`/charm/containers/postgresql/pebble.socket` in production).
//! - [`PatroniBackend`]: Patroni's REST API on port 8008 (http or https with the unit's CA).
//! - [`PostgresqlBackend`]: PostgreSQL on port 5432, through typed operations whose SQL
//!   quotes every identifier and literal.
//!
//! Every failure becomes a contract [`Error`] whose kind a plugin can branch on and whose
//! message names the operation, the place (socket, URL, host:port) and the server's own words.
//! Transport timeouts and retries live here, in the host, never in plugins.
//!
//! Where requests go is a [`Targets`] value: production derives pod and Service DNS names from
//! the application, unit number and namespace; tests remap those names to loopback ports.

pub mod juju;
pub mod kubernetes;
mod patroni;
mod pebble;
mod postgresql;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use patroni::{PRODUCTION_CA_FILE, PatroniBackend, PatroniConfig};
pub use pebble::{PEBBLE_SOCKET_ENV, PRODUCTION_PEBBLE_SOCKET, PebbleBackend};
pub use postgresql::{PostgresqlBackend, PostgresqlConfig, quote_ident, quote_literal};

use crate::bindings::Error;

/// A dynamic remap of host names, consulted before the static overrides; `None` means "no
/// opinion". Lets a test follow a moving leader without rebuilding the backend.
pub type HostResolver = Arc<dyn Fn(&str) -> Option<(String, u16)> + Send + Sync>;

/// Where the targets of one family's requests go.
///
/// A target first becomes a logical host name (own unit, primary Service, or a host the plugin
/// named), then that name is mapped to a `(host, port)`: by the resolver if one is set, else by
/// the overrides, else to `(name, default_port)`.
#[derive(Clone)]
pub struct Targets {
    /// This unit's pod: `<app>-<n>.<app>-endpoints`.
    pub own_unit: String,
    /// The charm-created Service selecting the primary: `<app>-primary.<ns>.svc.cluster.local`.
    pub primary_service: String,
    /// The port used when nothing remaps a name (8008 for Patroni, 5432 for PostgreSQL).
    pub default_port: u16,
    /// Exact host name → `(host, port)`.
    pub overrides: BTreeMap<String, (String, u16)>,
    pub resolver: Option<HostResolver>,
}

impl Targets {
    /// The production names of unit `<app>/<unit_number>` in namespace (model) `namespace`.
    pub fn for_unit(app: &str, unit_number: u32, namespace: &str, default_port: u16) -> Self {
        Targets {
            own_unit: format!("{app}-{unit_number}.{app}-endpoints"),
            primary_service: format!("{app}-primary.{namespace}.svc.cluster.local"),
            default_port,
            overrides: BTreeMap::new(),
            resolver: None,
        }
    }

    /// Sends requests for host `name` to `host:port` instead.
    pub fn with_override(
        mut self,
        name: impl Into<String>,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        self.overrides.insert(name.into(), (host.into(), port));
        self
    }

    /// Consults `resolver` first for every host name.
    pub fn with_resolver(
        mut self,
        resolver: impl Fn(&str) -> Option<(String, u16)> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// Maps a logical host name to where the connection goes.
    pub fn resolve(&self, name: &str) -> (String, u16) {
        if let Some(r) = &self.resolver
            && let Some(hp) = r(name)
        {
            return hp;
        }
        if let Some(hp) = self.overrides.get(name) {
            return hp.clone();
        }
        (name.to_string(), self.default_port)
    }
}

impl fmt::Debug for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Targets")
            .field("own_unit", &self.own_unit)
            .field("primary_service", &self.primary_service)
            .field("default_port", &self.default_port)
            .field("overrides", &self.overrides)
            .field("resolver", &self.resolver.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Cuts a server's body down to something that fits in an error message.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}… ({} bytes in all)", body.len())
}

/// Turns a pebble-client error into the contract's error, keeping the client's text (which
/// names the call, the socket or path, and Pebble's own message).
pub(crate) fn pebble_error(e: pebble_client::Error) -> Error {
    use pebble_client::ErrorKind as K;
    let kind = match e.kind() {
        K::NotFound => crate::bindings::ErrorKind::NotFound,
        K::Forbidden => crate::bindings::ErrorKind::Forbidden,
        K::Conflict => crate::bindings::ErrorKind::Conflict,
        K::Unreachable => crate::bindings::ErrorKind::Unreachable,
        K::Timeout => crate::bindings::ErrorKind::Timeout,
        K::Invalid => crate::bindings::ErrorKind::Invalid,
        K::Other => crate::bindings::ErrorKind::Other,
    };
    Error::new(kind, e.to_string())
}

/// Every capability family from the production backends, as a hook under Juju sees them:
/// identity from `JUJU_UNIT_NAME` and `JUJU_MODEL_NAME` (the model is the namespace), Juju
/// through the hook tools (`juju`, made by the caller first so its reads can start early),
/// Kubernetes through the pod's service account, Pebble through the
/// workload container's socket, Patroni and PostgreSQL at the unit's and the primary Service's
/// DNS names, real time and the operating system's CSPRNG.
pub async fn production(
    juju: Arc<juju::HookToolsJuju>,
) -> anyhow::Result<crate::capability::Capabilities> {
    let unit = std::env::var("JUJU_UNIT_NAME")
        .map_err(|_| anyhow::anyhow!("JUJU_UNIT_NAME is not set: the production backends need Juju's hook environment (or give --world)"))?;
    let namespace = std::env::var("JUJU_MODEL_NAME")
        .map_err(|_| anyhow::anyhow!("JUJU_MODEL_NAME is not set: the production backends need Juju's hook environment (or give --world)"))?;
    let (app, number) = unit
        .rsplit_once('/')
        .and_then(|(a, n)| Some((a.to_string(), n.parse::<u32>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("JUJU_UNIT_NAME={unit:?} is not <application>/<number>"))?;
    Ok(crate::capability::Capabilities {
        juju,
        kubernetes: Arc::new(
            kubernetes::KubernetesBackend::from_environment(namespace.clone(), app.clone()).await?,
        ),
        pebble: Arc::new(PebbleBackend::production()),
        patroni: Arc::new(
            PatroniBackend::production(&app, number, &namespace)
                .map_err(|e| anyhow::anyhow!("Patroni backend: {e}"))?,
        ),
        postgresql: Arc::new(PostgresqlBackend::production(&app, number, &namespace)),
        clock: Arc::new(crate::capability::SystemClock),
        random: Arc::new(crate::capability::SystemRandom),
    })
}

/// `error: cause: cause`, without repeating a cause its parent already printed, so that
/// "error sending request" says why.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_names_follow_the_charm() {
        let t = Targets::for_unit("postgresql-k8s", 2, "dev", 8008);
        assert_eq!(t.own_unit, "postgresql-k8s-2.postgresql-k8s-endpoints");
        assert_eq!(
            t.primary_service,
            "postgresql-k8s-primary.dev.svc.cluster.local"
        );
        assert_eq!(t.resolve(&t.own_unit), (t.own_unit.clone(), 8008));
    }

    #[test]
    fn resolver_beats_overrides_beats_default() {
        let t = Targets::for_unit("pg", 0, "ns", 5432)
            .with_override("a", "127.0.0.1", 1)
            .with_override("b", "127.0.0.1", 2)
            .with_resolver(|h| (h == "b").then(|| ("::1".to_string(), 3)));
        assert_eq!(t.resolve("a"), ("127.0.0.1".into(), 1));
        assert_eq!(t.resolve("b"), ("::1".into(), 3));
        assert_eq!(t.resolve("c"), ("c".into(), 5432));
        assert_eq!(host_port("::1", 3), "[::1]:3");
    }

    #[test]
    fn snippets_are_bounded() {
        let long = vec![b'x'; 5000];
        let s = snippet(&long);
        assert!(s.len() < 400 && s.ends_with("(5000 bytes in all)"), "{s}");
        assert_eq!(snippet(b"  short \n"), "short");
    }
}
