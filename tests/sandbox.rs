//! The host runtime's promises: hostile plugins are stopped or denied with the right cause and
//! the host survives; deferral follows ops; hot swap; the compiled-code cache.

mod support;

use std::sync::Arc;
use std::time::Duration;

use charm_host::bindings::{Event, EventKind, Outcome};
use charm_host::capability::SystemClock;
use charm_host::dispatch::{CORRUPT_KEY_PREFIX, Dispatcher, QUEUE_KEY};
use charm_host::runtime::{CacheOutcome, Failure, Limits, Runtime, RuntimeConfig};
use charm_host::world::{UnitState, World, WorldState};
use support::{install, plugins_dir, test_plugin};

const UNIT: &str = "postgresql-k8s/0";

fn world() -> World {
    let mut s = WorldState {
        leader: Some(UNIT.into()),
        ..Default::default()
    };
    s.units.insert(UNIT.into(), UnitState::default());
    World::new(s)
}

fn runtime(limits: Limits) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        cache_dir: None,
        ..Default::default()
    })
    .unwrap()
}

fn tight() -> Limits {
    Limits {
        memory_bytes: 32 << 20,
        wasm_deadline: Duration::from_millis(300),
        ..Limits::default()
    }
}

fn custom(name: &str) -> Event {
    Event::bare(name, EventKind::Custom)
}

/// Run one event of the hostile plugin and return its result.
async fn hostile(rt: &Runtime, event: &str) -> Result<Outcome, Failure> {
    let dir = plugins_dir(&[("hostile", "hostile")]);
    let plugin = rt.load(dir.path(), "hostile").unwrap();
    let (caps, _) = world().capabilities(UNIT);
    rt.run(&plugin, custom(event), caps, false).await.result
}

