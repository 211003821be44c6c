//! Kubernetes helpers (spec 2.2 steps 3–5, 2.3.3, 2.3.4, 6.5).
//!
//! Upstream catches lightkube's `ApiError`; every error of the `kubernetes` capability stands
//! for one here, since the host reports API answers and transport failures alike as errors.

use super::status::{self, StatusKind};
use super::{Ctx, HookError, HookResult, describe};
use crate::bindings::charm::host::kubernetes::{self, OwnerReference, Service, ServicePort};
use crate::bindings::charm::host::types::{Error, ErrorKind, Kv};
use crate::names::{self, ServiceRole};

fn kvs(pairs: &[(String, String)]) -> Vec<Kv> {
    pairs
        .iter()
        .map(|(k, v)| Kv {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// Blocked ``Insufficient permissions, try: `juju trust <app> --scope=cluster` ``.
pub fn set_trust_blocked(ctx: &mut Ctx) -> HookResult<()> {
    let message = status::trust_message(ctx.app());
    ctx.set_status(StatusKind::Blocked, &message)
}

/// The owner references of pod `<app>-0` (the StatefulSet), which the charm's objects copy so
/// that Kubernetes garbage-collects them with the application.
pub fn pod0_owner_references(ctx: &Ctx) -> Result<Vec<OwnerReference>, Error> {
    let pod = kubernetes::get_pod(&format!("{}-0", ctx.app()))?;
    Ok(pod.owner_references)
}

/// `_create_services` (spec 2.3.3): server-side apply of `<app>-primary` and `<app>-replicas`
/// with pod 0's owner references. The error is the caller's to turn into Blocked.
pub fn create_services(ctx: &Ctx) -> Result<(), Error> {
    let owners = pod0_owner_references(ctx)?;
    for role in [ServiceRole::Primary, ServiceRole::Replica] {
        let def = names::patroni_service(ctx.app(), ctx.namespace(), role);
        let service = Service {
            name: def.name,
            labels: kvs(&def.labels),
            selector: kvs(&def.selector),
            ports: def
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.to_owned(),
                    port: p.port,
                    target_port: p.target_port,
                    protocol: p.protocol.to_owned(),
                })
                .collect(),
            service_type: def.service_type.to_owned(),
            owner_references: owners.clone(),
        };
        kubernetes::apply_service(&service)?;
    }
    Ok(())
}

/// `_create_services` with upstream's handling: an error sets Blocked
/// `failed to create k8s services`. Returns whether the services were created.
pub fn create_services_or_block(ctx: &mut Ctx) -> HookResult<bool> {
    match create_services(ctx) {
        Ok(()) => Ok(true),
        Err(e) => {
            ctx.info(&format!("failed to create k8s services: {}", describe(&e)));
            ctx.set_status(StatusKind::Blocked, status::FAILED_TO_CREATE_SERVICES)?;
            Ok(false)
        }
    }
}

/// `_patch_pod_labels(member)` (spec 2.3.4): label the pod as a member of the Patroni cluster.
pub fn patch_pod_labels(ctx: &Ctx, pod: &str) -> Result<(), Error> {
    kubernetes::patch_pod_labels(pod, &kvs(&names::member_pod_labels(ctx.app())))
}

/// Pod label patch with upstream's handling: an error sets Blocked
/// `failed to patch pod with error <e>`. Returns whether the pod was labelled.
pub fn patch_pod_labels_or_block(ctx: &mut Ctx, pod: &str) -> HookResult<bool> {
    match patch_pod_labels(ctx, pod) {
        Ok(()) => Ok(true),
        Err(e) => {
            ctx.set_status(
                StatusKind::Blocked,
                &status::failed_to_patch_pod(&e.message),
            )?;
            Ok(false)
        }
    }
}

/// `_cleanup_old_cluster_resources` (spec 2.2 step 3): delete the stale Patroni Services and
/// Endpoints `<scope>`, `-config`, `-sync`. 404 is ignored; 403 sets the trust status and
/// stops the cleanup (the handler carries on); anything else fails the hook.
pub fn cleanup_old_cluster_resources(ctx: &mut Ctx) -> HookResult<()> {
    let scope = names::cluster_name(ctx.app());
    let objects = [
        (true, scope.clone()),
        (true, format!("{scope}-config")),
        (true, format!("{scope}-sync")),
        (false, scope.clone()),
        (false, format!("{scope}-config")),
        (false, format!("{scope}-sync")),
    ];
    for (is_service, name) in objects {
        let r = if is_service {
            kubernetes::delete_service(&name)
        } else {
            kubernetes::delete_endpoints(&name)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) if e.kind == ErrorKind::Forbidden => {
                set_trust_blocked(ctx)?;
                return Ok(());
            }
            Err(e) => {
                return Err(HookError(format!(
                    "failed to delete {name}: {}",
                    describe(&e)
                )));
            }
        }
    }
    Ok(())
}

/// What the caller does after [`fix_leader_annotation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// A 403: the trust status is set and the handler returns.
    Return,
}

/// `fix_leader_annotation` (spec 2.2 step 4): when Endpoints `<scope>` exists without a
/// `leader` annotation (left behind by a scale to zero), annotate it with this (leader)
/// unit's pod and forget `cluster_initialised`.
pub fn fix_leader_annotation(ctx: &mut Ctx) -> HookResult<Next> {
    let scope = names::cluster_name(ctx.app());
    let handle = |ctx: &mut Ctx, e: Error| -> HookResult<Next> {
        match e.kind {
            ErrorKind::NotFound => Ok(Next::Continue),
            ErrorKind::Forbidden => {
                set_trust_blocked(ctx)?;
                Ok(Next::Return)
            }
            _ => Err(HookError(format!(
                "failed to fix the leader annotation of {scope}: {}",
                describe(&e)
            ))),
        }
    };
    let endpoints = match kubernetes::get_endpoints(&scope) {
        Ok(e) => e,
        Err(e) => return handle(ctx, e),
    };
    if endpoints.annotations.iter().any(|kv| kv.key == "leader") {
        return Ok(Next::Continue);
    }
    if let Err(e) =
        kubernetes::patch_endpoints_annotations(&scope, &[("leader".to_owned(), Some(ctx.pod()))])
    {
        return handle(ctx, e);
    }
    ctx.app_set("cluster_initialised", "")?;
    Ok(Next::Continue)
}

/// `_check_headless_service` (spec 6.2): Juju's headless Service `<app>-endpoints` must exist;
/// a 404 fails the hook on purpose (the operator recreates it and resolves).
pub fn check_headless_service(ctx: &Ctx) -> HookResult<()> {
    let name = format!("{}-endpoints", ctx.app());
    match kubernetes::get_service(&name) {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Err(HookError(format!(
            "headless Service {name} is missing: recreate it and run `juju resolve`"
        ))),
        Err(e) => Err(HookError(format!(
            "failed to check the headless Service {name}: {}",
            describe(&e)
        ))),
    }
}
