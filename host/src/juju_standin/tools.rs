//! The hook tools, answered from a [`UnitSession`] with Juju's argument syntax, output
//! formats and error texts.

use std::collections::BTreeMap;

use hook_tools::{Response, ToolRequest};
use serde_json::{Value as Json, json};

use super::Inner;
use crate::bindings::juju::{Port, SecretOwner, Status, StatusKind};
use crate::bindings::types::{Kv, LogLevel, Value};
use crate::bindings::{Error, ErrorKind};
use crate::capability::Juju;
use crate::world::{SecretOwnerKind, SecretState, UnitSession};

type R = Result<Response, Response>;

/// One flag a tool accepts: its names (`r`, `relation`) and whether it takes a value.
struct Flag {
    names: &'static [&'static str],
    value: bool,
}

const fn val(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

const fn switch(names: &'static [&'static str]) -> Flag {
    Flag {
        names,
        value: false,
    }
}

const FORMAT: Flag = val(&["format"]);
const RELATION: Flag = val(&["r", "relation"]);
const APP: Flag = switch(&["app"]);
const FILE: Flag = val(&["file"]);

/// Parsed arguments: flags by their first name, and positionals. Flags and positionals
/// may interleave (Juju's gnuflag does so); `--` ends the flags.
struct Args {
    values: BTreeMap<&'static str, String>,
    switches: BTreeMap<&'static str, bool>,
    pos: Vec<String>,
}

fn parse(args: &[String], flags: &[Flag]) -> Result<Args, Response> {
    let mut out = Args {
        values: BTreeMap::new(),
        switches: BTreeMap::new(),
        pos: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.pos.extend(it.by_ref().cloned());
            break;
        }
        if a == "-" || !a.starts_with('-') {
            out.pos.push(a.clone());
            continue;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = flags
            .iter()
            .find(|f| f.names.contains(&name))
            .ok_or_else(|| Response::usage(format!("flag provided but not defined: {a}")))?;
        let key = flag.names[0];
        if flag.value {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| Response::usage(format!("flag needs an argument: {a}")))?,
            };
            out.values.insert(key, v);
        } else {
            let on = match inline.as_deref() {
                None => true,
                // Go's strconv.ParseBool, which gnuflag uses: `--application=False` works.
                Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
                Some(other) => {
                    return Err(Response::usage(format!(
                        "invalid boolean value {other:?} for flag {a}"
                    )));
                }
            };
            out.switches.insert(key, on);
        }
    }
    Ok(out)
}

impl Args {
    fn on(&self, key: &str) -> bool {
        self.switches.get(key).copied().unwrap_or(false)
    }
    fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
    fn at_most(&self, n: usize) -> Result<(), Response> {
        match self.pos.get(n) {
            Some(extra) => Err(Response::usage(format!("unrecognized args: [{:?}]", extra))),
            None => Ok(()),
        }
    }
}

/// Print a value as `--format` asks: json, yaml, or Juju's default "smart" (bare strings,
/// Python-style booleans, YAML for the rest).
fn output(args: &Args, v: &Json) -> R {
    let text = match args.value("format").unwrap_or("smart") {
        "json" => serde_json::to_string(v).expect("JSON values serialise"),
        "yaml" => serde_yaml::to_string(v)
            .map_err(Response::error)?
            .trim_end()
            .to_string(),
        "smart" => match v {
            Json::String(s) => s.clone(),
            Json::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Json::Null => String::new(),
            other => serde_yaml::to_string(other)
                .map_err(Response::error)?
                .trim_end()
                .to_string(),
        },
        other => {
            return Err(Response::usage(format!(
                "invalid value {other:?} for option --format: unknown format"
            )));
        }
    };
    Ok(Response::ok(if text.is_empty() {
        text
    } else {
        text + "\n"
    }))
}

/// The world's error as Juju's tools print it. Juju says "permission denied" for refused
/// writes and "not found" for missing things; ops (and our backend) match on those words.
fn world_error(e: Error) -> Response {
    match e.kind {
        ErrorKind::Forbidden => Response::error(format!("permission denied: {}", e.message)),
        _ => Response::error(e.message),
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Boolean(b) => json!(b),
        Value::Integer(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Text(s) => json!(s),
    }
}

/// `key=value` arguments.
fn key_values(pos: &[String]) -> Result<BTreeMap<String, String>, Response> {
    pos.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Response::usage(format!("expected \"key=value\", got {a:?}")))
        })
        .collect()
}

