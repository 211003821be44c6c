//! The generated `Host` traits, implemented by delegating to the capabilities.
//!
//! Every fallible call goes through [`HostState::guarded`]: it bounds the call in time, counts
//! the time as host time (so the wasm deadline does not tick while Patroni is slow), and
//! records the call in the trace when one was asked for.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{HostState, TraceArgs, TraceEntry};
use crate::bindings::juju::{Identity, Port, SecretOwner, Status};
use crate::bindings::kubernetes::{
    Endpoints, NodeAllocatable, ObjectKind, OwnerReference, Pod, Service,
};
use crate::bindings::patroni::{Auth, Cluster, ConfigPatch, Health, Target};
use crate::bindings::pebble::{
    ExecOutput, ExecRequest, FileInfo, FileOwner, Layer, Plan, ServiceInfo, SystemInfo,
};
use crate::bindings::postgresql::{Connection, ExtensionToggle, UserSpec};
use crate::bindings::types::{Kv, LogLevel, NamedValue};
use crate::bindings::{Error, clock, juju, kubernetes, patroni, pebble, postgresql, random, types};
use crate::capability::{CapResult, Clock, Random};

/// The tracing target of the lines a plugin logs through `juju.log` (filter directive
/// `plugin=off` silences them).
pub const GUEST_LOG_TARGET: &str = "plugin";

/// State keys the host keeps for itself (the deferral queue).
pub const RESERVED_STATE_PREFIX: &str = "charm-host.";

