//! Flowchart-node coverage of `charm-host fuzz --plugin`.
//!
//! The two seed flowcharts (`leader-elected`, `postgresql-pebble-ready`; docs/FLOWCHARTS.md,
//! which lists the node ids) are the units of coverage. Nothing is added to the plugins: each
//! node's "reached" predicate is derived from what the host observes of one execution — the
//! capability-call trace of the hook's own run, its outcome (done, defer, failed), the
//! statuses it set and the peer application databag before and after. Most nodes are marked
//! by a call only they make (the leader's pod-label patch after Patroni started, the `/health`
//! probe through `<app>-primary`, the sync-settings PATCH …); decision nodes without a call of
//! their own are reached when the run got past them, and terminal nodes (defer, Blocked,
//! return) from the outcome and the status together with the calls that did *not* follow.
//!
//! Where the code and the chart disagree (spec section 4), the predicates follow the code: the
//! chart's `update_config` of `leader-elected` is the sync-settings PATCH, reached only when a
//! member was missing; its `defer2 → update_config` arrow is taken to stop at the defer.
//!
//! The cost per execution is one pass over the trace plus a few map look-ups, and nothing once
//! every node of the chart has been reached.

use crate::bindings::Outcome;
use crate::runtime::TraceEntry;
use crate::scenario::ScenarioOutput;
use crate::world::{StatusKind, StatusState, WorldState};

/// One node of a flowchart: its id in the mermaid source and its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub id: &'static str,
    pub label: &'static str,
}

const fn n(id: &'static str, label: &'static str) -> Node {
    Node { id, label }
}

/// `leader-elected`, in the chart's order.
pub const LEADER_ELECTED: &[Node] = &[
    n("hook_fired", "leader-elected Hook"),
    n("generate_passwords", "Generate password for charm users?"),
    n(
        "create_k8s_resources",
        "Create k8s resources needed by Patroni",
    ),
    n("is_part_of_cluster", "Is current unit part of the cluster?"),
    n("add_to_cluster", "Add current unit to the cluster"),
    n(
        "remove_departed_units",
        "Remove pending departed units from the cluster",
    ),
    n("has_cluster_initialised", "Has cluster initialised?"),
    n("rtn", "return (cluster not initialised)"),
    n(
        "all_units_on_cluster",
        "Are all the units part of the cluster?",
    ),
    n("are_all_members_ready", "Are all cluster members ready?"),
    n("defer2", "defer (members not ready)"),
    n("add_unit_to_cluster", "Add unit to cluster"),
    n(
        "patch_pod_labels",
        "Patch pod labels of the new cluster member",
    ),
    n(
        "update_config",
        "Turn on/off PostgreSQL synchronous_commit configuration",
    ),
    n("rtn2", "return"),
];

/// `postgresql-pebble-ready`, in the chart's order.
pub const PEBBLE_READY: &[Node] = &[
    n("hook_fired", "postgresql-pebble-ready Hook"),
    n("create_pgdata", "Create data directory"),
    n(
        "is_leader_or_has_cluster_initialised",
        "Is current unit leader or has the cluster initialised?",
    ),
    n("defer", "defer (replica before initialisation)"),
    n("has_pushed_tls_files", "Has successfully pushed TLS files?"),
    n("defer2", "defer (TLS push failed)"),
    n("has_services_changed", "Have pebble services changed?"),
    n(
        "update_and_restart_service",
        "Update and restart the PostgreSQL service",
    ),
    n(
        "has_member_started",
        "Have Patroni and PostgreSQL started in the current unit?",
    ),
    n("defer3", "defer (member not started)"),
    n("is_leader", "Is current unit leader?"),
    n(
        "has_patched_pod_labels",
        "Has successfully patched pod labels of the new current unit",
    ),
    n("set_blocked", "Set Blocked status"),
    n("rtn", "return (after Blocked)"),
    n(
        "is_service_redirecting_traffic",
        "Is custom k8s service redirecting traffic to primary pod?",
    ),
    n("set_waiting", "Set Waiting status"),
    n("defer4", "defer (primary endpoint not ready)"),
    n("mark_cluster_as_initialised", "Mark cluster as initialised"),
    n(
        "update_config",
        "Turn on/off PostgreSQL synchronous_commit configuration",
    ),
    n("set_active", "Set Active Status"),
    n("rtn2", "return"),
];

