//! The `update-status` hook: `_on_update_status` (spec 6.6).
//!
//! Gaps: the pgdata disk-space check (`statvfs` of the charm container has no capability),
//! restore checks, stanza coordination and async replication data are not implemented.

charm_core::hook_plugin!(charm_core::charm::hooks::update_status);
