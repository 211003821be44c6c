//! Model mode: a whole deployment in the simulated world.
//!
//! The simulator plays Juju (hook sequencing per unit, spec 9.8), the StatefulSet controller
//! (pods) and the container runtime (restarts), and runs every hook through the same
//! [`Dispatcher`] as production, so deferral and commit semantics are the host's own. It is a
//! pure function of the seed, the story, the unit count and the plugins.
//!
//! Juju runs one hook at a time per unit; units run concurrently. Here each unit has a FIFO of
//! pending hooks and the next unit to run is drawn with the seeded generator. Each dispatch
//! costs some virtual time; a committed databag change queues `relation-changed` on the other
//! units of the relation (never the writer); a failed hook is retried with backoff, as Juju
//! does; `update-status` fires every five minutes, which is what re-emits deferred events on
//! an otherwise quiet unit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::bindings::types::{RelationEvent, StorageEvent};
use crate::bindings::{Event, EventKind, Outcome};
use crate::dispatch::{Dispatcher, QUEUE_KEY, Queue};
use crate::runtime::Runtime;
use crate::world::{
    BagChange, NodeState, OwnerRef, PodState, RelationState, ServiceRun, ServiceState,
    StatefulSetState, StatusKind, UnitState, World, WorldState,
};

pub const PEER: &str = "database-peers";
/// The peer relations a unit enters on creation, with their ids.
const PEER_RELATIONS: &[(&str, u32)] = &[(PEER, 1), ("restart", 2), ("upgrade", 3)];
const UPDATE_STATUS_EVERY_MS: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Story {
    /// Deploy N units and converge.
    Deploy,
    /// Deploy 3, scale to 5, then to 2.
    Scale,
    /// Deploy, then move Juju leadership to another unit.
    LeaderChange,
    /// Deploy, then the primary's workload container dies and comes back.
    Failover,
    /// Deploy, then a pod is recreated (labels lost, Pebble plan empty).
    PodRestart,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub app: String,
    pub units: u32,
    pub seed: u64,
    pub story: Story,
    /// Bounds: virtual time and number of dispatches.
    pub max_virtual_ms: u64,
    pub max_dispatches: usize,
    /// Faults active from the start for `fault_window_ms` of virtual time, then cleared: the
    /// deployment must converge once they stop.
    pub faults: Vec<crate::world::Fault>,
    pub fault_window_ms: u64,
    /// Work out which flowchart nodes each dispatch of a charted hook reached
    /// ([`SimReport::flowchart_nodes`]): traces on, and a copy of the state before each
    /// dispatch, so it costs time; `fuzz --model` turns it on.
    pub coverage: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            app: "postgresql-k8s".into(),
            units: 3,
            seed: 1,
            story: Story::Deploy,
            max_virtual_ms: 4 * 3600 * 1000,
            max_dispatches: 5000,
            faults: Vec::new(),
            fault_window_ms: 0,
            coverage: false,
        }
    }
}

/// One dispatch, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub t_ms: u64,
    pub unit: String,
    pub event: String,
    /// `done`, `defer`, `no plugin`, `error: ...`; re-emitted events are listed in `reemitted`.
    pub outcome: String,
    pub reemitted: Vec<String>,
    pub status: String,
}

/// A story step (what happened to the deployment), shown in the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Happening {
    pub t_ms: u64,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitSummary {
    pub unit: String,
    pub leader: bool,
    pub status: String,
    pub member: String,
    pub deferred: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub story: Story,
    /// Virtual time of the start (timeline times are absolute).
    pub start_ms: u64,
    pub seed: u64,
    /// The deployment converged and no invariant broke on the way.
    pub converged: bool,
    /// The deployment reached the converged state (invariants aside).
    pub reached: bool,
    pub end_ms: u64,
    pub dispatches: usize,
    pub timeline: Vec<TimelineEntry>,
    pub happenings: Vec<Happening>,
    pub units: Vec<UnitSummary>,
    /// Units that did not converge, with why.
    pub not_converged: Vec<String>,
    pub violations: Vec<String>,
    /// With [`SimConfig::coverage`]: per charted hook, the flowchart nodes its runs reached.
    pub flowchart_nodes: BTreeMap<String, BTreeSet<&'static str>>,
}

#[derive(Debug, Clone)]
struct Pending {
    event: Event,
    not_before_ms: u64,
    /// Consecutive failures of this hook (Juju's retry backoff).
    attempt: u32,
}

pub struct Simulator<'a> {
    runtime: &'a Runtime,
    plugins_dir: PathBuf,
    pub world: World,
    cfg: SimConfig,
    rng: StdRng,
    queues: BTreeMap<String, VecDeque<Pending>>,
    /// Units leaving the model: removed once their queue drains.
    dying: BTreeSet<String>,
    next_update_status_ms: u64,
    timeline: Vec<TimelineEntry>,
    happenings: Vec<Happening>,
    violations: Vec<String>,
    dispatches: usize,
    /// Invariant bookkeeping.
    passwords: BTreeMap<String, String>,
    start_ms: u64,
    next_unit: u32,
    faults_until_ms: u64,
    faults_cleared: bool,
    flowchart_nodes: BTreeMap<String, BTreeSet<&'static str>>,
}

