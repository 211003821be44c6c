//! The simulated world's own rules, exercised through the capability traits exactly as a
//! plugin reaches them.

mod support;

use charm_host::bindings::ErrorKind;
use charm_host::bindings::Kv;
use charm_host::bindings::juju::SecretOwner;
use charm_host::bindings::patroni::{Auth, Target};
use charm_host::bindings::pebble::{FileOwner, Layer, OverrideMode, ServiceSpec, Startup};
use charm_host::world::{
    Fault, FaultKind, PodState, RelationState, ServiceRun, UnitState, World, WorldState, check,
};

const APP: &str = "postgresql-k8s";

fn unit(n: u32) -> String {
    format!("{APP}/{n}")
}

/// Three units with pods and a peer relation; unit 0 leads.
fn three_units() -> WorldState {
    let mut s = WorldState {
        leader: Some(unit(0)),
        ..Default::default()
    };
    let mut peers = RelationState {
        id: 1,
        endpoint: "database-peers".into(),
        remote_app: APP.into(),
        ..Default::default()
    };
    for n in 0..3 {
        s.units.insert(unit(n), UnitState::default());
        peers.units.push(unit(n));
        let pod = PodState {
            labels: [("app.kubernetes.io/name".to_string(), APP.to_string())].into(),
            ..Default::default()
        };
        s.kubernetes.pods.insert(format!("{APP}-{n}"), pod);
    }
    s.relations.push(peers);
    s
}

fn auth() -> Auth {
    Auth {
        password: "pw".into(),
        tls: false,
    }
}

#[tokio::test]
async fn databag_writes_commit_only_with_the_dispatch() {
    let w = World::new(three_units());
    let (caps, session) = w.capabilities(&unit(0));
    caps.juju
        .relation_set(1, false, vec![Kv::new("k", "v")])
        .await
        .unwrap();
    // The writer sees its own write at once...
    let mine = caps.juju.relation_get(1, unit(0), false).await.unwrap();
    assert_eq!(mine, vec![Kv::new("k", "v")]);
    // ...nobody else does until the commit.
    let (other, _) = w.capabilities(&unit(1));
    assert!(
        other
            .juju
            .relation_get(1, unit(0), false)
            .await
            .unwrap()
            .is_empty()
    );
    drop(caps);
    drop(session);
    assert!(
        w.state().relations[0].unit_data.is_empty(),
        "an uncommitted session leaves no trace"
    );

    let (caps, session) = w.capabilities(&unit(0));
    caps.juju
        .relation_set(1, false, vec![Kv::new("k", "v")])
        .await
        .unwrap();
    caps.juju.commit().await.unwrap();
    let (other, _) = w.capabilities(&unit(1));
    assert_eq!(
        other.juju.relation_get(1, unit(0), false).await.unwrap(),
        vec![Kv::new("k", "v")]
    );
    // The commit reports the changed bag: what fans out relation-changed to the others.
    let changes = session.committed_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].relation_id, changes[0].owner.as_str()),
        (1, unit(0).as_str())
    );
}

