//! The other hooks' main paths (spec 6.1–6.7) and a 3-unit deployment converging in the
//! simulated world when driven in Juju's hook order by hand.

mod hooks_support;

use charm_host::bindings::EventKind;
use charm_host::world::*;
use hooks_support::*;

/// A single-unit cluster bootstrapped through the real hooks.
async fn bootstrapped_single_unit() -> Harness {
    let mut s = deployment(1);
    upgrade_idle(&mut s);
    let h = Harness::new(s);
    h.dispatch(0, leader_elected()).await;
    let r = h.dispatch(0, pebble_ready()).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(h.status(0).to_string(), "active: Primary");
    h
}

// ------------------------------------------------------------------ upgrade-relation-created

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_relation_created_marks_the_unit_idle() {
    let h = Harness::new(deployment(2));
    let r = h.dispatch(1, upgrade_created()).await;
    assert!(!deferred(&r));
    let st = h.state();
    let up = st.relations.iter().find(|r| r.id == UPGRADE_ID).unwrap();
    assert_eq!(up.unit_data[&unit(1)]["state"], "idle");
    assert!(!up.unit_data.contains_key(&unit(0)), "only its own databag");
}

// ------------------------------------------------------------------ config-changed

#[tokio::test(flavor = "multi_thread")]
async fn config_changed_defers_until_initialised_and_while_upgrading() {
    let h = Harness::new(deployment(1));
    let r = h
        .dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert!(deferred(&r), "not initialised");
    let mut s = deployment(1);
    initialised(&mut s, &[0]);
    s.relations
        .iter_mut()
        .find(|r| r.id == UPGRADE_ID)
        .unwrap()
        .unit_data
        .clear();
    let h = Harness::new(s);
    let r = h
        .dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert!(deferred(&r), "upgrade not idle");
    assert_eq!(count(&r, "patroni.patch-config"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changed_pushes_the_new_configuration() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.config
            .insert("experimental_max_connections".into(), ConfigValue::Int(250));
    });
    let r = h
        .dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(
        h.state().patroni.dynamic_config["postgresql"]["parameters"]["max_connections"],
        250
    );
    assert!(
        h.state().units[&unit(0)]
            .pebble
            .exec_log
            .contains(&"locale -a".to_string())
    );
    assert!(
        count(&r, "postgresql.set-extensions") >= 1,
        "the leader applies extensions"
    );
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changed_blocks_on_invalid_configuration_and_recovers() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.config.insert(
            "response_lc_monetary".into(),
            ConfigValue::Str("xx_YY.utf8".into()),
        );
    });
    let r = h
        .dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert!(!deferred(&r));
    assert_eq!(
        h.status(0).to_string(),
        "blocked: Configuration Error. Please check the logs"
    );
    assert_eq!(count(&r, "patroni.patch-config"), 0, "{}", dump(&r));
    // A typed-config violation is the same Blocked status.
    h.with(|s| {
        s.config.remove("response_lc_monetary");
        s.config.insert(
            "synchronous_node_count".into(),
            ConfigValue::Str("some".into()),
        );
    });
    h.dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert_eq!(
        h.status(0).to_string(),
        "blocked: Configuration Error. Please check the logs"
    );
    // Fixed: the Configuration Error status is replaced by the active one.
    h.with(|s| {
        s.config.remove("synchronous_node_count");
    });
    h.dispatch(0, simple("config-changed", EventKind::ConfigChanged))
        .await;
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

// ------------------------------------------------------------------ peer relation changed

