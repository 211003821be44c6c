//! Pebble's data types, free of I/O: layers and plans (YAML), and the JSON results of the API.
//!
//! Field names are Pebble's own (kebab-case). Layer-side types keep fields this client does not
//! know in `extra`, so a plan read from a newer Pebble survives a round trip.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::duration::{GoDuration, ParseDurationError};
use crate::error::{Error, Result};

/// Declares a string enum whose unknown values are kept verbatim in `Other`, so values from a
/// newer Pebble neither fail to decode nor change when written back.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this client does not know, kept as Pebble sent it.
            Other(String),
        }

        impl $name {
            /// Pebble's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

string_enum! {
    /// Whether a service or check starts automatically.
    Startup {
        Enabled = "enabled",
        Disabled = "disabled",
    }
}

string_enum! {
    /// How a layer's entry combines with the same entry in earlier layers.
    Override {
        Merge = "merge",
        Replace = "replace",
    }
}

string_enum! {
    /// What Pebble does when a service exits or one of its checks fails.
    ServiceAction {
        Restart = "restart",
        Shutdown = "shutdown",
        Ignore = "ignore",
        SuccessShutdown = "success-shutdown",
        FailureShutdown = "failure-shutdown",
    }
}

string_enum! {
    /// A check's level.
    CheckLevel {
        Alive = "alive",
        Ready = "ready",
    }
}

string_enum! {
    /// A log target's protocol.
    LogTargetType {
        Loki = "loki",
        Syslog = "syslog",
        Opentelemetry = "opentelemetry",
    }
}

string_enum! {
    /// A service's current state.
    ServiceStatus {
        Active = "active",
        Inactive = "inactive",
        Backoff = "backoff",
        Error = "error",
    }
}

string_enum! {
    /// A check's current state.
    CheckStatus {
        Up = "up",
        Down = "down",
        Inactive = "inactive",
    }
}

string_enum! {
    /// The type of a file system entry.
    FileType {
        File = "file",
        Directory = "directory",
        Symlink = "symlink",
        Socket = "socket",
        NamedPipe = "named-pipe",
        Device = "device",
        Unknown = "unknown",
    }
}

/// Unknown layer keys, kept for round-tripping.
pub type Extra = BTreeMap<String, serde_yaml::Value>;

/// A configuration layer, as sent to `POST /v1/layers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Layer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_targets: BTreeMap<String, LogTarget>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a service definition.
    pub fn with_service(mut self, name: impl Into<String>, service: Service) -> Self {
        self.services.insert(name.into(), service);
        self
    }

    /// Adds (or replaces) a check definition.
    pub fn with_check(mut self, name: impl Into<String>, check: Check) -> Self {
        self.checks.insert(name.into(), check);
        self
    }

    /// Parses layer YAML.
    pub fn from_yaml(yaml: &str) -> Result<Self> {
        serde_yaml::from_str(yaml)
            .map_err(|e| Error::InvalidArgument(format!("cannot parse layer YAML: {e}")))
    }

    /// Renders the layer as the YAML Pebble accepts.
    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self)
            .map_err(|e| Error::InvalidArgument(format!("cannot render layer as YAML: {e}")))
    }
}

/// The combined plan, from `GET /v1/plan`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, Service>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Check>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_targets: BTreeMap<String, LogTarget>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Plan {
    /// Parses plan YAML (Pebble sends `{}`-free YAML; an empty string is an empty plan).
    pub fn from_yaml(yaml: &str) -> std::result::Result<Self, serde_yaml::Error> {
        if yaml.trim().is_empty() || yaml.trim() == "{}" {
            return Ok(Self::default());
        }
        serde_yaml::from_str(yaml)
    }

    /// Renders the plan as YAML.
    pub fn to_yaml(&self) -> std::result::Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// A service definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    /// Required by Pebble in every layer (`merge` or `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<Override>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<ServiceAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<ServiceAction>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_check_failure: BTreeMap<String, ServiceAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_delay: Option<GoDuration>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Service {
    /// A service that replaces any earlier definition, with the given command.
    pub fn new(command: impl Into<String>) -> Self {
        Service {
            r#override: Some(Override::Replace),
            command: Some(command.into()),
            ..Self::default()
        }
    }

    /// Sets `startup: enabled` (or `disabled`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.startup = Some(if enabled {
            Startup::Enabled
        } else {
            Startup::Disabled
        });
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.insert(key.into(), value.into());
        self
    }
}

