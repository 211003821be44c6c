//! One handler per hook: the charm's observers for that event (spec 2, 3, 6). The plugin
//! crates export these through [`crate::hook_plugin!`]; their doc comments list where the
//! code is followed instead of the flowcharts.

use super::k8s::{self, Next};
use super::patroni;
use super::reconcile::{self, ConfigProblem, TlsPush};
use super::secrets::{self, PASSWORD_KEYS};
use super::status::{self, StatusKind};
use super::upgrade;
use super::{Ctx, HookError, HookResult, describe};
use crate::bindings::charm::host::juju;
use crate::bindings::charm::host::kubernetes::{self, ObjectKind, OwnerReference};
use crate::bindings::charm::host::pebble::{self, ExecRequest, ServiceState};
use crate::bindings::charm::host::types::{Kv, Outcome};
use crate::endpoints;
use crate::names::{self, SecretScope};

/// `_on_leader_elected` (spec 2.2).
pub fn leader_elected(ctx: &mut Ctx) -> HookResult<Outcome> {
    // 1. Passwords.
    for key in PASSWORD_KEYS {
        if secrets::get_secret(ctx, SecretScope::App, key)?.is_none() {
            let password = secrets::new_password();
            secrets::set_secret(ctx, SecretScope::App, key, &password)?;
        }
    }
    // 2. Own membership.
    let host = ctx.host();
    let mut list = ctx.endpoints()?;
    if !endpoints::contains(&list, &host) {
        endpoints::add(&mut list, &host);
        ctx.set_endpoints(&list)?;
    }
    // 3. Stale DCS objects of an earlier cluster.
    if !ctx.is_cluster_initialised()? {
        k8s::cleanup_old_cluster_resources(ctx)?;
    }
    // 4. The leader annotation.
    if k8s::fix_leader_annotation(ctx)? == Next::Return {
        return Ok(Outcome::Done);
    }
    // 5. Services, unless an upgrade runs.
    if ctx.upgrade_idle()? && !k8s::create_services_or_block(ctx)? {
        return Ok(Outcome::Done);
    }
    // 6. Departed units.
    reconcile::remove_departed_endpoints(ctx)?;
    // 7. New members.
    reconcile::add_members(ctx)
}

/// `_on_postgresql_pebble_ready` (spec 3.2).
pub fn postgresql_pebble_ready(ctx: &mut Ctx) -> HookResult<Outcome> {
    // 1. Labels lost with a recreated pod.
    let host = ctx.host();
    if endpoints::contains(&ctx.endpoints()?, &host) {
        reconcile::fix_pod(ctx)?;
    }
    // 2. Pebble must answer.
    if let Err(e) = pebble::get_system_info() {
        ctx.info(&format!("Pebble is not ready yet: {}", describe(&e)));
        return Ok(Outcome::Defer);
    }
    // 3. Data directory. 4. Workload version.
    reconcile::create_pgdata(ctx)?;
    if let Some(version) = reconcile::workload_version(ctx)? {
        juju::set_workload_version(&version)?;
    }
    // 5. Replicas wait for the leader to initialise the cluster.
    if !ctx.is_leader()? && !ctx.is_cluster_initialised()? {
        return Ok(Outcome::Defer);
    }
    // 6. TLS files (and update_config).
    if let TlsPush::Failed(why) = reconcile::push_tls_files(ctx)? {
        ctx.info(&format!("failed to push TLS files: {why}"));
        return Ok(Outcome::Defer);
    }
    // 7. Layer and replan: starts Patroni.
    reconcile::update_pebble_layers(ctx, true)?;
    // 8. Member started?
    if !patroni::member_started(ctx)? {
        ctx.set_status(StatusKind::Waiting, status::AWAITING_CLUSTER_START)?;
        return Ok(Outcome::Defer);
    }
    // 9. The leader initialises the cluster.
    if ctx.is_leader()?
        && let Some(outcome) = reconcile::initialize_cluster(ctx)?
    {
        return Ok(outcome);
    }
    // 10. Configuration. A ValueError here is uncaught upstream.
    match reconcile::update_config(ctx)? {
        Ok(_) => {}
        Err(ConfigProblem::Invalid(e)) | Err(ConfigProblem::Database(e)) => {
            return Err(HookError(e));
        }
    }
    // 11. Extensions, on every unit. 13. Status.
    reconcile::enable_disable_extensions(ctx)?;
    status::set_active_status(ctx)?;
    Ok(Outcome::Done)
}