fn peer_event(
    name: &str,
    kind: EventKind,
    id: u32,
    endpoint: &str,
    app: &str,
    remote_unit: Option<&str>,
    departing: Option<&str>,
) -> Event {
    let mut e = Event::bare(name, kind);
    e.relation = Some(RelationEvent {
        name: endpoint.into(),
        id,
        remote_app: Some(app.into()),
        remote_unit: remote_unit.map(String::from),
        departing_unit: departing.map(String::from),
    });
    e
}

impl<'a> Simulator<'a> {
    pub fn new(runtime: &'a Runtime, plugins_dir: impl Into<PathBuf>, cfg: SimConfig) -> Self {
        let mut state = WorldState {
            app: cfg.app.clone(),
            seed: cfg.seed,
            ..WorldState::default()
        };
        // Patroni's timings in the model, in virtual time.
        state.patroni.start_ms = 4_000;
        state.patroni.ttl_ms = 30_000;
        for (i, cpu) in ["4", "4", "8"].iter().enumerate() {
            state.kubernetes.nodes.insert(
                format!("node-{i}"),
                NodeState {
                    cpu: cpu.to_string(),
                    memory: "16Gi".into(),
                },
            );
        }
        state.kubernetes.statefulsets.insert(
            cfg.app.clone(),
            StatefulSetState {
                replicas: 0,
                partition: 0,
                uid: format!("{}-sts-uid", cfg.app),
            },
        );
        // Juju's own Services: `<app>` and the headless `<app>-endpoints` (spec 2.3.3).
        for (name, service_type) in [
            (cfg.app.clone(), "ClusterIP"),
            (format!("{}-endpoints", cfg.app), ""),
        ] {
            state.kubernetes.services.insert(
                name,
                ServiceState {
                    labels: [("app.juju.is/created-by".to_string(), cfg.app.clone())].into(),
                    selector: [("app.kubernetes.io/name".to_string(), cfg.app.clone())].into(),
                    service_type: service_type.into(),
                    ..Default::default()
                },
            );
        }
        for (endpoint, id) in PEER_RELATIONS {
            state.relations.push(RelationState {
                id: *id,
                endpoint: endpoint.to_string(),
                remote_app: cfg.app.clone(),
                ..Default::default()
            });
        }
        state.faults = cfg.faults.clone();
        let now = state.now_ms;
        let faults_until_ms = now + cfg.fault_window_ms;
        Simulator {
            runtime,
            plugins_dir: plugins_dir.into(),
            world: World::new(state),
            rng: StdRng::seed_from_u64(cfg.seed ^ 0x5eed_cafe),
            cfg,
            queues: BTreeMap::new(),
            dying: BTreeSet::new(),
            next_update_status_ms: now + UPDATE_STATUS_EVERY_MS,
            timeline: Vec::new(),
            happenings: Vec::new(),
            violations: Vec::new(),
            dispatches: 0,
            passwords: BTreeMap::new(),
            start_ms: now,
            next_unit: 0,
            faults_until_ms,
            faults_cleared: false,
            flowchart_nodes: BTreeMap::new(),
        }
    }

    fn now(&self) -> u64 {
        self.world.now_ms()
    }

    /// The flowchart nodes each charted run of one dispatch reached. A dispatch's runs share
    /// one before/after pair and the statuses set during the dispatch, so a run re-emitted
    /// beside another charted one is judged on the whole dispatch: coverage here is a guide to
    /// what the stories exercise, not a proof per run.
    fn record_coverage(
        &mut self,
        unit: &str,
        before: &WorldState,
        history_before: usize,
        result: &Result<crate::dispatch::DispatchReport, crate::dispatch::DispatchError>,
    ) {
        use crate::fuzz::coverage::{End, Observation, flowchart, reached};
        let runs = crate::dispatch::runs_of(result);
        if !runs.iter().any(|r| flowchart(&r.event.name).is_some()) {
            return;
        }
        let after = self.world.state();
        // The unit may have left the model in this dispatch.
        let statuses = after
            .units
            .get(unit)
            .map(|u| u.statuses_since(history_before))
            .unwrap_or_default();
        for run in runs {
            if flowchart(&run.event.name).is_none() {
                continue;
            }
            let o = Observation {
                trace: &run.report.trace,
                end: End::of(&run.report.result),
                statuses: &statuses,
                before,
                after: &after,
                unit,
            };
            self.flowchart_nodes
                .entry(run.event.name.clone())
                .or_default()
                .extend(reached(&run.event.name, &o));
        }
    }

    fn happen(&mut self, what: String) {
        let t = self.now();
        self.happenings.push(Happening { t_ms: t, what });
    }