/// The host is still able to run a well-behaved event afterwards.
async fn survives(rt: &Runtime) {
    assert_eq!(
        hostile(rt, "fine").await,
        Ok(Outcome::Done),
        "the host must run the next event normally"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_hits_the_wasm_deadline() {
    let rt = runtime(tight());
    let started = std::time::Instant::now();
    let r = hostile(&rt, "loop").await;
    assert_eq!(
        r,
        Err(Failure::Deadline {
            limit: Duration::from_millis(300)
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped promptly, took {:?}",
        started.elapsed()
    );
    survives(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_reported_as_out_of_memory_not_a_panic() {
    let rt = runtime(tight());
    match hostile(&rt, "memory-bomb").await {
        Err(Failure::OutOfMemory { detail }) => {
            assert!(detail.contains("limit 32 MiB"), "{detail}")
        }
        other => panic!("expected out-of-memory, got {other:?}"),
    }
    survives(&rt).await;
}

/// `dispatch` runs one event and allocates on demand instead of from the pool: the cap holds
/// there too.
#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_is_out_of_memory_without_the_instance_pool() {
    let rt = Runtime::new(RuntimeConfig {
        limits: tight(),
        cache_dir: None,
        instance_pool: false,
    })
    .unwrap();
    match hostile(&rt, "memory-bomb").await {
        Err(Failure::OutOfMemory { detail }) => {
            assert!(detail.contains("limit 32 MiB"), "{detail}")
        }
        other => panic!("expected out-of-memory, got {other:?}"),
    }
    survives(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let rt = runtime(tight());
    match hostile(&rt, "deep-recursion").await {
        Err(Failure::Trap { message }) => assert!(message.contains("stack overflow"), "{message}"),
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    survives(&rt).await;
}

/// A Rust guest's large frames live on its shadow stack in linear memory; exhausting it runs
/// below address 0 and traps as an out-of-bounds access, before the wasm stack is exhausted.
#[tokio::test(flavor = "multi_thread")]
async fn shadow_stack_exhaustion_is_an_out_of_bounds_trap() {
    let rt = runtime(tight());
    match hostile(&rt, "deep-recursion-shadow-stack").await {
        Err(Failure::Trap { message }) => {
            assert!(message.contains("out of bounds memory access"), "{message}")
        }
        other => panic!("expected an out-of-bounds trap, got {other:?}"),
    }
    survives(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn panic_is_reported_with_its_message() {
    let rt = runtime(tight());
    match hostile(&rt, "panic").await {
        Err(Failure::Panic { message }) => assert!(
            message.contains("hostile plugin panicked on purpose"),
            "{message}"
        ),
        other => panic!("expected a panic, got {other:?}"),
    }
    survives(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_argument_is_refused_by_the_host() {
    let rt = runtime(Limits {
        memory_bytes: 128 << 20,
        ..tight()
    });
    match hostile(&rt, "huge-string").await {
        Err(Failure::Plugin { message }) => {
            assert!(message.contains("Invalid"), "{message}");
            assert!(
                message.contains("exceeds the host limit of 4194304 bytes"),
                "{message}"
            );
        }
        other => panic!("expected the host to refuse the argument, got {other:?}"),
    }
    survives(&rt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_environment_and_sockets_are_denied() {
    let rt = runtime(tight());
    for event in ["read-file", "read-env", "open-socket"] {
        match hostile(&rt, event).await {
            Err(Failure::Plugin { message }) => {
                assert!(message.starts_with("denied:"), "{event}: {message}")
            }
            other => panic!("{event}: expected a denial, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_is_captured() {
    let rt = runtime(tight());
    let dir = plugins_dir(&[("hostile", "hostile")]);
    let plugin = rt.load(dir.path(), "hostile").unwrap();
    let (caps, _) = world().capabilities(UNIT);
    let report = rt.run(&plugin, custom("stdout"), caps, false).await;
    assert_eq!(report.result, Ok(Outcome::Done));
    assert_eq!(report.stdout, "hello from the guest's stdout\n");
    assert_eq!(report.stderr, "hello from the guest's stderr\n");
}

/// Time spent inside capability calls does not count against the wasm deadline...
#[tokio::test(flavor = "multi_thread")]
async fn waiting_in_capabilities_does_not_count_against_the_wasm_deadline() {
    let rt = runtime(tight());
    let dir = plugins_dir(&[("sleep", "recorder")]);
    let plugin = rt.load(dir.path(), "sleep").unwrap();
    let (mut caps, _) = world().capabilities(UNIT);
    caps.clock = Arc::new(SystemClock);
    let report = rt.run(&plugin, custom("sleep"), caps, false).await;
    assert_eq!(
        report.result,
        Ok(Outcome::Done),
        "1.2 s of real waits under a 300 ms wasm deadline"
    );
    assert!(
        report.host_time >= Duration::from_millis(1200),
        "{:?}",
        report.host_time
    );
}

/// ...but the whole event is bounded.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_event_is_bounded() {
    let rt = runtime(Limits {
        event_timeout: Duration::from_millis(500),
        ..tight()
    });
    let dir = plugins_dir(&[("sleep", "recorder")]);
    let plugin = rt.load(dir.path(), "sleep").unwrap();
    let (mut caps, _) = world().capabilities(UNIT);
    caps.clock = Arc::new(SystemClock);
    let report = rt.run(&plugin, custom("sleep"), caps, false).await;
    assert_eq!(
        report.result,
        Err(Failure::EventTimeout {
            limit: Duration::from_millis(500)
        })
    );
}

// ------------------------------------------------------------------ deferral

fn state(world: &World, key: &str) -> Option<String> {
    world.state().units[UNIT].state.get(key).cloned()
}

fn set(world: &World, key: &str, value: &str) {
    world.with_state(|s| {
        s.units
            .get_mut(UNIT)
            .unwrap()
            .state
            .insert(key.into(), value.into());
    });
}

fn queued(world: &World) -> Vec<String> {
    match state(world, QUEUE_KEY) {
        None => vec![],
        Some(raw) => charm_host::dispatch::Queue::parse(&raw)
            .unwrap()
            .notices
            .into_iter()
            .map(|n| n.event.name)
            .collect(),
    }
}

async fn dispatch(
    rt: &Runtime,
    dir: &std::path::Path,
    world: &World,
    event: &str,
) -> Result<(), String> {
    let d = Dispatcher::new(rt, dir);
    let (caps, _) = world.capabilities(UNIT);
    d.dispatch(&caps, custom(event))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn recorder_dir() -> tempfile::TempDir {
    plugins_dir(&[
        ("a", "recorder"),
        ("b", "recorder"),
        ("c", "recorder"),
        ("fail", "recorder"),
        ("touch-reserved", "recorder"),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn deferred_events_are_re_emitted_first_in_fifo_order() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    set(&w, "defer-a", "yes");
    set(&w, "defer-b", "yes");
    dispatch(&rt, dir.path(), &w, "a").await.unwrap();
    dispatch(&rt, dir.path(), &w, "b").await.unwrap();
    assert_eq!(queued(&w), ["a", "b"]);
    set(&w, "defer-a", "no");
    set(&w, "log", "");
    dispatch(&rt, dir.path(), &w, "c").await.unwrap();
    assert_eq!(
        state(&w, "log").unwrap(),
        "a*;b*;c;",
        "queued events first, oldest first, then the new one"
    );
    assert_eq!(queued(&w), ["b"], "a completed and left; b deferred again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_deferred_event_keeps_its_place() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    for e in ["a", "b", "c"] {
        set(&w, &format!("defer-{e}"), "yes");
    }
    dispatch(&rt, dir.path(), &w, "a").await.unwrap();
    dispatch(&rt, dir.path(), &w, "b").await.unwrap();
    dispatch(&rt, dir.path(), &w, "c").await.unwrap();
    assert_eq!(queued(&w), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_event_already_queued_is_not_run_twice() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    set(&w, "defer-a", "yes");
    dispatch(&rt, dir.path(), &w, "a").await.unwrap();
    set(&w, "log", "");
    let d = Dispatcher::new(&rt, dir.path());
    let (caps, _) = w.capabilities(UNIT);
    let report = d.dispatch(&caps, custom("a")).await.unwrap();
    assert!(report.duplicate_skipped);
    assert_eq!(state(&w, "log").unwrap(), "a*;", "only the re-emission ran");
    assert_eq!(queued(&w), ["a"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_dispatch_persists_nothing() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    set(&w, "defer-a", "yes");
    dispatch(&rt, dir.path(), &w, "a").await.unwrap();
    set(&w, "defer-a", "no");
    set(&w, "log", "before;");
    let err = dispatch(&rt, dir.path(), &w, "fail").await.unwrap_err();
    assert_eq!(
        err,
        "plugin fail failed on event fail: returned an error: failed on purpose"
    );
    assert_eq!(
        queued(&w),
        ["a"],
        "the re-emitted event that completed is still queued: the dispatch failed"
    );
    assert_eq!(
        state(&w, "log").unwrap(),
        "before;",
        "no Juju write of the failed dispatch was committed"
    );
    // Juju retries; the next successful dispatch runs the deferred event.
    dispatch(&rt, dir.path(), &w, "nothing-here").await.unwrap();
    assert_eq!(queued(&w), Vec::<String>::new());
    assert_eq!(state(&w, "log").unwrap(), "before;a*;");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_queue_is_kept_aside_and_the_hook_still_runs() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    set(&w, QUEUE_KEY, "{not json");
    dispatch(&rt, dir.path(), &w, "a").await.unwrap();
    let s = w.state().units[UNIT].state.clone();
    let aside: Vec<_> = s
        .iter()
        .filter(|(k, _)| k.starts_with(CORRUPT_KEY_PREFIX))
        .collect();
    assert_eq!(aside.len(), 1, "{s:?}");
    assert_eq!(aside[0].1, "{not json");
    assert_eq!(state(&w, "log").unwrap(), "a;");
    assert_eq!(
        state(&w, QUEUE_KEY),
        None,
        "the broken key was replaced by an empty queue"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_cannot_touch_the_hosts_queue_key() {
    let rt = runtime(tight());
    let dir = recorder_dir();
    let w = world();
    let err = dispatch(&rt, dir.path(), &w, "touch-reserved")
        .await
        .unwrap_err();
    assert!(
        err.contains("Forbidden: state key \"charm-host.deferred\" is reserved for the host"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_never_defers_and_its_failure_becomes_action_fail() {
    let rt = runtime(tight());
    let dir = plugins_dir(&[("fail-action", "recorder"), ("slow-action", "recorder")]);
    let w = world();
    w.with_state(|s| s.action = Some(Default::default()));
    set(&w, "defer-slow-action", "yes");
    let d = Dispatcher::new(&rt, dir.path());
    let (caps, _) = w.capabilities(UNIT);
    let mut ev = Event::bare("slow-action", EventKind::Action);
    ev.action = Some(charm_host::bindings::types::ActionEvent {
        name: "slow-action".into(),
        uuid: "1".into(),
        params: vec![],
    });
    let report = d.dispatch(&caps, ev).await.unwrap();
    assert_eq!(
        report.action_failed.as_deref(),
        Some("actions cannot be deferred")
    );
    assert!(report.queue.notices.is_empty());
    let mut ev = Event::bare("fail-action", EventKind::Action);
    ev.action = Some(charm_host::bindings::types::ActionEvent {
        name: "fail-action".into(),
        uuid: "2".into(),
        params: vec![],
    });
    let (caps, _) = w.capabilities(UNIT);
    let report = d.dispatch(&caps, ev).await.unwrap();
    assert_eq!(report.action_failed.as_deref(), Some("failed on purpose"));
    assert_eq!(
        w.state().action.unwrap().failed.as_deref(),
        Some("failed on purpose")
    );
}

// ------------------------------------------------------------------ hot swap and cache

#[tokio::test(flavor = "multi_thread")]
async fn replacing_a_plugin_file_changes_the_next_dispatch() {
    let rt = runtime(tight());
    let dir = plugins_dir(&[("defer", "recorder")]);
    let w = world();
    dispatch(&rt, dir.path(), &w, "defer").await.unwrap();
    assert_eq!(
        queued(&w),
        Vec::<String>::new(),
        "the recorder completes `defer`"
    );
    install(dir.path(), "defer", "hostile");
    dispatch(&rt, dir.path(), &w, "defer").await.unwrap();
    assert_eq!(
        queued(&w),
        ["defer"],
        "the hostile plugin defers `defer`: same host, new behaviour"
    );
}

#[test]
fn the_compiled_code_cache_rejects_a_tampered_entry_and_rebuilds_it() {
    let cache = tempfile::tempdir().unwrap();
    let dir = plugins_dir(&[("hostile", "hostile")]);
    let fresh = || {
        Runtime::new(RuntimeConfig {
            limits: tight(),
            cache_dir: Some(cache.path().into()),
            ..Default::default()
        })
        .unwrap()
    };
    assert_eq!(
        fresh().load(dir.path(), "hostile").unwrap().cache,
        CacheOutcome::Compiled
    );
    assert_eq!(
        fresh().load(dir.path(), "hostile").unwrap().cache,
        CacheOutcome::Hit
    );
    let file = |ext: &str| {
        let found: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        assert_eq!(found.len(), 1, "one .{ext} file: {found:?}");
        found[0].clone()
    };
    let flip_middle = |path: &std::path::Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(path, &bytes).unwrap();
    };
    // The compiled code, its checksum, or the checksum gone: each is rebuilt, never loaded.
    let tamperings: [(&str, &dyn Fn()); 3] = [
        ("compiled code", &|| flip_middle(&file("cwasm"))),
        ("checksum", &|| flip_middle(&file("sum"))),
        ("checksum removed", &|| {
            std::fs::remove_file(file("sum")).unwrap()
        }),
    ];
    for (what, tamper) in tamperings {
        tamper();
        assert_eq!(
            fresh().load(dir.path(), "hostile").unwrap().cache,
            CacheOutcome::Rebuilt,
            "{what}"
        );
        assert_eq!(
            fresh().load(dir.path(), "hostile").unwrap().cache,
            CacheOutcome::Hit,
            "{what}: the rebuilt entry is good"
        );
    }
    // Nothing else is left in the cache (no temporary files).
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 2);
}

/// A fresh process (every dispatch) finds a plugin's digest in the cache's record of that
/// file instead of reading and hashing it; any change to the file makes the record miss.
#[test]
fn a_fresh_runtime_takes_the_digest_of_an_unchanged_plugin_file_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let dir = plugins_dir(&[("install", "hostile"), ("other", "recorder")]);
    let fresh = || {
        Runtime::new(RuntimeConfig {
            limits: tight(),
            cache_dir: Some(cache.path().into()),
            ..Default::default()
        })
        .unwrap()
    };
    // Settled files only: their mtime is old enough that a rewrite would change it.
    let age = |hook: &str| {
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join(format!("{hook}.wasm")))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    };
    age("install");
    age("other");
    let install = fresh().load(dir.path(), "install").unwrap();
    let other = fresh().load(dir.path(), "other").unwrap();
    assert_ne!(install.digest, other.digest);
    let record = cache.path().join("plugin-ids/install.id");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.ends_with(&format!(" {}\n", hex::encode(install.digest))),
        "{text}"
    );
    // The record is what a fresh runtime goes by: pointed at the other plugin's digest, it
    // loads the other plugin's compiled code without looking at the file's bytes.
    let forged = text.replace(&hex::encode(install.digest), &hex::encode(other.digest));
    std::fs::write(&record, forged).unwrap();
    let by_record = fresh().load(dir.path(), "install").unwrap();
    assert_eq!(by_record.digest, other.digest);
    assert_eq!(by_record.cache, CacheOutcome::Hit);
    // Touching the file (here: its mtime, which also moves its ctime) changes its identity:
    // the record no longer applies and the file is read and hashed again.
    age("install");
    let reread = fresh().load(dir.path(), "install").unwrap();
    assert_eq!(reread.digest, install.digest);
    assert_eq!(reread.cache, CacheOutcome::Hit);
}

#[test]
fn missing_and_broken_plugin_files_are_named() {
    let rt = runtime(tight());
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        rt.load(dir.path(), "install"),
        Err(Failure::Missing { .. })
    ));
    std::fs::write(dir.path().join("install.wasm"), b"garbage").unwrap();
    let err = rt.load(dir.path(), "install").err().unwrap();
    assert!(
        err.to_string()
            .contains("install.wasm is not a valid component: not a WebAssembly binary"),
        "{err}"
    );
    let mut truncated = std::fs::read(test_plugin("hostile")).unwrap();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(dir.path().join("install.wasm"), truncated).unwrap();
    assert!(matches!(
        rt.load(dir.path(), "install"),
        Err(Failure::Invalid { .. })
    ));
}

#[test]
fn an_unwritable_cache_directory_loses_nothing() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A regular file where the directory should be: nothing can be written under it.
    let rt = Runtime::new(RuntimeConfig {
        limits: tight(),
        cache_dir: Some(file.path().join("cache")),
        ..Default::default()
    })
    .unwrap();
    let dir = plugins_dir(&[("hostile", "hostile")]);
    assert_eq!(
        rt.load(dir.path(), "hostile").unwrap().cache,
        CacheOutcome::CompiledUncached
    );
}

// ------------------------------------------------------------------ the binary

#[test]
fn the_binary_reports_one_clear_line_and_exits_non_zero() {
    let dir = plugins_dir(&[("loop", "hostile")]);
    let tmp = tempfile::tempdir().unwrap();
    let world_file = tmp.path().join("world.yaml");
    std::fs::write(
        &world_file,
        serde_yaml::to_string(&world().state()).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args(["dispatch", "--wasm-deadline", "0.3", "--world"])
        .arg(&world_file)
        .args(["--event", "loop", "--plugins"])
        .arg(dir.path())
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .env("CHARM_HOST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("charm-host: plugin loop failed on event loop: deadline exceeded: ran wasm for more than 300ms"),
        "{stderr}"
    );
}

#[test]
fn the_binary_refuses_bad_input_with_a_message_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("world.yaml");
    std::fs::write(&bad, "units: [this is not a map").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args(["dispatch", "--world"])
        .arg(&bad)
        .args(["--event", "install"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("world state {} is invalid", bad.display())),
        "{stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args(["dispatch", "--world"])
        .arg(&bad)
        .env_remove("JUJU_DISPATCH_PATH")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JUJU_DISPATCH_PATH is not set"));
}
