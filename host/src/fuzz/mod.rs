//! `charm-host fuzz`: a plugin in isolation against generated worlds and injected faults.
//!
//! Each execution draws a consistent world and a fault plan from the seed, runs the plugin's
//! event through scenario mode, and checks what must hold whatever the world:
//! - no trap, panic, limit or timeout (a plugin *error* is a legitimate hook failure);
//! - the capability calls stay inside what the hook may do: no leader-only write attempted by
//!   a non-leader, no Kubernetes write outside the application's own objects;
//! - every status set is in the spec's catalogue (section 8);
//! - hook invariants: `cluster_initialised` set only after the member started and the primary
//!   endpoint answered; passwords never replaced once set; `endpoints` without duplicates.
//!
//! A failure is minimised (faults, then units, then databag keys dropped while it persists)
//! and written as a state file that `charm-host scenario` replays.
//!
//! Progress: executions per second and the flowchart nodes reached (`coverage`, for the two
//! charted hooks); the run ends by listing the nodes never reached.

pub mod catalogue;
pub mod coverage;
pub mod targets;
pub mod worlds;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::runtime::{Failure, Runtime};
use crate::scenario::{self, ScenarioOutput};
use crate::world::{WorldState, check};

pub struct FuzzConfig {
    pub plugin: String,
    pub seed: u64,
    pub iterations: Option<u64>,
    pub duration: Option<Duration>,
    pub plugins_dir: PathBuf,
    /// Where minimised reproductions go.
    pub out_dir: PathBuf,
    /// Print a progress line this often, and the flowchart coverage at the end (none: quiet,
    /// but for failures).
    pub progress: Option<Duration>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FuzzFailure {
    pub seed: u64,
    pub invariant: String,
    pub reproduction: PathBuf,
    pub unit: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FuzzSummary {
    pub executions: u64,
    pub per_second: f64,
    pub failures: Vec<FuzzFailure>,
    /// `--model`: distinct stories reached; `--plugin`: flowchart nodes reached.
    pub behaviours: usize,
    /// `--plugin` with a flowchart: nodes reached, nodes in the chart, the ids not reached.
    pub flowchart: Option<(usize, usize, Vec<String>)>,
}

impl FuzzSummary {
    pub fn line(&self) -> String {
        format!(
            "fuzz: {} executions, {:.0} per second, {} failures",
            self.executions,
            self.per_second,
            self.failures.len()
        )
    }
}

static EMPTY_BAG: crate::world::Bag = crate::world::Bag::new();

fn peer_app_bag(s: &WorldState) -> &crate::world::Bag {
    s.relations
        .iter()
        .find(|r| r.endpoint == "database-peers")
        .and_then(|r| r.app_data.get(&s.app))
        .unwrap_or(&EMPTY_BAG)
}

fn app_passwords(s: &WorldState) -> &crate::world::Bag {
    // The label is `database-peers.<app>.app`, matched without building it.
    s.secrets
        .iter()
        .find(|x| {
            x.label
                .strip_prefix("database-peers.")
                .and_then(|l| l.strip_suffix(".app"))
                == Some(s.app.as_str())
        })
        .map(|x| &x.content)
        .unwrap_or(&EMPTY_BAG)
}

/// The part of an input state that [`violation`] and the coverage read: the application, its
/// leader, the peer relation's application databag and the application's password secret.
/// The fuzzer keeps this as a run's `input` instead of a whole copy of the state (copying
/// and dropping the rest was about 5 % of a leader-elected execution); a failure's
/// reproduction regenerates the whole state from its seed.
pub fn invariant_view(s: &WorldState) -> WorldState {
    // Built from the same lookups the invariants make, so the view answers them alike.
    let (peer_app, passwords) = (peer_app_bag(s), app_passwords(s));
    WorldState {
        app: s.app.clone(),
        leader: s.leader.clone(),
        relations: vec![crate::world::RelationState {
            endpoint: "database-peers".into(),
            app_data: [(s.app.clone(), peer_app.clone())].into(),
            ..Default::default()
        }],
        secrets: vec![crate::world::SecretState {
            label: format!("database-peers.{}.app", s.app),
            content: passwords.clone(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The first invariant the run broke, if any.
pub fn violation(out: &ScenarioOutput) -> Option<String> {
    for run in crate::dispatch::runs_of(&out.result) {
        if let Err(f) = &run.report.result
            && !matches!(f, Failure::Plugin { .. })
        {
            return Some(format!("sandbox failure ({}): {f}", f.cause()));
        }
    }
    let app = &out.input.app;
    for t in out.trace() {
        if t.result.contains("only the leader") {
            return Some(format!(
                "leader-only write attempted by a non-leader: {}.{}{}",
                t.family, t.call, t.args
            ));
        }
        let k8s_write = matches!(
            t.call.as_ref(),
            "patch-pod-labels"
                | "apply-service"
                | "delete-service"
                | "patch-endpoints-annotations"
                | "delete-endpoints"
                | "set-owner-references"
                | "patch-statefulset-partition"
        );
        if t.family == "kubernetes" && k8s_write {
            // A live trace names the object; a trace read back from a file has only `args`.
            let name = match &t.object {
                Some(o) => o.as_str(),
                None => t.args.split('"').nth(1).unwrap_or(""),
            };
            let patroni_object = name
                .strip_prefix("patroni-")
                .is_some_and(|n| n.starts_with(app.as_str()));
            if !name.starts_with(app.as_str()) && !patroni_object {
                return Some(format!(
                    "Kubernetes write outside the application's objects: {}{}",
                    t.call, t.args
                ));
            }
        }
    }
    for s in &out.statuses {
        if !catalogue::known(s, app) {
            return Some(format!("status not in the spec's catalogue: {s}"));
        }
    }
    let (before, after) = (peer_app_bag(&out.input), peer_app_bag(&out.output));
    if !before.contains_key("cluster_initialised") && after.contains_key("cluster_initialised") {
        let trace = out.trace();
        // The trace shows the generated Debug form: `(Target::OwnUnit, …)`.
        let health_ok = |target: &str| {
            let prefix = format!("(Target::{target}");
            trace
                .iter()
                .any(|t| t.call == "get-health" && t.args.starts_with(&prefix) && t.result == "ok")
        };
        let (started, primary) = (health_ok("OwnUnit"), health_ok("PrimaryService"));
        if !(started && primary) {
            return Some(format!(
                "cluster_initialised set without the member started ({started}) and the primary endpoint answering ({primary})"
            ));
        }
    }
    let (pw_before, pw_after) = (app_passwords(&out.input), app_passwords(&out.output));
    for (k, v) in pw_before {
        if k.ends_with("-password") && pw_after.get(k).is_some_and(|n| n != v) {
            return Some(format!("{k} was replaced after it was set"));
        }
    }
    let dup = |b: &crate::world::Bag| {
        b.get("endpoints")
            .and_then(|r| serde_json::from_str::<Vec<String>>(r).ok())
            .is_some_and(|l| {
                let set: std::collections::BTreeSet<_> = l.iter().collect();
                set.len() != l.len()
            })
    };
    // Unchanged endpoints cannot have gained a duplicate: no need to parse them.
    if before.get("endpoints") != after.get("endpoints") && !dup(before) && dup(after) {
        return Some(format!(
            "endpoints holds a duplicate: {}",
            after["endpoints"]
        ));
    }
    None
}

async fn execute(
    runtime: &Runtime,
    dir: &Path,
    plugin: &str,
    state: WorldState,
    unit: &str,
) -> anyhow::Result<ScenarioOutput> {
    let event = scenario::event_for(&state, unit, plugin, &Default::default())?;
    scenario::run_keeping(runtime, dir, state, invariant_view, Some(unit), event, true).await
}

/// Shrink a failing state while the same invariant still breaks.
async fn minimise(
    runtime: &Runtime,
    dir: &Path,
    plugin: &str,
    mut state: WorldState,
    unit: &str,
    invariant: &str,
) -> WorldState {
    let same = |out: &anyhow::Result<ScenarioOutput>| {
        out.as_ref()
            .ok()
            .and_then(violation)
            .is_some_and(|v| v.split(':').next() == invariant.split(':').next())
    };
    let mut i = 0;
    while i < state.faults.len() {
        let mut s = state.clone();
        s.faults.remove(i);
        if same(&execute(runtime, dir, plugin, s.clone(), unit).await) {
            state = s;
        } else {
            i += 1;
        }
    }
    for other in state
        .units
        .keys()
        .filter(|u| *u != unit && state.leader.as_deref() != Some(u.as_str()))
        .cloned()
        .collect::<Vec<_>>()
    {
        let mut s = state.clone();
        let pod = other.replace('/', "-");
        s.units.remove(&other);
        s.kubernetes.pods.remove(&pod);
        s.patroni.members.remove(&pod);
        for r in s.relations.iter_mut() {
            r.units.retain(|u| *u != other);
            r.unit_data.remove(&other);
        }
        if check::check(&s).is_ok() && same(&execute(runtime, dir, plugin, s.clone(), unit).await) {
            state = s;
        }
    }
    state
}

/// `fuzz --model`: whole stories with random fault schedules. Each execution picks a story, a
/// unit count and a fault plan active for the first minutes; the deployment must keep the
/// cross-unit invariants throughout and converge once the faults stop.
pub async fn run_model(runtime: &Runtime, cfg: &FuzzConfig) -> anyhow::Result<FuzzSummary> {
    use crate::simulate::{SimConfig, Simulator, Story};
    use rand::RngExt;
    // The run owns the plugin directory: no stat per dispatch to notice a hot swap.
    runtime.pin_plugins();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut executions = 0u64;
    let mut failures = Vec::new();
    let mut behaviours = std::collections::BTreeSet::new();
    let mut charts: Vec<coverage::Coverage> = ["leader-elected", "postgresql-pebble-ready"]
        .into_iter()
        .filter_map(coverage::Coverage::new)
        .collect();
    let nodes = |charts: &[coverage::Coverage]| {
        charts
            .iter()
            .map(|c| format!("{} {}/{}", c.plugin(), c.reached(), c.total()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let deadline = cfg.duration.map(|d| started + d);
    let stories = [
        Story::Deploy,
        Story::Scale,
        Story::LeaderChange,
        Story::Failover,
        Story::PodRestart,
    ];
    loop {
        if cfg.iterations.is_some_and(|n| executions >= n)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        let seed = cfg.seed.wrapping_add(executions);
        let mut rng = StdRng::seed_from_u64(seed);
        let story = stories[rng.random_range(0..stories.len())];
        let units = rng.random_range(1..=4);
        let mut faults = worlds::faults(&mut rng);
        // While active, faults fire by chance so the deployment can make progress through them.
        for f in &mut faults {
            f.probability = Some(f.probability.unwrap_or(0.3));
            // A Kubernetes 403 is RBAC (the application not trusted): it lasts until the
            // operator runs `juju trust`, which the model does not play, so it is not a
            // transient fault the deployment must recover from on its own. Flaky API
            // access is drawn as `unreachable` instead.
            if f.error == crate::world::FaultKind::Forbidden
                && (f.call.starts_with("kubernetes.") || f.call == "*")
            {
                f.error = crate::world::FaultKind::Unreachable;
            }
        }
        let sim = SimConfig {
            units,
            seed,
            story,
            faults: faults.clone(),
            fault_window_ms: 15 * 60 * 1000,
            coverage: true,
            ..SimConfig::default()
        };
        let report = Simulator::new(runtime, &cfg.plugins_dir, sim).run().await;
        executions += 1;
        behaviours.insert(format!("{story:?}"));
        for (plugin, nodes) in &report.flowchart_nodes {
            if let Some(c) = charts.iter_mut().find(|c| c.plugin() == plugin) {
                c.record_nodes(nodes.iter().copied());
            }
        }
        if !report.converged {
            let why = report
                .violations
                .first()
                .cloned()
                .or_else(|| {
                    report
                        .not_converged
                        .first()
                        .map(|w| format!("did not converge once faults stopped: {w}"))
                })
                .unwrap_or_default();
            std::fs::create_dir_all(&cfg.out_dir)?;
            let path = cfg.out_dir.join(format!("model-seed-{seed}-faults.yaml"));
            let header = format!(
                "# charm-host fuzz --model: {why}\n# replay: charm-host simulate --story {} --units {units} --seed {seed} --faults {} --fault-window 900\n",
                serde_json::to_value(story)?.as_str().unwrap_or_default(),
                path.display()
            );
            std::fs::write(&path, header + &serde_yaml::to_string(&faults)?)?;
            eprintln!(
                "fuzz: FAILURE seed {seed} ({story:?}, {units} units): {why}\n      reproduction: {}",
                path.display()
            );
            failures.push(FuzzFailure {
                seed,
                invariant: why,
                reproduction: path,
                unit: String::new(),
            });
        }
        if let Some(every) = cfg.progress
            && last.elapsed() >= every
        {
            last = Instant::now();
            let rate = executions as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "fuzz --model: {executions} stories, {rate:.1} per second, {} of 5 kinds, flowchart nodes {}, {} failures",
                behaviours.len(),
                nodes(&charts),
                failures.len()
            );
        }
    }
    for c in &charts {
        eprintln!("fuzz --model: {}", c.summary());
    }
    let per_second = executions as f64 / started.elapsed().as_secs_f64().max(1e-9);
    Ok(FuzzSummary {
        executions,
        per_second,
        failures,
        behaviours: behaviours.len(),
        flowchart: None,
    })
}

pub async fn run(runtime: &Runtime, cfg: &FuzzConfig) -> anyhow::Result<FuzzSummary> {
    if !cfg
        .plugins_dir
        .join(format!("{}.wasm", cfg.plugin))
        .exists()
    {
        anyhow::bail!("no plugin {} in {}", cfg.plugin, cfg.plugins_dir.display());
    }
    // The run owns the plugin directory: no stat per execution to notice a hot swap.
    runtime.pin_plugins();
    let started = Instant::now();
    let mut last = Instant::now();
    let mut executions = 0u64;
    let mut failures = Vec::new();
    let mut coverage = coverage::Coverage::new(&cfg.plugin);
    let deadline = cfg.duration.map(|d| started + d);
    loop {
        if cfg.iterations.is_some_and(|n| executions >= n)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        let seed = cfg.seed.wrapping_add(executions);
        let mut rng = StdRng::seed_from_u64(seed);
        let (state, unit) = worlds::world(&mut rng, seed);
        debug_assert!(
            check::check(&state).is_ok(),
            "the generator made an inconsistent world: {:?}",
            check::check(&state)
        );
        let out = execute(runtime, &cfg.plugins_dir, &cfg.plugin, state, &unit).await?;
        executions += 1;
        if let Some(c) = coverage.as_mut() {
            c.record(&out);
        }
        if let Some(invariant) = violation(&out) {
            // `out.input` holds only the invariants' view: the whole state again, from its seed.
            let (state, _) = worlds::world(&mut StdRng::seed_from_u64(seed), seed);
            let small = minimise(
                runtime,
                &cfg.plugins_dir,
                &cfg.plugin,
                state,
                &unit,
                &invariant,
            )
            .await;
            std::fs::create_dir_all(&cfg.out_dir)?;
            let path = cfg.out_dir.join(format!("{}-seed-{seed}.yaml", cfg.plugin));
            let header = format!(
                "# charm-host fuzz: {}\n# invariant broken: {invariant}\n# replay: charm-host scenario --state {} --event {} --unit {unit}\n",
                cfg.plugin,
                path.display(),
                cfg.plugin
            );
            std::fs::write(&path, header + &serde_yaml::to_string(&small)?)?;
            eprintln!(
                "fuzz: FAILURE seed {seed}: {invariant}\n      reproduction: {}",
                path.display()
            );
            failures.push(FuzzFailure {
                seed,
                invariant,
                reproduction: path,
                unit,
            });
        }
        if let Some(every) = cfg.progress
            && last.elapsed() >= every
        {
            last = Instant::now();
            let rate = executions as f64 / started.elapsed().as_secs_f64();
            let nodes = coverage
                .as_ref()
                .map(|c| format!("{}/{}", c.reached(), c.total()))
                .unwrap_or_else(|| "n/a".into());
            eprintln!(
                "fuzz: {executions} executions, {rate:.0} execs/s, flowchart nodes {nodes}, {} failures",
                failures.len()
            );
        }
    }
    let per_second = executions as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let flowchart = coverage.map(|c| {
        let unreached: Vec<String> = c.unreached().iter().map(|n| n.id.to_string()).collect();
        if cfg.progress.is_some() {
            eprintln!("fuzz: {}", c.summary());
        }
        (c.reached(), c.total(), unreached)
    });
    Ok(FuzzSummary {
        executions,
        per_second,
        failures,
        behaviours: flowchart.as_ref().map(|f| f.0).unwrap_or_default(),
        flowchart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{Event, EventKind, Outcome};
    use crate::dispatch::{DispatchReport, EventRun};
    use crate::runtime::{RunReport, TraceEntry};
    use crate::world::{RelationState, SecretState};

    const APP: &str = "postgresql-k8s";

    fn world(peer_app: &[(&str, &str)], app_secret: &[(&str, &str)]) -> WorldState {
        let bag = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<crate::world::Bag>()
        };
        WorldState {
            relations: vec![RelationState {
                id: 1,
                endpoint: "database-peers".into(),
                remote_app: APP.into(),
                app_data: [(APP.to_string(), bag(peer_app))].into(),
                ..Default::default()
            }],
            secrets: vec![SecretState {
                id: "secret:1".into(),
                label: format!("database-peers.{APP}.app"),
                content: bag(app_secret),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn call(
        family: &'static str,
        call: &'static str,
        args: &str,
        result: &'static str,
    ) -> TraceEntry {
        TraceEntry {
            family: family.into(),
            call: call.into(),
            args: args.into(),
            result: result.into(),
            object: None,
        }
    }

    fn output(input: WorldState, output: WorldState, trace: Vec<TraceEntry>) -> ScenarioOutput {
        let event = Event::bare("leader-elected", EventKind::LeaderElected);
        ScenarioOutput {
            unit: format!("{APP}/0"),
            event: event.clone(),
            input,
            output,
            result: Ok(DispatchReport {
                runs: vec![EventRun {
                    event,
                    report: RunReport {
                        plugin: "leader-elected".into(),
                        result: Ok(Outcome::Done),
                        trace,
                        stdout: String::new(),
                        stderr: String::new(),
                        wasm_time: Default::default(),
                        host_time: Default::default(),
                    },
                }],
                ..Default::default()
            }),
            statuses: Vec::new(),
            logs: Vec::new(),
        }
    }

    #[test]
    fn an_unchanged_world_breaks_nothing() {
        let w = world(
            &[("endpoints", r#"["a","b"]"#)],
            &[("operator-password", "x")],
        );
        assert_eq!(violation(&output(w.clone(), w, Vec::new())), None);
    }

    #[test]
    fn a_replaced_password_is_caught() {
        let before = world(&[], &[("operator-password", "x")]);
        let after = world(&[], &[("operator-password", "y")]);
        let v = violation(&output(before, after, Vec::new())).unwrap();
        assert!(v.starts_with("operator-password was replaced"), "{v}");
        // Setting one for the first time is not a replacement.
        let (none, set) = (world(&[], &[]), world(&[], &[("operator-password", "y")]));
        assert_eq!(violation(&output(none, set, Vec::new())), None);
    }

    #[test]
    fn a_new_duplicate_endpoint_is_caught() {
        let before = world(&[("endpoints", r#"["a"]"#)], &[]);
        let after = world(&[("endpoints", r#"["a","a"]"#)], &[]);
        let v = violation(&output(before, after, Vec::new())).unwrap();
        assert!(v.starts_with("endpoints holds a duplicate"), "{v}");
    }

    #[test]
    fn kubernetes_writes_must_stay_on_the_applications_objects() {
        let w = world(&[], &[]);
        let write = |name: &str| {
            vec![call(
                "kubernetes",
                "patch-endpoints-annotations",
                &format!("(\"{name}\", [])"),
                "ok",
            )]
        };
        for own in [APP.to_string(), format!("patroni-{APP}-config")] {
            assert_eq!(
                violation(&output(w.clone(), w.clone(), write(&own))),
                None,
                "{own}"
            );
        }
        let v = violation(&output(w.clone(), w.clone(), write("kube-dns"))).unwrap();
        assert!(v.starts_with("Kubernetes write outside"), "{v}");
        // A live trace's entry names its object apart from the arguments: that name decides.
        let named = |object: &str, in_args: &str| {
            let mut t = write(in_args);
            t[0].object = Some(object.to_owned());
            violation(&output(w.clone(), w.clone(), t))
        };
        assert!(
            named("kube-dns", APP)
                .unwrap()
                .starts_with("Kubernetes write outside")
        );
        assert_eq!(named(APP, "kube-dns"), None);
    }

    #[test]
    fn cluster_initialised_needs_the_member_and_the_primary_answering() {
        let before = world(&[], &[]);
        let after = world(&[("cluster_initialised", "True")], &[]);
        let health = |target: &str| {
            call(
                "patroni",
                "get-health",
                &format!("(Target::{target}, Auth {{ .. }})"),
                "ok",
            )
        };
        let v = violation(&output(
            before.clone(),
            after.clone(),
            vec![health("OwnUnit")],
        ));
        assert!(v.unwrap().contains("primary endpoint answering (false)"));
        let trace = vec![health("OwnUnit"), health("PrimaryService")];
        assert_eq!(violation(&output(before, after, trace)), None);
    }

    /// The fuzzer keeps only [`invariant_view`] of each input: everything the invariants and
    /// the coverage read must be in it, for the generator's worlds and for a hand-made one.
    #[test]
    fn the_invariant_view_keeps_what_the_invariants_and_the_coverage_read() {
        let mut states: Vec<WorldState> = (0..300u64)
            .map(|seed| worlds::world(&mut StdRng::seed_from_u64(seed), seed).0)
            .collect();
        states.push(world(
            &[("cluster_initialised", "True"), ("endpoints", "[]")],
            &[("operator-password", "x")],
        ));
        let mut seen = (0, 0);
        for full in &states {
            let view = invariant_view(full);
            assert_eq!(view.app, full.app);
            assert_eq!(view.leader, full.leader);
            assert_eq!(peer_app_bag(&view), peer_app_bag(full));
            assert_eq!(app_passwords(&view), app_passwords(full));
            seen.0 += !peer_app_bag(full).is_empty() as usize;
            seen.1 += !app_passwords(full).is_empty() as usize;
        }
        assert!(
            seen.0 > 10 && seen.1 > 10,
            "the worlds exercise both: {seen:?}"
        );
    }
}
