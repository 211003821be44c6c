//! Where the backend tests find the real servers they start, and small shared helpers.
//!
//! Tools come from an environment variable or from `<root>/target/tools`; a missing tool fails
//! the test with the command that installs it (`cargo xtask setup` runs the same commands).
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use charm_host::bindings::{Error, ErrorKind};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tool(env: &str, default: PathBuf, install: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.is_file(),
        "{} not found (set {env} or install it there). Install with:\n{install}",
        path.display()
    );
    path
}

/// Canonical's Pebble daemon.
pub fn pebble_bin() -> PathBuf {
    let gobin = root().join("target/tools/bin");
    tool(
        "PEBBLE_BIN",
        gobin.join("pebble"),
        &format!(
            "  go mod download github.com/canonical/pebble@v1.32.1 && \\\n  \
             cd \"$(go env GOMODCACHE)/github.com/canonical/pebble@v1.32.1\" && \\\n  \
             GOBIN={} go install ./cmd/pebble",
            gobin.display()
        ),
    )
}

/// Patroni 4.1.5 from PyPI, in a venv that uses Debian's psycopg2.
pub fn patroni_bin() -> PathBuf {
    let venv = root().join("target/tools/patroni-venv");
    tool(
        "PATRONI_BIN",
        venv.join("bin/patroni"),
        &format!(
            "  apt-get update && apt-get install -y --no-install-recommends postgresql python3-psycopg2 \
             python3-venv etcd-server python3-etcd\n  \
             /usr/bin/python3 -m venv --system-site-packages {v} && \
             {v}/bin/pip install --ignore-installed 'patroni[etcd3]==4.1.5'",
            v = venv.display()
        ),
    )
}

/// etcd (Debian `etcd-server`), Patroni's DCS in the tests.
pub fn etcd_bin() -> PathBuf {
    tool(
        "ETCD_BIN",
        PathBuf::from("/usr/bin/etcd"),
        "  apt-get update && apt-get install -y --no-install-recommends etcd-server python3-etcd",
    )
}

/// PostgreSQL's server binaries (Debian `postgresql`, version 15 on bookworm).
pub fn pg_bin_dir() -> PathBuf {
    let dir = std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.path().join("bin"))
                        .filter(|p| p.join("postgres").is_file())
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            found
                .pop()
                .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
        });
    assert!(
        dir.join("postgres").is_file(),
        "no PostgreSQL server in {} (set PG_BIN_DIR). Install with:\n  \
         apt-get update && apt-get install -y --no-install-recommends postgresql python3-psycopg2",
        dir.display()
    );
    dir
}

/// Free loopback TCP ports, distinct from each other (the listeners are held until all are
/// picked, then released for the servers to take).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what` and the last
/// observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Asserts an error's kind, showing the whole error when it is not.
#[track_caller]
pub fn assert_kind<T: std::fmt::Debug>(r: Result<T, Error>, kind: ErrorKind) -> Error {
    match r {
        Err(e) if e.kind == kind => e,
        other => panic!("expected a {kind:?} error, got {other:?}"),
    }
}
