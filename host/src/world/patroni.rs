//! The world's Patroni: a behavioural model, not canned answers.
//!
//! A member exists once its pod carries the cluster labels and its `postgresql` Pebble service
//! runs. It starts (`starting`), then runs after `start_ms` of virtual time. The first member to
//! run in an uninitialised cluster bootstraps it and leads; later members stream from the
//! leader. A leader that stops is replaced after `ttl_ms` by the most advanced replica. Patroni
//! labels pods with `role` and keeps the DCS Endpoints (`<scope>`, `-config`, `-sync`).

use async_trait::async_trait;

use super::{EndpointsState, MemberState, ServiceRun, UnitSession, WorldState};
use crate::bindings::Error;
use crate::bindings::patroni::{Auth, Cluster, ConfigPatch, Health, Member, Param, Target};
use crate::bindings::types::Kv;
use crate::capability::{CapResult, Patroni};

pub(crate) fn scope(state: &WorldState) -> String {
    format!("patroni-{}", state.app)
}

/// Whether the pod is a Patroni member right now. Takes the parts it reads (not the whole
/// state) so that `tick` can walk the pods while it updates the members.
///
/// `tick` runs on most capability calls, so this allocates nothing: the scope is compared as
/// `patroni-<app>` in place and the unit name is built in the caller's buffer.
fn eligible(
    pod: &super::PodState,
    pod_name: &str,
    units: &std::collections::BTreeMap<String, super::UnitState>,
    app: &str,
    unit_buf: &mut String,
) -> bool {
    let labelled = pod.labels.get("application").map(String::as_str) == Some("patroni")
        && pod
            .labels
            .get("cluster-name")
            .and_then(|c| c.strip_prefix("patroni-"))
            == Some(app);
    if !labelled {
        return false;
    }
    unit_buf.clear();
    match pod_name.rsplit_once('-') {
        Some((a, n)) => {
            unit_buf.push_str(a);
            unit_buf.push('/');
            unit_buf.push_str(n);
        }
        None => unit_buf.push_str(pod_name),
    }
    units.get(unit_buf.as_str()).is_some_and(|u| {
        u.pebble.reachable && u.pebble.running.get("postgresql") == Some(&ServiceRun::Active)
    })
}

/// Set a string field only when it changes: `tick` runs on every capability call and would
/// otherwise reallocate every member's role each time.
fn set(field: &mut String, value: &str) {
    if field != value {
        *field = value.into();
    }
}

fn is_up(m: &MemberState) -> bool {
    matches!(m.state.as_str(), "running" | "streaming")
}

