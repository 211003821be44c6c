//! The production Juju capability: Juju's hook tools, run as subprocesses with exactly the
//! argv, stdin and JSON formats that ops uses (spec real-components §4).
//!
//! # Cost
//! Every tool call is a process start plus a round trip to the unit agent, and the upstream
//! charm makes 41–123 of them per dispatch. [`HookToolsJuju`] lives for one dispatch (all
//! re-emitted events and the new one share it) and therefore:
//!
//! - **reads each value once**: leadership, config, relation ids, relation units, remote
//!   apps, each databag, each secret, the whole controller-side state (one `state-get`
//!   without a key), goal-state, opened ports, action parameters. Juju's own answers cannot
//!   change under a running hook except leadership, whose lease Juju guarantees for 30 s
//!   after `is-leader` answers (ops caches it likewise);
//! - **buffers writes to commit**: each databag gets ONE `relation-set` with the merged
//!   changes, the state ONE `state-set` (plus one `state-delete` per removed key: Juju has no
//!   batch delete; a key Juju never stored is not deleted), each secret ONE
//!   `secret-set` with its final content, and ports one `opened-ports` plus the
//!   differences. Reads see this dispatch's pending writes;
//! - **starts the likely reads ahead**: the reads the previous dispatch of the same hook made
//!   ([`ReadPlan`]) start, in order and a few at a time, when the dispatch begins
//!   ([`ToolRunner::prefetch`]), and the plugin's identical call takes the answer;
//! - **flushes concurrently**: the buffered writes run together at commit.
//!
//! Buffering changes no semantics: Juju itself applies relation, state, secret and port
//! writes only when the hook exits 0. If a flush fails, [`Juju::commit`] fails, the
//! dispatch exits non-zero, and Juju discards everything the hook wrote — the writes
//! flushed before the failure included.
//!
//! # Immediate calls
//! - `secret-add` runs when asked: the secret id comes from the controller and the plugin
//!   needs it now. Juju still creates the secret only when the hook commits. Later changes
//!   to the same secret in this dispatch fold into one `secret-set` at commit.
//! - `secret-remove`, `status-set`, `application-version-set` and the `action-*` tools run
//!   when asked, so their errors reach the plugin at the call and the operator sees status
//!   during long hooks. A status or version identical to the one already set in this
//!   dispatch is not sent again.
//! - `juju-log`: WARNING and ERROR are forwarded at once (they matter most when the hook then
//!   fails). Lower levels go to this process's stderr through `tracing`; Juju records a
//!   hook's stderr in the unit log, so they are not lost, and they cost no tool call.

mod read_plan;
mod runner;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use async_trait::async_trait;
use serde_json::Value as Json;

pub use read_plan::ReadPlan;
pub use runner::{MAX_PREFETCH, ToolCall, ToolFailure, ToolRunner, is_read};

use crate::bindings::Error;
use crate::bindings::juju::{
    ConfigEntry, ConfigOption, Identity, Port, SecretOwner, Status, StatusKind,
};
use crate::bindings::types::{Kv, LogLevel, NamedValue, Value};
use crate::capability::{CapResult, Juju};

type Bag = BTreeMap<String, String>;

/// The Juju capability over hook tools, for one dispatch.
pub struct HookToolsJuju {
    runner: ToolRunner,
    identity: Identity,
    state: tokio::sync::Mutex<Cache>,
}

/// Everything read or written in this dispatch.
#[derive(Default)]
struct Cache {
    leader: Option<bool>,
    config: Option<Vec<ConfigEntry>>,
    /// endpoint -> relation ids.
    relation_ids: HashMap<String, Vec<u32>>,
    /// relation id -> endpoint, for `-r endpoint:id` (lets Juju check the pairing).
    endpoints: HashMap<u32, String>,
    relation_units: HashMap<u32, Vec<String>>,
    remote_apps: HashMap<u32, String>,
    /// (relation id, unit or app name, app bag?) -> the bag as Juju had it.
    bags: HashMap<(u32, String, bool), Bag>,
    /// (relation id, app bag?) -> this unit's pending changes to its own (or its app's)
    /// bag; an empty value deletes the key, as `relation-set` does.
    pending_bags: BTreeMap<(u32, bool), Bag>,
    secrets: HashMap<String, SecretEntry>,
    planned_units: Option<u32>,
    /// The controller-side state as stored (one `state-get` reads all of it).
    state: Option<Bag>,
    /// key -> Some(value) to set, None to delete.
    pending_state: BTreeMap<String, Option<String>>,
    wanted_ports: Option<Vec<Port>>,
    action_params: Option<Vec<NamedValue>>,
    unit_status: Option<Status>,
    app_status: Option<Status>,
    workload_version: Option<String>,
}

