//! Arbitrary `JUJU_*` environments: an event or a named error, never a panic.
#![no_main]
use charm_host::dispatch::event_from_env;
use libfuzzer_sys::fuzz_target;

const VARS: &[&str] = &[
    "JUJU_DISPATCH_PATH", "JUJU_RELATION", "JUJU_RELATION_ID", "JUJU_REMOTE_APP", "JUJU_REMOTE_UNIT",
    "JUJU_DEPARTING_UNIT", "JUJU_WORKLOAD_NAME", "JUJU_SECRET_ID", "JUJU_SECRET_LABEL",
    "JUJU_SECRET_REVISION", "JUJU_STORAGE_ID", "JUJU_ACTION_NAME", "JUJU_ACTION_UUID",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<&str> = text.split('\n').collect();
    let get = |k: &str| VARS.iter().position(|v| *v == k).and_then(|i| values.get(i)).map(|v| v.to_string());
    let _ = event_from_env(get);
});