/// Move the model forward to `state.now_ms`.
pub(crate) fn tick(state: &mut WorldState) {
    let now = state.now_ms;
    let mut unit_buf = String::new();
    // Members come and go with their pods' labels and services.
    for (pod, pod_state) in &state.kubernetes.pods {
        let ok = eligible(pod_state, pod, &state.units, &state.app, &mut unit_buf);
        let p = &mut state.patroni;
        match (ok, p.members.get_mut(pod)) {
            (true, None) => {
                p.members.insert(
                    pod.clone(),
                    MemberState {
                        role: "replica".into(),
                        state: "starting".into(),
                        since_ms: now,
                        timeline: 1,
                        lag: 0,
                        pending_restart: false,
                    },
                );
            }
            (true, Some(m)) if m.state == "stopped" => {
                *m = MemberState {
                    role: "replica".into(),
                    state: "starting".into(),
                    since_ms: now,
                    timeline: m.timeline,
                    lag: 0,
                    pending_restart: false,
                };
            }
            (false, Some(m)) if m.state != "stopped" => {
                if m.role == "leader" {
                    p.leader_lost_ms = Some(now);
                }
                m.state = "stopped".into();
                m.role = "replica".into();
                m.since_ms = now;
            }
            _ => {}
        }
    }
    let gone: Vec<String> = state
        .patroni
        .members
        .keys()
        .filter(|m| !state.kubernetes.pods.contains_key(*m))
        .cloned()
        .collect();
    for m in gone {
        if state
            .patroni
            .members
            .remove(&m)
            .is_some_and(|m| m.role == "leader")
        {
            state.patroni.leader_lost_ms = Some(now);
        }
    }

    let p = &mut state.patroni;
    let has_leader = p.members.values().any(|m| m.role == "leader" && is_up(m));
    // Starting members that have had their start time.
    let ready: Vec<String> = p
        .members
        .iter()
        .filter(|(_, m)| m.state == "starting" && now >= m.since_ms + p.start_ms)
        .map(|(n, _)| n.clone())
        .collect();
    let mut leader_now = has_leader;
    for name in ready {
        let m = p.members.get_mut(&name).unwrap();
        if !p.initialized {
            // Bootstrap: this member runs initdb and takes the leader lock.
            m.role = "leader".into();
            m.state = "running".into();
            p.initialized = true;
            p.leader_lost_ms = None;
            leader_now = true;
        } else if leader_now {
            m.role = "replica".into();
            m.state = "streaming".into();
        }
        // Initialised but leaderless: a replica waits for a leader (stays starting).
    }
    // Failover after the TTL.
    if p.initialized && !leader_now {
        let lost = *p.leader_lost_ms.get_or_insert(now);
        if now >= lost + p.ttl_ms {
            let candidate = p
                .members
                .iter()
                .filter(|(_, m)| {
                    m.state == "streaming"
                        || (m.state == "starting" && now >= m.since_ms + p.start_ms)
                })
                .min_by_key(|(n, m)| {
                    (
                        if m.role == "sync_standby" { 0 } else { 1 },
                        m.lag,
                        (*n).clone(),
                    )
                })
                .map(|(n, _)| n.clone());
            if let Some(c) = candidate {
                let tl = p.members.values().map(|m| m.timeline).max().unwrap_or(1) + 1;
                let m = p.members.get_mut(&c).unwrap();
                m.role = "leader".into();
                m.state = "running".into();
                m.timeline = tl;
                p.leader_lost_ms = None;
                for (n, m) in p.members.iter_mut() {
                    if *n != c && m.state == "starting" && now >= m.since_ms + p.start_ms {
                        m.state = "streaming".into();
                    }
                    if *n != c {
                        m.timeline = tl;
                    }
                }
            }
        }
    }
    // Synchronous standbys: the first `synchronous_node_count` streaming replicas.
    let sync_n = p
        .dynamic_config
        .get("synchronous_node_count")
        .and_then(|v| v.as_u64())
        .unwrap_or(1) as usize;
    let sync_mode = p
        .dynamic_config
        .get("synchronous_mode")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let mut assigned = 0;
    for m in p.members.values_mut() {
        if m.role == "leader" || !is_up(m) {
            if m.role == "sync_standby" {
                m.role = "replica".into();
            }
            continue;
        }
        let role = if sync_mode && assigned < sync_n {
            assigned += 1;
            "sync_standby"
        } else {
            "replica"
        };
        set(&mut m.role, role);
    }

    // What Patroni writes to Kubernetes: pod role labels and the DCS objects.
    let leader = state
        .patroni
        .members
        .iter()
        .find(|(_, m)| m.role == "leader" && is_up(m))
        .map(|(n, _)| n.clone());
    for (name, m) in &state.patroni.members {
        if let Some(pod) = state.kubernetes.pods.get_mut(name) {
            let role = if m.role == "leader" && is_up(m) {
                Some("primary")
            } else if is_up(m) {
                Some("replica")
            } else {
                None
            };
            match role {
                Some(r) if pod.labels.get("role").map(String::as_str) != Some(r) => {
                    pod.labels.insert("role".into(), r.into());
                }
                Some(_) => {}
                None => {
                    pod.labels.remove("role");
                }
            }
        }
    }
    if state.patroni.initialized {
        let scope = scope(state);
        let mut name = String::with_capacity(scope.len() + 7);
        for suffix in ["", "-config", "-sync"] {
            name.clear();
            name.push_str(&scope);
            name.push_str(suffix);
            if state.kubernetes.endpoints.contains_key(&name) {
                continue;
            }
            let labels: super::Bag = [
                ("application".to_string(), "patroni".to_string()),
                ("cluster-name".to_string(), scope.clone()),
            ]
            .into();
            state.kubernetes.endpoints.insert(
                name.clone(),
                EndpointsState {
                    labels,
                    ..Default::default()
                },
            );
        }
        if let Some(l) = &leader {
            let ep = state.kubernetes.endpoints.get_mut(&scope).unwrap();
            if ep.annotations.get("leader") != Some(l) {
                ep.annotations.insert("leader".into(), l.clone());
            }
        }
    }
}

