//! Deterministic crash points, for the crash-safety tests (SQLite-style test hooks).
//!
//! `CHARM_HOST_CRASH_AT` names one point at which the process kills itself with SIGKILL, so a
//! test can stop a dispatch exactly before or after any capability call, around the queue write
//! and the commit, or while the world file is being replaced. Unset (always, in production),
//! every check is one relaxed atomic load.
//!
//! Points: `before-call:N` / `after-call:N` (the Nth capability call of the process, from 1),
//! `before-queue-write`, `after-queue-write`, `before-commit`, `after-commit`,
//! `before-persist`, `mid-persist` (temporary file written, not yet renamed).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    None,
    BeforeCall(usize),
    AfterCall(usize),
    Named(String),
}

static PLAN: OnceLock<Plan> = OnceLock::new();
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn plan() -> &'static Plan {
    PLAN.get_or_init(|| match std::env::var("CHARM_HOST_CRASH_AT") {
        Err(_) => Plan::None,
        Ok(v) => {
            if let Some(n) = v.strip_prefix("before-call:").and_then(|n| n.parse().ok()) {
                Plan::BeforeCall(n)
            } else if let Some(n) = v.strip_prefix("after-call:").and_then(|n| n.parse().ok()) {
                Plan::AfterCall(n)
            } else {
                Plan::Named(v)
            }
        }
    })
}

fn die() -> ! {
    // SAFETY: sending a signal to ourselves; SIGKILL cannot be caught.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned")
}

/// Call at the start of a capability call; returns its number for [`after_call`].
pub fn before_call() -> usize {
    let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    if *plan() == Plan::BeforeCall(n) {
        die();
    }
    n
}

pub fn after_call(n: usize) {
    if *plan() == Plan::AfterCall(n) {
        die();
    }
}

pub fn point(name: &str) {
    if let Plan::Named(p) = plan()
        && p == name
    {
        die();
    }
}
