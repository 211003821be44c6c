//! The Pebble family over the real daemon's unix socket, through [`pebble_client`].
//!
//! This module only converts: WIT records to Pebble's layer types and back, and
//! [`pebble_client::Error`] to the contract's error (the client already classifies every
//! failure; see [`super::pebble_error`]). Timeouts are the client's: a request timeout for each
//! HTTP exchange and a change timeout for start/stop/restart/replan.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pebble_client as pc;

use super::pebble_error;
use crate::bindings::Error;
use crate::bindings::pebble::{
    CheckLevel, CheckSpec, ExecOutput, ExecRequest, FileInfo, FileOwner, FileType, Layer,
    OverrideMode, Plan, Probe, ServiceInfo, ServiceSpec, ServiceState, Startup, SystemInfo,
};
use crate::bindings::types::Kv;
use crate::capability::{CapResult, Pebble};

/// Where the workload container's Pebble listens, as seen from the charm container.
pub const PRODUCTION_PEBBLE_SOCKET: &str = "/charm/containers/postgresql/pebble.socket";
/// Overrides [`PRODUCTION_PEBBLE_SOCKET`] for `charm-host dispatch` under Juju.
pub const PEBBLE_SOCKET_ENV: &str = "CHARM_HOST_PEBBLE_SOCKET";

/// Per-request bound. Generous because a file push of a large config or a busy daemon on a
/// loaded node is still a normal answer; a dead daemon fails fast at connect instead.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long start/stop/restart/replan wait for their change. Pebble's own default kill-delay is
/// 5 s and PostgreSQL can take longer to stop cleanly, so this is well above it.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// [`Pebble`] against a real Pebble daemon.
pub struct PebbleBackend {
    client: pc::Client,
}

impl PebbleBackend {
    /// A backend for the daemon listening on `socket_path`. Nothing connects until the first call.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self::with_client(
            pc::Client::new(socket_path)
                .with_request_timeout(REQUEST_TIMEOUT)
                .with_change_timeout(CHANGE_TIMEOUT),
        )
    }

    /// The workload container's daemon: [`PRODUCTION_PEBBLE_SOCKET`], unless
    /// [`PEBBLE_SOCKET_ENV`] names another socket (a test, or a workload container mounted
    /// elsewhere).
    pub fn production() -> Self {
        match std::env::var_os(PEBBLE_SOCKET_ENV) {
            Some(path) if !path.is_empty() => Self::new(path),
            _ => Self::new(PRODUCTION_PEBBLE_SOCKET),
        }
    }

    /// Wraps a configured client (own timeouts).
    pub fn with_client(client: pc::Client) -> Self {
        PebbleBackend { client }
    }

    pub fn client(&self) -> &pc::Client {
        &self.client
    }
}

// ---- WIT -> Pebble ---------------------------------------------------------------------------

fn override_of(o: OverrideMode) -> Option<pc::Override> {
    match o {
        OverrideMode::Unset => None,
        OverrideMode::Merge => Some(pc::Override::Merge),
        OverrideMode::Replace => Some(pc::Override::Replace),
    }
}

fn startup_of(s: Startup) -> Option<pc::Startup> {
    match s {
        Startup::Unset => None,
        Startup::Enabled => Some(pc::Startup::Enabled),
        Startup::Disabled => Some(pc::Startup::Disabled),
    }
}

fn duration_of(what: &str, s: &Option<String>) -> CapResult<Option<pc::GoDuration>> {
    s.as_deref()
        .map(|d| {
            d.parse::<pc::GoDuration>()
                .map_err(|e| Error::invalid(format!("{what}: invalid duration {d:?}: {e}")))
        })
        .transpose()
}

pub(crate) fn service_of(s: &ServiceSpec) -> pc::Service {
    pc::Service {
        r#override: override_of(s.override_),
        summary: s.summary.clone(),
        command: s.command.clone(),
        startup: startup_of(s.startup),
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
        on_success: s.on_success.as_deref().map(pc::ServiceAction::from),
        on_failure: s.on_failure.as_deref().map(pc::ServiceAction::from),
        ..pc::Service::default()
    }
}

