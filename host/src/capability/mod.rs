//! The capability boundary: one trait per family of the WIT contract.
//!
//! A plugin reaches the world only through these traits. The simulated world
//! ([`crate::world`]) implements all of them in memory; production backends implement them
//! against Juju's hook tools, Kubernetes, Pebble, Patroni and PostgreSQL. The runtime
//! ([`crate::runtime`]) adapts them to the generated wasmtime `Host` traits, adding per-call
//! timeouts, argument bounds and the call trace.

mod clock;
mod juju;
mod kubernetes;
mod patroni;
mod pebble;
mod postgresql;

use std::sync::Arc;

pub use clock::{Clock, Random, SystemClock, SystemRandom};
pub use juju::Juju;
pub use kubernetes::Kubernetes;
pub use patroni::Patroni;
pub use pebble::Pebble;
pub use postgresql::Postgresql;

/// The result type of every fallible capability call.
pub type CapResult<T> = Result<T, crate::bindings::Error>;

/// One implementation of every family, as handed to a plugin for one event.
///
/// Cheap to clone: every member is shared. All events of one dispatch see the same
/// capabilities, so Juju writes from re-emitted events and the new event commit together.
#[derive(Clone)]
pub struct Capabilities {
    pub juju: Arc<dyn Juju>,
    pub kubernetes: Arc<dyn Kubernetes>,
    pub pebble: Arc<dyn Pebble>,
    pub patroni: Arc<dyn Patroni>,
    pub postgresql: Arc<dyn Postgresql>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

impl Capabilities {
    /// All families served by one object (the simulated world's per-unit view does this).
    pub fn from_one<T>(all: Arc<T>) -> Self
    where
        T: Juju + Kubernetes + Pebble + Patroni + Postgresql + Clock + Random + 'static,
    {
        Capabilities {
            juju: all.clone(),
            kubernetes: all.clone(),
            pebble: all.clone(),
            patroni: all.clone(),
            postgresql: all.clone(),
            clock: all.clone(),
            random: all,
        }
    }
}
