//! Random, consistent worlds and fault plans for the fuzzer.
//!
//! Consistent by construction (the checker confirms it): pods for every unit, Patroni members
//! only where a pod is labelled and its service runs, at most one leader, secrets owned by
//! the application. The generated space covers every decision the seed hooks branch on.

use rand::rngs::StdRng;
use rand::{Rng, RngExt};

use crate::world::*;

const CALLS: &[&str] = &[
    "kubernetes.get-pod",
    "kubernetes.patch-pod-labels",
    "kubernetes.apply-service",
    "kubernetes.get-endpoints",
    "kubernetes.patch-endpoints-annotations",
    "kubernetes.delete-service",
    "kubernetes.delete-endpoints",
    "kubernetes.get-node-allocatable",
    "kubernetes.*",
    "pebble.get-system-info",
    "pebble.push",
    "pebble.add-layer",
    "pebble.replan",
    "pebble.exec",
    "pebble.*",
    "patroni.get-cluster",
    "patroni.get-health",
    "patroni.patch-config",
    "patroni.*",
    "postgresql.create-user",
    "postgresql.list-users",
    "postgresql.*",
    "juju.secret-get",
    "juju.relation-set",
];

const KINDS: &[FaultKind] = &[
    FaultKind::NotFound,
    FaultKind::Forbidden,
    FaultKind::Conflict,
    FaultKind::Unreachable,
    FaultKind::Timeout,
    FaultKind::Other,
];

const PASSWORDS: &[&str] = &[
    "operator-password",
    "replication-password",
    "rewind-password",
    "monitoring-password",
    "patroni-password",
];

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn host(app: &str, n: u32) -> String {
    format!("{app}-{n}.{app}-endpoints")
}

fn password(rng: &mut StdRng) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..16)
        .map(|_| A[rng.random_range(0..A.len())] as char)
        .collect()
}