/// The flowchart of a plugin, if it has one.
pub fn flowchart(plugin: &str) -> Option<&'static [Node]> {
    match plugin {
        "leader-elected" => Some(LEADER_ELECTED),
        "postgresql-pebble-ready" => Some(PEBBLE_READY),
        _ => None,
    }
}

/// How the hook's own run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Done,
    Defer,
    Failed,
}

impl End {
    pub fn of(result: &Result<Outcome, crate::runtime::Failure>) -> Self {
        match result {
            Ok(Outcome::Done) => End::Done,
            Ok(Outcome::Defer) => End::Defer,
            Err(_) => End::Failed,
        }
    }
}

/// What the host saw of one execution of a hook.
pub struct Observation<'a> {
    pub trace: &'a [TraceEntry],
    pub end: End,
    pub statuses: &'a [StatusState],
    pub before: &'a WorldState,
    pub after: &'a WorldState,
    pub unit: &'a str,
}

impl<'a> Observation<'a> {
    /// The hook's own run of a scenario (deferred events re-run first are left out).
    pub fn of(out: &'a ScenarioOutput) -> Option<Self> {
        let run = crate::dispatch::runs_of(&out.result)
            .iter()
            .rev()
            .find(|r| !r.event.deferred)?;
        Some(Observation {
            trace: &run.report.trace,
            end: End::of(&run.report.result),
            statuses: &out.statuses,
            before: &out.input,
            after: &out.output,
            unit: &out.unit,
        })
    }

    fn is(t: &TraceEntry, name: &str) -> bool {
        let (family, call) = name.split_once('.').unwrap_or((name, ""));
        t.family == family && t.call == call
    }

    fn ok(t: &TraceEntry) -> bool {
        t.result == "ok"
    }

    /// Positions of the calls to `family.call`.
    fn positions(&self, name: &str) -> Vec<usize> {
        self.trace
            .iter()
            .enumerate()
            .filter(|(_, t)| Self::is(t, name))
            .map(|(i, _)| i)
            .collect()
    }

    fn called(&self, name: &str) -> bool {
        self.trace.iter().any(|t| Self::is(t, name))
    }

    fn status_set(&self, kind: StatusKind, prefix: &str) -> bool {
        self.statuses
            .iter()
            .any(|s| s.kind == kind && s.message.starts_with(prefix))
    }

    fn peer_app(s: &WorldState) -> Option<&crate::world::Bag> {
        s.relations
            .iter()
            .find(|r| r.endpoint == "database-peers")
            .and_then(|r| r.app_data.get(&s.app))
    }

    fn initialised_before(&self) -> bool {
        Self::peer_app(self.before).is_some_and(|b| b.contains_key("cluster_initialised"))
    }

    fn listed_before(&self) -> bool {
        let n = self.unit.rsplit('/').next().unwrap_or("0");
        let app = &self.before.app;
        let host = format!("\"{app}-{n}.{app}-endpoints\"");
        Self::peer_app(self.before)
            .and_then(|b| b.get("endpoints"))
            .is_some_and(|e| e.contains(&host))
    }

    fn leader(&self) -> bool {
        self.before.leader.as_deref() == Some(self.unit)
    }

    /// The last call failed and it belongs to `family` (where a failed hook stopped).
    fn failed_in(&self, family: &str) -> bool {
        self.end == End::Failed
            && self
                .trace
                .iter()
                .rev()
                .find(|t| !Self::ok(t))
                .is_some_and(|t| t.family == family)
    }
}

