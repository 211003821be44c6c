//! The `upgrade-charm` hook: the charm's `_on_upgrade_charm`, i.e. `_fix_pod` (spec 6.7).
//!
//! Not implemented: the upgrade library's observers (version checks, `upgrade-stack`,
//! StatefulSet partition), which drive in-place upgrades.

charm_core::hook_plugin!(charm_core::charm::hooks::upgrade_charm);