/// A health check definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Check {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<Override>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<CheckLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Startup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An HTTP check: success is a 2xx answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct HttpCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A TCP check: success is an accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TcpCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An exec check: success is exit code 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_context: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A log forwarding target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogTarget {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub target_type: Option<LogTargetType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#override: Option<Override>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// From `GET /v1/system-info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SystemInfo {
    pub version: String,
    #[serde(default)]
    pub boot_id: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One service's state, from `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ServiceInfo {
    pub name: String,
    pub startup: Startup,
    pub current: ServiceStatus,
    /// RFC 3339 time the service entered its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_since: Option<String>,
}

impl ServiceInfo {
    /// Whether the service is running.
    pub fn is_running(&self) -> bool {
        self.current == ServiceStatus::Active
    }
}

/// One check's state, from `GET /v1/checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CheckInfo {
    pub name: String,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub level: Option<CheckLevel>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub startup: Option<Startup>,
    pub status: CheckStatus,
    #[serde(default)]
    pub successes: u64,
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_id: Option<String>,
}

/// A change: a unit of work Pebble carries out (start, stop, replan, exec, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Change {
    pub id: String,
    pub kind: String,
    pub summary: String,
    /// `Do`, `Doing`, `Done`, `Error`, `Hold`, `Undo`, ...
    pub status: String,
    pub ready: bool,
    /// Why the change failed, with one line per failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    #[serde(default)]
    pub tasks: Vec<Task>,
    pub spawn_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_time: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// One task of a [`Change`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Task {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
    #[serde(default)]
    pub progress: TaskProgress,
    #[serde(default)]
    pub spawn_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_time: Option<String>,
    /// Task results, e.g. `exit-code` for an exec task.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// A task's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProgress {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub total: u64,
}

/// A file system entry, from `GET /v1/files?action=list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileInfo {
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Only for regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits, e.g. `0o644` (Pebble sends the octal string `"644"`).
    #[serde(with = "octal_permissions")]
    pub permissions: u32,
    /// RFC 3339.
    pub last_modified: String,
    #[serde(default)]
    pub user_id: Option<u32>,
    /// Owner name; `None` when the uid has no name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub group_id: Option<u32>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub group: Option<String>,
}

/// Options for [`crate::Client::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptions {
    /// Permission bits (e.g. `0o600`); Pebble's default is `0o644`.
    pub permissions: Option<u32>,
    /// Owner by name; Pebble needs a group as well to change ownership.
    pub user: Option<String>,
    pub user_id: Option<u32>,
    pub group: Option<String>,
    pub group_id: Option<u32>,
    /// Create missing parent directories.
    pub make_dirs: bool,
}

/// Options for [`crate::Client::make_dir`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakeDirOptions {
    /// Create missing parents, and succeed if the directory exists.
    pub make_parents: bool,
    /// Permission bits (e.g. `0o750`); Pebble's default is `0o755`.
    pub permissions: Option<u32>,
    pub user: Option<String>,
    pub user_id: Option<u32>,
    pub group: Option<String>,
    pub group_id: Option<u32>,
}

/// A command to run with [`crate::Client::exec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv; the first element is looked up on Pebble's `PATH`.
    pub command: Vec<String>,
    /// Inherit environment, user, group and working dir from this service's definition.
    pub service_context: Option<String>,
    /// Extra environment (merged over Pebble's own environment).
    pub environment: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// Pebble kills the command after this long and the call fails with a timeout error.
    /// Without it the call waits as long as the command runs.
    pub timeout: Option<Duration>,
    pub user: Option<String>,
    pub user_id: Option<u32>,
    pub group: Option<String>,
    pub group_id: Option<u32>,
    /// Sent to the command's standard input, which is then closed.
    pub stdin: Option<Vec<u8>>,
}

