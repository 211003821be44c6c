//! The world's Pebble: layers with Pebble's combine/override rules, replan, files, exec.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{
    CheckDef, FileState, Inner, LayerState, PebbleState, ServiceDef, ServiceRun, UnitSession,
    unknown_unit,
};
use crate::bindings::Error;
use crate::bindings::pebble::{
    CheckLevel, CheckSpec, ExecOutput, ExecRequest, FileInfo, FileOwner, FileType, Layer,
    OverrideMode, Plan, Probe, ServiceInfo, ServiceSpec, ServiceState as WitServiceState, Startup,
    SystemInfo,
};
use crate::bindings::types::Kv;
use crate::capability::{CapResult, Pebble};

fn override_str(o: OverrideMode) -> String {
    match o {
        OverrideMode::Unset => String::new(),
        OverrideMode::Merge => "merge".into(),
        OverrideMode::Replace => "replace".into(),
    }
}

fn override_mode(s: &str) -> OverrideMode {
    match s {
        "merge" => OverrideMode::Merge,
        "replace" => OverrideMode::Replace,
        _ => OverrideMode::Unset,
    }
}

fn startup_str(s: Startup) -> String {
    match s {
        Startup::Unset => String::new(),
        Startup::Enabled => "enabled".into(),
        Startup::Disabled => "disabled".into(),
    }
}

pub(crate) fn service_def(s: &ServiceSpec) -> ServiceDef {
    ServiceDef {
        override_: override_str(s.override_),
        summary: s.summary.clone(),
        command: s.command.clone(),
        startup: startup_str(s.startup),
        user: s.user.clone(),
        group: s.group.clone(),
        environment: s
            .environment
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect(),
        after: s.after.clone(),
        before: s.before.clone(),
        requires: s.requires.clone(),
        on_success: s.on_success.clone(),
        on_failure: s.on_failure.clone(),
    }
}

fn service_spec(d: &ServiceDef) -> ServiceSpec {
    ServiceSpec {
        override_: override_mode(&d.override_),
        summary: d.summary.clone(),
        command: d.command.clone(),
        startup: match d.startup.as_str() {
            "enabled" => Startup::Enabled,
            "disabled" => Startup::Disabled,
            _ => Startup::Unset,
        },
        user: d.user.clone(),
        group: d.group.clone(),
        environment: d.environment.iter().map(|(k, v)| Kv::new(k, v)).collect(),
        after: d.after.clone(),
        before: d.before.clone(),
        requires: d.requires.clone(),
        on_success: d.on_success.clone(),
        on_failure: d.on_failure.clone(),
    }
}

fn check_def(c: &CheckSpec) -> CheckDef {
    let (http, tcp, exec) = match &c.probe {
        Probe::Http(u) => (Some(u.clone()), None, None),
        Probe::Tcp(p) => (None, Some(*p), None),
        Probe::Exec(e) => (None, None, Some(e.clone())),
    };
    CheckDef {
        override_: override_str(c.override_),
        level: match c.level {
            CheckLevel::Unset => String::new(),
            CheckLevel::Alive => "alive".into(),
            CheckLevel::Ready => "ready".into(),
        },
        period: c.period.clone(),
        timeout: c.timeout.clone(),
        threshold: c.threshold,
        http,
        tcp,
        exec,
    }
}

fn check_spec(d: &CheckDef) -> CheckSpec {
    CheckSpec {
        override_: override_mode(&d.override_),
        level: match d.level.as_str() {
            "alive" => CheckLevel::Alive,
            "ready" => CheckLevel::Ready,
            _ => CheckLevel::Unset,
        },
        period: d.period.clone(),
        timeout: d.timeout.clone(),
        threshold: d.threshold,
        probe: match (&d.http, d.tcp, &d.exec) {
            (Some(u), _, _) => Probe::Http(u.clone()),
            (_, Some(p), _) => Probe::Tcp(p),
            (_, _, Some(e)) => Probe::Exec(e.clone()),
            _ => Probe::Http(String::new()),
        },
    }
}

