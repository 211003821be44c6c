//! Crash safety: `charm-host dispatch` killed with SIGKILL at every point of a dispatch loses
//! no deferred event, and the retry that Juju performs after a failed hook ends in exactly the
//! state an uninterrupted dispatch reaches. Corrupt inputs give clear errors and lose nothing.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use charm_host::bindings::{Event, EventKind};
use charm_host::dispatch::{Notice, QUEUE_KEY, Queue};
use charm_host::world::{UnitState, WorldState};
use support::plugins_dir;

const UNIT: &str = "postgresql-k8s/0";

/// A unit with two deferred events: `a` will complete when re-emitted, `b` defers again.
fn base_state() -> WorldState {
    let mut s = WorldState {
        leader: Some(UNIT.into()),
        ..Default::default()
    };
    let mut u = UnitState::default();
    let q = Queue {
        version: 1,
        notices: ["a", "b"]
            .iter()
            .map(|n| Notice {
                plugin: n.to_string(),
                event: Event::bare(*n, EventKind::Custom),
            })
            .collect(),
    };
    u.state.insert(QUEUE_KEY.into(), q.to_json());
    u.state.insert("defer-b".into(), "yes".into());
    s.units.insert(UNIT.into(), u);
    s
}

fn dispatch(
    world: &Path,
    plugins: &Path,
    cache: &Path,
    event: &str,
    crash_at: Option<&str>,
) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charm-host"));
    c.args(["dispatch", "--world"])
        .arg(world)
        .args(["--event", event, "--plugins"])
        .arg(plugins)
        .arg("--cache-dir")
        .arg(cache)
        .env("CHARM_HOST_LOG", "error");
    match crash_at {
        Some(p) => c.env("CHARM_HOST_CRASH_AT", p),
        None => c.env_remove("CHARM_HOST_CRASH_AT"),
    };
    c.output().unwrap()
}

fn unit_state(world: &Path) -> std::collections::BTreeMap<String, String> {
    let s: WorldState = serde_yaml::from_str(&std::fs::read_to_string(world).unwrap()).unwrap();
    s.units[UNIT].state.clone()
}

#[test]
fn a_dispatch_killed_anywhere_loses_nothing_and_its_retry_matches_a_clean_run() {
    let plugins = plugins_dir(&[("a", "recorder"), ("b", "recorder"), ("c", "recorder")]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let base = serde_yaml::to_string(&base_state()).unwrap();

    // The reference: one uninterrupted dispatch of `c`.
    let reference = tmp.path().join("reference.yaml");
    std::fs::write(&reference, &base).unwrap();
    let out = dispatch(&reference, plugins.path(), &cache, "c", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = unit_state(&reference);
    assert_eq!(expected["log"], "a*;b*;c;");
    let q = Queue::parse(&expected[QUEUE_KEY]).unwrap();
    assert_eq!(
        q.notices
            .iter()
            .map(|n| n.plugin.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );

    // 3 plugin runs × (state-get log, state-set log, state-get defer-x) = 9 capability calls.
    let mut points: Vec<String> = (1..=9)
        .flat_map(|n| [format!("before-call:{n}"), format!("after-call:{n}")])
        .collect();
    points.extend(
        [
            "before-queue-write",
            "after-queue-write",
            "before-commit",
            "after-commit",
            "before-persist",
            "mid-persist",
        ]
        .map(String::from),
    );
    for point in &points {
        let world = tmp.path().join("world.yaml");
        std::fs::write(&world, &base).unwrap();
        let out = dispatch(&world, plugins.path(), &cache, "c", Some(point));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{point}: the process was killed ({:?})",
            out.status
        );
        assert_eq!(
            std::fs::read_to_string(&world).unwrap(),
            base,
            "{point}: nothing of the killed dispatch is durable"
        );
        // Juju retries the failed hook.
        let out = dispatch(&world, plugins.path(), &cache, "c", None);
        assert!(
            out.status.success(),
            "{point}: retry failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            unit_state(&world),
            expected,
            "{point}: the retry reaches the uninterrupted result"
        );
        for entry in std::fs::read_dir(tmp.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() && p.file_name().unwrap().to_string_lossy().contains(".tmp") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
}

#[test]
fn corrupt_inputs_give_clear_errors_and_lose_nothing() {
    let plugins = plugins_dir(&[("a", "recorder"), ("b", "recorder"), ("c", "recorder")]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let base = serde_yaml::to_string(&base_state()).unwrap();
    let world = tmp.path().join("world.yaml");

    // A truncated state file and a garbage one: refused, untouched.
    for (what, content) in [
        ("truncated", base[..base.len() / 2].to_string()),
        ("garbage", "\u{0}\u{1}not yaml: [".to_string()),
    ] {
        std::fs::write(&world, &content).unwrap();
        let out = dispatch(&world, plugins.path(), &cache, "c", None);
        assert_eq!(out.status.code(), Some(2), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("world state {} is invalid", world.display())),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&world).unwrap(),
            content,
            "{what}: the file is left as it was"
        );
    }

    // A hook no plugin handles: nothing to do, but the deferred events are still re-emitted.
    std::fs::write(&world, &base).unwrap();
    let out = dispatch(&world, plugins.path(), &cache, "no-such-hook", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-such-hook -> no plugin"));
    assert_eq!(unit_state(&world)["log"], "a*;b*;");

    // A broken plugin file: the dispatch fails naming the file; the queue is kept.
    std::fs::write(&world, &base).unwrap();
    std::fs::write(plugins.path().join("c.wasm"), b"\0asm but not really").unwrap();
    let out = dispatch(&world, plugins.path(), &cache, "c", None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("c.wasm is not a valid component"), "{err}");
    let q = Queue::parse(&unit_state(&world)[QUEUE_KEY]).unwrap();
    assert_eq!(q.notices.len(), 2, "both deferred events are still queued");

    // An unwritable cache directory: compiled in memory, the dispatch succeeds.
    support::install(plugins.path(), "c", "recorder");
    std::fs::write(&world, &base).unwrap();
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let out = dispatch(&world, plugins.path(), &blocker.join("cache"), "c", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(unit_state(&world)["log"], "a*;b*;c;");
}
