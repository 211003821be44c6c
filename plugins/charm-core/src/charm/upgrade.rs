//! The `upgrade` peer relation (spec 6.7): `upgrade.idle` and the unit `state` key.

use super::{Ctx, HookResult};
use crate::bindings::charm::host::juju::{self, Kv};

/// The upgrade library's peer relation.
pub const UPGRADE_RELATION: &str = "upgrade";

/// `upgrade.idle`: every unit of the `upgrade` relation (this one included) has `state` =
/// `idle`. No relation counts as not idle, and so does a unit without a state (the library
/// sorts the states and an empty one is not `idle`).
pub fn read_idle(ctx: &mut Ctx) -> HookResult<bool> {
    let Some(id) = juju::relation_ids(UPGRADE_RELATION)?.first().copied() else {
        return Ok(false);
    };
    let mut units = juju::relation_units(id)?;
    units.push(ctx.unit().to_owned());
    for unit in units {
        let bag = juju::relation_get(id, &unit, false)?;
        let state = bag
            .iter()
            .find(|kv| kv.key == "state")
            .map(|kv| kv.value.as_str());
        if state != Some("idle") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `upgrade-relation-created` (DataUpgrade `_on_upgrade_created`): this unit's `state` becomes
/// `idle`. Written at once: the upgrade relation is not the peer databag the context batches.
pub fn set_own_state_idle(ctx: &mut Ctx, relation_id: u32) -> HookResult<()> {
    let _ = ctx;
    juju::relation_set(
        relation_id,
        false,
        &[Kv {
            key: "state".to_owned(),
            value: "idle".to_owned(),
        }],
    )?;
    Ok(())
}
