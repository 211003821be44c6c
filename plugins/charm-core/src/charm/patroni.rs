//! The Patroni REST helper (spec 10.1) with upstream's per-dispatch snapshot (spec 1, 13.7).
//!
//! Upstream builds its `Patroni` helper once per process (a `cached_property`), capturing
//! `PD.app["endpoints"]`, the passwords and the TLS flag at first use; a handler that changes
//! `endpoints` keeps using the old list (and members count) until the next dispatch.
//! [`snapshot`] reproduces that.
//!
//! Retries follow tenacity's `stop_after_delay` + `wait_fixed`: after a failed attempt, stop
//! when the delay has elapsed, otherwise sleep. Sleeps go through the clock capability, so a
//! simulated world runs them in virtual time.

use super::secrets::get_secret;
use super::{Ctx, HookResult, describe};
use crate::bindings::charm::host::clock;
use crate::bindings::charm::host::patroni::{
    self, Auth, Cluster, ConfigPatch, Param, StandbyCluster, Target,
};
use crate::bindings::charm::host::types::{Error, ErrorKind};
use crate::json::Json;
use crate::names::{self, SecretScope};
use crate::params::ApiConfigUpdate;
use crate::sync;

/// Member states that count as started (`member_started`, `_set_active_status`).
pub const RUNNING_STATES: [&str; 3] = ["running", "streaming", "starting"];
/// Member states `are_all_members_ready` accepts.
pub const READY_STATES: [&str; 2] = ["running", "streaming"];

/// What the Patroni helper captured at its first use in this dispatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub endpoints: Vec<String>,
    pub patroni_password: Option<String>,
    pub superuser_password: Option<String>,
    pub replication_password: Option<String>,
    pub rewind_password: Option<String>,
    /// `PD.unit["tls"]` is set: https towards Patroni.
    pub tls: bool,
}

/// The snapshot, taken now if this is the helper's first use.
pub fn snapshot(ctx: &mut Ctx) -> HookResult<Snapshot> {
    if let Some(s) = &ctx.patroni {
        return Ok(s.clone());
    }
    let s = Snapshot {
        endpoints: ctx.endpoints()?,
        patroni_password: get_secret(ctx, SecretScope::App, "patroni-password")?,
        superuser_password: get_secret(ctx, SecretScope::App, "operator-password")?,
        replication_password: get_secret(ctx, SecretScope::App, "replication-password")?,
        rewind_password: get_secret(ctx, SecretScope::App, "rewind-password")?,
        tls: ctx.unit_get("tls")?.is_some(),
    };
    ctx.patroni = Some(s.clone());
    Ok(s)
}

/// Basic auth `patroni:<patroni-password>` and the scheme.
pub fn auth(ctx: &mut Ctx) -> HookResult<Auth> {
    let s = snapshot(ctx)?;
    Ok(Auth {
        password: s.patroni_password.unwrap_or_default(),
        tls: s.tls,
    })
}

/// Retry `f` every `wait_ms` until it succeeds or `total_ms` have passed since the first try.
pub fn retry_for<T>(
    total_ms: u64,
    wait_ms: u64,
    mut f: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    let start = clock::now_ms();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                if clock::now_ms().saturating_sub(start) >= total_ms {
                    return Err(e);
                }
                clock::sleep_ms(wait_ms);
            }
        }
    }
}

/// `cluster_status`: `GET /cluster`, asking this member and then every stored endpoint; the
/// first answer wins (upstream fans out in parallel). Without a patroni password no request
/// is made and the call fails.
pub fn cluster_status(ctx: &mut Ctx) -> HookResult<Result<Cluster, Error>> {
    let snap = snapshot(ctx)?;
    let auth = auth(ctx)?;
    if snap.patroni_password.is_none() {
        return Ok(Err(Error {
            kind: ErrorKind::Other,
            message: "no patroni password yet".to_owned(),
        }));
    }
    let own = ctx.host();
    let mut last = match patroni::get_cluster(&Target::OwnUnit, &auth) {
        Ok(c) => return Ok(Ok(c)),
        Err(e) => e,
    };
    for host in snap.endpoints.iter().filter(|h| **h != own) {
        match patroni::get_cluster(&Target::Host(host.clone()), &auth) {
            Ok(c) => return Ok(Ok(c)),
            Err(e) => last = e,
        }
    }
    Ok(Err(last))
}