    fn enqueue(&mut self, unit: &str, event: Event, delay_ms: u64) {
        let t = self.now() + delay_ms;
        let q = self.queues.entry(unit.to_string()).or_default();
        // Juju coalesces a relation-changed that is already pending for the same remote.
        if event.kind == EventKind::RelationChanged && q.iter().any(|p| p.event == event) {
            return;
        }
        q.push_back(Pending {
            event,
            not_before_ms: t,
            attempt: 0,
        });
    }

    /// The StatefulSet controller creates a pod; Juju creates the unit and its hooks.
    fn add_unit(&mut self) -> String {
        let n = self.next_unit;
        self.next_unit += 1;
        let app = self.cfg.app.clone();
        let unit = format!("{app}/{n}");
        let pod = format!("{app}-{n}");
        let existing: Vec<String> = self
            .world
            .state()
            .units
            .keys()
            .filter(|u| !self.dying.contains(*u))
            .cloned()
            .collect();
        self.world.with_state(|s| {
            let mut u = UnitState::default();
            // What the workload image ships: the charm reads the version from it (spec 3.2 step 4).
            u.pebble.files.insert(
                "/meta.charmed-postgresql/snap.yaml".into(),
                crate::world::FileState {
                    content: "name: charmed-postgresql\nversion: '14.23'\n".into(),
                    permissions: 0o644,
                    user: "root".into(),
                    group: "root".into(),
                    directory: false,
                },
            );
            u.pebble.files.insert(
                "/meta.charmed-postgresql".into(),
                crate::world::FileState {
                    directory: true,
                    permissions: 0o755,
                    user: "root".into(),
                    group: "root".into(),
                    ..Default::default()
                },
            );
            s.units.insert(unit.clone(), u);
            s.kubernetes.pods.insert(pod.clone(), juju_pod(&app, n));
            if let Some(sts) = s.kubernetes.statefulsets.get_mut(&app) {
                sts.replicas += 1;
            }
            for r in s.relations.iter_mut().filter(|r| r.remote_app == app) {
                r.units.push(unit.clone());
            }
            if s.leader.is_none() {
                s.leader = Some(unit.clone());
            }
        });
        let leader = self.world.state().leader.as_deref() == Some(unit.as_str());
        // Spec 9.8: storage-attached, install, relation-created, leader-elected or
        // leader-settings-changed, config-changed, start; pebble-ready any time after install.
        let mut hooks: Vec<Event> = Vec::new();
        let mut storage = Event::bare("pgdata-storage-attached", EventKind::StorageAttached);
        storage.storage = Some(StorageEvent {
            name: "pgdata".into(),
            index: n,
            location: Some("/var/lib/postgresql/data".into()),
        });
        hooks.push(storage);
        hooks.push(Event::bare("install", EventKind::Install));
        for (endpoint, id) in PEER_RELATIONS {
            hooks.push(peer_event(
                &format!("{endpoint}-relation-created"),
                EventKind::RelationCreated,
                *id,
                endpoint,
                &app,
                None,
                None,
            ));
        }
        hooks.push(if leader {
            Event::bare("leader-elected", EventKind::LeaderElected)
        } else {
            Event::bare("leader-settings-changed", EventKind::LeaderSettingsChanged)
        });
        hooks.push(Event::bare("config-changed", EventKind::ConfigChanged));
        hooks.push(Event::bare("start", EventKind::Start));
        let mut ready = Event::bare("postgresql-pebble-ready", EventKind::PebbleReady);
        ready.workload = Some("postgresql".into());
        // Typically after start; sometimes earlier (the container can win the race).
        let at = if self.rng.random_bool(0.7) {
            hooks.len()
        } else {
            self.rng.random_range(2..=hooks.len())
        };
        hooks.insert(at, ready);
        for h in hooks {
            self.enqueue(&unit, h, 0);
        }
        // Peers see the new unit join, and it sees them.
        for other in existing {
            for (endpoint, id) in PEER_RELATIONS {
                for (who, remote) in [(&other, &unit), (&unit, &other)] {
                    let joined = peer_event(
                        &format!("{endpoint}-relation-joined"),
                        EventKind::RelationJoined,
                        *id,
                        endpoint,
                        &app,
                        Some(remote),
                        None,
                    );
                    let changed = peer_event(
                        &format!("{endpoint}-relation-changed"),
                        EventKind::RelationChanged,
                        *id,
                        endpoint,
                        &app,
                        Some(remote),
                        None,
                    );
                    self.enqueue(who, joined, 0);
                    self.enqueue(who, changed, 0);
                }
            }
        }
        unit
    }

