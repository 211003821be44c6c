//! The Patroni family over Patroni's REST API (port 8008), with reqwest.
//!
//! Patroni's API as the charm uses it (spec charm-anatomy 10.1, real-components 1):
//! - `GET /cluster` and `GET /health` answer JSON. `/health` answers 503 (still with the JSON
//!   body) when PostgreSQL is not running; that body is a result, not an error.
//! - `PATCH /config` takes a partial JSON document; `null` deletes a key.
//! - `POST /switchover`, `/restart`, `/reinitialize` answer plain text (`text/html`), e.g.
//!   `Successfully switched over to "pg0"` or, with 412, `candidate name does not match with
//!   sync_standby`. That text goes into the error message verbatim.
//!
//! Transport policy (owned here, not by plugins): every request has a timeout (10 s, as
//! upstream's `PATRONI_TIMEOUT`; `POST /restart` gets longer because Patroni answers it only
//! once PostgreSQL is back), and a failure to connect (refused, DNS) is retried once after a
//! short pause, which rides over a Patroni REST server that is restarting. Nothing else is
//! retried: a timed-out POST may have taken effect, so repeating it is the plugin's decision.
//!
//! HTTP status → error kind:
//! - 401, 403 → `forbidden` (wrong or missing `patroni` password);
//! - 404 → `not-found`;
//! - 409 (a restart is already scheduled) and 412 (the candidate is not the sync standby) →
//!   `conflict`: the request is well-formed but the cluster's current state refuses it, and may
//!   accept it later;
//! - 400, 422 → `invalid` (Patroni rejected the request itself);
//! - 408, 504 → `timeout`; other 5xx (e.g. 503 `restart conditions are not satisfied`,
//!   `I am the leader, can not reinitialize`) and anything unexpected → `other`.
//!
//! Transport: refused/DNS → `unreachable`; timeouts → `timeout`; a body that is not the JSON
//! expected (wrong content type, undecodable, truncated) → `other`, naming what was expected.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Targets, host_port, snippet};
use crate::bindings::patroni::{Auth, Cluster, ConfigPatch, Health, Member, Param, Target};
use crate::bindings::types::Kv;
use crate::bindings::{Error, ErrorKind};
use crate::capability::{CapResult, Patroni};

/// The CA the charm writes next to the data when TLS is on; Patroni's certificate chains to it.
pub const PRODUCTION_CA_FILE: &str = "/var/lib/postgresql/data/ca.pem";

/// Patroni's REST port.
const PATRONI_PORT: u16 = 8008;
/// The basic-auth user the charm configures in `restapi.authentication`.
const PATRONI_USER: &str = "patroni";

/// How the Patroni backend reaches members and how patient it is.
#[derive(Clone, Debug)]
pub struct PatroniConfig {
    pub targets: Targets,
    /// PEM bundle to verify Patroni's certificate when `auth.tls`. Read at each TLS request
    /// (it is small and appears only once the charm enables TLS); a change rebuilds the client.
    pub ca_file: Option<PathBuf>,
    /// Bound on one request, connect to last body byte.
    pub request_timeout: Duration,
    /// Bound on `POST /restart`, which Patroni answers when PostgreSQL is back up.
    pub restart_timeout: Duration,
    /// Bound on establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Extra attempts after a failure to connect (refused, DNS), and the pause before each.
    pub connect_retries: u32,
    pub retry_delay: Duration,
}

impl PatroniConfig {
    /// Defaults around explicit targets (tests remap these to loopback).
    pub fn new(targets: Targets) -> Self {
        PatroniConfig {
            targets,
            ca_file: None,
            request_timeout: Duration::from_secs(10),
            restart_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(3),
            connect_retries: 1,
            retry_delay: Duration::from_millis(500),
        }
    }

    /// Unit `<app>/<unit_number>` in namespace `namespace`, with the production CA file.
    pub fn production(app: &str, unit_number: u32, namespace: &str) -> Self {
        PatroniConfig {
            ca_file: Some(PRODUCTION_CA_FILE.into()),
            ..Self::new(Targets::for_unit(app, unit_number, namespace, PATRONI_PORT))
        }
    }
}

