//! The production Juju backend (hook tools as subprocesses) against the hook-tool stand-in:
//! real processes through the multi-call client's symlinks and a unix socket, answered
//! from a simulated world.

mod support;

use std::path::{Path, PathBuf};

use charm_host::backends::juju::{HookToolsJuju, ToolRunner};
use charm_host::bindings::ErrorKind;
use charm_host::bindings::juju::{Identity, Port, SecretOwner, Status, StatusKind};
use charm_host::bindings::types::{Kv, LogLevel, NamedValue, Value};
use charm_host::capability::Juju;
use charm_host::juju_standin::{self, JujuStandIn, RecordedCall};
use charm_host::world::World;
use hook_tools::{CONTEXT_ENV, SOCKET_ENV};

const APP: &str = "postgresql-k8s";
const U0: &str = "postgresql-k8s/0";
const U1: &str = "postgresql-k8s/1";
const APP_SECRET: &str = "database-peers.postgresql-k8s.app";
const UNIT_SECRET: &str = "database-peers.postgresql-k8s.unit";

const WORLD: &str = r#"
model: {name: pg-model, uuid: 5f0e8c1a-0000-4000-8000-000000000001, juju_version: 3.6.11}
app: postgresql-k8s
leader: postgresql-k8s/0
config:
  profile: testing
  optimizer_cpu_index_tuple_cost: 1
units:
  postgresql-k8s/0: {status: {kind: waiting, message: "awaiting start"}}
  postgresql-k8s/1: {}
  postgresql-k8s/2: {dying: true}
relations:
  - id: 1
    endpoint: database-peers
    remote_app: postgresql-k8s
    units: [postgresql-k8s/0, postgresql-k8s/1, postgresql-k8s/2]
    app_data:
      postgresql-k8s: {endpoints: '["postgresql-k8s-0.postgresql-k8s-endpoints"]'}
    unit_data:
      postgresql-k8s/0: {tls: enabled}
      postgresql-k8s/1: {connectivity: "on"}
  - id: 3
    endpoint: upgrade
    remote_app: postgresql-k8s
    units: [postgresql-k8s/0, postgresql-k8s/1, postgresql-k8s/2]
    unit_data:
      postgresql-k8s/0: {state: idle}
      postgresql-k8s/1: {state: idle}
      postgresql-k8s/2: {state: idle}
  - id: 5
    endpoint: database
    remote_app: app-a
    units: [app-a/0]
    app_data:
      app-a: {database: mydb}
secrets:
  - {id: "secret:d0unitsecret00000000", label: database-peers.postgresql-k8s.unit, owner: unit, owner_name: postgresql-k8s/0, revision: 2, content: {cauth: the-ca}}
"#;

struct Agent {
    dir: tempfile::TempDir,
    agent: JujuStandIn,
}

impl Agent {
    async fn start(unit: &str) -> Agent {
        Self::start_with(World::from_yaml(WORLD).unwrap(), unit).await
    }

    async fn start_with(world: World, unit: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        juju_standin::install_tools(&support::hook_tools_bin(), &dir.path().join("tools")).unwrap();
        let agent = juju_standin::serve(world, unit, dir.path().join("agent.socket"))
            .await
            .unwrap();
        Agent { dir, agent }
    }

    fn tools(&self) -> PathBuf {
        self.dir.path().join("tools")
    }

    /// The backend for one dispatch of `unit` under context `ctx`.
    fn juju(&self, unit: &str, ctx: &str) -> HookToolsJuju {
        let runner = ToolRunner::in_dir(self.tools())
            .env(SOCKET_ENV, self.agent.socket_path().display().to_string())
            .env(CONTEXT_ENV, ctx);
        let (app, n) = unit.split_once('/').unwrap();
        let identity = Identity {
            unit: unit.into(),
            app: app.into(),
            unit_number: n.parse().unwrap(),
            model: "pg-model".into(),
            model_uuid: "5f0e8c1a-0000-4000-8000-000000000001".into(),
            juju_version: "3.6.11".into(),
        };
        HookToolsJuju::new(identity, runner)
    }

    fn calls(&self) -> Vec<RecordedCall> {
        self.agent.calls()
    }

    fn world(&self) -> &World {
        self.agent.world()
    }
}

fn kv(k: &str, v: &str) -> Kv {
    Kv::new(k, v)
}