pub(crate) fn check_of(name: &str, c: &CheckSpec) -> CapResult<pc::Check> {
    let mut check = pc::Check {
        r#override: override_of(c.override_),
        level: match c.level {
            CheckLevel::Unset => None,
            CheckLevel::Alive => Some(pc::CheckLevel::Alive),
            CheckLevel::Ready => Some(pc::CheckLevel::Ready),
        },
        period: duration_of(&format!("check {name:?} period"), &c.period)?,
        timeout: duration_of(&format!("check {name:?} timeout"), &c.timeout)?,
        threshold: c.threshold,
        ..pc::Check::default()
    };
    match &c.probe {
        Probe::Http(url) => {
            check.http = Some(pc::HttpCheck {
                url: Some(url.clone()),
                ..Default::default()
            })
        }
        Probe::Tcp(port) => {
            check.tcp = Some(pc::TcpCheck {
                port: Some(*port),
                ..Default::default()
            })
        }
        Probe::Exec(command) => {
            check.exec = Some(pc::ExecCheck {
                command: Some(command.clone()),
                ..Default::default()
            })
        }
    }
    Ok(check)
}

pub(crate) fn layer_of(layer: &Layer) -> CapResult<pc::Layer> {
    Ok(pc::Layer {
        summary: layer.summary.clone(),
        description: layer.description.clone(),
        services: layer
            .services
            .iter()
            .map(|(n, s)| (n.clone(), service_of(s)))
            .collect(),
        checks: layer
            .checks
            .iter()
            .map(|(n, c)| Ok((n.clone(), check_of(n, c)?)))
            .collect::<CapResult<_>>()?,
        ..pc::Layer::default()
    })
}

// ---- Pebble -> WIT ---------------------------------------------------------------------------
// The WIT records carry only what the charm uses; fields Pebble has beyond them (working-dir,
// backoff, kill-delay, http headers, tcp host, ...) are dropped when a plan is read back.

fn override_mode(o: &Option<pc::Override>) -> OverrideMode {
    match o {
        Some(pc::Override::Merge) => OverrideMode::Merge,
        Some(pc::Override::Replace) => OverrideMode::Replace,
        _ => OverrideMode::Unset,
    }
}

