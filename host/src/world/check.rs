//! The consistency checker: rejects world states Juju (and Kubernetes) could not produce, with
//! a message naming the field.

use std::collections::BTreeSet;

use super::{ConfigValue, SecretOwnerKind, WorldState};

/// Every problem found, each naming its field (e.g. `relations[0].units[1]`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("inconsistent world state:\n  {}", .0.join("\n  "))]
pub struct Inconsistent(pub Vec<String>);

pub fn check(s: &WorldState) -> Result<(), Inconsistent> {
    let mut p = Vec::new();
    if s.app.is_empty() {
        p.push("app: the application name is empty".into());
    }
    for unit in s.units.keys() {
        match unit.rsplit_once('/') {
            Some((app, n)) if app == s.app && n.parse::<u32>().is_ok() => {}
            _ => p.push(format!(
                "units.{unit}: a unit of application {} is named {}/<number>",
                s.app, s.app
            )),
        }
        let pod = unit.replace('/', "-");
        if !s.kubernetes.pods.is_empty() && !s.kubernetes.pods.contains_key(&pod) {
            p.push(format!(
                "units.{unit}: Kubernetes has no pod {pod} for this unit (kubernetes.pods)"
            ));
        }
    }
    if let Some(l) = &s.leader
        && !s.units.contains_key(l)
    {
        p.push(format!("leader: {l} is not one of the units"));
    }
    if let Some(n) = s.planned_units
        && n as usize > s.units.len()
    {
        p.push(format!(
            "planned_units: {n} planned but only {} units exist",
            s.units.len()
        ));
    }

    let defaults = super::juju::config_defaults();
    for (name, v) in &s.config {
        let Some(default) = defaults.get(name) else {
            p.push(format!("config.{name}: the charm has no such option"));
            continue;
        };
        let ok = matches!(
            (default, v),
            (None, _)
                | (Some(ConfigValue::Bool(_)), ConfigValue::Bool(_))
                | (Some(ConfigValue::Int(_)), ConfigValue::Int(_))
                | (
                    Some(ConfigValue::Float(_)),
                    ConfigValue::Float(_) | ConfigValue::Int(_)
                )
                | (Some(ConfigValue::Str(_)), ConfigValue::Str(_))
        );
        if !ok {
            p.push(format!(
                "config.{name}: {v:?} has the wrong type (default is {default:?})"
            ));
        }
    }

    let mut ids = BTreeSet::new();
    for (i, r) in s.relations.iter().enumerate() {
        if !ids.insert(r.id) {
            p.push(format!(
                "relations[{i}].id: relation id {} is used twice",
                r.id
            ));
        }
        if r.endpoint.is_empty() {
            p.push(format!("relations[{i}].endpoint: empty"));
        }
        let peer = r.remote_app == s.app;
        for (j, u) in r.units.iter().enumerate() {
            let Some((app, _)) = u.rsplit_once('/') else {
                p.push(format!(
                    "relations[{i}].units[{j}]: {u:?} is not a unit name"
                ));
                continue;
            };
            if app != r.remote_app {
                p.push(format!(
                    "relations[{i}].units[{j}]: {u} is not a unit of the related application {}",
                    r.remote_app
                ));
            } else if peer && !s.units.contains_key(u) {
                p.push(format!(
                    "relations[{i}].units[{j}]: {u} is a peer but not one of the units"
                ));
            }
        }
        for owner in r.app_data.keys() {
            if *owner != s.app && *owner != r.remote_app {
                p.push(format!(
                    "relations[{i}].app_data.{owner}: not an application of this relation"
                ));
            }
        }
        for owner in r.unit_data.keys() {
            if !s.units.contains_key(owner) && !r.units.contains(owner) {
                p.push(format!(
                    "relations[{i}].unit_data.{owner}: not a unit of this relation"
                ));
            }
        }
    }

    let mut secret_ids = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for (i, sec) in s.secrets.iter().enumerate() {
        if !secret_ids.insert(&sec.id) {
            p.push(format!("secrets[{i}].id: {} is used twice", sec.id));
        }
        if !labels.insert((&sec.owner_name, &sec.label)) {
            p.push(format!(
                "secrets[{i}].label: {:?} is used twice by {}",
                sec.label, sec.owner_name
            ));
        }
        if sec.revision == 0 {
            p.push(format!("secrets[{i}].revision: revisions start at 1"));
        }
        let owner_ok = match sec.owner {
            SecretOwnerKind::Application => sec.owner_name == s.app,
            SecretOwnerKind::Unit => s.units.contains_key(&sec.owner_name),
        };
        if !owner_ok {
            p.push(format!(
                "secrets[{i}].owner_name: {} cannot own a {:?}-owned secret here",
                sec.owner_name, sec.owner
            ));
        }
    }

    for (name, pod) in &s.kubernetes.pods {
        if let Some(node) = &pod.node_name
            && !s.kubernetes.nodes.contains_key(node)
        {
            p.push(format!(
                "kubernetes.pods.{name}.node_name: no node {node} in kubernetes.nodes"
            ));
        }
    }
    for (name, m) in &s.patroni.members {
        if !s.kubernetes.pods.contains_key(name) {
            p.push(format!("patroni.members.{name}: a member without a pod"));
        }
        if !matches!(
            m.role.as_str(),
            "leader" | "standby_leader" | "sync_standby" | "replica"
        ) {
            p.push(format!(
                "patroni.members.{name}.role: {:?} is not a Patroni role",
                m.role
            ));
        }
    }
    let leaders = s
        .patroni
        .members
        .values()
        .filter(|m| m.role == "leader" && m.state != "stopped")
        .count();
    if leaders > 1 {
        p.push(format!(
            "patroni.members: {leaders} running leaders; Patroni holds one leader lock"
        ));
    }
    for (i, f) in s.faults.iter().enumerate() {
        let family = f.call.split('.').next().unwrap_or("");
        if f.call != "*"
            && !["juju", "kubernetes", "pebble", "patroni", "postgresql"].contains(&family)
        {
            p.push(format!(
                "faults[{i}].call: {:?} names no capability family",
                f.call
            ));
        }
        if let Some(pr) = f.probability
            && !(0.0..=1.0).contains(&pr)
        {
            p.push(format!(
                "faults[{i}].probability: {pr} is not between 0 and 1"
            ));
        }
        if let Some(u) = &f.unit
            && !s.units.contains_key(u)
        {
            p.push(format!("faults[{i}].unit: {u} is not one of the units"));
        }
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(Inconsistent(p))
    }
}
