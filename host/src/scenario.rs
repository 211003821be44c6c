//! Scenario mode: one unit, one event (the anchor is ops.testing/Scenario).
//!
//! Input state -> output state, plus the ordered trace of capability calls, the statuses set,
//! the logs and the outcome. The input must pass the consistency checker.

use std::path::Path;

use crate::bindings::types::{ActionEvent, RelationEvent, SecretEvent, StorageEvent};
use crate::bindings::{Event, EventKind, Outcome};
use crate::dispatch::{DispatchError, DispatchReport, Dispatcher, kind_of_hook};
use crate::runtime::{Runtime, TraceEntry};
use crate::world::{LogLine, StatusState, World, WorldState, check};

/// Details for events that carry them; unset fields are derived from the state.
#[derive(Debug, Clone, Default)]
pub struct EventArgs {
    pub relation_id: Option<u32>,
    pub remote_unit: Option<String>,
    pub departing_unit: Option<String>,
    pub secret_label: Option<String>,
    pub secret_id: Option<String>,
}

/// Build the event named `name` for `unit` as Juju would send it in this state.
pub fn event_for(
    state: &WorldState,
    unit: &str,
    name: &str,
    args: &EventArgs,
) -> anyhow::Result<Event> {
    if let Some(action) = name.strip_prefix("actions/") {
        let mut e = Event::bare(action, EventKind::Action);
        e.action = Some(ActionEvent {
            name: action.into(),
            uuid: "scenario".into(),
            params: vec![],
        });
        return Ok(e);
    }
    let name = name.strip_prefix("hooks/").unwrap_or(name);
    let kind = kind_of_hook(name);
    let mut e = Event::bare(name, kind);
    match kind {
        EventKind::RelationCreated
        | EventKind::RelationJoined
        | EventKind::RelationChanged
        | EventKind::RelationDeparted
        | EventKind::RelationBroken => {
            let endpoint = [
                "-relation-created",
                "-relation-joined",
                "-relation-changed",
                "-relation-departed",
                "-relation-broken",
            ]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
            let rel = match args.relation_id {
                Some(id) => state.relations.iter().find(|r| r.id == id),
                None => state.relations.iter().find(|r| r.endpoint == endpoint),
            }
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "event {name}: the state has no {endpoint} relation (relations[].endpoint)"
                )
            })?;
            let remote_unit = args
                .remote_unit
                .clone()
                .or_else(|| rel.units.iter().find(|u| *u != unit).cloned());
            e.relation = Some(RelationEvent {
                name: rel.endpoint.clone(),
                id: rel.id,
                remote_app: Some(rel.remote_app.clone()),
                remote_unit: if kind == EventKind::RelationBroken {
                    None
                } else {
                    remote_unit
                },
                departing_unit: args.departing_unit.clone(),
            });
        }
        EventKind::PebbleReady
        | EventKind::PebbleCustomNotice
        | EventKind::PebbleCheckFailed
        | EventKind::PebbleCheckRecovered => {
            e.workload = Some(
                name.split("-pebble-")
                    .next()
                    .unwrap_or("postgresql")
                    .to_string(),
            );
        }
        EventKind::StorageAttached | EventKind::StorageDetaching => {
            let storage = name.split("-storage-").next().unwrap_or("pgdata");
            e.storage = Some(StorageEvent {
                name: storage.into(),
                index: 0,
                location: Some("/var/lib/postgresql/data".into()),
            });
        }
        EventKind::SecretChanged
        | EventKind::SecretRemove
        | EventKind::SecretExpired
        | EventKind::SecretRotate => {
            let sec = match (&args.secret_id, &args.secret_label) {
                (Some(id), _) => state.secrets.iter().find(|s| s.id == *id),
                (None, Some(l)) => state.secrets.iter().find(|s| s.label == *l),
                (None, None) => state.secrets.first(),
            }
            .ok_or_else(|| {
                anyhow::anyhow!("event {name}: no matching secret in the state (secrets[])")
            })?;
            e.secret = Some(SecretEvent {
                id: sec.id.clone(),
                label: Some(sec.label.clone()).filter(|l| !l.is_empty()),
                revision: Some(sec.revision),
            });
        }
        _ => {}
    }
    Ok(e)
}

/// The result of one scenario run.
#[derive(Debug)]
pub struct ScenarioOutput {
    pub unit: String,
    pub event: Event,
    /// The input state ([`run`]), or the part of it the caller kept ([`run_keeping`]).
    pub input: WorldState,
    pub output: WorldState,
    pub result: Result<DispatchReport, DispatchError>,
    /// Unit statuses set during the run, in order.
    pub statuses: Vec<StatusState>,
    pub logs: Vec<LogLine>,
}

