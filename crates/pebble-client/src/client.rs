//! [`Client`]: HTTP/1.1 over Pebble's unix socket, one connection per request.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use crate::error::{Error, Result};
use crate::multipart;
use crate::types::{
    Change, CheckInfo, CheckLevel, FileInfo, Layer, MakeDirOptions, Plan, PushOptions, ServiceInfo,
    SystemInfo, permissions_string,
};

/// How long one HTTP request may take, unless changed with [`Client::with_request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long service actions wait for their change, unless changed with
/// [`Client::with_change_timeout`].
pub const DEFAULT_CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Long-poll slice for `/v1/changes/{id}/wait`: short enough that a dead daemon is noticed.
const WAIT_SLICE: Duration = Duration::from_secs(4);
/// Poll interval when the daemon has no `/wait` endpoint.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// An async client for one Pebble daemon.
///
/// Cheap to clone. Every call opens its own connection to the socket, so a daemon restart
/// between calls is harmless and no pool needs managing.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    request_timeout: Duration,
    change_timeout: Duration,
}

/// A response as read off the wire, before any interpretation.
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Pebble's response envelope.
#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub change: Option<String>,
}

/// The `result` of an error envelope, and a per-path file error.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorResult {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// One path's outcome in a files response.
#[derive(Deserialize)]
pub(crate) struct FileResult {
    pub path: String,
    #[serde(default)]
    pub error: Option<ErrorResult>,
}

/// One request to make.
pub(crate) struct Call {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    /// Content type and bytes.
    pub body: Option<(String, Vec<u8>)>,
    pub accept: Option<&'static str>,
    /// Overrides the client's request timeout (long polls need longer).
    pub timeout: Option<Duration>,
}

impl Call {
    pub fn get(path: impl Into<String>) -> Self {
        Call {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
            accept: None,
            timeout: None,
        }
    }

