//! The host side of the WIT boundary: arbitrary bytes offered as a plugin are loaded (and,
//! when they happen to form a component of the contract, instantiated and called) without
//! ever bringing the host down.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use charm_host::bindings::{Event, EventKind};
use charm_host::runtime::{Runtime, RuntimeConfig};
use charm_host::world::{UnitState, World, WorldState};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(RuntimeConfig::default()).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(plugin) = runtime().load_bytes("fuzz", Path::new("fuzz.wasm"), data) else { return };
    let mut s = WorldState::default();
    s.units.insert("postgresql-k8s/0".into(), UnitState::default());
    let (caps, _) = World::new(s).capabilities("postgresql-k8s/0");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _ = rt.block_on(runtime().run(&plugin, Event::bare("install", EventKind::Install), caps, false));
});
