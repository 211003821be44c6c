//! `charm-host`: runs the PostgreSQL K8s charm's hooks as sandboxed WebAssembly plugins.
//!
//! Layers (see docs/ARCHITECTURE.md):
//! - [`bindings`]: the WIT contract, generated.
//! - [`capability`]: one trait per capability family; the only way a plugin touches the world.
//! - [`runtime`]: wasmtime engine, plugin loading and caching, per-event limits.
//! - [`dispatch`]: Juju's dispatch contract: the event from the environment, deferral, commit.
//! - [`world`]: the simulated world, an in-memory implementation of every capability.
//! - [`backends`]: the production implementations: Juju hook tools, Kubernetes, Pebble,
//!   Patroni, PostgreSQL.
//! - [`juju_standin`]: a hook-tool agent answering from a simulated world (no controller needed).
//! - [`scenario`], [`simulate`], [`fuzz`], [`bench`]: the uses built on top: one event, a whole
//!   deployment, generated worlds, measurements. [`crash`] holds the crash-test points.

pub mod backends;
pub mod bench;
pub mod bindings;
pub mod capability;
pub mod crash;
pub mod dispatch;
pub mod fuzz;
pub mod juju_standin;
pub mod runtime;
pub mod scenario;
pub mod simulate;
pub mod world;