/// Pebble's merge of one service definition over another (`override: merge`): scalars
/// replace when set, the environment merges by key, lists append.
fn merge_service(base: &mut ServiceDef, over: &ServiceDef) {
    macro_rules! opt {
        ($f:ident) => {
            if over.$f.is_some() {
                base.$f = over.$f.clone();
            }
        };
    }
    opt!(summary);
    opt!(command);
    opt!(user);
    opt!(group);
    opt!(on_success);
    opt!(on_failure);
    if !over.startup.is_empty() {
        base.startup = over.startup.clone();
    }
    base.environment.extend(over.environment.clone());
    base.after.extend(over.after.iter().cloned());
    base.before.extend(over.before.iter().cloned());
    base.requires.extend(over.requires.iter().cloned());
    base.override_ = over.override_.clone();
}

/// Combine layers in order into the plan, as Pebble does.
pub(crate) fn combined(
    p: &PebbleState,
) -> (BTreeMap<String, ServiceDef>, BTreeMap<String, CheckDef>) {
    let mut services: BTreeMap<String, ServiceDef> = BTreeMap::new();
    let mut checks: BTreeMap<String, CheckDef> = BTreeMap::new();
    for layer in &p.layers {
        for (name, s) in &layer.services {
            match (s.override_.as_str(), services.get_mut(name)) {
                ("merge", Some(base)) => merge_service(base, s),
                _ => {
                    services.insert(name.clone(), s.clone());
                }
            }
        }
        for (name, c) in &layer.checks {
            checks.insert(name.clone(), c.clone());
        }
    }
    (services, checks)
}

fn validate(layer: &LayerState) -> CapResult<()> {
    for (name, s) in &layer.services {
        if s.override_.is_empty() {
            return Err(Error::invalid(format!(
                "layer \"{}\" must define \"override\" for service \"{name}\"",
                layer.label
            )));
        }
    }
    for (name, c) in &layer.checks {
        if c.override_.is_empty() {
            return Err(Error::invalid(format!(
                "layer \"{}\" must define \"override\" for check \"{name}\"",
                layer.label
            )));
        }
    }
    Ok(())
}

impl UnitSession {
    fn pebble_state<'g>(&self, g: &'g mut Inner, call: &str) -> CapResult<&'g mut PebbleState> {
        self.fault(g, "pebble", call)?;
        let unit = g
            .state
            .units
            .get_mut(&self.unit)
            .ok_or_else(|| unknown_unit(&self.unit))?;
        if !unit.pebble.reachable {
            return Err(Error::unreachable(format!(
                "cannot connect to Pebble at /charm/containers/postgresql/pebble.socket ({} container not running)",
                self.unit
            )));
        }
        Ok(&mut unit.pebble)
    }

    fn with_pebble<R>(
        &self,
        call: &str,
        f: impl FnOnce(&mut PebbleState, u64) -> CapResult<R>,
    ) -> CapResult<R> {
        let mut g = self.world.lock();
        let now = g.state.now_ms;
        let r = {
            let p = self.pebble_state(&mut g, call)?;
            f(p, now)?
        };
        // A started or stopped `postgresql` service moves Patroni.
        super::patroni::tick(&mut g.state);
        Ok(r)
    }
}

fn start_services(p: &mut PebbleState, names: &[String]) -> CapResult<()> {
    let (services, _) = combined(p);
    for n in names {
        let def = services
            .get(n)
            .ok_or_else(|| Error::not_found(format!("service \"{n}\" does not exist")))?;
        p.running.insert(n.clone(), ServiceRun::Active);
        p.started_with.insert(n.clone(), def.clone());
    }
    Ok(())
}

