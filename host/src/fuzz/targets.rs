//! The bodies of the cargo-fuzz (libFuzzer) targets in `fuzz/fuzz_targets/`: each takes
//! arbitrary bytes and panics only when a property fails.
//!
//! They live here, not in the targets, so that `tests/fuzz_targets.rs` runs them over a fixed
//! corpus and its mutations in every test run: the libFuzzer build (a second, instrumented
//! compile of the host) stays out of CI, and the properties still cannot rot. Each returns
//! whether the input was accepted (parsed, or loaded), so that a corpus can be shown to reach
//! both sides.

use std::path::Path;

use crate::bindings::{Event, EventKind};
use crate::dispatch::{Queue, event_from_env};
use crate::runtime::{Failure, Runtime};
use crate::world::{UnitState, World, WorldState, check};

/// A world state file: parsing and the consistency checker never panic, and a state that
/// parses and checks survives a YAML round trip, still consistent.
///
/// Accepted: the state parsed and is consistent.
pub fn state_parser(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(state) = serde_yaml::from_str::<WorldState>(text) else {
        return false;
    };
    if check::check(&state).is_err() {
        return false;
    }
    let yaml = serde_yaml::to_string(&state).expect("a parsed state serialises");
    let again: WorldState = serde_yaml::from_str(&yaml).expect("a serialised state parses");
    assert_eq!(
        check::check(&again),
        Ok(()),
        "round trip of a consistent state"
    );
    true
}

/// The stored deferral queue: parsed or refused with a reason, never a panic; a parsed queue
/// round-trips exactly.
pub fn deferral_queue(data: &[u8]) -> bool {
    let raw = String::from_utf8_lossy(data);
    match Queue::parse(&raw) {
        Ok(q) => {
            assert_eq!(Queue::parse(&q.to_json()), Ok(q), "queue round trip");
            true
        }
        Err(why) => {
            assert!(!why.is_empty(), "a refused queue says why");
            false
        }
    }
}

/// The `JUJU_*` variables `juju_environment` reads, one per line of its input, in this order.
pub const JUJU_VARS: &[&str] = &[
    "JUJU_DISPATCH_PATH",
    "JUJU_RELATION",
    "JUJU_RELATION_ID",
    "JUJU_REMOTE_APP",
    "JUJU_REMOTE_UNIT",
    "JUJU_DEPARTING_UNIT",
    "JUJU_WORKLOAD_NAME",
    "JUJU_SECRET_ID",
    "JUJU_SECRET_LABEL",
    "JUJU_SECRET_REVISION",
    "JUJU_STORAGE_ID",
    "JUJU_ACTION_NAME",
    "JUJU_ACTION_UUID",
];

/// An arbitrary environment (line i is `JUJU_VARS[i]`): an event named after the dispatch
/// path's last segment, or an error with a message; never a panic.
pub fn juju_environment(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let get = |k: &str| {
        JUJU_VARS
            .iter()
            .position(|v| *v == k)
            .and_then(|i| values.get(i))
            .map(|v| v.to_string())
    };
    match event_from_env(get) {
        Ok(event) => {
            let path = values[0];
            assert_eq!(
                Some(event.name.as_str()),
                path.rsplit('/').next(),
                "event name from {path:?}"
            );
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error names the problem");
            false
        }
    }
}

/// Arbitrary bytes offered as a plugin: refused with a reason, or loaded and (when they form a
/// component of the contract) run against a one-unit world, without ever bringing the host
/// down. `rt` drives the run. Accepted: loaded.
pub fn component_loader(runtime: &Runtime, rt: &tokio::runtime::Runtime, data: &[u8]) -> bool {
    let plugin = match runtime.load_bytes("fuzz", Path::new("fuzz.wasm"), data) {
        Ok(p) => p,
        Err(Failure::Invalid { reason, .. }) => {
            assert!(!reason.is_empty(), "a refused plugin says why");
            return false;
        }
        Err(other) => panic!("bytes are refused as invalid, not as {other:?}"),
    };
    let mut s = WorldState::default();
    s.units
        .insert("postgresql-k8s/0".into(), UnitState::default());
    let (caps, _) = World::new(s).capabilities("postgresql-k8s/0");
    let event = Event::bare("install", EventKind::Install);
    let _ = rt.block_on(runtime.run(&plugin, event, caps, false));
    true
}
