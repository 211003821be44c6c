//! The world's Juju: identity, leadership, config, status, relations, secrets, state.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use async_trait::async_trait;

use super::{
    Bag, BagChange, ConfigValue, JujuView, Shadow, StatusKind, StatusState, UnitSession,
    bag_to_kvs, kvs_to_bag, unknown_unit,
};
use crate::bindings::juju::{ConfigEntry, ConfigOption, Identity, Port, SecretOwner, Status};
use crate::bindings::types::{Kv, LogLevel, NamedValue, Value};
use crate::bindings::{Error, juju};
use crate::capability::{CapResult, Juju};

/// The charm's config options and their defaults, from `charm/config.yaml`.
pub fn config_defaults() -> &'static BTreeMap<String, Option<ConfigValue>> {
    static DEFAULTS: OnceLock<BTreeMap<String, Option<ConfigValue>>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct File {
            options: BTreeMap<String, Opt>,
        }
        #[derive(serde::Deserialize)]
        struct Opt {
            #[serde(rename = "type")]
            kind: String,
            default: Option<serde_yaml::Value>,
        }
        let file: File = serde_yaml::from_str(include_str!("../../../charm/config.yaml"))
            .expect("charm/config.yaml parses");
        file.options
            .into_iter()
            .map(|(name, o)| {
                let v = o.default.and_then(|d| typed(&o.kind, &d));
                (name, v)
            })
            .collect()
    })
}

fn typed(kind: &str, v: &serde_yaml::Value) -> Option<ConfigValue> {
    Some(match kind {
        "boolean" => ConfigValue::Bool(v.as_bool()?),
        "int" => ConfigValue::Int(v.as_i64()?),
        "float" => ConfigValue::Float(v.as_f64()?),
        _ => ConfigValue::Str(v.as_str().map(String::from).unwrap_or_else(|| {
            serde_yaml::to_string(v)
                .unwrap_or_default()
                .trim()
                .to_string()
        })),
    })
}

pub(crate) fn to_value(v: &ConfigValue) -> Value {
    match v {
        ConfigValue::Bool(b) => Value::Boolean(*b),
        ConfigValue::Int(i) => Value::Integer(*i),
        ConfigValue::Float(f) => Value::Float(*f),
        ConfigValue::Str(s) => Value::Text(s.clone()),
    }
}

fn status_kind(k: juju::StatusKind) -> StatusKind {
    match k {
        juju::StatusKind::Active => StatusKind::Active,
        juju::StatusKind::Blocked => StatusKind::Blocked,
        juju::StatusKind::Maintenance => StatusKind::Maintenance,
        juju::StatusKind::Waiting => StatusKind::Waiting,
        juju::StatusKind::Unknown => StatusKind::Unknown,
        juju::StatusKind::Error => StatusKind::Error,
    }
}

fn to_status(s: &StatusState) -> Status {
    Status {
        kind: match s.kind {
            StatusKind::Active => juju::StatusKind::Active,
            StatusKind::Blocked => juju::StatusKind::Blocked,
            StatusKind::Maintenance => juju::StatusKind::Maintenance,
            StatusKind::Waiting => juju::StatusKind::Waiting,
            StatusKind::Unknown => juju::StatusKind::Unknown,
            StatusKind::Error => juju::StatusKind::Error,
        },
        message: s.message.clone(),
    }
}

