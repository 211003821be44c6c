//! Runs a real Patroni + PostgreSQL cluster on loopback against the stand-in, using
//! Patroni's Kubernetes DCS. Everything it starts is stopped, and its data removed, on drop.
//!
//! Requirements (installed by `cargo xtask setup`):
//! - PostgreSQL server binaries (Debian `postgresql`, 15), found in `$PG_BIN_DIR` or the
//!   newest `/usr/lib/postgresql/*/bin`;
//! - Patroni 4.1.5 in `$PATRONI_BIN`, or `<workspace>/target/tools/patroni-venv/bin/patroni`,
//!   with `psycopg2` importable (Debian `python3-psycopg2` through `--system-site-packages`);
//! - when running as root: user `postgres` and `setpriv`, because PostgreSQL refuses root.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the test looks for Patroni when `PATRONI_BIN` is unset, relative to the workspace.
const DEFAULT_VENV_PATRONI: &str = "target/tools/patroni-venv/bin/patroni";

const INSTALL_HINT: &str = "install the prerequisites with `cargo xtask setup` \
(runs: apt-get update && apt-get install -y --no-install-recommends postgresql python3-psycopg2; \
/usr/bin/python3 -m venv --system-site-packages target/tools/patroni-venv; \
target/tools/patroni-venv/bin/pip install --ignore-installed 'patroni[kubernetes]==4.1.5'), \
or point PATRONI_BIN at a patroni 4.1.5 executable";

/// Locates the Patroni executable, or explains how to install it.
pub fn find_patroni() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PATRONI_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "PATRONI_BIN={} does not exist; {INSTALL_HINT}",
            bin.display()
        );
    }
    let default = workspace_root().join(DEFAULT_VENV_PATRONI);
    if default.is_file() {
        return Ok(default);
    }
    bail!("Patroni not found at {}; {INSTALL_HINT}", default.display())
}