    pub fn post_json(path: impl Into<String>, body: &Value) -> Self {
        Call {
            method: Method::POST,
            body: Some(("application/json".into(), body.to_string().into_bytes())),
            ..Call::get(path)
        }
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// `GET /v1/files?action=read&path=/etc/x` — names the call in error messages. The query
    /// is shown unencoded because it is for people to read.
    pub fn operation(&self) -> String {
        let mut op = format!("{} {}", self.method, self.path);
        for (i, (key, value)) in self.query.iter().enumerate() {
            op.push(if i == 0 { '?' } else { '&' });
            op.push_str(key);
            op.push('=');
            op.push_str(value);
        }
        op
    }
}

/// Aborts the spawned connection driver when the request is done or abandoned.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// A client for the daemon listening on `socket` (e.g. `/charm/containers/pg/pebble.socket`).
    /// Nothing is connected until the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            change_timeout: DEFAULT_CHANGE_TIMEOUT,
        }
    }

    /// Sets how long a single HTTP request (connect, send, read the whole reply) may take.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long service actions (start, stop, restart, replan, autostart) wait for
    /// their change to finish.
    pub fn with_change_timeout(mut self, timeout: Duration) -> Self {
        self.change_timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The request timeout in force.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    // ---- System -------------------------------------------------------------------------

    /// `GET /v1/system-info`; succeeding is what "can connect" means.
    pub async fn system_info(&self) -> Result<SystemInfo> {
        self.sync(Call::get("/v1/system-info")).await
    }

    // ---- Plan and layers ----------------------------------------------------------------

    /// The combined plan of all layers.
    pub async fn plan(&self) -> Result<Plan> {
        let call = Call::get("/v1/plan").query("format", "yaml");
        let op = call.operation();
        let yaml: String = self.sync(call).await?;
        Plan::from_yaml(&yaml).map_err(|e| Error::Protocol {
            operation: op,
            detail: format!("cannot parse the plan YAML: {e}"),
        })
    }

    /// Adds a layer under `label`. With `combine`, a layer with the same label is merged
    /// into; without it, an existing label is an error of kind `Conflict`.
    pub async fn add_layer(&self, label: &str, layer: &Layer, combine: bool) -> Result<()> {
        if label.is_empty() {
            return Err(Error::InvalidArgument(
                "layer label must not be empty".into(),
            ));
        }
        let body = json!({
            "action": "add",
            "combine": combine,
            "label": label,
            "format": "yaml",
            "layer": layer.to_yaml()?,
        });
        let _: Value = self.sync(Call::post_json("/v1/layers", &body)).await?;
        Ok(())
    }

    // ---- Services -----------------------------------------------------------------------

    /// The state of the named services, or of all services when `names` is empty.
    pub async fn services(&self, names: &[&str]) -> Result<Vec<ServiceInfo>> {
        let mut call = Call::get("/v1/services");
        if !names.is_empty() {
            call = call.query("names", names.join(","));
        }
        self.sync(call).await
    }

    /// Starts the named services and waits for the change.
    pub async fn start(&self, services: &[&str]) -> Result<Change> {
        self.service_action("start", services).await
    }

    /// Stops the named services and waits for the change.
    pub async fn stop(&self, services: &[&str]) -> Result<Change> {
        self.service_action("stop", services).await
    }

    /// Restarts the named services and waits for the change.
    pub async fn restart(&self, services: &[&str]) -> Result<Change> {
        self.service_action("restart", services).await
    }

    /// Brings running services in line with the plan: starts enabled services, restarts
    /// those whose definition changed. Waits for the change.
    pub async fn replan(&self) -> Result<Change> {
        self.service_action("replan", &[]).await
    }

    /// Starts the services marked `startup: enabled`. Waits for the change.
    pub async fn autostart(&self) -> Result<Change> {
        self.service_action("autostart", &[]).await
    }

    async fn service_action(&self, action: &str, services: &[&str]) -> Result<Change> {
        let body = json!({ "action": action, "services": services });
        let (change_id, _) = self
            .async_call(Call::post_json("/v1/services", &body))
            .await?;
        let change = self.wait_change(&change_id, self.change_timeout).await?;
        match change.err {
            Some(_) => Err(Error::Change {
                change: Box::new(change),
            }),
            None => Ok(change),
        }
    }

    /// Sends `signal` (e.g. `"SIGHUP"`) to the named running services.
    pub async fn send_signal(&self, signal: &str, services: &[&str]) -> Result<()> {
        if signal.is_empty() || services.is_empty() {
            return Err(Error::InvalidArgument(
                "send_signal needs a signal name and at least one service".into(),
            ));
        }
        let body = json!({ "signal": signal, "services": services });
        let _: Value = self.sync(Call::post_json("/v1/signals", &body)).await?;
        Ok(())
    }

    // ---- Changes ------------------------------------------------------------------------

    /// One change, as it is now.
    pub async fn change(&self, id: &str) -> Result<Change> {
        check_id("change id", id)?;
        self.sync(Call::get(format!("/v1/changes/{id}"))).await
    }

    /// Waits until the change is ready (done or failed) and returns it; its `err` says
    /// whether it failed. Fails with kind `Timeout` if it is not ready within `timeout`.
    pub async fn wait_change(&self, id: &str, timeout: Duration) -> Result<Change> {
        self.wait_change_until(id, Some((Instant::now() + timeout, timeout)))
            .await
    }

    /// Waits for a change; `deadline` is the instant and the total it was computed from.
    pub(crate) async fn wait_change_until(
        &self,
        id: &str,
        deadline: Option<(Instant, Duration)>,
    ) -> Result<Change> {
        check_id("change id", id)?;
        let path = format!("/v1/changes/{id}/wait");
        loop {
            let slice = remaining(id, deadline)?.map_or(WAIT_SLICE, |r| r.min(WAIT_SLICE));
            // Pebble reads "0s" as "wait forever", so never send less than a millisecond.
            let slice = slice.max(Duration::from_millis(1));
            let call = Call {
                timeout: Some(slice + self.request_timeout),
                ..Call::get(&path).query("timeout", format!("{:.3}s", slice.as_secs_f64()))
            };
            match self.sync::<Change>(call).await {
                Ok(change) if change.ready => return Ok(change),
                Ok(_) => continue,
                // The long poll's slice ran out; go round again until our own deadline.
                Err(Error::Api { status: 504, .. }) => continue,
                // Old daemons have no /wait endpoint; a missing change is reported by the
                // plain GET below just the same.
                Err(Error::Api { status: 404, .. }) => return self.poll_change(id, deadline).await,
                Err(e) => return Err(e),
            }
        }
    }

    async fn poll_change(&self, id: &str, deadline: Option<(Instant, Duration)>) -> Result<Change> {
        loop {
            let change = self.change(id).await?;
            if change.ready {
                return Ok(change);
            }
            let wait = remaining(id, deadline)?.map_or(POLL_INTERVAL, |r| r.min(POLL_INTERVAL));
            tokio::time::sleep(wait).await;
        }
    }

    // ---- Checks -------------------------------------------------------------------------

    /// Check states, filtered by level and names (empty = all).
    pub async fn checks(
        &self,
        level: Option<CheckLevel>,
        names: &[&str],
    ) -> Result<Vec<CheckInfo>> {
        let mut call = Call::get("/v1/checks");
        if let Some(level) = level {
            call = call.query("level", level.as_str());
        }
        if !names.is_empty() {
            call = call.query("names", names.join(","));
        }
        self.sync(call).await
    }

    /// Starts the named checks; returns those that changed state.
    pub async fn start_checks(&self, names: &[&str]) -> Result<Vec<String>> {
        self.checks_action("start", names).await
    }

    /// Stops the named checks; returns those that changed state.
    pub async fn stop_checks(&self, names: &[&str]) -> Result<Vec<String>> {
        self.checks_action("stop", names).await
    }

    async fn checks_action(&self, action: &str, names: &[&str]) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Changed {
            #[serde(default)]
            changed: Vec<String>,
        }
        let body = json!({ "action": action, "checks": names });
        let changed: Changed = self.sync(Call::post_json("/v1/checks", &body)).await?;
        Ok(changed.changed)
    }

    // ---- Files --------------------------------------------------------------------------

    /// Reads a whole file into memory. A missing file is an error of kind `NotFound`. The
    /// whole transfer must finish within the request timeout.
    pub async fn pull(&self, path: &str) -> Result<Vec<u8>> {
        check_absolute("pull", path)?;
        let call = Call {
            accept: Some("multipart/form-data"),
            ..Call::get("/v1/files")
                .query("action", "read")
                .query("path", path)
        };
        let op = call.operation();
        let raw = self.roundtrip(&call).await?;
        let media = media_type(raw.content_type.as_deref());
        if media.as_deref() != Some("multipart/form-data") {
            // Pebble answers a rejected request with a plain JSON error.
            let env = decode_envelope(&op, &raw)?;
            return Err(Error::Protocol {
                operation: op,
                detail: format!(
                    "expected a multipart/form-data body, got a {:?} response",
                    env.kind
                ),
            });
        }
        let (content, results) = parse_pull(&op, raw).await?;
        check_file_results("pull", &op, path, results)?;
        content.ok_or_else(|| Error::Protocol {
            operation: op,
            detail: format!("no file content for {path} and no error either"),
        })
    }

    /// Writes a whole file (atomically, on Pebble's side). The whole transfer must finish
    /// within the request timeout.
    pub async fn push(
        &self,
        path: &str,
        data: impl AsRef<[u8]>,
        options: &PushOptions,
    ) -> Result<()> {
        check_absolute("push", path)?;
        let mut item = serde_json::Map::new();
        item.insert("path".into(), path.into());
        if options.make_dirs {
            item.insert("make-dirs".into(), true.into());
        }
        if let Some(mode) = options.permissions {
            item.insert("permissions".into(), permissions_string(mode)?.into());
        }
        insert_owner(
            &mut item,
            &options.user,
            options.user_id,
            &options.group,
            options.group_id,
        );
        let request = json!({ "action": "write", "files": [item] }).to_string();
        let (content_type, body) = multipart::encode(&[
            multipart::Part {
                name: "request",
                filename: None,
                content_type: "application/json",
                body: request.as_bytes(),
            },
            multipart::Part {
                name: "files",
                filename: Some(path),
                content_type: "application/octet-stream",
                body: data.as_ref(),
            },
        ])?;
        let call = Call {
            method: Method::POST,
            body: Some((content_type, body)),
            ..Call::get("/v1/files")
        };
        let op = call.operation();
        let results: Vec<FileResult> = self.sync(call).await?;
        check_file_results("push", &op, path, results)
    }

    /// Lists a directory (or, with `itself`, describes the path itself), optionally
    /// filtered by a glob `pattern` on names.
    pub async fn list_files(
        &self,
        path: &str,
        pattern: Option<&str>,
        itself: bool,
    ) -> Result<Vec<FileInfo>> {
        check_absolute("list", path)?;
        let mut call = Call::get("/v1/files")
            .query("action", "list")
            .query("path", path);
        if let Some(pattern) = pattern {
            call = call.query("pattern", pattern);
        }
        if itself {
            call = call.query("itself", "true");
        }
        self.sync(call).await
    }

    /// Creates a directory.
    pub async fn make_dir(&self, path: &str, options: &MakeDirOptions) -> Result<()> {
        check_absolute("make-dir", path)?;
        let mut item = serde_json::Map::new();
        item.insert("path".into(), path.into());
        if options.make_parents {
            item.insert("make-parents".into(), true.into());
        }
        if let Some(mode) = options.permissions {
            item.insert("permissions".into(), permissions_string(mode)?.into());
        }
        insert_owner(
            &mut item,
            &options.user,
            options.user_id,
            &options.group,
            options.group_id,
        );
        let call = Call::post_json(
            "/v1/files",
            &json!({ "action": "make-dirs", "dirs": [item] }),
        );
        let op = call.operation();
        let results: Vec<FileResult> = self.sync(call).await?;
        check_file_results("make-dir", &op, path, results)
    }

    /// Removes a file or directory; a non-empty directory needs `recursive`.
    pub async fn remove_path(&self, path: &str, recursive: bool) -> Result<()> {
        check_absolute("remove", path)?;
        let body =
            json!({ "action": "remove", "paths": [{ "path": path, "recursive": recursive }] });
        let call = Call::post_json("/v1/files", &body);
        let op = call.operation();
        let results: Vec<FileResult> = self.sync(call).await?;
        check_file_results("remove", &op, path, results)
    }

    // ---- Transport ----------------------------------------------------------------------

    /// Connects to the socket; any failure means nobody is listening.
    pub(crate) async fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Unreachable {
                socket: self.socket.clone(),
                source,
            })
    }

    /// Makes a sync call and decodes its `result`.
    pub(crate) async fn sync<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let op = call.operation();
        let raw = self.roundtrip(&call).await?;
        let env = decode_envelope(&op, &raw)?;
        if env.kind != "sync" {
            return Err(Error::Protocol {
                operation: op,
                detail: format!("expected a sync response, got type {:?}", env.kind),
            });
        }
        decode_result(&op, env.result)
    }

    /// Makes an async call; returns the change id and the `result`.
    pub(crate) async fn async_call(&self, call: Call) -> Result<(String, Value)> {
        let op = call.operation();
        let raw = self.roundtrip(&call).await?;
        let env = decode_envelope(&op, &raw)?;
        if env.kind != "async" {
            return Err(Error::Protocol {
                operation: op,
                detail: format!("expected an async response, got type {:?}", env.kind),
            });
        }
        match env.change {
            Some(id) if !id.is_empty() => Ok((id, env.result)),
            _ => Err(Error::Protocol {
                operation: op,
                detail: "async response carries no change id".into(),
            }),
        }
    }

    /// Sends one request on a fresh connection and reads the whole reply, within the timeout.
    pub(crate) async fn roundtrip(&self, call: &Call) -> Result<RawResponse> {
        let op = call.operation();
        let timeout = call.timeout.unwrap_or(self.request_timeout);
        let exchange = async {
            let stream = self.connect().await?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| connection_error(&op, e))?;
            let _driver = AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "pebble connection ended with an error");
                }
            }));
            let request = build_request(call)?;
            tracing::trace!(operation = %op, "pebble request");
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| connection_error(&op, e))?;
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| connection_error(&op, e))?
                .to_bytes();
            Ok(RawResponse {
                status,
                content_type,
                body,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                operation: op,
                after: timeout,
            }),
        }
    }
}