/// The node ids of `chart` reached by one execution, in chart order.
pub fn reached(plugin: &str, o: &Observation) -> Vec<&'static str> {
    let hits: Vec<bool> = match plugin {
        "leader-elected" => leader_elected(o).to_vec(),
        "postgresql-pebble-ready" => pebble_ready(o).to_vec(),
        _ => return Vec::new(),
    };
    let chart = flowchart(plugin).unwrap_or(&[]);
    chart
        .iter()
        .zip(hits)
        .filter(|(_, h)| *h)
        .map(|(n, _)| n.id)
        .collect()
}

/// Spec 2.2 order: passwords, own membership, cleanup, leader annotation, Services, departed
/// units, `_add_members`.
fn leader_elected(o: &Observation) -> [bool; 15] {
    let is_k8s = |t: &TraceEntry| t.family == "kubernetes";
    let any_k8s = o.trace.iter().any(is_k8s);
    // Step 4 finished without a 403 or a hook failure: the annotation read answered (or 404).
    let annotation = o.positions("kubernetes.get-endpoints");
    let annotation_ok = annotation.last().is_some_and(|&i| {
        let r = &o.trace[i].result;
        r == "ok" || r.starts_with("ErrorKind::NotFound")
    }) && o
        .trace
        .iter()
        .filter(|t| Observation::is(t, "kubernetes.patch-endpoints-annotations"))
        .all(Observation::ok);
    let services_called = o.called("kubernetes.get-pod") || o.called("kubernetes.apply-service");
    let services_failed = o.status_set(StatusKind::Blocked, "failed to create k8s services");
    let services_ok = annotation_ok
        && !services_failed
        && (!services_called
            || o.trace
                .iter()
                .filter(|t| Observation::is(t, "kubernetes.apply-service"))
                .filter(|t| Observation::ok(t))
                .count()
                >= 2);
    let remove_departed = services_ok && !o.failed_in("kubernetes");
    // `fix_leader_annotation` drops `cluster_initialised` when it repairs the annotation.
    let repaired = o.trace.iter().any(|t| {
        Observation::is(t, "kubernetes.patch-endpoints-annotations") && Observation::ok(t)
    });
    let initialised = o.initialised_before() && !repaired;
    let get_cluster = o.positions("patroni.get-cluster");
    let all_units = remove_departed
        && initialised
        && get_cluster
            .first()
            .is_some_and(|&i| Observation::ok(&o.trace[i]));
    let reconfiguring = o.status_set(StatusKind::Maintenance, "reconfiguring cluster");
    let members_ready = all_units && reconfiguring && get_cluster.len() >= 2;
    let labels = o.called("kubernetes.patch-pod-labels");
    let sync_patch = o.called("patroni.patch-config");
    let part_of_cluster = any_k8s;
    [
        // hook_fired
        true,
        // generate_passwords
        o.called("juju.secret-get") || part_of_cluster,
        // create_k8s_resources
        services_called,
        // is_part_of_cluster
        part_of_cluster,
        // add_to_cluster
        part_of_cluster && !o.listed_before(),
        // remove_departed_units
        remove_departed,
        // has_cluster_initialised
        remove_departed,
        // rtn
        remove_departed && !initialised && o.end == End::Done,
        // all_units_on_cluster
        all_units,
        // are_all_members_ready
        members_ready,
        // defer2
        members_ready && o.end == End::Defer && !labels && !sync_patch,
        // add_unit_to_cluster
        members_ready && labels,
        // patch_pod_labels
        members_ready && labels,
        // update_config
        sync_patch,
        // rtn2
        o.end == End::Done && (sync_patch || (all_units && !reconfiguring)),
    ]
}

