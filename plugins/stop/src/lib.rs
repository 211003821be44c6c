//! The `stop` hook: `_on_stop` (spec 6.5).
//!
//! Hands the Patroni Endpoints/Services to pod 0's owner (the StatefulSet) so Kubernetes
//! garbage-collects them; clears the unit databag when no unit is planned.

charm_core::hook_plugin!(charm_core::charm::hooks::stop);