fn argv(c: &RecordedCall) -> Vec<&str> {
    std::iter::once(c.command.as_str())
        .chain(c.args.iter().map(String::as_str))
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn peer_bag(w: &World, owner: &str) -> std::collections::BTreeMap<String, String> {
    let s = w.state();
    let r = s.relations.iter().find(|r| r.id == 1).unwrap();
    r.app_data
        .get(owner)
        .or_else(|| r.unit_data.get(owner))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_round_trips_with_ops_argv_and_is_read_once() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-read");

    assert!(j.is_leader().await.unwrap());
    let cfg = j.config().await.unwrap();
    let get = |n: &str| {
        cfg.iter()
            .find(|c| c.key.name() == n)
            .map(|c| c.value.clone())
    };
    assert_eq!(get("profile"), Some(Value::Text("testing".into())));
    assert_eq!(
        get("optimizer_cpu_index_tuple_cost"),
        Some(Value::Float(1.0)),
        "a float option holding 1 stays a float"
    );
    assert_eq!(
        get("connection_authentication_timeout"),
        Some(Value::Integer(60)),
        "defaults are included"
    );

    assert_eq!(j.relation_ids("database-peers".into()).await.unwrap(), [1]);
    assert_eq!(j.relation_ids("database".into()).await.unwrap(), [5]);
    assert!(
        j.relation_ids("certificates".into())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        j.relation_units(1).await.unwrap(),
        strs(&[U1, "postgresql-k8s/2"])
    );
    assert_eq!(j.relation_units(5).await.unwrap(), strs(&["app-a/0"]));
    assert_eq!(j.relation_remote_app(5).await.unwrap(), "app-a");
    assert_eq!(j.relation_remote_app(1).await.unwrap(), APP);
    assert_eq!(
        j.relation_get(1, APP.into(), true).await.unwrap(),
        [kv(
            "endpoints",
            r#"["postgresql-k8s-0.postgresql-k8s-endpoints"]"#
        )]
    );
    assert_eq!(
        j.relation_get(1, U0.into(), false).await.unwrap(),
        [kv("tls", "enabled")]
    );
    assert_eq!(
        j.relation_get(1, U1.into(), false).await.unwrap(),
        [kv("connectivity", "on")]
    );
    assert_eq!(
        j.relation_get(5, "app-a".into(), true).await.unwrap(),
        [kv("database", "mydb")]
    );
    assert_eq!(
        j.secret_get(UNIT_SECRET.into()).await.unwrap(),
        Some(vec![kv("cauth", "the-ca")])
    );
    assert_eq!(j.secret_get(APP_SECRET.into()).await.unwrap(), None);
    assert_eq!(
        j.planned_units().await.unwrap(),
        2,
        "the dying unit is not planned"
    );
    assert_eq!(j.state_get("nothing".into()).await.unwrap(), None);
    assert_eq!(
        j.unit_status().await.unwrap(),
        Status {
            kind: StatusKind::Waiting,
            message: "awaiting start".into()
        }
    );
    assert_eq!(
        j.app_status().await.unwrap(),
        Status {
            kind: StatusKind::Unknown,
            message: String::new()
        }
    );

    let expected: Vec<Vec<&str>> = vec![
        vec!["is-leader", "--format=json"],
        vec!["config-get", "--format=json"],
        vec!["relation-ids", "database-peers", "--format=json"],
        vec!["relation-ids", "database", "--format=json"],
        vec!["relation-ids", "certificates", "--format=json"],
        vec!["relation-list", "--format=json", "-r", "database-peers:1"],
        vec!["relation-list", "--format=json", "-r", "database:5"],
        vec![
            "relation-list",
            "--format=json",
            "--app",
            "-r",
            "database:5",
        ],
        vec![
            "relation-list",
            "--format=json",
            "--app",
            "-r",
            "database-peers:1",
        ],
        vec![
            "relation-get",
            "--format=json",
            "-r",
            "database-peers:1",
            "--app",
            "-",
            APP,
        ],
        vec![
            "relation-get",
            "--format=json",
            "-r",
            "database-peers:1",
            "-",
            U0,
        ],
        vec![
            "relation-get",
            "--format=json",
            "-r",
            "database-peers:1",
            "-",
            U1,
        ],
        vec![
            "relation-get",
            "--format=json",
            "-r",
            "database:5",
            "--app",
            "-",
            "app-a",
        ],
        vec!["secret-get", "--format=json", "--label", UNIT_SECRET],
        vec!["secret-get", "--format=json", "--label", APP_SECRET],
        vec!["goal-state", "--format=json"],
        vec!["state-get", "--format=json"],
        vec![
            "status-get",
            "--include-data",
            "--format=json",
            "--application=false",
        ],
        vec![
            "status-get",
            "--include-data",
            "--format=json",
            "--application=true",
        ],
    ];
    let calls = a.calls();
    assert_eq!(calls.iter().map(argv).collect::<Vec<_>>(), expected);
    assert_eq!(j.call_count(), expected.len());
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.code != 0)
            .map(argv)
            .collect::<Vec<_>>(),
        vec![vec!["secret-get", "--format=json", "--label", APP_SECRET]],
        "only the missing secret failed"
    );

    // Everything again: answered from this dispatch's cache, no tool runs.
    j.is_leader().await.unwrap();
    j.config().await.unwrap();
    j.relation_ids("database-peers".into()).await.unwrap();
    j.relation_units(1).await.unwrap();
    j.relation_remote_app(5).await.unwrap();
    j.relation_get(1, APP.into(), true).await.unwrap();
    j.relation_get(1, U1.into(), false).await.unwrap();
    assert_eq!(j.secret_get(APP_SECRET.into()).await.unwrap(), None);
    j.secret_get(UNIT_SECRET.into()).await.unwrap();
    j.planned_units().await.unwrap();
    j.state_get("other".into()).await.unwrap();
    j.unit_status().await.unwrap();
    j.app_status().await.unwrap();
    assert_eq!(
        j.call_count(),
        expected.len(),
        "{:?}",
        a.calls()
            .iter()
            .skip(expected.len())
            .map(argv)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_buffered_flushed_once_and_durable_only_when_the_context_commits() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-write");
    // As every dispatch does first (the deferral queue): the stored state is read.
    assert_eq!(
        j.state_get("charm-host.deferred".into()).await.unwrap(),
        None
    );
    j.relation_ids("database-peers".into()).await.unwrap();

    j.relation_set(1, true, vec![kv("endpoints", "[\"a\"]")])
        .await
        .unwrap();
    j.relation_set(
        1,
        true,
        vec![
            kv("cluster_initialised", "True"),
            kv("endpoints", "[\"a\",\"b\"]"),
        ],
    )
    .await
    .unwrap();
    j.relation_set(1, false, vec![kv("tls", ""), kv("config_hash", "abc")])
        .await
        .unwrap();
    j.state_set("k1".into(), "v1".into()).await.unwrap();
    j.state_set("k2".into(), "v2".into()).await.unwrap();
    j.state_set("k1".into(), "v1b".into()).await.unwrap();
    j.state_delete("k2".into()).await.unwrap();
    j.set_ports(vec![
        Port {
            protocol: "tcp".into(),
            port: 5432,
        },
        Port {
            protocol: "tcp".into(),
            port: 8008,
        },
    ])
    .await
    .unwrap();
    j.set_workload_version("16.6".into()).await.unwrap();
    j.set_workload_version("16.6".into()).await.unwrap();
    j.set_unit_status(Status {
        kind: StatusKind::Maintenance,
        message: "-starting".into(),
    })
    .await
    .unwrap();
    j.set_unit_status(Status {
        kind: StatusKind::Maintenance,
        message: "-starting".into(),
    })
    .await
    .unwrap();
    j.set_app_status(Status {
        kind: StatusKind::Active,
        message: String::new(),
    })
    .await
    .unwrap();

    // Reads see this dispatch's pending writes.
    assert_eq!(
        j.relation_get(1, APP.into(), true).await.unwrap(),
        [
            kv("cluster_initialised", "True"),
            kv("endpoints", "[\"a\",\"b\"]")
        ]
    );
    assert_eq!(
        j.relation_get(1, U0.into(), false).await.unwrap(),
        [kv("config_hash", "abc")]
    );
    assert_eq!(
        j.state_get("k1".into()).await.unwrap().as_deref(),
        Some("v1b")
    );
    assert_eq!(j.state_get("k2".into()).await.unwrap(), None);

    let before_commit = a.calls().len();
    assert!(
        !a.calls().iter().any(|c| matches!(
            c.command.as_str(),
            "relation-set" | "state-set" | "open-port"
        )),
        "nothing is written before commit"
    );
    assert!(!peer_bag(a.world(), APP).contains_key("cluster_initialised"));

    j.commit().await.unwrap();
    // The writes run concurrently (Juju applies them together at hook exit), so the agent
    // may see them in any order: compare them sorted; only the ports read comes before the
    // port writes it decides.
    let flushed: Vec<RecordedCall> = a.calls().into_iter().skip(before_commit).collect();
    let mut sorted: Vec<(Vec<&str>, Option<&str>)> = flushed
        .iter()
        .map(|c| (argv(c), c.stdin.as_deref()))
        .collect();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            (vec!["open-port", "5432/tcp"], None),
            (vec!["open-port", "8008/tcp"], None),
            (vec!["opened-ports", "--format=json"], None),
            (
                vec![
                    "relation-set",
                    "-r",
                    "database-peers:1",
                    "--app",
                    "--file",
                    "-"
                ],
                Some(r#"{"cluster_initialised":"True","endpoints":"[\"a\",\"b\"]"}"#)
            ),
            (
                vec!["relation-set", "-r", "database-peers:1", "--file", "-"],
                Some(r#"{"config_hash":"abc","tls":""}"#)
            ),
            (vec!["state-set", "--file", "-"], Some(r#"{"k1":"v1b"}"#)),
        ],
        "one relation-set per bag, one state-set, no state-delete for a key Juju never stored"
    );
    let at = |cmd: &str| flushed.iter().position(|c| c.command == cmd).unwrap();
    assert!(at("opened-ports") < at("open-port"));
    let statuses: Vec<_> = a
        .calls()
        .iter()
        .filter(|c| c.command == "status-set" || c.command == "application-version-set")
        .map(|c| argv(c).join(" "))
        .collect();
    assert_eq!(
        statuses,
        [
            "application-version-set -- 16.6",
            "status-set --application=False maintenance -- -starting",
            "status-set --application=True active -- "
        ]
    );

    // Status is immediate in Juju; the rest waits for the hook's context to commit.
    let w = a.world().state();
    assert_eq!(w.units[U0].status.message, "-starting");
    assert_eq!(w.units[U0].workload_version, "16.6");
    assert!(
        !peer_bag(a.world(), APP).contains_key("cluster_initialised"),
        "not durable before the context commits"
    );
    assert!(w.units[U0].state.is_empty());

    let changed = a.agent.commit("ctx-write").await.unwrap();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        peer_bag(a.world(), APP)
            .get("cluster_initialised")
            .map(String::as_str),
        Some("True")
    );
    assert_eq!(
        peer_bag(a.world(), U0),
        [("config_hash".to_string(), "abc".to_string())].into()
    );
    let w = a.world().state();
    assert_eq!(
        w.units[U0].state,
        [("k1".to_string(), "v1b".to_string())].into()
    );
    assert_eq!(
        w.units[U0].ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        [5432, 8008]
    );

    // The context is finished: Juju refuses tools of a hook that has exited.
    let late = a.juju(U0, "ctx-write");
    let e = late.is_leader().await.unwrap_err();
    assert!(e.message.contains("is finished"), "{e:?}");

    // A later dispatch: deleting a stored key costs exactly one state-delete; ports diff.
    let j2 = a.juju(U0, "ctx-write-2");
    assert_eq!(
        j2.state_get("k1".into()).await.unwrap().as_deref(),
        Some("v1b")
    );
    j2.state_delete("k1".into()).await.unwrap();
    j2.set_ports(vec![Port {
        protocol: "tcp".into(),
        port: 5432,
    }])
    .await
    .unwrap();
    let n = a.calls().len();
    j2.commit().await.unwrap();
    // Concurrent writes: any order, but the ports read before the port write it decides.
    let flushed: Vec<RecordedCall> = a.calls().into_iter().skip(n).collect();
    let mut sorted: Vec<Vec<&str>> = flushed.iter().map(argv).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            vec!["close-port", "8008/tcp"],
            vec!["opened-ports", "--format=json"],
            vec!["state-delete", "k1"],
        ]
    );
    let at = |cmd: &str| flushed.iter().position(|c| c.command == cmd).unwrap();
    assert!(at("opened-ports") < at("close-port"));
    a.agent.commit("ctx-write-2").await.unwrap();
    assert!(a.world().state().units[U0].state.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_context_changes_nothing() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-fail");
    j.relation_set(1, true, vec![kv("cluster_initialised", "True")])
        .await
        .unwrap();
    j.state_set("x".into(), "y".into()).await.unwrap();
    let id = j
        .secret_add(
            APP_SECRET.into(),
            SecretOwner::Application,
            vec![kv("operator-password", "pw-abort-1")],
        )
        .await
        .unwrap();
    assert!(id.starts_with("secret:"), "{id}");
    j.commit().await.unwrap(); // the backend flushed; the hook then failed
    a.agent.abort("ctx-fail");
    let w = a.world().state();
    assert!(!peer_bag(a.world(), APP).contains_key("cluster_initialised"));
    assert!(w.units[U0].state.is_empty());
    assert!(
        w.secrets.iter().all(|s| s.label != APP_SECRET),
        "the secret was never created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_go_through_private_files_never_argv() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-secret");
    let passwords = [
        "Zq3operatorPW8x",
        "Lk2replicationPW",
        "Rw9rewindPW00aa",
        "Mn4monitoringPW1",
    ];
    assert_eq!(j.secret_get(APP_SECRET.into()).await.unwrap(), None);
    let id = j
        .secret_add(
            APP_SECRET.into(),
            SecretOwner::Application,
            vec![kv("operator-password", passwords[0])],
        )
        .await
        .unwrap();
    // The charm adds one password at a time; each later write merges into one secret-set.
    let mut content = vec![kv("operator-password", passwords[0])];
    for (k, p) in [
        ("replication-password", passwords[1]),
        ("rewind-password", passwords[2]),
        ("monitoring-password", passwords[3]),
    ] {
        content.push(kv(k, p));
        j.secret_set(APP_SECRET.into(), content.clone())
            .await
            .unwrap();
    }
    let mut sorted = content.clone();
    sorted.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(
        j.secret_get(APP_SECRET.into()).await.unwrap(),
        Some(sorted.clone())
    );
    // The existing unit secret: its id comes from secret-info-get, once.
    j.secret_set(
        UNIT_SECRET.into(),
        vec![kv("cauth", "new-ca"), kv("key", "PRIVATEKEYDATA")],
    )
    .await
    .unwrap();
    j.commit().await.unwrap();
    a.agent.commit("ctx-secret").await.unwrap();

    let calls = a.calls();
    let tools: Vec<String> = calls.iter().map(|c| c.command.clone()).collect();
    assert_eq!(
        tools,
        [
            "secret-get",
            "is-leader",
            "secret-add",
            "secret-info-get",
            "secret-set",
            "secret-set"
        ]
    );
    let add = &calls[2];
    assert_eq!(
        &add.args[..4],
        ["--label", APP_SECRET, "--owner", "application"]
    );
    assert!(
        add.args[4].starts_with("operator-password#file=/"),
        "{:?}",
        add.args
    );
    assert_eq!(calls[3].args, ["--format=json", "--label", UNIT_SECRET]);
    let set_app = calls
        .iter()
        .find(|c| c.command == "secret-set" && c.args[0] == id)
        .expect("secret-set of the new secret");
    assert_eq!(
        set_app.args.len(),
        5,
        "one secret-set with the whole content: {:?}",
        set_app.args
    );
    for c in &calls {
        for secret in passwords.iter().chain(&["PRIVATEKEYDATA", "new-ca"]) {
            assert!(
                !c.args.iter().any(|arg| arg.contains(secret)),
                "secret content in argv of {}: {:?}",
                c.command,
                c.args
            );
            assert!(c.stdin.as_deref().is_none_or(|s| !s.contains(secret)));
        }
        for f in &c.files {
            assert!(!Path::new(f).exists(), "secret file {f} was left behind");
        }
    }
    let w = a.world().state();
    let app = w.secrets.iter().find(|s| s.label == APP_SECRET).unwrap();
    assert_eq!(app.id, id);
    assert_eq!(app.content.len(), 4);
    assert_eq!(app.content["rewind-password"], passwords[2]);
    assert_eq!(
        app.revision, 2,
        "created, then one revision for the folded updates"
    );
    let unit = w.secrets.iter().find(|s| s.label == UNIT_SECRET).unwrap();
    assert_eq!(unit.content["key"], "PRIVATEKEYDATA");
    assert_eq!(unit.revision, 3);

    // Unchanged content writes no revision.
    let j2 = a.juju(U0, "ctx-secret-2");
    j2.secret_get(UNIT_SECRET.into()).await.unwrap();
    j2.secret_set(
        UNIT_SECRET.into(),
        vec![kv("key", "PRIVATEKEYDATA"), kv("cauth", "new-ca")],
    )
    .await
    .unwrap();
    j2.commit().await.unwrap();
    assert!(
        !a.calls()
            .iter()
            .skip(calls.len())
            .any(|c| c.command == "secret-set")
    );

    // Removal, by id.
    let j3 = a.juju(U0, "ctx-secret-3");
    j3.secret_remove(id.clone(), None).await.unwrap();
    j3.commit().await.unwrap();
    a.agent.commit("ctx-secret-3").await.unwrap();
    assert!(a.world().state().secrets.iter().all(|s| s.id != id));
    assert_eq!(
        argv(a.calls().last().unwrap()),
        ["secret-remove", id.as_str()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_like_ops_and_keep_stderr() {
    let a = Agent::start(U1).await;
    let j = a.juju(U1, "ctx-err");

    let e = j.relation_get(9, U0.into(), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert_eq!(
        e.message,
        "relation-get failed (exit 1): ERROR invalid value \"9\" for option -r: relation not found"
    );
    assert_eq!(
        j.relation_units(9).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    let e = j
        .relation_set(9, false, vec![kv("a", "b")])
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::NotFound,
        "a write to a missing relation fails at the call: {e:?}"
    );

    // Not the leader: refused at the call (is-leader is asked once).
    assert!(!j.is_leader().await.unwrap());
    assert_eq!(
        j.relation_set(1, true, vec![kv("a", "b")])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(j.app_status().await.unwrap_err().kind, ErrorKind::Forbidden);
    assert_eq!(
        j.set_app_status(Status {
            kind: StatusKind::Active,
            message: String::new()
        })
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Forbidden
    );
    assert_eq!(
        j.secret_add(
            APP_SECRET.into(),
            SecretOwner::Application,
            vec![kv("operator-password", "x")]
        )
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Forbidden
    );

    // secret-* "not found" -> not-found; someone else's secret -> not found for its label.
    let e = j
        .secret_set("no-such-label".into(), vec![kv("abc", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    assert!(
        e.message
            .contains("secret-info-get failed (exit 1): ERROR secret \"no-such-label\" not found"),
        "{}",
        e.message
    );
    let e = j
        .secret_set(UNIT_SECRET.into(), vec![kv("abc", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "unit 0's secret: {e:?}");
    assert!(e.message.contains("permission denied"), "{}", e.message);
    assert_eq!(
        j.secret_remove("secret:nope".into(), None)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );

    // A label already taken (unit 1 owns no unit secret yet; create one twice in two contexts).
    let j_other = a.juju(U1, "ctx-err-a");
    j_other
        .secret_add("u1-secret".into(), SecretOwner::Unit, vec![kv("abc", "1")])
        .await
        .unwrap();
    j_other.commit().await.unwrap();
    a.agent.commit("ctx-err-a").await.unwrap();
    let e = a
        .juju(U1, "ctx-err-b")
        .secret_add("u1-secret".into(), SecretOwner::Unit, vec![kv("abc", "2")])
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e:?}");

    // Refused before any tool runs.
    let n = j.call_count();
    assert_eq!(
        j.set_unit_status(Status {
            kind: StatusKind::Error,
            message: "x".into()
        })
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Invalid
    );
    assert_eq!(
        j.secret_add(
            "l".into(),
            SecretOwner::Unit,
            vec![kv("../../etc/passwd", "x")]
        )
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Invalid
    );
    assert_eq!(
        j.secret_add("l".into(), SecretOwner::Unit, vec![])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Invalid
    );
    assert_eq!(
        j.set_ports(vec![Port {
            protocol: "sctp".into(),
            port: 1
        }])
        .await
        .unwrap_err()
        .kind,
        ErrorKind::Invalid
    );
    assert_eq!(j.call_count(), n);

    // Not an action: action-get fails with the tool's message.
    let e = j.action_params().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Other);
    assert!(e.message.contains("not running an action"), "{}", e.message);

    // An injected agent fault surfaces as other, with the stderr.
    a.world().with_state(|s| {
        s.faults.push(
            serde_yaml::from_str(
                "{call: juju.config, error: other, message: agent lost its API connection}",
            )
            .unwrap(),
        )
    });
    let e = j.config().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Other, "{e:?}");
    assert!(
        e.message.starts_with("config-get failed (exit 1): ERROR "),
        "{}",
        e.message
    );

    // No tools at all (not inside Juju): unreachable.
    let lost = HookToolsJuju::new(
        j.identity(),
        ToolRunner::in_dir(a.dir.path().join("nowhere")),
    );
    let e = lost.is_leader().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    // And a tool without an agent socket.
    let nosock = HookToolsJuju::new(
        j.identity(),
        ToolRunner::in_dir(a.tools()).env(CONTEXT_ENV, "x").env(
            SOCKET_ENV,
            a.dir.path().join("none.socket").display().to_string(),
        ),
    );
    let e = nosock.is_leader().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Other);
    assert!(
        e.message.contains("cannot reach the Juju agent"),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_and_logging() {
    let world = World::from_yaml(WORLD).unwrap();
    world.with_state(|s| {
        s.action = Some(
            serde_yaml::from_str(
                "{name: get-password, params: {username: operator, verbose: true, count: 3}}",
            )
            .unwrap(),
        );
    });
    let a = Agent::start_with(world, U0).await;
    let j = a.juju(U0, "ctx-action");
    let params = j.action_params().await.unwrap();
    assert_eq!(
        params,
        vec![
            NamedValue {
                name: "count".into(),
                value: Value::Integer(3)
            },
            NamedValue {
                name: "username".into(),
                value: Value::Text("operator".into())
            },
            NamedValue {
                name: "verbose".into(),
                value: Value::Boolean(true)
            },
        ]
    );
    j.action_params().await.unwrap();
    j.action_set(vec![
        kv("password", "s3cret"),
        kv("detail.user", "operator"),
    ])
    .await
    .unwrap();
    j.action_log("-working".into()).await.unwrap();
    j.action_fail("-no luck".into()).await.unwrap();
    // Info and below stay on stderr; warnings reach juju-log.
    j.log(LogLevel::Info, "chatty".into()).await;
    j.log(LogLevel::Debug, "chattier".into()).await;
    j.log(LogLevel::Warning, "-careful".into()).await;
    j.log(LogLevel::Error, "broken".into()).await;
    let owned = a.calls();
    let calls_ref: Vec<Vec<&str>> = owned.iter().map(argv).collect();
    assert_eq!(
        calls_ref,
        vec![
            vec!["action-get", "--format=json"],
            vec!["action-set", "password=s3cret", "detail.user=operator"],
            vec!["action-log", "--", "-working"],
            vec!["action-fail", "--", "-no luck"],
            vec!["juju-log", "--log-level", "WARNING", "--", "-careful"],
            vec!["juju-log", "--log-level", "ERROR", "--", "broken"],
        ]
    );
    let act = a.world().state().action.unwrap();
    assert_eq!(act.results["password"], "s3cret");
    assert_eq!(act.results["detail.user"], "operator");
    assert_eq!(act.logs, ["-working"]);
    assert_eq!(act.failed.as_deref(), Some("-no luck"));

    // A bad result key is refused by action-set, and the value stays out of the error.
    let e = j
        .action_set(vec![kv("Bad_Key", "topsecretvalue")])
        .await
        .unwrap_err();
    assert!(!e.message.contains("topsecretvalue"), "{}", e.message);
}

/// The Juju calls of the project's leader-elected plugin on a fresh 3-unit deployment
/// (upstream's `_on_leader_elected`, spec charm-anatomy §2.2, as the Rust plugin makes them):
/// the deferral queue; leadership, asked before every leader-only step; the five passwords,
/// looked up one by one and stored in one secret at the end; `endpoints` in the peer app
/// bag, read at each step; `upgrade.idle` (every unit's `state` in the `upgrade` relation);
/// the peers for departed members; info logs; one merged write of the app bag.
/// `busy` adds what a less quiet run does: a status, a warning, the unit secret, a defer.
async fn typical_leader_elected(j: &HookToolsJuju, busy: bool) -> usize {
    let mut capability_calls = 0;
    macro_rules! cap {
        ($e:expr) => {{
            capability_calls += 1;
            $e.await
        }};
    }
    cap!(j.state_get("charm-host.deferred".into())).unwrap();
    let mut passwords = Vec::new();
    for user in ["operator", "replication", "rewind", "monitoring", "patroni"] {
        assert!(cap!(j.is_leader()).unwrap());
        if cap!(j.secret_get(APP_SECRET.into())).unwrap().is_none() {
            passwords.push(kv(
                &format!("{user}-password"),
                &format!("{user}-Pw-0123456789"),
            ));
        }
        let peers = cap!(j.relation_ids("database-peers".into())).unwrap()[0];
        cap!(j.relation_get(peers, APP.into(), true)).unwrap(); // legacy plain copy?
    }
    let peers = cap!(j.relation_ids("database-peers".into())).unwrap()[0];
    for _ in 0..4 {
        cap!(j.relation_get(peers, APP.into(), true)).unwrap(); // endpoints, cluster_initialised
    }
    let upgrade = cap!(j.relation_ids("upgrade".into())).unwrap()[0];
    let mut units = cap!(j.relation_units(upgrade)).unwrap();
    units.push(U0.into());
    for u in units {
        cap!(j.relation_get(upgrade, u, false)).unwrap();
    }
    for _ in 0..2 {
        cap!(j.relation_units(peers)).unwrap();
        assert!(cap!(j.is_leader()).unwrap());
    }
    cap!(j.log(LogLevel::Info, "cleaning up old cluster resources".into()));
    cap!(j.log(
        LogLevel::Info,
        "cluster not initialised yet; not adding members".into()
    ));
    cap!(j.relation_set(
        peers,
        true,
        vec![kv(
            "endpoints",
            r#"["postgresql-k8s-0.postgresql-k8s-endpoints"]"#
        )]
    ))
    .unwrap();
    cap!(j.relation_set(peers, true, vec![kv("endpoints", r#"["postgresql-k8s-0.postgresql-k8s-endpoints","postgresql-k8s-1.postgresql-k8s-endpoints"]"#)])).unwrap();
    if busy {
        cap!(j.secret_get(UNIT_SECRET.into())).unwrap();
        cap!(j.set_unit_status(Status {
            kind: StatusKind::Maintenance,
            message: "reconfiguring cluster".into()
        }))
        .unwrap();
        cap!(j.log(
            LogLevel::Warning,
            "member postgresql-k8s-2 is not ready yet".into()
        ));
        cap!(j.state_set(
            "charm-host.deferred".into(),
            r#"{"version":1,"notices":[]}"#.into()
        ))
        .unwrap();
    }
    // The plugin's flush: the whole app secret at once.
    cap!(j.secret_add(APP_SECRET.into(), SecretOwner::Application, passwords)).unwrap();
    j.commit().await.unwrap();
    capability_calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typical_leader_elected_needs_at_most_15_hook_tools() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-leader-elected");
    let capability_calls = typical_leader_elected(&j, false).await;
    a.agent.commit("ctx-leader-elected").await.unwrap();
    let tools: Vec<String> = a.calls().iter().map(|c| c.command.clone()).collect();
    eprintln!(
        "leader-elected: {capability_calls} capability calls -> {} hook-tool calls: {tools:?}",
        tools.len()
    );
    assert!(
        tools.len() <= 15,
        "{} hook-tool calls: {tools:?}",
        tools.len()
    );
    assert_eq!(tools.len(), j.call_count());
    assert_eq!(
        tools.iter().filter(|t| *t == "relation-set").count(),
        1,
        "two writes, one relation-set"
    );
    let w = a.world().state();
    assert_eq!(
        w.secrets
            .iter()
            .find(|s| s.label == APP_SECRET)
            .unwrap()
            .content
            .len(),
        5
    );
    assert!(peer_bag(a.world(), APP)["endpoints"].contains("postgresql-k8s-1"));

    // A busier run: one call more for each of status, warning, unit secret and the queue.
    let b = Agent::start(U0).await;
    let j = b.juju(U0, "ctx-busy");
    let capability_calls = typical_leader_elected(&j, true).await;
    let tools: Vec<String> = b.calls().iter().map(|c| c.command.clone()).collect();
    eprintln!(
        "busy leader-elected: {capability_calls} capability calls -> {} hook-tool calls: {tools:?}",
        tools.len()
    );
    assert_eq!(tools.len(), a.calls().len() + 4, "{tools:?}");
}

/// `charm-host juju-standin ... -- charm-host dispatch --juju hook-tools ...`: the whole
/// chain with real processes, committing only a successful hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_dispatch_under_the_stand_in() {
    let plugins = support::plugins_dir(&[("install", "recorder"), ("fail-now", "recorder")]);
    let dir = tempfile::tempdir().unwrap();
    let juju_world = dir.path().join("juju.yaml");
    let other_world = dir.path().join("rest.yaml");
    std::fs::write(&juju_world, WORLD).unwrap();
    std::fs::write(&other_world, WORLD).unwrap();
    let host = env!("CARGO_BIN_EXE_charm-host");
    let run = |event: &str| {
        support::juju_standin(&juju_world, U0, dir.path())
            .args([host, "dispatch", "--juju", "hook-tools", "--world"])
            .arg(&other_world)
            .args(["--event", event, "--plugins"])
            .arg(plugins.path())
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let ok = run("install");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("committed context"), "{text}");
    let w = World::from_yaml(&std::fs::read_to_string(&juju_world).unwrap())
        .unwrap()
        .state();
    assert_eq!(
        w.units[U0].state.get("log").map(String::as_str),
        Some("install;"),
        "{text}"
    );

    let failed = run("fail-now");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&failed.stdout),
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(text.contains("discarded the writes"), "{text}");
    let w = World::from_yaml(&std::fs::read_to_string(&juju_world).unwrap())
        .unwrap()
        .state();
    assert_eq!(
        w.units[U0].state.get("log").map(String::as_str),
        Some("install;"),
        "the failed hook's state-set was not committed"
    );
}

/// Issue 5's budget, with the real plugin: a fresh leader-elected on a 3-unit deployment makes
/// at most 15 hook-tool calls (each is a process and an agent round trip in Juju; the upstream
/// charm makes about 123).
///
/// The hook is dispatched twice on the same fresh deployment, with one compiled-code cache:
/// the second dispatch starts the reads the first one made ahead of the plugin (the cache's
/// read plan), and must make the same calls and reach the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_leader_elected_plugin_makes_at_most_15_hook_tool_calls() {
    let plugins = support::root().join("target/plugins");
    assert!(
        plugins.join("leader-elected.wasm").exists(),
        "run `cargo xtask build` first"
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let plan = cache.join("hook-tool-reads/leader-elected.json");
    let fresh =
        std::fs::read_to_string(support::root().join("tests/data/fresh-3-units.yaml")).unwrap();
    let host = env!("CARGO_BIN_EXE_charm-host");
    let mut tallies = Vec::new();
    for round in ["first (no read plan)", "second (reads started ahead)"] {
        assert_eq!(plan.exists(), !tallies.is_empty(), "{round}");
        let juju_world = dir.path().join("juju.yaml");
        let other_world = dir.path().join("rest.yaml");
        std::fs::write(&juju_world, &fresh).unwrap();
        std::fs::write(&other_world, &fresh).unwrap();
        let out = support::juju_standin(&juju_world, U0, dir.path())
            .args([host, "dispatch", "--juju", "hook-tools", "--world"])
            .arg(&other_world)
            .args(["--event", "leader-elected", "--plugins"])
            .arg(&plugins)
            .arg("--cache-dir")
            .arg(&cache)
            .env("CHARM_HOST_LOG", "error")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{round}: {text}");
        let calls = juju_standin::parse_call_tally(&text)
            .unwrap_or_else(|| panic!("no call tally in: {text}"));
        assert!(calls <= 15, "{round}: {calls} hook-tool calls: {text}");
        tallies.push(calls);
        // And the hook did its work through them: passwords stored, own endpoint listed.
        let world = World::from_yaml(&std::fs::read_to_string(&juju_world).unwrap()).unwrap();
        let w = world.state();
        let secret = w
            .secrets
            .iter()
            .find(|s| s.label == APP_SECRET)
            .unwrap_or_else(|| panic!("{round}: the app secret was added"));
        for user in ["operator", "replication", "rewind", "monitoring", "patroni"] {
            assert_eq!(
                secret.content[&format!("{user}-password")].len(),
                16,
                "{round}: {user}"
            );
        }
        assert_eq!(
            peer_bag(&world, APP)["endpoints"],
            r#"["postgresql-k8s-0.postgresql-k8s-endpoints"]"#,
            "{round}"
        );
    }
    assert_eq!(
        tallies[0], tallies[1],
        "a read started ahead replaces the call, it does not add one"
    );
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let tools: Vec<&str> = kept["reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"is-leader") && tools.contains(&"state-get"),
        "{tools:?}"
    );
    assert!(
        !tools
            .iter()
            .any(|t| t.ends_with("-set") || *t == "secret-add"),
        "only reads are kept: {tools:?}"
    );
}

/// Reads started ahead answer exactly as the live calls would, count once, and a write
/// discards the started reads of its kind (their answers may be stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_started_ahead_answer_as_live_calls_and_a_write_discards_stale_ones() {
    let a = Agent::start(U0).await;
    let j = a.juju(U0, "ctx-ahead");
    let call = |tool: &str, args: &[&str]| -> (String, Vec<String>) {
        (
            tool.to_string(),
            args.iter().map(|a| a.to_string()).collect(),
        )
    };
    let own_bag = ["--format=json", "-r", "database-peers:1", "-", U0];
    j.runner().prefetch(&[
        call("is-leader", &["--format=json"]),
        call("relation-get", &own_bag),
        // Not reads: never started ahead.
        call("relation-set", &["-r", "database-peers:1", "--file", "-"]),
        call("secret-get", &["secret:d0unitsecret00000000", "--refresh"]),
    ]);
    // They run before anything asks for them.
    let t = std::time::Instant::now();
    while a.calls().len() < 2 {
        assert!(
            t.elapsed().as_secs() < 20,
            "reads started ahead never reached the agent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(j.is_leader().await.unwrap());
    let is_leader_calls = || {
        a.calls()
            .iter()
            .filter(|c| c.command == "is-leader")
            .count()
    };
    assert_eq!(is_leader_calls(), 1, "the started read answered the ask");
    let runner = j.runner();
    let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // A write to the relation makes the started relation-get stale: the next one is live and
    // sees the write, as it would in Juju's hook context.
    runner
        .run(
            "relation-set",
            &args(&["-r", "database-peers:1", "--file", "-"]),
            Some(r#"{"tls":"","ahead":"yes"}"#),
        )
        .await
        .unwrap();
    let bag = runner
        .run("relation-get", &args(&own_bag), None)
        .await
        .unwrap();
    assert!(bag.contains("ahead"), "a stale answer was used: {bag}");
    assert!(!a.calls().iter().any(|c| c.command == "secret-get"));
    assert_eq!(
        runner.count(),
        4,
        "is-leader, relation-get twice, relation-set"
    );
    assert_eq!(
        runner.reads(),
        vec![
            call("is-leader", &["--format=json"]),
            call("relation-get", &own_bag)
        ]
    );
}

/// A tool that hangs, as an agent that stops answering makes every tool hang: it records its
/// pid and sleeps (exec'd, so the pid is the sleeping process).
fn hanging_tools(tool: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = dir.path().join(tool);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}.tmp && mv {0}.tmp {0}\nexec sleep 60\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, pid_file)
}

async fn started_pid(pid_file: &Path) -> u32 {
    let t = std::time::Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(pid_file) {
            return s.trim().parse().unwrap();
        }
        assert!(
            t.elapsed().as_secs() < 20,
            "the read started ahead never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Gone: killed and reaped by its worker (a live or unreaped process keeps `/proc/<pid>`).
async fn assert_gone(pid: u32, what: &str) {
    let t = std::time::Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t.elapsed().as_secs() < 10,
            "{what}: tool process {pid} still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A read started ahead whose caller gives up (the host's per-call timeout drops the call)
/// takes its hung tool process with it, as a live call's process is killed on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_started_ahead_is_killed_when_its_caller_gives_up() {
    let (dir, pid_file) = hanging_tools("is-leader");
    let runner = ToolRunner::in_dir(dir.path());
    let argv = vec!["--format=json".to_string()];
    runner.prefetch(&[("is-leader".to_string(), argv.clone())]);
    let pid = started_pid(&pid_file).await;
    let asked = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        runner.run("is-leader", &argv, None),
    )
    .await;
    assert!(asked.is_err(), "the hung tool answered: {asked:?}");
    assert_gone(pid, "after the call timed out").await;
}

/// Reads never asked for are killed with the runner (the end of the dispatch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_asked_for_are_killed_with_the_runner() {
    let (dir, pid_file) = hanging_tools("is-leader");
    let runner = ToolRunner::in_dir(dir.path());
    runner.prefetch(&[("is-leader".to_string(), vec!["--format=json".to_string()])]);
    let pid = started_pid(&pid_file).await;
    drop(runner);
    assert_gone(pid, "after the runner was dropped").await;
}
