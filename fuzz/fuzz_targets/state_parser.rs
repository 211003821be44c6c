//! Arbitrary bytes as a world state file: parsing and the consistency checker never panic,
//! and a state that parses and checks survives a YAML round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    charm_host::fuzz::targets::state_parser(data);
});