/// `cluster_members`: the member names (pod names) of `GET /cluster`.
pub fn cluster_members(ctx: &mut Ctx) -> HookResult<Result<Vec<String>, Error>> {
    Ok(cluster_status(ctx)?.map(|c| c.members.into_iter().map(|m| m.name).collect()))
}

/// `get_primary`: the leader's member name; None when unknown or on any error (upstream
/// swallows the RetryError).
pub fn get_primary(ctx: &mut Ctx) -> HookResult<Option<String>> {
    Ok(match cluster_status(ctx)? {
        Ok(c) => c
            .members
            .into_iter()
            .find(|m| m.role == "leader")
            .map(|m| m.name),
        Err(_) => None,
    })
}

/// `are_all_members_ready` (spec 2.3.5, 10.1): every member running or streaming, and some
/// member leads. An unreadable `/cluster` is "not ready".
pub fn are_all_members_ready(ctx: &mut Ctx) -> HookResult<bool> {
    Ok(match cluster_status(ctx)? {
        Ok(c) => {
            c.members
                .iter()
                .all(|m| READY_STATES.contains(&m.state.as_str()))
                && c.members
                    .iter()
                    .any(|m| m.role == "leader" || m.role == "standby_leader")
        }
        Err(_) => false,
    })
}

/// `member_started` (spec 3.3.6): own `/health`; only request errors are retried, every 3 s
/// for up to 15 s. True when the state is running, streaming or starting.
pub fn member_started(ctx: &mut Ctx) -> HookResult<bool> {
    let auth = auth(ctx)?;
    Ok(
        match retry_for(15_000, 3_000, || {
            patroni::get_health(&Target::OwnUnit, &auth)
        }) {
            Ok(h) => RUNNING_STATES.contains(&h.state.as_str()),
            Err(_) => false,
        },
    )
}

/// `primary_endpoint_ready` (spec 3.3.7): `/health` through the `<app>-primary` Service, every
/// 1 s for up to 10 s, until the state is running, streaming or starting.
pub fn primary_endpoint_ready(ctx: &mut Ctx) -> HookResult<bool> {
    let auth = auth(ctx)?;
    let r = retry_for(10_000, 1_000, || {
        let h = patroni::get_health(&Target::PrimaryService, &auth)?;
        if RUNNING_STATES.contains(&h.state.as_str()) {
            Ok(())
        } else {
            Err(Error {
                kind: ErrorKind::Other,
                message: format!("primary endpoint state is {}", h.state),
            })
        }
    });
    Ok(r.is_ok())
}

/// The synchronous settings for this dispatch: `(synchronous_node_count,
/// synchronous_mode_strict)` from the config, planned units and the snapshot's members count.
pub fn synchronous_settings(ctx: &mut Ctx) -> HookResult<(i64, bool)> {
    let config = ctx.config_or_fail()?;
    let planned = ctx.planned_units()?;
    let members = snapshot(ctx)?.endpoints.len();
    let count = sync::synchronous_node_count(config.synchronous_node_count(), planned, members);
    let strict = sync::synchronous_mode_strict(config.synchronous_mode_strict(), members, count);
    Ok((count, strict))
}

fn empty_patch() -> ConfigPatch {
    ConfigPatch {
        synchronous_node_count: None,
        synchronous_mode_strict: None,
        maximum_lag_on_failover: None,
        failsafe_mode: None,
        max_timelines_history: None,
        remove_data_directory_on_rewind_failure: None,
        remove_data_directory_on_diverged_timelines: None,
        parameters: Vec::new(),
        standby_cluster: None,
    }
}

