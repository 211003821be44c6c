//! One real etcd + 3-member Patroni 4 + PostgreSQL 15 cluster per test process, on loopback.
//!
//! Follows /work/shared/reference/patroni-cluster.sh: servers run as `postgres` through
//! `setpriv` (which execs in place, so the pid we hold is the server's), data lives under
//! /dev/shm (deleting it is instant), ttl is 20 (Patroni 4's minimum), ports are picked free.
//!
//! Lifetime: the cluster starts on first use and is stopped by an `atexit` handler when the
//! test process exits, whether tests passed or failed. A watchdog shell (its own process
//! group, so a Ctrl-C of `cargo test` does not reach it) stops everything if the test process
//! dies without running `atexit` (SIGKILL). Tests take [`Cluster::lock`] so they run one at a
//! time: switchovers and restarts must not overlap other tests' assumptions.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use charm_host::backends::{
    PatroniBackend, PatroniConfig, PostgresqlBackend, PostgresqlConfig, Targets,
};
use charm_host::bindings::patroni::Auth;
use charm_host::bindings::postgresql::{Connection, Target as PgTarget};

use crate::backend_tools::{etcd_bin, free_ports, patroni_bin, pg_bin_dir};

pub const MEMBERS: usize = 3;
pub const PATRONI_PASSWORD: &str = "patroni-pass";
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "postgres-pass";
/// How long the cluster may take to come up or settle (measured: 5-10 s; slack for a loaded box).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Cluster {
    pub dir: PathBuf,
    pub rest_ports: Vec<u16>,
    pub pg_ports: Vec<u16>,
    pub etcd_port: u16,
    serial: Mutex<()>,
}

/// Processes to stop at exit. Filled as they are spawned, so a failed start is cleaned up too.
struct Procs {
    dir: Option<PathBuf>,
    patroni: Vec<Child>,
    etcd: Option<Child>,
    watchdog: Option<Child>,
}

static PROCS: Mutex<Procs> = Mutex::new(Procs {
    dir: None,
    patroni: vec![],
    etcd: None,
    watchdog: None,
});
static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The shared cluster, started on first use. Fails the calling test if it could not start.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("the test cluster could not start:\n{e}"),
    }
}

pub fn member_name(i: usize) -> String {
    format!("pg{i}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---- raw HTTP, for the harness's own probes (the backends under test are not used here) ------

/// `GET path` on 127.0.0.1:port → (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

fn get_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let (_, body) = http_get(port, path)?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

// ---- start and stop ----------------------------------------------------------------------------

fn run_as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "env",
        "HOME=/var/lib/postgresql",
    ])
    .arg(program);
    // Own process group: a terminal's Ctrl-C reaches the test, whose atexit stops these in order
    // (Patroni first, so it stops its PostgreSQL cleanly).
    cmd.process_group(0);
    cmd
}

fn member_config(c: &Cluster, i: usize) -> String {
    let dir = c.dir.display();
    let (rp, pp, ep) = (c.rest_ports[i], c.pg_ports[i], c.etcd_port);
    let bin = pg_bin_dir();
    format!(
        r#"scope: charm-host-test
namespace: /service/
name: pg{i}
log: {{level: INFO, dir: {dir}/log/pg{i}, file_num: 2}}
restapi:
  listen: 127.0.0.1:{rp}
  connect_address: 127.0.0.1:{rp}
  authentication: {{username: patroni, password: {PATRONI_PASSWORD}}}
etcd3: {{hosts: "127.0.0.1:{ep}"}}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 64MB
        max_connections: 50
        shared_buffers: 16MB
        synchronous_commit: "on"
  initdb: [{{encoding: UTF8}}, data-checksums, {{auth-local: trust}}, {{auth-host: scram-sha-256}}]
postgresql:
  listen: 127.0.0.1:{pp}
  connect_address: 127.0.0.1:{pp}
  use_unix_socket: true
  data_dir: {dir}/data/pg{i}
  bin_dir: {bin}
  pgpass: {dir}/run/pgpass-pg{i}
  authentication:
    replication: {{username: replicator, password: replicator-pass}}
    superuser: {{username: {SUPERUSER}, password: {SUPERUSER_PASSWORD}}}
    rewind: {{username: rewinder, password: rewinder-pass}}
  parameters: {{unix_socket_directories: {dir}/run, password_encryption: scram-sha-256}}
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
  basebackup: [{{checkpoint: fast}}]
tags: {{nofailover: false, noloadbalance: false, clonefrom: false, nosync: false}}
"#,
        bin = bin.display()
    )
}

