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
    // The per-core rate of docs/BENCHMARKS.md, from the run's CPU time.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rate = stderr
        .lines()
        .find_map(|l| l.strip_suffix(" executions per second per core"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok());
    assert!(rate.is_some_and(|r| r > 0.0), "{stderr}");
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

/// Flowchart-node coverage (issue 6): the nodes a known execution reaches, derived by the host
/// from the trace, the outcome, the statuses and the state, with no help from the plugin.
mod flowchart_coverage {
    use super::support;
    use charm_host::fuzz::coverage::{self, Observation};
    use charm_host::runtime::{Runtime, RuntimeConfig};
    use charm_host::scenario;
    use charm_host::world::{Fault, FaultKind, WorldState};

    fn state(path: &str) -> WorldState {
        serde_yaml::from_str(&std::fs::read_to_string(support::root().join(path)).unwrap()).unwrap()
    }

    /// The nodes reached by `plugin` on unit 0 of `state`, and the chart's other nodes.
    async fn nodes(plugin: &str, state: WorldState) -> (Vec<&'static str>, Vec<&'static str>) {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let plugins = support::root().join("target/plugins");
        assert!(
            plugins.join(format!("{plugin}.wasm")).exists(),
            "run `cargo xtask build` first"
        );
        let unit = "postgresql-k8s/0";
        let event = scenario::event_for(&state, unit, plugin, &Default::default()).unwrap();
        let out = scenario::run(&rt, &plugins, state, Some(unit), event, true)
            .await
            .unwrap();
        let reached = coverage::reached(plugin, &Observation::of(&out).unwrap());
        let others = coverage::flowchart(plugin)
            .unwrap()
            .iter()
            .map(|n| n.id)
            .filter(|id| !reached.contains(id))
            .collect();
        (reached, others)
    }

    /// A fresh leader before initialisation: passwords, itself listed, Services, then the
    /// "not initialised" return.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_fresh_leader_elected_returns_before_the_patroni_half() {
        let (reached, _) = nodes("leader-elected", state("tests/data/fresh-3-units.yaml")).await;
        assert_eq!(
            reached,
            [
                "hook_fired",
                "generate_passwords",
                "create_k8s_resources",
                "is_part_of_cluster",
                "add_to_cluster",
                "remove_departed_units",
                "has_cluster_initialised",
                "rtn",
            ]
        );
    }

    /// Every Kubernetes write of a live trace names its object apart from the arguments (the
    /// fuzzer's own-objects invariant reads it there), and it is the name in the arguments.
    #[tokio::test(flavor = "multi_thread")]
    async fn kubernetes_writes_name_their_object_in_the_trace() {
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let plugins = support::root().join("target/plugins");
        let s = state("tests/data/fresh-3-units.yaml");
        let unit = "postgresql-k8s/0";
        let event = scenario::event_for(&s, unit, "leader-elected", &Default::default()).unwrap();
        let out = scenario::run(&rt, &plugins, s, Some(unit), event, true)
            .await
            .unwrap();
        let mut writes = 0;
        for t in out.trace() {
            if t.family != "kubernetes" || t.call.starts_with("get-") || t.call.starts_with("list-")
            {
                assert_eq!(t.object, None, "{}{}", t.call, &*t.args);
                continue;
            }
            writes += 1;
            let named = t.args.split('"').nth(1).unwrap();
            assert_eq!(t.object.as_deref(), Some(named), "{}{}", t.call, &*t.args);
        }
        assert!(writes >= 2, "the fresh leader creates its Services");
    }

    /// The leader's bootstrap: the whole leader path down to Active.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_leader_bootstrap_takes_the_initialisation_path() {
        let (reached, others) = nodes(
            "postgresql-pebble-ready",
            state("tests/data/bench/postgresql-pebble-ready.yaml"),
        )
        .await;
        assert_eq!(
            reached,
            [
                "hook_fired",
                "create_pgdata",
                "is_leader_or_has_cluster_initialised",
                "has_pushed_tls_files",
                "has_services_changed",
                "update_and_restart_service",
                "has_member_started",
                "is_leader",
                "has_patched_pod_labels",
                "is_service_redirecting_traffic",
                "mark_cluster_as_initialised",
                "update_config",
                "set_active",
                "rtn2",
            ]
        );
        assert_eq!(
            others,
            [
                "defer",
                "defer2",
                "defer3",
                "set_blocked",
                "rtn",
                "set_waiting",
                "defer4"
            ]
        );
    }

    /// The leader's own label patch fails after Patroni started: Blocked, and the handler
    /// stops there (no primary-endpoint check, no `update_config`).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_label_patch_reaches_set_blocked_and_stops() {
        let mut s = state("tests/data/bench/postgresql-pebble-ready.yaml");
        // Labelled already (by `_fix_pod` of an earlier run), so Patroni can start.
        let pod = s.kubernetes.pods.get_mut("postgresql-k8s-0").unwrap();
        pod.labels.insert("application".into(), "patroni".into());
        pod.labels
            .insert("cluster-name".into(), "patroni-postgresql-k8s".into());
        s.faults.push(Fault {
            call: "kubernetes.patch-pod-labels".into(),
            error: FaultKind::Invalid,
            message: None,
            unit: None,
            times: None,
            probability: None,
        });
        let (reached, _) = nodes("postgresql-pebble-ready", s).await;
        for id in [
            "has_member_started",
            "is_leader",
            "has_patched_pod_labels",
            "set_blocked",
            "rtn",
        ] {
            assert!(reached.contains(&id), "{id} not in {reached:?}");
        }
        for id in [
            "is_service_redirecting_traffic",
            "update_config",
            "set_active",
        ] {
            assert!(!reached.contains(&id), "{id} in {reached:?}");
        }
    }
}