impl ScenarioOutput {
    /// The outcome of the scenario's own event: `done`, `defer`, `no plugin`, or the failure.
    pub fn outcome(&self) -> String {
        match &self.result {
            Err(e) => format!("failed: {}", e.failure),
            Ok(r) if r.no_plugin => "no plugin".into(),
            Ok(r) if r.duplicate_skipped => "skipped (duplicate of a deferred event)".into(),
            Ok(r) => match r
                .runs
                .iter()
                .rev()
                .find(|run| !run.event.deferred)
                .map(|run| &run.report.result)
            {
                Some(Ok(Outcome::Done)) => "done".into(),
                Some(Ok(Outcome::Defer)) => "defer".into(),
                Some(Err(f)) => format!("failed: {f}"),
                None => "done".into(),
            },
        }
    }

    pub fn deferred(&self) -> bool {
        self.outcome() == "defer"
    }

    /// Every capability call of every run, in order.
    pub fn trace(&self) -> Vec<&TraceEntry> {
        crate::dispatch::runs_of(&self.result)
            .iter()
            .flat_map(|r| r.report.trace.iter())
            .collect()
    }

    /// The calls to one function, `family.call` (e.g. `kubernetes.patch-pod-labels`).
    pub fn calls(&self, name: &str) -> Vec<&TraceEntry> {
        self.trace()
            .into_iter()
            .filter(|t| format!("{}.{}", t.family, t.call) == name)
            .collect()
    }

    /// The final unit status.
    pub fn status(&self) -> &StatusState {
        &self.output.units[&self.unit].status
    }

    /// A unified diff of the state, input to output.
    pub fn diff(&self) -> String {
        let a = serde_yaml::to_string(&strip_history(&self.input)).unwrap_or_default();
        let b = serde_yaml::to_string(&strip_history(&self.output)).unwrap_or_default();
        similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(2)
            .header("input", "output")
            .to_string()
    }
}

/// Status history is reported separately; leaving it out keeps the diff readable.
fn strip_history(s: &WorldState) -> WorldState {
    let mut s = s.clone();
    for u in s.units.values_mut() {
        u.status_history.clear();
    }
    s
}

/// Run `event` on `unit` against `state`. `unit` defaults to the leader, else the first unit.
pub async fn run(
    runtime: &Runtime,
    plugins_dir: &Path,
    state: WorldState,
    unit: Option<&str>,
    event: Event,
    trace: bool,
) -> anyhow::Result<ScenarioOutput> {
    run_keeping(
        runtime,
        plugins_dir,
        state,
        WorldState::clone,
        unit,
        event,
        trace,
    )
    .await
}

/// [`run`], with `keep(&state)` as the output's `input` instead of a whole copy. The world
/// takes `state` itself; a caller that reads only part of the input (the fuzzer's invariants
/// and coverage) keeps that part, and saves copying and dropping the rest (about 5 % of a
/// leader-elected fuzz execution).
pub async fn run_keeping(
    runtime: &Runtime,
    plugins_dir: &Path,
    state: WorldState,
    keep: impl FnOnce(&WorldState) -> WorldState,
    unit: Option<&str>,
    event: Event,
    trace: bool,
) -> anyhow::Result<ScenarioOutput> {
    check::check(&state)?;
    let unit = unit
        .map(String::from)
        .or_else(|| state.leader.clone())
        .or_else(|| state.units.keys().next().cloned())
        .ok_or_else(|| anyhow::anyhow!("the state has no units"))?;
    if !state.units.contains_key(&unit) {
        anyhow::bail!("unit {unit} is not in the state (units)");
    }
    let before = state.units[&unit].status_history.len();
    let input = keep(&state);
    let world = World::new(state);
    if event.kind == EventKind::Action {
        world.with_state(|s| {
            let a = s.action.get_or_insert_with(Default::default);
            a.name = event.name.clone();
        });
    }
    let (caps, session) = world.capabilities(&unit);
    let mut d = Dispatcher::new(runtime, plugins_dir);
    d.trace = trace;
    let result = d.dispatch(&caps, event.clone()).await;
    let logs = session.logs();
    // The last handles on the world: the output state is moved out, not copied.
    drop((caps, session));
    let output = world.into_state();
    let statuses = output.units[&unit].statuses_since(before);
    Ok(ScenarioOutput {
        unit,
        event,
        input,
        output,
        result,
        statuses,
        logs,
    })
}