/// Spec 3.2 order: `_fix_pod`, Pebble reachable, data directory, leader or initialised, TLS
/// (with `update_config`), layer, member started, `_initialize_cluster`, `update_config`,
/// extensions, `_set_active_status`.
fn pebble_ready(o: &Observation) -> [bool; 21] {
    let chown = o.trace.iter().position(|t| {
        Observation::is(t, "pebble.exec") && t.args.contains("\"chown\"") && Observation::ok(t)
    });
    let create_pgdata = o.called("pebble.make-dir") || chown.is_some();
    // The layer step splits the run: before it `_fix_pod` and the TLS push (with its
    // `update_config`), after it the member check, the leader's initialisation and
    // `update_config`. `update_config` reads the plan too (the metrics service), so the
    // layer step is the plan read followed by the layer, a replan, the service state or the
    // member's `/health` (or a failed read).
    let split = o.positions("pebble.get-plan").into_iter().find(|&i| {
        !Observation::ok(&o.trace[i])
            || o.trace[i + 1..]
                .iter()
                .find(|t| t.family != "juju" && t.family != "clock")
                .is_some_and(|t| {
                    (Observation::is(t, "pebble.add-layer")
                        && t.args.starts_with("(\"postgresql\""))
                        || Observation::is(t, "pebble.replan")
                        || Observation::is(t, "pebble.services")
                        || (Observation::is(t, "patroni.get-health")
                            && t.args.starts_with("(Target::OwnUnit"))
                })
    });
    let after = |name: &str| -> Vec<&TraceEntry> {
        match split {
            Some(s) => o.trace[s..]
                .iter()
                .filter(|t| Observation::is(t, name))
                .collect(),
            None => Vec::new(),
        }
    };
    let may_go_on = o.leader() || o.initialised_before();
    // Past the data directory: the run went on beyond the workload-version step.
    let decision = chown.is_some_and(|c| {
        o.end != End::Failed
            || o.trace[c + 1..].iter().any(|t| {
                !Observation::is(t, "pebble.pull")
                    && !Observation::is(t, "juju.application-version-set")
            })
    });
    let deferred_early = decision && !may_go_on && o.end == End::Defer && split.is_none();
    let has_pushed_tls = decision && may_go_on;
    let tls_failed = has_pushed_tls && split.is_none() && o.end == End::Defer;
    let has_services_changed = split.is_some();
    let replan = !after("pebble.replan").is_empty();
    let own_health: Vec<&TraceEntry> = after("patroni.get-health")
        .into_iter()
        .filter(|t| t.args.starts_with("(Target::OwnUnit"))
        .collect();
    let primary_health: Vec<&TraceEntry> = after("patroni.get-health")
        .into_iter()
        .filter(|t| t.args.starts_with("(Target::PrimaryService"))
        .collect();
    let has_member_started = !own_health.is_empty();
    let not_started = o.status_set(StatusKind::Waiting, "awaiting for cluster to start");
    let defer3 = has_member_started && not_started && o.end == End::Defer;
    let leader_labels = after("kubernetes.patch-pod-labels");
    let has_patched = has_member_started && !not_started && o.leader() && !leader_labels.is_empty();
    let set_blocked = has_patched
        && leader_labels.iter().any(|t| !Observation::ok(t))
        && o.status_set(StatusKind::Blocked, "failed to patch pod with error");
    let redirecting = !primary_health.is_empty();
    let set_waiting = redirecting
        && o.status_set(
            StatusKind::Waiting,
            "awaiting for primary endpoint to be ready",
        );
    let defer4 = set_waiting && o.end == End::Defer;
    let mark = redirecting && !set_waiting && !o.failed_in("postgresql");
    let update_config = has_member_started
        && !not_started
        && (!after("kubernetes.get-node-allocatable").is_empty()
            || !after("patroni.patch-config").is_empty());
    let set_active = update_config
        && o.statuses[..].iter().any(|s| s.kind == StatusKind::Active)
        && o.end == End::Done;
    let is_leader = has_member_started && !not_started && (has_patched || update_config);
    [
        // hook_fired
        true,
        // create_pgdata
        create_pgdata,
        // is_leader_or_has_cluster_initialised
        decision,
        // defer
        deferred_early,
        // has_pushed_tls_files
        has_pushed_tls,
        // defer2
        tls_failed,
        // has_services_changed
        has_services_changed,
        // update_and_restart_service
        replan,
        // has_member_started
        has_member_started,
        // defer3
        defer3,
        // is_leader
        is_leader,
        // has_patched_pod_labels
        has_patched,
        // set_blocked
        set_blocked,
        // rtn
        set_blocked && !redirecting && o.end != End::Failed,
        // is_service_redirecting_traffic
        redirecting,
        // set_waiting
        set_waiting,
        // defer4
        defer4,
        // mark_cluster_as_initialised
        mark,
        // update_config
        update_config,
        // set_active
        set_active,
        // rtn2
        set_active,
    ]
}