/// Issue 6, seed 60 of `fuzz --model`: a Kubernetes 403 drawn as a transient fault left every
/// unit Blocked with the `juju trust` message. A 403 is RBAC, which lasts until the operator
/// runs `juju trust` (not played by the model), so model fuzzing draws flaky Kubernetes access
/// as `unreachable` instead; the story converges.
#[test]
fn model_fuzzing_does_not_inject_kubernetes_403s_as_transient_faults() {
    let plugins = support::root().join("target/plugins");
    assert!(
        plugins.join("leader-elected.wasm").exists(),
        "run `cargo xtask build` first"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"))
        .args([
            "fuzz",
            "--model",
            "--seed",
            "60",
            "--iterations",
            "1",
            "--plugins",
        ])
        .arg(&plugins)
        .arg("--out")
        .arg(out_dir.path())
        .env("CHARM_HOST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && stdout.contains("fuzz: 1 executions,")
            && stdout.trim_end().ends_with(" 0 failures"),
        "{stdout}{stderr}"
    );
    // The story's runs of the two charted hooks count toward their flowcharts' nodes: a
    // deployment elects a leader and starts every unit's workload.
    for (hook, total) in [("leader-elected", 15), ("postgresql-pebble-ready", 21)] {
        let reached: usize = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("fuzz --model: {hook} flowchart nodes reached "))?
                    .split_once('/')
                    .filter(|(_, rest)| rest.starts_with(&total.to_string()))?
                    .0
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {hook} coverage line: {stderr}"));
        assert!(reached >= 5, "{hook}: {reached}/{total}: {stderr}");
    }
}

/// `charm-host bench`'s fuzz figure: a rate from CPU time for a plugin that passes, and an
/// error naming the seed and the invariant for one that does not (no rate from a broken run).
#[tokio::test(flavor = "multi_thread")]
async fn the_bench_rates_fuzz_executions_by_cpu_time_and_refuses_a_failing_plugin() {
    use charm_host::bench::fuzz_rate;
    use charm_host::runtime::{Runtime, RuntimeConfig};
    // The default configuration pools instances, as `charm-host fuzz` does.
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let good = plugins_dir(&[("recorder", "recorder")]);
    let figure = fuzz_rate(&runtime, good.path(), "recorder", 20, 3)
        .await
        .unwrap();
    assert_eq!(figure.name, "fuzz executions per second per core: recorder");
    let rate: f64 = figure.median.strip_suffix(" /s").unwrap().parse().unwrap();
    assert!(rate > 0.0, "{figure:?}");
    assert!(
        figure.detail.contains("3 rounds of 20 executions"),
        "{figure:?}"
    );

    let bad = plugins_dir(&[("panic", "hostile")]);
    let e = fuzz_rate(&runtime, bad.path(), "panic", 3, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fuzz panic failed during the benchmark (seed ") && e.contains("panic"),
        "{e}"
    );
}

/// The plugins' own log lines are kept in each execution's output, not printed: pebble-ready
/// warns of the missing rolling restart in about one execution in 25, hundreds a second.
/// `--log warn,plugin=warn` brings them back.
#[test]
fn fuzz_keeps_the_plugins_log_lines_off_the_terminal_unless_asked() {
    let plugins = support::root().join("target/plugins");
    let run = |log: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_charm-host"));
        cmd.args([
            "fuzz",
            "--plugin",
            "postgresql-pebble-ready",
            "--iterations",
            "200",
            "--plugins",
        ])
        .arg(&plugins)
        .env_remove("CHARM_HOST_LOG")
        .env_remove("RUST_LOG");
        if let Some(log) = log {
            cmd.args(["--log", log]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warning = "rolling restart (restart relation) is not implemented";
    let quiet = run(None);
    assert!(!quiet.contains(warning), "{quiet}");
    assert!(quiet.contains("flowchart nodes reached"), "{quiet}");
    let loud = run(Some("warn,plugin=warn"));
    assert!(loud.contains(warning), "{loud}");
}