/// `update_synchronous_node_count` (spec 2.3.5): PATCH own `/config` with the synchronous
/// settings, every 3 s for up to 60 s until it succeeds.
pub fn update_synchronous_node_count(ctx: &mut Ctx) -> HookResult<Result<(), Error>> {
    let (count, strict) = synchronous_settings(ctx)?;
    let auth = auth(ctx)?;
    let patch = ConfigPatch {
        synchronous_node_count: Some(count.max(0) as u32),
        synchronous_mode_strict: Some(strict),
        ..empty_patch()
    };
    Ok(retry_for(60_000, 3_000, || {
        patroni::patch_config(&Target::OwnUnit, &auth, &patch)
    }))
}

/// The typed PATCH of `update_config`'s `_api_update_config` (spec 3.3.4 step 6).
///
/// Gap: upstream sends `null` for unset `shared_buffers`, `max_prepared_transactions` and
/// `wal_keep_size`, which removes them from Patroni's dynamic configuration; the capability's
/// `param` has no null, so those keys are left out (left as they are) instead.
pub fn api_config_patch(update: &ApiConfigUpdate) -> ConfigPatch {
    let parameters = update
        .parameters
        .iter()
        .filter_map(|(name, value)| {
            let p = match value {
                Json::Int(i) => Param::Integer(*i),
                Json::Float(f) => Param::Float(*f),
                Json::Bool(b) => Param::Boolean(*b),
                Json::Str(s) => Param::Text(s.clone()),
                _ => return None,
            };
            Some((name.clone(), p))
        })
        .collect();
    ConfigPatch {
        synchronous_node_count: Some(update.synchronous_node_count.max(0) as u32),
        synchronous_mode_strict: Some(update.synchronous_mode_strict),
        maximum_lag_on_failover: update.maximum_lag_on_failover.map(|v| v.max(0) as u64),
        remove_data_directory_on_rewind_failure: Some(false),
        remove_data_directory_on_diverged_timelines: Some(false),
        parameters,
        standby_cluster: update.standby_cluster_host.clone().map(|host| {
            Some(StandbyCluster {
                host,
                port: names::DATABASE_PORT,
            })
        }),
        ..empty_patch()
    }
}

/// `_api_update_config`'s request: 3 attempts with tenacity's exponential wait (2 s, then
/// 4 s; bounds 2–10 s).
pub fn patch_config_with_backoff(ctx: &mut Ctx, patch: &ConfigPatch) -> HookResult<bool> {
    let auth = auth(ctx)?;
    let waits = [2_000u64, 4_000];
    for attempt in 0..3 {
        match patroni::patch_config(&Target::OwnUnit, &auth, patch) {
            Ok(()) => return Ok(true),
            Err(e) => {
                ctx.info(&format!("PATCH /config failed: {}", describe(&e)));
                if let Some(w) = waits.get(attempt) {
                    clock::sleep_ms(*w);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CharmConfig;
    use crate::params::Parameters;

    #[test]
    fn api_patch_leaves_out_nulls_and_keeps_typed_values() {
        let config = CharmConfig::defaults();
        let update = ApiConfigUpdate::new(&config, 4, &Parameters::new(), 2, true, None);
        let patch = api_config_patch(&update);
        assert_eq!(patch.synchronous_node_count, Some(2));
        assert_eq!(patch.synchronous_mode_strict, Some(true));
        assert_eq!(patch.remove_data_directory_on_rewind_failure, Some(false));
        let names: Vec<&str> = patch.parameters.iter().map(|(n, _)| n.as_str()).collect();
        // shared_buffers / wal_keep_size / max_prepared_transactions are unset (null upstream).
        assert!(!names.contains(&"shared_buffers"), "{names:?}");
        assert!(matches!(
            patch
                .parameters
                .iter()
                .find(|(n, _)| n == "max_connections"),
            Some((_, Param::Integer(100)))
        ));
        assert!(patch.standby_cluster.is_none());
    }
}
