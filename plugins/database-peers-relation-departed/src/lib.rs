//! The `database-peers-relation-departed` hook: `_on_peer_relation_departed` (spec 6.3).
//!
//! The leader (unless it is the departing unit) pushes the synchronous settings and prunes
//! `endpoints`; not initialised or a failed PATCH defers.
//!
//! Not implemented: read-only endpoints of client relations, async replication data.

charm_core::hook_plugin!(charm_core::charm::hooks::peer_relation_departed);
