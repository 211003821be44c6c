//! `charm-host`: runs the PostgreSQL K8s charm's hooks as sandboxed WebAssembly plugins.
//!
//! Layers (see docs/ARCHITECTURE.md):
//! - [`bindings`]: the WIT contract, generated.
//! - [`capability`]: one trait per capability family; the only way a plugin touches the world.
//! - [`runtime`]: wasmtime engine, plugin loading and caching, per-event limits.
//! - [`dispatch`]: Juju's dispatch contract: the event from the environment, deferral, commit.
//! - [`world`]: the simulated world, an in-memory implementation of every capability.
//! - [`backends`]: production implementations (Juju hook tools, Kubernetes, ...).
//! - [`juju_standin`]: a hook-tool agent answering from a simulated world (no controller needed).

pub mod backends;
pub mod bindings;
pub mod capability;
pub mod dispatch;
pub mod juju_standin;
pub mod runtime;
pub mod world;