pub(crate) fn service_spec(s: &pc::Service) -> ServiceSpec {
    ServiceSpec {
        override_: override_mode(&s.r#override),
        summary: s.summary.clone(),
        command: s.command.clone(),
        startup: match &s.startup {
            Some(pc::Startup::Enabled) => Startup::Enabled,
            Some(pc::Startup::Disabled) => Startup::Disabled,
            _ => Startup::Unset,
        },
        user: s.user.clone(),
        group: s.group.clone(),
        environment: s.environment.iter().map(|(k, v)| Kv::new(k, v)).collect(),
        after: s.after.clone(),
        before: s.before.clone(),
        requires: s.requires.clone(),
        on_success: s.on_success.as_ref().map(|a| a.as_str().to_string()),
        on_failure: s.on_failure.as_ref().map(|a| a.as_str().to_string()),
    }
}

pub(crate) fn check_spec(c: &pc::Check) -> CheckSpec {
    let probe = if let Some(h) = &c.http {
        Probe::Http(h.url.clone().unwrap_or_default())
    } else if let Some(t) = &c.tcp {
        Probe::Tcp(t.port.unwrap_or_default())
    } else if let Some(e) = &c.exec {
        Probe::Exec(e.command.clone().unwrap_or_default())
    } else {
        // Pebble refuses a check without a probe, so a plan never has one; keep the shape total.
        Probe::Exec(String::new())
    };
    CheckSpec {
        override_: override_mode(&c.r#override),
        level: match &c.level {
            Some(pc::CheckLevel::Alive) => CheckLevel::Alive,
            Some(pc::CheckLevel::Ready) => CheckLevel::Ready,
            _ => CheckLevel::Unset,
        },
        period: c.period.map(|d| d.to_string()),
        timeout: c.timeout.map(|d| d.to_string()),
        threshold: c.threshold,
        probe,
    }
}

fn service_info(s: &pc::ServiceInfo) -> ServiceInfo {
    ServiceInfo {
        name: s.name.clone(),
        enabled: s.startup == pc::Startup::Enabled,
        current: match &s.current {
            pc::ServiceStatus::Active => ServiceState::Active,
            pc::ServiceStatus::Inactive => ServiceState::Inactive,
            pc::ServiceStatus::Backoff => ServiceState::Backoff,
            // Error, and any state a newer Pebble invents: not running, not recovering.
            _ => ServiceState::Error,
        },
    }
}

fn file_info(f: &pc::FileInfo) -> FileInfo {
    FileInfo {
        path: f.path.clone(),
        name: f.name.clone(),
        file_type: match &f.file_type {
            pc::FileType::File => FileType::File,
            pc::FileType::Directory => FileType::Directory,
            pc::FileType::Symlink => FileType::Symlink,
            _ => FileType::Other,
        },
        size: f.size,
        permissions: f.permissions,
        user: f.user.clone(),
        group: f.group.clone(),
    }
}

fn names(services: &[String]) -> Vec<&str> {
    services.iter().map(String::as_str).collect()
}

#[async_trait]
impl Pebble for PebbleBackend {
    async fn system_info(&self) -> CapResult<SystemInfo> {
        let info = self.client.system_info().await.map_err(pebble_error)?;
        Ok(SystemInfo {
            version: info.version,
        })
    }

    async fn plan(&self) -> CapResult<Plan> {
        let plan = self.client.plan().await.map_err(pebble_error)?;
        Ok(Plan {
            services: plan
                .services
                .iter()
                .map(|(n, s)| (n.clone(), service_spec(s)))
                .collect(),
            checks: plan
                .checks
                .iter()
                .map(|(n, c)| (n.clone(), check_spec(c)))
                .collect(),
        })
    }

    async fn add_layer(&self, label: String, layer: Layer, combine: bool) -> CapResult<()> {
        let layer = layer_of(&layer)?;
        self.client
            .add_layer(&label, &layer, combine)
            .await
            .map_err(pebble_error)
    }

    async fn replan(&self) -> CapResult<()> {
        self.client.replan().await.map(drop).map_err(pebble_error)
    }

    async fn start(&self, services: Vec<String>) -> CapResult<()> {
        self.client
            .start(&names(&services))
            .await
            .map(drop)
            .map_err(pebble_error)
    }

    async fn stop(&self, services: Vec<String>) -> CapResult<()> {
        self.client
            .stop(&names(&services))
            .await
            .map(drop)
            .map_err(pebble_error)
    }

    async fn restart(&self, services: Vec<String>) -> CapResult<()> {
        self.client
            .restart(&names(&services))
            .await
            .map(drop)
            .map_err(pebble_error)
    }

    async fn services(&self, names_: Vec<String>) -> CapResult<Vec<ServiceInfo>> {
        let infos = self
            .client
            .services(&names(&names_))
            .await
            .map_err(pebble_error)?;
        Ok(infos.iter().map(service_info).collect())
    }

    async fn push(
        &self,
        path: String,
        content: Vec<u8>,
        permissions: Option<u32>,
        owner: FileOwner,
        make_dirs: bool,
    ) -> CapResult<()> {
        let options = pc::PushOptions {
            permissions,
            user: owner.user,
            group: owner.group,
            make_dirs,
            ..Default::default()
        };
        self.client
            .push(&path, content, &options)
            .await
            .map_err(pebble_error)
    }

    async fn pull(&self, path: String) -> CapResult<Vec<u8>> {
        self.client.pull(&path).await.map_err(pebble_error)
    }

    /// As ops' `Container.exists`: describe the path itself; not-found means absent.
    async fn exists(&self, path: String) -> CapResult<bool> {
        match self.client.list_files(&path, None, true).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == pc::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(pebble_error(e)),
        }
    }

    async fn list_files(&self, path: String, itself: bool) -> CapResult<Vec<FileInfo>> {
        let files = self
            .client
            .list_files(&path, None, itself)
            .await
            .map_err(pebble_error)?;
        Ok(files.iter().map(file_info).collect())
    }

    async fn make_dir(
        &self,
        path: String,
        make_parents: bool,
        permissions: Option<u32>,
        owner: FileOwner,
    ) -> CapResult<()> {
        let options = pc::MakeDirOptions {
            make_parents,
            permissions,
            user: owner.user,
            group: owner.group,
            ..Default::default()
        };
        self.client
            .make_dir(&path, &options)
            .await
            .map_err(pebble_error)
    }

    async fn remove_path(&self, path: String, recursive: bool) -> CapResult<()> {
        self.client
            .remove_path(&path, recursive)
            .await
            .map_err(pebble_error)
    }

    /// A non-zero exit is a result, not an error; a command killed by `timeout-ms` is a
    /// `timeout` error.
    async fn exec(&self, request: ExecRequest) -> CapResult<ExecOutput> {
        let req = pc::ExecRequest {
            command: request.command,
            environment: request
                .environment
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            working_dir: request.working_dir,
            timeout: request.timeout_ms.map(Duration::from_millis),
            user: request.user,
            group: request.group,
            stdin: request.stdin,
            ..Default::default()
        };
        let out = self.client.exec(&req).await.map_err(pebble_error)?;
        Ok(ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    async fn send_signal(&self, signal: String, services: Vec<String>) -> CapResult<()> {
        self.client
            .send_signal(&signal, &names(&services))
            .await
            .map_err(pebble_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            override_: OverrideMode::Replace,
            summary: Some("postgresql + patroni".into()),
            command: Some("patroni /var/lib/postgresql/data/patroni.yml".into()),
            startup: Startup::Enabled,
            user: Some("postgres".into()),
            group: Some("postgres".into()),
            environment: vec![
                Kv::new("PATRONI_KUBERNETES_NAMESPACE", "dev"),
                Kv::new("A", "1"),
            ],
            after: vec!["a".into()],
            before: vec![],
            requires: vec!["b".into()],
            on_success: Some("ignore".into()),
            on_failure: Some("restart".into()),
        }
    }

    #[test]
    fn services_convert_both_ways_without_loss() {
        let s = spec();
        let pebble = service_of(&s);
        assert_eq!(pebble.r#override, Some(pc::Override::Replace));
        assert_eq!(pebble.on_success, Some(pc::ServiceAction::Ignore));
        assert_eq!(pebble.environment["A"], "1");
        let back = service_spec(&pebble);
        // The environment comes back sorted by key (Pebble's map); compare as sets.
        let mut want = s.clone();
        want.environment.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(back, want);
    }

    #[test]
    fn checks_convert_each_probe_and_reject_bad_durations() {
        for probe in [
            Probe::Http("http://localhost:8008/health".into()),
            Probe::Tcp(5432),
            Probe::Exec("true".into()),
        ] {
            let c = CheckSpec {
                override_: OverrideMode::Replace,
                level: CheckLevel::Ready,
                period: Some("10s".into()),
                timeout: Some("3s".into()),
                threshold: Some(3),
                probe,
            };
            let back = check_spec(&check_of("c", &c).unwrap());
            assert_eq!(back, c);
        }
        let bad = CheckSpec {
            override_: OverrideMode::Merge,
            level: CheckLevel::Unset,
            period: Some("soon".into()),
            timeout: None,
            threshold: None,
            probe: Probe::Tcp(1),
        };
        let e = check_of("c", &bad).unwrap_err();
        assert_eq!(e.kind, crate::bindings::ErrorKind::Invalid);
        assert!(
            e.message.contains("check \"c\" period") && e.message.contains("soon"),
            "{}",
            e.message
        );
    }

    #[test]
    fn layer_yaml_has_pebble_field_names() {
        let layer = Layer {
            summary: Some("pg".into()),
            description: None,
            services: vec![("postgresql".into(), spec())],
            checks: vec![(
                "ready".into(),
                CheckSpec {
                    override_: OverrideMode::Replace,
                    level: CheckLevel::Alive,
                    period: None,
                    timeout: None,
                    threshold: None,
                    probe: Probe::Http("http://localhost:8008/health".into()),
                },
            )],
        };
        let yaml = layer_of(&layer).unwrap().to_yaml().unwrap();
        for needle in [
            "override: replace",
            "startup: enabled",
            "on-failure: restart",
            "level: alive",
            "url: http://localhost:8008/health",
        ] {
            assert!(yaml.contains(needle), "{needle:?} missing from\n{yaml}");
        }
    }
}