/// Locates the PostgreSQL server binaries.
pub fn find_pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    // Highest major version last ("9" < "15" needs a numeric sort).
    candidates.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().with_context(|| {
        format!("no PostgreSQL server in /usr/lib/postgresql/*/bin; {INSTALL_HINT}")
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective uid; avoids a libc dependency.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> u16 {
    // Bind-and-release: a small race with other processes, acceptable on a test machine.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Cluster parameters.
pub struct ClusterSpec {
    /// Patroni scope (cluster name), also the leader Endpoints name.
    pub scope: String,
    /// Kubernetes namespace for Patroni's objects.
    pub namespace: String,
    /// Kubeconfig pointing at the stand-in.
    pub kubeconfig: PathBuf,
    /// Labels Patroni selects its pods and endpoints by (besides `cluster-name`).
    pub labels: Vec<(String, String)>,
    /// Number of members.
    pub members: usize,
}

/// One running Patroni member.
pub struct Member {
    /// Member name (= pod name).
    pub name: String,
    /// Patroni REST API port.
    pub rest_port: u16,
    /// PostgreSQL port.
    pub pg_port: u16,
    child: Child,
    log_dir: PathBuf,
}

/// A running cluster; dropping it stops every process and deletes the data.
pub struct PatroniCluster {
    /// Working directory (configs, data, logs).
    pub dir: PathBuf,
    /// The members, in start order.
    pub members: Vec<Member>,
}

impl PatroniCluster {
    /// Writes configs and starts every member. Pods must already exist in the stand-in.
    pub fn start(spec: &ClusterSpec) -> anyhow::Result<Self> {
        let patroni = find_patroni()?;
        let pg_bin = find_pg_bin_dir()?;
        // /dev/shm: fast to write and, above all, to delete.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let dir = base.join(format!(
            "k8s-standin-patroni-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::create_dir_all(dir.join("run"))?;
        let mut cluster = PatroniCluster {
            dir: dir.clone(),
            members: Vec::new(),
        };
        let root = running_as_root();

        let mut configs = Vec::new();
        for i in 0..spec.members {
            let name = format!("{}-{i}", spec.scope);
            let (rest_port, pg_port) = (free_port(), free_port());
            let log_dir = dir.join("log").join(&name);
            std::fs::create_dir_all(&log_dir)?;
            let config = member_config(spec, &name, rest_port, pg_port, &dir, &log_dir, &pg_bin);
            let path = dir.join(format!("{name}.yml"));
            std::fs::write(&path, config)?;
            configs.push((name, rest_port, pg_port, path, log_dir));
        }
        if root {
            // PostgreSQL refuses to run as root, so the servers run as `postgres`.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()?;
            anyhow::ensure!(
                status.success(),
                "chown -R postgres {} failed (is the postgresql package installed?)",
                dir.display()
            );
        }
        std::fs::set_permissions(
            dir.join("data"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;

        for (name, rest_port, pg_port, path, log_dir) in configs {
            let stdout = std::fs::File::create(log_dir.join("stdout.log"))?;
            let mut command = if root {
                // setpriv execs in place, so the child's pid is Patroni's own and SIGTERM
                // reaches it directly (su/runuser would stay in between as a parent).
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "env",
                    "HOME=/var/lib/postgresql",
                ]);
                c.arg(format!("KUBECONFIG={}", spec.kubeconfig.display()));
                c.arg(&patroni);
                c
            } else {
                let mut c = Command::new(&patroni);
                c.env("KUBECONFIG", &spec.kubeconfig);
                c
            };
            command
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(stdout.try_clone()?)
                .stderr(stdout);
            let child = command
                .spawn()
                .with_context(|| format!("starting {}", patroni.display()))?;
            cluster.members.push(Member {
                name,
                rest_port,
                pg_port,
                child,
                log_dir,
            });
        }
        Ok(cluster)
    }

    /// Fails if a member process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            if let Some(status) = m.child.try_wait()? {
                bail!("member {} exited with {status}", m.name);
            }
        }
        Ok(())
    }

    /// `GET /cluster` from the first member that answers.
    pub fn cluster_state(&self) -> anyhow::Result<Value> {
        let mut last = None;
        for m in &self.members {
            match http_request(m.rest_port, "GET", "/cluster", None) {
                Ok((200, body)) => return Ok(serde_json::from_str(&body)?),
                Ok((code, body)) => {
                    last = Some(anyhow::anyhow!("GET /cluster on {}: {code} {body}", m.name))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no members")))
    }

    /// `POST /switchover` on the current leader.
    pub fn switchover(&self, leader: &str, candidate: &str) -> anyhow::Result<String> {
        let member = self.member(leader)?;
        let body = serde_json::json!({"leader": leader, "candidate": candidate}).to_string();
        let (code, text) = http_request(member.rest_port, "POST", "/switchover", Some(&body))?;
        anyhow::ensure!(code == 200, "switchover answered {code}: {text}");
        Ok(text)
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> anyhow::Result<&Member> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .with_context(|| format!("no member {name}"))
    }

    /// The last lines of every member's Patroni log and stdout, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            for file in ["patroni.log", "stdout.log"] {
                let text = std::fs::read_to_string(m.log_dir.join(file)).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!("==== {} {file} (last {lines} lines)\n", m.name));
                for line in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Polls `check` every 200 ms until it returns `Some`, the timeout passes, or a member
    /// dies; errors carry the last observation and the members' logs.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("(no observation)");
        loop {
            if let Err(e) = self.check_alive() {
                bail!("{e} while waiting for {what}\n{}", self.log_tails(40));
            }
            match check(self) {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if Instant::now() >= deadline {
                let state = self
                    .cluster_state()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|e| e.to_string());
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last error: {last}; /cluster: {state}\n{}",
                    self.log_tails(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        // SIGTERM: Patroni stops PostgreSQL (fast shutdown), releases the leader lock, exits.
        for m in &self.members {
            let _ = Command::new("kill")
                .args(["-TERM", &m.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for m in &mut self.members {
            while Instant::now() < deadline && matches!(m.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(m.child.try_wait(), Ok(None)) {
                let _ = m.child.kill();
            }
            let _ = m.child.wait();
        }
        // A postmaster left behind by a killed Patroni: stop it through its own pid file.
        if let Ok(entries) = std::fs::read_dir(self.dir.join("data")) {
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path().join("postmaster.pid"))
                    && let Some(pid) = text.lines().next()
                {
                    let _ = Command::new("kill").args(["-QUIT", pid.trim()]).status();
                }
            }
        }
        if std::env::var_os("KEEP_PATRONI_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn member_config(
    spec: &ClusterSpec,
    name: &str,
    rest_port: u16,
    pg_port: u16,
    dir: &Path,
    log_dir: &Path,
    pg_bin: &Path,
) -> String {
    let labels: Vec<String> = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let data = dir.join("data").join(name);
    let run = dir.join("run");
    // Notes on choices:
    // - no top-level `namespace:` key: it would override kubernetes.namespace;
    // - `context`: Patroni picks the kubeconfig context by name (default `kind-kind`);
    // - ttl 20 is Patroni 4's minimum; loop_wait 1 keeps elections fast.
    format!(
        r#"scope: {scope}
name: {name}
log:
  level: INFO
  dir: {log_dir}
  file_num: 2
restapi:
  listen: 127.0.0.1:{rest_port}
  connect_address: 127.0.0.1:{rest_port}
kubernetes:
  namespace: {namespace}
  context: {context}
  labels: {{{labels}}}
  use_endpoints: true
  pod_ip: 127.0.0.1
  ports: [{{name: postgresql, port: {pg_port}}}]
  bypass_api_service: true
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
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
  initdb:
    - encoding: UTF8
    - data-checksums
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {pg_bin}
  pgpass: {run}/pgpass-{name}
  authentication:
    replication: {{username: replicator, password: replicator-pass}}
    superuser: {{username: postgres, password: postgres-pass}}
    rewind: {{username: rewinder, password: rewinder-pass}}
  parameters:
    unix_socket_directories: {run}
  basebackup:
    - checkpoint: fast
"#,
        scope = spec.scope,
        namespace = spec.namespace,
        context = k8s_standin::KUBECONFIG_CONTEXT,
        labels = labels.join(", "),
        log_dir = log_dir.display(),
        data = data.display(),
        run = run.display(),
        pg_bin = pg_bin.display(),
    )
}

/// Minimal blocking HTTP/1.1 request to Patroni's REST API on loopback (one request per
/// connection); returns status and body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed status line")?;
    Ok((code, body.to_string()))
}