fn stop_services(p: &mut PebbleState, names: &[String]) -> CapResult<()> {
    let (services, _) = combined(p);
    for n in names {
        if !services.contains_key(n) {
            return Err(Error::not_found(format!("service \"{n}\" does not exist")));
        }
        p.running.insert(n.clone(), ServiceRun::Inactive);
        p.started_with.remove(n);
    }
    Ok(())
}

fn file_info(path: &str, f: &FileState) -> FileInfo {
    FileInfo {
        path: path.to_string(),
        name: path.rsplit('/').next().unwrap_or(path).to_string(),
        file_type: if f.directory {
            FileType::Directory
        } else {
            FileType::File
        },
        size: (!f.directory).then_some(f.content.len() as u64),
        permissions: f.permissions,
        user: Some(f.user.clone()),
        group: Some(f.group.clone()),
    }
}

fn parent(path: &str) -> Option<&str> {
    let p = path.trim_end_matches('/').rsplit_once('/')?.0;
    if p.is_empty() { None } else { Some(p) }
}

fn ensure_parents(
    p: &mut PebbleState,
    path: &str,
    make: bool,
    user: &str,
    group: &str,
) -> CapResult<()> {
    let mut missing = Vec::new();
    let mut cur = parent(path);
    while let Some(dir) = cur {
        match p.files.get(dir) {
            Some(f) if f.directory => break,
            Some(_) => return Err(Error::invalid(format!("{dir} is not a directory"))),
            None => missing.push(dir.to_string()),
        }
        cur = parent(dir);
    }
    if !missing.is_empty() && !make {
        return Err(Error::not_found(format!(
            "parent directory {} does not exist",
            missing[0]
        )));
    }
    for d in missing {
        p.files.insert(
            d,
            FileState {
                directory: true,
                content: String::new(),
                permissions: 0o755,
                user: user.into(),
                group: group.into(),
            },
        );
    }
    Ok(())
}

#[async_trait]
impl Pebble for UnitSession {
    fn in_memory(&self) -> bool {
        true
    }

    async fn system_info(&self) -> CapResult<SystemInfo> {
        self.with_pebble("get-system-info", |_, _| {
            Ok(SystemInfo {
                version: "1.32.1".into(),
            })
        })
    }

    async fn plan(&self) -> CapResult<Plan> {
        self.with_pebble("get-plan", |p, _| {
            let (services, checks) = combined(p);
            Ok(Plan {
                services: services
                    .iter()
                    .map(|(n, s)| (n.clone(), service_spec(s)))
                    .collect(),
                checks: checks
                    .iter()
                    .map(|(n, c)| (n.clone(), check_spec(c)))
                    .collect(),
            })
        })
    }

    async fn add_layer(&self, label: String, layer: Layer, combine: bool) -> CapResult<()> {
        self.with_pebble("add-layer", |p, _| {
            let new = LayerState {
                label: label.clone(),
                services: layer
                    .services
                    .iter()
                    .map(|(n, s)| (n.clone(), service_def(s)))
                    .collect(),
                checks: layer
                    .checks
                    .iter()
                    .map(|(n, c)| (n.clone(), check_def(c)))
                    .collect(),
            };
            validate(&new)?;
            match p.layers.iter_mut().find(|l| l.label == label) {
                Some(_) if !combine => {
                    Err(Error::conflict(format!("layer \"{label}\" already exists")))
                }
                Some(existing) => {
                    for (n, s) in new.services {
                        match (s.override_.as_str(), existing.services.get_mut(&n)) {
                            ("merge", Some(base)) => merge_service(base, &s),
                            _ => {
                                existing.services.insert(n, s);
                            }
                        }
                    }
                    existing.checks.extend(new.checks);
                    Ok(())
                }
                None => {
                    p.layers.push(new);
                    Ok(())
                }
            }
        })
    }