    /// Scale-down of one unit: peers see it depart, it detaches its storage and stops.
    fn remove_unit(&mut self, unit: &str) {
        let app = self.cfg.app.clone();
        self.dying.insert(unit.to_string());
        let others: Vec<String> = self
            .world
            .state()
            .units
            .keys()
            .filter(|u| *u != unit && !self.dying.contains(*u))
            .cloned()
            .collect();
        self.world.with_state(|s| {
            if let Some(u) = s.units.get_mut(unit) {
                u.dying = true;
            }
            for r in s.relations.iter_mut().filter(|r| r.remote_app == app) {
                r.units.retain(|u| u != unit);
            }
            if let Some(sts) = s.kubernetes.statefulsets.get_mut(&app) {
                sts.replicas = sts.replicas.saturating_sub(1);
            }
        });
        for (endpoint, id) in PEER_RELATIONS {
            for other in &others {
                let departed = peer_event(
                    &format!("{endpoint}-relation-departed"),
                    EventKind::RelationDeparted,
                    *id,
                    endpoint,
                    &app,
                    Some(unit),
                    Some(unit),
                );
                self.enqueue(other, departed, 0);
                let departed_self = peer_event(
                    &format!("{endpoint}-relation-departed"),
                    EventKind::RelationDeparted,
                    *id,
                    endpoint,
                    &app,
                    Some(other),
                    Some(unit),
                );
                self.enqueue(unit, departed_self, 0);
            }
        }
        let mut detaching = Event::bare("pgdata-storage-detaching", EventKind::StorageDetaching);
        detaching.storage = Some(StorageEvent {
            name: "pgdata".into(),
            index: 0,
            location: Some("/var/lib/postgresql/data".into()),
        });
        self.enqueue(unit, detaching, 0);
        self.enqueue(unit, Event::bare("stop", EventKind::Stop), 0);
        self.enqueue(unit, Event::bare("remove", EventKind::Remove), 0);
        if self.world.state().leader.as_deref() == Some(unit) {
            self.elect_leader(&others);
        }
    }

    /// Juju gives leadership to another unit.
    fn elect_leader(&mut self, candidates: &[String]) {
        if candidates.is_empty() {
            self.world.with_state(|s| s.leader = None);
            return;
        }
        let new = candidates[self.rng.random_range(0..candidates.len())].clone();
        self.world.with_state(|s| s.leader = Some(new.clone()));
        self.happen(format!("Juju leadership moves to {new}"));
        self.enqueue(
            &new,
            Event::bare("leader-elected", EventKind::LeaderElected),
            0,
        );
        for c in candidates.iter().filter(|c| **c != new) {
            self.enqueue(
                c,
                Event::bare("leader-settings-changed", EventKind::LeaderSettingsChanged),
                0,
            );
        }
    }

    /// Drop units whose leaving hooks have all run.
    fn reap(&mut self) {
        let done: Vec<String> = self
            .dying
            .iter()
            .filter(|u| self.queues.get(*u).is_none_or(|q| q.is_empty()))
            .cloned()
            .collect();
        for unit in done {
            self.dying.remove(&unit);
            self.queues.remove(&unit);
            let pod = unit.replace('/', "-");
            self.world.with_state(|s| {
                s.units.remove(&unit);
                s.kubernetes.pods.remove(&pod);
                for r in s.relations.iter_mut() {
                    r.unit_data.remove(&unit);
                }
            });
            self.world.tick();
            self.happen(format!("{unit} removed (pod {pod} deleted)"));
        }
    }

    /// The workload container restarts: Pebble comes back with an empty plan.
    fn restart_container(&mut self, unit: &str) {
        self.world.with_state(|s| {
            if let Some(u) = s.units.get_mut(unit) {
                u.pebble.reachable = true;
                u.pebble.layers.clear();
                u.pebble.running.clear();
                u.pebble.started_with.clear();
            }
        });
        self.world.tick();
        let mut ready = Event::bare("postgresql-pebble-ready", EventKind::PebbleReady);
        ready.workload = Some("postgresql".into());
        self.enqueue(unit, ready, 0);
    }

    /// A pod is deleted and recreated: Juju's labels only, an empty plan, files kept (storage).
    fn recreate_pod(&mut self, unit: &str) {
        let app = self.cfg.app.clone();
        let n: u32 = unit
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let pod = unit.replace('/', "-");
        self.world.with_state(|s| {
            s.kubernetes.pods.insert(pod.clone(), juju_pod(&app, n));
            if let Some(u) = s.units.get_mut(unit) {
                u.pebble.layers.clear();
                u.pebble.running.clear();
                u.pebble.started_with.clear();
            }
        });
        self.world.tick();
        self.happen(format!(
            "pod {pod} recreated: labels lost, Pebble plan empty"
        ));
        // On Kubernetes a recreated pod restarts the charm container: Juju runs the
        // upgrade-charm sequence, then pebble-ready (spec 9.8).
        for e in [
            Event::bare("upgrade-charm", EventKind::UpgradeCharm),
            Event::bare("config-changed", EventKind::ConfigChanged),
            Event::bare("start", EventKind::Start),
        ] {
            self.enqueue(unit, e, 0);
        }
        let mut ready = Event::bare("postgresql-pebble-ready", EventKind::PebbleReady);
        ready.workload = Some("postgresql".into());
        self.enqueue(unit, ready, 0);
    }

    fn live_units(&self) -> Vec<String> {
        self.world.read(|s| self.live_units_in(s))
    }

