//! The cargo-fuzz targets' bodies (`charm_host::fuzz::targets`) over a fixed corpus and its
//! mutations, in every test run. libFuzzer explores far more (`fuzz/`, not in CI); this keeps
//! the properties true on real inputs and their near misses, and shows that each corpus reaches
//! both sides: inputs accepted and inputs refused.

mod support;

use charm_host::bindings::types::{ActionEvent, RelationEvent, SecretEvent};
use charm_host::bindings::{Event, EventKind, NamedValue, Value};
use charm_host::dispatch::{Notice, Queue};
use charm_host::fuzz::targets;
use charm_host::runtime::{Runtime, RuntimeConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// `n` near misses of `seed`: cut short, bytes flipped, a span dropped or doubled, another
/// seed spliced in. Deterministic.
fn mutations(seed: &[u8], others: &[Vec<u8>], n: usize, rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut m = seed.to_vec();
        let len = m.len().max(1);
        match rng.random_range(0..5) {
            0 => m.truncate(rng.random_range(0..len)),
            1 => {
                for _ in 0..rng.random_range(1..4) {
                    if !m.is_empty() {
                        let i = rng.random_range(0..m.len());
                        m[i] ^= 1 << rng.random_range(0..8);
                    }
                }
            }
            2 => {
                let a = rng.random_range(0..len);
                let b = (a + rng.random_range(1..64)).min(m.len());
                if a < b {
                    m.drain(a..b);
                }
            }
            3 => {
                let a = rng.random_range(0..len).min(m.len());
                let b = (a + rng.random_range(1..64)).min(m.len());
                let span = m[a..b].to_vec();
                m.splice(a..a, span);
            }
            _ => {
                let other = &others[rng.random_range(0..others.len())];
                let cut = rng.random_range(0..len).min(m.len());
                let from = rng.random_range(0..other.len().max(1)).min(other.len());
                m.truncate(cut);
                m.extend_from_slice(&other[from..]);
            }
        }
        out.push(m);
    }
    out
}

/// Runs `target` over the seeds and their mutations; returns (accepted, refused).
fn run(seeds: &[Vec<u8>], per_seed: usize, target: impl Fn(&[u8]) -> bool) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(6);
    let (mut accepted, mut refused) = (0, 0);
    let garbage: [&[u8]; 4] = [b"", b"\0\xff\xfe", b"{{{{", b"- - - :"];
    let inputs = seeds
        .iter()
        .cloned()
        .chain(
            seeds
                .iter()
                .flat_map(|s| mutations(s, seeds, per_seed, &mut rng)),
        )
        .chain(garbage.iter().map(|g| g.to_vec()));
    for input in inputs {
        if target(&input) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    (accepted, refused)
}

#[test]
fn state_parser_holds_on_the_repository_states_and_their_near_misses() {
    let root = support::root().join("tests/data");
    let mut seeds = Vec::new();
    for dir in [root.clone(), root.join("bench"), root.join("model-faults")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                seeds.push(std::fs::read(&path).unwrap());
            }
        }
    }
    assert!(seeds.len() >= 10, "the repository's state files");
    let (accepted, refused) = run(&seeds, 60, targets::state_parser);
    assert!(
        accepted >= seeds.len(),
        "every seed is a consistent state: {accepted}"
    );
    assert!(refused > 100, "near misses are refused: {refused}");
}

fn event(name: &str, kind: EventKind) -> Event {
    Event::bare(name, kind)
}

#[test]
fn deferral_queue_holds_on_stored_queues_and_their_near_misses() {
    let mut relation = event(
        "database-peers-relation-changed",
        EventKind::RelationChanged,
    );
    relation.relation = Some(RelationEvent {
        name: "database-peers".into(),
        id: 7,
        remote_app: Some("postgresql-k8s".into()),
        remote_unit: Some("postgresql-k8s/1".into()),
        departing_unit: None,
    });
    let mut secret = event("secret-changed", EventKind::SecretChanged);
    secret.secret = Some(SecretEvent {
        id: "secret:abc".into(),
        label: Some("database-peers.postgresql-k8s.app".into()),
        revision: Some(3),
    });
    let mut action = event("set-password", EventKind::Action);
    action.action = Some(ActionEvent {
        name: "set-password".into(),
        uuid: "1".into(),
        params: vec![
            NamedValue {
                name: "username".into(),
                value: Value::Text("operator".into()),
            },
            NamedValue {
                name: "n".into(),
                value: Value::Float(0.5),
            },
        ],
    });
    let mut deferred = event("postgresql-pebble-ready", EventKind::PebbleReady);
    deferred.workload = Some("postgresql".into());
    deferred.deferred = true;
    let notices = [relation, secret, action, deferred]
        .into_iter()
        .map(|event| Notice {
            plugin: event.name.clone(),
            event,
        })
        .collect::<Vec<_>>();
    let seeds: Vec<Vec<u8>> = (0..=notices.len())
        .map(|k| {
            Queue {
                version: 1,
                notices: notices[..k].to_vec(),
            }
            .to_json()
            .into_bytes()
        })
        .collect();
    let (accepted, refused) = run(&seeds, 200, targets::deferral_queue);
    assert!(
        accepted >= seeds.len(),
        "every stored queue parses: {accepted}"
    );
    assert!(refused > 200, "near misses are refused: {refused}");
}

