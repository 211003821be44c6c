//! The `secret-changed` hook: the charm observes it with `_on_peer_relation_changed`, the same handler as `database-peers-relation-changed` (spec 5, 6.2, 6.4).
//!
//! Not implemented: async replication's `_on_secret_changed` (no async replication).

charm_core::hook_plugin!(charm_core::charm::hooks::peer_relation_changed);
