//! The `postgresql-pebble-ready` flowchart (docs/FLOWCHARTS.md, rows PE*): every decision
//! node both ways, plus the spec-only branches (`_fix_pod`, Pebble unreachable, services
//! skipped while upgrading, 403 trust path, Primary / Primary (degraded) / empty Active).

mod hooks_support;

use charm_host::world::*;
use hooks_support::*;

const PATRONI_YML: &str = "/var/lib/postgresql/data/patroni.yml";

/// A deployment whose leader already ran leader-elected.
async fn after_leader_elected(
    n: usize,
    idle: bool,
    tweak: impl FnOnce(&mut WorldState),
) -> Harness {
    let mut s = deployment(n);
    if idle {
        upgrade_idle(&mut s);
    }
    tweak(&mut s);
    let h = Harness::new(s);
    h.dispatch(0, leader_elected()).await;
    h
}

fn tls_secret(s: &mut WorldState, n: usize) {
    s.secrets.push(SecretState {
        id: format!("secret:unit{n}"),
        label: format!("database-peers.{APP}.unit"),
        owner: SecretOwnerKind::Unit,
        owner_name: unit(n),
        revision: 1,
        content: bag(&[("key", "KEY"), ("cauth", "CA"), ("cert", "CERT")]),
    });
}

/// The main path on a fresh leader: PE-fix-pod, PE-create-pgdata (missing), PE-leader yes,
/// PE-tls yes (nothing to push), PE-services-changed yes, PE-member-started yes, PE-is-leader
/// yes, PE-patched-labels yes, PE-service-redirecting yes, mark initialised, update_config,
/// Active `Primary (degraded)` (1 of 3 planned members runs).
#[tokio::test(flavor = "multi_thread")]
async fn fresh_leader_bootstraps_the_cluster_and_reports_degraded_primary() {
    let h = after_leader_elected(3, true, |_| {}).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    // _fix_pod first: Services and own labels, before asking Pebble.
    assert!(before(
        &r,
        "kubernetes.apply-service",
        "pebble.get-system-info"
    ));
    assert!(before(
        &r,
        "kubernetes.patch-pod-labels",
        "pebble.get-system-info"
    ));
    // The data directory: created 0750 postgres, then the storage chowned as root.
    let mkdir = entries(&r, "pebble.make-dir");
    assert_eq!(mkdir.len(), 1);
    assert!(
        mkdir[0].args.contains("/var/lib/postgresql/data/pgdata")
            && mkdir[0].args.contains("Some(488)"),
        "{}",
        mkdir[0].args
    );
    let st = h.state();
    let u0 = &st.units[&unit(0)];
    assert_eq!(
        u0.pebble.exec_log[0],
        "chown postgres:postgres /var/lib/postgresql/data"
    );
    assert_eq!(u0.workload_version, "14.23");
    // patroni.yml is written before the layer starts Patroni.
    assert!(before(&r, "pebble.push", "pebble.add-layer"));
    assert!(before(&r, "pebble.add-layer", "pebble.replan"));
    let yml = &u0.pebble.files[PATRONI_YML];
    assert_eq!((yml.permissions, yml.user.as_str()), (0o644, "postgres"));
    assert!(
        yml.content.contains("bin_dir: /usr/lib/postgresql/14/bin"),
        "{}",
        yml.content
    );
    assert!(
        yml.content
            .contains(&format!("connect_address: '{}:8008'", host(0))),
        "{}",
        yml.content
    );
    // Initialisation: primary endpoint through the Service, users, groups, the flag.
    let health: Vec<_> = entries(&r, "patroni.get-health")
        .into_iter()
        .filter(|e| e.args.contains("PrimaryService"))
        .collect();
    assert!(!health.is_empty(), "{}", dump(&r));
    assert_eq!(h.app_bag()["cluster_initialised"], "True");
    let users = &st.postgresql.users;
    assert!(
        users["backup"].superuser && users["backup"].password.is_none(),
        "{users:?}"
    );
    assert_eq!(
        users["monitoring"].roles,
        vec!["pg_monitor".to_string(), "internal_access".to_string()],
        "pg_monitor, then the system users group"
    );
    assert_eq!(
        users["monitoring"].password.as_deref(),
        st.secrets[0]
            .content
            .get("monitoring-password")
            .map(String::as_str)
    );
    assert!(st.postgresql.database_set_up);
    for g in ["identity_access", "internal_access", "relation_access"] {
        assert!(users.contains_key(g), "{g}");
    }
    // update_config pushed Patroni's dynamic configuration.
    assert_eq!(
        st.patroni.dynamic_config["postgresql"]["parameters"]["max_connections"],
        100
    );
    assert_eq!(st.patroni.dynamic_config["synchronous_node_count"], 2);
    assert_eq!(h.unit_bag(0).get("config_hash").map(String::len), Some(32));
    // Status: the unit's status was Unknown, so the extensions step does not show
    // `Updating extensions` (spec 3.3.9); then the degraded primary.
    assert_eq!(
        h.statuses(0),
        vec!["active: Primary (degraded)".to_string()]
    );
    assert_eq!(h.status(0).to_string(), "active: Primary (degraded)");
    assert_eq!(st.patroni.members[&pod(0)].role, "leader");
}

