//! An async client for [Canonical Pebble](https://github.com/canonical/pebble)'s HTTP API over
//! its unix socket: layers and plans, services, changes, checks, files, exec and signals.
//!
//! ```no_run
//! # async fn demo() -> pebble_client::Result<()> {
//! use pebble_client::{Client, ExecRequest, Layer, Service};
//!
//! let client = Client::new("/charm/containers/postgresql/pebble.socket");
//! let layer = Layer::new().with_service("pg", Service::new("postgres -D /data").enabled(true));
//! client.add_layer("postgresql", &layer, true).await?;
//! client.replan().await?;
//! let out = client.exec(&ExecRequest::new(["psql", "-c", "select 1"])).await?.check()?;
//! println!("{}", out.stdout_lossy());
//! # Ok(()) }
//! ```
//!
//! Errors are one type, [`Error`], whose [`Error::kind`] gives the coarse [`ErrorKind`]
//! (not-found, forbidden, conflict, unreachable, timeout, invalid, other) and whose text
//! keeps Pebble's own message and names the call that failed.
//!
//! The types in [`types`] do no I/O and serialise with Pebble's field names, so layers can be
//! built, compared and rendered to YAML without a daemon.

mod client;
mod duration;
mod error;
mod exec;
mod multipart;
pub mod types;

pub use client::{Client, DEFAULT_CHANGE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use types::{
    Change, Check, CheckInfo, CheckLevel, CheckStatus, ExecCheck, ExecOutput, ExecRequest,
    FileInfo, FileType, GoDuration, HttpCheck, Layer, LogTarget, LogTargetType, MakeDirOptions,
    Override, ParseDurationError, Plan, PushOptions, Service, ServiceAction, ServiceInfo,
    ServiceStatus, Startup, SystemInfo, Task, TaskProgress, TcpCheck,
};