/// Traces are printed and stored: passwords are masked wherever the Debug form of an argument
/// shows one: `password: "…"` and `password: Some("…")` (Patroni auth, PostgreSQL connections,
/// user specs) and `password=…` inside a value (the metrics exporter's `DATA_SOURCE_NAME`).
fn redact(s: String) -> String {
    // (what precedes the secret, whether it ends at an unescaped quote or at whitespace)
    const FORMS: &[(&str, bool)] = &[
        ("password: \"", true),
        ("password: Some(\"", true),
        ("password=", false),
    ];
    // Every form contains "password": one search clears the common case (most traced calls).
    if !s.contains("password") || !FORMS.iter().any(|(k, _)| s.contains(k)) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    loop {
        let next = FORMS
            .iter()
            .filter_map(|(k, q)| rest.find(k).map(|i| (i, *k, *q)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, key, quoted)) = next else { break };
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        let bytes = rest.as_bytes();
        let mut end = 0;
        while end < bytes.len() {
            let b = bytes[end];
            let escaped = end > 0 && bytes[end - 1] == b'\\';
            if (quoted && b == b'"' && !escaped)
                || (!quoted && (b.is_ascii_whitespace() || b == b'"' || b == b'\\'))
            {
                break;
            }
            end += 1;
        }
        out.push('…');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Longest traced argument or result text, in bytes (then `…`).
const TRACE_MAX: usize = 240;

/// Raw bytes of a traced argument written before giving up on the rest: twice what is shown,
/// so masking seldom forces the whole form (a Pebble layer or a Service is several KB).
const RAW_BOUND: usize = 2 * TRACE_MAX;

/// The Debug form of a call's arguments as the trace shows it: password values masked, then
/// cut to [`TRACE_MAX`] bytes.
///
/// Arguments can be large (a Pebble layer, a Kubernetes object): the Debug form is written
/// into a bounded buffer first, and only when the masked prefix is too short to decide the
/// shown text (masking can shorten it) is the whole form written. Either way the result is
/// `abbreviate(redact(format!("{args:?}")))`; `traced_args_match_the_full_form` checks it.
fn traced_args(args: &dyn std::fmt::Debug) -> String {
    /// Masked bytes needed beyond the cut for the prefix to decide it: longer than any
    /// redaction key, so no key split by the bound can reach the shown text.
    const MARGIN: usize = 32;
    struct Bounded {
        out: String,
        cut: bool,
    }
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = RAW_BOUND - self.out.len();
            if s.len() <= room {
                self.out.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.out.push_str(&s[..end]);
            self.cut = true;
            Err(std::fmt::Error)
        }
    }
    let mut b = Bounded {
        out: String::with_capacity(256),
        cut: false,
    };
    let _ = std::fmt::write(&mut b, format_args!("{args:?}"));
    if b.cut {
        let masked = redact(b.out);
        if masked.len() > TRACE_MAX + MARGIN {
            return abbreviate(masked);
        }
        return abbreviate(redact(format!("{args:?}")));
    }
    abbreviate(redact(b.out))
}

fn abbreviate(mut s: String) -> String {
    const MAX: usize = TRACE_MAX;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// How a capability call may wait, which decides its timer and its clock reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A backend doing real I/O: bounded by the call timeout, and its time kept out of the
    /// wasm deadline (host time).
    Bounded,
    /// A plugin's own sleep: host time, bounded only by the whole-event timeout.
    Unbounded,
    /// An in-memory family (`in_memory()`): it answers in microseconds, so neither the timer
    /// nor the two clock reads (about 1 % of a pebble-ready fuzz execution) are worth it, and
    /// those microseconds count as wasm time.
    InMemory,
}

impl Wait {
    fn of(in_memory: bool) -> Wait {
        if in_memory {
            Wait::InMemory
        } else {
            Wait::Bounded
        }
    }
}

impl HostState {
    async fn guarded<T>(
        &mut self,
        family: &'static str,
        call: &'static str,
        args: TraceArgs,
        wait: Wait,
        fut: impl Future<Output = CapResult<T>> + Send,
    ) -> CapResult<T> {
        let call_no = crate::crash::before_call();
        let t0 = (wait != Wait::InMemory).then(Instant::now);
        let r = if wait == Wait::Bounded {
            match tokio::time::timeout(self.limits.call_timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::timeout(format!(
                    "{family}.{call} did not answer within {:?}",
                    self.limits.call_timeout
                ))),
            }
        } else {
            fut.await
        };
        if let Some(t0) = t0 {
            self.host_time += t0.elapsed();
        }
        crate::crash::after_call(call_no);
        if let Some(trace) = &mut self.trace {
            trace.push(TraceEntry {
                family: Cow::Borrowed(family),
                call: Cow::Borrowed(call),
                args,
                result: match &r {
                    Ok(_) => Cow::Borrowed("ok"),
                    Err(e) => Cow::Owned(abbreviate(format!("{:?}: {}", e.kind, e.message))),
                },
                object: None,
            });
        }
        r
    }

    /// Refuse an argument larger than the limit, before it reaches a backend.
    fn bound(&self, call: &str, bytes: usize) -> CapResult<()> {
        if bytes > self.limits.max_argument_bytes {
            return Err(Error::invalid(format!(
                "{call}: argument of {bytes} bytes exceeds the host limit of {} bytes",
                self.limits.max_argument_bytes
            )));
        }
        Ok(())
    }
}

