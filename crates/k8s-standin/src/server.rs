//! The HTTP layer: routing, request decoding, responses and watch streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::control::{Access, Controls};
use crate::discovery;
use crate::error::{ApiError, Reason};
use crate::patch::PatchType;
use crate::resource::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{EventType, ListOptions, Preconditions, Store, WatchEvent, WriteScope};

/// Response body: either a whole JSON document or a stream of watch events.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest accepted request body; the real server's limit is 3 MiB too.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Server tuning.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How often a watch with `allowWatchBookmarks=true` gets a `BOOKMARK` event. The real
    /// server sends one about every minute; a shorter interval exercises clients more.
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` stays open (the real server picks
    /// 30–60 minutes).
    pub default_watch_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bookmark_interval: Duration::from_secs(10),
            default_watch_timeout: Duration::from_secs(1800),
        }
    }
}

/// Everything a request handler needs.
pub(crate) struct State {
    pub store: Arc<Store>,
    pub controls: Arc<Controls>,
    pub options: ServerOptions,
    pub addr: SocketAddr,
}

/// The hyper service function.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let response = match route(&state, req).await {
        Ok(response) => response,
        Err(Failure { error, retry_after }) => {
            let mut response = json_response(
                StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &error.to_status(),
            );
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from(seconds));
            }
            response
        }
    };
    tracing::debug!(%method, %uri, status = response.status().as_u16(), "request");
    Ok(response)
}

/// An error response plus the optional `Retry-After` of an injected fault.
struct Failure {
    error: ApiError,
    retry_after: Option<u32>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn ok(body: &Value) -> Result<Response<Body>, Failure> {
    Ok(json_response(StatusCode::OK, body))
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

async fn route(state: &State, req: Request<Incoming>) -> Result<Response<Body>, Failure> {
    let path = req.uri().path().to_string();
    if let Some(fault) = state.controls.take_fault(req.method().as_str(), &path) {
        return Err(Failure {
            error: fault.error,
            retry_after: fault.retry_after,
        });
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => ok(&discovery::version()),
        ["healthz" | "livez" | "readyz"] => {
            Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()))
        }
        ["api"] => ok(&discovery::api_versions(&state.addr.to_string())),
        ["api", "v1"] => ok(&discovery::resource_list("", "v1").expect("core/v1 is served")),
        ["apis"] => ok(&discovery::api_group_list()),
        ["apis", group] => ok(&discovery::api_group(group).ok_or_else(not_found_path)?),
        ["apis", group, version] => {
            ok(&discovery::resource_list(group, version).ok_or_else(not_found_path)?)
        }
        ["api", "v1", rest @ ..] => {
            let target = parse_target("", "v1", rest)?;
            serve_resource(state, target, req).await
        }
        ["apis", group, version, rest @ ..] => {
            let target = parse_target(group, version, rest)?;
            serve_resource(state, target, req).await
        }
        _ => Err(not_found_path().into()),
    }
}

/// What a resource URL addresses.
struct Target {
    rt: &'static ResourceType,
    /// `""` for cluster-scoped types and for all-namespace collections.
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if resource::by_path(group, version, plural).is_some() =>
        {
            (ns.to_string(), *plural, tail)
        }
        [plural, tail @ ..] => (String::new(), *plural, tail),
        [] => return Err(not_found_path()),
    };
    let rt = resource::by_path(group, version, plural).ok_or_else(not_found_path)?;
    if rt.namespaced == namespace.is_empty() && !tail.is_empty() {
        // A namespaced object must be addressed inside its namespace, and vice versa.
        return Err(not_found_path());
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, "status"] if rt.has_status => (Some(name.to_string()), Some("status".to_string())),
        [name, "scale"] if rt.has_scale => (Some(name.to_string()), Some("scale".to_string())),
        _ => return Err(not_found_path()),
    };
    Ok(Target {
        rt,
        namespace,
        name,
        subresource,
    })
}

/// Query parameters, last value wins.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Booleans as Go's `strconv.ParseBool` reads them, case-insensitively: Patroni sends
    /// `watch=True` (Python's `str(True)`).
    fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("false") | Some("0") | Some("f") => Ok(false),
            Some("true") | Some("1") | Some("t") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value for {key}: {other:?}"
            ))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }

    fn list_options(&self) -> Result<ListOptions, ApiError> {
        let start_after = match self.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        Ok(ListOptions {
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())?,
            limit: self.number("limit")?.unwrap_or(0) as usize,
            start_after,
        })
    }
}

/// Continue tokens look like the real server's: base64 of
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"ns/name"}`. The stand-in does not keep list
/// snapshots, so a continued list reads the current state after `start`.
fn encode_continue(revision: u64, (ns, name): &(String, String)) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": format!("{ns}/{name}")});
    URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let start = value
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let (ns, name) = start.split_once('/').ok_or_else(invalid)?;
    Ok((ns.to_string(), name.to_string()))
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> Result<&'static str, ApiError> {
    Ok(match (method.as_str(), target.name.is_some()) {
        ("GET" | "HEAD", _) if query.flag("watch")? => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        // Writes to a namespaced collection need a namespace (no POST to /api/v1/pods).
        ("POST", false) if !target.rt.namespaced || !target.namespace.is_empty() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) if !target.rt.namespaced || !target.namespace.is_empty() => {
            "deletecollection"
        }
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {m}"
            )));
        }
    })
}