/// The content of `--file PATH|-`: a YAML (or JSON) map of strings.
fn file_settings(req: &ToolRequest, path: &str) -> Result<BTreeMap<String, String>, Response> {
    let text = if path == "-" {
        req.stdin
            .clone()
            .ok_or_else(|| Response::error("no standard input was sent for --file -"))?
    } else {
        req.files
            .get(path)
            .cloned()
            .ok_or_else(|| Response::error(format!("open {path}: no such file or directory")))?
    };
    let v: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| Response::error(format!("cannot parse {path}: {e}")))?;
    let map = match v {
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(Response::error(format!(
                "{path} does not hold a map of settings"
            )));
        }
    };
    map.into_iter()
        .map(|(k, v)| {
            let k = k
                .as_str()
                .ok_or_else(|| Response::error(format!("{path}: keys must be strings")))?
                .to_string();
            let v = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Null => String::new(),
                other => {
                    return Err(Response::error(format!(
                        "{path}: the value of {k:?} must be a string, got {}",
                        serde_yaml::to_string(&other).unwrap_or_default().trim()
                    )));
                }
            };
            Ok((k, v))
        })
        .collect()
}

/// Secret content arguments: `key=value`, `key#base64=...`, `key#file=PATH`.
fn secret_content(req: &ToolRequest, args: &Args, pos: &[String]) -> Result<Vec<Kv>, Response> {
    let mut content = match args.value("file") {
        Some(path) => file_settings(req, path)?,
        None => BTreeMap::new(),
    };
    for a in pos {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Response::usage(format!("expected \"key=value\", got {a:?}")))?;
        let (key, value) = if let Some(key) = k.strip_suffix("#file") {
            (
                key,
                req.files.get(v).cloned().ok_or_else(|| {
                    Response::error(format!("open {v}: no such file or directory"))
                })?,
            )
        } else if let Some(key) = k.strip_suffix("#base64") {
            let bytes = base64_decode(v)
                .ok_or_else(|| Response::error(format!("invalid base64 value for key {key:?}")))?;
            (
                key,
                String::from_utf8(bytes).map_err(|_| {
                    Response::error(format!(
                        "the value of {key:?} is not UTF-8 text, which the simulated world stores"
                    ))
                })?,
            )
        } else {
            (k, v.to_string())
        };
        content.insert(key.to_string(), value);
    }
    for k in content.keys() {
        if !crate::backends::juju::valid_secret_key(k) {
            return Err(Response::error(format!("invalid secret key {k:?}")));
        }
    }
    Ok(content.into_iter().map(|(k, v)| Kv::new(k, v)).collect())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `-r` as Juju reads it: `endpoint:id` (the endpoint must match) or `id`.
fn relation_arg(session: &UnitSession, args: &Args) -> Result<u32, Response> {
    let r = args
        .value("r")
        .ok_or_else(|| Response::usage("no relation id specified"))?;
    let bad = || {
        Response::error(format!(
            "invalid value {r:?} for option -r: relation not found"
        ))
    };
    let (endpoint, id) = match r.rsplit_once(':') {
        Some((ep, id)) => (Some(ep), id),
        None => (None, r),
    };
    let id: u32 = id.parse().map_err(|_| bad())?;
    let relations = session.relations_view().map_err(world_error)?;
    let rel = relations.iter().find(|rel| rel.id == id).ok_or_else(bad)?;
    if endpoint.is_some_and(|ep| ep != rel.endpoint) {
        return Err(bad());
    }
    Ok(id)
}

fn find_secret<'a>(secrets: &'a [SecretState], id: &str) -> Option<&'a SecretState> {
    let short = id.strip_prefix("secret:").unwrap_or(id);
    secrets
        .iter()
        .find(|s| s.id.strip_prefix("secret:").unwrap_or(&s.id) == short)
}

/// Whether this unit owns (may manage) the secret: app secrets by the leader, unit
/// secrets by their unit.
async fn owns(inner: &Inner, session: &UnitSession, s: &SecretState) -> Result<bool, Response> {
    Ok(match s.owner {
        SecretOwnerKind::Application => session.is_leader().await.map_err(world_error)?,
        SecretOwnerKind::Unit => s.owner_name == inner.unit,
    })
}

fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn status_json(s: &Status) -> Json {
    let name = match s.kind {
        StatusKind::Active => "active",
        StatusKind::Blocked => "blocked",
        StatusKind::Maintenance => "maintenance",
        StatusKind::Waiting => "waiting",
        StatusKind::Unknown => "unknown",
        StatusKind::Error => "error",
    };
    json!({"status": name, "message": s.message, "status-data": {}})
}

/// `5432/tcp`, `80` (tcp), `icmp`; port ranges are not modelled by the world.
fn parse_port(spec: &str) -> Result<Port, Response> {
    if spec == "icmp" {
        return Ok(Port {
            protocol: "icmp".into(),
            port: 0,
        });
    }
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp") {
        return Err(Response::usage(format!(
            "invalid protocol {proto:?}, expected \"tcp\", \"udp\", or \"icmp\""
        )));
    }
    if port.contains('-') {
        return Err(Response::error(format!(
            "port ranges ({spec}) are not modelled by the simulated world"
        )));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Response::usage(format!("invalid port {spec:?}")))?;
    Ok(Port {
        protocol: proto,
        port,
    })
}

fn port_string(p: &crate::world::PortState) -> String {
    if p.protocol == "icmp" {
        "icmp".to_string()
    } else {
        format!("{}/{}", p.port, p.protocol)
    }
}

pub(super) async fn run(inner: &Inner, session: &UnitSession, req: &ToolRequest) -> Response {
    match dispatch(inner, session, req).await {
        Ok(r) | Err(r) => r,
    }
}