impl ExecRequest {
    /// A request to run `command` (argv).
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            command: command.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.environment.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets the timeout after which Pebble kills the command.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Runs the command as this user (by name).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs the command with this group (by name).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Feeds these bytes to standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
}

/// What an exec'd command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The argv that ran.
    pub command: Vec<String>,
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// Standard output, lossily decoded.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error, lossily decoded.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `Ok(self)` on exit code 0, else [`Error::ExecFailed`] carrying stderr.
    pub fn check(self) -> Result<Self> {
        if self.success() {
            return Ok(self);
        }
        Err(Error::ExecFailed {
            stderr: self.stderr_lossy().trim().to_owned(),
            command: self.command,
            exit_code: self.exit_code,
        })
    }
}

/// Pebble sends `""` for "not set" in a few places.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: for<'a> From<&'a str>,
{
    let s: Option<String> = Option::deserialize(deserializer)?;
    Ok(s.filter(|s| !s.is_empty()).map(|s| T::from(s.as_str())))
}

/// Formats permission bits the way Pebble wants them: a 3-digit octal string.
pub(crate) fn permissions_string(mode: u32) -> Result<String> {
    if mode > 0o777 {
        return Err(Error::InvalidArgument(format!(
            "permissions {mode:#o} out of range: Pebble takes only the 0o777 bits"
        )));
    }
    Ok(format!("{mode:03o}"))
}

