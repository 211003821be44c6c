//! The status catalogue of spec section 8: every status the charm may set.

use crate::world::{StatusKind, StatusState};

use StatusKind::*;

/// (kind, message); a message ending in `…` is a prefix.
const CATALOGUE: &[(StatusKind, &str)] = &[
    (Blocked, "Disabled"),
    (Blocked, "Error: Charm version incompatible with …"),
    (
        Blocked,
        "Insufficient permissions, try: `juju trust {app} --scope=cluster`",
    ),
    (Blocked, "failed to create k8s services"),
    (Blocked, "failed to patch pod with error …"),
    (Maintenance, "reconfiguring cluster"),
    (Waiting, "awaiting for cluster to start"),
    (Waiting, "awaiting for primary endpoint to be ready"),
    (Waiting, "awaiting for member to start"),
    (Blocked, "Configuration Error. Please check the logs"),
    (Waiting, "Updating extensions"),
    (
        Blocked,
        "Unsatisfied plugin dependencies. Please check the logs",
    ),
    (
        Blocked,
        "Cannot disable plugins: Existing objects depend on it. See logs",
    ),
    (Active, "Primary"),
    (Active, "Primary (degraded)"),
    (Active, "Standby"),
    (Active, "Standby (degraded)"),
    (Active, ""),
    (Blocked, "<10% free space on pgdata volume."),
    (Maintenance, "Database service inactive, restarting"),
    (Blocked, "failed to restart PostgreSQL"),
    (Blocked, "Failed to restore backup"),
    (Blocked, "cannot restore PITR, juju debug-log for details"),
    (
        Blocked,
        "the S3 repository has backups from another cluster",
    ),
    (
        Blocked,
        "failed to access/create the bucket, check your S3 settings",
    ),
    (
        Blocked,
        "failed to initialize stanza, check your S3 settings…",
    ),
    (Maintenance, "initialising stanza"),
    (Maintenance, "checking stanza"),
    (Maintenance, "creating backup"),
    (Maintenance, "restoring backup"),
    (Blocked, "extensions requested through relation"),
    (
        Blocked,
        "roles requested through relation, use postgresql_client interface instead",
    ),
    (Blocked, "Failed to initialize …"),
    (Blocked, "invalid role(s) for extra user roles"),
    (Blocked, "Failed to delete user during …"),
    (
        Blocked,
        "Please choose one endpoint to use. No need to relate all of them simultaneously!",
    ),
    (Maintenance, "upgrading unit"),
    (Maintenance, "upgrade completed"),
    (
        Maintenance,
        "upgrade completed, run resume-upgrade to proceed",
    ),
    (Waiting, "other units upgrading first..."),
    (Blocked, "ready to rollback application"),
    (
        Blocked,
        "upgrade failed. Check logs for rollback instruction",
    ),
    (Waiting, "Awaiting restart operation"),
    (Maintenance, "Executing restart operation"),
    (Maintenance, "Beginning rolling restart"),
    (
        Waiting,
        "Waiting for the database to be stopped in all units",
    ),
    (Waiting, "Waiting for the standby leader start the database"),
    (
        Waiting,
        "Waiting for the database to be started in all units",
    ),
    (Waiting, "Still starting the database in the standby leader"),
    (Waiting, "Waiting for the database to start"),
    (Maintenance, "Creating replication..."),
    (Maintenance, "Promoting cluster..."),
    (Blocked, "Standalone read-only cluster"),
];

/// Whether a status is one the charm may set.
pub fn known(s: &StatusState, app: &str) -> bool {
    CATALOGUE.iter().any(|(kind, msg)| {
        let msg = msg.replace("{app}", app);
        *kind == s.kind
            && match msg.strip_suffix('…') {
                Some(prefix) => s.message.starts_with(prefix),
                None => s.message == msg,
            }
    })
}
