//! Patroni's synchronous replication settings (spec 10.1, "Synchronous-count rules").
//!
//! Inputs are the per-dispatch snapshot upstream takes (spec 13.7): `planned_units` from
//! `goal-state`, and `members`, the length of `PD.app["endpoints"]` when the Patroni helper
//! was built.

use crate::config::SyncNodeCount;

/// `synchronous_node_count` sent to Patroni.
///
/// - `all`: `planned_units − 1`;
/// - `majority`: `planned_units // 2`;
/// - an integer `k`: `k` when `k < members − 1`, otherwise `planned_units − 1`.
///
/// Upstream does this in Python integers, so with `planned_units == 0` the result is −1;
/// that is kept rather than clamped.
pub fn synchronous_node_count(setting: SyncNodeCount, planned_units: u32, members: usize) -> i64 {
    let planned = planned_units as i64;
    match setting {
        SyncNodeCount::All => planned - 1,
        SyncNodeCount::Majority => planned / 2,
        SyncNodeCount::Count(k) => {
            let k = k as i64;
            if k < members as i64 - 1 {
                k
            } else {
                planned - 1
            }
        }
    }
}

/// `synchronous_mode_strict` sent to Patroni: only with more than one member, the config
/// option on, and a positive synchronous node count.
pub fn synchronous_mode_strict(config_strict: bool, members: usize, node_count: i64) -> bool {
    members > 1 && config_strict && node_count > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_majority_follow_planned_units() {
        assert_eq!(synchronous_node_count(SyncNodeCount::All, 3, 3), 2);
        assert_eq!(synchronous_node_count(SyncNodeCount::All, 1, 1), 0);
        assert_eq!(synchronous_node_count(SyncNodeCount::All, 0, 0), -1);
        assert_eq!(synchronous_node_count(SyncNodeCount::Majority, 5, 2), 2);
        assert_eq!(synchronous_node_count(SyncNodeCount::Majority, 4, 4), 2);
        assert_eq!(synchronous_node_count(SyncNodeCount::Majority, 1, 1), 0);
    }

    #[test]
    fn integer_kept_only_below_members_minus_one() {
        // 5 members: k = 3 < 4 stays; k = 4 is not < 4, so planned − 1.
        assert_eq!(synchronous_node_count(SyncNodeCount::Count(3), 5, 5), 3);
        assert_eq!(synchronous_node_count(SyncNodeCount::Count(4), 5, 5), 4);
        assert_eq!(synchronous_node_count(SyncNodeCount::Count(4), 6, 5), 5);
        // Scaling: endpoints still has 2 members while 4 units are planned.
        assert_eq!(synchronous_node_count(SyncNodeCount::Count(1), 4, 2), 3);
        assert_eq!(synchronous_node_count(SyncNodeCount::Count(1), 4, 3), 1);
    }

    #[test]
    fn strict_needs_members_config_and_count() {
        assert!(synchronous_mode_strict(true, 3, 2));
        assert!(!synchronous_mode_strict(true, 1, 2));
        assert!(!synchronous_mode_strict(false, 3, 2));
        assert!(!synchronous_mode_strict(true, 3, 0));
        assert!(!synchronous_mode_strict(true, 3, -1));
    }
}