mod octal_permissions {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{mode:03o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        u32::from_str_radix(&s, 8)
            .map_err(|e| serde::de::Error::custom(format!("invalid octal permissions {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEBBLE_PLAN: &str = r#"services:
    svc:
        startup: enabled
        override: replace
        command: sleep 1000
        on-check-failure:
            chk: restart
        backoff-delay: 1s
        backoff-factor: 1.5
        kill-delay: 2s
checks:
    chk:
        override: replace
        level: alive
        startup: enabled
        period: 10s
        threshold: 3
        exec:
            command: "true"
            service-context: svc
log-targets:
    lt:
        type: loki
        location: http://127.0.0.1:1/x
        services:
            - all
        override: replace
        labels:
            a: b
"#;

    #[test]
    fn parses_a_plan_as_pebble_prints_it() {
        let plan = Plan::from_yaml(PEBBLE_PLAN).unwrap();
        let svc = &plan.services["svc"];
        assert_eq!(svc.command.as_deref(), Some("sleep 1000"));
        assert_eq!(svc.startup, Some(Startup::Enabled));
        assert_eq!(svc.r#override, Some(Override::Replace));
        assert_eq!(svc.on_check_failure["chk"], ServiceAction::Restart);
        assert_eq!(svc.backoff_delay, Some(GoDuration::from_secs(1)));
        assert_eq!(svc.backoff_factor, Some(1.5));
        assert_eq!(svc.kill_delay, Some(GoDuration::from_secs(2)));
        assert!(svc.extra.is_empty(), "{:?}", svc.extra);
        let chk = &plan.checks["chk"];
        assert_eq!(chk.level, Some(CheckLevel::Alive));
        assert_eq!(chk.period, Some(GoDuration::from_secs(10)));
        assert_eq!(chk.threshold, Some(3));
        let exec = chk.exec.as_ref().unwrap();
        assert_eq!(exec.command.as_deref(), Some("true"));
        assert_eq!(exec.service_context.as_deref(), Some("svc"));
        let lt = &plan.log_targets["lt"];
        assert_eq!(lt.target_type, Some(LogTargetType::Loki));
        assert_eq!(lt.services, vec!["all"]);
        assert_eq!(lt.labels["a"], "b");
    }

    #[test]
    fn plan_round_trips_through_yaml() {
        let plan = Plan::from_yaml(PEBBLE_PLAN).unwrap();
        let again = Plan::from_yaml(&plan.to_yaml().unwrap()).unwrap();
        assert_eq!(plan, again);
    }

    #[test]
    fn layer_yaml_uses_pebble_field_names_and_omits_unset() {
        let layer = Layer {
            summary: Some("pg".into()),
            ..Layer::default()
        }
        .with_service(
            "postgresql",
            Service {
                user: Some("postgres".into()),
                working_dir: Some("/var/lib/pg".into()),
                on_failure: Some(ServiceAction::Restart),
                backoff_limit: Some(GoDuration::from_secs(90)),
                ..Service::new("postgres -D /data")
                    .enabled(true)
                    .env("A", "1")
            },
        );
        let yaml = layer.to_yaml().unwrap();
        for needle in [
            "summary: pg",
            "override: replace",
            "command: postgres -D /data",
            "startup: enabled",
            "working-dir: /var/lib/pg",
            "on-failure: restart",
            "backoff-limit: 1m30s",
            "A: '1'",
        ] {
            assert!(yaml.contains(needle), "{needle:?} missing from:\n{yaml}");
        }
        for absent in ["description", "checks", "log-targets", "null", "after"] {
            assert!(!yaml.contains(absent), "{absent:?} present in:\n{yaml}");
        }
        assert_eq!(Layer::from_yaml(&yaml).unwrap(), layer);
    }

    #[test]
    fn unknown_fields_and_values_survive_a_round_trip() {
        let yaml = "services:\n  s:\n    override: merge\n    startup: sometimes\n    future-field: {x: 1}\n";
        let layer = Layer::from_yaml(yaml).unwrap();
        let s = &layer.services["s"];
        assert_eq!(s.startup, Some(Startup::Other("sometimes".into())));
        assert!(s.extra.contains_key("future-field"));
        let again = Layer::from_yaml(&layer.to_yaml().unwrap()).unwrap();
        assert_eq!(again, layer);
    }

    #[test]
    fn bad_layer_yaml_is_invalid() {
        let err = Layer::from_yaml("services: [1, 2").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        let err = Layer::from_yaml("services:\n  s:\n    kill-delay: soon\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }

    #[test]
    fn decodes_api_json() {
        let info: FileInfo = serde_json::from_str(
            r#"{"path":"/tmp/x","name":"x","type":"file","size":3,"permissions":"600",
                "last-modified":"2026-01-01T00:00:00Z","user-id":65534,"user":"nobody",
                "group-id":65534,"group":""}"#,
        )
        .unwrap();
        assert_eq!(info.permissions, 0o600);
        assert_eq!(info.file_type, FileType::File);
        assert_eq!(info.user.as_deref(), Some("nobody"));
        assert_eq!(info.group, None);

        let svc: ServiceInfo =
            serde_json::from_str(r#"{"name":"a","startup":"enabled","current":"backoff"}"#)
                .unwrap();
        assert_eq!(svc.current, ServiceStatus::Backoff);
        assert!(!svc.is_running());

        let chk: CheckInfo = serde_json::from_str(
            r#"{"name":"c","level":"","status":"down","failures":2,"threshold":3}"#,
        )
        .unwrap();
        assert_eq!(chk.level, None);
        assert_eq!(chk.status, CheckStatus::Down);
        assert_eq!(chk.failures, 2);
    }

    #[test]
    fn exec_output_check_reports_code_and_stderr() {
        let out = ExecOutput {
            command: vec!["false".into()],
            exit_code: 1,
            stdout: vec![],
            stderr: b"boom\n".to_vec(),
        };
        let err = out.check().unwrap_err();
        assert!(
            err.to_string().contains("exited with code 1: boom"),
            "{err}"
        );
    }

    #[test]
    fn permissions_are_three_octal_digits() {
        assert_eq!(permissions_string(0o600).unwrap(), "600");
        assert_eq!(permissions_string(0o7).unwrap(), "007");
        assert!(permissions_string(0o4755).is_err());
    }
}