fn keys(kvs: &[Kv]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn kv_bytes(kvs: &[Kv]) -> usize {
    kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum()
}

macro_rules! cap_call {
    ($self:ident, $family:ident, $wit:literal, $method:ident ( $($arg:ident),* )) => {{
        // Kept as a copy, formatted only if the trace is read (see `TraceArgs`).
        let args = if $self.trace.is_some() {
            let owned = ($($arg.clone(),)*);
            TraceArgs::lazy(move || traced_args(&owned))
        } else {
            TraceArgs::default()
        };
        let cap = $self.caps.$family.clone();
        let wait = Wait::of(cap.in_memory());
        $self.guarded(stringify!($family), $wit, args, wait, async move { cap.$method($($arg),*).await }).await
    }};
}

/// A Kubernetes write: a [`cap_call!`] whose trace entry also names the object written.
macro_rules! k8s_write {
    ($self:ident, $wit:literal, $object:expr, $method:ident ( $($arg:ident),* )) => {{
        let object = $self.trace.as_ref().map(|t| (t.len(), $object.clone()));
        let r = cap_call!($self, kubernetes, $wit, $method($($arg),*));
        if let (Some((at, object)), Some(trace)) = (object, $self.trace.as_mut())
            && let Some(entry) = trace.get_mut(at)
        {
            entry.object = Some(object);
        }
        r
    }};
}

impl types::Host for HostState {}

impl juju::Host for HostState {
    async fn get_identity(&mut self) -> Identity {
        self.caps.juju.identity()
    }
    async fn is_leader(&mut self) -> CapResult<bool> {
        cap_call!(self, juju, "is-leader", is_leader())
    }
    async fn config(&mut self) -> CapResult<Vec<juju::ConfigEntry>> {
        cap_call!(self, juju, "config", config())
    }
    async fn unit_status(&mut self) -> CapResult<Status> {
        cap_call!(self, juju, "unit-status", unit_status())
    }
    async fn set_unit_status(&mut self, status: Status) -> CapResult<()> {
        self.bound("set-unit-status", status.message.len())?;
        cap_call!(self, juju, "set-unit-status", set_unit_status(status))
    }
    async fn app_status(&mut self) -> CapResult<Status> {
        cap_call!(self, juju, "app-status", app_status())
    }
    async fn set_app_status(&mut self, status: Status) -> CapResult<()> {
        self.bound("set-app-status", status.message.len())?;
        cap_call!(self, juju, "set-app-status", set_app_status(status))
    }
    async fn relation_ids(&mut self, endpoint: String) -> CapResult<Vec<u32>> {
        cap_call!(self, juju, "relation-ids", relation_ids(endpoint))
    }
    async fn relation_units(&mut self, relation_id: u32) -> CapResult<Vec<String>> {
        cap_call!(self, juju, "relation-units", relation_units(relation_id))
    }
    async fn relation_remote_app(&mut self, relation_id: u32) -> CapResult<String> {
        cap_call!(
            self,
            juju,
            "relation-remote-app",
            relation_remote_app(relation_id)
        )
    }
    async fn relation_get(
        &mut self,
        relation_id: u32,
        of: String,
        app: bool,
    ) -> CapResult<Vec<Kv>> {
        cap_call!(
            self,
            juju,
            "relation-get",
            relation_get(relation_id, of, app)
        )
    }
    async fn relation_set(
        &mut self,
        relation_id: u32,
        app: bool,
        changes: Vec<Kv>,
    ) -> CapResult<()> {
        self.bound("relation-set", kv_bytes(&changes))?;
        cap_call!(
            self,
            juju,
            "relation-set",
            relation_set(relation_id, app, changes)
        )
    }
    async fn secret_get(&mut self, label: String) -> CapResult<Option<Vec<Kv>>> {
        cap_call!(self, juju, "secret-get", secret_get(label))
    }
    async fn secret_add(
        &mut self,
        label: String,
        owner: SecretOwner,
        content: Vec<Kv>,
    ) -> CapResult<String> {
        self.bound("secret-add", kv_bytes(&content))?;
        // Traces are printed and stored: secret content shows as its keys only.
        let args = self
            .trace
            .as_ref()
            .map(|_| format!("({label:?}, {owner:?}, keys {:?})", keys(&content)).into())
            .unwrap_or_default();
        let cap = self.caps.juju.clone();
        let wait = Wait::of(cap.in_memory());
        self.guarded("juju", "secret-add", args, wait, async move {
            cap.secret_add(label, owner, content).await
        })
        .await
    }
    async fn secret_set(&mut self, label: String, content: Vec<Kv>) -> CapResult<()> {
        self.bound("secret-set", kv_bytes(&content))?;
        let args = self
            .trace
            .as_ref()
            .map(|_| format!("({label:?}, keys {:?})", keys(&content)).into())
            .unwrap_or_default();
        let cap = self.caps.juju.clone();
        let wait = Wait::of(cap.in_memory());
        self.guarded("juju", "secret-set", args, wait, async move {
            cap.secret_set(label, content).await
        })
        .await
    }
    async fn secret_remove(&mut self, id: String, revision: Option<u32>) -> CapResult<()> {
        cap_call!(self, juju, "secret-remove", secret_remove(id, revision))
    }
    async fn planned_units(&mut self) -> CapResult<u32> {
        cap_call!(self, juju, "planned-units", planned_units())
    }
    async fn set_workload_version(&mut self, version: String) -> CapResult<()> {
        self.bound("set-workload-version", version.len())?;
        cap_call!(
            self,
            juju,
            "set-workload-version",
            set_workload_version(version)
        )
    }
    async fn state_get(&mut self, key: String) -> CapResult<Option<String>> {
        reserved(&key)?;
        cap_call!(self, juju, "state-get", state_get(key))
    }
    async fn state_set(&mut self, key: String, value: String) -> CapResult<()> {
        reserved(&key)?;
        self.bound("state-set", key.len() + value.len())?;
        cap_call!(self, juju, "state-set", state_set(key, value))
    }
    async fn state_delete(&mut self, key: String) -> CapResult<()> {
        reserved(&key)?;
        cap_call!(self, juju, "state-delete", state_delete(key))
    }
    async fn action_params(&mut self) -> CapResult<Vec<NamedValue>> {
        cap_call!(self, juju, "action-params", action_params())
    }
    async fn action_set(&mut self, results: Vec<Kv>) -> CapResult<()> {
        self.bound("action-set", kv_bytes(&results))?;
        cap_call!(self, juju, "action-set", action_set(results))
    }
    async fn action_fail(&mut self, message: String) -> CapResult<()> {
        self.bound("action-fail", message.len())?;
        cap_call!(self, juju, "action-fail", action_fail(message))
    }
    async fn action_log(&mut self, message: String) -> CapResult<()> {
        self.bound("action-log", message.len())?;
        cap_call!(self, juju, "action-log", action_log(message))
    }
    async fn set_ports(&mut self, ports: Vec<Port>) -> CapResult<()> {
        cap_call!(self, juju, "set-ports", set_ports(ports))
    }
    async fn log(&mut self, level: LogLevel, message: String) {
        // Logging must never fail a plugin; an oversized line is cut, not refused.
        let message = if message.len() > self.limits.max_output_bytes {
            let total = message.len();
            let mut m = abbreviate(message);
            m.push_str(&format!(" [{total} bytes, truncated]"));
            m
        } else {
            message
        };
        // Under their own target ([`GUEST_LOG_TARGET`]) so a filter can silence the plugins
        // without silencing the host (`fuzz` does by default).
        let plugin = self.plugin.clone();
        match level {
            LogLevel::Error => tracing::error!(target: GUEST_LOG_TARGET, %plugin, "{message}"),
            LogLevel::Warning => tracing::warn!(target: GUEST_LOG_TARGET, %plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: GUEST_LOG_TARGET, %plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: GUEST_LOG_TARGET, %plugin, "{message}"),
            LogLevel::Trace => tracing::trace!(target: GUEST_LOG_TARGET, %plugin, "{message}"),
        }
        let cap = self.caps.juju.clone();
        let t0 = Instant::now();
        cap.log(level, message).await;
        self.host_time += t0.elapsed();
    }
}

fn reserved(key: &str) -> CapResult<()> {
    if key.starts_with(RESERVED_STATE_PREFIX) {
        return Err(Error::forbidden(format!(
            "state key {key:?} is reserved for the host (prefix {RESERVED_STATE_PREFIX:?})"
        )));
    }
    Ok(())
}

impl kubernetes::Host for HostState {
    async fn get_pod(&mut self, name: String) -> CapResult<Pod> {
        cap_call!(self, kubernetes, "get-pod", get_pod(name))
    }
    async fn patch_pod_labels(&mut self, name: String, labels: Vec<Kv>) -> CapResult<()> {
        k8s_write!(
            self,
            "patch-pod-labels",
            name,
            patch_pod_labels(name, labels)
        )
    }
    async fn apply_service(&mut self, service: Service) -> CapResult<()> {
        k8s_write!(self, "apply-service", service.name, apply_service(service))
    }
    async fn get_service(&mut self, name: String) -> CapResult<Service> {
        cap_call!(self, kubernetes, "get-service", get_service(name))
    }
    async fn delete_service(&mut self, name: String) -> CapResult<()> {
        k8s_write!(self, "delete-service", name, delete_service(name))
    }
    async fn list_services(&mut self, label_selector: Vec<Kv>) -> CapResult<Vec<Service>> {
        cap_call!(
            self,
            kubernetes,
            "list-services",
            list_services(label_selector)
        )
    }
    async fn get_endpoints(&mut self, name: String) -> CapResult<Endpoints> {
        cap_call!(self, kubernetes, "get-endpoints", get_endpoints(name))
    }
    async fn patch_endpoints_annotations(
        &mut self,
        name: String,
        annotations: Vec<(String, Option<String>)>,
    ) -> CapResult<()> {
        k8s_write!(
            self,
            "patch-endpoints-annotations",
            name,
            patch_endpoints_annotations(name, annotations)
        )
    }
    async fn delete_endpoints(&mut self, name: String) -> CapResult<()> {
        k8s_write!(self, "delete-endpoints", name, delete_endpoints(name))
    }
    async fn list_endpoints(&mut self, label_selector: Vec<Kv>) -> CapResult<Vec<Endpoints>> {
        cap_call!(
            self,
            kubernetes,
            "list-endpoints",
            list_endpoints(label_selector)
        )
    }
    async fn set_owner_references(
        &mut self,
        kind: ObjectKind,
        name: String,
        owners: Vec<OwnerReference>,
    ) -> CapResult<()> {
        k8s_write!(
            self,
            "set-owner-references",
            name,
            set_owner_references(kind, name, owners)
        )
    }
    async fn get_node_allocatable(&mut self, name: String) -> CapResult<NodeAllocatable> {
        cap_call!(
            self,
            kubernetes,
            "get-node-allocatable",
            get_node_allocatable(name)
        )
    }
    async fn patch_statefulset_partition(&mut self, name: String, partition: u32) -> CapResult<()> {
        k8s_write!(
            self,
            "patch-statefulset-partition",
            name,
            patch_statefulset_partition(name, partition)
        )
    }
}

impl pebble::Host for HostState {
    async fn get_system_info(&mut self) -> CapResult<SystemInfo> {
        cap_call!(self, pebble, "get-system-info", system_info())
    }
    async fn get_plan(&mut self) -> CapResult<Plan> {
        cap_call!(self, pebble, "get-plan", plan())
    }
    async fn add_layer(&mut self, label: String, layer: Layer, combine: bool) -> CapResult<()> {
        cap_call!(self, pebble, "add-layer", add_layer(label, layer, combine))
    }
    async fn replan(&mut self) -> CapResult<()> {
        cap_call!(self, pebble, "replan", replan())
    }
    async fn start(&mut self, services: Vec<String>) -> CapResult<()> {
        cap_call!(self, pebble, "start", start(services))
    }
    async fn stop(&mut self, services: Vec<String>) -> CapResult<()> {
        cap_call!(self, pebble, "stop", stop(services))
    }
    async fn restart(&mut self, services: Vec<String>) -> CapResult<()> {
        cap_call!(self, pebble, "restart", restart(services))
    }
    async fn services(&mut self, names: Vec<String>) -> CapResult<Vec<ServiceInfo>> {
        cap_call!(self, pebble, "services", services(names))
    }
    async fn push(
        &mut self,
        path: String,
        content: Vec<u8>,
        permissions: Option<u32>,
        owner: FileOwner,
        make_dirs: bool,
    ) -> CapResult<()> {
        self.bound("push", content.len())?;
        let args = if self.trace.is_some() {
            let (path, len, owner) = (path.clone(), content.len(), owner.clone());
            TraceArgs::lazy(move || {
                format!("({path:?}, {len} bytes, {permissions:?}, {owner:?}, {make_dirs})")
            })
        } else {
            TraceArgs::default()
        };
        let cap = self.caps.pebble.clone();
        let wait = Wait::of(cap.in_memory());
        self.guarded("pebble", "push", args, wait, async move {
            cap.push(path, content, permissions, owner, make_dirs).await
        })
        .await
    }
    async fn pull(&mut self, path: String) -> CapResult<Vec<u8>> {
        cap_call!(self, pebble, "pull", pull(path))
    }
    async fn exists(&mut self, path: String) -> CapResult<bool> {
        cap_call!(self, pebble, "exists", exists(path))
    }
    async fn list_files(&mut self, path: String, itself: bool) -> CapResult<Vec<FileInfo>> {
        cap_call!(self, pebble, "list-files", list_files(path, itself))
    }
    async fn make_dir(
        &mut self,
        path: String,
        make_parents: bool,
        permissions: Option<u32>,
        owner: FileOwner,
    ) -> CapResult<()> {
        cap_call!(
            self,
            pebble,
            "make-dir",
            make_dir(path, make_parents, permissions, owner)
        )
    }
    async fn remove_path(&mut self, path: String, recursive: bool) -> CapResult<()> {
        cap_call!(self, pebble, "remove-path", remove_path(path, recursive))
    }
    async fn exec(&mut self, request: ExecRequest) -> CapResult<ExecOutput> {
        self.bound("exec", request.stdin.as_ref().map_or(0, |s| s.len()))?;
        cap_call!(self, pebble, "exec", exec(request))
    }
    async fn send_signal(&mut self, signal: String, services: Vec<String>) -> CapResult<()> {
        cap_call!(self, pebble, "send-signal", send_signal(signal, services))
    }
}

impl patroni::Host for HostState {
    async fn get_cluster(&mut self, at: Target, auth: Auth) -> CapResult<Cluster> {
        cap_call!(self, patroni, "get-cluster", cluster(at, auth))
    }
    async fn get_health(&mut self, at: Target, auth: Auth) -> CapResult<Health> {
        cap_call!(self, patroni, "get-health", health(at, auth))
    }
    async fn patch_config(&mut self, at: Target, auth: Auth, patch: ConfigPatch) -> CapResult<()> {
        cap_call!(self, patroni, "patch-config", patch_config(at, auth, patch))
    }
    async fn switchover(
        &mut self,
        at: Target,
        auth: Auth,
        leader: Option<String>,
        candidate: Option<String>,
    ) -> CapResult<()> {
        cap_call!(
            self,
            patroni,
            "switchover",
            switchover(at, auth, leader, candidate)
        )
    }
    async fn restart(&mut self, at: Target, auth: Auth) -> CapResult<()> {
        cap_call!(self, patroni, "restart", restart(at, auth))
    }
    async fn reinitialize(&mut self, at: Target, auth: Auth) -> CapResult<()> {
        cap_call!(self, patroni, "reinitialize", reinitialize(at, auth))
    }
}

impl postgresql::Host for HostState {
    async fn list_users(&mut self, conn: Connection) -> CapResult<Vec<String>> {
        cap_call!(self, postgresql, "list-users", list_users(conn))
    }
    async fn create_user(&mut self, conn: Connection, user: UserSpec) -> CapResult<()> {
        cap_call!(self, postgresql, "create-user", create_user(conn, user))
    }
    async fn set_password(
        &mut self,
        conn: Connection,
        user: String,
        password: String,
    ) -> CapResult<()> {
        cap_call!(
            self,
            postgresql,
            "set-password",
            set_password(conn, user, password)
        )
    }
    async fn set_up_database(
        &mut self,
        conn: Connection,
        system_users: Vec<String>,
    ) -> CapResult<()> {
        cap_call!(
            self,
            postgresql,
            "set-up-database",
            set_up_database(conn, system_users)
        )
    }
    async fn list_access_groups(&mut self, conn: Connection) -> CapResult<Vec<String>> {
        cap_call!(
            self,
            postgresql,
            "list-access-groups",
            list_access_groups(conn)
        )
    }
    async fn create_access_groups(
        &mut self,
        conn: Connection,
        groups: Vec<String>,
        system_users: Vec<String>,
    ) -> CapResult<()> {
        cap_call!(
            self,
            postgresql,
            "create-access-groups",
            create_access_groups(conn, groups, system_users)
        )
    }
    async fn list_databases(&mut self, conn: Connection) -> CapResult<Vec<String>> {
        cap_call!(self, postgresql, "list-databases", list_databases(conn))
    }
    async fn set_extensions(
        &mut self,
        conn: Connection,
        database: String,
        extensions: Vec<ExtensionToggle>,
    ) -> CapResult<()> {
        cap_call!(
            self,
            postgresql,
            "set-extensions",
            set_extensions(conn, database, extensions)
        )
    }
    async fn pending_restart(&mut self, conn: Connection) -> CapResult<bool> {
        cap_call!(self, postgresql, "pending-restart", pending_restart(conn))
    }
    async fn ssl_enabled(&mut self, conn: Connection) -> CapResult<bool> {
        cap_call!(self, postgresql, "ssl-enabled", ssl_enabled(conn))
    }
}

impl clock::Host for HostState {
    async fn now_ms(&mut self) -> u64 {
        self.caps.clock.now_ms()
    }
    async fn sleep_ms(&mut self, ms: u64) {
        // A plugin's own wait: bounded by the whole-event timeout, not the per-call one.
        let cap = self.caps.clock.clone();
        let args = if self.trace.is_some() {
            format!("({ms})").into()
        } else {
            TraceArgs::default()
        };
        let _ = self
            .guarded("clock", "sleep-ms", args, Wait::Unbounded, async move {
                cap.sleep_ms(ms).await;
                Ok(())
            })
            .await;
    }
}

impl random::Host for HostState {
    async fn bytes(&mut self, len: u32) -> Vec<u8> {
        // Bounded like any argument: a plugin cannot make the host allocate without limit.
        let len = len.min(self.limits.max_argument_bytes as u32);
        self.caps.random.bytes(len)
    }
}

/// WASI's wall clock, answered from the clock capability (virtual time in a simulation).
pub struct WallClock(pub Arc<dyn Clock>);

impl wasmtime_wasi::HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

/// WASI's monotonic clock, from the same source.
pub struct MonotonicClock(pub Arc<dyn Clock>);

impl wasmtime_wasi::HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.now_ms().saturating_mul(1_000_000)
    }
}