/// [`Patroni`] against real Patroni members.
pub struct PatroniBackend {
    config: PatroniConfig,
    http: reqwest::Client,
    /// The https client, keyed by the CA bundle it trusts.
    tls: Mutex<Option<(Vec<u8>, reqwest::Client)>>,
}

/// One answer, read whole.
struct Reply {
    status: u16,
    content_type: Option<String>,
    body: Bytes,
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls config with an explicit provider, so nothing depends on a process-wide default.
fn rustls_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PatroniBackend {
    pub fn new(config: PatroniConfig) -> CapResult<Self> {
        // The plain client never does TLS, but reqwest builds a TLS stack regardless; hand it
        // one with an explicit provider and no roots.
        let tls = rustls_config(rustls::RootCertStore::empty())
            .map_err(|e| Error::other(format!("cannot set up the Patroni http client: {e}")))?;
        let http = Self::builder(&config)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::other(format!("cannot set up the Patroni http client: {e}")))?;
        Ok(PatroniBackend {
            config,
            http,
            tls: Mutex::new(None),
        })
    }

    /// [`PatroniConfig::production`].
    pub fn production(app: &str, unit_number: u32, namespace: &str) -> CapResult<Self> {
        Self::new(PatroniConfig::production(app, unit_number, namespace))
    }

    pub fn config(&self) -> &PatroniConfig {
        &self.config
    }

    fn builder(config: &PatroniConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // Pods talk to each other directly; an HTTP(S)_PROXY in the charm's environment
            // must not capture cluster-internal traffic.
            .no_proxy()
            // One hook's calls are few and far apart; do not keep sockets to members that may
            // be gone by the next call.
            .pool_max_idle_per_host(0)
    }

    /// The https client trusting the configured CA (rebuilt when the file's content changes).
    fn tls_client(&self) -> CapResult<reqwest::Client> {
        let path = self.config.ca_file.as_ref().ok_or_else(|| {
            Error::other("https to Patroni was requested but no CA file is configured to verify its certificate")
        })?;
        let pem = std::fs::read(path).map_err(|e| {
            Error::other(format!(
                "https to Patroni needs the CA file {}: {e}",
                path.display()
            ))
        })?;
        let mut cache = self.tls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, client)) = cache.as_ref()
            && *cached == pem
        {
            return Ok(client.clone());
        }
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                Error::other(format!("CA file {} is not valid PEM: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                Error::other(format!(
                    "CA file {}: unusable certificate: {e}",
                    path.display()
                ))
            })?;
        }
        if roots.is_empty() {
            return Err(Error::other(format!(
                "CA file {} holds no certificate",
                path.display()
            )));
        }
        let tls = rustls_config(roots)
            .map_err(|e| Error::other(format!("cannot set up TLS to Patroni: {e}")))?;
        let client = Self::builder(&self.config)
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .build()
            .map_err(|e| Error::other(format!("cannot set up the Patroni https client: {e}")))?;
        *cache = Some((pem, client.clone()));
        Ok(client)
    }

    /// The base URL a target resolves to.
    pub fn base_url(&self, at: &Target, tls: bool) -> String {
        let name = match at {
            Target::OwnUnit => self.config.targets.own_unit.as_str(),
            Target::PrimaryService => self.config.targets.primary_service.as_str(),
            Target::Host(h) => h.as_str(),
        };
        let (host, port) = self.config.targets.resolve(name);
        format!(
            "{}://{}",
            if tls { "https" } else { "http" },
            host_port(&host, port)
        )
    }

    /// Sends one request and reads the whole answer; retries a failure to connect.
    async fn send(
        &self,
        at: &Target,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> CapResult<(String, Reply)> {
        let url = format!("{}{path}", self.base_url(at, auth.tls));
        let what = format!("{method} {url}");
        let client = if auth.tls {
            self.tls_client()?
        } else {
            self.http.clone()
        };
        let mut attempt = 0;
        loop {
            let mut req = client.request(method.clone(), &url).timeout(timeout);
            // Patroni only checks credentials on unsafe methods, but sending them always is
            // what upstream does and costs nothing.
            req = req.basic_auth(PATRONI_USER, Some(&auth.password));
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let result = async {
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>(Reply {
                    status,
                    content_type,
                    body,
                })
            }
            .await;
            match result {
                Ok(reply) => return Ok((what, reply)),
                Err(e)
                    if e.is_connect()
                        && !e.is_timeout()
                        && !is_tls_failure(&e)
                        && attempt < self.config.connect_retries =>
                {
                    attempt += 1;
                    tracing::debug!(request = %what, error = %chain(&e), attempt, "patroni: connect failed, retrying");
                    tokio::time::sleep(self.config.retry_delay).await;
                }
                Err(e) => {
                    return Err(transport_error(
                        &what,
                        &e,
                        (self.config.connect_timeout, timeout),
                        attempt,
                    ));
                }
            }
        }
    }

    /// A request whose 2xx answer must be JSON of type `T`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        at: &Target,
        auth: &Auth,
        path: &str,
    ) -> CapResult<T> {
        let (what, reply) = self
            .send(
                at,
                auth,
                Method::GET,
                path,
                None,
                self.config.request_timeout,
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(status_error(&what, &reply));
        }
        decode_json(&what, &reply)
    }

    /// A POST/PATCH whose answer only matters through its status.
    async fn command(
        &self,
        at: &Target,
        auth: &Auth,
        method: Method,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> CapResult<()> {
        let (what, reply) = self
            .send(at, auth, method, path, Some(body), timeout)
            .await?;
        if (200..300).contains(&reply.status) {
            tracing::debug!(request = %what, status = reply.status, answer = %snippet(&reply.body), "patroni");
            return Ok(());
        }
        Err(status_error(&what, &reply))
    }
}