impl UnitSession {
    /// Read through the shadow (this dispatch's own writes) or the committed world.
    fn read<R>(&self, f: impl FnOnce(&JujuView<'_>) -> R) -> CapResult<R> {
        if let Some(s) = self.shadow.lock().unwrap().as_ref() {
            return Ok(f(&s.view()));
        }
        let g = self.world.lock();
        let unit = g
            .state
            .units
            .get(&self.unit)
            .ok_or_else(|| unknown_unit(&self.unit))?;
        Ok(f(&JujuView {
            relations: &g.state.relations,
            secrets: &g.state.secrets,
            unit_state: &unit.state,
            ports: &unit.ports,
        }))
    }

    fn write<R>(&self, f: impl FnOnce(&mut Shadow) -> CapResult<R>) -> CapResult<R> {
        let mut sh = self.shadow.lock().unwrap();
        if sh.is_none() {
            let g = self.world.lock();
            let unit = g
                .state
                .units
                .get(&self.unit)
                .ok_or_else(|| unknown_unit(&self.unit))?;
            *sh = Some(Shadow {
                relations: g.state.relations.clone(),
                secrets: g.state.secrets.clone(),
                unit_state: unit.state.clone(),
                ports: unit.ports.clone(),
            });
        }
        f(sh.as_mut().unwrap())
    }

    fn leader(&self) -> bool {
        self.world.lock().state.leader.as_deref() == Some(self.unit.as_str())
    }

    /// The running action, for the `action-*` calls; they are refused outside an action.
    fn action<R>(&self, call: &str, f: impl FnOnce(&mut super::ActionState) -> R) -> CapResult<R> {
        self.checked(call)?;
        let mut g = self.world.lock();
        let a = g
            .state
            .action
            .as_mut()
            .ok_or_else(|| Error::invalid("not running an action"))?;
        Ok(f(a))
    }

    fn checked(&self, call: &str) -> CapResult<()> {
        let mut g = self.world.lock();
        self.fault(&mut g, "juju", call)
    }

    fn app(&self) -> String {
        self.world.lock().state.app.clone()
    }
}

/// Labels are per owner in Juju: every unit can have its own unit-owned secret with the same
/// label (the charm's `database-peers.<app>.unit`), so a label names the application's
/// secret or this unit's own one, never another unit's.
fn owned_label(s: &super::SecretState, me: &str) -> bool {
    match s.owner {
        super::SecretOwnerKind::Application => true,
        super::SecretOwnerKind::Unit => s.owner_name == me,
    }
}

/// Views through this dispatch's uncommitted writes, for the hook-tool stand-in
/// ([`crate::juju_standin`]), whose tools address secrets by id and read whole maps.
impl UnitSession {
    pub(crate) fn secrets_view(&self) -> CapResult<Vec<super::SecretState>> {
        self.read(|sh| sh.secrets.to_vec())
    }

    pub(crate) fn state_view(&self) -> CapResult<Bag> {
        self.read(|sh| sh.unit_state.clone())
    }

    pub(crate) fn ports_view(&self) -> CapResult<Vec<super::PortState>> {
        self.read(|sh| sh.ports.to_vec())
    }

    pub(crate) fn relations_view(&self) -> CapResult<Vec<super::RelationState>> {
        self.read(|sh| sh.relations.to_vec())
    }
}

fn relation_mut(sh: &mut Shadow, id: u32) -> CapResult<&mut super::RelationState> {
    sh.relations
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| Error::not_found(format!("relation {id} not found")))
}

#[async_trait]
impl Juju for UnitSession {
    fn in_memory(&self) -> bool {
        true
    }

    fn identity(&self) -> Identity {
        let g = self.world.lock();
        Identity {
            unit: self.unit.clone(),
            app: g.state.app.clone(),
            unit_number: self.unit_number(),
            model: g.state.model.name.clone(),
            model_uuid: g.state.model.uuid.clone(),
            juju_version: g.state.model.juju_version.clone(),
        }
    }

    async fn is_leader(&self) -> CapResult<bool> {
        self.checked("is-leader")?;
        Ok(self.leader())
    }