/// `_on_peer_relation_changed` (spec 6.2); also the charm's `secret-changed` observer.
pub fn peer_relation_changed(ctx: &mut Ctx) -> HookResult<Outcome> {
    if !ctx.is_cluster_initialised()? {
        if !ctx.is_leader()? {
            return Ok(Outcome::Done);
        }
        return Ok(match reconcile::initialize_cluster(ctx)? {
            // Initialised: run this event again, now as initialised.
            None => Outcome::Defer,
            Some(outcome) => outcome,
        });
    }
    if ctx.is_leader()? && matches!(reconcile::add_members(ctx)?, Outcome::Defer) {
        return Ok(Outcome::Defer);
    }
    let host = ctx.host();
    if !endpoints::contains(&ctx.endpoints()?, &host) || pebble::get_system_info().is_err() {
        return Ok(Outcome::Done);
    }
    match reconcile::update_config(ctx)? {
        Ok(_) => {}
        Err(ConfigProblem::Invalid(e)) => {
            ctx.info(&format!("Invalid configuration: {e}"));
            ctx.set_status(StatusKind::Blocked, status::CONFIGURATION_ERROR)?;
            return Ok(Outcome::Done);
        }
        Err(ConfigProblem::Database(e)) => return Err(HookError(e)),
    }
    if ctx.is_blocked()? {
        return Ok(Outcome::Done);
    }
    k8s::check_headless_service(ctx)?;
    if !patroni::member_started(ctx)? {
        ctx.set_status(StatusKind::Waiting, status::AWAITING_MEMBER_START)?;
        return Ok(Outcome::Defer);
    }
    // handle_read_only_mode without async replication.
    if !ctx.is_blocked()? {
        status::set_active_status(ctx)?;
    }
    Ok(Outcome::Done)
}

/// `_on_peer_relation_departed` (spec 6.3).
pub fn peer_relation_departed(ctx: &mut Ctx) -> HookResult<Outcome> {
    let departing = ctx
        .event
        .relation
        .as_ref()
        .and_then(|r| r.departing_unit.clone());
    if !ctx.is_leader()? || departing.as_deref() == Some(ctx.unit()) {
        return Ok(Outcome::Done);
    }
    if !ctx.is_cluster_initialised()? {
        return Ok(Outcome::Defer);
    }
    if let Err(e) = patroni::update_synchronous_node_count(ctx)? {
        ctx.info(&format!(
            "Deferring on_peer_relation_departed: synchronous settings not updated: {}",
            describe(&e)
        ));
        return Ok(Outcome::Defer);
    }
    reconcile::remove_departed_endpoints(ctx)?;
    Ok(Outcome::Done)
}

/// `_on_update_status` (spec 6.6).
pub fn update_status(ctx: &mut Ctx) -> HookResult<Outcome> {
    if !ctx.upgrade_idle()? {
        return Ok(Outcome::Done);
    }
    if pebble::get_system_info().is_err() {
        return Ok(Outcome::Done);
    }
    let current = ctx.status()?;
    match current.kind {
        StatusKind::Blocked if current.message == status::EXTENSION_OBJECT_MESSAGE => {
            reconcile::enable_disable_extensions(ctx)?;
        }
        // Deliberate deviation from upstream: a Blocked `failed to patch pod with error …`
        // is not skipped. Upstream leaves it to the next handler that ends in
        // `_set_active_status`; when that one cannot read the cluster (only logged) nothing
        // ever replaces it. Carrying on sets Active only if this unit is the Patroni leader or
        // its member has started; an unlabelled member stays Blocked.
        StatusKind::Blocked
            if current
                .message
                .starts_with(&status::failed_to_patch_pod("")) => {}
        StatusKind::Blocked | StatusKind::Waiting => return Ok(Outcome::Done),
        _ => {}
    }
    k8s::check_headless_service(ctx)?;
    let services = pebble::services(&[crate::layer::POSTGRESQL_SERVICE.to_owned()])?;
    let Some(service) = services.first() else {
        return Ok(Outcome::Done);
    };
    if ctx.unit_get("stopped")?.is_none() && service.current != ServiceState::Active {
        if let Err(e) = pebble::restart(&[crate::layer::POSTGRESQL_SERVICE.to_owned()]) {
            ctx.info(&format!("Failed to restart patroni: {}", describe(&e)));
        }
        if !patroni::member_started(ctx)? {
            ctx.set_status(StatusKind::Maintenance, status::SERVICE_INACTIVE_RESTARTING)?;
            return Ok(Outcome::Done);
        }
    }
    status::set_active_status(ctx)?;
    Ok(Outcome::Done)
}

/// The charm's `_on_upgrade_charm` (spec 6.7): `_fix_pod`, since the recreated pod lost its
/// labels.
pub fn upgrade_charm(ctx: &mut Ctx) -> HookResult<Outcome> {
    reconcile::fix_pod(ctx)?;
    Ok(Outcome::Done)
}