use super::error_chain as chain;

/// Whether rustls refused the handshake somewhere down the error's causes (reqwest reports it
/// as a connect error, but the server was reached: it is a certificate or protocol problem).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error hides what it wraps from source() (it skips a level), and tokio-rustls
        // nests one io::Error in another: unwrap them by hand.
        let mut io = c.downcast_ref::<std::io::Error>();
        while let Some(inner) = io.and_then(std::io::Error::get_ref) {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            io = inner.downcast_ref::<std::io::Error>();
        }
        cur = c.source();
    }
    false
}

fn transport_error(
    what: &str,
    e: &reqwest::Error,
    timeouts: (Duration, Duration),
    retries: u32,
) -> Error {
    let (connect_timeout, timeout) = timeouts;
    let detail = chain(e);
    let tries = if retries > 0 {
        format!(" (after {} attempts)", retries + 1)
    } else {
        String::new()
    };
    if is_tls_failure(e) {
        Error::other(format!(
            "{what}: the TLS handshake with Patroni failed{tries}: {detail}"
        ))
    } else if e.is_connect() && e.is_timeout() {
        Error::timeout(format!(
            "{what}: cannot connect within {connect_timeout:?}{tries}: {detail}"
        ))
    } else if e.is_timeout() {
        Error::timeout(format!(
            "{what}: no complete answer within {timeout:?}{tries}: {detail}"
        ))
    } else if e.is_connect() {
        Error::unreachable(format!(
            "{what}: cannot connect to Patroni{tries}: {detail}"
        ))
    } else if e.is_body() || e.is_decode() {
        Error::other(format!(
            "{what}: the answer's body could not be read (truncated or malformed): {detail}"
        ))
    } else {
        Error::other(format!(
            "{what}: the exchange with Patroni failed: {detail}"
        ))
    }
}