async fn read_body(req: Request<Incoming>) -> Result<(Option<String>, Bytes), ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            ApiError::new(
                413,
                Reason::BadRequest,
                format!("request body unreadable or too large: {e}"),
            )
        })?
        .to_bytes();
    Ok((content_type, body))
}

/// Decodes a create/update body. A missing `Content-Type` is read as JSON: Patroni's
/// creates carry none, and the real server sniffs JSON in that case too.
fn decode_object(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let value: Value = match media.as_str() {
        "application/yaml"
        | "application/x-yaml"
        | "text/yaml"
        | "application/apply-patch+yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?,
        "application/vnd.kubernetes.protobuf" => {
            return Err(ApiError::new(
                415,
                Reason::UnsupportedMediaType,
                "protobuf is not supported by the stand-in; use JSON",
            ));
        }
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?,
    };
    if !value.is_object() && media != "application/json-patch+json" {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

async fn serve_resource(
    state: &State,
    target: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let verb = verb_of(&method, &target, &query)?;
    if query.get("dryRun").is_some_and(|v| !v.is_empty()) {
        // Refuse rather than ignore: silently persisting a dry run would mislead tests.
        return Err(ApiError::bad_request("dryRun is not supported by the k8s stand-in").into());
    }
    state.controls.authorize(&Access {
        verb,
        resource: target.rt.plural,
        group: target.rt.group,
        subresource: target.subresource.as_deref(),
        namespace: &target.namespace,
        name: target.name.as_deref(),
    })?;
    if target.subresource.as_deref() == Some("scale") {
        return serve_scale(state, &target, verb, req).await;
    }
    let store = &state.store;
    let rt = target.rt;
    let ns = target.namespace.as_str();
    let scope = if target.subresource.is_some() {
        WriteScope::Status
    } else {
        WriteScope::Main
    };
    let wants_table = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    match verb {
        "get" => {
            let name = target.name.as_deref().expect("get has a name");
            let object = store.get_in(rt, ns, name)?;
            if wants_table {
                return ok(&table(
                    std::slice::from_ref(&object),
                    store.revision(),
                    None,
                ));
            }
            ok(&object)
        }
        "list" => {
            let page = store.list_in(rt, ns, &query.list_options()?);
            let continue_token = page
                .next
                .as_ref()
                .map(|next| encode_continue(page.revision, next));
            if wants_table {
                return ok(&table(&page.items, page.revision, continue_token));
            }
            let mut metadata = json!({"resourceVersion": page.revision.to_string()});
            if let Some(token) = continue_token {
                metadata["continue"] = json!(token);
                metadata["remainingItemCount"] = json!(page.remaining);
            }
            // List items carry no kind/apiVersion on the wire, as with the real server.
            let items: Vec<Value> = page
                .items
                .into_iter()
                .map(|mut item| {
                    if let Some(map) = item.as_object_mut() {
                        map.remove("kind");
                        map.remove("apiVersion");
                    }
                    item
                })
                .collect();
            ok(
                &json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(), "metadata": metadata, "items": items}),
            )
        }
        "watch" => watch(state, &target, &query),
        "create" => {
            let (content_type, body) = read_body(req).await?;
            let object = decode_object(content_type.as_deref(), &body)?;
            let created = store.create_in(rt, ns, object)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        "update" => {
            let name = target.name.as_deref().expect("update has a name");
            let (content_type, body) = read_body(req).await?;
            let object = decode_object(content_type.as_deref(), &body)?;
            let existed = store.get_in(rt, ns, name).is_ok();
            let updated = store.update_in(rt, ns, name, object, scope)?;
            Ok(json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &updated,
            ))
        }
        "patch" => {
            let name = target.name.as_deref().expect("patch has a name");
            let (content_type, body) = read_body(req).await?;
            let patch_type = content_type.as_deref().and_then(PatchType::from_content_type).ok_or_else(|| {
                ApiError::new(
                    415,
                    Reason::UnsupportedMediaType,
                    format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"),
                )
            })?;
            if patch_type == PatchType::Apply && query.get("fieldManager").is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(
                    "PATCH, fieldManager is required for apply requests",
                )
                .into());
            }
            let patch = if patch_type == PatchType::Apply {
                decode_object(Some("application/yaml"), &body)?
            } else {
                decode_object(Some("application/json-patch+json"), &body)?
            };
            let existed = store.get_in(rt, ns, name).is_ok();
            let patched = store.patch_in(rt, ns, name, patch_type, &patch, scope)?;
            Ok(json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &patched,
            ))
        }
        "delete" => {
            let name = target.name.as_deref().expect("delete has a name");
            let (content_type, body) = read_body(req).await?;
            let pre = delete_preconditions(content_type.as_deref(), &body)?;
            let deleted = store.delete_in(rt, ns, name, &pre)?;
            ok(&deleted)
        }
        "deletecollection" => {
            let deleted = store.delete_collection_in(rt, ns, &query.list_options()?);
            ok(
                &json!({"kind": rt.list_kind(), "apiVersion": rt.api_version(),
                       "metadata": {"resourceVersion": store.revision().to_string()}, "items": deleted}),
            )
        }
        _ => unreachable!("verb_of returns only the verbs above"),
    }
}

