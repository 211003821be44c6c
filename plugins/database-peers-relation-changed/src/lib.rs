//! The `database-peers-relation-changed` hook: `_on_peer_relation_changed` (spec 6.2).
//!
//! The flowchart in `flowcharts/relations.md` is out of date (spec 4); this follows spec 6.2:
//! a leader initialises the cluster (then defers to run again as initialised), the leader adds
//! new members, and every listed unit reconfigures and reports its status.
//!
//! Deliberate deviations shared with `leader-elected` and `postgresql-pebble-ready` (issue 6,
//! docs/FLOWCHARTS.md "Deliberate deviations"): `_initialize_cluster` defers on a failed label
//! patch or Service creation; `_add_members` lists members missing from `endpoints` and clears
//! a stale Blocked `failed to patch pod with error …` once every unit is a member.
//!
//! Not implemented: restore checks, pgBackRest TLS server, stanza coordination, read-only
//! endpoints of client relations, async replication's app status.

charm_core::hook_plugin!(charm_core::charm::hooks::peer_relation_changed);