    /// Units not leaving, from a state already borrowed (the world's lock is not reentrant).
    fn live_units_in(&self, s: &WorldState) -> Vec<String> {
        s.units
            .keys()
            .filter(|u| !self.dying.contains(*u))
            .cloned()
            .collect()
    }

    /// Run one dispatch. Returns false when nothing is left to run before the bound.
    async fn step(&mut self) -> bool {
        self.reap();
        if !self.faults_cleared && self.now() >= self.faults_until_ms {
            self.faults_cleared = true;
            if !self.cfg.faults.is_empty() {
                self.world.with_state(|s| s.faults.clear());
                self.happen("injected faults stop".into());
            }
        }
        let now = self.now();
        let ready: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| q.front().is_some_and(|p| p.not_before_ms <= now))
            .map(|(u, _)| u.clone())
            .collect();
        if ready.is_empty() {
            // Nothing runnable: jump to the next hook or the next update-status tick.
            let next_hook = self
                .queues
                .values()
                .filter_map(|q| q.front().map(|p| p.not_before_ms))
                .min();
            let next = next_hook
                .unwrap_or(u64::MAX)
                .min(self.next_update_status_ms);
            if next >= now + self.cfg.max_virtual_ms {
                return false;
            }
            if next > now {
                self.world.advance(next - now);
            }
            if self.now() >= self.next_update_status_ms {
                self.next_update_status_ms += UPDATE_STATUS_EVERY_MS;
                for u in self.live_units() {
                    if self
                        .queues
                        .get(&u)
                        .is_none_or(|q| !q.iter().any(|p| p.event.kind == EventKind::UpdateStatus))
                    {
                        self.enqueue(&u, Event::bare("update-status", EventKind::UpdateStatus), 0);
                    }
                }
            }
            return true;
        }
        let unit = ready[self.rng.random_range(0..ready.len())].clone();
        let pending = self.queues.get_mut(&unit).unwrap().pop_front().unwrap();
        let event = pending.event.clone();