/// The `autoscaling/v1 Scale` view of an object with `spec.replicas`.
fn to_scale(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}
    })
}

/// `…/statefulsets/{name}/scale`: reads and writes `spec.replicas` through a `Scale`.
async fn serve_scale(
    state: &State,
    target: &Target,
    verb: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let (rt, ns) = (target.rt, target.namespace.as_str());
    let name = target.name.as_deref().expect("scale is addressed by name");
    let current = state.store.get_in(rt, ns, name)?;
    let scale = to_scale(&current);
    let desired = match verb {
        "get" => return ok(&scale),
        "update" => {
            let (content_type, body) = read_body(req).await?;
            decode_object(content_type.as_deref(), &body)?
        }
        "patch" => {
            let (content_type, body) = read_body(req).await?;
            let patch_type = content_type
                .as_deref()
                .and_then(PatchType::from_content_type)
                .ok_or_else(|| {
                    ApiError::new(
                        415,
                        Reason::UnsupportedMediaType,
                        format!("unsupported patch type {content_type:?}"),
                    )
                })?;
            let patch = decode_object(
                Some(if patch_type == PatchType::Apply {
                    "application/yaml"
                } else {
                    "application/json-patch+json"
                }),
                &body,
            )?;
            let mut desired = scale.clone();
            match patch_type {
                PatchType::Merge => crate::patch::merge_patch(&mut desired, &patch),
                PatchType::StrategicMerge | PatchType::Apply => {
                    crate::patch::strategic_merge_patch(&mut desired, &patch)?
                }
                PatchType::Json => crate::patch::json_patch(&mut desired, &patch)?,
            }
            desired
        }
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} is not supported on the scale subresource"
            ))
            .into());
        }
    };
    let replicas = desired
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::invalid("Scale.spec.replicas: Required value"))?;
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = desired
        .pointer("/metadata/resourceVersion")
        .filter(|v| v.is_string())
    {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let updated = state
        .store
        .patch_in(rt, ns, name, PatchType::Merge, &patch, WriteScope::Main)?;
    ok(&to_scale(&updated))
}