#[tokio::test]
async fn only_the_leader_writes_the_app_databag_and_app_secrets() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(1));
    let err = caps
        .juju
        .relation_set(1, true, vec![Kv::new("endpoints", "[]")])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    let err = caps
        .juju
        .secret_add(
            "database-peers.postgresql-k8s.app".into(),
            SecretOwner::Application,
            vec![Kv::new("a", "b")],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    let (leader, _) = w.capabilities(&unit(0));
    leader
        .juju
        .relation_set(1, true, vec![Kv::new("endpoints", "[]")])
        .await
        .unwrap();
    // An empty value deletes the key.
    leader
        .juju
        .relation_set(1, true, vec![Kv::new("endpoints", "")])
        .await
        .unwrap();
    assert!(
        leader
            .juju
            .relation_get(1, APP.into(), true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_secret_gets_a_new_revision_only_when_its_content_changes() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(0));
    let label = "database-peers.postgresql-k8s.app".to_string();
    caps.juju
        .secret_add(
            label.clone(),
            SecretOwner::Application,
            vec![Kv::new("operator-password", "x")],
        )
        .await
        .unwrap();
    caps.juju
        .secret_set(label.clone(), vec![Kv::new("operator-password", "x")])
        .await
        .unwrap();
    caps.juju.commit().await.unwrap();
    assert_eq!(w.state().secrets[0].revision, 1);
    let (caps, _) = w.capabilities(&unit(0));
    caps.juju
        .secret_set(label.clone(), vec![Kv::new("operator-password", "y")])
        .await
        .unwrap();
    caps.juju.commit().await.unwrap();
    assert_eq!(w.state().secrets[0].revision, 2);
    let dup = caps
        .juju
        .secret_add(label, SecretOwner::Application, vec![Kv::new("a", "b")])
        .await
        .unwrap_err();
    assert_eq!(dup.kind, ErrorKind::Conflict);
}

fn service(command: &str, over: OverrideMode) -> ServiceSpec {
    ServiceSpec {
        override_: over,
        summary: None,
        command: Some(command.into()),
        startup: Startup::Enabled,
        user: None,
        group: None,
        environment: vec![Kv::new("A", "1")],
        after: vec![],
        before: vec![],
        requires: vec![],
        on_success: None,
        on_failure: None,
    }
}

fn layer(services: Vec<(&str, ServiceSpec)>) -> Layer {
    Layer {
        summary: None,
        description: None,
        services: services
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
        checks: vec![],
    }
}

#[tokio::test]
async fn pebble_layers_combine_and_override_like_pebble() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(0));
    caps.pebble
        .add_layer(
            "base".into(),
            layer(vec![("svc", service("run a", OverrideMode::Replace))]),
            false,
        )
        .await
        .unwrap();
    // Same label, combine=false: refused.
    let err = caps
        .pebble
        .add_layer("base".into(), layer(vec![]), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    // A later layer merging: scalars replace, environments merge.
    let mut merge = service("run b", OverrideMode::Merge);
    merge.environment = vec![Kv::new("B", "2")];
    caps.pebble
        .add_layer("extra".into(), layer(vec![("svc", merge)]), false)
        .await
        .unwrap();
    let plan = caps.pebble.plan().await.unwrap();
    let svc = &plan.services[0].1;
    assert_eq!(svc.command.as_deref(), Some("run b"));
    assert_eq!(svc.environment, vec![Kv::new("A", "1"), Kv::new("B", "2")]);
    // replace drops what came before.
    let mut replace = service("run c", OverrideMode::Replace);
    replace.environment = vec![];
    caps.pebble
        .add_layer("last".into(), layer(vec![("svc", replace)]), false)
        .await
        .unwrap();
    let plan = caps.pebble.plan().await.unwrap();
    assert_eq!(plan.services[0].1.environment, vec![]);
    // A layer without `override` is invalid, as in Pebble.
    let err = caps
        .pebble
        .add_layer(
            "bad".into(),
            layer(vec![("x", service("y", OverrideMode::Unset))]),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
}

#[tokio::test]
async fn replan_starts_enabled_services_and_restarts_changed_ones_only() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(0));
    caps.pebble
        .add_layer(
            "l".into(),
            layer(vec![("svc", service("v1", OverrideMode::Replace))]),
            true,
        )
        .await
        .unwrap();
    caps.pebble.replan().await.unwrap();
    let run = |w: &World| {
        w.state().units[&unit(0)].pebble.started_with["svc"]
            .command
            .clone()
    };
    assert_eq!(run(&w).as_deref(), Some("v1"));
    caps.pebble
        .add_layer(
            "l".into(),
            layer(vec![("svc", service("v2", OverrideMode::Replace))]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        run(&w).as_deref(),
        Some("v1"),
        "adding a layer alone changes nothing running"
    );
    caps.pebble.replan().await.unwrap();
    assert_eq!(
        run(&w).as_deref(),
        Some("v2"),
        "replan restarted the changed service"
    );
    assert_eq!(
        w.state().units[&unit(0)].pebble.running["svc"],
        ServiceRun::Active
    );
}