/// Nodes reached so far by a fuzz run of one plugin.
pub struct Coverage {
    plugin: String,
    chart: &'static [Node],
    hit: Vec<bool>,
    count: usize,
}

impl Coverage {
    /// None for a plugin without a flowchart.
    pub fn new(plugin: &str) -> Option<Self> {
        let chart = flowchart(plugin)?;
        Some(Coverage {
            plugin: plugin.to_owned(),
            chart,
            hit: vec![false; chart.len()],
            count: 0,
        })
    }

    /// Record one execution (nothing to do once every node was reached).
    pub fn record(&mut self, out: &ScenarioOutput) {
        if self.count == self.chart.len() {
            return;
        }
        if let Some(o) = Observation::of(out) {
            self.record_observation(&o);
        }
    }

    pub fn record_observation(&mut self, o: &Observation) {
        let ids = reached(&self.plugin, o);
        self.record_nodes(ids);
    }

    /// Record nodes known reached by id (ids not in the chart are ignored).
    pub fn record_nodes<'i>(&mut self, ids: impl IntoIterator<Item = &'i str>) {
        for id in ids {
            if let Some(i) = self.chart.iter().position(|n| n.id == id)
                && !self.hit[i]
            {
                self.hit[i] = true;
                self.count += 1;
            }
        }
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// `<plugin> flowchart nodes reached N/M[; unreached: id (label), ...]`.
    pub fn summary(&self) -> String {
        let unreached = self.unreached();
        let mut line = format!(
            "{} flowchart nodes reached {}/{}",
            self.plugin,
            self.reached(),
            self.total()
        );
        if !unreached.is_empty() {
            let names: Vec<String> = unreached
                .iter()
                .map(|n| format!("{} ({})", n.id, n.label))
                .collect();
            line.push_str(&format!("; unreached: {}", names.join(", ")));
        }
        line
    }

    pub fn reached(&self) -> usize {
        self.count
    }

    pub fn total(&self) -> usize {
        self.chart.len()
    }

    pub fn unreached(&self) -> Vec<Node> {
        self.chart
            .iter()
            .zip(&self.hit)
            .filter(|(_, h)| !**h)
            .map(|(n, _)| *n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::RelationState;

    fn call(name: &str, args: &str, result: &str) -> TraceEntry {
        let (family, call) = name.split_once('.').unwrap();
        TraceEntry {
            family: family.to_owned().into(),
            call: call.to_owned().into(),
            args: args.into(),
            result: result.to_owned().into(),
            object: None,
        }
    }

    /// An initialised cluster whose leader `pg/0` is listed in `endpoints`.
    fn initialised() -> WorldState {
        let mut s = WorldState {
            app: "pg".into(),
            leader: Some("pg/0".into()),
            ..WorldState::default()
        };
        let mut r = RelationState {
            endpoint: "database-peers".into(),
            ..Default::default()
        };
        r.app_data.insert(
            "pg".into(),
            [
                (
                    "endpoints".to_string(),
                    "[\"pg-0.pg-endpoints\"]".to_string(),
                ),
                ("cluster_initialised".to_string(), "True".to_string()),
            ]
            .into(),
        );
        s.relations.push(r);
        s
    }

    /// leader-elected on an initialised cluster with a new unit whose readiness check fails:
    /// the chart's "members ready? no → defer", and nothing after it.
    #[test]
    fn members_not_ready_reaches_the_defer_and_stops() {
        let s = initialised();
        let trace = vec![
            call("juju.secret-get", "(\"database-peers.pg.app\",)", "ok"),
            call("kubernetes.get-endpoints", "(\"patroni-pg\",)", "ok"),
            call("kubernetes.get-pod", "(\"pg-0\",)", "ok"),
            call(
                "kubernetes.apply-service",
                "(Service { name: \"pg-primary\" })",
                "ok",
            ),
            call(
                "kubernetes.apply-service",
                "(Service { name: \"pg-replicas\" })",
                "ok",
            ),
            call("patroni.get-cluster", "(Target::OwnUnit, …)", "ok"),
            call("patroni.get-cluster", "(Target::OwnUnit, …)", "ok"),
        ];
        let statuses = vec![StatusState {
            kind: StatusKind::Maintenance,
            message: "reconfiguring cluster".into(),
        }];
        let o = Observation {
            trace: &trace,
            end: End::Defer,
            statuses: &statuses,
            before: &s,
            after: &s,
            unit: "pg/0",
        };
        assert_eq!(
            reached("leader-elected", &o),
            [
                "hook_fired",
                "generate_passwords",
                "create_k8s_resources",
                "is_part_of_cluster",
                "remove_departed_units",
                "has_cluster_initialised",
                "all_units_on_cluster",
                "are_all_members_ready",
                "defer2",
            ]
        );
    }

    /// pebble-ready: `update_config` reads the plan too (metrics); only the read followed by
    /// the layer step splits the run, so an early plan read does not count as the layer step.
    #[test]
    fn the_layer_step_is_the_plan_read_before_the_layer() {
        let s = initialised();
        let chown = "(ExecRequest { command: [\"chown\", \"postgres:postgres\"] })";
        let trace = vec![
            call("pebble.exec", chown, "ok"),
            call("pebble.get-plan", "()", "ok"),
            call("patroni.get-cluster", "(Target::OwnUnit, …)", "ok"),
        ];
        let o = Observation {
            trace: &trace,
            end: End::Defer,
            statuses: &[],
            before: &s,
            after: &s,
            unit: "pg/0",
        };
        let r = reached("postgresql-pebble-ready", &o);
        assert!(r.contains(&"has_pushed_tls_files"), "{r:?}");
        assert!(
            r.contains(&"defer2"),
            "a defer before the layer step: {r:?}"
        );
        assert!(!r.contains(&"has_services_changed"), "{r:?}");

        let mut trace = trace.clone();
        trace.push(call("pebble.get-plan", "()", "ok"));
        trace.push(call(
            "pebble.add-layer",
            "(\"postgresql\", Layer { … })",
            "ok",
        ));
        trace.push(call("pebble.replan", "()", "ok"));
        trace.push(call("patroni.get-health", "(Target::OwnUnit, …)", "ok"));
        let o = Observation {
            trace: &trace,
            end: End::Defer,
            statuses: &[],
            before: &s,
            after: &s,
            unit: "pg/0",
        };
        let r = reached("postgresql-pebble-ready", &o);
        for id in [
            "has_services_changed",
            "update_and_restart_service",
            "has_member_started",
        ] {
            assert!(r.contains(&id), "{id}: {r:?}");
        }
        assert!(!r.contains(&"defer2"), "{r:?}");
    }

    #[test]
    fn coverage_counts_each_node_once() {
        let mut c = Coverage::new("leader-elected").unwrap();
        assert_eq!((c.reached(), c.total()), (0, 15));
        let s = initialised();
        let o = Observation {
            trace: &[],
            end: End::Failed,
            statuses: &[],
            before: &s,
            after: &s,
            unit: "pg/0",
        };
        c.record_observation(&o);
        c.record_observation(&o);
        assert_eq!(c.reached(), 1, "only hook_fired");
        assert_eq!(c.unreached().len(), 14);
        assert!(Coverage::new("stop").is_none());
    }
}
