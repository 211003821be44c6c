//! The `upgrade-relation-created` hook: the upgrade library's `_on_upgrade_created` sets this unit's `upgrade` relation `state` to `idle`, which makes `upgrade.idle` true once every unit has run it (spec 6.7).
//!
//! Gap: the leader's `dependencies` JSON in the upgrade app databag is not written (no
//! in-place upgrade support).

charm_core::hook_plugin!(charm_core::charm::hooks::upgrade_relation_created);
