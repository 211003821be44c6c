//! The `update-status` hook: `_on_update_status` (spec 6.6).
//!
//! Deliberate deviation from upstream (issue 6, docs/FLOWCHARTS.md "Deliberate deviations"):
//! a Blocked `failed to patch pod with error …` is not skipped; the handler carries on to
//! `_set_active_status`, which sets Active only for the Patroni leader or a started member.
//! Upstream skips every Blocked unit, so that status stayed forever when the handler that
//! should have replaced it could not read the cluster (`fuzz --model` seed 263).
//!
//! Gaps: the pgdata disk-space check (`statvfs` of the charm container has no capability),
//! restore checks, stanza coordination and async replication data are not implemented.

charm_core::hook_plugin!(charm_core::charm::hooks::update_status);