async fn dispatch(inner: &Inner, session: &UnitSession, req: &ToolRequest) -> R {
    let a = &req.args;
    match req.command.as_str() {
        "is-leader" => {
            let args = parse(a, &[FORMAT])?;
            args.at_most(0)?;
            output(
                &args,
                &json!(session.is_leader().await.map_err(world_error)?),
            )
        }
        "config-get" => {
            let args = parse(a, &[FORMAT, switch(&["a", "all"])])?;
            args.at_most(1)?;
            let mut map: serde_json::Map<String, Json> = session
                .config()
                .await
                .map_err(world_error)?
                .iter()
                .map(|e| (e.key.name().to_owned(), value_json(&e.value)))
                .collect();
            if args.on("a") {
                for name in crate::backends::juju::config_types().keys() {
                    map.entry(name.clone()).or_insert(Json::Null);
                }
            }
            match args.pos.first() {
                Some(key) => output(&args, map.get(key).unwrap_or(&Json::Null)),
                None => output(&args, &Json::Object(map)),
            }
        }
        "status-get" => {
            let args = parse(
                a,
                &[FORMAT, switch(&["include-data"]), switch(&["application"])],
            )?;
            args.at_most(0)?;
            if args.on("application") {
                if !session.is_leader().await.map_err(world_error)? {
                    return Err(Response::error(
                        "finding application status: this unit is not the leader",
                    ));
                }
                let app = status_json(&session.app_status().await.map_err(world_error)?);
                let unit = status_json(&session.unit_status().await.map_err(world_error)?);
                let mut app = app;
                app["units"] = json!({ inner.unit.clone(): unit });
                output(&args, &json!({"application-status": app}))
            } else {
                output(
                    &args,
                    &status_json(&session.unit_status().await.map_err(world_error)?),
                )
            }
        }
        "status-set" => {
            let args = parse(a, &[switch(&["application"])])?;
            let kind = match args.pos.first().map(String::as_str) {
                Some("maintenance") => StatusKind::Maintenance,
                Some("blocked") => StatusKind::Blocked,
                Some("waiting") => StatusKind::Waiting,
                Some("active") => StatusKind::Active,
                Some(other) => {
                    return Err(Response::usage(format!(
                        "invalid status {other:?}, expected one of [maintenance blocked waiting active]"
                    )));
                }
                None => {
                    return Err(Response::usage(
                        "invalid args, require <status> [message] [data]",
                    ));
                }
            };
            let status = Status {
                kind,
                message: args.pos[1..].join(" "),
            };
            if args.on("application") {
                if !session.is_leader().await.map_err(world_error)? {
                    return Err(Response::error(
                        "setting application status: this unit is not the leader",
                    ));
                }
                session.set_app_status(status).await.map_err(world_error)?;
            } else {
                session.set_unit_status(status).await.map_err(world_error)?;
            }
            Ok(Response::ok(""))
        }
        "relation-ids" => {
            let args = parse(a, &[FORMAT])?;
            args.at_most(1)?;
            let endpoint = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("no endpoint name specified"))?;
            let ids = session
                .relation_ids(endpoint.clone())
                .await
                .map_err(world_error)?;
            output(
                &args,
                &json!(
                    ids.iter()
                        .map(|id| format!("{endpoint}:{id}"))
                        .collect::<Vec<_>>()
                ),
            )
        }
        "relation-list" => {
            let args = parse(a, &[FORMAT, RELATION, APP])?;
            args.at_most(0)?;
            let id = relation_arg(session, &args)?;
            if args.on("app") {
                output(
                    &args,
                    &json!(session.relation_remote_app(id).await.map_err(world_error)?),
                )
            } else {
                output(
                    &args,
                    &json!(session.relation_units(id).await.map_err(world_error)?),
                )
            }
        }
        "relation-get" => {
            let args = parse(a, &[FORMAT, RELATION, APP])?;
            args.at_most(2)?;
            let id = relation_arg(session, &args)?;
            let key = args.pos.first().cloned().unwrap_or_else(|| "-".into());
            let of = args
                .pos
                .get(1)
                .cloned()
                .ok_or_else(|| Response::usage("no unit or application specified"))?;
            let bag = session
                .relation_get(id, of, args.on("app"))
                .await
                .map_err(world_error)?;
            if key == "-" {
                output(
                    &args,
                    &Json::Object(
                        bag.into_iter()
                            .map(|kv| (kv.key, Json::String(kv.value)))
                            .collect(),
                    ),
                )
            } else {
                output(
                    &args,
                    &bag.into_iter()
                        .find(|kv| kv.key == key)
                        .map(|kv| Json::String(kv.value))
                        .unwrap_or(Json::Null),
                )
            }
        }
        "relation-set" => {
            let args = parse(a, &[RELATION, APP, FILE])?;
            let id = relation_arg(session, &args)?;
            let mut settings = match args.value("file") {
                Some(path) => file_settings(req, path)?,
                None => BTreeMap::new(),
            };
            settings.extend(key_values(&args.pos)?);
            let app = args.on("app");
            if app && !session.is_leader().await.map_err(world_error)? {
                return Err(Response::error(
                    "cannot write relation settings: permission denied (this unit is not the leader)",
                ));
            }
            session
                .relation_set(
                    id,
                    app,
                    settings.into_iter().map(|(k, v)| Kv::new(k, v)).collect(),
                )
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "state-get" => {
            let args = parse(a, &[FORMAT, switch(&["strict"])])?;
            args.at_most(1)?;
            let state = session.state_view().map_err(world_error)?;
            match args.pos.first().filter(|k| *k != "-") {
                None if state.is_empty() => output(&args, &Json::Null),
                None => output(&args, &json!(state)),
                Some(key) => match state.get(key) {
                    Some(v) => output(&args, &json!(v)),
                    None if args.on("strict") => {
                        Err(Response::error(format!("\"{key}\" not found")))
                    }
                    None => output(&args, &json!("")),
                },
            }
        }
        "state-set" => {
            let args = parse(a, &[FILE])?;
            let mut settings = match args.value("file") {
                Some(path) => file_settings(req, path)?,
                None => BTreeMap::new(),
            };
            settings.extend(key_values(&args.pos)?);
            for (k, v) in settings {
                session.state_set(k, v).await.map_err(world_error)?;
            }
            Ok(Response::ok(""))
        }
        "state-delete" => {
            let args = parse(a, &[])?;
            args.at_most(1)?;
            let key = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("no key specified"))?;
            session
                .state_delete(key.clone())
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "secret-add" => {
            let args = parse(
                a,
                &[
                    val(&["label"]),
                    val(&["owner"]),
                    FILE,
                    val(&["description"]),
                    val(&["expire"]),
                    val(&["rotate"]),
                ],
            )?;
            for unmodelled in ["description", "expire", "rotate"] {
                if args.value(unmodelled).is_some() {
                    return Err(Response::error(format!(
                        "--{unmodelled} is not modelled by the simulated world"
                    )));
                }
            }
            let owner = match args.value("owner").unwrap_or("application") {
                "application" => SecretOwner::Application,
                "unit" => SecretOwner::Unit,
                other => {
                    return Err(Response::usage(format!(
                        "invalid value {other:?} for option --owner: expected \"application\" or \"unit\""
                    )));
                }
            };
            let content = secret_content(req, &args, &args.pos)?;
            if content.is_empty() {
                return Err(Response::usage("missing secret value or filename"));
            }
            let label = args.value("label").unwrap_or_default().to_string();
            let id = session
                .secret_add(label, owner, content)
                .await
                .map_err(world_error)?;
            Ok(Response::ok(format!("{id}\n")))
        }
        "secret-get" => {
            let args = parse(
                a,
                &[
                    FORMAT,
                    val(&["label"]),
                    switch(&["refresh"]),
                    switch(&["peek"]),
                ],
            )?;
            args.at_most(2)?;
            let (id, key) = match (args.pos.first(), args.value("label")) {
                // With a label, a sole positional is the id only if it looks like one.
                (Some(p), Some(_)) if !p.starts_with("secret:") && args.pos.len() == 1 => {
                    (None, Some(p.clone()))
                }
                (p, _) => (p.cloned(), args.pos.get(1).cloned()),
            };
            let content: BTreeMap<String, String> = match (&id, args.value("label")) {
                (Some(id), _) => {
                    let secrets = session.secrets_view().map_err(world_error)?;
                    let s = find_secret(&secrets, id).filter(|s| {
                        s.owner == SecretOwnerKind::Application || s.owner_name == inner.unit
                    });
                    s.ok_or_else(|| Response::error(format!("secret {id:?} not found")))?
                        .content
                        .clone()
                }
                (None, Some(label)) => match session
                    .secret_get(label.to_string())
                    .await
                    .map_err(world_error)?
                {
                    Some(kvs) => kvs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
                    None => return Err(Response::error(format!("secret {label:?} not found"))),
                },
                (None, None) => {
                    return Err(Response::usage("require either a secret URI or label"));
                }
            };
            match key {
                Some(k) => output(
                    &args,
                    &content.get(&k).map(|v| json!(v)).unwrap_or(Json::Null),
                ),
                None => output(&args, &json!(content)),
            }
        }
        "secret-info-get" => {
            let args = parse(a, &[FORMAT, val(&["label"])])?;
            args.at_most(1)?;
            let secrets = session.secrets_view().map_err(world_error)?;
            let (found, what) = match (args.pos.first(), args.value("label")) {
                (Some(id), None) => (find_secret(&secrets, id), id.clone()),
                (None, Some(label)) => {
                    (secrets.iter().find(|s| s.label == label), label.to_string())
                }
                _ => return Err(Response::usage("require either a secret URI or label")),
            };
            let s = found.ok_or_else(|| Response::error(format!("secret {what:?} not found")))?;
            if !owns(inner, session, s).await? {
                return Err(Response::error(format!(
                    "permission denied: this unit does not own secret {what:?}"
                )));
            }
            let short = s.id.strip_prefix("secret:").unwrap_or(&s.id);
            let owner = match s.owner {
                SecretOwnerKind::Application => "application",
                SecretOwnerKind::Unit => "unit",
            };
            output(
                &args,
                &json!({ short: {"revision": s.revision, "label": s.label, "owner": owner, "rotation": "never"} }),
            )
        }
        "secret-set" => {
            let args = parse(
                a,
                &[
                    val(&["label"]),
                    val(&["owner"]),
                    FILE,
                    val(&["description"]),
                    val(&["expire"]),
                    val(&["rotate"]),
                ],
            )?;
            for unmodelled in ["label", "description", "expire", "rotate"] {
                if args.value(unmodelled).is_some() {
                    return Err(Response::error(format!(
                        "--{unmodelled} on secret-set is not modelled by the simulated world"
                    )));
                }
            }
            let id = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("missing secret URI"))?;
            let secrets = session.secrets_view().map_err(world_error)?;
            let s = find_secret(&secrets, id)
                .ok_or_else(|| Response::error(format!("secret {id:?} not found")))?;
            if !owns(inner, session, s).await? {
                return Err(Response::error(format!(
                    "permission denied: this unit does not own secret {id:?}"
                )));
            }
            let content = secret_content(req, &args, &args.pos[1..])?;
            if content.is_empty() {
                return Err(Response::usage("missing secret value or filename"));
            }
            session
                .secret_set(s.label.clone(), content)
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "secret-remove" => {
            let args = parse(a, &[val(&["revision"])])?;
            args.at_most(1)?;
            let id = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("missing secret URI"))?;
            let revision = match args.value("revision") {
                Some(r) => Some(
                    r.parse::<u32>()
                        .map_err(|_| Response::usage(format!("invalid revision {r:?}")))?,
                ),
                None => None,
            };
            let secrets = session.secrets_view().map_err(world_error)?;
            let s = find_secret(&secrets, id)
                .ok_or_else(|| Response::error(format!("secret {id:?} not found")))?;
            if !owns(inner, session, s).await? {
                return Err(Response::error(format!(
                    "permission denied: this unit does not own secret {id:?}"
                )));
            }
            session
                .secret_remove(s.id.clone(), revision)
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "goal-state" => {
            let args = parse(a, &[FORMAT])?;
            args.at_most(0)?;
            goal_state(inner, session, &args)
        }
        "application-version-set" => {
            let args = parse(a, &[])?;
            args.at_most(1)?;
            let v = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("no version specified"))?;
            session
                .set_workload_version(v.clone())
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "action-get" => {
            let args = parse(a, &[FORMAT])?;
            args.at_most(1)?;
            let params: serde_json::Map<String, Json> = session
                .action_params()
                .await
                .map_err(world_error)?
                .iter()
                .map(|nv| (nv.name.clone(), value_json(&nv.value)))
                .collect();
            match args.pos.first() {
                Some(k) => output(&args, params.get(k).unwrap_or(&Json::Null)),
                None => output(&args, &Json::Object(params)),
            }
        }
        "action-set" => {
            let args = parse(a, &[])?;
            let results = key_values(&args.pos)?;
            for k in results.keys() {
                let ok = !k.is_empty()
                    && k.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .bytes()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                            && !part.starts_with('-')
                            && !part.ends_with('-')
                    });
                if !ok {
                    return Err(Response::usage(format!(
                        "key {k:?} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"
                    )));
                }
                if matches!(
                    k.as_str(),
                    "stdout" | "stdout-encoding" | "stderr" | "stderr-encoding"
                ) {
                    return Err(Response::usage(format!(
                        "cannot set reserved action key {k:?}"
                    )));
                }
            }
            session
                .action_set(results.into_iter().map(|(k, v)| Kv::new(k, v)).collect())
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "action-fail" => {
            let args = parse(a, &[])?;
            let msg = if args.pos.is_empty() {
                "action failed without reason given, check action for errors".to_string()
            } else {
                args.pos.join(" ")
            };
            session.action_fail(msg).await.map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "action-log" => {
            let args = parse(a, &[])?;
            if args.pos.is_empty() {
                return Err(Response::usage("no message specified"));
            }
            session
                .action_log(args.pos.join(" "))
                .await
                .map_err(world_error)?;
            Ok(Response::ok(""))
        }
        tool @ ("open-port" | "close-port") => {
            let args = parse(a, &[val(&["endpoints"])])?;
            args.at_most(1)?;
            if args.value("endpoints").is_some() {
                return Err(Response::error(
                    "--endpoints is not modelled by the simulated world",
                ));
            }
            let spec = args
                .pos
                .first()
                .ok_or_else(|| Response::usage("no port or range specified"))?;
            let p = parse_port(spec)?;
            let mut ports: Vec<Port> = session
                .ports_view()
                .map_err(world_error)?
                .into_iter()
                .map(|p| Port {
                    protocol: p.protocol,
                    port: p.port,
                })
                .collect();
            ports.retain(|q| q != &p);
            if tool == "open-port" {
                ports.push(p);
            }
            session.set_ports(ports).await.map_err(world_error)?;
            Ok(Response::ok(""))
        }
        "opened-ports" => {
            let args = parse(a, &[FORMAT, switch(&["endpoints"])])?;
            args.at_most(0)?;
            let ports = session.ports_view().map_err(world_error)?;
            let list: Vec<String> = ports
                .iter()
                .map(|p| {
                    if args.on("endpoints") {
                        format!("{} (*)", port_string(p))
                    } else {
                        port_string(p)
                    }
                })
                .collect();
            output(&args, &json!(list))
        }
        "juju-log" => {
            let args = parse(a, &[val(&["l", "log-level"]), switch(&["debug"]), FORMAT])?;
            if args.pos.is_empty() {
                return Err(Response::usage("no message specified"));
            }
            let level = if args.on("debug") {
                "DEBUG"
            } else {
                args.value("l").unwrap_or("INFO")
            };
            let level = match level.to_uppercase().as_str() {
                "TRACE" => LogLevel::Trace,
                "DEBUG" => LogLevel::Debug,
                "INFO" => LogLevel::Info,
                "WARNING" => LogLevel::Warning,
                "ERROR" | "CRITICAL" => LogLevel::Error,
                other => return Err(Response::usage(format!("invalid log level {other:?}"))),
            };
            let message = args.pos.join(" ");
            tracing::info!(target: "juju-log", unit = %inner.unit, ?level, "{message}");
            session.log(level, message).await;
            Ok(Response::ok(""))
        }
        other => Err(Response::error(format!("unknown command {other:?}"))),
    }
}

