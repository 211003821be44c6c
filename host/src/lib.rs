//! `charm-host`: runs the PostgreSQL K8s charm's hooks as sandboxed WebAssembly plugins.
//!
//! Layers (see docs/ARCHITECTURE.md):
//! - [`bindings`]: the WIT contract, generated.
//! - [`capability`]: one trait per capability family; the only way a plugin touches the world.
//! - [`runtime`]: wasmtime engine, plugin loading and caching, per-event limits.
//! - [`dispatch`]: Juju's dispatch contract: the event from the environment, deferral, commit.
//! - [`world`]: the simulated world, an in-memory implementation of every capability.
//! - [`backends`]: the production implementations of Pebble, Patroni and PostgreSQL.

pub mod backends;
pub mod bench;
pub mod bindings;
pub mod capability;
pub mod crash;
pub mod dispatch;
pub mod fuzz;
pub mod runtime;
pub mod scenario;
pub mod simulate;
pub mod world;