/// Active `Primary` when every planned unit runs.
#[tokio::test(flavor = "multi_thread")]
async fn single_unit_leader_is_an_active_primary() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.dispatch(0, pebble_ready()).await;
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

/// PE-services-changed no, PE-create-pgdata (exists): a second pebble-ready neither adds the
/// layer nor replans, and does not recreate the data directory.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_services_are_not_replanned() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.dispatch(0, pebble_ready()).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(count(&r, "pebble.add-layer"), 0, "{}", dump(&r));
    assert_eq!(count(&r, "pebble.replan"), 0);
    assert_eq!(count(&r, "pebble.make-dir"), 0);
    assert_eq!(count(&r, "pebble.exec"), 1, "chown runs every time");
    assert_eq!(
        count(&r, "postgresql.create-user"),
        0,
        "initialisation is idempotent: users exist"
    );
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

/// Deliberate deviation (issue 6): the layer is already in the plan but the `postgresql`
/// service is not running (a replan failed after `add-layer` took effect). Upstream only
/// replans when the services differ and would wait forever; here it replans.
#[tokio::test(flavor = "multi_thread")]
async fn layer_in_plan_but_service_stopped_is_replanned() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.dispatch(0, pebble_ready()).await;
    h.with(|s| {
        s.units.get_mut(&unit(0)).unwrap().pebble.running.clear();
    });
    let r = h.dispatch(0, pebble_ready()).await;
    assert_eq!(count(&r, "pebble.add-layer"), 0, "{}", dump(&r));
    assert_eq!(count(&r, "pebble.replan"), 1, "{}", dump(&r));
    assert_eq!(
        h.state().units[&unit(0)].pebble.running.get("postgresql"),
        Some(&ServiceRun::Active),
        "the service runs again"
    );
}

/// A service Pebble is already restarting (backoff: it crashed) is not replanned: a replan
/// would only fail the hook with the same start error, as real Pebble does for a workload
/// that exits at once (see tests/packed_charm.rs).
#[tokio::test(flavor = "multi_thread")]
async fn a_service_in_backoff_is_not_replanned() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.dispatch(0, pebble_ready()).await;
    h.with(|s| {
        s.units
            .get_mut(&unit(0))
            .unwrap()
            .pebble
            .running
            .insert("postgresql".into(), ServiceRun::Backoff);
    });
    let r = h.dispatch(0, pebble_ready()).await;
    assert_eq!(count(&r, "pebble.add-layer"), 0, "{}", dump(&r));
    assert_eq!(count(&r, "pebble.replan"), 0, "{}", dump(&r));
}

/// Spec 3.2 step 2: Pebble unreachable defers (after `_fix_pod`).
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_pebble_defers() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.with(|s| s.units.get_mut(&unit(0)).unwrap().pebble.reachable = false);
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(deferred(&r));
    assert_eq!(r.queue.notices[0].event.name, "postgresql-pebble-ready");
    assert_eq!(
        count(&r, "kubernetes.patch-pod-labels"),
        1,
        "_fix_pod ran first: {}",
        dump(&r)
    );
    assert_eq!(
        calls(&r)
            .iter()
            .filter(|c| c.starts_with("pebble."))
            .count(),
        1,
        "{}",
        dump(&r)
    );
}

/// PE-leader-or-initialised no: a replica before initialisation defers without touching Pebble
/// layers; not listed in `endpoints`, so no `_fix_pod` either.
#[tokio::test(flavor = "multi_thread")]
async fn replica_before_initialisation_defers() {
    let h = after_leader_elected(3, true, |_| {}).await;
    let r = h.dispatch(1, pebble_ready()).await;
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 0);
    assert_eq!(count(&r, "pebble.add-layer"), 0);
    assert_eq!(
        count(&r, "pebble.make-dir"),
        1,
        "the data directory comes first"
    );
    assert!(h.statuses(1).is_empty());
}