#[tokio::test(flavor = "multi_thread")]
async fn peer_changed_on_the_leader_initialises_then_defers() {
    let mut s = deployment(1);
    initialised(&mut s, &[0]);
    peer_app_bag(&mut s).remove("cluster_initialised");
    let h = Harness::new(s);
    let r = h.dispatch(0, peer_changed(0)).await;
    assert!(deferred(&r), "re-run as initialised: {}", dump(&r));
    assert_eq!(h.app_bag()["cluster_initialised"], "True");
    assert!(h.state().postgresql.users.contains_key("backup"));
    // The re-emission runs the initialised path.
    let r = h
        .dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(r.runs[0].event.name, "database-peers-relation-changed");
    assert!(r.queue.notices.is_empty(), "done the second time");
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_changed_on_a_replica_before_initialisation_does_nothing() {
    let h = Harness::new(deployment(2));
    let r = h.dispatch(1, peer_changed(0)).await;
    assert!(!deferred(&r));
    assert!(
        calls(&r).iter().all(|c| c.starts_with("juju.")),
        "{:?}",
        calls(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_changed_waits_for_a_member_that_has_not_started() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    peer_app_bag(&mut s).insert(
        "endpoints".into(),
        format!("[\"{}\", \"{}\"]", host(0), host(1)),
    );
    s.faults.push(Fault {
        unit: Some(unit(1)),
        ..fault("patroni.get-health", FaultKind::Unreachable, None)
    });
    let h = Harness::new(s);
    let r = h.dispatch(1, peer_changed(0)).await;
    assert!(deferred(&r), "{}", dump(&r));
    assert_eq!(
        h.status(1).to_string(),
        "waiting: awaiting for member to start"
    );
    assert!(
        before(&r, "kubernetes.get-service", "patroni.get-health"),
        "headless check first"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_changed_fails_the_hook_without_the_headless_service() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    peer_app_bag(&mut s).insert(
        "endpoints".into(),
        format!("[\"{}\", \"{}\"]", host(0), host(1)),
    );
    s.kubernetes.services.remove(&format!("{APP}-endpoints"));
    let h = Harness::new(s);
    let e = h
        .try_dispatch(1, peer_changed(0))
        .await
        .expect_err("hook error");
    assert!(
        e.to_string()
            .contains("headless Service postgresql-k8s-endpoints is missing"),
        "{e}"
    );
}

/// secret-changed runs the same handler: the leader adds the missing member.
#[tokio::test(flavor = "multi_thread")]
async fn secret_changed_runs_the_peer_changed_handler() {
    let mut s = deployment(2);
    initialised(&mut s, &[0]);
    let h = Harness::new(s);
    let r = h.dispatch(0, secret_changed()).await;
    assert_eq!(last(&r).report.plugin, "secret-changed");
    assert_eq!(
        h.pod_labels(1)["cluster-name"],
        "patroni-postgresql-k8s",
        "{}",
        dump(&r)
    );
    assert_eq!(h.endpoints(), vec![host(0), host(1)]);
}

// ------------------------------------------------------------------ peer relation departed

#[tokio::test(flavor = "multi_thread")]
async fn departed_unit_is_pruned_by_the_leader() {
    let mut s = deployment(3);
    initialised(&mut s, &[0, 1, 2]);
    s.relations
        .iter_mut()
        .find(|r| r.id == PEER_ID)
        .unwrap()
        .units
        .retain(|u| *u != unit(2));
    s.kubernetes.pods.remove(&pod(2));
    s.planned_units = Some(2);
    let h = Harness::new(s);
    let r = h.dispatch(0, peer_departed(2)).await;
    assert!(!deferred(&r), "{}", dump(&r));
    assert_eq!(h.endpoints(), vec![host(0), host(1)]);
    // The snapshot still held 3 endpoints: count = planned 2 - 1.
    assert!(
        entries(&r, "patroni.patch-config")[0]
            .args
            .contains("synchronous-node-count: Some(1)")
    );
    // The departing unit itself does nothing.
    let r = h.dispatch(2, peer_departed(2)).await;
    assert!(
        calls(&r).iter().all(|c| c.starts_with("juju.")),
        "{:?}",
        calls(&r)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn departed_before_initialisation_defers() {
    let h = Harness::new(deployment(2));
    let r = h.dispatch(0, peer_departed(1)).await;
    assert!(deferred(&r));
}

// ------------------------------------------------------------------ update-status

#[tokio::test(flavor = "multi_thread")]
async fn update_status_restarts_an_inactive_service() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.units
            .get_mut(&unit(0))
            .unwrap()
            .pebble
            .running
            .insert("postgresql".into(), ServiceRun::Inactive);
    });
    let r = h
        .dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(count(&r, "pebble.restart"), 1, "{}", dump(&r));
    assert_eq!(
        h.state().units[&unit(0)].pebble.running["postgresql"],
        ServiceRun::Active
    );
    // Restarted, the member is starting and not the leader yet: an empty Active.
    assert_eq!(h.status(0).to_string(), "active");
    // Once Patroni has taken the leader lock again (after the TTL), Primary again.
    h.world.advance(40_000);
    h.dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(h.status(0).to_string(), "active: Primary");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_status_reports_a_service_that_does_not_come_back() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.units
            .get_mut(&unit(0))
            .unwrap()
            .pebble
            .running
            .insert("postgresql".into(), ServiceRun::Inactive);
        s.faults
            .push(fault("patroni.get-health", FaultKind::Unreachable, None));
    });
    h.dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(
        h.status(0).to_string(),
        "maintenance: Database service inactive, restarting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_status_does_nothing_while_upgrading_or_blocked() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.relations
            .iter_mut()
            .find(|r| r.id == UPGRADE_ID)
            .unwrap()
            .unit_data
            .clear()
    });
    let r = h
        .dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert!(
        calls(&r).iter().all(|c| c.starts_with("juju.")),
        "{:?}",
        calls(&r)
    );
    upgrade_idle_now(&h);
    h.with(|s| {
        s.units.get_mut(&unit(0)).unwrap().status = StatusState {
            kind: StatusKind::Blocked,
            message: "x".into(),
        }
    });
    let r = h
        .dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(count(&r, "patroni.get-cluster"), 0, "{}", dump(&r));
    assert_eq!(h.status(0).to_string(), "blocked: x");
}