fn status_error(what: &str, reply: &Reply) -> Error {
    let kind = match reply.status {
        401 | 403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::Conflict,
        400 | 422 => ErrorKind::Invalid,
        408 | 504 => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    };
    let text = snippet(&reply.body);
    let text = if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text
    };
    Error::new(
        kind,
        format!("{what}: Patroni answered {}: {text}", reply.status),
    )
}

fn decode_json<T: serde::de::DeserializeOwned>(what: &str, reply: &Reply) -> CapResult<T> {
    let media = reply
        .content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/json") {
        return Err(Error::other(format!(
            "{what}: expected a JSON answer from Patroni, got content type {:?} (status {}): {}",
            reply.content_type.as_deref().unwrap_or("none"),
            reply.status,
            snippet(&reply.body)
        )));
    }
    serde_json::from_slice(&reply.body).map_err(|e| {
        Error::other(format!(
            "{what}: Patroni's JSON answer (status {}) could not be decoded: {e}; body: {}",
            reply.status,
            snippet(&reply.body)
        ))
    })
}

// ---- JSON shapes ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ClusterJson {
    members: Vec<MemberJson>,
}

#[derive(Deserialize)]
struct MemberJson {
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    host: String,
    /// An integer, or `"unknown"` while a replica has not reported; absent on the leader.
    #[serde(default)]
    lag: Option<Value>,
    #[serde(default)]
    timeline: Option<Value>,
    #[serde(default)]
    tags: Map<String, Value>,
}

#[derive(Deserialize)]
struct HealthJson {
    state: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    replication_state: Option<String>,
    /// Present only when true.
    #[serde(default)]
    pending_restart: bool,
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn member(m: MemberJson) -> Member {
    Member {
        name: m.name,
        role: m.role,
        state: m.state,
        host: m.host,
        lag: m.lag.as_ref().and_then(Value::as_i64),
        timeline: m
            .timeline
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok()),
        tags: m
            .tags
            .iter()
            .map(|(k, v)| Kv::new(k, scalar_text(v)))
            .collect(),
    }
}

/// The PATCH body for a typed config patch: exactly the fields that are set, in Patroni's
/// names and nesting; `standby-cluster: some(none)` becomes `null`, which deletes the key.
pub(crate) fn config_patch_json(patch: &ConfigPatch) -> CapResult<Value> {
    let mut top = Map::new();
    if let Some(n) = patch.synchronous_node_count {
        top.insert("synchronous_node_count".into(), n.into());
    }
    if let Some(b) = patch.synchronous_mode_strict {
        top.insert("synchronous_mode_strict".into(), b.into());
    }
    if let Some(n) = patch.maximum_lag_on_failover {
        top.insert("maximum_lag_on_failover".into(), n.into());
    }
    if let Some(b) = patch.failsafe_mode {
        top.insert("failsafe_mode".into(), b.into());
    }
    if let Some(n) = patch.max_timelines_history {
        top.insert("max_timelines_history".into(), n.into());
    }
    let mut pg = Map::new();
    if let Some(b) = patch.remove_data_directory_on_rewind_failure {
        pg.insert("remove_data_directory_on_rewind_failure".into(), b.into());
    }
    if let Some(b) = patch.remove_data_directory_on_diverged_timelines {
        pg.insert(
            "remove_data_directory_on_diverged_timelines".into(),
            b.into(),
        );
    }
    if !patch.parameters.is_empty() {
        let mut params = Map::new();
        for (name, value) in &patch.parameters {
            let v = match value {
                Param::Text(s) => Value::from(s.as_str()),
                Param::Integer(i) => Value::from(*i),
                Param::Boolean(b) => Value::from(*b),
                Param::Float(f) => serde_json::Number::from_f64(*f)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "PostgreSQL parameter {name:?}: {f} is not a finite number"
                        ))
                    })?,
            };
            params.insert(name.clone(), v);
        }
        pg.insert("parameters".into(), Value::Object(params));
    }
    if !pg.is_empty() {
        top.insert("postgresql".into(), Value::Object(pg));
    }
    match &patch.standby_cluster {
        None => {}
        Some(None) => {
            top.insert("standby_cluster".into(), Value::Null);
        }
        Some(Some(s)) => {
            top.insert(
                "standby_cluster".into(),
                json!({ "host": s.host, "port": s.port }),
            );
        }
    }
    Ok(Value::Object(top))
}