fn build_request(call: &Call) -> Result<Request<Full<Bytes>>> {
    let mut uri = call.path.clone();
    if !call.query.is_empty() {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        uri.push('?');
        uri.push_str(&query);
    }
    // Origin-form URI plus Host, as a Go server expects; the host name is never resolved.
    let mut builder = Request::builder()
        .method(call.method.clone())
        .uri(uri)
        .header(header::HOST, "localhost")
        .header(
            header::USER_AGENT,
            concat!("pebble-client-rs/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(accept) = call.accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let body = match &call.body {
        Some((content_type, bytes)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type.as_str());
            Full::new(Bytes::from(bytes.clone()))
        }
        None => Full::new(Bytes::new()),
    };
    builder.body(body).map_err(|e| {
        Error::InvalidArgument(format!("cannot build request {}: {e}", call.operation()))
    })
}

/// The media type of a `Content-Type`, lowercased and without parameters.
pub(crate) fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// Checks the content type, parses the envelope, and turns error envelopes (or error
/// statuses) into [`Error::Api`].
pub(crate) fn decode_envelope(op: &str, raw: &RawResponse) -> Result<Envelope> {
    let media = media_type(raw.content_type.as_deref());
    if media.as_deref() != Some("application/json") {
        return Err(Error::Protocol {
            operation: op.to_owned(),
            detail: format!(
                "expected Content-Type application/json, got {} (HTTP {}, body {})",
                raw.content_type
                    .as_deref()
                    .map_or_else(|| "none".to_owned(), |ct| format!("{ct:?}")),
                raw.status.as_u16(),
                snippet(&raw.body)
            ),
        });
    }
    let env: Envelope = serde_json::from_slice(&raw.body).map_err(|e| Error::Protocol {
        operation: op.to_owned(),
        detail: format!(
            "cannot decode the JSON body (HTTP {}): {e}; body {}",
            raw.status.as_u16(),
            snippet(&raw.body)
        ),
    })?;
    if env.kind == "error" || raw.status.is_client_error() || raw.status.is_server_error() {
        let result: ErrorResult = serde_json::from_value(env.result).unwrap_or_default();
        let message = if result.message.is_empty() {
            format!("HTTP {} with no message", raw.status)
        } else {
            result.message
        };
        return Err(Error::Api {
            operation: op.to_owned(),
            status: raw.status.as_u16(),
            kind: result.kind.filter(|k| !k.is_empty()),
            message,
            value: result.value,
        });
    }
    Ok(env)
}

