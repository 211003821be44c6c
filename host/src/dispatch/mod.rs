//! Juju's dispatch contract (spec 9.1, 9.4): re-emit deferred events, run the new event,
//! and commit (queue and Juju writes) only when everything succeeded.
//!
//! One dispatch:
//! 1. read the queue from controller-side state (an unreadable one is kept aside);
//! 2. unless the hook is `collect-metrics` or `meter-status-changed`, re-run every queued
//!    notice in FIFO order: a notice deferred again keeps its place, one that completes is
//!    dropped, and a failure fails the dispatch;
//! 3. run the new event's plugin, unless an identical notice is still queued (ops'
//!    `skip_duplicate_events`); a deferral appends a notice; actions never defer, and their
//!    failures become `action-fail`;
//! 4. write the queue and commit the Juju writes. A failed dispatch commits nothing, so no
//!    deferred event is lost and Juju's retry of the hook runs it again.

pub mod event;
pub mod queue;

use std::path::{Path, PathBuf};

use crate::bindings::{Event, EventKind, Outcome};
use crate::capability::Capabilities;
use crate::runtime::{Failure, RunReport, Runtime};
pub use event::{EventError, event_from_env, kind_of_hook};
pub use queue::{CORRUPT_KEY_PREFIX, Notice, QUEUE_KEY, Queue};

/// Hooks that never re-emit deferred events (ops' restricted contexts).
const NO_REEMIT: &[&str] = &["collect-metrics", "meter-status-changed"];

/// A failed dispatch: nothing was committed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} failed on event {event}: {failure}")]
pub struct DispatchError {
    pub plugin: String,
    pub event: String,
    pub failure: Failure,
    /// The runs up to and including the failing one.
    pub runs: Vec<EventRun>,
}

/// The runs a dispatch made, whether it succeeded or failed.
pub fn runs_of(result: &Result<DispatchReport, DispatchError>) -> &[EventRun] {
    match result {
        Ok(r) => &r.runs,
        Err(e) => &e.runs,
    }
}

/// One plugin run within a dispatch.
#[derive(Debug, Clone)]
pub struct EventRun {
    pub event: Event,
    pub report: RunReport,
}

#[derive(Debug, Clone, Default)]
pub struct DispatchReport {
    pub runs: Vec<EventRun>,
    /// The queue as committed.
    pub queue: Queue,
    /// The new event had no plugin (a debug-level no-op, exit 0).
    pub no_plugin: bool,
    /// The new event was skipped because an identical notice is still queued.
    pub duplicate_skipped: bool,
    /// An action that failed (action-fail was called); the message.
    pub action_failed: Option<String>,
}

pub struct Dispatcher<'a> {
    pub runtime: &'a Runtime,
    pub plugins_dir: PathBuf,
    /// Record capability calls in each run's trace.
    pub trace: bool,
}

impl<'a> Dispatcher<'a> {
    pub fn new(runtime: &'a Runtime, plugins_dir: impl AsRef<Path>) -> Self {
        Dispatcher {
            runtime,
            plugins_dir: plugins_dir.as_ref().to_path_buf(),
            trace: false,
        }
    }