#[tokio::test]
async fn pebble_files_keep_permissions_and_owners_and_need_parents() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(0));
    let owner = FileOwner {
        user: Some("postgres".into()),
        group: Some("postgres".into()),
    };
    let err = caps
        .pebble
        .push(
            "/a/b/c".into(),
            b"x".to_vec(),
            Some(0o400),
            owner.clone(),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    caps.pebble
        .push(
            "/a/b/c".into(),
            b"x".to_vec(),
            Some(0o400),
            owner.clone(),
            true,
        )
        .await
        .unwrap();
    let info = caps.pebble.list_files("/a/b/c".into(), true).await.unwrap();
    assert_eq!(
        (info[0].permissions, info[0].user.as_deref()),
        (0o400, Some("postgres"))
    );
    assert_eq!(caps.pebble.pull("/a/b/c".into()).await.unwrap(), b"x");
    w.with_state(|s| s.units.get_mut(&unit(0)).unwrap().pebble.reachable = false);
    assert_eq!(
        caps.pebble.system_info().await.unwrap_err().kind,
        ErrorKind::Unreachable
    );
}

/// Make unit n a running Patroni member candidate: labels on its pod, its service running.
fn start_member(w: &World, n: u32) {
    w.with_state(|s| {
        let pod = s.kubernetes.pods.get_mut(&format!("{APP}-{n}")).unwrap();
        pod.labels.insert("application".into(), "patroni".into());
        pod.labels
            .insert("cluster-name".into(), format!("patroni-{APP}"));
        s.units
            .get_mut(&unit(n))
            .unwrap()
            .pebble
            .running
            .insert("postgresql".into(), ServiceRun::Active);
    });
    w.tick();
}

#[tokio::test]
async fn patroni_elects_one_leader_and_replicas_stream() {
    let w = World::new(three_units());
    let (caps, _) = w.capabilities(&unit(0));
    // Not a member yet: nothing answers.
    assert_eq!(
        caps.patroni
            .health(Target::OwnUnit, auth())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Unreachable
    );
    start_member(&w, 0);
    let h = caps.patroni.health(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(h.state, "starting");
    w.advance(w.state().patroni.start_ms);
    assert_eq!(
        caps.patroni
            .health(Target::OwnUnit, auth())
            .await
            .unwrap()
            .role,
        "primary"
    );
    start_member(&w, 1);
    start_member(&w, 2);
    w.advance(w.state().patroni.start_ms);
    let cluster = caps.patroni.cluster(Target::OwnUnit, auth()).await.unwrap();
    let leaders: Vec<_> = cluster
        .members
        .iter()
        .filter(|m| m.role == "leader")
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].name, format!("{APP}-0"));
    assert!(
        cluster
            .members
            .iter()
            .filter(|m| m.role != "leader")
            .all(|m| m.state == "streaming")
    );
    // Patroni labels the pods and keeps its DCS objects.
    let s = w.state();
    assert_eq!(
        s.kubernetes.pods[&format!("{APP}-0")].labels["role"],
        "primary"
    );
    assert_eq!(
        s.kubernetes.pods[&format!("{APP}-1")].labels["role"],
        "replica"
    );
    assert_eq!(
        s.kubernetes.endpoints[&format!("patroni-{APP}")].annotations["leader"],
        format!("{APP}-0")
    );
}

#[tokio::test]
async fn a_failed_primary_is_replaced_after_the_ttl() {
    let w = World::new(three_units());
    for n in 0..3 {
        start_member(&w, n);
        w.advance(w.state().patroni.start_ms);
    }
    // The primary's container dies.
    w.with_state(|s| s.units.get_mut(&unit(0)).unwrap().pebble.running.clear());
    w.tick();
    let (caps, _) = w.capabilities(&unit(1));
    let no_leader = caps.patroni.cluster(Target::OwnUnit, auth()).await.unwrap();
    assert!(
        no_leader.members.iter().all(|m| m.role != "leader"),
        "no leader within the TTL"
    );
    w.advance(w.state().patroni.ttl_ms);
    let cluster = caps.patroni.cluster(Target::OwnUnit, auth()).await.unwrap();
    let leader = cluster
        .members
        .iter()
        .find(|m| m.role == "leader")
        .expect("a new leader after the TTL");
    assert_ne!(leader.name, format!("{APP}-0"));
    assert_eq!(leader.timeline, Some(2));
}