pub(crate) fn decode_result<T: DeserializeOwned>(op: &str, result: Value) -> Result<T> {
    serde_json::from_value(result).map_err(|e| Error::Protocol {
        operation: op.to_owned(),
        detail: format!(
            "cannot decode the result as {}: {e}",
            std::any::type_name::<T>()
        ),
    })
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 120;
    if body.is_empty() {
        return "empty".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let more = if body.len() > MAX { "..." } else { "" };
    format!("{:?}{more}", text)
}

/// A transport failure after connecting; the message carries the whole cause chain because
/// hyper's top-level text ("error reading a body from connection") alone says too little.
pub(crate) fn connection_error(
    op: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    let mut detail = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        detail.push_str(": ");
        detail.push_str(&c.to_string());
        cause = c.source();
    }
    Error::Connection {
        operation: op.to_owned(),
        detail,
        source: Box::new(err),
    }
}

fn remaining(id: &str, deadline: Option<(Instant, Duration)>) -> Result<Option<Duration>> {
    let Some((at, total)) = deadline else {
        return Ok(None);
    };
    let left = at.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout {
            operation: format!("waiting for change {id}"),
            after: total,
        });
    }
    Ok(Some(left))
}

/// Ids go into URL paths; refuse anything that would change the path.
pub(crate) fn check_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidArgument(format!("invalid {what} {id:?}")));
    }
    Ok(())
}