    async fn replan(&self) -> CapResult<()> {
        self.with_pebble("replan", |p, _| {
            let (services, _) = combined(p);
            for (name, def) in &services {
                let running = p.running.get(name) == Some(&ServiceRun::Active);
                let changed = p.started_with.get(name) != Some(def);
                if def.startup == "enabled" && (!running || changed) {
                    p.running.insert(name.clone(), ServiceRun::Active);
                    p.started_with.insert(name.clone(), def.clone());
                }
            }
            Ok(())
        })
    }

    async fn start(&self, services: Vec<String>) -> CapResult<()> {
        self.with_pebble("start", |p, _| start_services(p, &services))
    }

    async fn stop(&self, services: Vec<String>) -> CapResult<()> {
        self.with_pebble("stop", |p, _| stop_services(p, &services))
    }

    async fn restart(&self, services: Vec<String>) -> CapResult<()> {
        self.with_pebble("restart", |p, _| {
            stop_services(p, &services)?;
            start_services(p, &services)
        })
    }

    async fn services(&self, names: Vec<String>) -> CapResult<Vec<ServiceInfo>> {
        self.with_pebble("services", |p, _| {
            let (services, _) = combined(p);
            Ok(services
                .iter()
                .filter(|(n, _)| names.is_empty() || names.contains(n))
                .map(|(n, d)| ServiceInfo {
                    name: n.clone(),
                    enabled: d.startup == "enabled",
                    current: match p.running.get(n).copied().unwrap_or_default() {
                        ServiceRun::Active => WitServiceState::Active,
                        ServiceRun::Inactive => WitServiceState::Inactive,
                        ServiceRun::Backoff => WitServiceState::Backoff,
                        ServiceRun::Error => WitServiceState::Error,
                    },
                })
                .collect())
        })
    }

    async fn push(
        &self,
        path: String,
        content: Vec<u8>,
        permissions: Option<u32>,
        owner: FileOwner,
        make_dirs: bool,
    ) -> CapResult<()> {
        self.with_pebble("push", |p, _| {
            if !path.starts_with('/') {
                return Err(Error::invalid(format!(
                    "paths must be absolute, got {path:?}"
                )));
            }
            let user = owner.user.clone().unwrap_or_else(|| "root".into());
            let group = owner.group.clone().unwrap_or_else(|| user.clone());
            ensure_parents(p, &path, make_dirs, &user, &group)?;
            if p.files.get(&path).is_some_and(|f| f.directory) {
                return Err(Error::invalid(format!("{path} is a directory")));
            }
            p.files.insert(
                path.clone(),
                FileState {
                    directory: false,
                    // Valid UTF-8 (every file the charm writes) is taken as is, not copied.
                    content: String::from_utf8(content)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    permissions: permissions.unwrap_or(0o644),
                    user,
                    group,
                },
            );
            Ok(())
        })
    }

    async fn pull(&self, path: String) -> CapResult<Vec<u8>> {
        self.with_pebble("pull", |p, _| match p.files.get(&path) {
            Some(f) if !f.directory => Ok(f.content.clone().into_bytes()),
            Some(_) => Err(Error::invalid(format!("{path} is a directory"))),
            None => Err(Error::not_found(format!(
                "stat {path}: no such file or directory"
            ))),
        })
    }

    async fn exists(&self, path: String) -> CapResult<bool> {
        self.with_pebble("exists", |p, _| Ok(p.files.contains_key(&path)))
    }

    async fn list_files(&self, path: String, itself: bool) -> CapResult<Vec<FileInfo>> {
        self.with_pebble("list-files", |p, _| {
            let f = p.files.get(&path).ok_or_else(|| {
                Error::not_found(format!("stat {path}: no such file or directory"))
            })?;
            if itself || !f.directory {
                return Ok(vec![file_info(&path, f)]);
            }
            let prefix = format!("{}/", path.trim_end_matches('/'));
            Ok(p.files
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                .map(|(k, f)| file_info(k, f))
                .collect())
        })
    }

