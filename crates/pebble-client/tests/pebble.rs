//! Against a real Pebble daemon (one per test). See `common::pebble_bin` for where it comes from.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Pebble, eventually, id_of};
use pebble_client::{
    Check, CheckStatus, Client, Error, ErrorKind, ExecCheck, ExecRequest, FileType, GoDuration,
    Layer, MakeDirOptions, Override, PushOptions, Service, ServiceStatus,
};

/// A service that records each start in `<dir>/starts`, then sleeps.
fn counting_service(dir: &Path, sleep: &str) -> Service {
    Service::new(format!(
        "/bin/sh -c \"echo started >> {}/starts; exec sleep {sleep}\"",
        dir.display()
    ))
    .enabled(true)
}

fn starts(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

async fn status_of(client: &Client, name: &str) -> ServiceStatus {
    let infos = client.services(&[name]).await.unwrap();
    assert_eq!(infos.len(), 1, "{infos:?}");
    assert_eq!(infos[0].name, name);
    infos[0].current.clone()
}

#[tokio::test]
async fn system_info_reports_the_daemon_version() {
    let pebble = Pebble::start().await;
    let info = pebble.client().system_info().await.unwrap();
    assert!(info.version.starts_with('v'), "{info:?}");
    assert!(!info.boot_id.is_empty(), "{info:?}");
}

#[tokio::test]
async fn add_layer_and_replan_starts_the_service() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let scratch = pebble.scratch();
    assert!(client.services(&[]).await.unwrap().is_empty());

    let layer = Layer::new().with_service(
        "svc",
        Service {
            summary: Some("a sleeper".into()),
            kill_delay: Some(GoDuration::from_secs(2)),
            ..counting_service(&scratch, "1000").env("GREETING", "hi")
        },
    );
    client.add_layer("base", &layer, false).await.unwrap();

    // The plan Pebble reports is the layer we sent, field for field.
    let plan = client.plan().await.unwrap();
    assert_eq!(plan.services["svc"], layer.services["svc"]);

    let change = client.replan().await.unwrap();
    assert!(change.ready && change.err.is_none(), "{change:?}");
    assert_eq!(status_of(&client, "svc").await, ServiceStatus::Active);
    assert!(client.services(&[]).await.unwrap()[0].is_running());
    assert_eq!(starts(&scratch), 1);
}

#[tokio::test]
async fn replan_restarts_a_service_whose_definition_changed() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let scratch = pebble.scratch();
    let layer = Layer::new().with_service("svc", counting_service(&scratch, "1000"));
    client.add_layer("base", &layer, false).await.unwrap();
    client.replan().await.unwrap();
    assert_eq!(starts(&scratch), 1);

    // Same definition: replan leaves it alone.
    client.replan().await.unwrap();
    assert_eq!(starts(&scratch), 1);

    let changed = Layer::new().with_service("svc", counting_service(&scratch, "1001"));
    client.add_layer("base", &changed, true).await.unwrap();
    client.replan().await.unwrap();
    assert_eq!(starts(&scratch), 2, "changed definition should restart");
    assert_eq!(status_of(&client, "svc").await, ServiceStatus::Active);
    let plan = client.plan().await.unwrap();
    assert!(
        plan.services["svc"]
            .command
            .as_deref()
            .unwrap()
            .contains("sleep 1001")
    );
}