/// `goal-state`: this application's units (dying ones as `dying`) and, per endpoint, the
/// units and applications on the other side.
fn goal_state(inner: &Inner, session: &UnitSession, args: &Args) -> R {
    let state = inner.world.state();
    let since = rfc3339(state.now_ms);
    let mut units = serde_json::Map::new();
    let mut alive: Vec<&String> = Vec::new();
    for (name, u) in &state.units {
        units.insert(
            name.clone(),
            json!({"status": if u.dying { "dying" } else { "active" }, "since": since}),
        );
        if !u.dying {
            alive.push(name);
        }
    }
    // A planned count the world sets explicitly (a scale in progress) wins: extra units are
    // dying, missing ones are still waiting to be created.
    if let Some(planned) = state.planned_units {
        let planned = planned as usize;
        for name in alive.iter().skip(planned) {
            units.insert((*name).clone(), json!({"status": "dying", "since": since}));
        }
        let next = state
            .units
            .keys()
            .filter_map(|n| n.rsplit('/').next()?.parse::<u32>().ok())
            .max()
            .map_or(0, |n| n + 1);
        for n in next..next + (planned.saturating_sub(alive.len()) as u32) {
            units.insert(
                format!("{}/{n}", state.app),
                json!({"status": "waiting", "since": since}),
            );
        }
    }
    let mut relations = serde_json::Map::new();
    for rel in session.relations_view().map_err(world_error)? {
        let entry = relations
            .entry(rel.endpoint.clone())
            .or_insert_with(|| json!({}));
        if rel.remote_app != state.app {
            entry[&rel.remote_app] = json!({"status": "joined", "since": since});
        }
        for u in rel.units.iter().filter(|u| **u != inner.unit) {
            entry[u] = json!({"status": "active", "since": since});
        }
    }
    output(args, &json!({"units": units, "relations": relations}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000 + 3_723_000), "2000-02-29T01:02:03Z");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn flags_interleave_and_stop_at_double_dash() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = parse(&v(&["database-peers", "--format=json"]), &[FORMAT]).unwrap();
        assert_eq!(p.pos, v(&["database-peers"]));
        assert_eq!(p.value("format"), Some("json"));
        let p = parse(
            &v(&["--application=False", "maintenance", "--", "--msg"]),
            &[switch(&["application"])],
        )
        .unwrap();
        assert!(!p.on("application"));
        assert_eq!(p.pos, v(&["maintenance", "--msg"]));
        let p = parse(&v(&["-r", "db:1", "--app", "-", "x/0"]), &[RELATION, APP]).unwrap();
        assert_eq!(p.value("r"), Some("db:1"));
        assert!(p.on("app"));
        assert_eq!(p.pos, v(&["-", "x/0"]));
        assert_eq!(parse(&v(&["--nope"]), &[]).err().unwrap().code, 2);
    }
}
