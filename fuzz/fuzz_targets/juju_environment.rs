//! Arbitrary `JUJU_*` environments (one variable per line): an event or a named error, never
//! a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    charm_host::fuzz::targets::juju_environment(data);
});
