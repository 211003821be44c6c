//! Status texts (spec 8) and `_set_active_status` (spec 3.3.10).

use super::patroni::{self, RUNNING_STATES};
use super::{Ctx, HookResult, describe};
pub use crate::bindings::charm::host::juju::StatusKind;

pub const FAILED_TO_CREATE_SERVICES: &str = "failed to create k8s services";
pub const RECONFIGURING_CLUSTER: &str = "reconfiguring cluster";
pub const AWAITING_CLUSTER_START: &str = "awaiting for cluster to start";
pub const AWAITING_PRIMARY_ENDPOINT: &str = "awaiting for primary endpoint to be ready";
pub const AWAITING_MEMBER_START: &str = "awaiting for member to start";
pub const CONFIGURATION_ERROR: &str = "Configuration Error. Please check the logs";
pub const UPDATING_EXTENSIONS: &str = "Updating extensions";
pub const INSUFFICIENT_SIZE_WARNING: &str = "<10% free space on pgdata volume.";
pub const SERVICE_INACTIVE_RESTARTING: &str = "Database service inactive, restarting";
pub use crate::extensions::{EXTENSION_OBJECT_MESSAGE, EXTENSIONS_DEPENDENCY_MESSAGE};

/// ``Insufficient permissions, try: `juju trust <app> --scope=cluster` ``.
pub fn trust_message(app: &str) -> String {
    format!("Insufficient permissions, try: `juju trust {app} --scope=cluster`")
}

/// `failed to patch pod with error <e>`.
pub fn failed_to_patch_pod(error: &str) -> String {
    format!("failed to patch pod with error {error}")
}

/// `_set_active_status` (spec 3.3.10).
///
/// One `GET /cluster` answers both "am I the primary" and "how many members run", where
/// upstream asks twice (`get_primary`, `get_running_cluster_members`).
pub fn set_active_status(ctx: &mut Ctx) -> HookResult<()> {
    if ctx.status()?.message == INSUFFICIENT_SIZE_WARNING {
        return Ok(());
    }
    if ctx.is_leader()?
        && let Some(message) = ctx.app_get("s3-initialization-block-message")?
    {
        ctx.set_status(StatusKind::Blocked, &message)?;
        return Ok(());
    }
    if !ctx.upgrade_idle()? {
        return Ok(());
    }
    let cluster = match patroni::cluster_status(ctx)? {
        Ok(c) => c,
        Err(e) => {
            // RetryError / ConnectionError are only logged.
            ctx.info(&format!(
                "failed to read the cluster status: {}",
                describe(&e)
            ));
            return Ok(());
        }
    };
    let pod = ctx.pod();
    let me = cluster.members.iter().find(|m| m.name == pod);
    let role = me.map(|m| m.role.as_str());
    if matches!(role, Some("leader") | Some("standby_leader")) {
        let running = cluster
            .members
            .iter()
            .filter(|m| RUNNING_STATES.contains(&m.state.as_str()))
            .count();
        let degraded = (running as u32) < ctx.planned_units()?;
        let base = if role == Some("standby_leader") {
            "Standby"
        } else {
            "Primary"
        };
        let message = if degraded {
            format!("{base} (degraded)")
        } else {
            base.to_owned()
        };
        ctx.set_status(StatusKind::Active, &message)?;
    } else if patroni::member_started(ctx)? {
        ctx.set_status(StatusKind::Active, "")?;
    }
    Ok(())
}
