//! The shared guest library of the PostgreSQL K8s charm plugins.
//!
//! - [`bindings`]: the generated bindings of `wit/charm.wit` (world `plugin`); plugins export
//!   themselves with [`export_plugin!`].
//! - Pure modules (no capability calls, unit-tested natively): config options, PostgreSQL
//!   parameters, `patroni.yml`, the Pebble layer, synchronous settings, extensions.

pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "charm_core::bindings",
    });
}

pub mod alloc;
pub mod charm;
pub mod config;
pub mod endpoints;
pub mod extensions;
pub mod json;
pub mod layer;
pub mod mem;
pub mod names;
pub mod params;
pub mod patroni_yml;
pub mod pyfmt;
pub mod resources;
pub mod sync;

/// Every plugin allocates through [`alloc::ClassAlloc`] (see there why). Only in the wasm
/// build: it assumes a single thread, and the native unit tests run several.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: alloc::ClassAlloc = alloc::ClassAlloc::new();