    async fn config(&self) -> CapResult<Vec<ConfigEntry>> {
        self.checked("config")?;
        let g = self.world.lock();
        // The defaults hold every option in name order, which is the cases' order: walk them
        // with the cases (no name lookups), the set value winning over the default. A set name
        // the charm does not declare has no case and is left out (the consistency check
        // refuses such a state).
        let mut set = g.state.config.iter().peekable();
        let mut out = Vec::with_capacity(config_defaults().len());
        for ((name, default), &key) in config_defaults().iter().zip(ConfigOption::all()) {
            while set.next_if(|(n, _)| *n < name).is_some() {}
            let value = match set.next_if(|(n, _)| *n == name) {
                Some((_, v)) => Some(v),
                None => default.as_ref(),
            };
            if let Some(v) = value {
                out.push(ConfigEntry {
                    key,
                    value: to_value(v),
                });
            }
        }
        Ok(out)
    }

    async fn unit_status(&self) -> CapResult<Status> {
        self.checked("unit-status")?;
        let g = self.world.lock();
        Ok(to_status(
            &g.state
                .units
                .get(&self.unit)
                .ok_or_else(|| unknown_unit(&self.unit))?
                .status,
        ))
    }

    async fn set_unit_status(&self, status: Status) -> CapResult<()> {
        self.checked("set-unit-status")?;
        let mut g = self.world.lock();
        let now = g.state.now_ms;
        let unit = g
            .state
            .units
            .get_mut(&self.unit)
            .ok_or_else(|| unknown_unit(&self.unit))?;
        let s = StatusState {
            kind: status_kind(status.kind),
            message: status.message,
        };
        // Status is sent at once, not at commit (spec 9.1).
        if unit.status != s {
            unit.status_history.push((now, s.clone()));
        }
        unit.status = s;
        Ok(())
    }

    async fn app_status(&self) -> CapResult<Status> {
        self.checked("app-status")?;
        if !self.leader() {
            return Err(Error::forbidden(
                "only the leader can read the application status",
            ));
        }
        Ok(to_status(&self.world.lock().state.app_status))
    }

    async fn set_app_status(&self, status: Status) -> CapResult<()> {
        self.checked("set-app-status")?;
        if !self.leader() {
            return Err(Error::forbidden(
                "only the leader can set the application status",
            ));
        }
        self.world.lock().state.app_status = StatusState {
            kind: status_kind(status.kind),
            message: status.message,
        };
        Ok(())
    }

    async fn relation_ids(&self, endpoint: String) -> CapResult<Vec<u32>> {
        self.checked("relation-ids")?;
        self.read(|sh| {
            sh.relations
                .iter()
                .filter(|r| r.endpoint == endpoint)
                .map(|r| r.id)
                .collect()
        })
    }

    async fn relation_units(&self, relation_id: u32) -> CapResult<Vec<String>> {
        self.checked("relation-units")?;
        let me = self.unit.clone();
        self.read(|sh| {
            sh.relations
                .iter()
                .find(|r| r.id == relation_id)
                .map(|r| r.units.iter().filter(|u| **u != me).cloned().collect())
                .ok_or_else(|| Error::not_found(format!("relation {relation_id} not found")))
        })?
    }

    async fn relation_remote_app(&self, relation_id: u32) -> CapResult<String> {
        self.checked("relation-remote-app")?;
        self.read(|sh| {
            sh.relations
                .iter()
                .find(|r| r.id == relation_id)
                .map(|r| r.remote_app.clone())
                .ok_or_else(|| Error::not_found(format!("relation {relation_id} not found")))
        })?
    }

    async fn relation_get(&self, relation_id: u32, of: String, app: bool) -> CapResult<Vec<Kv>> {
        self.checked("relation-get")?;
        let my_app = self.app();
        let me = self.unit.clone();
        self.read(|sh| {
            let r = sh
                .relations
                .iter()
                .find(|r| r.id == relation_id)
                .ok_or_else(|| Error::not_found(format!("relation {relation_id} not found")))?;
            if app {
                let is_own = of == my_app;
                if !is_own && of != r.remote_app {
                    return Err(Error::not_found(format!(
                        "application {of} is not in relation {relation_id}"
                    )));
                }
                Ok(r.app_data.get(&of).map(bag_to_kvs).unwrap_or_default())
            } else {
                if of != me && !r.units.contains(&of) {
                    return Err(Error::not_found(format!(
                        "unit {of} is not in relation {relation_id}"
                    )));
                }
                Ok(r.unit_data.get(&of).map(bag_to_kvs).unwrap_or_default())
            }
        })?
    }