    pub async fn dispatch(
        &self,
        caps: &Capabilities,
        mut event: Event,
    ) -> Result<DispatchReport, DispatchError> {
        let mut report = DispatchReport::default();
        let mut queue = self
            .load_queue(caps)
            .await
            .map_err(|f| self.fail(&event.name, &event, f, Vec::new()))?;
        let original_queue = queue.clone();

        if event.kind == EventKind::Action
            && let Some(action) = &mut event.action
            && action.params.is_empty()
        {
            action.params = caps.juju.action_params().await.unwrap_or_default();
        }

        if !NO_REEMIT.contains(&event.name.as_str()) {
            let mut kept = Vec::with_capacity(queue.notices.len());
            for notice in std::mem::take(&mut queue.notices) {
                let plugin = match self.runtime.load(&self.plugins_dir, &notice.plugin) {
                    Ok(p) => p,
                    Err(Failure::Missing { path }) => {
                        // Like ops for an event the charm no longer defines: dropped, not fatal.
                        tracing::warn!(plugin = %notice.plugin, path = %path.display(), "deferred event's plugin is gone; dropping the notice");
                        continue;
                    }
                    Err(failure) => {
                        return Err(self.fail(&notice.plugin, &notice.event, failure, report.runs));
                    }
                };
                let mut ev = notice.event.clone();
                ev.deferred = true;
                let run = self
                    .runtime
                    .run(&plugin, ev.clone(), caps.clone(), self.trace)
                    .await;
                let result = run.result.clone();
                report.runs.push(EventRun {
                    event: ev.clone(),
                    report: run,
                });
                match result {
                    Ok(Outcome::Defer) => kept.push(notice),
                    Ok(Outcome::Done) => {}
                    Err(failure) => {
                        return Err(self.fail(&notice.plugin, &ev, failure, report.runs));
                    }
                }
            }
            queue.notices = kept;
        }

        let name = event.name.clone();
        let is_action = event.kind == EventKind::Action;
        match self.runtime.load(&self.plugins_dir, &name) {
            Err(Failure::Missing { .. }) => {
                tracing::debug!(hook = %name, "no plugin for this event; nothing to do");
                report.no_plugin = true;
            }
            Err(failure) => {
                if is_action {
                    let msg = format!("plugin {name} could not be loaded: {failure}");
                    let _ = caps.juju.action_fail(msg.clone()).await;
                }
                return Err(self.fail(&name, &event, failure, report.runs));
            }
            Ok(_) if !is_action && queue.contains(&name, &event) => {
                tracing::info!(hook = %name, "an identical event is still deferred; not running it twice");
                report.duplicate_skipped = true;
            }
            Ok(plugin) => {
                let run = self
                    .runtime
                    .run(&plugin, event.clone(), caps.clone(), self.trace)
                    .await;
                let result = run.result.clone();
                report.runs.push(EventRun {
                    event: event.clone(),
                    report: run,
                });
                match (result, is_action) {
                    (Ok(Outcome::Done), _) => {}
                    (Ok(Outcome::Defer), false) => queue.notices.push(Notice {
                        plugin: name.clone(),
                        event: event.clone(),
                    }),
                    (Ok(Outcome::Defer), true) => {
                        let msg = "actions cannot be deferred".to_string();
                        let _ = caps.juju.action_fail(msg.clone()).await;
                        report.action_failed = Some(msg);
                    }
                    (Err(Failure::Plugin { message }), true) => {
                        let _ = caps.juju.action_fail(message.clone()).await;
                        report.action_failed = Some(message);
                    }
                    (Err(failure), true) => {
                        // A sandbox failure (trap, limit) fails the action and the process.
                        let _ = caps
                            .juju
                            .action_fail(format!("plugin {name}: {failure}"))
                            .await;
                        return Err(self.fail(&name, &event, failure, report.runs));
                    }
                    (Err(failure), false) => {
                        return Err(self.fail(&name, &event, failure, report.runs));
                    }
                }
            }
        }

        crate::crash::point("before-queue-write");
        if queue.notices != original_queue.notices || queue.version != 1 {
            let write = if queue.notices.is_empty() {
                caps.juju.state_delete(QUEUE_KEY.into()).await
            } else {
                caps.juju.state_set(QUEUE_KEY.into(), queue.to_json()).await
            };
            write.map_err(|e| {
                self.fail(
                    &name,
                    &event,
                    Failure::Trap {
                        message: format!("writing the deferral queue: {e}"),
                    },
                    report.runs.clone(),
                )
            })?;
        }
        crate::crash::point("after-queue-write");
        crate::crash::point("before-commit");
        caps.juju.commit().await.map_err(|e| {
            self.fail(
                &name,
                &event,
                Failure::Trap {
                    message: format!("committing Juju writes: {e:#}"),
                },
                report.runs.clone(),
            )
        })?;
        crate::crash::point("after-commit");
        queue.version = 1;
        report.queue = queue;
        Ok(report)
    }

    /// Read the queue; an unreadable one is reported and kept aside under another key. A
    /// queue that cannot be *read* fails the dispatch: running on would overwrite it.
    async fn load_queue(&self, caps: &Capabilities) -> Result<Queue, Failure> {
        Ok(match caps.juju.state_get(QUEUE_KEY.into()).await {
            Ok(None) => Queue {
                version: 1,
                notices: vec![],
            },
            Ok(Some(raw)) => match Queue::parse(&raw) {
                Ok(q) => q,
                Err(why) => {
                    let aside = format!("{CORRUPT_KEY_PREFIX}{}", caps.clock.now_ms());
                    tracing::error!(key = QUEUE_KEY, kept_as = %aside, "the stored deferral queue cannot be parsed ({why}); keeping it aside and starting an empty queue");
                    if let Err(e) = caps.juju.state_set(aside.clone(), raw).await {
                        tracing::error!("could not keep the unreadable queue aside: {e}");
                    }
                    // version 0 forces the rewrite of the key at commit.
                    Queue {
                        version: 0,
                        notices: vec![],
                    }
                }
            },
            Err(e) => {
                return Err(Failure::Trap {
                    message: format!("reading the deferral queue: {e}"),
                });
            }
        })
    }

    fn fail(
        &self,
        plugin: &str,
        event: &Event,
        failure: Failure,
        runs: Vec<EventRun>,
    ) -> DispatchError {
        DispatchError {
            plugin: plugin.to_string(),
            event: event.name.clone(),
            failure,
            runs,
        }
    }
}
