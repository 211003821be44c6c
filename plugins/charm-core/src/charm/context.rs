//! The per-dispatch context.
//!
//! Upstream reads hook tools freely (ops caches little); here each value is read at most once
//! per dispatch and cached, because every capability call is a hook-tool process or a request
//! in production:
//! - identity (`get-identity`), leadership (`is-leader`), the peer relation id, planned units,
//!   the typed config, the unit status (kept up to date locally after each `status-set`);
//! - `PD.app` and `PD.unit` are read once; writes go to the local copy (so later reads see
//!   them) and are sent as one `relation-set` per bag by [`Ctx::flush`] at the end;
//! - the peer secrets likewise (module [`super::secrets`]).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::patroni::Snapshot;
use super::{HookError, HookResult};
use crate::bindings::charm::host::juju::{self, Identity, Status, StatusKind};
use crate::bindings::charm::host::types::{Event, LogLevel, Value as WitValue};
use crate::config::{CharmConfig, ConfigError, Value};
use crate::endpoints;
use crate::names;

pub type Bag = BTreeMap<String, String>;

/// One databag as read at first use, plus this dispatch's changes.
#[derive(Debug, Default)]
pub(crate) struct BagCache {
    pub values: Bag,
    /// Keys written in this dispatch (an empty value deletes the key).
    pub dirty: BTreeSet<String>,
}

/// A peer secret as read at first use, plus this dispatch's content.
#[derive(Debug, Default)]
pub(crate) struct SecretCache {
    /// The secret existed when read (otherwise the first write is a `secret-add`).
    pub existed: bool,
    pub original: Bag,
    pub content: Bag,
}

pub struct Ctx {
    pub event: Event,
    pub id: Identity,
    leader: Option<bool>,
    peer: Option<Option<u32>>,
    app_bag: Option<BagCache>,
    unit_bag: Option<BagCache>,
    pub(crate) app_secret: Option<SecretCache>,
    pub(crate) unit_secret: Option<SecretCache>,
    /// Shared, not cloned per use: the config has over 100 options, and `update_config` reads
    /// it several times per hook.
    config: Option<Result<Rc<CharmConfig>, ConfigError>>,
    planned_units: Option<u32>,
    status: Option<Status>,
    upgrade_idle: Option<bool>,
    /// The Patroni helper's snapshot, taken at its first use (spec 1, 13.7).
    pub(crate) patroni: Option<Snapshot>,
    /// The workload's snap `version` (e.g. `14.23`), pulled once.
    pub(crate) workload_version: Option<Option<String>>,
    /// `update_config` runs twice in some hooks (pebble-ready: through the TLS push, then
    /// itself) and the render and the config hash were a fifth of such a hook's run: the last
    /// render with its input, and the hash of this event's config (which cannot change).
    pub(crate) rendered_patroni_yml: Option<(crate::patroni_yml::PatroniYmlInput, Rc<str>)>,
    pub(crate) config_hash: Option<Rc<str>>,
    /// The parameters built from this event's config for (CPU cores, memory bytes): the
    /// second `update_config` reuses them instead of building, cloning and dropping ~100 again.
    pub(crate) parameters: Option<((i64, i64), Rc<crate::params::Parameters>)>,
}

impl Ctx {
    pub fn new(event: Event) -> Ctx {
        Ctx {
            event,
            id: juju::get_identity(),
            leader: None,
            peer: None,
            app_bag: None,
            unit_bag: None,
            app_secret: None,
            unit_secret: None,
            config: None,
            planned_units: None,
            status: None,
            upgrade_idle: None,
            patroni: None,
            workload_version: None,
            rendered_patroni_yml: None,
            config_hash: None,
            parameters: None,
        }
    }

    // ------------------------------------------------------------------ identity

    pub fn app(&self) -> &str {
        &self.id.app
    }

    pub fn unit(&self) -> &str {
        &self.id.unit
    }