#[async_trait]
impl Patroni for PatroniBackend {
    async fn cluster(&self, at: Target, auth: Auth) -> CapResult<Cluster> {
        let c: ClusterJson = self.get_json(&at, &auth, "/cluster").await?;
        Ok(Cluster {
            members: c.members.into_iter().map(member).collect(),
        })
    }

    /// 200 and 503 both carry the member's state; other statuses are errors.
    async fn health(&self, at: Target, auth: Auth) -> CapResult<Health> {
        let (what, reply) = self
            .send(
                &at,
                &auth,
                Method::GET,
                "/health",
                None,
                self.config.request_timeout,
            )
            .await?;
        if !matches!(reply.status, 200 | 503) {
            return Err(status_error(&what, &reply));
        }
        let h: HealthJson = decode_json(&what, &reply)?;
        Ok(Health {
            state: h.state,
            role: h.role,
            replication_state: h.replication_state,
            pending_restart: h.pending_restart,
        })
    }

    async fn patch_config(&self, at: Target, auth: Auth, patch: ConfigPatch) -> CapResult<()> {
        let body = config_patch_json(&patch)?;
        self.command(
            &at,
            &auth,
            Method::PATCH,
            "/config",
            &body,
            self.config.request_timeout,
        )
        .await
    }

    /// Without a `leader`, the current one is read from `/cluster` at the same target first,
    /// since Patroni refuses a switchover that does not name it.
    async fn switchover(
        &self,
        at: Target,
        auth: Auth,
        leader: Option<String>,
        candidate: Option<String>,
    ) -> CapResult<()> {
        let leader = match leader {
            Some(l) => l,
            None => {
                let cluster = self.cluster(at.clone(), auth.clone()).await?;
                cluster
                    .members
                    .into_iter()
                    .find(|m| m.role == "leader")
                    .map(|m| m.name)
                    .ok_or_else(|| {
                        Error::conflict(format!(
                            "switchover via {}: the cluster has no leader to switch over from",
                            self.base_url(&at, auth.tls)
                        ))
                    })?
            }
        };
        let mut body = Map::new();
        body.insert("leader".into(), leader.into());
        if let Some(c) = candidate {
            body.insert("candidate".into(), c.into());
        }
        self.command(
            &at,
            &auth,
            Method::POST,
            "/switchover",
            &Value::Object(body),
            self.config.request_timeout,
        )
        .await
    }

    async fn restart(&self, at: Target, auth: Auth) -> CapResult<()> {
        self.command(
            &at,
            &auth,
            Method::POST,
            "/restart",
            &json!({}),
            self.config.restart_timeout,
        )
        .await
    }

