//! Shared fixtures of the hook scenario tests: a deployment world, a dispatch harness running
//! the real plugins from `target/plugins`, and trace/status helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use charm_host::bindings::types::RelationEvent;
use charm_host::bindings::{Event, EventKind, Outcome};
use charm_host::dispatch::{DispatchError, DispatchReport, Dispatcher, EventRun};
use charm_host::runtime::{Limits, Runtime, RuntimeConfig, TraceEntry};
use charm_host::world::*;

pub const APP: &str = "postgresql-k8s";
pub const PEER_ID: u32 = 1;
pub const UPGRADE_ID: u32 = 2;
pub const RESTART_ID: u32 = 3;

pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn plugins_dir() -> PathBuf {
    let dir = root().join("target/plugins");
    assert!(
        dir.join("leader-elected.wasm").exists(),
        "run `cargo xtask build` first: {} has no plugins",
        dir.display()
    );
    dir
}

pub fn unit(n: usize) -> String {
    format!("{APP}/{n}")
}

pub fn pod(n: usize) -> String {
    format!("{APP}-{n}")
}

pub fn host(n: usize) -> String {
    format!("{APP}-{n}.{APP}-endpoints")
}

pub fn bag(pairs: &[(&str, &str)]) -> Bag {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn sts_owner() -> OwnerRef {
    OwnerRef {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: APP.into(),
        uid: "6c1f4d7e-sts".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A freshly deployed application of `n` units (unit 0 leads): pods with owner references on
/// one node, Juju's Services, the peer, upgrade and restart relations with every unit, Pebble
/// up with the workload's snap metadata. Nothing has run yet.
pub fn deployment(n: usize) -> WorldState {
    let mut s = WorldState {
        app: APP.into(),
        leader: Some(unit(0)),
        ..Default::default()
    };
    let units: Vec<String> = (0..n).map(unit).collect();
    for u in &units {
        let mut us = UnitState::default();
        us.pebble.files.insert(
            "/meta.charmed-postgresql/snap.yaml".into(),
            FileState {
                content: "name: charmed-postgresql\nversion: '14.23'\n".into(),
                permissions: 0o644,
                user: "root".into(),
                group: "root".into(),
                directory: false,
            },
        );
        s.units.insert(u.clone(), us);
    }
    for (id, endpoint) in [
        (PEER_ID, "database-peers"),
        (UPGRADE_ID, "upgrade"),
        (RESTART_ID, "restart"),
    ] {
        s.relations.push(RelationState {
            id,
            endpoint: endpoint.into(),
            remote_app: APP.into(),
            units: units.clone(),
            ..Default::default()
        });
    }
    for i in 0..n {
        s.kubernetes.pods.insert(
            pod(i),
            PodState {
                labels: bag(&[("app.kubernetes.io/name", APP)]),
                owner_references: vec![sts_owner()],
                node_name: Some("node-1".into()),
                ip: Some(format!("10.1.0.{}", 10 + i)),
                ..Default::default()
            },
        );
    }
    s.kubernetes.nodes.insert(
        "node-1".into(),
        NodeState {
            cpu: "4".into(),
            memory: "16Gi".into(),
        },
    );
    for svc in [APP.to_string(), format!("{APP}-endpoints")] {
        s.kubernetes.services.insert(
            svc,
            ServiceState {
                labels: bag(&[
                    ("app.kubernetes.io/name", APP),
                    ("app.juju.is/created-by", APP),
                ]),
                ..Default::default()
            },
        );
    }
    s.kubernetes.statefulsets.insert(
        APP.into(),
        StatefulSetState {
            replicas: n as u32,
            partition: 0,
            uid: "6c1f4d7e-sts".into(),
        },
    );
    s
}

/// Every unit ran `upgrade-relation-created` (`upgrade.idle` is true).
pub fn upgrade_idle(s: &mut WorldState) {
    let units: Vec<String> = s.units.keys().cloned().collect();
    let r = s.relations.iter_mut().find(|r| r.id == UPGRADE_ID).unwrap();
    for u in units {
        r.unit_data
            .entry(u)
            .or_default()
            .insert("state".into(), "idle".into());
    }
}

pub fn peer_app_bag(s: &mut WorldState) -> &mut Bag {
    s.relations
        .iter_mut()
        .find(|r| r.id == PEER_ID)
        .unwrap()
        .app_data
        .entry(APP.into())
        .or_default()
}

pub const PASSWORDS: [(&str, &str); 5] = [
    ("operator-password", "op-pw-0123456789"),
    ("replication-password", "repl-pw-01234567"),
    ("rewind-password", "rewind-pw-012345"),
    ("monitoring-password", "mon-pw-0123456789"),
    ("patroni-password", "pat-pw-012345678"),
];

/// The application secret with every password.
pub fn with_passwords(s: &mut WorldState) {
    s.secrets.push(SecretState {
        id: "secret:app".into(),
        label: format!("database-peers.{APP}.app"),
        owner: SecretOwnerKind::Application,
        owner_name: APP.into(),
        revision: 1,
        content: bag(&PASSWORDS),
    });
}

/// A running, initialised cluster whose Patroni members are the units in `members` (the
/// first one leads): passwords, `endpoints` listing the members, `cluster_initialised`, the
/// members' pods labelled and their `postgresql` services running, the charm's Services.
pub fn initialised(s: &mut WorldState, members: &[usize]) {
    with_passwords(s);
    upgrade_idle(s);
    let eps: Vec<String> = members
        .iter()
        .map(|i| format!("\"{}\"", host(*i)))
        .collect();
    let app_bag = peer_app_bag(s);
    app_bag.insert("endpoints".into(), format!("[{}]", eps.join(", ")));
    app_bag.insert("cluster_initialised".into(), "True".into());
    for (k, &i) in members.iter().enumerate() {
        let p = s.kubernetes.pods.get_mut(&pod(i)).unwrap();
        p.labels.insert("application".into(), "patroni".into());
        p.labels
            .insert("cluster-name".into(), format!("patroni-{APP}"));
        s.units
            .get_mut(&unit(i))
            .unwrap()
            .pebble
            .running
            .insert("postgresql".into(), ServiceRun::Active);
        s.patroni.members.insert(
            pod(i),
            MemberState {
                role: if k == 0 {
                    "leader".into()
                } else {
                    "replica".into()
                },
                state: if k == 0 {
                    "running".into()
                } else {
                    "streaming".into()
                },
                since_ms: 0,
                timeline: 1,
                lag: 0,
                pending_restart: false,
            },
        );
    }
    s.patroni.initialized = true;
    // The leader lock Patroni wrote when it bootstrapped.
    s.kubernetes.endpoints.insert(
        format!("patroni-{APP}"),
        EndpointsState {
            labels: bag(&[
                ("application", "patroni"),
                ("cluster-name", &format!("patroni-{APP}")),
            ]),
            annotations: bag(&[("leader", &pod(members[0]))]),
            ..Default::default()
        },
    );
    for role in ["primary", "replica"] {
        s.kubernetes.services.insert(
            format!(
                "{APP}-{}",
                if role == "primary" {
                    "primary"
                } else {
                    "replicas"
                }
            ),
            ServiceState {
                labels: bag(&[("app.kubernetes.io/name", APP)]),
                selector: bag(&[
                    ("app.kubernetes.io/name", APP),
                    ("cluster-name", &format!("patroni-{APP}")),
                    ("role", role),
                ]),
                service_type: "ClusterIP".into(),
                owner_references: vec![sts_owner()],
                ..Default::default()
            },
        );
    }
}

pub fn fault(call: &str, error: FaultKind, times: Option<u32>) -> Fault {
    Fault {
        call: call.into(),
        error,
        message: None,
        unit: None,
        times,
        probability: None,
    }
}

// ------------------------------------------------------------------ events

pub fn leader_elected() -> Event {
    Event::bare("leader-elected", EventKind::LeaderElected)
}

pub fn pebble_ready() -> Event {
    let mut e = Event::bare("postgresql-pebble-ready", EventKind::PebbleReady);
    e.workload = Some("postgresql".into());
    e
}

fn relation_event(
    name: &str,
    kind: EventKind,
    endpoint: &str,
    id: u32,
    remote_unit: Option<String>,
    departing: Option<String>,
) -> Event {
    let mut e = Event::bare(name, kind);
    e.relation = Some(RelationEvent {
        name: endpoint.into(),
        id,
        remote_app: Some(APP.into()),
        remote_unit,
        departing_unit: departing,
    });
    e
}

pub fn peer_changed(remote: usize) -> Event {
    relation_event(
        "database-peers-relation-changed",
        EventKind::RelationChanged,
        "database-peers",
        PEER_ID,
        Some(unit(remote)),
        None,
    )
}

pub fn peer_departed(departing: usize) -> Event {
    relation_event(
        "database-peers-relation-departed",
        EventKind::RelationDeparted,
        "database-peers",
        PEER_ID,
        Some(unit(departing)),
        Some(unit(departing)),
    )
}

pub fn upgrade_created() -> Event {
    relation_event(
        "upgrade-relation-created",
        EventKind::RelationCreated,
        "upgrade",
        UPGRADE_ID,
        None,
        None,
    )
}

pub fn simple(name: &str, kind: EventKind) -> Event {
    Event::bare(name, kind)
}

pub fn secret_changed() -> Event {
    let mut e = Event::bare("secret-changed", EventKind::SecretChanged);
    e.secret = Some(charm_host::bindings::types::SecretEvent {
        id: "secret:app".into(),
        label: Some(format!("database-peers.{APP}.app")),
        revision: Some(2),
    });
    e
}

// ------------------------------------------------------------------ harness

pub struct Harness {
    pub rt: Runtime,
    pub world: World,
}

impl Harness {
    pub fn new(state: WorldState) -> Harness {
        let cache = root().join("target/plugin-cache-hooks");
        let rt = Runtime::new(RuntimeConfig {
            limits: Limits::default(),
            cache_dir: Some(cache),
            ..Default::default()
        })
        .unwrap();
        let world = World::new(state);
        world.tick();
        Harness { rt, world }
    }

    pub async fn try_dispatch(
        &self,
        unit_n: usize,
        event: Event,
    ) -> Result<DispatchReport, DispatchError> {
        let mut d = Dispatcher::new(&self.rt, plugins_dir());
        d.trace = true;
        let (caps, _) = self.world.capabilities(&unit(unit_n));
        d.dispatch(&caps, event).await
    }

    /// Dispatch and expect success.
    pub async fn dispatch(&self, unit_n: usize, event: Event) -> DispatchReport {
        let name = event.name.clone();
        match self.try_dispatch(unit_n, event).await {
            Ok(r) => r,
            Err(e) => {
                for run in &e.runs {
                    eprintln!("--- {}", run.event.name);
                    for t in &run.report.trace {
                        eprintln!("{}", line(t));
                    }
                }
                panic!("{name} on unit {unit_n} failed: {e}")
            }
        }
    }

    pub fn state(&self) -> WorldState {
        self.world.state()
    }

    pub fn status(&self, n: usize) -> StatusState {
        self.state().units[&unit(n)].status.clone()
    }

    /// Every status the unit went through, oldest first.
    pub fn statuses(&self, n: usize) -> Vec<String> {
        self.state().units[&unit(n)]
            .status_history
            .iter()
            .map(|(_, s)| s.to_string())
            .collect()
    }

    pub fn app_bag(&self) -> Bag {
        self.state()
            .relations
            .iter()
            .find(|r| r.id == PEER_ID)
            .unwrap()
            .app_data
            .get(APP)
            .cloned()
            .unwrap_or_default()
    }

    pub fn unit_bag(&self, n: usize) -> Bag {
        self.state()
            .relations
            .iter()
            .find(|r| r.id == PEER_ID)
            .unwrap()
            .unit_data
            .get(&unit(n))
            .cloned()
            .unwrap_or_default()
    }

    pub fn endpoints(&self) -> Vec<String> {
        serde_json::from_str(
            self.app_bag()
                .get("endpoints")
                .map(String::as_str)
                .unwrap_or("[]"),
        )
        .unwrap()
    }

    pub fn pod_labels(&self, n: usize) -> Bag {
        self.state().kubernetes.pods[&pod(n)].labels.clone()
    }

    pub fn with(&self, f: impl FnOnce(&mut WorldState)) {
        self.world.with_state(f);
    }
}

pub fn line(t: &TraceEntry) -> String {
    format!("{}.{}{} -> {}", t.family, t.call, t.args, t.result)
}

/// The run of the new event (the last run of the dispatch).
pub fn last(report: &DispatchReport) -> &EventRun {
    report.runs.last().expect("the event ran")
}

pub fn outcome(report: &DispatchReport) -> Outcome {
    last(report)
        .report
        .result
        .clone()
        .expect("the plugin returned an outcome")
}

pub fn deferred(report: &DispatchReport) -> bool {
    outcome(report) == Outcome::Defer
}

/// `family.call` of every capability call of the last run, in order.
pub fn calls(report: &DispatchReport) -> Vec<String> {
    last(report)
        .report
        .trace
        .iter()
        .map(|t| format!("{}.{}", t.family, t.call))
        .collect()
}

/// The trace entries of one call of the last run.
pub fn entries<'a>(report: &'a DispatchReport, call: &str) -> Vec<&'a TraceEntry> {
    last(report)
        .report
        .trace
        .iter()
        .filter(|t| format!("{}.{}", t.family, t.call) == call)
        .collect()
}

pub fn count(report: &DispatchReport, call: &str) -> usize {
    entries(report, call).len()
}

/// Whether `first` is called before `second` in the last run (both must be called).
pub fn before(report: &DispatchReport, first: &str, second: &str) -> bool {
    let c = calls(report);
    let a = c
        .iter()
        .position(|x| x == first)
        .unwrap_or_else(|| panic!("{first} not called: {c:?}"));
    let b = c
        .iter()
        .position(|x| x == second)
        .unwrap_or_else(|| panic!("{second} not called: {c:?}"));
    a < b
}

pub fn dump(report: &DispatchReport) -> String {
    last(report)
        .report
        .trace
        .iter()
        .map(line)
        .collect::<Vec<_>>()
        .join("\n")
}
