//! The `leader-elected` flowchart (docs/FLOWCHARTS.md, rows LE*): every decision node both
//! ways, plus the spec-only branches (403 trust paths, services skipped while upgrading,
//! stale-resource cleanup, leader annotation repair). Each test asserts the capability calls,
//! the statuses and the defer outcome.

mod hooks_support;

use charm_host::world::{EndpointsState, FaultKind};
use hooks_support::*;

const TRUST: &str =
    "blocked: Insufficient permissions, try: `juju trust postgresql-k8s --scope=cluster`";

/// LE-passwords yes, LE-part-of-cluster no, LE-initialised no; spec 2.2 steps 3 and 5.
#[tokio::test(flavor = "multi_thread")]
async fn fresh_leader_generates_passwords_lists_itself_creates_services_and_returns() {
    let mut s = deployment(3);
    upgrade_idle(&mut s);
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r), "{}", dump(&r));

    // One secret-add with the five passwords, 16 chars of [A-Za-z0-9].
    assert_eq!(count(&r, "juju.secret-add"), 1, "{}", dump(&r));
    assert_eq!(count(&r, "juju.secret-set"), 0);
    let st = h.state();
    let secret = st
        .secrets
        .iter()
        .find(|s| s.label == "database-peers.postgresql-k8s.app")
        .expect("app secret");
    for (key, _) in PASSWORDS {
        let pw = &secret.content[key];
        assert_eq!(pw.len(), 16, "{key}");
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{key}: {pw}");
    }
    // Own host listed; stale DCS objects deleted (404s ignored) before the Services.
    assert_eq!(h.endpoints(), vec![host(0)]);
    assert_eq!(count(&r, "kubernetes.delete-service"), 3);
    assert_eq!(count(&r, "kubernetes.delete-endpoints"), 3);
    assert!(before(
        &r,
        "kubernetes.delete-endpoints",
        "kubernetes.get-endpoints"
    ));
    assert!(before(
        &r,
        "kubernetes.get-endpoints",
        "kubernetes.apply-service"
    ));
    // Services with pod 0's owner references.
    for svc in ["postgresql-k8s-primary", "postgresql-k8s-replicas"] {
        let s = &st.kubernetes.services[svc];
        assert_eq!(s.owner_references, vec![sts_owner()], "{svc}");
        assert_eq!(s.selector["cluster-name"], "patroni-postgresql-k8s");
    }
    assert_eq!(
        st.kubernetes.services["postgresql-k8s-primary"].selector["role"],
        "primary"
    );
    // Not initialised: no Patroni call, no pod label, no status.
    assert_eq!(count(&r, "patroni.get-cluster"), 0);
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 0);
    assert!(h.statuses(0).is_empty(), "{:?}", h.statuses(0));
}

/// LE-passwords no, LE-part-of-cluster yes: nothing is rewritten.
#[tokio::test(flavor = "multi_thread")]
async fn existing_passwords_and_membership_are_kept() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    with_passwords(&mut s);
    peer_app_bag(&mut s).insert("endpoints".into(), format!("[\"{}\"]", host(0)));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert_eq!(
        count(&r, "juju.secret-add") + count(&r, "juju.secret-set"),
        0,
        "{}",
        dump(&r)
    );
    assert_eq!(h.state().secrets[0].content, bag(&PASSWORDS));
    assert_eq!(h.endpoints(), vec![host(0)], "no duplicate entry");
    assert_eq!(
        count(&r, "juju.relation-set"),
        0,
        "nothing to write: {}",
        dump(&r)
    );
}

/// LE-remove-departed: an endpoint whose pod is no longer a unit is removed; listed ones stay.
#[tokio::test(flavor = "multi_thread")]
async fn departed_units_are_removed_from_endpoints() {
    let mut s = deployment(2);
    upgrade_idle(&mut s);
    with_passwords(&mut s);
    peer_app_bag(&mut s).insert(
        "endpoints".into(),
        format!("[\"{}\", \"{}\", \"{}\"]", host(0), host(1), host(5)),
    );
    let h = Harness::new(s);
    h.dispatch(0, leader_elected()).await;
    assert_eq!(h.endpoints(), vec![host(0), host(1)]);
}

/// LE-services skipped: with the upgrade not idle the Services are not created (spec 4.2).
#[tokio::test(flavor = "multi_thread")]
async fn services_are_skipped_while_an_upgrade_is_not_idle() {
    let s = deployment(2); // upgrade relation without states: not idle
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert_eq!(count(&r, "kubernetes.apply-service"), 0, "{}", dump(&r));
    assert_eq!(count(&r, "kubernetes.get-pod"), 0);
    assert_eq!(h.endpoints(), vec![host(0)], "the rest of the handler ran");
}

/// LE-create-services failure: Blocked `failed to create k8s services` and the handler returns.
#[tokio::test(flavor = "multi_thread")]
async fn service_creation_failure_blocks_and_returns() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    s.faults
        .push(fault("kubernetes.apply-service", FaultKind::Other, Some(1)));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r));
    assert_eq!(
        h.status(0).to_string(),
        "blocked: failed to create k8s services"
    );
    assert_eq!(
        count(&r, "patroni.get-cluster"),
        0,
        "returned before adding members: {}",
        dump(&r)
    );
}