    async fn make_dir(
        &self,
        path: String,
        make_parents: bool,
        permissions: Option<u32>,
        owner: FileOwner,
    ) -> CapResult<()> {
        self.with_pebble("make-dir", |p, _| {
            let user = owner.user.clone().unwrap_or_else(|| "root".into());
            let group = owner.group.clone().unwrap_or_else(|| user.clone());
            if let Some(f) = p.files.get(&path) {
                if f.directory && make_parents {
                    return Ok(());
                }
                return Err(Error::conflict(format!("mkdir {path}: file exists")));
            }
            ensure_parents(p, &path, make_parents, &user, &group)?;
            p.files.insert(
                path.clone(),
                FileState {
                    directory: true,
                    content: String::new(),
                    permissions: permissions.unwrap_or(0o755),
                    user,
                    group,
                },
            );
            Ok(())
        })
    }

    async fn remove_path(&self, path: String, recursive: bool) -> CapResult<()> {
        self.with_pebble("remove-path", |p, _| {
            if !p.files.contains_key(&path) {
                return Err(Error::not_found(format!(
                    "remove {path}: no such file or directory"
                )));
            }
            let prefix = format!("{}/", path.trim_end_matches('/'));
            let children = p.files.keys().any(|k| k.starts_with(&prefix));
            if children && !recursive {
                return Err(Error::invalid(format!(
                    "remove {path}: directory not empty"
                )));
            }
            p.files.retain(|k, _| k != &path && !k.starts_with(&prefix));
            Ok(())
        })
    }

    async fn exec(&self, request: ExecRequest) -> CapResult<ExecOutput> {
        self.with_pebble("exec", |p, _| {
            let argv = request.command.clone();
            let line = argv.join(" ");
            p.exec_log.push(line.clone());
            let ok = |stdout: &str| ExecOutput {
                exit_code: 0,
                stdout: stdout.as_bytes().to_vec(),
                stderr: vec![],
            };
            match argv.first().map(String::as_str) {
                Some("chown") => {
                    // chown [-R] user:group path
                    let (spec, path) = (argv.get(argv.len().saturating_sub(2)), argv.last());
                    match (spec, path) {
                        (Some(spec), Some(path)) if p.files.contains_key(path.as_str()) => {
                            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
                            let f = p.files.get_mut(path.as_str()).unwrap();
                            f.user = u.into();
                            f.group = g.into();
                            Ok(ok(""))
                        }
                        (_, Some(path)) => Ok(ExecOutput {
                            exit_code: 1,
                            stdout: vec![],
                            stderr: format!(
                                "chown: cannot access '{path}': No such file or directory\n"
                            )
                            .into_bytes(),
                        }),
                        _ => Ok(ExecOutput {
                            exit_code: 1,
                            stdout: vec![],
                            stderr: b"chown: missing operand\n".to_vec(),
                        }),
                    }
                }
                Some("update-ca-certificates") => Ok(ok(
                    "Updating certificates in /etc/ssl/certs...\n0 added, 0 removed; done.\n",
                )),
                Some("locale") => Ok(ok("C\nC.utf8\nPOSIX\nen_US.utf8\n")),
                Some("true") => Ok(ok("")),
                Some("false") => Ok(ExecOutput {
                    exit_code: 1,
                    stdout: vec![],
                    stderr: vec![],
                }),
                Some(cmd) => Ok(ExecOutput {
                    exit_code: 127,
                    stdout: vec![],
                    stderr: format!("{cmd}: command not found\n").into_bytes(),
                }),
                None => Err(Error::invalid("exec needs a command")),
            }
        })
    }

    async fn send_signal(&self, signal: String, services: Vec<String>) -> CapResult<()> {
        self.with_pebble("send-signal", |p, _| {
            for s in &services {
                if p.running.get(s) != Some(&ServiceRun::Active) {
                    return Err(Error::invalid(format!(
                        "cannot send signal to \"{s}\": service is not running"
                    )));
                }
                p.signals.push((signal.clone(), s.clone()));
            }
            Ok(())
        })
    }
}