/// `_on_stop` (spec 6.5): hand the Patroni objects to pod 0's owner (the StatefulSet) so that
/// Kubernetes garbage-collects them with the application.
pub fn stop(ctx: &mut Ctx) -> HookResult<Outcome> {
    if ctx.planned_units()? == 0
        && let Some(id) = ctx.peer_relation()?
    {
        let bag = juju::relation_get(id, ctx.unit(), false)?;
        for kv in bag {
            ctx.unit_set(&kv.key, "")?;
        }
    }
    let owners = match k8s::pod0_owner_references(ctx) {
        Ok(o) => o,
        Err(e) => {
            ctx.info(&format!("failed to get pod 0: {}", describe(&e)));
            return Ok(Outcome::Done);
        }
    };
    let app = ctx.app().to_owned();
    let selectors = [
        vec![kv("app.juju.is/created-by", &app)],
        vec![
            kv("application", "patroni"),
            kv("cluster-name", &names::cluster_name(&app)),
        ],
    ];
    let keep = [
        app.clone(),
        format!("{app}-endpoints"),
        names::primary_service_name(&app),
        names::replicas_service_name(&app),
    ];
    let mut objects: Vec<(ObjectKind, String, bool)> = Vec::new();
    for selector in &selectors {
        match kubernetes::list_endpoints(selector) {
            Ok(list) => objects.extend(list.into_iter().map(|e| {
                (
                    ObjectKind::Endpoints,
                    e.name,
                    same_owners(&e.owner_references, &owners),
                )
            })),
            Err(e) => ctx.info(&format!("failed to list endpoints: {}", describe(&e))),
        }
        match kubernetes::list_services(selector) {
            Ok(list) => objects.extend(list.into_iter().map(|s| {
                (
                    ObjectKind::Service,
                    s.name,
                    same_owners(&s.owner_references, &owners),
                )
            })),
            Err(e) => ctx.info(&format!("failed to list services: {}", describe(&e))),
        }
    }
    let mut done: Vec<(bool, String)> = Vec::new();
    for (kind, name, owned) in objects {
        let is_service = kind == ObjectKind::Service;
        if owned
            || (is_service && keep.contains(&name))
            || done.contains(&(is_service, name.clone()))
        {
            continue;
        }
        if let Err(e) = kubernetes::set_owner_references(kind, &name, &owners) {
            ctx.info(&format!("failed to patch {name}: {}", describe(&e)));
        }
        done.push((is_service, name));
    }
    Ok(Outcome::Done)
}

fn same_owners(a: &[OwnerReference], b: &[OwnerReference]) -> bool {
    let key = |o: &OwnerReference| {
        (
            o.api_version.clone(),
            o.kind.clone(),
            o.name.clone(),
            o.uid.clone(),
            o.controller,
            o.block_owner_deletion,
        )
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == key(y))
}

fn kv(k: &str, v: &str) -> Kv {
    Kv {
        key: k.to_owned(),
        value: v.to_owned(),
    }
}

/// The locale options `locale -a` must list (spec 6.1).
const LOCALE_OPTIONS: [&str; 3] = [
    "response_lc_monetary",
    "response_lc_numeric",
    "response_lc_time",
];

/// `_on_config_changed` (spec 6.1).
pub fn config_changed(ctx: &mut Ctx) -> HookResult<Outcome> {
    if !ctx.is_cluster_initialised()? {
        return Ok(Outcome::Defer);
    }
    if !ctx.upgrade_idle()? {
        return Ok(Outcome::Defer);
    }
    let config = match ctx.config()? {
        Ok(c) => c,
        Err(e) => return config_error(ctx, &e.to_string()),
    };
    // Locales available in the workload.
    let out = pebble::exec(&ExecRequest {
        command: vec!["locale".to_owned(), "-a".to_owned()],
        user: None,
        group: None,
        environment: Vec::new(),
        working_dir: None,
        timeout_ms: None,
        stdin: None,
    })?;
    let locales = String::from_utf8_lossy(&out.stdout).into_owned();
    for option in LOCALE_OPTIONS {
        if let Some(crate::config::Value::Str(v)) = config.get(option)
            && !locales.lines().any(|l| l.trim() == v)
        {
            return config_error(ctx, &format!("{option}: locale {v:?} is not available"));
        }
    }
    match reconcile::update_config(ctx)? {
        Ok(_) => {}
        Err(ConfigProblem::Invalid(e)) => return config_error(ctx, &e),
        Err(ConfigProblem::Database(e)) => {
            ctx.info(&format!("Deferring on_config_changed: {e}"));
            return Ok(Outcome::Defer);
        }
    }
    let current = ctx.status()?;
    if current.kind == StatusKind::Blocked && current.message.contains("Configuration Error") {
        status::set_active_status(ctx)?;
    }
    if ctx.is_leader()? {
        reconcile::enable_disable_extensions(ctx)?;
    }
    Ok(Outcome::Done)
}

fn config_error(ctx: &mut Ctx, why: &str) -> HookResult<Outcome> {
    ctx.info(&format!("Invalid configuration: {why}"));
    ctx.set_status(StatusKind::Blocked, status::CONFIGURATION_ERROR)?;
    Ok(Outcome::Done)
}

/// DataUpgrade `_on_upgrade_created` (spec 6.7): this unit's upgrade `state` becomes `idle`.
/// Without the relation (an event for it cannot come without it) it defers, as the library.
pub fn upgrade_relation_created(ctx: &mut Ctx) -> HookResult<Outcome> {
    let id = match ctx.event.relation.as_ref().map(|r| r.id) {
        Some(id) => id,
        None => match juju::relation_ids(upgrade::UPGRADE_RELATION)?.first() {
            Some(id) => *id,
            None => return Ok(Outcome::Defer),
        },
    };
    upgrade::set_own_state_idle(ctx, id)?;
    Ok(Outcome::Done)
}