/// One secret, by label.
#[derive(Default, Clone)]
struct SecretEntry {
    id: Option<String>,
    /// Content as Juju has it; None when no such secret exists (or it was not read yet).
    content: Option<Bag>,
    exists: bool,
    /// Content to write at commit.
    pending: Option<Bag>,
}

impl Cache {
    fn bag_view(&self, id: u32, of: &str, app: bool, own: bool) -> Option<Bag> {
        let mut bag = self.bags.get(&(id, of.to_string(), app))?.clone();
        if own && let Some(changes) = self.pending_bags.get(&(id, app)) {
            apply_changes(&mut bag, changes);
        }
        Some(bag)
    }
}

fn apply_changes(bag: &mut Bag, changes: &Bag) {
    for (k, v) in changes {
        if v.is_empty() {
            bag.remove(k);
        } else {
            bag.insert(k.clone(), v.clone());
        }
    }
}

fn to_kvs(b: &Bag) -> Vec<Kv> {
    b.iter().map(|(k, v)| Kv::new(k, v)).collect()
}

fn s(x: impl Into<String>) -> String {
    x.into()
}

fn parse_json<T: serde::de::DeserializeOwned>(tool: &str, out: &str) -> CapResult<T> {
    serde_json::from_str(out).map_err(|e| {
        Error::other(format!(
            "{tool} printed unexpected output ({e}): {}",
            out.trim()
        ))
    })
}

/// A JSON object of strings (databags, secret content, state) from a tool's output.
fn parse_bag(tool: &str, out: &str) -> CapResult<Bag> {
    // `state-get --format=json` prints `null` when nothing is stored (juju/juju#22523).
    let v: Json = parse_json(tool, out)?;
    match v {
        Json::Null => Ok(Bag::new()),
        Json::Object(m) => m
            .into_iter()
            .map(|(k, v)| match v {
                Json::String(s) => Ok((k, s)),
                other => Ok((k, other.to_string())),
            })
            .collect(),
        other => Err(Error::other(format!(
            "{tool} printed {other}, not an object"
        ))),
    }
}

/// `database-peers:3` -> 3.
fn parse_relation_ref(r: &str) -> Option<(Option<String>, u32)> {
    match r.rsplit_once(':') {
        Some((ep, id)) => id.parse().ok().map(|id| (Some(ep.to_string()), id)),
        None => r.parse().ok().map(|id| (None, id)),
    }
}

fn status_name(k: StatusKind) -> &'static str {
    match k {
        StatusKind::Active => "active",
        StatusKind::Blocked => "blocked",
        StatusKind::Maintenance => "maintenance",
        StatusKind::Waiting => "waiting",
        StatusKind::Unknown => "unknown",
        StatusKind::Error => "error",
    }
}

fn parse_status(tool: &str, v: &Json) -> CapResult<Status> {
    let kind = match v.get("status").and_then(Json::as_str) {
        Some("active") => StatusKind::Active,
        Some("blocked") => StatusKind::Blocked,
        Some("maintenance") => StatusKind::Maintenance,
        Some("waiting") => StatusKind::Waiting,
        Some("error") => StatusKind::Error,
        Some("unknown") | Some("") | None => StatusKind::Unknown,
        Some(other) => {
            return Err(Error::other(format!(
                "{tool} reported an unknown status {other:?}"
            )));
        }
    };
    Ok(Status {
        kind,
        message: v
            .get("message")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

/// The declared type of each config option (charm/config.yaml). JSON cannot tell a float
/// option holding `1` from an int option, so the declaration decides.
pub(crate) fn config_types() -> &'static BTreeMap<String, String> {
    static TYPES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            options: BTreeMap<String, Opt>,
        }
        #[derive(serde::Deserialize)]
        struct Opt {
            #[serde(rename = "type")]
            kind: String,
        }
        let file: File = serde_yaml::from_str(include_str!("../../../../charm/config.yaml"))
            .expect("charm/config.yaml parses");
        file.options.into_iter().map(|(k, o)| (k, o.kind)).collect()
    })
}

fn to_value(declared: Option<&str>, v: &Json) -> Option<Value> {
    Some(match (declared, v) {
        (_, Json::Null) => return None,
        (_, Json::Bool(b)) => Value::Boolean(*b),
        (Some("float"), Json::Number(n)) => Value::Float(n.as_f64()?),
        (_, Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64()?),
        },
        (_, Json::String(s)) => Value::Text(s.clone()),
        // Nested action parameters (objects, arrays) have no typed form: pass them as JSON.
        (_, other) => Value::Text(other.to_string()),
    })
}

