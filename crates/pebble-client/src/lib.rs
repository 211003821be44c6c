//! Pebble client (work in progress).
