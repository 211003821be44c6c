//! Kubernetes API stand-in (work in progress).