/// PE-leader-or-initialised yes (initialised), PE-is-leader no: a listed replica joins without
/// initialising, and ends in an empty Active.
#[tokio::test(flavor = "multi_thread")]
async fn replica_after_initialisation_joins_and_is_active() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    peer_app_bag(&mut s).insert(
        "endpoints".into(),
        format!("[\"{}\", \"{}\"]", host(0), host(1)),
    );
    let h = Harness::new(s);
    let r = h.dispatch(1, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(
        h.pod_labels(1)["cluster-name"],
        "patroni-postgresql-k8s",
        "_fix_pod labelled it"
    );
    assert_eq!(count(&r, "postgresql.create-user"), 0, "{}", dump(&r));
    assert_eq!(count(&r, "postgresql.set-up-database"), 0);
    assert!(count(&r, "patroni.patch-config") >= 1);
    assert_eq!(h.status(1).to_string(), "active");
    assert!(h.state().patroni.members.contains_key(&pod(1)));
}

/// PE-tls yes with files: key, CA (twice) and cert pushed 0400 postgres, then
/// update-ca-certificates.
#[tokio::test(flavor = "multi_thread")]
async fn tls_files_are_pushed_read_only() {
    let h = after_leader_elected(1, true, |s| tls_secret(s, 0)).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    let st = h.state();
    let files = &st.units[&unit(0)].pebble.files;
    for (path, content) in [
        ("/var/lib/postgresql/data/key.pem", "KEY"),
        ("/var/lib/postgresql/data/ca.pem", "CA"),
        ("/usr/local/share/ca-certificates/ca.crt", "CA"),
        ("/var/lib/postgresql/data/cert.pem", "CERT"),
    ] {
        assert_eq!(
            (
                files[path].content.as_str(),
                files[path].permissions,
                files[path].user.as_str()
            ),
            (content, 0o400, "postgres"),
            "{path}"
        );
    }
    assert!(
        st.units[&unit(0)]
            .pebble
            .exec_log
            .contains(&"update-ca-certificates".to_string())
    );
    assert!(
        files[PATRONI_YML].content.contains("hostssl"),
        "TLS on in pg_hba"
    );
    assert_eq!(h.unit_bag(0)["tls"], "enabled");
}

/// PE-tls no: a failed push (PathError/ProtocolError) defers before the layer.
#[tokio::test(flavor = "multi_thread")]
async fn failed_tls_push_defers() {
    let h = after_leader_elected(1, true, |s| {
        tls_secret(s, 0);
        s.faults
            .push(fault("pebble.push", FaultKind::Other, Some(1)));
    })
    .await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(count(&r, "pebble.push"), 1);
    assert_eq!(count(&r, "pebble.add-layer"), 0);
}

/// PE-member-started no: own `/health` retried every 3 s for 15 s, then Waiting and defer.
#[tokio::test(flavor = "multi_thread")]
async fn member_not_started_waits_and_defers() {
    let h = after_leader_elected(1, true, |s| {
        s.faults
            .push(fault("patroni.get-health", FaultKind::Unreachable, None))
    })
    .await;
    let t0 = h.state().now_ms;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(
        count(&r, "patroni.get-health"),
        6,
        "attempts at 0, 3, ..., 15 s"
    );
    assert!(h.state().now_ms - t0 >= 15_000);
    assert_eq!(
        h.status(0).to_string(),
        "waiting: awaiting for cluster to start"
    );
    assert!(!h.app_bag().contains_key("cluster_initialised"));
}

/// PE-patched-labels no: Blocked with the error, not initialised. Upstream returns without
/// deferring; deliberately (issue 6) the event is deferred so the initialisation is retried.
/// The leader's pod is already labelled and not listed, so `_fix_pod` does not run first.
#[tokio::test(flavor = "multi_thread")]
async fn leader_label_patch_failure_blocks_and_defers() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    let p = s.kubernetes.pods.get_mut(&pod(0)).unwrap();
    p.labels.insert("application".into(), "patroni".into());
    p.labels
        .insert("cluster-name".into(), format!("patroni-{APP}"));
    s.faults.push(fault(
        "kubernetes.patch-pod-labels",
        FaultKind::Invalid,
        Some(1),
    ));
    let h = Harness::new(s);
    let r = h.dispatch(0, pebble_ready()).await;
    // Deliberate deviation (issue 6): deferred so the initialisation is retried.
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 1);
    assert!(
        h.status(0)
            .to_string()
            .starts_with("blocked: failed to patch pod with error injected fault"),
        "{}",
        h.status(0)
    );
    assert!(!h.app_bag().contains_key("cluster_initialised"));
    assert_eq!(count(&r, "kubernetes.apply-service"), 0);
}