        let history_before = self
            .world
            .read(|s| s.units.get(&unit).map_or(0, |u| u.status_history.len()));
        let mut dispatcher = Dispatcher::new(self.runtime, &self.plugins_dir);
        dispatcher.trace = self.cfg.coverage;
        let before = self.cfg.coverage.then(|| self.world.state());
        let (caps, session) = self.world.capabilities(&unit);
        let result = dispatcher.dispatch(&caps, event.clone()).await;
        self.dispatches += 1;
        if let Some(before) = before {
            self.record_coverage(&unit, &before, history_before, &result);
        }
        let (outcome, reemitted) = match &result {
            Ok(r) => {
                let re: Vec<String> = r
                    .runs
                    .iter()
                    .filter(|run| run.event.deferred)
                    .map(|run| format!("{}: {}", run.event.name, outcome_word(&run.report.result)))
                    .collect();
                let own = if r.no_plugin {
                    "no plugin".to_string()
                } else if r.duplicate_skipped {
                    "skipped (already deferred)".to_string()
                } else {
                    r.runs
                        .iter()
                        .rev()
                        .find(|run| !run.event.deferred)
                        .map(|run| outcome_word(&run.report.result))
                        .unwrap_or_else(|| "done".into())
                };
                (own, re)
            }
            Err(e) => (format!("error: {}", e.failure), vec![]),
        };
        match &result {
            Ok(_) => {
                for change in session.committed_changes() {
                    self.fan_out(&unit, &change);
                }
            }
            Err(_) => {
                // Juju retries a failed hook with backoff, before anything else on that unit.
                let delay = (5_000u64 << pending.attempt.min(6)).min(300_000);
                let q = self.queues.get_mut(&unit).unwrap();
                q.push_front(Pending {
                    event: event.clone(),
                    not_before_ms: self.world.now_ms() + delay,
                    attempt: pending.attempt + 1,
                });
            }
        }
        // A hook takes some time; hooks on different units interleave.
        let cost = self.rng.random_range(100..=600);
        self.world.advance(cost);
        let (status, set_status) = self.world.read(|s| match s.units.get(&unit) {
            Some(u) => (
                u.status.to_string(),
                u.status_history.len() > history_before,
            ),
            None => (String::new(), false),
        });
        self.timeline.push(TimelineEntry {
            t_ms: now,
            unit: unit.clone(),
            event: event.name.clone(),
            outcome,
            reemitted,
            status,
        });
        self.check_invariants(set_status.then_some(unit.as_str()));
        true
    }

    /// A committed databag change fires relation-changed on the relation's other units.
    fn fan_out(&mut self, writer: &str, change: &BagChange) {
        let found = self.world.read(|state| {
            let rel = state
                .relations
                .iter()
                .find(|r| r.id == change.relation_id)?;
            let app_bag = change.owner == state.app
                || change.owner == rel.remote_app && !change.owner.contains('/');
            let remote_unit = if app_bag { None } else { Some(writer) };
            let event = peer_event(
                &format!("{}-relation-changed", rel.endpoint),
                EventKind::RelationChanged,
                rel.id,
                &rel.endpoint,
                &rel.remote_app,
                remote_unit,
                None,
            );
            Some((event, rel.units.clone()))
        });
        let Some((event, units)) = found else { return };
        let targets: Vec<String> = units
            .into_iter()
            .filter(|u| u != writer && !self.dying.contains(u))
            .collect();
        for t in targets {
            self.enqueue(&t, event.clone(), 0);
        }
    }

    fn check_invariants(&mut self, set_by: Option<&str>) {
        let (t, found, passwords) = self.world.read(|s| {
            let mut found = Vec::new();
            let pd_app = peer_app_bag_ref(s);
            let initialised = pd_app.is_some_and(|b| b.contains_key("cluster_initialised"));
            // endpoints never holds a duplicate
            if let Some(raw) = pd_app.and_then(|b| b.get("endpoints"))
                && let Ok(list) = serde_json::from_str::<Vec<String>>(raw)
            {
                let set: BTreeSet<_> = list.iter().collect();
                if set.len() != list.len() {
                    found.push(format!("endpoints holds a duplicate: {raw}"));
                }
            }
            // No unit bootstraps its own cluster before initialisation: only the Juju leader
            // may start Patroni before `cluster_initialised`.
            for (unit, u) in &s.units {
                let runs = u.pebble.running.get("postgresql") == Some(&ServiceRun::Active);
                if runs && !initialised && s.leader.as_deref() != Some(unit.as_str()) {
                    found.push(format!("{unit} started PostgreSQL before the cluster was initialised and is not the leader"));
                }
            }
            // A unit shows Active only when its member runs: checked when a status is *set*
            // (by the unit just dispatched). A status set earlier stays while a dead container
            // runs no hook, in Juju as here; no charm could change it.
            if let Some(unit) = set_by
                && let Some(u) = s.units.get(unit)
                && u.status.kind == StatusKind::Active
            {
                let pod = unit.replace('/', "-");
                let member_runs = s.patroni.members.get(&pod).is_some_and(|m| matches!(m.state.as_str(), "running" | "streaming" | "starting"));
                if !member_runs {
                    found.push(format!("{unit} shows Active ({}) but its Patroni member does not run", u.status));
                }
            }
            let label = format!("database-peers.{}.app", s.app);
            let passwords: Vec<(String, String)> = s
                .secrets
                .iter()
                .find(|x| x.label == label)
                .map(|sec| sec.content.iter().filter(|(k, _)| k.ends_with("-password")).map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            (s.now_ms, found, passwords)
        });
        for what in found {
            self.violate(t, what);
        }
        // Passwords never change once set.
        for (k, v) in passwords {
            match self.passwords.get(&k) {
                Some(old) if *old != v => self.violate(t, format!("{k} changed after it was set")),
                None => {
                    self.passwords.insert(k, v);
                }
                _ => {}
            }
        }
    }

    /// Record a broken invariant once, at the first time it was seen.
    fn violate(&mut self, t: u64, what: String) {
        if !self
            .violations
            .iter()
            .any(|v| v.split_once(": ").is_some_and(|(_, w)| w == what))
        {
            let since = t.saturating_sub(self.start_ms);
            self.violations.push(format!("{}: {what}", clock(since)));
        }
    }

    /// Why each live unit is not converged (empty: converged).
    fn unconverged(&self) -> Vec<String> {
        self.world.read(|s| self.unconverged_in(s))
    }

    fn unconverged_in(&self, s: &WorldState) -> Vec<String> {
        let mut why = Vec::new();
        let pd_app = peer_app_bag(s);
        let endpoints: Vec<String> = pd_app
            .get("endpoints")
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default();
        let leaders = s
            .patroni
            .members
            .values()
            .filter(|m| m.role == "leader" && matches!(m.state.as_str(), "running" | "streaming"))
            .count();
        if leaders != 1 {
            why.push(format!("cluster: {leaders} Patroni leaders"));
        }
        if !pd_app.contains_key("cluster_initialised") {
            why.push("cluster: cluster_initialised is not set".into());
        }
        let live = self.live_units_in(s);
        let want: BTreeSet<String> = live.iter().map(|u| host_of(&s.app, u)).collect();
        let have: BTreeSet<String> = endpoints.iter().cloned().collect();
        if want != have {
            why.push(format!("cluster: endpoints {have:?}, expected {want:?}"));
        }
        for unit in &live {
            let u = &s.units[unit];
            let pod = unit.replace('/', "-");
            let member = s.patroni.members.get(&pod);
            // The statuses agree with Patroni: the leader's unit shows `Primary`, the others an
            // empty Active (spec 3.3.10); nothing degraded.
            let leads = member.is_some_and(|m| m.role == "leader");
            let expected = if leads { "Primary" } else { "" };
            if u.status.kind != StatusKind::Active || u.status.message != expected {
                why.push(format!(
                    "{unit}: status {}, expected active{}",
                    u.status,
                    if leads { ": Primary" } else { "" }
                ));
            }
            if !member.is_some_and(|m| matches!(m.state.as_str(), "running" | "streaming")) {
                why.push(format!(
                    "{unit}: Patroni member {}",
                    member.map(|m| m.state.as_str()).unwrap_or("absent")
                ));
            }
            let deferred = deferred_count(u);
            if deferred > 0 {
                why.push(format!("{unit}: {deferred} deferred event(s)"));
            }
            if self
                .queues
                .get(unit)
                .is_some_and(|q| q.iter().any(|p| p.event.kind != EventKind::UpdateStatus))
            {
                why.push(format!("{unit}: hooks pending"));
            }
        }
        if !self.dying.is_empty() {
            why.push(format!("units still leaving: {:?}", self.dying));
        }
        why
    }

    /// Run until converged (and the story is over) or the bound.
    async fn converge(&mut self, deadline_ms: u64) -> bool {
        loop {
            if self.faults_cleared && self.unconverged().is_empty() {
                return true;
            }
            if self.now() >= deadline_ms
                || self.dispatches >= self.cfg.max_dispatches
                || !self.step().await
            {
                return false;
            }
        }
    }

    pub async fn run(mut self) -> SimReport {
        let start = self.now();
        let deadline = |sim: &Self| sim.now() + sim.cfg.max_virtual_ms;
        let n = if self.cfg.story == Story::Scale {
            3
        } else {
            self.cfg.units
        };
        self.happen(format!("deploy {} with {n} units", self.cfg.app));
        for _ in 0..n {
            self.add_unit();
        }
        let d = deadline(&self);
        let mut converged = self.converge(d).await;
        if converged {
            match self.cfg.story {
                Story::Deploy => {}
                Story::Scale => {
                    self.happen("scale to 5 units".into());
                    self.add_unit();
                    self.add_unit();
                    let d = deadline(&self);
                    converged = self.converge(d).await;
                    if converged {
                        self.happen("scale to 2 units".into());
                        let mut live = self.live_units();
                        live.sort_by_key(|u| {
                            std::cmp::Reverse(
                                u.rsplit('/')
                                    .next()
                                    .and_then(|n| n.parse::<u32>().ok())
                                    .unwrap_or(0),
                            )
                        });
                        for u in live.into_iter().take(3) {
                            self.remove_unit(&u);
                        }
                        let d = deadline(&self);
                        converged = self.converge(d).await;
                    }
                }
                Story::LeaderChange => {
                    let leader = self.world.state().leader.clone().unwrap_or_default();
                    let others: Vec<String> = self
                        .live_units()
                        .into_iter()
                        .filter(|u| *u != leader)
                        .collect();
                    if !others.is_empty() {
                        self.world.with_state(|s| s.leader = None);
                        let mut candidates = others;
                        candidates.push(leader.clone());
                        // Anyone but the old leader wins.
                        let pick = candidates[..candidates.len() - 1].to_vec();
                        self.elect_leader_among(&pick, &candidates);
                    }
                    let d = deadline(&self);
                    converged = self.converge(d).await;
                }
                Story::Failover => {
                    let s = self.world.state();
                    let primary = s
                        .patroni
                        .members
                        .iter()
                        .find(|(_, m)| m.role == "leader")
                        .map(|(p, _)| p.clone());
                    if let Some(pod) = primary {
                        let unit = crate::world::unit_of_pod(&pod);
                        self.happen(format!("the primary {unit}'s workload container dies"));
                        self.world.with_state(|s| {
                            if let Some(u) = s.units.get_mut(&unit) {
                                u.pebble.reachable = false;
                                u.pebble.running.clear();
                            }
                        });
                        self.world.tick();
                        // Kubernetes restarts the container after a back-off.
                        let ttl = self.world.state().patroni.ttl_ms;
                        let back = ttl + 15_000;
                        let until = self.now() + back;
                        while self.now() < until {
                            if !self.step().await {
                                break;
                            }
                        }
                        self.happen(format!(
                            "{unit}'s workload container is back (empty Pebble plan)"
                        ));
                        self.restart_container(&unit);
                    }
                    let d = deadline(&self);
                    converged = self.converge(d).await;
                }
                Story::PodRestart => {
                    let live = self.live_units();
                    let unit = live[self.rng.random_range(0..live.len())].clone();
                    self.recreate_pod(&unit);
                    let d = deadline(&self);
                    converged = self.converge(d).await;
                }
            }
        }
        let s = self.world.state();
        let units = self
            .live_units()
            .into_iter()
            .map(|u| {
                let pod = u.replace('/', "-");
                let member = s
                    .patroni
                    .members
                    .get(&pod)
                    .map(|m| format!("{} {}", m.role, m.state))
                    .unwrap_or_else(|| "-".into());
                UnitSummary {
                    leader: s.leader.as_deref() == Some(u.as_str()),
                    status: s.units[&u].status.to_string(),
                    member,
                    deferred: deferred_count(&s.units[&u]),
                    unit: u,
                }
            })
            .collect();
        SimReport {
            story: self.cfg.story,
            start_ms: start,
            seed: self.cfg.seed,
            converged: converged && self.violations.is_empty(),
            reached: converged,
            end_ms: s.now_ms - start,
            dispatches: self.dispatches,
            not_converged: if converged {
                vec![]
            } else {
                self.unconverged()
            },
            timeline: self.timeline,
            happenings: self.happenings,
            units,
            violations: self.violations,
            flowchart_nodes: self.flowchart_nodes,
        }
    }

    fn elect_leader_among(&mut self, pick: &[String], all: &[String]) {
        let new = pick[self.rng.random_range(0..pick.len())].clone();
        self.world.with_state(|s| s.leader = Some(new.clone()));
        self.happen(format!("Juju leadership moves to {new}"));
        self.enqueue(
            &new,
            Event::bare("leader-elected", EventKind::LeaderElected),
            0,
        );
        for c in all.iter().filter(|c| **c != new) {
            self.enqueue(
                c,
                Event::bare("leader-settings-changed", EventKind::LeaderSettingsChanged),
                0,
            );
        }
    }
}

