//! A scriptable plugin for the dispatch tests.
//!
//! Every run appends `<event>` (or `<event>*` when re-emitted) and `;` to the state key `log`.
//! It defers while the state key `defer-<event>` is `yes`; events named `fail...` return an
//! error; `touch-reserved` tries to write the host's own queue key; `sleep` waits 3 × 400 ms
//! through the clock capability.
use charm_core::bindings::charm::host::types::{Event, Outcome};
use charm_core::bindings::charm::host::{clock, juju};
use charm_core::bindings::{Guest, export_plugin};

struct Recorder;

fn err(e: charm_core::bindings::charm::host::types::Error) -> String {
    format!("{:?}: {}", e.kind, e.message)
}

impl Guest for Recorder {
    fn handle(event: Event) -> Result<Outcome, String> {
        if event.name == "touch-reserved" {
            juju::state_set("charm-host.deferred", "{}").map_err(err)?;
            return Ok(Outcome::Done);
        }
        if event.name == "sleep" {
            for _ in 0..3 {
                clock::sleep_ms(400);
            }
            return Ok(Outcome::Done);
        }
        let mut log = juju::state_get("log").map_err(err)?.unwrap_or_default();
        log.push_str(&event.name);
        if event.deferred {
            log.push('*');
        }
        log.push(';');
        juju::state_set("log", &log).map_err(err)?;
        if event.name.starts_with("fail") {
            return Err("failed on purpose".into());
        }
        let defer = juju::state_get(&format!("defer-{}", event.name)).map_err(err)?;
        Ok(if defer.as_deref() == Some("yes") {
            Outcome::Defer
        } else {
            Outcome::Done
        })
    }
}

export_plugin!(Recorder);
