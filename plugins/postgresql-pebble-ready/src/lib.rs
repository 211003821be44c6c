//! The `postgresql-pebble-ready` hook: `_on_postgresql_pebble_ready` (spec 3.2).
//!
//! Where this follows the code instead of the flowchart (spec 4; the chart's start node is
//! mislabelled "leader-elected Hook"):
//! - Not charted: `_fix_pod` first for a unit already in `endpoints` (Services when
//!   `upgrade.idle`, then its own pod labels); the defer when Pebble does not answer; the
//!   workload version from the snap metadata.
//! - "Has successfully pushed TLS files" means "no PathError/ProtocolError": a failed push
//!   defers; the push helper also runs `update_config`, whose result is ignored.
//! - After the leader's own pod labels the code also creates the Services (when idle), and
//!   after the primary-endpoint check it creates the `backup` and `monitoring` users, runs
//!   `set_up_database` and creates the access groups before marking the cluster initialised.
//! - "Turn on/off synchronous_commit" is the full `update_config` (render `patroni.yml`, PATCH
//!   `/config`, restart need), followed by `enable_disable_extensions` on every unit and
//!   `_set_active_status`, which sets Active `Primary`, `Primary (degraded)` or an empty
//!   Active, and may leave the status alone (upgrade running) or set Blocked (S3 message).
//! - The "member started" probe retries own `/health` for 15 s; the "service redirecting"
//!   probe retries `/health` through `<app>-primary` for 10 s.
//!
//! Where this deliberately differs from the code (docs/FLOWCHARTS.md, "Deliberate deviations";
//! each is a state upstream never leaves, found by `fuzz --model`, issue 6):
//! - "Have Pebble services changed? no" still replans when the `postgresql` service is not
//!   running (and the unit has no `stopped` key): a replan that failed after `add-layer` took
//!   effect leaves the layer in the plan, and upstream's retry would wait for a member that is
//!   never started (seeds 1 and 12). A service in backoff is left to Pebble, which is
//!   restarting it already;
//! - in `_initialize_cluster`, a failed pod-label patch or Service creation keeps its Blocked
//!   status but **defers** instead of returning: upstream returns without deferring and nothing
//!   retries it (update-status skips Blocked units), so one transient Kubernetes error left the
//!   cluster uninitialised (seed 3). The chart's `set_blocked → return` becomes
//!   `set_blocked → defer`.
//!
//! Not implemented: the upgrade observer (its in-place upgrade states; its defer without an
//! `upgrade` relation would re-run this whole plugin, so it is left out), the log proxy,
//! pgBackRest server start/stop, CA files of `receive-ca-cert` relations, async replication.

charm_core::hook_plugin!(charm_core::charm::hooks::postgresql_pebble_ready);