/// Spec 2.3.3: without pod 0 the owner references cannot be read: the same Blocked status.
#[tokio::test(flavor = "multi_thread")]
async fn missing_pod_zero_blocks_service_creation() {
    let mut s = deployment(2);
    upgrade_idle(&mut s);
    s.kubernetes.pods.remove(&pod(0));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(
        entries(&r, "kubernetes.get-pod")[0]
            .result
            .contains("NotFound"),
        "{}",
        dump(&r)
    );
    assert_eq!(
        h.status(0).to_string(),
        "blocked: failed to create k8s services"
    );
    assert_eq!(count(&r, "kubernetes.apply-service"), 0);
}

/// Spec 2.2 step 3, 403: trust status, cleanup stops at once, the handler carries on.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_forbidden_sets_trust_status_and_carries_on() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    s.faults.push(fault(
        "kubernetes.delete-service",
        FaultKind::Forbidden,
        Some(1),
    ));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert_eq!(
        count(&r, "kubernetes.delete-service"),
        1,
        "stopped after the 403: {}",
        dump(&r)
    );
    assert_eq!(count(&r, "kubernetes.delete-endpoints"), 0);
    assert_eq!(h.statuses(0), vec![TRUST.to_string()]);
    assert_eq!(
        count(&r, "kubernetes.apply-service"),
        2,
        "the handler carried on"
    );
}

/// Spec 2.2 step 3: any other API error fails the hook; nothing is committed.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_other_error_fails_the_hook() {
    let mut s = deployment(1);
    s.faults.push(fault(
        "kubernetes.delete-endpoints",
        FaultKind::Other,
        Some(1),
    ));
    let h = Harness::new(s);
    let e = h
        .try_dispatch(0, leader_elected())
        .await
        .expect_err("the hook fails");
    assert!(
        e.to_string()
            .contains("failed to delete patroni-postgresql-k8s"),
        "{e}"
    );
    assert!(h.state().secrets.is_empty(), "nothing committed");
    assert!(h.endpoints().is_empty());
}

/// Spec 2.2 step 3 is skipped once initialised.
#[tokio::test(flavor = "multi_thread")]
async fn initialised_cluster_skips_the_cleanup() {
    let mut s = deployment(1);
    initialised(&mut s, &[0]);
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert_eq!(
        count(&r, "kubernetes.delete-service") + count(&r, "kubernetes.delete-endpoints"),
        0,
        "{}",
        dump(&r)
    );
}

/// Spec 2.2 step 4: an Endpoints without `leader` is annotated with this pod and
/// `cluster_initialised` is dropped, so the LE-initialised branch reads "no".
#[tokio::test(flavor = "multi_thread")]
async fn leader_annotation_is_repaired_and_initialisation_forgotten() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    with_passwords(&mut s);
    peer_app_bag(&mut s).insert("cluster_initialised".into(), "True".into());
    s.kubernetes
        .endpoints
        .insert(format!("patroni-{APP}"), EndpointsState::default());
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert_eq!(
        h.state().kubernetes.endpoints[&format!("patroni-{APP}")].annotations["leader"],
        pod(0)
    );
    assert!(
        !h.app_bag().contains_key("cluster_initialised"),
        "{:?}",
        h.app_bag()
    );
    assert_eq!(
        count(&r, "patroni.get-cluster"),
        0,
        "not initialised any more: {}",
        dump(&r)
    );
}

/// Spec 2.2 step 4, 403: trust status and the handler returns (no Services).
#[tokio::test(flavor = "multi_thread")]
async fn leader_annotation_forbidden_sets_trust_status_and_returns() {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    s.faults.push(fault(
        "kubernetes.get-endpoints",
        FaultKind::Forbidden,
        Some(1),
    ));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r));
    assert_eq!(h.status(0).to_string(), TRUST);
    assert_eq!(count(&r, "kubernetes.apply-service"), 0, "{}", dump(&r));
    assert_eq!(
        h.endpoints(),
        vec![host(0)],
        "the earlier steps were committed"
    );
}

/// LE-initialised yes, LE-all-units-on-cluster yes: nothing is pushed (spec 4.3).
#[tokio::test(flavor = "multi_thread")]
async fn all_units_members_means_no_reconfiguration() {
    let mut s = deployment(2);
    initialised(&mut s, &[0, 1]);
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r));
    assert_eq!(count(&r, "patroni.get-cluster"), 1, "{}", dump(&r));
    assert_eq!(count(&r, "patroni.patch-config"), 0);
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 0);
    assert!(h.statuses(0).is_empty());
}

/// Deliberate deviation (issue 6): every unit is a Patroni member but one is missing from
/// `endpoints` (an earlier dispatch labelled its pod, then failed, and Juju dropped its
/// `endpoints` write). Upstream sees members == hosts and never lists it; here it is listed,
/// and nothing else is done.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_missing_from_endpoints_is_listed_again() {
    let mut s = deployment(2);
    initialised(&mut s, &[0, 1]);
    let bag = peer_app_bag(&mut s);
    bag.insert("endpoints".into(), format!("[\"{}\"]", host(0)));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(h.endpoints(), vec![host(0), host(1)]);
    assert_eq!(count(&r, "patroni.patch-config"), 0);
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 0);
    assert!(h.statuses(0).is_empty());
}

