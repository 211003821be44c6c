//! The `database-peers-relation-changed` hook: `_on_peer_relation_changed` (spec 6.2).
//!
//! The flowchart in `flowcharts/relations.md` is out of date (spec 4); this follows spec 6.2:
//! a leader initialises the cluster (then defers to run again as initialised), the leader adds
//! new members, and every listed unit reconfigures and reports its status.
//!
//! Not implemented: restore checks, pgBackRest TLS server, stanza coordination, read-only
//! endpoints of client relations, async replication's app status.

charm_core::hook_plugin!(charm_core::charm::hooks::peer_relation_changed);