fn start() -> Result<Cluster, String> {
    reap_stale();
    let t0 = Instant::now();
    let ports = free_ports(2 + 2 * MEMBERS);
    let dir = PathBuf::from(format!(
        "/dev/shm/charm-host-cluster-{}",
        std::process::id()
    ));
    let c = Cluster {
        dir: dir.clone(),
        etcd_port: ports[0],
        rest_ports: ports[2..2 + MEMBERS].to_vec(),
        pg_ports: ports[2 + MEMBERS..].to_vec(),
        serial: Mutex::new(()),
    };
    let (patroni, etcd) = (patroni_bin(), etcd_bin());
    let _ = pg_bin_dir();

    // Stop everything at exit, however the tests end.
    lock(&PROCS).dir = Some(dir.clone());
    unsafe { libc::atexit(stop_at_exit) };

    for sub in ["data", "run", "etcd"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..MEMBERS).map(|i| format!("log/pg{i}")))
    {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    for i in 0..MEMBERS {
        std::fs::write(dir.join(format!("pg{i}.yml")), member_config(&c, i))
            .map_err(|e| e.to_string())?;
    }
    let ok = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err(format!("chown -R postgres {} failed", dir.display()));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("data"), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;

    spawn_watchdog(&dir)?;

    let log =
        |name: &str| std::fs::File::create(dir.join("log").join(name)).map_err(|e| e.to_string());
    let (ep, pp) = (c.etcd_port, ports[1]);
    let etcd_child = run_as_postgres(&etcd)
        .args(["--name", "etcd0", "--data-dir"])
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{ep}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{ep}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{pp}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{pp}"),
        ])
        .args(["--initial-cluster", &format!("etcd0=http://127.0.0.1:{pp}")])
        .args([
            "--initial-cluster-state",
            "new",
            "--enable-v2=false",
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(log("etcd.log")?)
        .stderr(log("etcd.log")?)
        .spawn()
        .map_err(|e| format!("cannot start etcd: {e}"))?;
    lock(&PROCS).etcd = Some(etcd_child);
    poll(Duration::from_secs(30), || match http_get(ep, "/health") {
        Ok((200, body)) if body.contains("true") => Ok(()),
        other => Err(format!(
            "etcd health: {other:?}; log: {}",
            tail(&dir.join("log/etcd.log"))
        )),
    })?;

    for i in 0..MEMBERS {
        let child = run_as_postgres(&patroni)
            .arg(dir.join(format!("pg{i}.yml")))
            .stdin(Stdio::null())
            .stdout(log(&format!("pg{i}.stdout"))?)
            .stderr(log(&format!("pg{i}.stdout"))?)
            .spawn()
            .map_err(|e| format!("cannot start patroni: {e}"))?;
        lock(&PROCS).patroni.push(child);
    }
    c.wait_ready()?;
    eprintln!(
        "test cluster ready in {:.1?}: REST {:?}, PostgreSQL {:?}, etcd {} (dir {})",
        t0.elapsed(),
        c.rest_ports,
        c.pg_ports,
        c.etcd_port,
        dir.display()
    );
    Ok(c)
}

fn poll(timeout: Duration, mut f: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("timed out after {timeout:?}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The shell the watchdog runs: once the test process is gone, stop what it left behind.
/// Its children were reparented to init, which reaps them, so `kill -0` works as a liveness test.
const WATCHDOG: &str = r#"
test_pid=$1; dir=$2
[ "$test_pid" = none ] || while kill -0 "$test_pid" 2>/dev/null; do sleep 0.5; done
[ -d "$dir" ] || exit 0
for f in "$dir"/run/patroni-*.pid; do [ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null; done
for f in "$dir"/run/patroni-*.pid; do
  [ -e "$f" ] || continue; pid=$(cat "$f"); i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
done
for f in "$dir"/data/*/postmaster.pid; do [ -e "$f" ] && kill -QUIT "$(head -1 "$f")" 2>/dev/null; done
if [ -e "$dir/run/etcd.pid" ]; then pid=$(cat "$dir/run/etcd.pid"); kill -TERM "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null; fi
rm -rf "$dir"
"#;

fn spawn_watchdog(dir: &Path) -> Result<(), String> {
    let child = Command::new("sh")
        .args(["-c", WATCHDOG, "watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    lock(&PROCS).watchdog = Some(child);
    Ok(())
}

/// Records spawned pids where the watchdog looks for them.
fn record_pids(p: &Procs) {
    let Some(dir) = &p.dir else { return };
    for (i, c) in p.patroni.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("run/patroni-{i}.pid")), c.id().to_string());
    }
    if let Some(e) = &p.etcd {
        let _ = std::fs::write(dir.join("run/etcd.pid"), e.id().to_string());
    }
}

fn signal(child: &Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

extern "C" fn stop_at_exit() {
    // Never unwind into C.
    let _ = std::panic::catch_unwind(|| {
        let mut p = lock(&PROCS);
        let t0 = Instant::now();
        // SIGTERM: each Patroni stops its PostgreSQL (fast shutdown), then exits.
        for c in &p.patroni {
            signal(c, libc::SIGTERM);
        }
        for c in p.patroni.iter_mut() {
            if !wait_exit(c, Duration::from_secs(15)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(dir) = p.dir.clone() {
            // A PostgreSQL whose Patroni had to be killed: immediate shutdown by its own pid file.
            for i in 0..MEMBERS {
                if let Ok(text) =
                    std::fs::read_to_string(dir.join(format!("data/pg{i}/postmaster.pid")))
                    && let Some(pid) = text
                        .lines()
                        .next()
                        .and_then(|l| l.trim().parse::<i32>().ok())
                {
                    unsafe { libc::kill(pid, libc::SIGQUIT) };
                }
            }
        }
        if let Some(e) = p.etcd.as_mut() {
            signal(e, libc::SIGTERM);
            if !wait_exit(e, Duration::from_secs(5)) {
                let _ = e.kill();
                let _ = e.wait();
            }
        }
        if let Some(w) = p.watchdog.as_mut() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(dir) = p.dir.take() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        eprintln!("test cluster stopped in {:.1?}", t0.elapsed());
    });
}

/// Stops clusters left by test processes that no longer exist (e.g. killed by a timeout before
/// their watchdog could act).
fn reap_stale() {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("charm-host-cluster-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if unsafe { libc::kill(pid, 0) } == 0 {
            continue; // still running: another test binary's cluster
        }
        let _ = Command::new("sh")
            .args(["-c", WATCHDOG, "reaper", "none"])
            .arg(e.path())
            .status();
    }
}

// ---- what tests use -----------------------------------------------------------------------------

impl Cluster {
    /// Serialises tests, then waits until the cluster is whole (a leader, the rest streaming).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        let g = lock(&self.serial);
        record_pids(&lock(&PROCS));
        if let Err(e) = self.wait_ready() {
            panic!("the test cluster is not healthy before the test: {e}");
        }
        g
    }

    fn check_alive(&self) -> Result<(), String> {
        let mut p = lock(&PROCS);
        record_pids(&p);
        for (i, c) in p.patroni.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "patroni pg{i} exited ({status}):\n{}",
                    tail(&self.dir.join(format!("log/pg{i}.stdout")))
                ));
            }
        }
        Ok(())
    }

    /// One running leader and every other member streaming, as `/cluster` reports it.
    pub fn wait_ready(&self) -> Result<(), String> {
        poll(READY_TIMEOUT, || {
            self.check_alive()?;
            let c = get_json(self.rest_ports[0], "/cluster")?;
            let members = c["members"].as_array().cloned().unwrap_or_default();
            let leaders = members
                .iter()
                .filter(|m| m["role"] == "leader" && m["state"] == "running")
                .count();
            let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
            // Synchronous mode is on from bootstrap: whole means a sync standby is chosen too.
            let sync = members
                .iter()
                .filter(|m| m["role"] == "sync_standby")
                .count();
            if members.len() == MEMBERS && leaders == 1 && streaming == MEMBERS - 1 && sync >= 1 {
                Ok(())
            } else {
                Err(c.to_string())
            }
        })
    }

    /// The current leader's index, from `/cluster`.
    pub fn leader(&self) -> usize {
        let c = get_json(self.rest_ports[0], "/cluster").expect("GET /cluster");
        let name = c["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "leader")
            .expect("a leader")["name"]
            .as_str()
            .unwrap()
            .to_string();
        name.trim_start_matches("pg").parse().unwrap()
    }

    /// Indexes of the members that are not the leader.
    pub fn replicas(&self) -> Vec<usize> {
        let l = self.leader();
        (0..MEMBERS).filter(|i| *i != l).collect()
    }

    /// Roles by member name, from `/cluster`.
    pub fn roles(&self) -> Vec<(String, String)> {
        let c = get_json(self.rest_ports[0], "/cluster").expect("GET /cluster");
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    m["role"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn config(&self) -> serde_json::Value {
        get_json(self.rest_ports[0], "/config").expect("GET /config")
    }

    /// Targets where own-unit is member `own`, the primary Service is the current leader, and
    /// member names (`pg0`..) resolve to their loopback ports.
    fn targets(&self, own: usize, ports: &[u16], default_port: u16) -> Targets {
        let leader = self.leader();
        let mut t = Targets {
            own_unit: member_name(own),
            primary_service: "primary-service".into(),
            default_port,
            overrides: Default::default(),
            resolver: None,
        }
        .with_override("primary-service", "127.0.0.1", ports[leader]);
        for (i, p) in ports.iter().enumerate() {
            t = t.with_override(member_name(i), "127.0.0.1", *p);
        }
        t
    }

    pub fn patroni(&self, own: usize) -> PatroniBackend {
        PatroniBackend::new(PatroniConfig::new(self.targets(
            own,
            &self.rest_ports,
            8008,
        )))
        .unwrap()
    }

    pub fn postgresql(&self, own: usize) -> PostgresqlBackend {
        PostgresqlBackend::new(PostgresqlConfig::new(self.targets(
            own,
            &self.pg_ports,
            5432,
        )))
    }

    /// A direct superuser connection to member `i`, for setting up and checking (not under test).
    pub async fn sql(&self, i: usize, database: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg_ports[i])
            .user(SUPERUSER)
            .password(SUPERUSER_PASSWORD)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("direct connection to pg{i}/{database}: {e}"));
        tokio::spawn(conn);
        client
    }
}

pub fn auth() -> Auth {
    Auth {
        password: PATRONI_PASSWORD.into(),
        tls: false,
    }
}

pub fn superuser(at: PgTarget) -> Connection {
    Connection {
        at,
        user: SUPERUSER.into(),
        password: SUPERUSER_PASSWORD.into(),
        database: None,
    }
}