    async fn relation_set(&self, relation_id: u32, app: bool, changes: Vec<Kv>) -> CapResult<()> {
        self.checked("relation-set")?;
        if app && !self.leader() {
            return Err(Error::forbidden(
                "only the leader can write the application databag",
            ));
        }
        let owner = if app { self.app() } else { self.unit.clone() };
        self.write(|sh| {
            let r = relation_mut(sh, relation_id)?;
            let bag = if app {
                r.app_data.entry(owner).or_default()
            } else {
                r.unit_data.entry(owner).or_default()
            };
            for kv in changes {
                if kv.value.is_empty() {
                    bag.remove(&kv.key);
                } else {
                    bag.insert(kv.key, kv.value);
                }
            }
            Ok(())
        })
    }

    async fn secret_get(&self, label: String) -> CapResult<Option<Vec<Kv>>> {
        self.checked("secret-get")?;
        let me = self.unit.clone();
        self.read(|sh| {
            sh.secrets
                .iter()
                .find(|s| s.label == label && owned_label(s, &me))
                .map(|s| bag_to_kvs(&s.content))
        })
    }

    async fn secret_add(
        &self,
        label: String,
        owner: SecretOwner,
        content: Vec<Kv>,
    ) -> CapResult<String> {
        self.checked("secret-add")?;
        let (owner_kind, owner_name) = match owner {
            SecretOwner::Application => {
                if !self.leader() {
                    return Err(Error::forbidden(
                        "only the leader can create application-owned secrets",
                    ));
                }
                (super::SecretOwnerKind::Application, self.app())
            }
            SecretOwner::Unit => (super::SecretOwnerKind::Unit, self.unit.clone()),
        };
        if content.is_empty() {
            return Err(Error::invalid("secret content must not be empty"));
        }
        let id = {
            let mut g = self.world.lock();
            use rand::Rng;
            let n = g.rng.next_u64();
            format!("secret:{:020x}", n)
        };
        self.write(|sh| {
            if sh
                .secrets
                .iter()
                .any(|s| s.label == label && s.owner_name == owner_name)
            {
                return Err(Error::conflict(format!(
                    "a secret labelled {label:?} already exists"
                )));
            }
            sh.secrets.push(super::SecretState {
                id: id.clone(),
                label,
                owner: owner_kind,
                owner_name,
                revision: 1,
                content: kvs_to_bag(&content),
            });
            Ok(id.clone())
        })
    }

    async fn secret_set(&self, label: String, content: Vec<Kv>) -> CapResult<()> {
        self.checked("secret-set")?;
        let leader = self.leader();
        let me = self.unit.clone();
        self.write(|sh| {
            let s = sh
                .secrets
                .iter_mut()
                .find(|s| s.label == label && owned_label(s, &me))
                .ok_or_else(|| Error::not_found(format!("secret {label:?} not found")))?;
            let may = match s.owner {
                super::SecretOwnerKind::Application => leader,
                super::SecretOwnerKind::Unit => s.owner_name == me,
            };
            if !may {
                return Err(Error::forbidden(format!(
                    "secret {label:?} is not owned by this unit"
                )));
            }
            let new = kvs_to_bag(&content);
            if new != s.content {
                s.content = new;
                s.revision += 1;
            }
            Ok(())
        })
    }

    async fn secret_remove(&self, id: String, revision: Option<u32>) -> CapResult<()> {
        self.checked("secret-remove")?;
        self.write(|sh| {
            let pos = sh
                .secrets
                .iter()
                .position(|s| s.id == id)
                .ok_or_else(|| Error::not_found(format!("secret {id} not found")))?;
            if revision.is_none_or(|r| r == sh.secrets[pos].revision) {
                sh.secrets.remove(pos);
            }
            Ok(())
        })
    }

