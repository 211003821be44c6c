//! Arbitrary bytes as a world state file: parsing and the consistency checker never panic,
//! and a state that parses and checks survives a YAML round trip.
#![no_main]
use charm_host::world::{WorldState, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(state) = serde_yaml::from_str::<WorldState>(text) {
        if check::check(&state).is_ok() {
            let again: WorldState = serde_yaml::from_str(&serde_yaml::to_string(&state).unwrap()).unwrap();
            assert_eq!(check::check(&again), Ok(()));
        }
    }
});