impl UnitSession {
    /// Resolve a target to a member name, checking reachability and credentials.
    fn patroni_target(
        &self,
        g: &mut super::Inner,
        call: &str,
        at: &Target,
        auth: &Auth,
    ) -> CapResult<String> {
        self.fault(g, "patroni", call)?;
        tick(&mut g.state);
        let st = &g.state;
        let member = match at {
            Target::OwnUnit => self.pod_name(),
            Target::Host(h) => h.split('.').next().unwrap_or(h).to_string(),
            Target::PrimaryService => {
                let svc = format!("{}-primary", st.app);
                let s = st.kubernetes.services.get(&svc).ok_or_else(|| {
                    Error::unreachable(format!(
                        "{svc}.{}.svc.cluster.local: name does not resolve (no such Service)",
                        st.model.name
                    ))
                })?;
                st.kubernetes
                    .pods
                    .iter()
                    .find(|(_, p)| s.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| {
                        Error::unreachable(format!("{svc}: no ready endpoints behind the Service"))
                    })?
            }
        };
        match st.patroni.members.get(&member) {
            Some(m) if m.state != "stopped" => {}
            _ => {
                return Err(Error::unreachable(format!(
                    "{member}:8008: connection refused"
                )));
            }
        }
        // The REST API's basic auth, against the password the charm stored.
        let expected = st
            .secrets
            .iter()
            .find(|s| s.label == format!("database-peers.{}.app", st.app))
            .and_then(|s| s.content.get("patroni-password"));
        if let Some(pw) = expected
            && *pw != auth.password
        {
            return Err(Error::forbidden(format!("{member}:8008: 401 Unauthorized")));
        }
        Ok(member)
    }
}

fn to_member(name: &str, m: &MemberState, app: &str) -> Member {
    let n = name.rsplit('-').next().unwrap_or("0");
    Member {
        name: name.to_string(),
        role: m.role.clone(),
        state: m.state.clone(),
        host: format!("{app}-{n}.{app}-endpoints"),
        lag: (m.role != "leader").then_some(m.lag),
        timeline: Some(m.timeline),
        tags: vec![],
    }
}

fn param_json(p: &Param) -> serde_json::Value {
    match p {
        Param::Text(s) => s.clone().into(),
        Param::Integer(i) => (*i).into(),
        Param::Float(f) => (*f).into(),
        Param::Boolean(b) => (*b).into(),
    }
}

/// Parameters that need a PostgreSQL restart to change.
const RESTART_PARAMS: &[&str] = &[
    "max_connections",
    "shared_buffers",
    "max_worker_processes",
    "max_prepared_transactions",
    "max_wal_senders",
    "max_replication_slots",
    "max_locks_per_transaction",
];

#[async_trait]
impl Patroni for UnitSession {
    fn in_memory(&self) -> bool {
        true
    }

    async fn cluster(&self, at: Target, auth: Auth) -> CapResult<Cluster> {
        let mut g = self.world.lock();
        self.patroni_target(&mut g, "get-cluster", &at, &auth)?;
        let app = g.state.app.clone();
        Ok(Cluster {
            members: g
                .state
                .patroni
                .members
                .iter()
                .filter(|(_, m)| m.state != "stopped")
                .map(|(n, m)| to_member(n, m, &app))
                .collect(),
        })
    }

    async fn health(&self, at: Target, auth: Auth) -> CapResult<Health> {
        let mut g = self.world.lock();
        let member = self.patroni_target(&mut g, "get-health", &at, &auth)?;
        let m = &g.state.patroni.members[&member];
        Ok(Health {
            state: m.state.clone(),
            role: if m.role == "leader" {
                "primary".into()
            } else {
                "replica".into()
            },
            replication_state: (m.state == "streaming").then(|| "streaming".into()),
            pending_restart: m.pending_restart,
        })
    }