/// Spec 3.3.8 step 2: a Service failure inside initialisation blocks; upstream returns, here
/// (deliberate deviation, issue 6) the event is deferred so the initialisation is retried.
#[tokio::test(flavor = "multi_thread")]
async fn service_failure_during_initialisation_blocks_and_defers() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    let p = s.kubernetes.pods.get_mut(&pod(0)).unwrap();
    p.labels.insert("application".into(), "patroni".into());
    p.labels
        .insert("cluster-name".into(), format!("patroni-{APP}"));
    s.faults.push(fault(
        "kubernetes.apply-service",
        FaultKind::Forbidden,
        Some(1),
    ));
    let h = Harness::new(s);
    let r = h.dispatch(0, pebble_ready()).await;
    // Deliberate deviation (issue 6): deferred so the initialisation is retried.
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(
        h.status(0).to_string(),
        "blocked: failed to create k8s services"
    );
    assert_eq!(
        count(&r, "patroni.get-health"),
        1,
        "only member_started: {}",
        dump(&r)
    );
}

/// PE-service-redirecting no: Waiting and defer after 10 s of 1 s retries through the Service
/// (the member is still starting, so no pod has role=primary yet).
#[tokio::test(flavor = "multi_thread")]
async fn primary_endpoint_not_ready_waits_and_defers() {
    let h = after_leader_elected(1, true, |s| s.patroni.start_ms = 600_000).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(deferred(&r), "{}", dump(&r));
    let probes: Vec<_> = entries(&r, "patroni.get-health")
        .into_iter()
        .filter(|e| e.args.contains("PrimaryService"))
        .collect();
    assert_eq!(probes.len(), 11, "attempts at 0, 1, ..., 10 s");
    assert!(probes.iter().all(|p| p.result.contains("Unreachable")));
    assert_eq!(
        h.status(0).to_string(),
        "waiting: awaiting for primary endpoint to be ready"
    );
    assert!(!h.app_bag().contains_key("cluster_initialised"));
    assert_eq!(count(&r, "postgresql.create-user"), 0);
}

/// Spec 4 (pebble-ready 3): with the upgrade not idle no Service is created anywhere, so the
/// primary endpoint never answers: Waiting and defer.
#[tokio::test(flavor = "multi_thread")]
async fn services_skipped_while_upgrading_leave_the_primary_endpoint_unready() {
    let h = after_leader_elected(1, false, |_| {}).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(deferred(&r));
    assert_eq!(count(&r, "kubernetes.apply-service"), 0, "{}", dump(&r));
    assert!(
        !h.state()
            .kubernetes
            .services
            .contains_key("postgresql-k8s-primary")
    );
    assert_eq!(
        h.status(0).to_string(),
        "waiting: awaiting for primary endpoint to be ready"
    );
}

/// Spec 3.3.4 step 1, 403 on the node: the trust status is set and update_config returns
/// False; pebble-ready ignores that and `_set_active_status` ends Active.
#[tokio::test(flavor = "multi_thread")]
async fn forbidden_node_read_sets_the_trust_status_then_active() {
    let h = after_leader_elected(1, true, |s| {
        s.faults.push(fault(
            "kubernetes.get-node-allocatable",
            FaultKind::Forbidden,
            Some(1),
        ))
    })
    .await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    let statuses = h.statuses(0);
    assert_eq!(
        statuses[0],
        "blocked: Insufficient permissions, try: `juju trust postgresql-k8s --scope=cluster`",
        "{statuses:?}"
    );
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

/// Spec 3.2 step 3: a non-zero exit of the chown fails the hook (the world's chown exits 1
/// when the storage directory is missing; pgdata is there, so it is not created).
#[tokio::test(flavor = "multi_thread")]
async fn failing_chown_fails_the_hook() {
    let h = after_leader_elected(1, true, |_| {}).await;
    h.with(|s| {
        let files = &mut s.units.get_mut(&unit(0)).unwrap().pebble.files;
        files.insert(
            "/var/lib/postgresql/data/pgdata".into(),
            FileState {
                directory: true,
                permissions: 0o750,
                user: "postgres".into(),
                group: "postgres".into(),
                content: String::new(),
            },
        );
    });
    let e = h
        .try_dispatch(0, pebble_ready())
        .await
        .expect_err("hook fails");
    assert!(
        e.to_string()
            .contains("chown of /var/lib/postgresql/data failed with exit code 1"),
        "{e}"
    );
    assert!(!h.app_bag().contains_key("cluster_initialised"));
}
