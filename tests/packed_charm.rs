//! The packed charm end to end: `cargo xtask pack`'s `postgresql-k8s.charm` unpacked as Juju
//! unpacks it, and its `dispatch` run for `leader-elected` and then `postgresql-pebble-ready`
//! with the production backends, as under Juju:
//!
//! - Juju: the hook-tool stand-in (`charm-host juju-standin`), answering from a model state;
//! - Kubernetes: the Kubernetes stand-in, reached through a kubeconfig (`KUBECONFIG`);
//! - Pebble: the real daemon, in a container-like root of its own (a mount and PID namespace
//!   and a chroot), so that the files the hook pushes and the real layer's `patroni` command it
//!   starts land in that root, never on this machine's own paths. The dispatch reaches its
//!   socket through `CHARM_HOST_PEBBLE_SOCKET`; the unit's pod names resolve to loopback
//!   through the container's `/etc/hosts`.
//!
//! Running Pebble in its own root needs root (unshare, mount, chroot); CI runs as root.
//!
//! What the workload root lacks is the rest of the charm's OCI image: the `en_US.UTF8` locale
//! of the rendered `lc_messages` and the `timescaledb` and `pgaudit` libraries of
//! `shared_preload_libraries`, which Debian's PostgreSQL 15 does not ship, so PostgreSQL
//! refuses the rendered configuration. Left alone, Patroni then loops through bootstrap, and
//! whether the member-start probe lands on its brief `starting` state (the hook proceeds to
//! SQL and fails) or not (it waits) is a race. The root therefore holds `initdb` (a stand-in
//! that never returns): the real Patroni registers in the DCS and stays in "initializing new
//! cluster", and the hook ends, every time, where a unit whose database is not up yet ends:
//! Waiting, with the event deferred for the next hook.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use charm_host::world::{World, WorldState};
use serde_json::json;

const APP: &str = "postgresql-k8s";
const U0: &str = "postgresql-k8s/0";
/// The model of tests/data/fresh-3-units.yaml, which is the namespace.
const NS: &str = "dev";

