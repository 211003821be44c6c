//! The production Pebble backend against a real Pebble daemon (one per test), driven only
//! through the `Pebble` capability trait.

mod backend_tools;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backend_tools::{assert_kind, pebble_bin, wait_for};
use charm_host::backends::PebbleBackend;
use charm_host::bindings::ErrorKind;
use charm_host::bindings::pebble::{
    CheckLevel, CheckSpec, ExecRequest, FileOwner, FileType, Layer, OverrideMode, Probe,
    ServiceSpec, ServiceState, Startup,
};
use charm_host::bindings::types::Kv;
use charm_host::capability::Pebble;

/// `pebble run` in its own `$PEBBLE` directory; SIGTERM (so it stops its services) on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new(pebble_bin())
            .args(["run", "--create-dirs"])
            .env("PEBBLE", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start pebble");
        Daemon { dir, child }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join(".pebble.socket")
    }

    fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// A backend once the daemon answers.
    async fn backend(&self) -> PebbleBackend {
        let backend = PebbleBackend::new(self.socket());
        let log = self.dir.path().join("pebble.log");
        wait_for("pebble to answer", Duration::from_secs(15), || async {
            backend.system_info().await.map_err(|e| {
                format!(
                    "{e:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
        })
        .await;
        backend
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(command: String) -> ServiceSpec {
    ServiceSpec {
        override_: OverrideMode::Replace,
        summary: Some("test service".into()),
        command: Some(command),
        startup: Startup::Enabled,
        user: None,
        group: None,
        environment: vec![],
        after: vec![],
        before: vec![],
        requires: vec![],
        on_success: None,
        on_failure: None,
    }
}

/// A service that appends its environment's GREETING to `<dir>/starts` at each start, then
/// sleeps; on SIGHUP it appends "hup" to `<dir>/signals`.
fn recording_service(dir: &Path) -> ServiceSpec {
    let d = dir.display();
    ServiceSpec {
        environment: vec![Kv::new("GREETING", "hello")],
        ..service(format!(
            "/bin/sh -c \"trap 'echo hup >> {d}/signals' HUP; echo $GREETING >> {d}/starts; \
             while true; do sleep 0.1; done\""
        ))
    }
}

fn check(probe: Probe) -> CheckSpec {
    CheckSpec {
        override_: OverrideMode::Replace,
        level: CheckLevel::Alive,
        period: Some("10s".into()),
        timeout: Some("3s".into()),
        threshold: Some(3),
        probe,
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn owner(user: &str, group: &str) -> FileOwner {
    FileOwner {
        user: Some(user.into()),
        group: Some(group.into()),
    }
}

fn exec(command: &[&str]) -> ExecRequest {
    ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        user: None,
        group: None,
        environment: vec![],
        working_dir: None,
        timeout_ms: Some(10_000),
        stdin: None,
    }
}

#[tokio::test]
async fn layers_replan_and_plan_round_trip() {
    let daemon = Daemon::start();
    let pebble = daemon.backend().await;
    let scratch = daemon.scratch();
    assert!(pebble.system_info().await.unwrap().version.starts_with('v'));
    assert!(pebble.plan().await.unwrap().services.is_empty());

    let svc = recording_service(&scratch);
    let layer = Layer {
        summary: Some("postgresql layer".into()),
        description: Some("the workload".into()),
        services: vec![("postgresql".into(), svc.clone())],
        checks: vec![
            (
                "http".into(),
                check(Probe::Http("http://127.0.0.1:1/health".into())),
            ),
            ("tcp".into(), check(Probe::Tcp(1))),
            (
                "exec".into(),
                CheckSpec {
                    level: CheckLevel::Ready,
                    ..check(Probe::Exec("/bin/true".into()))
                },
            ),
        ],
    };
    pebble
        .add_layer("postgresql".into(), layer.clone(), false)
        .await
        .unwrap();

    // The plan Pebble reports is what we sent, field for field.
    let plan = pebble.plan().await.unwrap();
    assert_eq!(plan.services, layer.services);
    let mut checks = layer.checks.clone();
    checks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(plan.checks, checks);

    // Replan starts the enabled service with its environment.
    pebble.replan().await.unwrap();
    let infos = pebble.services(vec!["postgresql".into()]).await.unwrap();
    assert_eq!(infos.len(), 1);
    assert!(infos[0].enabled);
    assert_eq!(infos[0].current, ServiceState::Active);
    wait_for(
        "the service's first start",
        Duration::from_secs(5),
        || async {
            let l = lines(&scratch.join("starts"));
            if l == ["hello"] {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        },
    )
    .await;

    // A merge layer changes the environment; replan restarts the service with it.
    let merge = ServiceSpec {
        override_: OverrideMode::Merge,
        summary: None,
        command: None,
        startup: Startup::Unset,
        environment: vec![Kv::new("GREETING", "again")],
        ..svc
    };
    let overlay = Layer {
        summary: None,
        description: None,
        services: vec![("postgresql".into(), merge)],
        checks: vec![],
    };
    pebble
        .add_layer("overlay".into(), overlay.clone(), false)
        .await
        .unwrap();
    let plan = pebble.plan().await.unwrap();
    let merged = &plan.services[0].1;
    assert_eq!(merged.environment, vec![Kv::new("GREETING", "again")]);
    assert_eq!(merged.command, layer.services[0].1.command);
    pebble.replan().await.unwrap();
    wait_for(
        "the restart with the merged environment",
        Duration::from_secs(10),
        || async {
            let l = lines(&scratch.join("starts"));
            if l == ["hello", "again"] {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        },
    )
    .await;

    // The same label again without combine is a conflict; with combine it merges.
    assert_kind(
        pebble
            .add_layer("overlay".into(), overlay.clone(), false)
            .await,
        ErrorKind::Conflict,
    );
    pebble
        .add_layer("overlay".into(), overlay, true)
        .await
        .unwrap();

    // Stop, start, restart.
    pebble.stop(vec!["postgresql".into()]).await.unwrap();
    assert_eq!(
        pebble.services(vec![]).await.unwrap()[0].current,
        ServiceState::Inactive
    );
    pebble.start(vec!["postgresql".into()]).await.unwrap();
    assert_eq!(
        pebble.services(vec![]).await.unwrap()[0].current,
        ServiceState::Active
    );
    pebble.restart(vec!["postgresql".into()]).await.unwrap();
    assert_eq!(
        pebble.services(vec![]).await.unwrap()[0].current,
        ServiceState::Active
    );
    assert_eq!(lines(&scratch.join("starts")).len(), 4);

    // A service that does not exist.
    let e = pebble.start(vec!["nope".into()]).await.unwrap_err();
    assert!(e.message.contains("nope"), "{e:?}");

    // A malformed layer (no override) is refused by Pebble and says why.
    let bad = Layer {
        summary: None,
        description: None,
        services: vec![(
            "x".into(),
            ServiceSpec {
                override_: OverrideMode::Unset,
                ..service("sleep 1".into())
            },
        )],
        checks: vec![],
    };
    let e = assert_kind(
        pebble.add_layer("bad".into(), bad, false).await,
        ErrorKind::Invalid,
    );
    assert!(e.message.contains("override"), "{e:?}");
}

#[tokio::test]
async fn signals_reach_a_running_service() {
    let daemon = Daemon::start();
    let pebble = daemon.backend().await;
    let scratch = daemon.scratch();
    let layer = Layer {
        summary: None,
        description: None,
        services: vec![("svc".into(), recording_service(&scratch))],
        checks: vec![],
    };
    pebble.add_layer("base".into(), layer, false).await.unwrap();
    pebble.replan().await.unwrap();
    wait_for("the service to start", Duration::from_secs(5), || async {
        if lines(&scratch.join("starts")).len() == 1 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    pebble
        .send_signal("SIGHUP".into(), vec!["svc".into()])
        .await
        .unwrap();
    wait_for("the SIGHUP trap to run", Duration::from_secs(5), || async {
        let l = lines(&scratch.join("signals"));
        if l == ["hup"] {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    })
    .await;
    // The service survived the signal.
    assert_eq!(
        pebble.services(vec!["svc".into()]).await.unwrap()[0].current,
        ServiceState::Active
    );

    // A bogus signal name is refused; a stopped service cannot be signalled.
    let e = pebble
        .send_signal("SIGNOPE".into(), vec!["svc".into()])
        .await
        .unwrap_err();
    assert!(e.message.contains("SIGNOPE"), "{e:?}");
    pebble.stop(vec!["svc".into()]).await.unwrap();
    let e = pebble
        .send_signal("SIGHUP".into(), vec!["svc".into()])
        .await
        .unwrap_err();
    assert!(e.message.contains("not running"), "{e:?}");
}

#[tokio::test]
async fn files_with_permissions_and_owners() {
    let daemon = Daemon::start();
    let pebble = daemon.backend().await;
    let base = daemon.scratch();
    let dir = format!("{}/data/conf", base.display());
    let file = format!("{dir}/patroni.yml");

    assert!(!pebble.exists(dir.clone()).await.unwrap());
    // Without make-parents the missing parent is not-found.
    assert_kind(
        pebble
            .make_dir(
                dir.clone(),
                false,
                None,
                FileOwner {
                    user: None,
                    group: None,
                },
            )
            .await,
        ErrorKind::NotFound,
    );
    pebble
        .make_dir(dir.clone(), true, Some(0o750), owner("nobody", "nogroup"))
        .await
        .unwrap();
    assert!(pebble.exists(dir.clone()).await.unwrap());
    // Making it again with make-parents is fine; without, the existing path is a conflict.
    pebble
        .make_dir(dir.clone(), true, Some(0o750), owner("nobody", "nogroup"))
        .await
        .unwrap();
    assert_kind(
        pebble
            .make_dir(
                dir.clone(),
                false,
                None,
                FileOwner {
                    user: None,
                    group: None,
                },
            )
            .await,
        ErrorKind::Conflict,
    );

    let content = b"scope: patroni-pg\nname: pg-0\n\x00binary too\n".to_vec();
    pebble
        .push(
            file.clone(),
            content.clone(),
            Some(0o640),
            owner("nobody", "nogroup"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(pebble.pull(file.clone()).await.unwrap(), content);

    let me = pebble.list_files(file.clone(), true).await.unwrap();
    assert_eq!(me.len(), 1);
    assert_eq!(me[0].file_type, FileType::File);
    assert_eq!(me[0].permissions, 0o640);
    assert_eq!(me[0].size, Some(content.len() as u64));
    assert_eq!(me[0].user.as_deref(), Some("nobody"));
    assert_eq!(me[0].group.as_deref(), Some("nogroup"));
    assert_eq!(me[0].name, "patroni.yml");

    let d = pebble.list_files(dir.clone(), true).await.unwrap();
    assert_eq!(
        (d[0].file_type, d[0].permissions, d[0].user.as_deref()),
        (FileType::Directory, 0o750, Some("nobody"))
    );
    let listing = pebble.list_files(dir.clone(), false).await.unwrap();
    assert_eq!(
        listing.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["patroni.yml"]
    );

    // The real file system agrees.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.uid(), 65534);

    // Push into a missing directory: not-found without make-dirs, created with it.
    let deep = format!("{}/x/y/z.conf", base.display());
    assert_kind(
        pebble
            .push(
                deep.clone(),
                b"1".to_vec(),
                None,
                FileOwner {
                    user: None,
                    group: None,
                },
                false,
            )
            .await,
        ErrorKind::NotFound,
    );
    pebble
        .push(
            deep.clone(),
            b"1".to_vec(),
            None,
            FileOwner {
                user: None,
                group: None,
            },
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        pebble.list_files(deep.clone(), true).await.unwrap()[0].permissions,
        0o644
    );

    // An unknown owner is refused.
    let e = pebble
        .push(
            format!("{}/o", base.display()),
            b"1".to_vec(),
            None,
            owner("no-such-user", "no-such-group"),
            false,
        )
        .await;
    assert!(e.is_err(), "{e:?}");

    // Relative paths are invalid before anything is sent.
    assert_kind(
        pebble.pull("relative/path".into()).await,
        ErrorKind::Invalid,
    );

    // Remove: a non-empty directory needs recursive.
    assert!(
        pebble
            .remove_path(format!("{}/x", base.display()), false)
            .await
            .is_err()
    );
    pebble
        .remove_path(format!("{}/x", base.display()), true)
        .await
        .unwrap();
    assert!(!pebble.exists(deep.clone()).await.unwrap());
    assert_kind(pebble.pull(deep).await, ErrorKind::NotFound);
    assert_kind(
        pebble
            .list_files(format!("{}/nope", base.display()), false)
            .await,
        ErrorKind::NotFound,
    );
}

#[tokio::test]
async fn exec_exit_codes_output_and_context() {
    let daemon = Daemon::start();
    let pebble = daemon.backend().await;
    let scratch = daemon.scratch();

    let out = pebble.exec(exec(&["/bin/echo", "hello"])).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (0, &b"hello\n"[..], &b""[..])
    );

    // A non-zero exit is a result, with both streams kept apart.
    let out = pebble
        .exec(exec(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]))
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
        (3, &b"out\n"[..], &b"err\n"[..])
    );

    // stdin, environment, working directory, user.
    let req = ExecRequest {
        stdin: Some(b"from stdin".to_vec()),
        environment: vec![Kv::new("X", "42")],
        working_dir: Some(scratch.display().to_string()),
        user: Some("nobody".into()),
        group: Some("nogroup".into()),
        ..exec(&["/bin/sh", "-c", "cat; echo \" $X $(pwd) $(id -un)\""])
    };
    let out = pebble.exec(req).await.unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("from stdin 42 {} nobody\n", scratch.display())
    );

    // A command past its timeout is killed and reported as a timeout.
    let started = Instant::now();
    let e = assert_kind(
        pebble
            .exec(ExecRequest {
                timeout_ms: Some(500),
                ..exec(&["/bin/sleep", "30"])
            })
            .await,
        ErrorKind::Timeout,
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(e.message.contains("sleep"), "{e:?}");

    // A missing program is an error naming it; an empty command is invalid.
    let e = pebble.exec(exec(&["/no/such/program"])).await.unwrap_err();
    assert!(e.message.contains("/no/such/program"), "{e:?}");
    assert_kind(pebble.exec(exec(&[])).await, ErrorKind::Invalid);
}

#[tokio::test]
async fn unreachable_sockets_are_unreachable() {
    // No file at all.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("pebble.socket");
    let pebble = PebbleBackend::new(&missing);
    let e = assert_kind(pebble.system_info().await, ErrorKind::Unreachable);
    assert!(e.message.contains(&missing.display().to_string()), "{e:?}");
    assert_kind(pebble.replan().await, ErrorKind::Unreachable);

    // A socket file nobody listens on any more (connection refused).
    let stale = dir.path().join("stale.socket");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    assert_kind(
        PebbleBackend::new(&stale).plan().await,
        ErrorKind::Unreachable,
    );

    // A daemon that went away.
    let daemon = Daemon::start();
    let pebble = daemon.backend().await;
    drop(daemon);
    assert_kind(pebble.exists("/".into()).await, ErrorKind::Unreachable);
}
