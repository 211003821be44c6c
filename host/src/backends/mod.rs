//! Production implementations of the capability traits.

pub mod juju;
pub mod kubernetes;