fn check_absolute(op: &str, path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "{op}: path {path:?} must be absolute"
        )));
    }
    Ok(())
}

fn insert_owner(
    item: &mut serde_json::Map<String, Value>,
    user: &Option<String>,
    user_id: Option<u32>,
    group: &Option<String>,
    group_id: Option<u32>,
) {
    if let Some(user) = user {
        item.insert("user".into(), user.as_str().into());
    }
    if let Some(id) = user_id {
        item.insert("user-id".into(), id.into());
    }
    if let Some(group) = group {
        item.insert("group".into(), group.as_str().into());
    }
    if let Some(id) = group_id {
        item.insert("group-id".into(), id.into());
    }
}

/// Turns the per-path results of a files call into an error for `path`, if it has one.
fn check_file_results(
    operation: &'static str,
    op: &str,
    path: &str,
    results: Vec<FileResult>,
) -> Result<()> {
    let result = results
        .into_iter()
        .find(|r| r.path == path)
        .ok_or_else(|| Error::Protocol {
            operation: op.to_owned(),
            detail: format!("no result for {path}"),
        })?;
    match result.error {
        None => Ok(()),
        Some(e) => Err(Error::File {
            operation,
            path: path.to_owned(),
            kind: e.kind.filter(|k| !k.is_empty()),
            message: e.message,
        }),
    }
}