    /// Patroni starts the re-initialisation and answers at once.
    async fn reinitialize(&self, at: Target, auth: Auth) -> CapResult<()> {
        self.command(
            &at,
            &auth,
            Method::POST,
            "/reinitialize",
            &json!({}),
            self.config.request_timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::patroni::StandbyCluster;

    fn empty() -> ConfigPatch {
        ConfigPatch {
            synchronous_node_count: None,
            synchronous_mode_strict: None,
            maximum_lag_on_failover: None,
            failsafe_mode: None,
            max_timelines_history: None,
            remove_data_directory_on_rewind_failure: None,
            remove_data_directory_on_diverged_timelines: None,
            parameters: vec![],
            standby_cluster: None,
        }
    }

    #[test]
    fn an_empty_patch_is_an_empty_object() {
        assert_eq!(config_patch_json(&empty()).unwrap(), json!({}));
    }

    #[test]
    fn a_full_patch_uses_patronis_names_and_nesting() {
        let patch = ConfigPatch {
            synchronous_node_count: Some(2),
            synchronous_mode_strict: Some(false),
            maximum_lag_on_failover: Some(1048576),
            failsafe_mode: Some(true),
            max_timelines_history: Some(50),
            remove_data_directory_on_rewind_failure: Some(false),
            remove_data_directory_on_diverged_timelines: Some(false),
            parameters: vec![
                ("max_connections".into(), Param::Integer(100)),
                ("shared_buffers".into(), Param::Text("128MB".into())),
                ("autovacuum".into(), Param::Boolean(true)),
                ("random_page_cost".into(), Param::Float(1.5)),
            ],
            standby_cluster: Some(Some(StandbyCluster {
                host: "other-primary".into(),
                port: 5432,
            })),
        };
        assert_eq!(
            config_patch_json(&patch).unwrap(),
            json!({
                "synchronous_node_count": 2,
                "synchronous_mode_strict": false,
                "maximum_lag_on_failover": 1048576,
                "failsafe_mode": true,
                "max_timelines_history": 50,
                "postgresql": {
                    "remove_data_directory_on_rewind_failure": false,
                    "remove_data_directory_on_diverged_timelines": false,
                    "parameters": {"max_connections": 100, "shared_buffers": "128MB", "autovacuum": true, "random_page_cost": 1.5}
                },
                "standby_cluster": {"host": "other-primary", "port": 5432}
            })
        );
    }

    #[test]
    fn clearing_the_standby_cluster_sends_null() {
        let patch = ConfigPatch {
            standby_cluster: Some(None),
            ..empty()
        };
        assert_eq!(
            config_patch_json(&patch).unwrap().to_string(),
            r#"{"standby_cluster":null}"#
        );
    }

    #[test]
    fn a_non_finite_parameter_is_invalid() {
        let patch = ConfigPatch {
            parameters: vec![("x".into(), Param::Float(f64::NAN))],
            ..empty()
        };
        assert_eq!(
            config_patch_json(&patch).unwrap_err().kind,
            ErrorKind::Invalid
        );
    }

    #[test]
    fn cluster_json_of_patroni_4_decodes() {
        let body = r#"{"members":[
            {"name":"pg0","role":"leader","state":"running","api_url":"http://127.0.0.1:8008/patroni","host":"127.0.0.1","port":5441,"timeline":1},
            {"name":"pg1","role":"sync_standby","state":"streaming","host":"127.0.0.1","port":5442,"timeline":1,"lag":0,"receive_lag":0,"tags":{"nosync":false,"clonefrom":"x"}},
            {"name":"pg2","role":"replica","state":"starting","host":"127.0.0.1","port":5443,"lag":"unknown"}],"scope":"pgdemo"}"#;
        let c: ClusterJson = serde_json::from_str(body).unwrap();
        let members: Vec<Member> = c.members.into_iter().map(member).collect();
        assert_eq!(members[0].lag, None);
        assert_eq!(members[0].timeline, Some(1));
        assert_eq!(members[1].lag, Some(0));
        assert_eq!(
            members[1].tags,
            vec![Kv::new("clonefrom", "x"), Kv::new("nosync", "false")]
        );
        assert_eq!(members[2].lag, None);
        assert_eq!(members[2].timeline, None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let r = |status| Reply {
            status,
            content_type: Some("text/html".into()),
            body: Bytes::from_static(b"nope"),
        };
        let kind = |status| status_error("POST x", &r(status)).kind;
        assert_eq!(kind(401), ErrorKind::Forbidden);
        assert_eq!(kind(403), ErrorKind::Forbidden);
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(409), ErrorKind::Conflict);
        assert_eq!(kind(412), ErrorKind::Conflict);
        assert_eq!(kind(400), ErrorKind::Invalid);
        assert_eq!(kind(503), ErrorKind::Other);
        assert_eq!(kind(504), ErrorKind::Timeout);
        assert!(
            status_error("POST x", &r(412))
                .message
                .contains("412: nope")
        );
    }
}