#[tokio::test]
async fn stop_start_and_restart() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let scratch = pebble.scratch();
    let layer = Layer::new().with_service("svc", counting_service(&scratch, "1000"));
    client.add_layer("base", &layer, false).await.unwrap();
    client.replan().await.unwrap();

    client.stop(&["svc"]).await.unwrap();
    assert_eq!(status_of(&client, "svc").await, ServiceStatus::Inactive);
    client.start(&["svc"]).await.unwrap();
    assert_eq!(status_of(&client, "svc").await, ServiceStatus::Active);
    client.restart(&["svc"]).await.unwrap();
    assert_eq!(status_of(&client, "svc").await, ServiceStatus::Active);
    assert_eq!(starts(&scratch), 3);

    let err = client.start(&["nope"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

#[tokio::test]
async fn a_failing_start_reports_the_change_error() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let layer = Layer::new().with_service("bad", Service::new("/bin/sh -c \"exit 7\""));
    client.add_layer("base", &layer, false).await.unwrap();
    let err = client.start(&["bad"]).await.unwrap_err();
    let Error::Change { change } = &err else {
        panic!("expected a change error, got {err:?}");
    };
    assert_eq!(change.kind, "start");
    let text = err.to_string();
    assert!(text.contains(&format!("change {}", change.id)), "{text}");
    assert!(text.contains("bad"), "{text}");
    assert_eq!(err.pebble_message(), change.err.as_deref());
}

#[tokio::test]
async fn combine_merges_into_a_label_and_its_absence_conflicts() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let first = Layer::new().with_service("svc", Service::new("sleep 1000").env("A", "1"));
    client.add_layer("base", &first, false).await.unwrap();

    let err = client.add_layer("base", &first, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(err.to_string().contains("POST /v1/layers"), "{err}");

    let merge = Layer::new().with_service(
        "svc",
        Service {
            r#override: Some(Override::Merge),
            ..Service::default().env("B", "2")
        },
    );
    client.add_layer("base", &merge, true).await.unwrap();
    let svc = &client.plan().await.unwrap().services["svc"];
    assert_eq!(svc.environment.get("A").map(String::as_str), Some("1"));
    assert_eq!(svc.environment.get("B").map(String::as_str), Some("2"));
    assert_eq!(svc.command.as_deref(), Some("sleep 1000"));

    // A layer Pebble rejects is `Invalid`, with Pebble's reason.
    let no_override = Layer::new().with_service(
        "other",
        Service {
            command: Some("sleep 1".into()),
            ..Service::default()
        },
    );
    let err = client
        .add_layer("more", &no_override, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("override"), "{err}");
}

#[tokio::test]
async fn checks_are_listed_and_can_be_stopped() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let check = Check {
        r#override: Some(Override::Replace),
        period: Some(GoDuration::from_secs(1)),
        exec: Some(ExecCheck {
            command: Some("true".into()),
            ..ExecCheck::default()
        }),
        ..Check::default()
    };
    client
        .add_layer("checks", &Layer::new().with_check("ok", check), false)
        .await
        .unwrap();
    let checks = client.checks(None, &[]).await.unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].name, "ok");
    assert_eq!(checks[0].status, CheckStatus::Up);

    assert_eq!(client.stop_checks(&["ok"]).await.unwrap(), vec!["ok"]);
    let checks = client.checks(None, &["ok"]).await.unwrap();
    assert_eq!(checks[0].status, CheckStatus::Inactive, "{checks:?}");
    assert_eq!(client.start_checks(&["ok"]).await.unwrap(), vec!["ok"]);
}