fn charm_file() -> PathBuf {
    let p = support::root().join("target/charm/postgresql-k8s.charm");
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask pack` (or `cargo xtask test`) first",
        p.display()
    );
    p
}

/// Unzips the charm into `dest`, as Juju does into the unit's charm directory.
fn unpack(charm: &Path, dest: &Path) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(charm).unwrap())
        .unwrap_or_else(|e| panic!("{} is not a zip archive: {e}", charm.display()));
    archive.extract(dest).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Name → modification time of every file of a directory.
fn listing(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The Kubernetes side of tests/data/fresh-3-units.yaml: the StatefulSet's pods, Juju's own
/// Services, the node.
fn seed_kubernetes(store: &k8s_standin::Store) {
    let owner = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": APP,
        "uid": "sts-uid", "controller": true, "blockOwnerDeletion": true}]);
    for n in 0..3 {
        store
            .create(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{APP}-{n}"), "namespace": NS,
                    "labels": {"app.kubernetes.io/name": APP}, "ownerReferences": owner},
                "spec": {"nodeName": "node-0", "containers": [{"name": "charm", "image": "charm"},
                    {"name": "postgresql", "image": "postgresql"}]},
                "status": {"podIP": "127.0.0.1"}}))
            .unwrap();
    }
    for (name, cluster_ip) in [
        (APP, "10.152.183.10"),
        (&format!("{APP}-endpoints"), "None"),
    ] {
        store
            .create(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NS,
                    "labels": {"app.juju.is/created-by": APP}},
                "spec": {"clusterIP": cluster_ip, "selector": {"app.kubernetes.io/name": APP},
                    "ports": [{"name": "placeholder", "port": 65535}]}}))
            .unwrap();
    }
    store
        .create(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-0"},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"}}}),
        )
        .unwrap();
    store
        .create(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": APP, "namespace": NS, "uid": "sts-uid"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
                "template": {}}}))
        .unwrap();
}

/// Real Pebble in a root of its own: the workload container. The root holds what the image
/// would (the snap metadata, `patroni` on PATH, the directories PostgreSQL writes) and reuses
/// this machine's `/usr` and `/etc` read-only.
struct Workload {
    root: PathBuf,
    unshare: Child,
}

impl Workload {
    fn start(dir: &Path, kubeconfig: &str) -> Workload {
        let root = dir.join("workload-root");
        let pebble = std::env::var("PEBBLE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| support::root().join("target/tools/bin/pebble"));
        assert!(
            pebble.exists(),
            "{} is missing: run `cargo xtask setup` (or set PEBBLE_BIN)",
            pebble.display()
        );
        let patroni = std::env::var("PATRONI_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| support::root().join("target/tools/patroni-venv/bin/patroni"));
        assert!(
            patroni.exists(),
            "{} is missing: run `cargo xtask setup` (or set PATRONI_BIN)",
            patroni.display()
        );
        let venv = patroni.parent().unwrap().parent().unwrap();
        for d in [
            "usr",
            "etc",
            // Home directories: Pebble's exec refuses a user whose home is missing.
            "root",
            "dev",
            "proc",
            "tmp",
            "run/postgresql",
            "var/log/postgresql",
            "var/lib/postgresql",
            "meta.charmed-postgresql",
            "pebble",
            // /usr is this machine's, with the image's extra programs overlaid.
            ".usr/upper/local/bin",
            ".usr/upper/bin",
            ".usr/upper/lib/postgresql/15/bin",
            ".usr/work",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(root.join(venv.strip_prefix("/").unwrap())).unwrap();
        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::copy(&pebble, root.join("pebble/pebble")).unwrap();
        // The image's snap metadata, read for the workload version; 15 is this machine's
        // PostgreSQL, which the rendered bin_dir then points at.
        std::fs::write(
            root.join("meta.charmed-postgresql/snap.yaml"),
            "name: charmed-postgresql\nversion: '15.18'\n",
        )
        .unwrap();
        // The image's programs the layer names: Patroni (the real one, from its venv) and the
        // two exporters, which this machine lacks and which only need to stay up.
        let exporter = "#!/bin/sh\n# stands in for the image's exporter\nexec sleep infinity\n";
        for (path, content) in [
            (
                ".usr/upper/local/bin/patroni",
                format!("#!/bin/sh\nexec {} \"$@\"\n", patroni.display()),
            ),
            (".usr/upper/bin/pgbackrest_exporter", exporter.to_owned()),
            // Held bootstrap (see the module doc).
            (
                ".usr/upper/lib/postgresql/15/bin/initdb",
                "#!/bin/sh\n# holds the bootstrap: see tests/packed_charm.rs\nexec sleep infinity\n"
                    .to_owned(),
            ),
            ("start-exporter.sh", exporter.to_owned()),
        ] {
            std::fs::write(root.join(path), content).unwrap();
            std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(root.join("kubeconfig"), kubeconfig).unwrap();
        // The pod's names, as the pod's DNS would answer them.
        let hosts = write_pod_hosts(dir);

        let script = format!(
            r#"set -e
R={root}
mount -t overlay overlay -o "lowerdir=/usr,upperdir=$R/.usr/upper,workdir=$R/.usr/work" "$R/usr"
mount --rbind /etc "$R/etc"; mount -o remount,bind,ro "$R/etc"
mount --bind {hosts} "$R/etc/hosts"
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --bind {venv} "$R{venv}"
chown postgres:postgres "$R/run/postgresql" "$R/var/log/postgresql"
export PEBBLE=/pebble KUBECONFIG=/kubeconfig PATRONI_KUBERNETES_CONTEXT={context} PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
exec chroot "$R" /pebble/pebble run
"#,
            root = root.display(),
            hosts = hosts.display(),
            venv = venv.display(),
            // Outside a cluster Patroni reads the kubeconfig, under a context it must be told.
            context = k8s_standin::KUBECONFIG_CONTEXT,
        );
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let unshare = Command::new("unshare")
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child=SIGKILL",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("running unshare (util-linux)");
        let w = Workload { root, unshare };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "Pebble did not start in its root; its log:\n{}",
                std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn socket(&self) -> PathBuf {
        self.root.join("pebble/.pebble.socket")
    }

    /// A path of the container, from outside.
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Pebble's output and the logs Patroni and PostgreSQL wrote in the container.
    fn logs(&self, dir: &Path) -> String {
        let mut s = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
        // The services' own output, which Pebble keeps.
        if let Ok(out) = Command::new(self.root.join("pebble/pebble"))
            .args(["logs", "-n", "40"])
            .env("PEBBLE", self.root.join("pebble"))
            .output()
        {
            s.push_str("\n--- pebble logs:\n");
            s.push_str(&String::from_utf8_lossy(&out.stdout));
            s.push_str(&String::from_utf8_lossy(&out.stderr));
        }
        if let Ok(entries) = std::fs::read_dir(self.path("/var/log/postgresql")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                s.push_str(&format!("\n--- {}:\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    fn client(&self) -> pebble_client::Client {
        pebble_client::Client::new(self.socket())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // Pebble is the PID namespace's init: killing it ends Patroni and PostgreSQL too, and
        // the mounts go with the namespace.
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// The pod's and the Services' names, as the cluster's DNS would answer them, in a hosts file
/// the workload's and the dispatch's namespaces mount over `/etc/hosts`.
fn write_pod_hosts(dir: &Path) -> PathBuf {
    let mut s = String::from("127.0.0.1 localhost\n");
    for n in 0..3 {
        s.push_str(&format!(
            "127.0.0.1 {APP}-{n}.{APP}-endpoints {APP}-{n}.{APP}-endpoints.{NS}.svc.cluster.local\n"
        ));
    }
    for svc in ["primary", "replicas"] {
        s.push_str(&format!("127.0.0.1 {APP}-{svc}.{NS}.svc.cluster.local\n"));
    }
    let path = dir.join("hosts");
    std::fs::write(&path, s).unwrap();
    path
}

/// Everything a hook of unit 0 runs against.
struct Deployment {
    dir: tempfile::TempDir,
    charm_dir: PathBuf,
    juju_world: PathBuf,
    kubeconfig: PathBuf,
    k8s: k8s_standin::Handle,
}

impl Deployment {
    async fn new() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let charm_dir = dir.path().join("charm");
        unpack(&charm_file(), &charm_dir);
        let juju_world = dir.path().join("juju.yaml");
        std::fs::copy(
            support::root().join("tests/data/fresh-3-units.yaml"),
            &juju_world,
        )
        .unwrap();
        let k8s = k8s_standin::StandIn::start("127.0.0.1:0").await.unwrap();
        seed_kubernetes(k8s.store());
        let kubeconfig = dir.path().join("kubeconfig");
        k8s.write_kubeconfig(&kubeconfig, NS).unwrap();
        Deployment {
            dir,
            charm_dir,
            juju_world,
            kubeconfig,
            k8s,
        }
    }

    /// `dispatch` of the unpacked charm for `hook`, under the hook-tool stand-in, as Juju
    /// runs it: `JUJU_DISPATCH_PATH` and `JUJU_CHARM_DIR`, the tools on PATH. It runs in a
    /// mount namespace whose `/etc/hosts` resolves the pod's names, as the pod's DNS would.
    async fn dispatch(&self, hook: &str, pebble_socket: Option<&Path>) -> (Output, String) {
        let hosts = write_pod_hosts(self.dir.path());
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#)
            .arg("sh")
            .arg(hosts)
            .arg(env!("CARGO_BIN_EXE_charm-host"));
        support::standin_args(cmd.as_std_mut(), &self.juju_world, U0, self.dir.path());
        cmd.arg(self.charm_dir.join("dispatch"))
            .env("JUJU_DISPATCH_PATH", format!("hooks/{hook}"))
            .env("JUJU_CHARM_DIR", &self.charm_dir)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("CHARM_HOST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST");
        match pebble_socket {
            Some(s) => cmd.env("CHARM_HOST_PEBBLE_SOCKET", s),
            // Nowhere: leader-elected on a fresh deployment must not need Pebble.
            None => cmd.env(
                "CHARM_HOST_PEBBLE_SOCKET",
                self.dir.path().join("no-pebble.socket"),
            ),
        };
        let out = cmd.output().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, text)
    }

    fn juju(&self) -> WorldState {
        World::from_yaml(&std::fs::read_to_string(&self.juju_world).unwrap())
            .unwrap()
            .state()
    }
}

fn peer_app_bag(w: &WorldState) -> std::collections::BTreeMap<String, String> {
    w.relations
        .iter()
        .find(|r| r.endpoint == "database-peers")
        .and_then(|r| r.app_data.get(APP).cloned())
        .unwrap_or_default()
}

#[test]
fn the_archive_holds_a_static_host_the_plugins_and_their_compiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    unpack(&charm_file(), dir.path());
    let d = dir.path();
    for f in [
        "metadata.yaml",
        "config.yaml",
        "actions.yaml",
        "manifest.yaml",
    ] {
        assert!(d.join(f).is_file(), "{f} is not in the charm");
    }
    assert_eq!(
        mode(&d.join("dispatch")),
        0o755,
        "dispatch must be executable"
    );
    let host = d.join("bin/charm-host");
    assert_eq!(mode(&host), 0o755, "bin/charm-host must be executable");
    // No program interpreter: it runs on a base without our glibc.
    let ldd = Command::new("ldd").arg(&host).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "bin/charm-host is dynamically linked: {said}"
    );
    let mut elf = [0u8; 4];
    std::fs::File::open(&host)
        .unwrap()
        .read_exact(&mut elf)
        .unwrap();
    assert_eq!(&elf, b"\x7fELF");

    let plugins: Vec<String> = std::fs::read_dir(d.join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for hook in [
        "leader-elected",
        "postgresql-pebble-ready",
        "database-peers-relation-changed",
        "update-status",
        "config-changed",
    ] {
        assert!(
            plugins.contains(&format!("{hook}.wasm")),
            "{hook}.wasm is not in plugins/: {plugins:?}"
        );
    }
    assert!(
        !plugins
            .iter()
            .any(|p| p.contains("recorder") || p.contains("hostile")),
        "test plugins were packed: {plugins:?}"
    );
    // Each plugin's compiled entry, named by the component's SHA-256 (plugins with identical
    // bytes share one).
    let cache = listing(&d.join("plugin-cache"));
    for p in &plugins {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(
            std::fs::read(d.join("plugins").join(p)).unwrap(),
        ));
        assert!(
            cache
                .iter()
                .any(|(n, _)| n.starts_with(&format!("{digest}-")) && n.ends_with(".cwasm")),
            "{p} has no compiled entry in plugin-cache: {cache:?}"
        );
    }
}

/// leader-elected then postgresql-pebble-ready on unit 0 of a fresh 3-unit deployment,
/// through the unpacked charm's `dispatch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unpacked_charm_dispatches_leader_elected_then_pebble_ready() {
    let d = Deployment::new().await;
    let cache_before = listing(&d.charm_dir.join("plugin-cache"));

    // leader-elected: Juju and Kubernetes only.
    let (out, text) = d.dispatch("leader-elected", None).await;
    assert!(out.status.success(), "leader-elected failed:\n{text}");
    let w = d.juju();
    let secret = w
        .secrets
        .iter()
        .find(|s| s.label == "database-peers.postgresql-k8s.app")
        .unwrap_or_else(|| panic!("no app secret after leader-elected:\n{text}"));
    for user in ["operator", "replication", "rewind", "monitoring", "patroni"] {
        assert_eq!(
            secret.content[&format!("{user}-password")].len(),
            16,
            "{user}-password"
        );
    }
    assert_eq!(
        peer_app_bag(&w)["endpoints"],
        format!(r#"["{APP}-0.{APP}-endpoints"]"#)
    );
    for svc in ["primary", "replicas"] {
        let s = d
            .k8s
            .store()
            .get("services", NS, &format!("{APP}-{svc}"))
            .unwrap_or_else(|| panic!("Service {APP}-{svc} was not created:\n{text}"));
        let role = if svc == "primary" {
            "primary"
        } else {
            "replica"
        };
        assert_eq!(s["spec"]["selector"]["role"], role, "{APP}-{svc}: {s}");
        assert_eq!(
            s["spec"]["selector"]["cluster-name"], "patroni-postgresql-k8s",
            "{APP}-{svc}: {s}"
        );
    }
    // Served from the packed cache: nothing compiled. The things written are the hook's read
    // plan (the reads the next leader-elected starts ahead) and, once the unpacked plugin file
    // is a few seconds old, the record of its digest (the next dispatch need not hash it).
    let mut cache_after = listing(&d.charm_dir.join("plugin-cache"));
    cache_after.retain(|(name, _)| name != "hook-tool-reads" && name != "plugin-ids");
    assert_eq!(
        cache_after, cache_before,
        "the first dispatch compiled instead of loading the packed cache:\n{text}"
    );
    assert!(
        d.charm_dir
            .join("plugin-cache/hook-tool-reads/leader-elected.json")
            .is_file(),
        "no read plan kept:\n{text}"
    );

    // postgresql-pebble-ready, against real Pebble in the workload's root.
    let workload = Workload::start(d.dir.path(), &d.k8s.kubeconfig(NS));
    let (out, text) = d
        .dispatch("postgresql-pebble-ready", Some(&workload.socket()))
        .await;
    let pebble_log = || workload.logs(d.dir.path());
    assert!(
        out.status.success(),
        "postgresql-pebble-ready failed:\n{text}\nPebble's log:\n{}",
        pebble_log()
    );

    // The layer, in the real daemon's plan, with the real command.
    let pebble = workload.client();
    let plan = pebble.plan().await.unwrap();
    let svc = plan
        .services
        .get("postgresql")
        .unwrap_or_else(|| panic!("no postgresql service in the plan {plan:?}\n{text}"));
    assert_eq!(
        svc.command.as_deref(),
        Some("patroni /var/lib/postgresql/data/patroni.yml")
    );
    assert_eq!(svc.user.as_deref(), Some("postgres"));
    assert_eq!(svc.environment["PATRONI_SCOPE"], "patroni-postgresql-k8s");
    assert_eq!(svc.environment["PATRONI_KUBERNETES_NAMESPACE"], NS);
    // Replanned: Pebble started the layer's Patroni.
    let services = pebble.services(&["postgresql"]).await.unwrap();
    assert!(
        services.len() == 1 && services[0].is_running(),
        "services: {services:?}\n{text}\nPebble's log:\n{}",
        pebble_log()
    );
    // Files landed in the container: the rendered patroni.yml and the data directory, owned
    // by the workload user.
    let yml = std::fs::read_to_string(workload.path("/var/lib/postgresql/data/patroni.yml"))
        .unwrap_or_else(|e| panic!("patroni.yml was not pushed: {e}\n{text}"));
    assert!(
        yml.contains("bin_dir: /usr/lib/postgresql/15/bin"),
        "the snap's major version drives bin_dir:\n{yml}"
    );
    assert!(yml.contains(&format!("connect_address: '{APP}-0.{APP}-endpoints:8008'")));
    let pgdata = workload.path("/var/lib/postgresql/data/pgdata");
    assert_eq!(mode(&pgdata), 0o750, "pgdata:\n{text}");
    let postgres_uid = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&postgres_uid.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&pgdata).unwrap()),
        uid
    );

    // PostgreSQL cannot start from this machine's packages (see the module doc): the unit
    // waits, after the member-start probe's 15 s, and the event is kept for the next hook.
    let w = d.juju();
    let unit = &w.units[U0];
    assert_eq!(
        unit.status.message, "awaiting for cluster to start",
        "status {:?}\n{text}",
        unit.status
    );
    // The layer's Patroni is real and runs the rendered patroni.yml against the Kubernetes
    // stand-in as its DCS: it publishes itself in its pod's `status` annotation with the
    // REST address the charm rendered.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = d.k8s.store().get("pods", NS, &format!("{APP}-0")).unwrap();
        let member: Option<serde_json::Value> = pod["metadata"]["annotations"]["status"]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok());
        if let Some(m) = member {
            assert_eq!(
                m["api_url"],
                format!("http://{APP}-0.{APP}-endpoints:8008/patroni"),
                "{m}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Patroni never registered in the stand-in: {pod}\n{}",
            pebble_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        unit.state
            .get("charm-host.deferred")
            .is_some_and(|q| q.contains("postgresql-pebble-ready")),
        "the pebble-ready event was not deferred: {:?}\n{text}",
        unit.state
    );
    assert_eq!(w.units[U0].workload_version, "15.18", "{text}");

    // The next hook re-emits the deferred event first (a new process: the queue lives in
    // Juju's state), and it stays queued, once, while the database is down.
    let (out, text) = d.dispatch("update-status", Some(&workload.socket())).await;
    assert!(out.status.success(), "update-status failed:\n{text}");
    let reran = text
        .lines()
        .position(|l| l.contains("postgresql-pebble-ready") && l.contains("defer"));
    let update = text.lines().position(|l| l.contains("update-status ->"));
    assert!(
        matches!((reran, update), (Some(a), Some(b)) if a < b),
        "the deferred pebble-ready did not run before update-status:\n{text}"
    );
    let queue: serde_json::Value =
        serde_json::from_str(&d.juju().units[U0].state["charm-host.deferred"]).unwrap();
    let notices: Vec<&str> = queue["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(notices, ["postgresql-pebble-ready"], "{queue}");
}