    async fn patch_config(&self, at: Target, auth: Auth, patch: ConfigPatch) -> CapResult<()> {
        let mut g = self.world.lock();
        self.patroni_target(&mut g, "patch-config", &at, &auth)?;
        let p = &mut g.state.patroni;
        if !p.dynamic_config.is_object() {
            p.dynamic_config = serde_json::json!({});
        }
        let cfg = p.dynamic_config.as_object_mut().unwrap();
        macro_rules! set {
            ($field:ident, $key:literal) => {
                if let Some(v) = patch.$field {
                    cfg.insert($key.into(), serde_json::json!(v));
                }
            };
        }
        set!(synchronous_node_count, "synchronous_node_count");
        set!(synchronous_mode_strict, "synchronous_mode_strict");
        set!(maximum_lag_on_failover, "maximum_lag_on_failover");
        set!(failsafe_mode, "failsafe_mode");
        set!(max_timelines_history, "max_timelines_history");
        match patch.standby_cluster {
            Some(Some(s)) => {
                cfg.insert(
                    "standby_cluster".into(),
                    serde_json::json!({"host": s.host, "port": s.port}),
                );
            }
            Some(None) => {
                cfg.remove("standby_cluster");
            }
            None => {}
        }
        let pg = cfg
            .entry("postgresql")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(v) = patch.remove_data_directory_on_rewind_failure {
            pg["remove_data_directory_on_rewind_failure"] = v.into();
        }
        if let Some(v) = patch.remove_data_directory_on_diverged_timelines {
            pg["remove_data_directory_on_diverged_timelines"] = v.into();
        }
        let mut needs_restart = false;
        if !patch.parameters.is_empty() {
            let params = pg
                .as_object_mut()
                .unwrap()
                .entry("parameters")
                .or_insert_with(|| serde_json::json!({}));
            for (k, v) in &patch.parameters {
                let new = param_json(v);
                if params.get(k) != Some(&new) {
                    if RESTART_PARAMS.contains(&k.as_str()) && params.get(k).is_some() {
                        needs_restart = true;
                    }
                    params[k] = new;
                }
            }
        }
        if needs_restart {
            for m in p.members.values_mut() {
                m.pending_restart = true;
            }
            g.state.postgresql.pending_restart = true;
        }
        tick(&mut g.state);
        Ok(())
    }

    async fn switchover(
        &self,
        at: Target,
        auth: Auth,
        leader: Option<String>,
        candidate: Option<String>,
    ) -> CapResult<()> {
        let mut g = self.world.lock();
        self.patroni_target(&mut g, "switchover", &at, &auth)?;
        let p = &mut g.state.patroni;
        let current = p
            .members
            .iter()
            .find(|(_, m)| m.role == "leader" && is_up(m))
            .map(|(n, _)| n.clone())
            .ok_or_else(|| Error::invalid("400 no leader to switch over from"))?;
        if leader.as_ref().is_some_and(|l| *l != current) {
            return Err(Error::invalid(
                "400 Switchover could be performed only from a specific leader",
            ));
        }
        let has_sync = p.members.values().any(|m| m.role == "sync_standby");
        let cand = match candidate {
            Some(c) => {
                let m = p.members.get(&c).filter(|m| is_up(m)).ok_or_else(|| {
                    Error::invalid(format!("412 candidate {c} is not a healthy member"))
                })?;
                if has_sync && m.role != "sync_standby" {
                    return Err(Error::invalid(
                        "412 candidate name does not match with sync_standby",
                    ));
                }
                c
            }
            None => p
                .members
                .iter()
                .filter(|(n, m)| **n != current && is_up(m))
                .min_by_key(|(n, m)| (if m.role == "sync_standby" { 0 } else { 1 }, (*n).clone()))
                .map(|(n, _)| n.clone())
                .ok_or_else(|| Error::invalid("412 no good candidates have been found"))?,
        };
        let tl = p.members.values().map(|m| m.timeline).max().unwrap_or(1) + 1;
        for (n, m) in p.members.iter_mut() {
            if *n == cand {
                m.role = "leader".into();
                m.state = "running".into();
            } else if *n == current {
                m.role = "replica".into();
                m.state = "streaming".into();
            }
            m.timeline = tl;
        }
        tick(&mut g.state);
        Ok(())
    }

    async fn restart(&self, at: Target, auth: Auth) -> CapResult<()> {
        let mut g = self.world.lock();
        let member = self.patroni_target(&mut g, "restart", &at, &auth)?;
        if let Some(m) = g.state.patroni.members.get_mut(&member) {
            m.pending_restart = false;
        }
        if g.state.patroni.members.values().all(|m| !m.pending_restart) {
            g.state.postgresql.pending_restart = false;
        }
        Ok(())
    }

    async fn reinitialize(&self, at: Target, auth: Auth) -> CapResult<()> {
        let mut g = self.world.lock();
        let member = self.patroni_target(&mut g, "reinitialize", &at, &auth)?;
        let m = g.state.patroni.members.get_mut(&member).unwrap();
        if m.role == "leader" {
            return Err(Error::invalid("503 I am the leader, can not reinitialize"));
        }
        m.state = "streaming".into();
        m.lag = 0;
        Ok(())
    }
}

#[allow(dead_code)]
fn kv(k: &str, v: &str) -> Kv {
    Kv::new(k, v)
}
