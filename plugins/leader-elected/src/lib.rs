//! The `leader-elected` hook: `_on_leader_elected` (spec 2.2).
//!
//! Where this follows the code instead of the flowchart (spec 4):
//! - Order: the unit adds its own `<host>` to `endpoints` first, then deletes stale Patroni
//!   Services/Endpoints (only while `cluster_initialised` is absent), then repairs the leader
//!   annotation (which may clear `cluster_initialised`, or return on a 403), and only then
//!   creates the `<app>-primary`/`<app>-replicas` Services.
//! - Service creation is skipped while an upgrade runs (`upgrade.idle` false).
//! - The chart's final "turn on/off synchronous_commit" does not exist: after labelling new
//!   members the code PATCHes Patroni `/config` with `synchronous_node_count` /
//!   `synchronous_mode_strict`, and only when some unit was not yet a Patroni member.
//! - "Are all cluster members ready? no" defers and stops (the chart's arrow to
//!   `update_config` is wrong); an unreadable `/cluster` or a failed PATCH also defers.
//! - A failed pod-label patch sets Blocked `failed to patch pod with error <e>` and the loop
//!   goes on with the next member.
//! - The 403 paths (cleanup, annotation) set Blocked
//!   ``Insufficient permissions, try: `juju trust <app> --scope=cluster` ``.
//!
//! Where this deliberately differs from the code (docs/FLOWCHARTS.md, "Deliberate deviations"):
//! - adding a member never duplicates its host in `endpoints` (upstream's `add_cluster_member`
//!   appends unchecked, spec 2.3.2; spec 13.8 leaves the fix open, and the deployment invariant
//!   requires it);
//! - `_add_members` lists a unit that is already a Patroni member but missing from `endpoints`
//!   (an earlier dispatch labelled its pod, then failed, so Juju dropped its `endpoints` write;
//!   upstream sees members == hosts and never lists it) — issue 6, `fuzz --model` seed 8;
//! - once every unit is a member, `_add_members` replaces a Blocked
//!   `failed to patch pod with error …` left by an earlier loop with `_set_active_status`
//!   (upstream never clears it: the peer handler returns on Blocked and update-status skips
//!   Blocked units) — issue 6, seeds 90 and 151.
//!
//! Not implemented: the other observers of this event (backups' S3 re-initialisation,
//! rolling-ops lock processing, Grafana dashboards).

charm_core::hook_plugin!(charm_core::charm::hooks::leader_elected);