fn delete_preconditions(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options = decode_object(content_type, body)?;
    let get = |k: &str| {
        options
            .pointer(&format!("/preconditions/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Preconditions {
        uid: get("uid"),
        resource_version: get("resourceVersion"),
    })
}

/// A minimal `meta.k8s.io/v1 Table` (name + age), for `kubectl get`.
fn table(items: &[Value], revision: u64, continue_token: Option<String>) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let name = item.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            let age = item
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
                .map(|t| human_age(now.saturating_sub(t)))
                .unwrap_or_else(|| "<unknown>".into());
            json!({"cells": [name, age],
                   "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"].clone()}})
        })
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Time since creation", "priority": 0}
        ],
        "rows": rows
    })
}

fn parse_rfc3339(s: &str) -> Option<u64> {
    // Only the `YYYY-MM-DDTHH:MM:SSZ` form the store writes.
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (y, m, day) = (d.first()?, d.get(1)?, d.get(2)?);
    let y = if *m <= 2 { y - 1 } else { *y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if *m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + t.first()? * 3600 + t.get(1)? * 60 + t.get(2)?).ok()
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

// ----- watch -----

/// A response body fed by a channel: each message is one chunk on the wire. Its size is
/// unknown, so hyper sends it with `Transfer-Encoding: chunked`, which Patroni's
/// `read_chunked()` requires.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Decides what a selector-filtered watcher sees of one change: objects entering the
/// selection appear as `ADDED`, objects leaving it as `DELETED`.
struct WatchFilter {
    rt: &'static ResourceType,
    namespace: String,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    fn apply(&self, event: &WatchEvent) -> Option<(&'static str, Value)> {
        if event.resource != self.rt {
            return None;
        }
        if self.rt.namespaced && !self.namespace.is_empty() && event.namespace != self.namespace {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match event.event_type {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return None,
        };
        Some((kind.as_str(), event.object.clone()))
    }
}

fn watch(state: &State, target: &Target, query: &Query) -> Result<Response<Body>, Failure> {
    let filter = {
        let mut opts = query.list_options()?;
        if let Some(name) = &target.name {
            // GET …/pods/x?watch=1 watches one object, like fieldSelector=metadata.name=x.
            opts.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
        }
        WatchFilter {
            rt: target.rt,
            namespace: target.namespace.clone(),
            labels: opts.labels,
            fields: opts.fields,
        }
    };
    let timeout = query
        .number("timeoutSeconds")?
        .map(Duration::from_secs)
        .unwrap_or(state.options.default_watch_timeout);
    let bookmarks = query.flag("allowWatchBookmarks")?;
    let send_initial = query.flag("sendInitialEvents")?;
    let since = match query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
        ),
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut first: Vec<Bytes> = Vec::new();
    let (progress, live) = match since.filter(|_| !send_initial) {
        Some(since) => match state.store.watch_from(Some(since)) {
            Ok((backlog, live)) => {
                let mut progress = since;
                for event in backlog {
                    progress = progress.max(event.revision);
                    if let Some((kind, object)) = filter.apply(&event) {
                        first.push(event_line(kind, &object));
                    }
                }
                (progress, Some(live))
            }
            // The real server answers 200 and sends the 410 as an ERROR event; clients
            // (kube-rs, Patroni) look for it there and relist.
            Err(error) => {
                first.push(event_line("ERROR", &error.to_status()));
                (since, None)
            }
        },
        None => {
            // No resourceVersion ("any") or a streaming list: start with the current state.
            let (items, revision, live) =
                state.store.snapshot_and_watch(filter.rt, &filter.namespace);
            first.extend(
                items
                    .iter()
                    .filter(|o| filter.matches(o))
                    .map(|o| event_line("ADDED", o)),
            );
            if send_initial {
                let bookmark = json!({"kind": filter.rt.kind, "apiVersion": filter.rt.api_version(),
                    "metadata": {"resourceVersion": revision.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                first.push(event_line("BOOKMARK", &bookmark));
            }
            (revision, Some(live))
        }
    };

    let store = state.store.clone();
    let bookmark_every = state.options.bookmark_interval;
    tokio::spawn(async move {
        run_watch(
            tx,
            first,
            live,
            progress,
            filter,
            store,
            timeout,
            bookmarks.then_some(bookmark_every),
        )
        .await;
    });
    let mut response = Response::new(ChannelBody { rx }.boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn run_watch(
    tx: mpsc::Sender<Bytes>,
    first: Vec<Bytes>,
    live: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    mut progress: u64,
    filter: WatchFilter,
    store: Arc<Store>,
    timeout: Duration,
    bookmark_every: Option<Duration>,
) {
    for chunk in first {
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
    let Some(mut live) = live else { return };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut bookmark_tick =
        tokio::time::interval(bookmark_every.unwrap_or(Duration::from_secs(3600)));
    bookmark_tick.reset(); // the first tick would fire at once
    loop {
        let events: Vec<Arc<WatchEvent>> = tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = bookmark_tick.tick(), if bookmark_every.is_some() => {
                // `progress` covers every event this watcher has seen, sent or filtered
                // out, so a client resuming from it misses nothing.
                let bookmark = json!({"kind": filter.rt.kind, "apiVersion": filter.rt.api_version(),
                                      "metadata": {"resourceVersion": progress.to_string()}});
                if tx.send(event_line("BOOKMARK", &bookmark)).await.is_err() {
                    return;
                }
                continue;
            }
            received = live.recv() => match received {
                Ok(event) => vec![event],
                Err(broadcast::error::RecvError::Lagged(_)) => match store.events_after(progress) {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = tx.send(event_line("ERROR", &error.to_status())).await;
                        return;
                    }
                },
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        for event in events {
            if event.revision <= progress {
                continue; // already seen (replayed after a lag)
            }
            progress = event.revision;
            if let Some((kind, object)) = filter.apply(&event)
                && tx.send(event_line(kind, &object)).await.is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("", "v1", &["namespaces", "demo", "pods", "p", "status"]).unwrap();
        assert_eq!(
            (
                t.rt.plural,
                t.namespace.as_str(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", "demo", Some("p"), Some("status"))
        );
        let t = parse_target("", "v1", &["pods"]).unwrap();
        assert_eq!((t.namespace.as_str(), t.name), ("", None));
        let t = parse_target("", "v1", &["namespaces", "demo"]).unwrap();
        assert_eq!(
            (t.rt.plural, t.name.as_deref()),
            ("namespaces", Some("demo"))
        );
        let t = parse_target("", "v1", &["nodes", "n1"]).unwrap();
        assert_eq!(t.name.as_deref(), Some("n1"));
        assert!(
            parse_target("", "v1", &["pods", "p"]).is_err(),
            "namespaced object outside a namespace"
        );
        assert!(
            parse_target(
                "",
                "v1",
                &["namespaces", "demo", "configmaps", "c", "status"]
            )
            .is_err()
        );
        assert!(parse_target("apps", "v1", &["namespaces", "demo", "pods"]).is_err());
    }

    #[test]
    fn flags_are_case_insensitive() {
        let q = Query::parse(Some("watch=True&allowWatchBookmarks=TRUE&x=no"));
        assert!(q.flag("watch").unwrap());
        assert!(q.flag("allowWatchBookmarks").unwrap());
        assert!(!q.flag("missing").unwrap());
        assert_eq!(q.flag("x").unwrap_err().code, 400);
    }

    #[test]
    fn continue_round_trip() {
        let key = ("demo".to_string(), "p-1".to_string());
        assert_eq!(decode_continue(&encode_continue(7, &key)).unwrap(), key);
        assert_eq!(decode_continue("!!").unwrap_err().code, 400);
    }

    #[test]
    fn rfc3339_parse_inverts_format() {
        assert_eq!(parse_rfc3339("2024-02-29T12:34:56Z"), Some(1_709_210_096));
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(3600), "60m");
    }
}