fn outcome_word(r: &Result<Outcome, crate::runtime::Failure>) -> String {
    match r {
        Ok(Outcome::Done) => "done".into(),
        Ok(Outcome::Defer) => "defer".into(),
        Err(f) => format!("error: {f}"),
    }
}

fn juju_pod(app: &str, n: u32) -> PodState {
    PodState {
        labels: [("app.kubernetes.io/name".to_string(), app.to_string())].into(),
        owner_references: vec![OwnerRef {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: app.into(),
            uid: format!("{app}-sts-uid"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }],
        node_name: Some(format!("node-{}", n % 3)),
        ip: Some(format!("10.1.0.{}", 10 + n)),
        ..Default::default()
    }
}

fn host_of(app: &str, unit: &str) -> String {
    let n = unit.rsplit('/').next().unwrap_or("0");
    format!("{app}-{n}.{app}-endpoints")
}

fn peer_app_bag_ref(s: &WorldState) -> Option<&crate::world::Bag> {
    s.relations
        .iter()
        .find(|r| r.endpoint == PEER)
        .and_then(|r| r.app_data.get(&s.app))
}

fn peer_app_bag(s: &WorldState) -> BTreeMap<String, String> {
    s.relations
        .iter()
        .find(|r| r.endpoint == PEER)
        .and_then(|r| r.app_data.get(&s.app).cloned())
        .unwrap_or_default()
}

fn deferred_count(u: &UnitState) -> usize {
    u.state
        .get(QUEUE_KEY)
        .and_then(|raw| Queue::parse(raw).ok())
        .map(|q| q.notices.len())
        .unwrap_or(0)
}

/// `mm:ss.mmm` from the start of the run.
pub fn clock(ms: u64) -> String {
    format!(
        "{:02}:{:02}.{:03}",
        ms / 60_000,
        (ms / 1000) % 60,
        ms % 1000
    )
}

impl SimReport {
    /// The timeline and the final table, as text.
    pub fn render(&self) -> String {
        let start_ms = self.start_ms;
        let mut out = String::new();
        let mut happenings = self.happenings.iter().peekable();
        for e in &self.timeline {
            while let Some(h) = happenings.next_if(|h| h.t_ms <= e.t_ms) {
                out.push_str(&format!("{}  ** {}\n", clock(h.t_ms - start_ms), h.what));
            }
            let re = if e.reemitted.is_empty() {
                String::new()
            } else {
                format!("  [re-emitted: {}]", e.reemitted.join(", "))
            };
            out.push_str(&format!(
                "{}  {:<18} {:<38} {:<10} {}{}\n",
                clock(e.t_ms - start_ms),
                e.unit,
                e.event,
                e.outcome,
                e.status,
                re
            ));
        }
        for h in happenings {
            out.push_str(&format!("{}  ** {}\n", clock(h.t_ms - start_ms), h.what));
        }
        out.push_str(&format!(
            "\n{:<18} {:<7} {:<34} {:<24} {}\n",
            "unit", "leader", "status", "patroni", "deferred"
        ));
        for u in &self.units {
            out.push_str(&format!(
                "{:<18} {:<7} {:<34} {:<24} {}\n",
                u.unit,
                if u.leader { "*" } else { "" },
                u.status,
                u.member,
                u.deferred
            ));
        }
        out.push_str(&format!(
            "\nstory {:?}, seed {}: {} after {} dispatches, {} of virtual time\n",
            self.story,
            self.seed,
            if self.converged {
                "converged"
            } else if self.reached {
                "converged but BROKE INVARIANTS"
            } else {
                "DID NOT CONVERGE"
            },
            self.dispatches,
            clock(self.end_ms)
        ));
        for w in &self.not_converged {
            out.push_str(&format!("  not converged: {w}\n"));
        }
        for v in &self.violations {
            out.push_str(&format!("  invariant broken: {v}\n"));
        }
        out
    }
}

/// A JSON list of strings as Python's `json.dumps` writes it (`["a", "b"]`), the format of
/// the charm's `endpoints` key.
pub fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(i).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(", "))
}