#[test]
fn juju_environment_holds_on_real_environments_and_their_near_misses() {
    // One variable per line, in `targets::JUJU_VARS` order.
    let env = |pairs: &[(&str, &str)]| {
        targets::JUJU_VARS
            .iter()
            .map(|v| {
                pairs
                    .iter()
                    .find(|(k, _)| k == v)
                    .map_or("", |(_, value)| *value)
            })
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes()
    };
    let seeds = vec![
        env(&[("JUJU_DISPATCH_PATH", "hooks/leader-elected")]),
        env(&[
            (
                "JUJU_DISPATCH_PATH",
                "hooks/database-peers-relation-departed",
            ),
            ("JUJU_RELATION", "database-peers"),
            ("JUJU_RELATION_ID", "database-peers:7"),
            ("JUJU_REMOTE_APP", "postgresql-k8s"),
            ("JUJU_REMOTE_UNIT", "postgresql-k8s/2"),
            ("JUJU_DEPARTING_UNIT", "postgresql-k8s/2"),
        ]),
        env(&[
            ("JUJU_DISPATCH_PATH", "hooks/postgresql-pebble-ready"),
            ("JUJU_WORKLOAD_NAME", "postgresql"),
        ]),
        env(&[
            ("JUJU_DISPATCH_PATH", "hooks/secret-changed"),
            ("JUJU_SECRET_ID", "secret:abc"),
            ("JUJU_SECRET_LABEL", "database-peers.postgresql-k8s.app"),
            ("JUJU_SECRET_REVISION", "4"),
        ]),
        env(&[
            ("JUJU_DISPATCH_PATH", "hooks/pgdata-storage-attached"),
            ("JUJU_STORAGE_ID", "pgdata/0"),
        ]),
        env(&[
            ("JUJU_DISPATCH_PATH", "actions/set-password"),
            ("JUJU_ACTION_NAME", "set-password"),
            ("JUJU_ACTION_UUID", "42"),
        ]),
    ];
    let (accepted, refused) = run(&seeds, 300, targets::juju_environment);
    assert!(
        accepted >= seeds.len(),
        "every real environment is an event: {accepted}"
    );
    assert!(
        refused > 100,
        "near misses are refused with a reason: {refused}"
    );
}

/// Compiling a component takes long in a debug build: a real plugin's prefixes (invalid, fast)
/// and a few flipped bytes, not hundreds of mutations.
#[test]
fn component_loader_holds_on_a_real_plugin_and_its_near_misses() {
    let wasm = std::fs::read(support::test_plugin("recorder")).unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = |data: &[u8]| targets::component_loader(&runtime, &rt, data);
    let mut inputs: Vec<Vec<u8>> = vec![
        wasm.clone(),
        Vec::new(),
        b"\0asm".to_vec(),
        // A core module header: not a component.
        b"\0asm\x01\0\0\0".to_vec(),
        // A component header and nothing after it.
        b"\0asm\x0d\0\x01\0".to_vec(),
    ];
    for k in 1..40 {
        inputs.push(wasm[..wasm.len() * k / 40].to_vec());
    }
    let mut rng = StdRng::seed_from_u64(6);
    for _ in 0..6 {
        let mut m = wasm.clone();
        let i = rng.random_range(8..m.len());
        m[i] ^= 1 << rng.random_range(0..8);
        inputs.push(m);
    }
    let accepted = inputs.iter().filter(|i| target(i)).count();
    assert!(accepted >= 1, "the real plugin loads and runs");
    assert!(
        inputs.len() - accepted >= 40,
        "prefixes and headers are refused with a reason"
    );
}