#[tokio::test]
async fn switchover_moves_the_leader_and_checks_sync_standby() {
    let w = World::new(three_units());
    for n in 0..3 {
        start_member(&w, n);
        w.advance(w.state().patroni.start_ms);
    }
    let (caps, _) = w.capabilities(&unit(0));
    let cluster = caps.patroni.cluster(Target::OwnUnit, auth()).await.unwrap();
    let not_sync = cluster
        .members
        .iter()
        .find(|m| m.role == "replica")
        .unwrap()
        .name
        .clone();
    let err = caps
        .patroni
        .switchover(Target::OwnUnit, auth(), None, Some(not_sync))
        .await
        .unwrap_err();
    assert!(
        err.message
            .contains("candidate name does not match with sync_standby"),
        "{}",
        err.message
    );
    caps.patroni
        .switchover(Target::OwnUnit, auth(), None, None)
        .await
        .unwrap();
    let cluster = caps.patroni.cluster(Target::OwnUnit, auth()).await.unwrap();
    assert_ne!(
        cluster
            .members
            .iter()
            .find(|m| m.role == "leader")
            .unwrap()
            .name,
        format!("{APP}-0")
    );
}

#[tokio::test]
async fn an_untrusted_application_gets_403_from_kubernetes() {
    let mut s = three_units();
    s.kubernetes.trusted = false;
    let w = World::new(s);
    let (caps, _) = w.capabilities(&unit(0));
    let err = caps
        .kubernetes
        .get_pod(format!("{APP}-0"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    assert!(err.message.contains("403"), "{}", err.message);
}

#[tokio::test]
async fn faults_fire_always_once_or_by_chance() {
    let mut s = three_units();
    s.faults = vec![
        Fault {
            call: "kubernetes.get-pod".into(),
            error: FaultKind::Other,
            message: Some("500 boom".into()),
            unit: None,
            times: Some(1),
            probability: None,
        },
        Fault {
            call: "pebble.*".into(),
            error: FaultKind::Unreachable,
            message: None,
            unit: Some(unit(1)),
            times: None,
            probability: None,
        },
    ];
    let w = World::new(s);
    let (caps, _) = w.capabilities(&unit(0));
    assert_eq!(
        caps.kubernetes
            .get_pod(format!("{APP}-0"))
            .await
            .unwrap_err()
            .message,
        "500 boom"
    );
    assert!(
        caps.kubernetes.get_pod(format!("{APP}-0")).await.is_ok(),
        "a once-fault fires once"
    );
    assert!(
        caps.pebble.system_info().await.is_ok(),
        "the pebble fault is for unit 1 only"
    );
    let (caps1, _) = w.capabilities(&unit(1));
    for _ in 0..3 {
        assert_eq!(
            caps1.pebble.system_info().await.unwrap_err().kind,
            ErrorKind::Unreachable
        );
    }
    // Probabilistic faults are a function of the seed.
    let chance = |seed: u64| {
        let mut s = three_units();
        s.seed = seed;
        s.faults = vec![Fault {
            call: "juju.is-leader".into(),
            error: FaultKind::Timeout,
            message: None,
            unit: None,
            times: None,
            probability: Some(0.5),
        }];
        World::new(s).capabilities(&unit(0)).0
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    for out in [&mut a, &mut b] {
        let caps = chance(7);
        for _ in 0..32 {
            out.push(caps.juju.is_leader().await.is_err());
        }
    }
    assert_eq!(a, b, "same seed, same faults");
    let hits = a.iter().filter(|x| **x).count();
    assert!(
        (4..=28).contains(&hits),
        "about half of 32 calls fail, got {hits}"
    );
}

#[test]
fn the_consistency_checker_names_the_field() {
    let mut s = three_units();
    s.leader = Some(format!("{APP}/9"));
    s.relations[0].units.push("other-app/0".into());
    s.config.insert(
        "no_such_option".into(),
        charm_host::world::ConfigValue::Int(1),
    );
    s.config
        .insert("profile".into(), charm_host::world::ConfigValue::Int(1));
    let err = check::check(&s).unwrap_err().0;
    assert!(
        err.contains(&format!("leader: {APP}/9 is not one of the units")),
        "{err:?}"
    );
    assert!(err.contains(&"relations[0].units[3]: other-app/0 is not a unit of the related application postgresql-k8s".to_string()), "{err:?}");
    assert!(
        err.contains(&"config.no_such_option: the charm has no such option".to_string()),
        "{err:?}"
    );
    assert!(
        err.iter()
            .any(|e| e.starts_with("config.profile: Int(1) has the wrong type")),
        "{err:?}"
    );
    assert!(check::check(&three_units()).is_ok());
}

#[test]
fn the_demo_world_and_state_examples_are_consistent() {
    let f = "tests/data/demo-world.yaml";
    let text = std::fs::read_to_string(support::root().join(f)).unwrap();
    let s: WorldState = serde_yaml::from_str(&text).unwrap();
    check::check(&s).unwrap_or_else(|e| panic!("{f}: {e}"));
}

/// `config` is every option with a default, overridden by what is set, plus set options
/// without a default, in name order: what `config-get --all` gives.
#[tokio::test]
async fn config_merges_set_values_over_defaults_in_name_order() {
    use charm_host::bindings::Value;
    use charm_host::world::ConfigValue;
    let mut s = three_units();
    // The first option, one in the middle with a default, and ones without a default.
    s.config.insert(
        "connection_authentication_timeout".into(),
        ConfigValue::Int(30),
    );
    s.config
        .insert("experimental_max_connections".into(), ConfigValue::Int(250));
    s.config
        .insert("profile_limit_memory".into(), ConfigValue::Int(4096));
    s.config
        .insert("profile".into(), ConfigValue::Str("testing".into()));
    let w = World::new(s);
    let (caps, _session) = w.capabilities(&unit(0));
    let got = caps.juju.config().await.unwrap();
    let names: Vec<&str> = got.iter().map(|e| e.key.name()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "in name order, each option once");
    let value = |n: &str| {
        got.iter()
            .find(|e| e.key.name() == n)
            .map(|e| e.value.clone())
    };
    assert_eq!(
        value("connection_authentication_timeout"),
        Some(Value::Integer(30))
    );
    assert_eq!(
        value("experimental_max_connections"),
        Some(Value::Integer(250))
    );
    assert_eq!(value("profile_limit_memory"), Some(Value::Integer(4096)));
    assert_eq!(value("profile"), Some(Value::Text("testing".into())));
    // An option left at its default, and one without a default that is not set.
    assert_eq!(
        value("connection_statement_timeout"),
        Some(Value::Integer(0))
    );
    assert_eq!(value("ldap_map"), None);
    let defaulted = charm_host::world::config_defaults()
        .values()
        .filter(|d| d.is_some())
        .count();
    assert_eq!(got.len(), defaulted + 2, "two set options have no default");
}

/// The host skips the per-call timeout only for families that answer from memory: every
/// family of the world, and none of the production backends (a hung backend must still time
/// out, including one swapped into the world's capabilities, as `dispatch --world` does with
/// the hook tools).
#[test]
fn only_the_world_answers_in_memory() {
    let w = World::new(three_units());
    let (caps, _session) = w.capabilities(&unit(0));
    assert!(caps.juju.in_memory());
    assert!(caps.kubernetes.in_memory());
    assert!(caps.pebble.in_memory());
    assert!(caps.patroni.in_memory());
    assert!(caps.postgresql.in_memory());
    use charm_host::capability::{Pebble, Postgresql};
    let pebble = charm_host::backends::PebbleBackend::new("/nonexistent/pebble.socket");
    assert!(!pebble.in_memory());
    let pg = charm_host::backends::PostgresqlBackend::production(APP, 0, "model");
    assert!(!pg.in_memory());
}