#[tokio::test]
async fn push_sets_mode_and_owner_and_pull_round_trips() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let path = pebble.scratch().join("deep/dir/secret.bin");
    let path_str = path.to_str().unwrap();
    // Every byte value, plus text that looks like a multipart boundary.
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"\r\n--boundary\r\n--\r\n");

    let options = PushOptions {
        permissions: Some(0o600),
        user: Some("nobody".into()),
        group: Some("nogroup".into()),
        make_dirs: true,
        ..PushOptions::default()
    };
    client.push(path_str, &data, &options).await.unwrap();

    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), id_of("/etc/passwd", "nobody"));
    assert_eq!(meta.gid(), id_of("/etc/group", "nogroup"));
    assert_eq!(std::fs::read(&path).unwrap(), data);

    let listed = client.list_files(path_str, None, false).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let info = &listed[0];
    assert_eq!(info.path, path_str);
    assert_eq!(info.name, "secret.bin");
    assert_eq!(info.file_type, FileType::File);
    assert_eq!(info.permissions, 0o600);
    assert_eq!(info.size, Some(data.len() as u64));
    assert_eq!(info.user.as_deref(), Some("nobody"));
    assert_eq!(info.group.as_deref(), Some("nogroup"));
    assert_eq!(info.user_id, Some(meta.uid()));

    assert_eq!(client.pull(path_str).await.unwrap(), data);

    // Overwrite without options: Pebble's default mode, content replaced.
    client
        .push(path_str, "second", &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(client.pull(path_str).await.unwrap(), b"second");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[tokio::test]
async fn large_files_round_trip() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let path = pebble.scratch().join("big");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    client
        .push(path.to_str().unwrap(), &data, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(client.pull(path.to_str().unwrap()).await.unwrap(), data);
}

#[tokio::test]
async fn list_files_filters_by_pattern_and_describes_itself() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let dir = pebble.scratch();
    for name in ["a.conf", "b.conf", "c.txt"] {
        std::fs::write(dir.join(name), name).unwrap();
    }
    let dir_str = dir.to_str().unwrap();
    let mut names: Vec<String> = client
        .list_files(dir_str, Some("*.conf"), false)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    names.sort();
    assert_eq!(names, ["a.conf", "b.conf"]);

    let itself = client.list_files(dir_str, None, true).await.unwrap();
    assert_eq!(itself.len(), 1);
    assert_eq!(itself[0].file_type, FileType::Directory);
    assert_eq!(itself[0].size, None);

    let err = client
        .list_files(&format!("{dir_str}/missing"), None, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn make_dir_with_parents_and_conflicts() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let path = pebble.scratch().join("x/y/z");
    let path_str = path.to_str().unwrap();

    let err = client
        .make_dir(path_str, &MakeDirOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let options = MakeDirOptions {
        make_parents: true,
        permissions: Some(0o750),
        user: Some("nobody".into()),
        group: Some("nogroup".into()),
        ..MakeDirOptions::default()
    };
    client.make_dir(path_str, &options).await.unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);
    assert_eq!(meta.uid(), id_of("/etc/passwd", "nobody"));

    // With make_parents an existing directory is fine; without, it conflicts.
    client.make_dir(path_str, &options).await.unwrap();
    let err = client
        .make_dir(path_str, &MakeDirOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(path_str), "{err}");
}

#[tokio::test]
async fn remove_needs_recursive_for_a_full_directory() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let root = pebble.scratch().join("tree");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/b/f"), "x").unwrap();
    let root_str = root.to_str().unwrap();

    let err = client.remove_path(root_str, false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::File {
                operation: "remove",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(root.exists());

    client.remove_path(root_str, true).await.unwrap();
    assert!(!root.exists());

    let err = client.remove_path(root_str, false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn pull_of_a_missing_file_is_not_found() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let missing = pebble.scratch().join("missing.txt");
    let missing = missing.to_str().unwrap();
    let err = client.pull(missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(missing), "{err}");

    let err = client.pull("relative/path").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn exec_captures_exit_code_stdout_and_stderr() {
    let pebble = Pebble::start().await;
    let client = pebble.client();

    let ok = client
        .exec(&ExecRequest::new([
            "/bin/sh",
            "-c",
            "echo out; echo err >&2",
        ]))
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    assert_eq!(ok.stdout_lossy(), "out\n");
    assert_eq!(ok.stderr_lossy(), "err\n");

    let failed = client
        .exec(&ExecRequest::new([
            "/bin/sh",
            "-c",
            "echo partial; echo bad >&2; exit 3",
        ]))
        .await
        .unwrap();
    assert_eq!(failed.exit_code, 3);
    assert_eq!(failed.stdout, b"partial\n");
    assert_eq!(failed.stderr, b"bad\n");
    let err = failed.check().unwrap_err();
    assert!(err.to_string().contains("exited with code 3: bad"), "{err}");

    let err = client
        .exec(&ExecRequest::new(["/no/such/binary"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
}

#[tokio::test]
async fn exec_passes_stdin_environment_and_working_dir() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let dir = pebble.scratch();

    let out = client
        .exec(&ExecRequest::new(["cat"]).stdin("line one\nline two\n"))
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "line one\nline two\n");

    // Without stdin the command still sees end-of-file rather than hanging.
    let out = client.exec(&ExecRequest::new(["wc", "-c"])).await.unwrap();
    assert_eq!(out.stdout_lossy().trim(), "0");

    let out = client
        .exec(
            &ExecRequest::new(["/bin/sh", "-c", "echo \"$FOO\"; pwd"])
                .env("FOO", "bar baz")
                .working_dir(dir.to_str().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), format!("bar baz\n{}\n", dir.display()));

    let out = client
        .exec(
            // nobody's home does not exist, and Pebble defaults the working dir to it.
            &ExecRequest::new(["id", "-un"])
                .user("nobody")
                .group("nogroup")
                .working_dir("/"),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy().trim(), "nobody");
}

#[tokio::test]
async fn exec_streams_large_input_and_output() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let input: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    let out = client
        .exec(&ExecRequest::new(["cat"]).stdin(input.clone()))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "stdout differs from stdin");

    // A command that ignores a large stdin must not stall the call.
    let out = client
        .exec(&ExecRequest::new(["true"]).stdin(vec![b'x'; 4_000_000]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn exec_timeout_kills_the_command() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let started = Instant::now();
    let err = client
        .exec(&ExecRequest::new(["sleep", "30"]).timeout(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("sleep"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn send_signal_reaches_the_service() {
    let pebble = Pebble::start().await;
    let client = pebble.client();
    let dir = pebble.scratch();
    let marker = dir.join("got-hup");
    let script = dir.join("trap.sh");
    std::fs::write(
        &script,
        format!(
            "trap 'echo hup >> {}' HUP\nwhile true; do sleep 0.1; done\n",
            marker.display()
        ),
    )
    .unwrap();
    let layer = Layer::new().with_service(
        "trapper",
        Service::new(format!("/bin/sh {}", script.display())).enabled(true),
    );
    client.add_layer("base", &layer, false).await.unwrap();
    client.replan().await.unwrap();

    client.send_signal("SIGHUP", &["trapper"]).await.unwrap();
    let got = eventually(Duration::from_secs(5), || async { marker.exists() }).await;
    assert!(got, "the service never saw SIGHUP; log:\n{}", pebble.log());
    assert_eq!(status_of(&client, "trapper").await, ServiceStatus::Active);

    client.stop(&["trapper"]).await.unwrap();
    let err = client
        .send_signal("SIGHUP", &["trapper"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn waiting_for_an_unknown_change_is_not_found() {
    let pebble = Pebble::start().await;
    let err = pebble
        .client()
        .wait_change("4242", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("4242"), "{err}");
}

#[tokio::test]
async fn a_missing_socket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-home.socket");
    let err = Client::new(&socket).system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    assert!(err.to_string().contains("nobody-home.socket"), "{err}");

    // A daemon that has gone away leaves the client unreachable too.
    let pebble = Pebble::start().await;
    let client = pebble.client();
    client.system_info().await.unwrap();
    drop(pebble);
    let err = client.system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}
