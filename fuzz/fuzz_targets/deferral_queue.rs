//! Arbitrary bytes as the stored deferral queue: parsed or rejected, never a panic; a parsed
//! queue round-trips exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    charm_host::fuzz::targets::deferral_queue(data);
});