/// A random world, and the unit to dispatch on.
pub fn world(rng: &mut StdRng, seed: u64) -> (WorldState, String) {
    let app = "postgresql-k8s".to_string();
    let mut s = WorldState {
        app: app.clone(),
        seed,
        ..WorldState::default()
    };
    let n = rng.random_range(1..=4u32);
    let units: Vec<String> = (0..n).map(|i| format!("{app}/{i}")).collect();
    s.leader = if rng.random_bool(0.9) {
        Some(pick(rng, &units).clone())
    } else {
        None
    };
    s.kubernetes.trusted = rng.random_bool(0.9);
    s.kubernetes.nodes.insert(
        "node-0".into(),
        NodeState {
            cpu: pick(rng, &["2", "4", "4000m"]).to_string(),
            memory: pick(rng, &["8Gi", "16Gi", "2048Mi"]).to_string(),
        },
    );
    s.kubernetes.statefulsets.insert(
        app.clone(),
        StatefulSetState {
            replicas: n,
            partition: 0,
            uid: "sts-uid".into(),
        },
    );
    let initialised = rng.random_bool(0.5);
    let scope = format!("patroni-{app}");
    let mut running = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        let mut pod = PodState {
            labels: [("app.kubernetes.io/name".to_string(), app.clone())].into(),
            owner_references: vec![OwnerRef {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: app.clone(),
                uid: "sts-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            node_name: Some("node-0".into()),
            ip: Some(format!("10.1.0.{}", 10 + i)),
            ..Default::default()
        };
        if rng.random_bool(0.3) {
            pod.limits.insert(
                "postgresql".into(),
                [
                    ("cpu".to_string(), pick(rng, &["1", "2"]).to_string()),
                    ("memory".to_string(), pick(rng, &["1Gi", "4Gi"]).to_string()),
                ]
                .into(),
            );
        }
        let labelled = rng.random_bool(0.5);
        if labelled {
            pod.labels.insert("application".into(), "patroni".into());
            pod.labels.insert("cluster-name".into(), scope.clone());
        }
        s.kubernetes.pods.insert(format!("{app}-{i}"), pod);
        let mut u = UnitState::default();
        u.pebble.reachable = rng.random_bool(0.9);
        if rng.random_bool(0.5) {
            u.pebble.files.insert(
                "/var/lib/postgresql/data".into(),
                FileState {
                    directory: true,
                    permissions: 0o755,
                    user: "root".into(),
                    group: "root".into(),
                    ..Default::default()
                },
            );
        }
        let runs = u.pebble.reachable && rng.random_bool(0.5);
        if runs {
            u.pebble
                .running
                .insert("postgresql".into(), ServiceRun::Active);
        }
        if labelled && runs {
            running.push(format!("{app}-{i}"));
        }
        s.units.insert(unit.clone(), u);
    }
    // Patroni members: the labelled pods whose service runs; at most one leader.
    let leader_idx = if !running.is_empty() && initialised && rng.random_bool(0.8) {
        Some(rng.random_range(0..running.len()))
    } else {
        None
    };
    for (i, pod) in running.iter().enumerate() {
        let lead = leader_idx == Some(i);
        let state = if lead {
            "running"
        } else {
            pick(rng, &["starting", "streaming", "running", "stopped"])
        };
        s.patroni.members.insert(
            pod.clone(),
            MemberState {
                role: if lead {
                    "leader".into()
                } else {
                    "replica".into()
                },
                state: state.into(),
                since_ms: s.now_ms,
                timeline: 1,
                lag: 0,
                pending_restart: false,
            },
        );
    }
    s.patroni.initialized = leader_idx.is_some();

    // The peer relation and its databags.
    let mut peers = RelationState {
        id: 1,
        endpoint: "database-peers".into(),
        remote_app: app.clone(),
        units: units.clone(),
        ..Default::default()
    };
    let mut app_bag = Bag::new();
    let hosts: Vec<String> = (0..n)
        .filter(|_| rng.random_bool(0.6))
        .map(|i| host(&app, i))
        .collect();
    if !hosts.is_empty() || rng.random_bool(0.5) {
        app_bag.insert("endpoints".into(), crate::simulate::json_list(&hosts));
    }
    if initialised {
        app_bag.insert("cluster_initialised".into(), "True".into());
    }
    peers.app_data.insert(app.clone(), app_bag);
    s.relations.push(peers);
    let idle = rng.random_bool(0.85);
    let mut upgrade = RelationState {
        id: 3,
        endpoint: "upgrade".into(),
        remote_app: app.clone(),
        units: units.clone(),
        ..Default::default()
    };
    if idle {
        for u in &units {
            upgrade.unit_data.insert(
                u.clone(),
                [("state".to_string(), "idle".to_string())].into(),
            );
        }
    }
    s.relations.push(upgrade);

    // Passwords: all, some or none.
    let have = rng.random_range(0..=PASSWORDS.len());
    if have > 0 {
        let content: Bag = PASSWORDS[..have]
            .iter()
            .map(|k| (k.to_string(), password(rng)))
            .collect();
        s.secrets.push(SecretState {
            id: format!("secret:{:020x}", rng.next_u64()),
            label: format!("database-peers.{app}.app"),
            owner: SecretOwnerKind::Application,
            owner_name: app.clone(),
            revision: 1,
            content,
        });
    }
    // Objects Patroni or the charm may have left behind.
    if rng.random_bool(0.4) {
        let mut ep = EndpointsState {
            labels: [
                ("application".to_string(), "patroni".to_string()),
                ("cluster-name".to_string(), scope.clone()),
            ]
            .into(),
            ..Default::default()
        };
        if rng.random_bool(0.5) {
            ep.annotations.insert("leader".into(), format!("{app}-0"));
        }
        s.kubernetes.endpoints.insert(scope.clone(), ep);
    }
    if rng.random_bool(0.3) {
        s.kubernetes
            .services
            .insert(format!("{scope}-config"), ServiceState::default());
    }
    if rng.random_bool(0.2) {
        s.config.insert(
            "synchronous_node_count".into(),
            ConfigValue::Str(pick(rng, &["all", "majority", "1"]).to_string()),
        );
    }
    if rng.random_bool(0.2) {
        s.config
            .insert("profile".into(), ConfigValue::Str("testing".into()));
    }
    s.faults = faults(rng);
    let unit = pick(rng, &units).clone();
    // Sometimes TLS material in the unit's secret, so the TLS push (and its failure) is
    // exercised. Drawn last: the worlds of earlier draws are unchanged.
    if rng.random_bool(0.2) {
        s.secrets.push(SecretState {
            id: format!("secret:{:020x}", rng.next_u64()),
            label: format!("database-peers.{app}.unit"),
            owner: SecretOwnerKind::Unit,
            owner_name: unit.clone(),
            revision: 1,
            content: [
                ("key".to_string(), "KEY".to_string()),
                ("cauth".to_string(), "CA".to_string()),
                ("cert".to_string(), "CERT".to_string()),
            ]
            .into(),
        });
    }
    (s, unit)
}

/// Zero to three faults on calls the hooks make.
pub fn faults(rng: &mut StdRng) -> Vec<Fault> {
    let k = rng.random_range(0..=3);
    (0..k)
        .map(|_| Fault {
            call: pick(rng, CALLS).to_string(),
            error: *pick(rng, KINDS),
            message: None,
            unit: None,
            times: if rng.random_bool(0.5) {
                Some(rng.random_range(1..=3))
            } else {
                None
            },
            probability: if rng.random_bool(0.2) {
                Some(0.5)
            } else {
                None
            },
        })
        .collect()
}
