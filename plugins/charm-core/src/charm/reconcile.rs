//! The reconcilers shared by several hooks (spec 2.3.5, 3.2, 3.3).

use std::rc::Rc;

use super::k8s;
use super::patroni;
use super::secrets::get_secret;
use super::status::{self, StatusKind};
use super::{Ctx, HookError, HookResult, describe};
use crate::bindings::charm::host::kubernetes;
use crate::bindings::charm::host::pebble::{
    self, CheckLevel as PCheckLevel, CheckSpec as PCheckSpec, ExecRequest, FileOwner,
    Layer as PLayer, OverrideMode, Probe as PProbe, ServiceSpec as PServiceSpec, ServiceState,
    Startup as PStartup,
};
use crate::bindings::charm::host::postgresql::{
    self, Connection, ExtensionToggle, Target as PgTarget, UserSpec,
};
use crate::bindings::charm::host::types::{Error, ErrorKind, Kv, Outcome};
use crate::config::CharmConfig;
use crate::endpoints;
use crate::extensions;
use crate::layer::{
    self, CheckLevel, CheckSpec, Layer, LayerInput, Override, Probe, ServiceSpec, Startup,
};
use crate::names::{self, SecretScope};
use crate::params::{self, ApiConfigUpdate, ParamsError};
use crate::patroni_yml::{self, PatroniYmlInput, RestoreKeys};
use crate::resources;

/// The system users (spec 0), granted `internal_access` and given `all` in pg_hba.
pub const SYSTEM_USERS: [&str; 5] = [
    names::BACKUP_USER,
    names::REPLICATION_USER,
    names::REWIND_USER,
    names::SUPERUSER,
    names::MONITORING_USER,
];
/// The access groups `_initialize_cluster` makes sure exist.
pub const ACCESS_GROUPS: [&str; 3] = ["identity_access", "internal_access", "relation_access"];

const PATRONI_YML: &str = "/var/lib/postgresql/data/patroni.yml";
const SNAP_META: &str = "/meta.charmed-postgresql/snap.yaml";
/// The major version when the workload does not say (this is the PostgreSQL 14 track).
const DEFAULT_PG_VERSION: &str = "14";

fn postgres_owner() -> FileOwner {
    FileOwner {
        user: Some(names::WORKLOAD_USER.to_owned()),
        group: Some(names::WORKLOAD_USER.to_owned()),
    }
}

/// An SQL connection as `operator` to database `postgres` (or `database`).
pub fn operator_connection(
    ctx: &mut Ctx,
    at: PgTarget,
    database: Option<&str>,
) -> HookResult<Connection> {
    Ok(Connection {
        at,
        user: names::SUPERUSER.to_owned(),
        password: get_secret(ctx, SecretScope::App, "operator-password")?.unwrap_or_default(),
        database: database.map(str::to_owned),
    })
}

// ---------------------------------------------------------------------- fix pod, pgdata

/// `_fix_pod` (spec 3.2 step 1): when `upgrade.idle`, the Services; then this pod's labels
/// (lost when the pod was recreated). Each failure sets Blocked and ends `_fix_pod` only.
pub fn fix_pod(ctx: &mut Ctx) -> HookResult<()> {
    if ctx.upgrade_idle()? && !k8s::create_services_or_block(ctx)? {
        return Ok(());
    }
    let pod = ctx.pod();
    k8s::patch_pod_labels_or_block(ctx, &pod)?;
    Ok(())
}