/// Juju's secret key rule (`^[a-z](?:-?[a-z0-9]){2,}$`). Checked here because the key is
/// also the temp file's name: nothing else may reach the path.
pub(crate) fn valid_secret_key(k: &str) -> bool {
    let b = k.as_bytes();
    if b.len() < 3 || !b[0].is_ascii_lowercase() || b[b.len() - 1] == b'-' {
        return false;
    }
    b.windows(2).all(|w| !(w[0] == b'-' && w[1] == b'-'))
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Secret content as `key#file=PATH` arguments, each file mode 0600 in a fresh 0700
/// directory removed when the returned guard drops. Content never goes on the command line,
/// where `/proc` and logs would show it.
fn secret_files(content: &[Kv]) -> CapResult<(tempfile::TempDir, Vec<String>)> {
    use std::io::Write;
    for kv in content {
        if !valid_secret_key(&kv.key) {
            return Err(Error::invalid(format!(
                "invalid secret key {:?}: keys are lowercase letters, digits and single hyphens, at least 3 characters, starting with a letter",
                kv.key
            )));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("charm-host-secret-")
        .tempdir()
        .map_err(|e| {
            Error::other(format!(
                "cannot create a private directory for secret content: {e}"
            ))
        })?;
    let mut args = Vec::with_capacity(content.len());
    for kv in content {
        let path = dir.path().join(&kv.key);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::other(format!(
                    "cannot write secret content to {}: {e}",
                    path.display()
                ))
            })?;
        f.write_all(kv.value.as_bytes()).map_err(|e| {
            Error::other(format!(
                "cannot write secret content to {}: {e}",
                path.display()
            ))
        })?;
        args.push(format!("{}#file={}", kv.key, path.display()));
    }
    Ok((dir, args))
}

impl HookToolsJuju {
    /// The production capability: tools on `PATH`, identity from Juju's environment
    /// (`JUJU_UNIT_NAME`, `JUJU_MODEL_NAME`, `JUJU_MODEL_UUID`, `JUJU_VERSION`) and, for a
    /// relation hook, the relation from `JUJU_RELATION_ID` and `JUJU_REMOTE_APP`.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_env_with(ToolRunner::from_path(), |k| std::env::var(k).ok())
    }

    /// Like [`Self::from_env`] with an explicit runner and environment lookup.
    pub fn from_env_with(
        runner: ToolRunner,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let unit = env("JUJU_UNIT_NAME")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("JUJU_UNIT_NAME is not set: not running in a Juju hook")
            })?;
        let (app, number) = unit
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("JUJU_UNIT_NAME {unit:?} is not of the form app/N"))?;
        let identity = Identity {
            app: app.to_string(),
            unit_number: number
                .parse()
                .map_err(|_| anyhow::anyhow!("JUJU_UNIT_NAME {unit:?} is not of the form app/N"))?,
            unit: unit.clone(),
            model: env("JUJU_MODEL_NAME").unwrap_or_default(),
            model_uuid: env("JUJU_MODEL_UUID").unwrap_or_default(),
            juju_version: env("JUJU_VERSION").unwrap_or_default(),
        };
        let this = Self::new(identity, runner);
        if let Some((Some(endpoint), id)) = env("JUJU_RELATION_ID")
            .as_deref()
            .and_then(parse_relation_ref)
        {
            let remote_app = env("JUJU_REMOTE_APP").filter(|a| !a.is_empty());
            let mut c = this.state.try_lock().expect("new, so unshared");
            c.endpoints.insert(id, endpoint);
            if let Some(a) = remote_app {
                c.remote_apps.insert(id, a);
            }
        }
        Ok(this)
    }

    pub fn new(identity: Identity, runner: ToolRunner) -> Self {
        HookToolsJuju {
            runner,
            identity,
            state: tokio::sync::Mutex::new(Cache::default()),
        }
    }

    /// The runner: how many tools ran, and which.
    pub fn runner(&self) -> &ToolRunner {
        &self.runner
    }

    /// Hook-tool processes started so far in this dispatch.
    pub fn call_count(&self) -> usize {
        self.runner.count()
    }

    async fn run(&self, tool: &str, args: &[String], stdin: Option<&str>) -> CapResult<String> {
        self.runner
            .run(tool, args, stdin)
            .await
            .map_err(|f| f.to_error())
    }

    /// `-r endpoint:id` when the endpoint is known, else `-r id` (as ops does).
    fn rel_arg(c: &Cache, id: u32) -> String {
        match c.endpoints.get(&id) {
            Some(ep) => format!("{ep}:{id}"),
            None => id.to_string(),
        }
    }

    async fn leader(&self, c: &mut Cache) -> CapResult<bool> {
        if let Some(l) = c.leader {
            return Ok(l);
        }
        let out = self.run("is-leader", &[s("--format=json")], None).await?;
        let l: bool = parse_json("is-leader", &out)?;
        c.leader = Some(l);
        Ok(l)
    }

    async fn relation_units_cached(&self, c: &mut Cache, id: u32) -> CapResult<Vec<String>> {
        if let Some(u) = c.relation_units.get(&id) {
            return Ok(u.clone());
        }
        let args = vec![s("--format=json"), s("-r"), Self::rel_arg(c, id)];
        let out = self.run("relation-list", &args, None).await?;
        let units: Vec<String> = parse_json("relation-list", &out)?;
        c.relation_units.insert(id, units.clone());
        Ok(units)
    }

    /// A relation this dispatch has not seen listed: check it exists before buffering a
    /// write to it, so a bad id fails at the call, not at commit.
    async fn ensure_relation(&self, c: &mut Cache, id: u32) -> CapResult<()> {
        if c.relation_ids.values().any(|ids| ids.contains(&id))
            || c.relation_units.contains_key(&id)
        {
            return Ok(());
        }
        self.relation_units_cached(c, id).await.map(drop)
    }

    async fn load_state(&self, c: &mut Cache) -> CapResult<()> {
        if c.state.is_none() {
            let out = self.run("state-get", &[s("--format=json")], None).await?;
            c.state = Some(parse_bag("state-get", &out)?);
        }
        Ok(())
    }

    /// Look a secret up by label (content and existence), once.
    async fn secret_entry(&self, c: &mut Cache, label: &str) -> CapResult<SecretEntry> {
        if let Some(e) = c.secrets.get(label)
            && (e.content.is_some() || !e.exists)
        {
            return Ok(e.clone());
        }
        let args = vec![s("--format=json"), s("--label"), label.to_string()];
        let entry = match self.run("secret-get", &args, None).await {
            Ok(out) => {
                let content = parse_bag("secret-get", &out)?;
                let mut e = c.secrets.get(label).cloned().unwrap_or_default();
                e.content = Some(content);
                e.exists = true;
                e
            }
            Err(e) if e.kind == crate::bindings::ErrorKind::NotFound => SecretEntry::default(),
            Err(e) => return Err(e),
        };
        c.secrets.insert(label.to_string(), entry.clone());
        Ok(entry)
    }

    async fn set_status(&self, app: bool, status: Status) -> CapResult<()> {
        if matches!(status.kind, StatusKind::Unknown | StatusKind::Error) {
            return Err(Error::invalid(format!(
                "status {:?} cannot be set by a charm (only active, blocked, maintenance, waiting)",
                status_name(status.kind)
            )));
        }
        let mut c = self.state.lock().await;
        if app && !self.leader(&mut c).await? {
            return Err(Error::forbidden(
                "only the leader can set the application status",
            ));
        }
        let known = if app { &c.app_status } else { &c.unit_status };
        if known.as_ref() == Some(&status) {
            return Ok(());
        }
        // `--application=True|False` is the Python bool as ops writes it.
        let args = vec![
            format!("--application={}", if app { "True" } else { "False" }),
            s(status_name(status.kind)),
            s("--"),
            status.message.clone(),
        ];
        self.run("status-set", &args, None).await?;
        if app {
            c.app_status = Some(status);
        } else {
            c.unit_status = Some(status);
        }
        Ok(())
    }

    /// Write every buffered change. Called once, at commit.
    ///
    /// The writes run concurrently: Juju applies all of a hook's relation, secret, state and
    /// port writes together when the hook exits 0, so their order is unobservable, and each is
    /// a process start that need not wait for the one before. If any fails, the first failure
    /// in the order below is reported (and Juju, seeing the hook fail, discards them all).
    async fn flush(&self, c: &mut Cache) -> CapResult<()> {
        type Write<'f> =
            std::pin::Pin<Box<dyn std::future::Future<Output = CapResult<()>> + Send + 'f>>;
        let mut writes: Vec<Write<'_>> = Vec::new();

        let bags: Vec<((u32, bool), Bag)> = std::mem::take(&mut c.pending_bags)
            .into_iter()
            .filter(|(_, changes)| !changes.is_empty())
            .collect();
        for ((id, app), changes) in &bags {
            let mut args = vec![s("-r"), Self::rel_arg(c, *id)];
            if *app {
                args.push(s("--app"));
            }
            args.extend([s("--file"), s("-")]);
            let body = serde_json::to_string(changes).expect("a string map serialises");
            writes.push(Box::pin(async move {
                self.run("relation-set", &args, Some(&body)).await.map(drop)
            }));
        }

        let mut secrets: Vec<(String, Bag)> = Vec::new();
        for (label, entry) in c.secrets.iter_mut() {
            let Some(content) = entry.pending.take() else {
                continue;
            };
            let id = entry
                .id
                .clone()
                .ok_or_else(|| Error::other(format!("secret {label:?} has no known id")))?;
            // The content travels in files that must outlive the call.
            let (dir, mut files) = secret_files(&to_kvs(&content))?;
            let mut args = vec![id];
            args.append(&mut files);
            writes.push(Box::pin(async move {
                let result = self.run("secret-set", &args, None).await.map(drop);
                drop(dir);
                result
            }));
            secrets.push((label.clone(), content));
        }

        // Juju has no batch delete: one state-delete per key. Skip keys Juju never stored,
        // which needs the stored state; read it (one call) when that saves two or more.
        let deletes = c.pending_state.values().filter(|v| v.is_none()).count();
        if deletes >= 2 && c.state.is_none() {
            self.load_state(c).await?;
        }
        let pending = std::mem::take(&mut c.pending_state);
        let sets: Bag = pending
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        if !sets.is_empty() {
            let body = serde_json::to_string(&sets).expect("a string map serialises");
            writes.push(Box::pin(async move {
                self.run("state-set", &[s("--file"), s("-")], Some(&body))
                    .await
                    .map(drop)
            }));
        }
        for (key, v) in &pending {
            // Deleting what Juju never stored would be a wasted call.
            if v.is_some() || c.state.as_ref().is_some_and(|st| !st.contains_key(key)) {
                continue;
            }
            let key = key.clone();
            writes.push(Box::pin(async move {
                self.run("state-delete", std::slice::from_ref(&key), None)
                    .await
                    .map(drop)
            }));
        }
        if let Some(wanted) = c.wanted_ports.take() {
            writes.push(Box::pin(self.flush_ports(wanted)));
        }

        for result in futures_util::future::join_all(writes).await {
            result?;
        }

        for ((id, app), changes) in bags {
            let owner = if app {
                self.identity.app.clone()
            } else {
                self.identity.unit.clone()
            };
            if let Some(bag) = c.bags.get_mut(&(id, owner, app)) {
                apply_changes(bag, &changes);
            }
        }
        for (label, content) in secrets {
            if let Some(e) = c.secrets.get_mut(&label) {
                e.content = Some(content);
            }
        }
        if let Some(st) = c.state.as_mut() {
            for (k, v) in pending {
                match v {
                    Some(v) => st.insert(k, v),
                    None => st.remove(&k),
                };
            }
        }
        Ok(())
    }

    async fn flush_ports(&self, wanted: Vec<Port>) -> CapResult<()> {
        let out = self
            .run("opened-ports", &[s("--format=json")], None)
            .await?;
        let listed: Vec<String> = parse_json("opened-ports", &out)?;
        // opened-ports prints `5432/tcp`, `icmp`, or a bare `80` meaning tcp.
        let normalise = |p: &str| -> String {
            if p == "icmp" || p.contains('/') {
                p.to_string()
            } else {
                format!("{p}/tcp")
            }
        };
        let open: BTreeSet<String> = listed.iter().map(|p| normalise(p)).collect();
        let want: BTreeSet<String> = wanted
            .iter()
            .map(|p| {
                if p.protocol == "icmp" {
                    s("icmp")
                } else {
                    format!("{}/{}", p.port, p.protocol.to_lowercase())
                }
            })
            .collect();
        for p in open.difference(&want) {
            self.run("close-port", std::slice::from_ref(p), None)
                .await?;
        }
        for p in want.difference(&open) {
            self.run("open-port", std::slice::from_ref(p), None).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Juju for HookToolsJuju {
    fn identity(&self) -> Identity {
        self.identity.clone()
    }

    async fn is_leader(&self) -> CapResult<bool> {
        let mut c = self.state.lock().await;
        self.leader(&mut c).await
    }

    async fn config(&self) -> CapResult<Vec<ConfigEntry>> {
        let mut c = self.state.lock().await;
        if let Some(cfg) = &c.config {
            return Ok(cfg.clone());
        }
        // Without a key and without --all: set options and those with a default, as the
        // contract asks (unset options absent).
        let out = self.run("config-get", &[s("--format=json")], None).await?;
        let map: serde_json::Map<String, Json> = parse_json("config-get", &out)?;
        let types = config_types();
        // An option the charm does not declare (a config.yaml newer than this host) has no
        // case and is left out, as the plugin's own table would ignore it. Order does not
        // matter: the plugin places each value by its case.
        let cfg: Vec<ConfigEntry> = map
            .iter()
            .filter_map(|(k, v)| {
                let option = ConfigOption::from_name(k)?;
                to_value(types.get(k).map(String::as_str), v)
                    .map(|value| ConfigEntry { key: option, value })
            })
            .collect();
        c.config = Some(cfg.clone());
        Ok(cfg)
    }

    async fn unit_status(&self) -> CapResult<Status> {
        let mut c = self.state.lock().await;
        if let Some(st) = &c.unit_status {
            return Ok(st.clone());
        }
        let args = vec![
            s("--include-data"),
            s("--format=json"),
            s("--application=false"),
        ];
        let out = self.run("status-get", &args, None).await?;
        let st = parse_status("status-get", &parse_json::<Json>("status-get", &out)?)?;
        c.unit_status = Some(st.clone());
        Ok(st)
    }

    async fn set_unit_status(&self, status: Status) -> CapResult<()> {
        self.set_status(false, status).await
    }

    async fn app_status(&self) -> CapResult<Status> {
        let mut c = self.state.lock().await;
        if !self.leader(&mut c).await? {
            return Err(Error::forbidden(
                "only the leader can read the application status",
            ));
        }
        if let Some(st) = &c.app_status {
            return Ok(st.clone());
        }
        let args = vec![
            s("--include-data"),
            s("--format=json"),
            s("--application=true"),
        ];
        let out = self.run("status-get", &args, None).await?;
        let v: Json = parse_json("status-get", &out)?;
        let app = v.get("application-status").ok_or_else(|| {
            Error::other(format!(
                "status-get printed no application-status: {}",
                out.trim()
            ))
        })?;
        let st = parse_status("status-get", app)?;
        c.app_status = Some(st.clone());
        Ok(st)
    }

    async fn set_app_status(&self, status: Status) -> CapResult<()> {
        self.set_status(true, status).await
    }

    async fn relation_ids(&self, endpoint: String) -> CapResult<Vec<u32>> {
        let mut c = self.state.lock().await;
        if let Some(ids) = c.relation_ids.get(&endpoint) {
            return Ok(ids.clone());
        }
        let out = self
            .run(
                "relation-ids",
                &[endpoint.clone(), s("--format=json")],
                None,
            )
            .await?;
        let refs: Vec<String> = parse_json("relation-ids", &out)?;
        let mut ids = Vec::with_capacity(refs.len());
        for r in refs {
            let (_, id) = parse_relation_ref(&r).ok_or_else(|| {
                Error::other(format!("relation-ids printed an unexpected relation {r:?}"))
            })?;
            c.endpoints.insert(id, endpoint.clone());
            ids.push(id);
        }
        c.relation_ids.insert(endpoint, ids.clone());
        Ok(ids)
    }

    async fn relation_units(&self, relation_id: u32) -> CapResult<Vec<String>> {
        let mut c = self.state.lock().await;
        self.relation_units_cached(&mut c, relation_id).await
    }

    async fn relation_remote_app(&self, relation_id: u32) -> CapResult<String> {
        let mut c = self.state.lock().await;
        if let Some(a) = c.remote_apps.get(&relation_id) {
            return Ok(a.clone());
        }
        let args = vec![
            s("--format=json"),
            s("--app"),
            s("-r"),
            Self::rel_arg(&c, relation_id),
        ];
        let out = self.run("relation-list", &args, None).await?;
        let app: String = parse_json("relation-list", &out)?;
        c.remote_apps.insert(relation_id, app.clone());
        Ok(app)
    }

    async fn relation_get(&self, relation_id: u32, of: String, app: bool) -> CapResult<Vec<Kv>> {
        let mut c = self.state.lock().await;
        let own = if app {
            of == self.identity.app
        } else {
            of == self.identity.unit
        };
        if let Some(bag) = c.bag_view(relation_id, &of, app, own) {
            return Ok(to_kvs(&bag));
        }
        let mut args = vec![s("--format=json"), s("-r"), Self::rel_arg(&c, relation_id)];
        if app {
            args.push(s("--app"));
        }
        args.extend([s("-"), of.clone()]);
        let out = self.run("relation-get", &args, None).await?;
        let bag = parse_bag("relation-get", &out)?;
        c.bags.insert((relation_id, of.clone(), app), bag);
        Ok(to_kvs(
            &c.bag_view(relation_id, &of, app, own)
                .expect("just inserted"),
        ))
    }

    async fn relation_set(&self, relation_id: u32, app: bool, changes: Vec<Kv>) -> CapResult<()> {
        let mut c = self.state.lock().await;
        // Refused at the call, as Juju's relation-set refuses it, not later at commit.
        if app && !self.leader(&mut c).await? {
            return Err(Error::forbidden(
                "only the leader can write the application databag",
            ));
        }
        self.ensure_relation(&mut c, relation_id).await?;
        let pending = c.pending_bags.entry((relation_id, app)).or_default();
        for kv in changes {
            pending.insert(kv.key, kv.value);
        }
        Ok(())
    }

    async fn secret_get(&self, label: String) -> CapResult<Option<Vec<Kv>>> {
        let mut c = self.state.lock().await;
        let e = self.secret_entry(&mut c, &label).await?;
        if !e.exists {
            return Ok(None);
        }
        Ok(e.pending.as_ref().or(e.content.as_ref()).map(to_kvs))
    }

    async fn secret_add(
        &self,
        label: String,
        owner: SecretOwner,
        content: Vec<Kv>,
    ) -> CapResult<String> {
        let mut c = self.state.lock().await;
        if content.is_empty() {
            return Err(Error::invalid("secret content must not be empty"));
        }
        if owner == SecretOwner::Application && !self.leader(&mut c).await? {
            return Err(Error::forbidden(
                "only the leader can create application-owned secrets",
            ));
        }
        if c.secrets.get(&label).is_some_and(|e| e.exists) {
            return Err(Error::conflict(format!(
                "a secret labelled {label:?} already exists"
            )));
        }
        let (_dir, files) = secret_files(&content)?;
        let owner_name = match owner {
            SecretOwner::Application => "application",
            SecretOwner::Unit => "unit",
        };
        let mut args = vec![s("--label"), label.clone(), s("--owner"), s(owner_name)];
        args.extend(files);
        let out = self.run("secret-add", &args, None).await?;
        let id = out.trim().to_string();
        if id.is_empty() {
            return Err(Error::other("secret-add printed no secret id"));
        }
        let content: Bag = content.into_iter().map(|kv| (kv.key, kv.value)).collect();
        c.secrets.insert(
            label,
            SecretEntry {
                id: Some(id.clone()),
                content: Some(content),
                exists: true,
                pending: None,
            },
        );
        Ok(id)
    }

    async fn secret_set(&self, label: String, content: Vec<Kv>) -> CapResult<()> {
        let mut c = self.state.lock().await;
        for kv in &content {
            if !valid_secret_key(&kv.key) {
                return Err(Error::invalid(format!("invalid secret key {:?}", kv.key)));
            }
        }
        match c.secrets.get(&label) {
            Some(e) if !e.exists => {
                return Err(Error::not_found(format!("secret {label:?} not found")));
            }
            Some(e) if e.id.is_some() => {}
            _ => {
                // secret-set needs the id. secret-info-get answers only the owner, so it
                // also checks this unit may write the secret before the write is buffered.
                let args = vec![s("--format=json"), s("--label"), label.clone()];
                let out = self.run("secret-info-get", &args, None).await?;
                let info: serde_json::Map<String, Json> = parse_json("secret-info-get", &out)?;
                let raw = info
                    .keys()
                    .next()
                    .ok_or_else(|| Error::not_found(format!("secret {label:?} not found")))?;
                let e = c.secrets.entry(label.clone()).or_default();
                e.id = Some(if raw.starts_with("secret:") {
                    raw.clone()
                } else {
                    format!("secret:{raw}")
                });
                e.exists = true;
            }
        }
        let new: Bag = content.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let e = c
            .secrets
            .get_mut(&label)
            .expect("present: added, read or looked up above");
        // No empty revisions: identical content is not written.
        e.pending = if e.content.as_ref() == Some(&new) {
            None
        } else {
            Some(new)
        };
        Ok(())
    }

    async fn secret_remove(&self, id: String, revision: Option<u32>) -> CapResult<()> {
        let mut c = self.state.lock().await;
        let mut args = vec![id.clone()];
        if let Some(r) = revision {
            args.extend([s("--revision"), r.to_string()]);
        }
        self.run("secret-remove", &args, None).await?;
        if revision.is_none() {
            // Forget it, so a later secret-get in this dispatch asks Juju again.
            c.secrets
                .retain(|_, e| e.id.as_deref() != Some(id.as_str()));
        }
        Ok(())
    }

    async fn planned_units(&self) -> CapResult<u32> {
        let mut c = self.state.lock().await;
        if let Some(n) = c.planned_units {
            return Ok(n);
        }
        let out = self.run("goal-state", &[s("--format=json")], None).await?;
        let v: Json = parse_json("goal-state", &out)?;
        // ops' planned_units: units whose goal status is not `dying`.
        let n = v
            .get("units")
            .and_then(Json::as_object)
            .map(|units| {
                units
                    .values()
                    .filter(|u| u.get("status").and_then(Json::as_str) != Some("dying"))
                    .count()
            })
            .unwrap_or(0) as u32;
        c.planned_units = Some(n);
        Ok(n)
    }

    async fn set_workload_version(&self, version: String) -> CapResult<()> {
        let mut c = self.state.lock().await;
        if c.workload_version.as_deref() == Some(version.as_str()) {
            return Ok(());
        }
        self.run("application-version-set", &[s("--"), version.clone()], None)
            .await?;
        c.workload_version = Some(version);
        Ok(())
    }

    async fn state_get(&self, key: String) -> CapResult<Option<String>> {
        let mut c = self.state.lock().await;
        if let Some(v) = c.pending_state.get(&key) {
            return Ok(v.clone());
        }
        self.load_state(&mut c).await?;
        Ok(c.state.as_ref().and_then(|st| st.get(&key).cloned()))
    }

    async fn state_set(&self, key: String, value: String) -> CapResult<()> {
        let mut c = self.state.lock().await;
        c.pending_state.insert(key, Some(value));
        Ok(())
    }

    async fn state_delete(&self, key: String) -> CapResult<()> {
        let mut c = self.state.lock().await;
        c.pending_state.insert(key, None);
        Ok(())
    }

    async fn action_params(&self) -> CapResult<Vec<NamedValue>> {
        let mut c = self.state.lock().await;
        if let Some(p) = &c.action_params {
            return Ok(p.clone());
        }
        let out = self.run("action-get", &[s("--format=json")], None).await?;
        let v: Json = parse_json("action-get", &out)?;
        let params: Vec<NamedValue> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        to_value(None, v).map(|value| NamedValue {
                            name: k.clone(),
                            value,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        c.action_params = Some(params.clone());
        Ok(params)
    }

    async fn action_set(&self, results: Vec<Kv>) -> CapResult<()> {
        if results.is_empty() {
            return Ok(());
        }
        let _c = self.state.lock().await;
        // ops passes results as `key=value` arguments; action-set has no file input.
        let args: Vec<String> = results
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        self.runner
            .run("action-set", &args, None)
            .await
            .map(drop)
            .map_err(|f| {
                // The values may be secrets (get-password): keep them out of the error.
                let mut e = f.to_error();
                for kv in &results {
                    if !kv.value.is_empty() {
                        e.message = e.message.replace(&kv.value, "<redacted>");
                    }
                }
                e
            })
    }

    async fn action_fail(&self, message: String) -> CapResult<()> {
        let _c = self.state.lock().await;
        self.run("action-fail", &[s("--"), message], None)
            .await
            .map(drop)
    }

    async fn action_log(&self, message: String) -> CapResult<()> {
        let _c = self.state.lock().await;
        self.run("action-log", &[s("--"), message], None)
            .await
            .map(drop)
    }

    async fn set_ports(&self, ports: Vec<Port>) -> CapResult<()> {
        for p in &ports {
            let proto = p.protocol.to_lowercase();
            if !matches!(proto.as_str(), "tcp" | "udp" | "icmp") {
                return Err(Error::invalid(format!(
                    "unknown port protocol {:?} (tcp, udp or icmp)",
                    p.protocol
                )));
            }
            if proto != "icmp" && p.port == 0 {
                return Err(Error::invalid("port 0 cannot be opened"));
            }
        }
        let mut c = self.state.lock().await;
        c.wanted_ports = Some(ports);
        Ok(())
    }

    async fn log(&self, level: LogLevel, message: String) {
        let juju_level = match level {
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Info => return tracing::info!(target: "charm", "{message}"),
            LogLevel::Debug => return tracing::debug!(target: "charm", "{message}"),
            LogLevel::Trace => return tracing::trace!(target: "charm", "{message}"),
        };
        let _c = self.state.lock().await;
        if let Err(e) = self
            .run(
                "juju-log",
                &[s("--log-level"), s(juju_level), s("--"), message.clone()],
                None,
            )
            .await
        {
            // Logging must not fail the hook; keep the message on stderr at least.
            tracing::warn!(
                "juju-log failed ({}); the message was: {message}",
                e.message
            );
        }
    }

    async fn commit(&self) -> anyhow::Result<()> {
        let mut c = self.state.lock().await;
        let before = self.runner.count();
        self.flush(&mut c)
            .await
            .map_err(|e| anyhow::anyhow!("flushing Juju writes: {}", e.message))?;
        tracing::debug!(
            commit_calls = self.runner.count() - before,
            total_calls = self.runner.count(),
            "hook-tool writes flushed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_follow_juju() {
        for ok in ["key", "operator-password", "ca-remote1", "cauth"] {
            assert!(valid_secret_key(ok), "{ok}");
        }
        for bad in ["ca", "Key", "a--b", "-ab", "ab-", "../x", "a/bc", "1ab", ""] {
            assert!(!valid_secret_key(bad), "{bad}");
        }
    }

    #[test]
    fn relation_refs() {
        assert_eq!(
            parse_relation_ref("database-peers:3"),
            Some((Some("database-peers".into()), 3))
        );
        assert_eq!(parse_relation_ref("7"), Some((None, 7)));
        assert_eq!(parse_relation_ref("x:y"), None);
    }

    #[test]
    fn config_values_follow_declared_types() {
        assert_eq!(
            to_value(Some("float"), &serde_json::json!(1)),
            Some(Value::Float(1.0))
        );
        assert_eq!(
            to_value(Some("int"), &serde_json::json!(1)),
            Some(Value::Integer(1))
        );
        assert_eq!(
            to_value(None, &serde_json::json!({"a": 1})),
            Some(Value::Text("{\"a\":1}".into()))
        );
        assert_eq!(to_value(None, &Json::Null), None);
    }
}