    /// The model name, which is the Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.id.model
    }

    /// This unit's pod: `<app>-<n>`.
    pub fn pod(&self) -> String {
        names::pod_name(&self.id.unit)
    }

    /// This unit's `<host>`: `<app>-<n>.<app>-endpoints`.
    pub fn host(&self) -> String {
        names::host_for_unit(&self.id.app, &self.id.unit)
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        juju::log(level, message);
    }

    pub fn info(&self, message: &str) {
        juju::log(LogLevel::Info, message);
    }

    pub fn is_leader(&mut self) -> HookResult<bool> {
        if let Some(l) = self.leader {
            return Ok(l);
        }
        let l = juju::is_leader()?;
        self.leader = Some(l);
        Ok(l)
    }

    pub fn planned_units(&mut self) -> HookResult<u32> {
        if let Some(n) = self.planned_units {
            return Ok(n);
        }
        let n = juju::planned_units()?;
        self.planned_units = Some(n);
        Ok(n)
    }

    // ------------------------------------------------------------------ peer relation

    /// The `database-peers` relation id, if the relation exists yet.
    pub fn peer_relation(&mut self) -> HookResult<Option<u32>> {
        if let Some(p) = self.peer {
            return Ok(p);
        }
        let p = juju::relation_ids(names::PEER_RELATION)?.first().copied();
        self.peer = Some(p);
        Ok(p)
    }

    /// The other units of the peer relation (`relation-list`).
    pub fn peer_units(&mut self) -> HookResult<Vec<String>> {
        match self.peer_relation()? {
            Some(id) => Ok(juju::relation_units(id)?),
            None => Ok(Vec::new()),
        }
    }

    /// Pod names of this unit and its peers (upstream `_hosts`).
    pub fn hosts(&mut self) -> HookResult<BTreeSet<String>> {
        let mut hosts: BTreeSet<String> = self
            .peer_units()?
            .iter()
            .map(|u| names::pod_name(u))
            .collect();
        hosts.insert(self.pod());
        Ok(hosts)
    }

    fn bag(&mut self, app: bool) -> HookResult<&mut BagCache> {
        let loaded = if app {
            self.app_bag.is_some()
        } else {
            self.unit_bag.is_some()
        };
        if !loaded {
            let values: Bag = match self.peer_relation()? {
                Some(id) => {
                    let of = if app {
                        self.id.app.clone()
                    } else {
                        self.id.unit.clone()
                    };
                    juju::relation_get(id, &of, app)?
                        .into_iter()
                        .map(|kv| (kv.key, kv.value))
                        .collect()
                }
                None => Bag::new(),
            };
            let cache = BagCache {
                values,
                dirty: BTreeSet::new(),
            };
            if app {
                self.app_bag = Some(cache);
            } else {
                self.unit_bag = Some(cache);
            }
        }
        Ok(if app {
            self.app_bag.as_mut().unwrap()
        } else {
            self.unit_bag.as_mut().unwrap()
        })
    }

    /// `PD.app[key]`; absent and empty are the same in a databag.
    pub fn app_get(&mut self, key: &str) -> HookResult<Option<String>> {
        Ok(self.bag(true)?.values.get(key).cloned())
    }

    /// `PD.unit[key]`.
    pub fn unit_get(&mut self, key: &str) -> HookResult<Option<String>> {
        Ok(self.bag(false)?.values.get(key).cloned())
    }

    /// Write `PD.app[key]` (leader only; an empty value deletes). Sent by [`Ctx::flush`].
    /// Without the peer relation the write is dropped, as upstream's helpers do nothing then.
    pub fn app_set(&mut self, key: &str, value: &str) -> HookResult<()> {
        if !self.is_leader()? {
            return Err(HookError(format!(
                "only the leader can write {key:?} to the application databag"
            )));
        }
        self.bag_set(true, key, value)
    }

    /// Write `PD.unit[key]` (an empty value deletes). Sent by [`Ctx::flush`].
    pub fn unit_set(&mut self, key: &str, value: &str) -> HookResult<()> {
        self.bag_set(false, key, value)
    }

    fn bag_set(&mut self, app: bool, key: &str, value: &str) -> HookResult<()> {
        if self.peer_relation()?.is_none() {
            return Ok(());
        }
        let bag = self.bag(app)?;
        let before = bag.values.get(key).map(String::as_str).unwrap_or("");
        if before == value {
            return Ok(());
        }
        if value.is_empty() {
            bag.values.remove(key);
        } else {
            bag.values.insert(key.to_owned(), value.to_owned());
        }
        bag.dirty.insert(key.to_owned());
        Ok(())
    }

    /// `cluster_initialised` is present in `PD.app` (spec 2.3.6).
    pub fn is_cluster_initialised(&mut self) -> HookResult<bool> {
        Ok(self.app_get("cluster_initialised")?.is_some())
    }

    /// `PD.app["endpoints"]` as a list (spec 2.3.2). Without a peer relation, just this host.
    pub fn endpoints(&mut self) -> HookResult<Vec<String>> {
        if self.peer_relation()?.is_none() {
            return Ok(vec![self.host()]);
        }
        let raw = self.app_get("endpoints")?;
        endpoints::parse(raw.as_deref()).map_err(|e| HookError(e.to_string()))
    }

    /// Write `PD.app["endpoints"]`; upstream's `_add_to_endpoints` / `_remove_from_endpoints`
    /// do nothing on a non-leader.
    pub fn set_endpoints(&mut self, list: &[String]) -> HookResult<()> {
        if !self.is_leader()? {
            return Ok(());
        }
        self.app_set("endpoints", &endpoints::render(list))
    }

    /// Send the batched databag and secret writes.
    pub fn flush(&mut self) -> HookResult<()> {
        if let Some(id) = self.peer.flatten() {
            for app in [true, false] {
                let cache = if app {
                    self.app_bag.as_mut()
                } else {
                    self.unit_bag.as_mut()
                };
                let Some(cache) = cache else { continue };
                if cache.dirty.is_empty() {
                    continue;
                }
                let changes: Vec<juju::Kv> = cache
                    .dirty
                    .iter()
                    .map(|k| juju::Kv {
                        key: k.clone(),
                        value: cache.values.get(k).cloned().unwrap_or_default(),
                    })
                    .collect();
                juju::relation_set(id, app, &changes)?;
                cache.dirty.clear();
            }
        }
        super::secrets::flush(self)
    }

    // ------------------------------------------------------------------ config

    /// The typed config (`config-get` validated like the pydantic model). A validation error is
    /// the inner `Err`, for the caller to turn into Blocked or a hook failure; a failing
    /// `config-get` is a hook failure.
    pub fn config(&mut self) -> HookResult<Result<Rc<CharmConfig>, ConfigError>> {
        if self.config.is_none() {
            // A case's discriminant is its option's index in `OPTIONS` (same order, tested).
            let entries = juju::config()?.into_iter().map(|e| {
                let v = match e.value {
                    WitValue::Boolean(b) => Value::Bool(b),
                    WitValue::Integer(i) => Value::Int(i),
                    WitValue::Float(f) => Value::Float(f),
                    WitValue::Text(s) => Value::Str(s),
                };
                (e.key as usize, v)
            });
            self.config = Some(CharmConfig::from_indexed(entries).map(Rc::new));
        }
        Ok(self.config.clone().unwrap())
    }

    /// The typed config, or a hook failure (upstream: a pydantic ValidationError outside
    /// config-changed and peer-changed is uncaught, spec 13.8).
    pub fn config_or_fail(&mut self) -> HookResult<Rc<CharmConfig>> {
        self.config()?
            .map_err(|e| HookError(format!("invalid configuration: {e}")))
    }

    // ------------------------------------------------------------------ status

    pub fn status(&mut self) -> HookResult<Status> {
        if let Some(s) = &self.status {
            return Ok(s.clone());
        }
        let s = juju::unit_status()?;
        self.status = Some(s.clone());
        Ok(s)
    }

    pub fn set_status(&mut self, kind: StatusKind, message: &str) -> HookResult<()> {
        let status = Status {
            kind,
            message: message.to_owned(),
        };
        juju::set_unit_status(&status)?;
        self.status = Some(status);
        Ok(())
    }

    pub fn is_blocked(&mut self) -> HookResult<bool> {
        Ok(self.status()?.kind == StatusKind::Blocked)
    }

    // ------------------------------------------------------------------ upgrade

    /// `upgrade.idle` (spec 6.7), read once per dispatch.
    pub fn upgrade_idle(&mut self) -> HookResult<bool> {
        if let Some(i) = self.upgrade_idle {
            return Ok(i);
        }
        let idle = super::upgrade::read_idle(self)?;
        self.upgrade_idle = Some(idle);
        Ok(idle)
    }
}