/// `_create_pgdata` (spec 3.2 step 3): the data directory (0750, postgres, with parents) when
/// missing, then always `chown postgres:postgres` of the storage as root; a non-zero exit
/// fails the hook.
pub fn create_pgdata(ctx: &mut Ctx) -> HookResult<()> {
    let _ = ctx;
    if !pebble::exists(names::PGDATA_PATH)? {
        pebble::make_dir(names::PGDATA_PATH, true, Some(0o750), &postgres_owner())?;
    }
    let out = pebble::exec(&ExecRequest {
        command: vec![
            "chown".to_owned(),
            format!("{0}:{0}", names::WORKLOAD_USER),
            names::STORAGE_PATH.to_owned(),
        ],
        user: Some("root".to_owned()),
        group: None,
        environment: Vec::new(),
        working_dir: None,
        timeout_ms: None,
        stdin: None,
    })?;
    if out.exit_code != 0 {
        return Err(HookError(format!(
            "chown of {} failed with exit code {}: {}",
            names::STORAGE_PATH,
            out.exit_code,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// The workload's version from its snap metadata (`version: 14.23`), pulled once per dispatch.
/// A missing file gives None (the caller falls back).
pub fn workload_version(ctx: &mut Ctx) -> HookResult<Option<String>> {
    if let Some(v) = &ctx.workload_version {
        return Ok(v.clone());
    }
    let v = match pebble::pull(SNAP_META) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).lines().find_map(|l| {
            l.strip_prefix("version:")
                .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"').to_owned())
        }),
        Err(e) => {
            ctx.info(&format!("no workload version: {}", describe(&e)));
            None
        }
    };
    ctx.workload_version = Some(v.clone());
    Ok(v)
}

// ---------------------------------------------------------------------- TLS files

/// `is_tls_enabled`: key, CA and certificate all exist in the unit secret.
pub fn is_tls_enabled(ctx: &mut Ctx) -> HookResult<bool> {
    Ok(get_secret(ctx, SecretScope::Unit, "key")?.is_some()
        && get_secret(ctx, SecretScope::Unit, "ca")?.is_some()
        && get_secret(ctx, SecretScope::Unit, "cert")?.is_some())
}

/// Why pushing the TLS files did not work.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsPush {
    Pushed,
    /// A Pebble PathError or ProtocolError: pebble-ready defers.
    Failed(String),
}

/// `push_tls_files_to_workload` (spec 3.3.1): key, CA (the chain when present) and cert, 0400
/// postgres, with directories; the CA also into the system store followed by
/// `update-ca-certificates`. Missing values are skipped. Then `update_config()` runs, whose
/// result upstream ignores here; its ValueError is uncaught (a hook failure).
///
/// A connection failure to Pebble is ops' ConnectionError, not a PathError: a hook failure.
pub fn push_tls_files(ctx: &mut Ctx) -> HookResult<TlsPush> {
    let key = get_secret(ctx, SecretScope::Unit, "key")?;
    let ca = get_secret(ctx, SecretScope::Unit, "ca")?;
    let cert = get_secret(ctx, SecretScope::Unit, "cert")?;
    let chain = get_secret(ctx, SecretScope::Unit, "chain")?;
    let storage = names::STORAGE_PATH;
    let ca_content = chain.or(ca);
    let mut pushes: Vec<(String, String)> = Vec::new();
    if let Some(k) = key {
        pushes.push((format!("{storage}/key.pem"), k));
    }
    if let Some(c) = &ca_content {
        pushes.push((format!("{storage}/ca.pem"), c.clone()));
        pushes.push((
            "/usr/local/share/ca-certificates/ca.crt".to_owned(),
            c.clone(),
        ));
    }
    if let Some(c) = cert {
        pushes.push((format!("{storage}/cert.pem"), c));
    }
    for (path, content) in &pushes {
        if let Err(e) = pebble::push(
            path,
            content.as_bytes(),
            Some(0o400),
            &postgres_owner(),
            true,
        ) {
            if matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout) {
                return Err(e.into());
            }
            return Ok(TlsPush::Failed(format!("{path}: {}", describe(&e))));
        }
    }
    if ca_content.is_some() {
        let out = pebble::exec(&ExecRequest {
            command: vec!["update-ca-certificates".to_owned()],
            user: None,
            group: None,
            environment: Vec::new(),
            working_dir: None,
            timeout_ms: None,
            stdin: None,
        })?;
        if out.exit_code != 0 {
            return Err(HookError(format!(
                "update-ca-certificates failed with exit code {}",
                out.exit_code
            )));
        }
    }
    match update_config(ctx)? {
        Ok(_) => {}
        Err(ConfigProblem::Invalid(e)) | Err(ConfigProblem::Database(e)) => {
            return Err(HookError(e));
        }
    }
    Ok(TlsPush::Pushed)
}

// ---------------------------------------------------------------------- Pebble layer

fn to_wit_override(o: Override) -> OverrideMode {
    match o {
        Override::Unset => OverrideMode::Unset,
        Override::Merge => OverrideMode::Merge,
        Override::Replace => OverrideMode::Replace,
    }
}

fn from_wit_override(o: OverrideMode) -> Override {
    match o {
        OverrideMode::Unset => Override::Unset,
        OverrideMode::Merge => Override::Merge,
        OverrideMode::Replace => Override::Replace,
    }
}

fn to_wit_service(s: &ServiceSpec) -> PServiceSpec {
    PServiceSpec {
        override_: to_wit_override(s.override_),
        summary: s.summary.clone(),
        command: s.command.clone(),
        startup: match s.startup {
            Startup::Unset => PStartup::Unset,
            Startup::Enabled => PStartup::Enabled,
            Startup::Disabled => PStartup::Disabled,
        },
        user: s.user.clone(),
        group: s.group.clone(),
        environment: s
            .environment
            .iter()
            .map(|(k, v)| Kv {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        after: s.after.clone(),
        before: s.before.clone(),
        requires: s.requires.clone(),
        on_success: s.on_success.clone(),
        on_failure: s.on_failure.clone(),
    }
}

fn from_wit_service(s: &PServiceSpec) -> ServiceSpec {
    ServiceSpec {
        override_: from_wit_override(s.override_),
        summary: s.summary.clone(),
        command: s.command.clone(),
        startup: match s.startup {
            PStartup::Unset => Startup::Unset,
            PStartup::Enabled => Startup::Enabled,
            PStartup::Disabled => Startup::Disabled,
        },
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

fn to_wit_check(c: &CheckSpec) -> PCheckSpec {
    PCheckSpec {
        override_: to_wit_override(c.override_),
        level: match c.level {
            CheckLevel::Unset => PCheckLevel::Unset,
            CheckLevel::Alive => PCheckLevel::Alive,
            CheckLevel::Ready => PCheckLevel::Ready,
        },
        period: c.period.clone(),
        timeout: c.timeout.clone(),
        threshold: c.threshold,
        probe: match &c.probe {
            Probe::Http(u) => PProbe::Http(u.clone()),
            Probe::Tcp(p) => PProbe::Tcp(*p),
            Probe::Exec(e) => PProbe::Exec(e.clone()),
        },
    }
}

fn from_wit_check(c: &PCheckSpec) -> CheckSpec {
    CheckSpec {
        override_: from_wit_override(c.override_),
        level: match c.level {
            PCheckLevel::Unset => CheckLevel::Unset,
            PCheckLevel::Alive => CheckLevel::Alive,
            PCheckLevel::Ready => CheckLevel::Ready,
        },
        period: c.period.clone(),
        timeout: c.timeout.clone(),
        threshold: c.threshold,
        probe: match &c.probe {
            PProbe::Http(u) => Probe::Http(u.clone()),
            PProbe::Tcp(p) => Probe::Tcp(*p),
            PProbe::Exec(e) => Probe::Exec(e.clone()),
        },
    }
}

fn to_wit_layer(l: &Layer) -> PLayer {
    PLayer {
        summary: l.summary.clone(),
        description: l.description.clone(),
        services: l
            .services
            .iter()
            .map(|(n, s)| (n.clone(), to_wit_service(s)))
            .collect(),
        checks: l
            .checks
            .iter()
            .map(|(n, c)| (n.clone(), to_wit_check(c)))
            .collect(),
    }
}

/// `_postgresql_layer` for this unit (spec 3.3.2).
pub fn postgresql_layer(ctx: &mut Ctx) -> HookResult<Layer> {
    let input = LayerInput {
        app: ctx.app().to_owned(),
        namespace: ctx.namespace().to_owned(),
        unit_name: ctx.unit().to_owned(),
        tls: ctx.unit_get("tls")?.is_some(),
        on_failure_override: ctx.unit_get("patroni-on-failure-condition-override")?,
        monitoring_password: get_secret(ctx, SecretScope::App, "monitoring-password")?,
    };
    Ok(layer::postgresql_layer(&input))
}

/// `_update_pebble_layers(replan)` (spec 3.3.3): add the layer and replan when the plan's
/// services differ ("update and restart the PostgreSQL service"); add it again, without a
/// replan, when the checks differ. Returns whether the services changed.
pub fn update_pebble_layers(ctx: &mut Ctx, replan: bool) -> HookResult<bool> {
    let plan = pebble::get_plan()?;
    let new = postgresql_layer(ctx)?;
    let current_services: Vec<(String, ServiceSpec)> = plan
        .services
        .iter()
        .map(|(n, s)| (n.clone(), from_wit_service(s)))
        .collect();
    let current_checks: Vec<(String, CheckSpec)> = plan
        .checks
        .iter()
        .map(|(n, c)| (n.clone(), from_wit_check(c)))
        .collect();
    let wit_layer = to_wit_layer(&new);
    let services_changed = layer::services_differ(&current_services, &new.services);
    if services_changed {
        pebble::add_layer(layer::LAYER_LABEL, &wit_layer, true)?;
        if replan {
            pebble::replan()?;
        }
    } else if replan && workload_never_started(ctx)? && ctx.unit_get("stopped")?.is_none() {
        // Deliberate deviation from upstream: the layer is already in the plan but the
        // `postgresql` service is not running. That is what a failed replan leaves behind
        // (`add-layer` took effect, then the hook failed): upstream only replans when the
        // services differ, so the retried event would wait for a member that is never
        // started. A unit that stopped its service on purpose (`stopped` key) is left alone,
        // and so is a service in backoff: Pebble is already restarting it, and a replan would
        // only fail the hook with the same start error.
        pebble::replan()?;
    }
    if layer::checks_differ(&current_checks, &new.checks) {
        pebble::add_layer(layer::LAYER_LABEL, &wit_layer, true)?;
    }
    Ok(services_changed)
}

/// The `postgresql` service exists in the plan but Pebble is not running or restarting it
/// (inactive, or given up on: error). False when Pebble does not answer.
fn workload_never_started(ctx: &mut Ctx) -> HookResult<bool> {
    let _ = ctx;
    Ok(
        match pebble::services(&[layer::POSTGRESQL_SERVICE.to_owned()]) {
            Ok(list) => list.iter().any(|s| {
                s.name == layer::POSTGRESQL_SERVICE
                    && matches!(s.current, ServiceState::Inactive | ServiceState::Error)
            }),
            Err(_) => false,
        },
    )
}

/// `_is_workload_running`: Pebble answers and the `postgresql` service is active.
pub fn is_workload_running(ctx: &mut Ctx) -> HookResult<bool> {
    let _ = ctx;
    Ok(
        match pebble::services(&[layer::POSTGRESQL_SERVICE.to_owned()]) {
            Ok(list) => list
                .iter()
                .any(|s| s.name == layer::POSTGRESQL_SERVICE && s.current == ServiceState::Active),
            Err(_) => false,
        },
    )
}

// ---------------------------------------------------------------------- update_config

/// Why `update_config` could not run, for the caller to handle.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigProblem {
    /// Upstream's ValueError (including pydantic's ValidationError): config-changed and
    /// peer-changed set Blocked `Configuration Error. Please check the logs`.
    Invalid(String),
    /// Upstream's psycopg2 OperationalError: config-changed defers.
    Database(String),
}

/// A stable 128-bit FNV-1a digest as 32 hex characters.
///
/// Gap: upstream hashes with shake-128 over Python's `str()` of a dict (spec 13.4); mixed
/// Python/Rust units would see different hashes and each would think the config changed once.
pub fn stable_hash(text: &str) -> String {
    let mut h = Fnv128::new();
    h.write(text.as_bytes());
    h.hex()
}

/// FNV-1a over 128 bits, fed in pieces: the config hash streams its ~180 `name=value` lines
/// through it instead of building their text and a `String` per value first.
struct Fnv128 {
    hi: u64,
    lo: u64,
}

impl Fnv128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;

    fn new() -> Self {
        Fnv128 {
            hi: (Self::OFFSET >> 64) as u64,
            lo: Self::OFFSET as u64,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        // The FNV-128 prime is 2^88 + 0x13B, so h * prime = (h << 88) + h * 0x13B (mod 2^128).
        // Done on 64-bit halves: a u128 multiply is a `__multi3` call per byte in wasm.
        const SMALL: u64 = 0x13B;
        let (mut hi, mut lo) = (self.hi, self.lo);
        for b in bytes {
            lo ^= *b as u64;
            // lo * SMALL as a 128-bit value, from 32-bit halves (each product < 2^41).
            let (a, c) = (lo >> 32, lo & 0xffff_ffff);
            let (upper, lower) = (a * SMALL, c * SMALL);
            let (low, carried) = lower.overflowing_add(upper << 32);
            let carry = (upper >> 32) + carried as u64;
            hi = hi
                .wrapping_mul(SMALL)
                .wrapping_add(carry)
                .wrapping_add(lo << 24);
            lo = low;
        }
        (self.hi, self.lo) = (hi, lo);
    }

    fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.hi, self.lo)
    }
}

impl std::fmt::Write for Fnv128 {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// `generate_config_hash`: the whole typed config, as the digest of its `name=value` lines
/// (values in Python's `str()`), in name order.
pub fn config_hash(config: &CharmConfig) -> String {
    let mut h = Fnv128::new();
    for (name, value) in config.iter() {
        h.write(name.as_bytes());
        h.write(b"=");
        // Writing into the hasher cannot fail.
        let _ = value.write_python_str(&mut h);
        h.write(b"\n");
    }
    h.hex()
}

/// The user → databases map of pg_hba (spec 3.3.5).
///
/// Gap: relation users come from the client relations, which are not implemented, and the
/// "every non-system user that can CONNECT" query has no capability; so the map holds the
/// system users (`all`) whenever upstream would add them: before initialisation, on an SQL
/// error (which is also what a member that has not started gives), or while the access
/// groups are incomplete.
pub fn user_databases(ctx: &mut Ctx) -> HookResult<Vec<(String, String)>> {
    let system: Vec<(String, String)> = [
        names::SUPERUSER,
        names::REPLICATION_USER,
        names::REWIND_USER,
    ]
    .iter()
    .map(|u| ((*u).to_owned(), "all".to_owned()))
    .collect();
    if !ctx.is_cluster_initialised()? {
        return Ok(system);
    }
    let at = if ctx.unit_get("connectivity")?.as_deref() == Some("off") {
        PgTarget::PrimaryService
    } else {
        PgTarget::OwnUnit
    };
    let conn = operator_connection(ctx, at, None)?;
    match postgresql::list_access_groups(&conn) {
        Ok(groups) if ACCESS_GROUPS.iter().all(|g| groups.iter().any(|x| x == g)) => Ok(Vec::new()),
        Ok(_) => Ok(system),
        Err(e) => {
            ctx.info(&format!("cannot list access groups: {}", describe(&e)));
            Ok(system)
        }
    }
}

/// Available resources (spec 3.3.4 step 1): own pod → node allocatable, lowered by the
/// `postgresql` container's limits. None after a 403 (the trust status is set); other errors
/// fail the hook. Upstream GETs pod and node twice (once for CPU, once for memory) and the
/// pod a third time; one GET each gives the same values.
pub fn available_resources(
    ctx: &mut Ctx,
) -> HookResult<Result<Option<resources::Resources>, ConfigProblem>> {
    let forbidden =
        |ctx: &mut Ctx| -> HookResult<Result<Option<resources::Resources>, ConfigProblem>> {
            k8s::set_trust_blocked(ctx)?;
            Ok(Ok(None))
        };
    let pod = match kubernetes::get_pod(&ctx.pod()) {
        Ok(p) => p,
        Err(e) if e.kind == ErrorKind::Forbidden => return forbidden(ctx),
        Err(e) => return Err(e.into()),
    };
    let node_name = pod
        .node_name
        .clone()
        .ok_or_else(|| HookError(format!("pod {} has no node yet", pod.name)))?;
    let node = match kubernetes::get_node_allocatable(&node_name) {
        Ok(n) => n,
        Err(e) if e.kind == ErrorKind::Forbidden => return forbidden(ctx),
        Err(e) => return Err(e.into()),
    };
    let limits = pod
        .containers
        .iter()
        .find(|c| c.name == layer::POSTGRESQL_SERVICE)
        .map(|c| c.limits.clone())
        .unwrap_or_default();
    let limit = |name: &str| {
        limits
            .iter()
            .find(|kv| kv.key == name)
            .map(|kv| kv.value.clone())
    };
    // A millicore CPU limit is a ValueError upstream (spec 13.8); keep the quirk.
    match resources::available_resources(
        &node.cpu,
        &node.memory,
        limit("cpu").as_deref(),
        limit("memory").as_deref(),
    ) {
        Ok(r) => Ok(Ok(Some(r))),
        Err(e) => Ok(Err(ConfigProblem::Invalid(e.to_string()))),
    }
}

/// `update_config(is_creating_backup=False)` (spec 3.3.4), the core reconciler. `Ok(true)`
/// when done (or nothing to push yet), `Ok(false)` when Patroni could not be configured.
///
/// Divergences, all forced by the capability model:
/// - `patroni.yml` is pushed through Pebble (spec 13.2's equivalent) instead of written from
///   the charm container; when Pebble is unreachable the write is skipped, which upstream
///   would still do, and the next `update_config` writes it;
/// - the restart need is logged; the rolling restart (`restart` relation) is not implemented;
/// - no client relations: the TLS flag and CA are not pushed to `database` relations, and
///   LDAP, backups (stanza/restore keys are still read), async replication are off.
pub fn update_config(ctx: &mut Ctx) -> HookResult<Result<bool, ConfigProblem>> {
    let config = match ctx.config()? {
        Ok(c) => c,
        Err(e) => return Ok(Err(ConfigProblem::Invalid(e.to_string()))),
    };
    // 1. Resources.
    let res = match available_resources(ctx)? {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Ok(false)),
        Err(p) => return Ok(Err(p)),
    };
    // 2. Parameters.
    let key = (res.cpu_cores, res.memory_bytes);
    let built = match &ctx.parameters {
        Some((k, p)) if *k == key => Ok(p.clone()),
        _ => params::build_parameters(&config, res.cpu_cores, res.memory_bytes).map(Rc::new),
    };
    let parameters = match built {
        Ok(p) => {
            ctx.parameters = Some((key, p.clone()));
            p
        }
        // A generic Exception upstream: the hook fails.
        Err(e @ ParamsError::SharedBuffersTooLarge { .. }) => return Err(HookError(e.to_string())),
        Err(e) => return Ok(Err(ConfigProblem::Invalid(e.to_string()))),
    };
    // 3. Render and write patroni.yml.
    let snap = patroni::snapshot(ctx)?;
    let (sync_count, sync_strict) = patroni::synchronous_settings(ctx)?;
    let tls_enabled = is_tls_enabled(ctx)?;
    let stanza = match ctx.app_get("stanza")? {
        Some(s) => Some(s),
        None => ctx.unit_get("stanza")?,
    };
    let version = workload_version(ctx)?;
    let input = PatroniYmlInput {
        namespace: ctx.namespace().to_owned(),
        host: ctx.host(),
        endpoints: snap.endpoints.clone(),
        superuser_password: snap.superuser_password.clone(),
        replication_password: snap.replication_password.clone(),
        rewind_password: snap.rewind_password.clone(),
        patroni_password: snap.patroni_password.clone(),
        enable_tls: tls_enabled,
        connectivity: ctx.unit_get("connectivity")?.as_deref() != Some("off"),
        enable_ldap: false,
        ldap_parameters: String::new(),
        is_creating_backup: false,
        is_no_sync_member: false,
        stanza,
        disable_pgbackrest_archiving: false,
        restore: RestoreKeys {
            backup_id: ctx.app_get("restoring-backup")?,
            restore_to_time: ctx.app_get("restore-to-time")?,
            restore_timeline: ctx.app_get("restore-timeline")?,
            restore_stanza: ctx.app_get("restore-stanza")?,
        },
        parameters,
        user_databases: user_databases(ctx)?,
        pg_major_version: version
            .as_deref()
            .map(|v| patroni_yml::major_version(v).to_owned())
            .unwrap_or_else(|| DEFAULT_PG_VERSION.to_owned()),
        synchronous_node_count: sync_count,
        maximum_lag_on_failover: config.durability_maximum_lag_on_failover(),
        primary_cluster_endpoint: None,
        extra_replication_endpoints: Vec::new(),
    };
    let rendered = match &ctx.rendered_patroni_yml {
        Some((last, text)) if *last == input => text.clone(),
        _ => {
            let text: Rc<str> = patroni_yml::render(&input).into();
            ctx.rendered_patroni_yml = Some((input.clone(), text.clone()));
            text
        }
    };
    match pebble::push(
        PATRONI_YML,
        rendered.as_bytes(),
        Some(0o644),
        &postgres_owner(),
        true,
    ) {
        Ok(()) => {}
        Err(e) if matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout) => {
            ctx.info(&format!(
                "patroni.yml not written, Pebble is unreachable: {}",
                describe(&e)
            ));
        }
        Err(e) => {
            return Err(HookError(format!(
                "writing {PATRONI_YML}: {}",
                describe(&e)
            )));
        }
    }
    let tls_flag = if tls_enabled { "enabled" } else { "" };

    // 4. Workload not running: record the TLS flag and stop here.
    if !is_workload_running(ctx)? {
        ctx.unit_set("tls", tls_flag)?;
        return Ok(Ok(true));
    }

    // 5. Member not started: reload and stop.
    if !patroni::member_started(ctx)? {
        if let Err(e) = pebble::send_signal("SIGHUP", &[layer::POSTGRESQL_SERVICE.to_owned()]) {
            ctx.info(&format!("SIGHUP failed: {}", describe(&e)));
        }
        ctx.unit_set("tls", tls_flag)?;
        return Ok(Ok(false));
    }

    // 6. Patroni's dynamic configuration.
    let workers = match params::worker_parameters(&config, res.cpu_cores) {
        Ok(w) => w,
        Err(e) => return Ok(Err(ConfigProblem::Invalid(e.to_string()))),
    };
    let update = ApiConfigUpdate::new(
        &config,
        res.cpu_cores,
        &workers,
        sync_count,
        sync_strict,
        None,
    );
    if !patroni::patch_config_with_backoff(ctx, &patroni::api_config_patch(&update))? {
        return Ok(Ok(false));
    }

    // 7. Restart need.
    let new_config_hash = match &ctx.config_hash {
        Some(h) => h.clone(),
        None => {
            let h: Rc<str> = config_hash(&config).into();
            ctx.config_hash = Some(h.clone());
            h
        }
    };
    let config_changed = ctx.unit_get("config_hash")?.as_deref() != Some(&*new_config_hash);
    let conn = operator_connection(ctx, PgTarget::PrimaryService, None)?;
    let ssl_on_primary = match postgresql::ssl_enabled(&conn) {
        Ok(b) => b,
        Err(e) => return Ok(Err(ConfigProblem::Database(describe(&e)))),
    };
    let tls_changed = tls_enabled != ssl_on_primary;
    if let Err(e) = pebble::send_signal("SIGHUP", &[layer::POSTGRESQL_SERVICE.to_owned()]) {
        ctx.info(&format!("SIGHUP failed: {}", describe(&e)));
    }
    ctx.unit_set("tls", tls_flag)?;
    let mut restart = tls_changed;
    if config_changed && !tls_changed {
        let own = operator_connection(ctx, PgTarget::OwnUnit, None)?;
        // Up to 5 tries, 3 s apart, until a setting is pending a restart.
        for attempt in 0..5 {
            if postgresql::pending_restart(&own).unwrap_or(false) {
                restart = true;
                break;
            }
            if attempt < 4 {
                crate::bindings::charm::host::clock::sleep_ms(3_000);
            }
        }
    }
    if tls_changed {
        patroni::member_started(ctx)?;
    }
    if restart {
        ctx.log(
            crate::bindings::charm::host::types::LogLevel::Warning,
            "PostgreSQL needs a restart; the rolling restart (restart relation) is not implemented",
        );
    }

    // 8. The metrics exporter follows the monitoring password.
    restart_metrics_service(ctx)?;

    // 10. Hashes.
    let user_hash = stable_hash(
        &input
            .user_databases
            .iter()
            .map(|(u, d)| format!("{u}:{d}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    ctx.unit_set("user_hash", &user_hash)?;
    ctx.unit_set("config_hash", &new_config_hash)?;
    if ctx.is_leader()? {
        ctx.app_set("user_hash", &user_hash)?;
    }
    Ok(Ok(true))
}

/// `_restart_metrics_service` (spec 3.3.4 step 8): when the plan's exporter DSN does not carry
/// the current monitoring password, add a `metrics_server` layer and restart the exporter.
pub fn restart_metrics_service(ctx: &mut Ctx) -> HookResult<()> {
    let plan = pebble::get_plan()?;
    let Some((_, current)) = plan
        .services
        .iter()
        .find(|(n, _)| n == layer::METRICS_SERVICE)
    else {
        return Ok(());
    };
    let dsn = current
        .environment
        .iter()
        .find(|kv| kv.key == "DATA_SOURCE_NAME")
        .map(|kv| kv.value.clone())
        .unwrap_or_default();
    let password = get_secret(ctx, SecretScope::App, "monitoring-password")?;
    if !layer::metrics_password_changed(&dsn, password.as_deref()) {
        return Ok(());
    }
    let l = Layer {
        summary: None,
        description: None,
        services: vec![(
            layer::METRICS_SERVICE.to_owned(),
            layer::metrics_service(password.as_deref()),
        )],
        checks: Vec::new(),
    };
    pebble::add_layer(layer::METRICS_SERVICE, &to_wit_layer(&l), true)?;
    pebble::restart(&[layer::METRICS_SERVICE.to_owned()])?;
    Ok(())
}

// ---------------------------------------------------------------------- cluster

/// `_initialize_cluster` (spec 3.3.8), leader only. `None` when the cluster is initialised
/// (the caller carries on); otherwise the outcome the handler returns with.
///
/// Deliberate deviation from upstream: when the pod label patch or the Service creation
/// fails, upstream sets Blocked and returns False without deferring; nothing retries it
/// (update-status skips Blocked units), so a single transient Kubernetes error leaves the
/// cluster uninitialised forever. Here the Blocked status is kept and the event is
/// **deferred**, so the initialisation is retried at the next dispatch.
pub fn initialize_cluster(ctx: &mut Ctx) -> HookResult<Option<Outcome>> {
    let pod = ctx.pod();
    if !k8s::patch_pod_labels_or_block(ctx, &pod)? {
        return Ok(Some(Outcome::Defer));
    }
    if ctx.upgrade_idle()? && !k8s::create_services_or_block(ctx)? {
        return Ok(Some(Outcome::Defer));
    }
    if !patroni::primary_endpoint_ready(ctx)? {
        ctx.set_status(StatusKind::Waiting, status::AWAITING_PRIMARY_ENDPOINT)?;
        return Ok(Some(Outcome::Defer));
    }
    // SQL on the primary as operator; any error is uncaught upstream: the hook fails.
    let conn = operator_connection(ctx, PgTarget::PrimaryService, None)?;
    let users = postgresql::list_users(&conn)?;
    if !users.iter().any(|u| u == names::BACKUP_USER) {
        postgresql::create_user(
            &conn,
            &UserSpec {
                name: names::BACKUP_USER.to_owned(),
                // A random password that is never stored (spec 2.3.1).
                password: None,
                superuser: true,
                roles: Vec::new(),
                can_create_database: false,
            },
        )?;
    }
    if !users.iter().any(|u| u == names::MONITORING_USER) {
        let password = get_secret(ctx, SecretScope::App, "monitoring-password")?;
        postgresql::create_user(
            &conn,
            &UserSpec {
                name: names::MONITORING_USER.to_owned(),
                password,
                superuser: false,
                roles: vec!["pg_monitor".to_owned()],
                can_create_database: false,
            },
        )?;
    }
    let system: Vec<String> = SYSTEM_USERS.iter().map(|s| (*s).to_owned()).collect();
    postgresql::set_up_database(&conn, &system)?;
    let groups = postgresql::list_access_groups(&conn)?;
    let missing: Vec<String> = ACCESS_GROUPS
        .iter()
        .filter(|g| !groups.iter().any(|x| x == *g))
        .map(|g| (*g).to_owned())
        .collect();
    let exact = groups.len() == ACCESS_GROUPS.len() && missing.is_empty();
    if !exact {
        postgresql::create_access_groups(&conn, &missing, &system)?;
    }
    ctx.app_set("cluster_initialised", "True")?;
    Ok(None)
}

/// `_add_members` (spec 2.3.5): the leader labels the pods of units that are not Patroni
/// members yet, one readiness check per member, then pushes the synchronous settings.
pub fn add_members(ctx: &mut Ctx) -> HookResult<Outcome> {
    if !ctx.is_leader()? || !ctx.is_cluster_initialised()? {
        return Ok(Outcome::Done);
    }
    let members = match patroni::cluster_members(ctx)? {
        Ok(m) => m,
        Err(e) => {
            ctx.info(&format!(
                "Deferring reconfigure: failed to obtain cluster members from Patroni: {}",
                describe(&e)
            ));
            return Ok(Outcome::Defer);
        }
    };
    let hosts = ctx.hosts()?;
    // Deliberate deviation from upstream: a unit that is already a Patroni member but whose
    // host is not in `endpoints` is listed again. This happens when an earlier dispatch
    // labelled its pod (a Kubernetes write, effective at once) and then failed, so Juju
    // dropped that dispatch's `endpoints` write; upstream then sees members == hosts and
    // never lists it.
    let mut list = ctx.endpoints()?;
    let unlisted: Vec<String> = hosts
        .iter()
        .filter(|h| members.contains(h))
        .map(|pod| names::host_from_pod(ctx.app(), pod))
        .filter(|host| !endpoints::contains(&list, host))
        .collect();
    if !unlisted.is_empty() {
        for host in &unlisted {
            endpoints::add(&mut list, host);
        }
        ctx.set_endpoints(&list)?;
    }
    let missing: Vec<String> = hosts
        .iter()
        .filter(|h| !members.contains(h))
        .cloned()
        .collect();
    // Upstream compares the sets; a member without a unit (being removed) also differs.
    let member_set: std::collections::BTreeSet<&String> = members.iter().collect();
    if missing.is_empty() && member_set.len() == hosts.len() {
        // Deliberate deviation from upstream: a Blocked `failed to patch pod with error …`
        // left by an earlier loop is cleared once every unit is a member (the pod was
        // labelled later, e.g. by its own `_fix_pod`). Upstream never replaces it: this
        // branch returns, the peer handler returns on Blocked and update-status skips it.
        let current = ctx.status()?;
        if current.kind == StatusKind::Blocked
            && current
                .message
                .starts_with(&status::failed_to_patch_pod(""))
        {
            status::set_active_status(ctx)?;
        }
        return Ok(Outcome::Done);
    }
    ctx.set_status(StatusKind::Maintenance, status::RECONFIGURING_CLUSTER)?;
    for pod in &missing {
        if !patroni::are_all_members_ready(ctx)? {
            ctx.info("Deferring reconfigure: another member doing sync right now");
            return Ok(Outcome::Defer);
        }
        // Upstream's add_cluster_member appends without checking (spec 2.3.2), so a member
        // already listed but not yet in Patroni's /cluster appears twice. Fixed on purpose
        // (spec 13.8 leaves the choice): `endpoints` never holds a duplicate.
        let host = names::host_from_pod(ctx.app(), pod);
        let mut list = ctx.endpoints()?;
        if !endpoints::contains(&list, &host) {
            endpoints::add(&mut list, &host);
            ctx.set_endpoints(&list)?;
        }
        // A failed patch sets Blocked and the loop goes on (spec 4, leader-elected 5).
        k8s::patch_pod_labels_or_block(ctx, pod)?;
    }
    match patroni::update_synchronous_node_count(ctx)? {
        Ok(()) => Ok(Outcome::Done),
        Err(e) => {
            ctx.info(&format!(
                "Deferring reconfigure: synchronous settings not updated: {}",
                describe(&e)
            ));
            Ok(Outcome::Defer)
        }
    }
}

/// Remove endpoints whose pods are gone (`_get_endpoints_to_remove`, leader only).
pub fn remove_departed_endpoints(ctx: &mut Ctx) -> HookResult<()> {
    let stored = ctx.endpoints()?;
    let hosts: Vec<String> = ctx.hosts()?.into_iter().collect();
    let to_remove = endpoints::endpoints_to_remove(ctx.app(), &stored, &hosts);
    if to_remove.is_empty() {
        return Ok(());
    }
    let mut list = stored;
    endpoints::remove(&mut list, &to_remove).map_err(|e| HookError(e.to_string()))?;
    ctx.set_endpoints(&list)
}

// ---------------------------------------------------------------------- extensions

/// `enable_disable_extensions(database=None)` (spec 3.3.9).
///
/// The capability reports `DependentObjectsStillExist` as a `conflict` error.
pub fn enable_disable_extensions(ctx: &mut Ctx) -> HookResult<()> {
    if patroni::get_primary(ctx)?.is_none() {
        return Ok(());
    }
    let config = ctx.config_or_fail()?;
    let mut original = ctx.status()?;
    let wanted = match extensions::extensions_from_config(&config) {
        Ok(e) => e,
        Err(missing) => {
            ctx.info(&missing.to_string());
            ctx.set_status(StatusKind::Blocked, status::EXTENSIONS_DEPENDENCY_MESSAGE)?;
            return Ok(());
        }
    };
    if original.kind == StatusKind::Blocked
        && original.message == status::EXTENSIONS_DEPENDENCY_MESSAGE
    {
        ctx.set_status(StatusKind::Active, "")?;
        original = ctx.status()?;
    }
    let is_unknown = original.kind == StatusKind::Unknown;
    if !is_unknown {
        ctx.set_status(StatusKind::Waiting, status::UPDATING_EXTENSIONS)?;
    }
    let toggles: Vec<ExtensionToggle> = extensions::apply_order(&wanted)
        .into_iter()
        .map(|(name, enable)| ExtensionToggle {
            // The capability quotes identifiers itself.
            name: name.trim_matches('"').to_owned(),
            enable,
        })
        .collect();
    let conn = operator_connection(ctx, PgTarget::PrimaryService, None)?;
    let mut dependent_objects = false;
    match postgresql::list_databases(&conn) {
        Ok(databases) => {
            for db in databases.iter().filter(|d| !d.starts_with("template")) {
                let conn = operator_connection(ctx, PgTarget::PrimaryService, Some(db))?;
                match postgresql::set_extensions(&conn, db, &toggles) {
                    Ok(()) => {}
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        ctx.info(&format!("cannot disable extensions in {db}: {}", e.message));
                        dependent_objects = true;
                    }
                    Err(e) => ctx.info(&format!("extensions in {db}: {}", describe(&e))),
                }
            }
        }
        Err(e) => ctx.info(&format!("cannot list databases: {}", describe(&e))),
    }
    if dependent_objects {
        ctx.set_status(StatusKind::Blocked, status::EXTENSION_OBJECT_MESSAGE)?;
    } else if original.message == status::EXTENSION_OBJECT_MESSAGE {
        ctx.set_status(StatusKind::Active, "")?;
    } else if !is_unknown {
        ctx.set_status(original.kind, &original.message)?;
    }
    Ok(())
}

/// Whether `e` is from an unreachable backend (a ConnectionError upstream).
pub fn is_connection_error(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Unreachable | ErrorKind::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Value;

    #[test]
    fn stable_hash_is_fnv1a_128() {
        let reference = |text: &str| {
            const PRIME: u128 = 0x0000000001000000000000000000013B;
            let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
            for b in text.as_bytes() {
                h ^= *b as u128;
                h = h.wrapping_mul(PRIME);
            }
            format!("{h:032x}")
        };
        // The published FNV-1a 128 vector for "a", then inputs that carry across the halves.
        assert_eq!(stable_hash("a"), "d228cb696f1a8caf78912b704e4a8964");
        for text in [
            "",
            "a",
            "max_connections=100\n",
            "\u{ff}\u{ff}\u{ff}",
            &"z".repeat(3000),
        ] {
            assert_eq!(stable_hash(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn stable_hash_is_32_hex_and_input_sensitive() {
        let a = stable_hash("max_connections=100\n");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, stable_hash("max_connections=100\n"));
        assert_ne!(a, stable_hash("max_connections=101\n"));
    }

    #[test]
    fn config_hash_follows_the_config() {
        let defaults = CharmConfig::defaults();
        let changed = CharmConfig::from_pairs(&[(
            "experimental_max_connections".to_owned(),
            Value::Int(250),
        )])
        .unwrap();
        assert_eq!(
            config_hash(&defaults),
            config_hash(&CharmConfig::defaults())
        );
        assert_ne!(config_hash(&defaults), config_hash(&changed));
    }

    #[test]
    fn config_hash_is_the_digest_of_the_config_lines() {
        let text_of = |config: &CharmConfig| {
            config
                .iter()
                .map(|(name, value)| format!("{name}={}\n", value.python_str()))
                .collect::<String>()
        };
        let changed = CharmConfig::from_pairs(&[
            ("experimental_max_connections".to_owned(), Value::Int(-250)),
            ("profile".to_owned(), Value::Str("testing".to_owned())),
        ])
        .unwrap();
        for config in [CharmConfig::defaults(), changed] {
            // Every kind of value is in the text: booleans, integers, floats, strings.
            let text = text_of(&config);
            assert!(text.contains("=True\n") && text.contains("optimizer_cpu_tuple_cost=0.01\n"));
            assert!(text.contains("=-250\n") || text.contains("=1048576\n"));
            assert!(text.contains("=auto\n"));
            assert_eq!(config_hash(&config), stable_hash(&text));
        }
    }
}
