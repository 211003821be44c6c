//! The fuzzer finds a misbehaving plugin, minimises the world and writes a reproduction that
//! `charm-host scenario` replays; a well-behaved plugin passes.

mod support;

use support::plugins_dir;

#[test]
fn a_panicking_plugin_fails_the_fuzz_run_with_a_replayable_reproduction() {
    let plugins = plugins_dir(&[("panic", "hostile")]);
    let out_dir = tempfile::tempdir().unwrap();
    let fuzz = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args([
            "fuzz",
            "--plugin",
            "panic",
            "--iterations",
            "3",
            "--seed",
            "9",
            "--plugins",
        ])
        .arg(plugins.path())
        .arg("--out")
        .arg(out_dir.path())
        .env("CHARM_HOST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(fuzz.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&fuzz.stdout);
    assert!(
        stdout.contains("fuzz: 3 executions,") && stdout.trim_end().ends_with("3 failures"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&fuzz.stderr);
    assert!(
        stderr.contains("FAILURE seed 9: sandbox failure (panic)"),
        "{stderr}"
    );

    let repro = out_dir.path().join("panic-seed-9.yaml");
    let text = std::fs::read_to_string(&repro).unwrap();
    assert!(
        text.contains("# invariant broken: sandbox failure (panic)"),
        "{text}"
    );
    let state: charm_host::world::WorldState = serde_yaml::from_str(&text).unwrap();
    assert!(
        state.faults.is_empty(),
        "faults do not matter to a panic: minimised away"
    );
    let unit = text
        .lines()
        .find_map(|l| l.split("--unit ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let replay = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args(["scenario", "--state"])
        .arg(&repro)
        .args(["--event", "panic", "--unit", &unit, "--plugins"])
        .arg(plugins.path())
        .env("CHARM_HOST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(replay.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&replay.stdout)
            .contains("failed: panicked: hostile plugin panicked on purpose")
    );
}

#[test]
fn a_well_behaved_plugin_passes() {
    let plugins = plugins_dir(&[("recorder", "recorder")]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args([
            "fuzz",
            "--plugin",
            "recorder",
            "--iterations",
            "50",
            "--plugins",
        ])
        .arg(plugins.path())
        .env("CHARM_HOST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("fuzz: 50 executions,"));
}

#[test]
fn statuses_outside_the_catalogue_are_caught() {
    use charm_host::fuzz::catalogue::known;
    use charm_host::world::{StatusKind, StatusState};
    let s = |kind, m: &str| StatusState {
        kind,
        message: m.into(),
    };
    assert!(known(&s(StatusKind::Active, "Primary (degraded)"), "pg"));
    assert!(known(
        &s(StatusKind::Blocked, "failed to patch pod with error 500"),
        "pg"
    ));
    assert!(known(
        &s(
            StatusKind::Blocked,
            "Insufficient permissions, try: `juju trust pg --scope=cluster`"
        ),
        "pg"
    ));
    assert!(!known(&s(StatusKind::Active, "primary"), "pg"));
    assert!(!known(&s(StatusKind::Waiting, "Primary"), "pg"));
}

/// The seed hooks hold every invariant over generated worlds and fault plans (a checker that
/// misreads the trace would flag every initialisation here).
#[test]
fn the_seed_hooks_pass_the_fuzzer() {
    let plugins = support::root().join("target/plugins");
    assert!(
        plugins.join("leader-elected.wasm").exists(),
        "run `cargo xtask build` first"
    );
    for plugin in ["leader-elected", "postgresql-pebble-ready"] {
        let out_dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
            .args([
                "fuzz",
                "--plugin",
                plugin,
                "--iterations",
                "300",
                "--plugins",
            ])
            .arg(&plugins)
            .arg("--out")
            .arg(out_dir.path())
            .env("CHARM_HOST_LOG", "error")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{plugin}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("fuzz: 300 executions,") && stdout.trim_end().ends_with(" 0 failures"),
            "{stdout}"
        );
    }
}