/// Splits a pull's multipart body into the file content (if any) and the per-path results.
async fn parse_pull(op: &str, raw: RawResponse) -> Result<(Option<Vec<u8>>, Vec<FileResult>)> {
    let protocol = |detail: String| Error::Protocol {
        operation: op.to_owned(),
        detail,
    };
    let boundary = multer::parse_boundary(raw.content_type.as_deref().unwrap_or_default())
        .map_err(|e| protocol(format!("bad multipart Content-Type: {e}")))?;
    let body = raw.body;
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut content = None;
    let mut results = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| protocol(format!("malformed multipart body: {e}")))?
    {
        match field.name() {
            // We asked for one path, so the first file part is it. (The filename is not
            // compared: Go escapes quotes in it in ways multipart parsers disagree on.)
            Some("files") if content.is_none() => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| protocol(format!("malformed file part: {e}")))?;
                content = Some(bytes.to_vec());
            }
            Some("response") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| protocol(format!("malformed response part: {e}")))?;
                let env: Envelope = serde_json::from_slice(&bytes)
                    .map_err(|e| protocol(format!("cannot decode the response part: {e}")))?;
                results = Some(decode_result::<Vec<FileResult>>(op, env.result)?);
            }
            other => tracing::debug!(field = ?other, "ignoring unexpected multipart field"),
        }
    }
    let results =
        results.ok_or_else(|| protocol("multipart body has no \"response\" part".into()))?;
    Ok((content, results))
}
