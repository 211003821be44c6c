//! The host side of the WIT boundary: arbitrary bytes offered as a plugin are loaded (and,
//! when they happen to form a component of the contract, instantiated and called) without
//! ever bringing the host down.
#![no_main]
use std::sync::OnceLock;

use charm_host::runtime::{Runtime, RuntimeConfig};
use libfuzzer_sys::fuzz_target;

fn runtimes() -> &'static (Runtime, tokio::runtime::Runtime) {
    static RT: OnceLock<(Runtime, tokio::runtime::Runtime)> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (Runtime::new(RuntimeConfig::default()).unwrap(), rt)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, rt) = runtimes();
    charm_host::fuzz::targets::component_loader(runtime, rt, data);
});