/// LE-all-units-on-cluster no, LE-all-members-ready yes, LE-patch-pod-labels ok: the new
/// members are listed and labelled, then the synchronous settings are PATCHed.
#[tokio::test(flavor = "multi_thread")]
async fn missing_members_are_added_labelled_and_sync_settings_pushed() {
    let mut s = deployment(3);
    initialised(&mut s, &[0]);
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(
        h.statuses(0),
        vec!["maintenance: reconfiguring cluster".to_string()]
    );
    assert_eq!(h.endpoints(), vec![host(0), host(1), host(2)]);
    for i in [1, 2] {
        assert_eq!(
            h.pod_labels(i)["cluster-name"],
            "patroni-postgresql-k8s",
            "pod {i}"
        );
        assert_eq!(h.pod_labels(i)["application"], "patroni");
    }
    // A readiness check before each member.
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 2);
    assert!(count(&r, "patroni.get-cluster") >= 3, "{}", dump(&r));
    let patch = entries(&r, "patroni.patch-config");
    assert_eq!(patch.len(), 1);
    // The snapshot saw one endpoint (spec 13.7): count = planned 3 - 1 with `all`.
    assert!(
        patch[0].args.contains("synchronous-node-count: Some(2)"),
        "{}",
        patch[0].args
    );
    assert!(
        patch[0]
            .args
            .contains("synchronous-mode-strict: Some(false)"),
        "{}",
        patch[0].args
    );
    assert_eq!(
        h.state().patroni.dynamic_config["synchronous_node_count"],
        2
    );
}

/// LE-all-members-ready no: Maintenance, then defer and stop (the chart's arrow to
/// update_config is wrong, spec 4.4).
#[tokio::test(flavor = "multi_thread")]
async fn members_not_ready_defers_and_stops() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    s.patroni.members.get_mut(&pod(0)).unwrap().state = "starting".into();
    s.patroni.start_ms = 3_600_000;
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(r.queue.notices.len(), 1);
    assert_eq!(
        h.statuses(0),
        vec!["maintenance: reconfiguring cluster".to_string()]
    );
    assert_eq!(count(&r, "kubernetes.patch-pod-labels"), 0);
    assert_eq!(
        count(&r, "patroni.patch-config"),
        0,
        "no update_config after the defer"
    );
    assert_eq!(h.endpoints(), vec![host(0)]);
}

/// LE-patch-pod-labels failure: Blocked with the error, and the loop continues (spec 4.5).
#[tokio::test(flavor = "multi_thread")]
async fn failed_label_patch_blocks_and_the_loop_continues() {
    let mut s = deployment(3);
    initialised(&mut s, &[0]);
    s.faults.push(fault(
        "kubernetes.patch-pod-labels",
        FaultKind::Other,
        Some(1),
    ));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(
        count(&r, "kubernetes.patch-pod-labels"),
        2,
        "the second member was still patched"
    );
    assert!(!h.pod_labels(1).contains_key("cluster-name"));
    assert_eq!(h.pod_labels(2)["cluster-name"], "patroni-postgresql-k8s");
    assert_eq!(
        h.endpoints(),
        vec![host(0), host(1), host(2)],
        "listed before the patch"
    );
    let statuses = h.statuses(0);
    assert_eq!(statuses[0], "maintenance: reconfiguring cluster");
    assert!(
        statuses[1].starts_with("blocked: failed to patch pod with error injected fault"),
        "{statuses:?}"
    );
    assert_eq!(count(&r, "patroni.patch-config"), 1);
}

/// Spec 2.3.5: `/cluster` unreadable everywhere (RetryError) defers before any change.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_cluster_defers() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    s.faults
        .push(fault("patroni.get-cluster", FaultKind::Unreachable, None));
    let h = Harness::new(s);
    let r = h.dispatch(0, leader_elected()).await;
    assert!(deferred(&r));
    assert!(
        h.statuses(0).is_empty(),
        "defers before the Maintenance status"
    );
}

/// Spec 2.3.5: the sync PATCH is retried every 3 s for 60 s, then the event defers.
#[tokio::test(flavor = "multi_thread")]
async fn failing_sync_patch_retries_for_a_minute_then_defers() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    s.faults
        .push(fault("patroni.patch-config", FaultKind::Other, None));
    let h = Harness::new(s);
    let t0 = h.state().now_ms;
    let r = h.dispatch(0, leader_elected()).await;
    assert!(deferred(&r));
    assert_eq!(
        count(&r, "patroni.patch-config"),
        21,
        "attempts at 0, 3, ..., 60 s"
    );
    assert!(h.state().now_ms - t0 >= 60_000);
    assert_eq!(
        h.endpoints(),
        vec![host(0), host(1)],
        "the member added before the PATCH stays"
    );
}