/// WASI's random sources, answered from the random capability (seeded in a simulation).
pub struct HostRng(pub Arc<dyn Random>);

impl rand::TryRng for HostRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let b = self.0.bytes(4);
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let b = self.0.bytes(8);
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let b = self.0.bytes(dst.len() as u32);
        dst.copy_from_slice(&b);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Auth {
        user: String,
        password: Option<String>,
    }

    /// The bounded writer must give exactly what formatting everything would: short and long
    /// arguments, passwords before, across and after the bound, and enough masked passwords
    /// to shrink a long form below the shown length.
    #[test]
    fn traced_args_match_the_full_form() {
        let full = |a: &dyn std::fmt::Debug| abbreviate(redact(format!("{a:?}")));
        let long = "x".repeat(3000);
        let pw = |n: usize| Auth {
            user: "operator".into(),
            password: Some("p".repeat(n)),
        };
        let cases: Vec<Box<dyn std::fmt::Debug>> = vec![
            Box::new(("short", 1u32)),
            Box::new((&long,)),
            Box::new((pw(16), &long)),
            Box::new((&long, pw(16))),
            Box::new(((0..40).map(|_| pw(16)).collect::<Vec<_>>(),)),
            Box::new(((0..40).map(|_| pw(200)).collect::<Vec<_>>(),)),
            Box::new((pw(1500),)),
            Box::new(("é".repeat(2000),)),
            Box::new((format!(
                "{}DATA_SOURCE_NAME=user password={}",
                "y".repeat(RAW_BOUND - 14),
                "s".repeat(50)
            ),)),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_eq!(traced_args(c), full(c), "case {i}");
        }
        // Masking reaches the bounded form too.
        let shown = traced_args(&(pw(16),));
        assert!(!shown.contains("pppp"), "{shown}");
        // The cut and the mark.
        assert_eq!(traced_args(&(&long,)).len(), TRACE_MAX + '…'.len_utf8());
    }
}