    async fn planned_units(&self) -> CapResult<u32> {
        self.checked("planned-units")?;
        let g = self.world.lock();
        Ok(g.state
            .planned_units
            .unwrap_or_else(|| g.state.units.values().filter(|u| !u.dying).count() as u32))
    }

    async fn set_workload_version(&self, version: String) -> CapResult<()> {
        self.checked("set-workload-version")?;
        let mut g = self.world.lock();
        g.state
            .units
            .get_mut(&self.unit)
            .ok_or_else(|| unknown_unit(&self.unit))?
            .workload_version = version;
        Ok(())
    }

    async fn state_get(&self, key: String) -> CapResult<Option<String>> {
        self.checked("state-get")?;
        self.read(|sh| sh.unit_state.get(&key).cloned())
    }

    async fn state_set(&self, key: String, value: String) -> CapResult<()> {
        self.checked("state-set")?;
        self.write(|sh| {
            sh.unit_state.insert(key, value);
            Ok(())
        })
    }

    async fn state_delete(&self, key: String) -> CapResult<()> {
        self.checked("state-delete")?;
        self.write(|sh| {
            sh.unit_state.remove(&key);
            Ok(())
        })
    }

    async fn action_params(&self) -> CapResult<Vec<NamedValue>> {
        self.action("action-params", |a| {
            a.params
                .iter()
                .map(|(n, v)| NamedValue {
                    name: n.clone(),
                    value: to_value(v),
                })
                .collect()
        })
    }

    async fn action_set(&self, results: Vec<Kv>) -> CapResult<()> {
        self.action("action-set", |a| {
            a.results
                .extend(results.into_iter().map(|kv| (kv.key, kv.value)))
        })
    }

    async fn action_fail(&self, message: String) -> CapResult<()> {
        self.action("action-fail", |a| a.failed = Some(message))
    }

    async fn action_log(&self, message: String) -> CapResult<()> {
        self.action("action-log", |a| a.logs.push(message))
    }

    async fn set_ports(&self, ports: Vec<Port>) -> CapResult<()> {
        self.checked("set-ports")?;
        self.write(|sh| {
            let mut p: Vec<_> = ports
                .into_iter()
                .map(|p| super::PortState {
                    protocol: p.protocol,
                    port: p.port,
                })
                .collect();
            p.sort();
            p.dedup();
            sh.ports = p;
            Ok(())
        })
    }

    async fn log(&self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        };
        self.logs.lock().unwrap().push(super::LogLine {
            level: level.into(),
            message,
        });
    }

    async fn commit(&self) -> anyhow::Result<()> {
        let Some(sh) = self.shadow.lock().unwrap().take() else {
            return Ok(());
        };
        let mut g = self.world.lock();
        let mut changes = Vec::new();
        for new in &sh.relations {
            let old = g.state.relations.iter().find(|r| r.id == new.id);
            let empty = Bag::new();
            for (owner, bag) in new.app_data.iter().chain(new.unit_data.iter()) {
                let before = old
                    .and_then(|o| o.app_data.get(owner).or_else(|| o.unit_data.get(owner)))
                    .unwrap_or(&empty);
                if before != bag {
                    changes.push(BagChange {
                        relation_id: new.id,
                        owner: owner.clone(),
                    });
                }
            }
        }
        g.state.relations = sh.relations;
        g.state.secrets = sh.secrets;
        let unit = g
            .state
            .units
            .get_mut(&self.unit)
            .ok_or_else(|| anyhow::anyhow!("unit {} left the model", self.unit))?;
        unit.state = sh.unit_state;
        unit.ports = sh.ports;
        *self.changes.lock().unwrap() = changes;
        Ok(())
    }
}