fn upgrade_idle_now(h: &Harness) {
    h.with(upgrade_idle);
}

// ------------------------------------------------------------------ upgrade-charm, stop

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_charm_restores_the_pod_labels() {
    let mut s = deployment(1);
    initialised(&mut s, &[0]);
    let h = Harness::new(s);
    h.with(|s| {
        let p = s.kubernetes.pods.get_mut(&pod(0)).unwrap();
        p.labels.remove("application");
        p.labels.remove("cluster-name");
    });
    let r = h
        .dispatch(0, simple("upgrade-charm", EventKind::UpgradeCharm))
        .await;
    assert_eq!(count(&r, "kubernetes.apply-service"), 2);
    assert_eq!(h.pod_labels(0)["application"], "patroni");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_hands_patroni_objects_to_the_statefulset() {
    let h = bootstrapped_single_unit().await;
    let r = h.dispatch(0, simple("stop", EventKind::Stop)).await;
    let patched: Vec<String> = entries(&r, "kubernetes.set-owner-references")
        .iter()
        .map(|e| e.args.to_string())
        .collect();
    let st = h.state();
    for ep in [
        "patroni-postgresql-k8s",
        "patroni-postgresql-k8s-config",
        "patroni-postgresql-k8s-sync",
    ] {
        assert_eq!(
            st.kubernetes.endpoints[ep].owner_references,
            vec![sts_owner()],
            "{ep}: {patched:?}"
        );
    }
    // Juju's and the charm's own Services are left alone.
    assert!(
        patched
            .iter()
            .all(|a| !a.contains("\"postgresql-k8s-primary\"")
                && !a.contains("\"postgresql-k8s-endpoints\"")),
        "{patched:?}"
    );
    assert!(st.kubernetes.services[APP].owner_references.is_empty());
    // A second stop has nothing left to patch.
    let r = h.dispatch(0, simple("stop", EventKind::Stop)).await;
    assert_eq!(
        count(&r, "kubernetes.set-owner-references"),
        0,
        "{}",
        dump(&r)
    );
}

// ------------------------------------------------------------------ convergence

/// Three units driven in Juju's order (spec 9.8): relation-created, leader-elected on the
/// leader, config-changed, start (no plugin: only re-emission), pebble-ready, then
/// relation-changed rounds as databags change, then update-status. The deployment converges
/// to one Active `Primary`, two Active replicas, one Patroni leader.
#[tokio::test(flavor = "multi_thread")]
async fn three_units_converge() {
    let h = Harness::new(deployment(3));
    for u in 0..3 {
        h.dispatch(u, upgrade_created()).await;
    }
    h.dispatch(0, leader_elected()).await;
    for u in 0..3 {
        let r = h
            .dispatch(u, simple("config-changed", EventKind::ConfigChanged))
            .await;
        assert!(deferred(&r), "config-changed waits for initialisation");
        h.dispatch(u, simple("start", EventKind::Start)).await;
    }
    for u in 0..3 {
        h.dispatch(u, pebble_ready()).await;
    }
    assert_eq!(h.app_bag()["cluster_initialised"], "True");
    assert_eq!(h.status(0).to_string(), "active: Primary (degraded)");
    // Databag changes fan out as relation-changed; a few rounds with time passing.
    for _ in 0..3 {
        for u in 0..3 {
            h.dispatch(u, peer_changed((u + 1) % 3)).await;
            h.world.advance(5_000);
        }
    }
    for u in 0..3 {
        let r = h
            .dispatch(u, simple("update-status", EventKind::UpdateStatus))
            .await;
        assert!(
            r.queue.notices.is_empty(),
            "unit {u} still has deferred events: {:?}",
            r.queue.notices
        );
    }
    let st = h.state();
    assert_eq!(h.status(0).to_string(), "active: Primary");
    assert_eq!(h.status(1).to_string(), "active");
    assert_eq!(h.status(2).to_string(), "active");
    let leaders: Vec<_> = st
        .patroni
        .members
        .iter()
        .filter(|(_, m)| m.role == "leader")
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(leaders, vec![pod(0)]);
    assert!(
        st.patroni
            .members
            .values()
            .all(|m| m.state == "running" || m.state == "streaming"),
        "{:?}",
        st.patroni.members
    );
    assert_eq!(st.patroni.members.len(), 3);
    assert_eq!(h.endpoints(), vec![host(0), host(1), host(2)]);
    assert_eq!(
        st.kubernetes.endpoints[&format!("patroni-{APP}")].annotations["leader"],
        pod(0)
    );
    for u in 0..3 {
        assert_eq!(
            h.pod_labels(u)["role"],
            if u == 0 { "primary" } else { "replica" }
        );
        let yml = &st.units[&unit(u)].pebble.files["/var/lib/postgresql/data/patroni.yml"].content;
        for other in 0..3 {
            assert!(
                yml.contains(&format!("{}.dev.svc.cluster.local", host(other))),
                "unit {u} pg_hba lists {other}"
            );
        }
    }
    assert_eq!(st.patroni.dynamic_config["synchronous_node_count"], 2);
}

/// World fix: unit-owned secrets share the label `database-peers.<app>.unit`; each unit sees
/// and updates only its own.
#[tokio::test(flavor = "multi_thread")]
async fn each_unit_sees_its_own_unit_secret() {
    let mut s = deployment(2);
    for n in 0..2 {
        s.secrets.push(SecretState {
            id: format!("secret:u{n}"),
            label: format!("database-peers.{APP}.unit"),
            owner: SecretOwnerKind::Unit,
            owner_name: unit(n),
            revision: 1,
            content: bag(&[("key", &format!("key-of-{n}"))]),
        });
    }
    let world = World::new(s);
    let label = format!("database-peers.{APP}.unit");
    let (caps, _) = world.capabilities(&unit(1));
    let got = caps.juju.secret_get(label.clone()).await.unwrap().unwrap();
    assert_eq!(got[0].value, "key-of-1");
    caps.juju
        .secret_set(
            label.clone(),
            vec![charm_host::bindings::Kv::new("key", "new")],
        )
        .await
        .unwrap();
    caps.juju.commit().await.unwrap();
    let st = world.state();
    assert_eq!(st.secrets[0].content["key"], "key-of-0");
    assert_eq!(st.secrets[1].content["key"], "new");
}

/// Deliberate deviation (issue 6, `fuzz --model` seed 263): a stale Blocked
/// `failed to patch pod with error …` is not skipped by update-status; a running primary
/// reports `Primary` again. Upstream skips every Blocked unit and the status stays forever.
#[tokio::test(flavor = "multi_thread")]
async fn update_status_replaces_a_stale_pod_label_block() {
    let h = bootstrapped_single_unit().await;
    h.with(|s| {
        s.units.get_mut(&unit(0)).unwrap().status = StatusState {
            kind: StatusKind::Blocked,
            message: "failed to patch pod with error 500".into(),
        }
    });
    h.dispatch(0, simple("update-status", EventKind::UpdateStatus))
        .await;
    assert_eq!(h.status(0).to_string(), "active: Primary");
}
