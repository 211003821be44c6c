//! Acceptance test: real Patroni 4.1.5 with PostgreSQL runs a 3-member cluster on its
//! Kubernetes DCS against the stand-in — leader election through the Endpoints lock,
//! replicas streaming, and a switchover.

#[path = "support/patroni_cluster.rs"]
mod patroni_cluster;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use k8s_standin::{DenyRule, Handle, StandIn};
use patroni_cluster::{ClusterSpec, PatroniCluster};

const NS: &str = "demo";
const SCOPE: &str = "pgk8s";
const MEMBERS: usize = 3;
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Members by role from `GET /cluster`: (leader name if running, streaming replica names).
fn roles(cluster: &Value) -> (Option<String>, Vec<String>) {
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let leader = members
        .iter()
        .find(|m| m["role"] == "leader" && m["state"] == "running")
        .and_then(|m| m["name"].as_str())
        .map(str::to_string);
    let streaming = members
        .iter()
        .filter(|m| m["role"] == "replica" && m["state"] == "streaming")
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    (leader, streaming)
}

/// What the stand-in's store says: the leader annotation and each pod's role label.
fn store_view(handle: &Handle) -> (Option<String>, Vec<(String, Option<String>)>) {
    let leader = handle.store().get("endpoints", NS, SCOPE).and_then(|ep| {
        ep.pointer("/metadata/annotations/leader")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let pods = handle
        .store()
        .list(
            "pods",
            Some(NS),
            &format!("application=patroni,cluster-name={SCOPE}"),
        )
        .expect("valid selector")
        .into_iter()
        .map(|p| {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (
                name,
                p.pointer("/metadata/labels/role")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        })
        .collect();
    (leader, pods)
}

/// Waits until Patroni reports `expected_leader` (or any leader) running with every other
/// member streaming, and the store agrees (leader lock + role labels). Returns the leader.
fn wait_healthy(
    cluster: &mut PatroniCluster,
    handle: &Handle,
    expected_leader: Option<&str>,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let leader = cluster.wait_for("a running leader", BOOT_TIMEOUT, |c| {
        let (leader, _) = roles(&c.cluster_state()?);
        Ok(leader.filter(|l| expected_leader.is_none_or(|e| e == l)))
    })?;
    eprintln!(
        "leader {leader} after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster.wait_for("all replicas streaming", BOOT_TIMEOUT, |c| {
        let (_, streaming) = roles(&c.cluster_state()?);
        Ok((streaming.len() == MEMBERS - 1).then_some(()))
    })?;
    eprintln!(
        "{} replicas streaming after {:.1}s",
        MEMBERS - 1,
        started.elapsed().as_secs_f64()
    );
    cluster.wait_for(
        "the store to reflect the roles",
        Duration::from_secs(20),
        |_| {
            let (lock_holder, pods) = store_view(handle);
            let labels_ok = pods.len() == MEMBERS
                && pods.iter().all(|(name, role)| {
                    role.as_deref()
                        == Some(if *name == leader {
                            "primary"
                        } else {
                            "replica"
                        })
                });
            if lock_holder.as_deref() == Some(leader.as_str()) && labels_ok {
                Ok(Some(()))
            } else {
                anyhow::bail!("store: leader annotation {lock_holder:?}, pod roles {pods:?}")
            }
        },
    )?;
    Ok(leader)
}

#[test]
fn patroni_cluster_elects_replicates_and_switches_over() -> anyhow::Result<()> {
    // The stand-in runs on its own runtime; the test thread does blocking waits.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handle = runtime.block_on(StandIn::start("127.0.0.1:0"))?;

    // Patroni with bypass_api_service reads default/endpoints/kubernetes to find the API
    // servers' https addresses. The stand-in speaks plain HTTP only, so deny that read as
    // RBAC would: Patroni then logs a warning and keeps using the kubeconfig's server.
    handle.controls().deny(
        DenyRule::new("get", "endpoints")
            .in_namespace("default")
            .named("kubernetes"),
    );

    // In Kubernetes the StatefulSet controller creates the pods; Patroni only patches them.
    for i in 0..MEMBERS {
        handle.store().create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{SCOPE}-{i}"), "namespace": NS,
                         "labels": {"application": "patroni", "cluster-name": SCOPE}},
            "spec": {"containers": [{"name": "postgresql", "image": "postgres:15"}], "hostname": format!("{SCOPE}-{i}")},
            "status": {"phase": "Running", "podIP": "127.0.0.1"}
        }))?;
    }

    let dir = tempdir_for_kubeconfig()?;
    let kubeconfig = dir.join("kubeconfig");
    handle.write_kubeconfig(&kubeconfig, NS)?;
    let spec = ClusterSpec {
        scope: SCOPE.into(),
        namespace: NS.into(),
        kubeconfig: kubeconfig.clone(),
        labels: vec![("application".into(), "patroni".into())],
        members: MEMBERS,
    };
    // Patroni runs as `postgres` when we are root and must read the kubeconfig.
    make_world_readable(&dir)?;

    let mut cluster = PatroniCluster::start(&spec)?;
    let result = (|| -> anyhow::Result<()> {
        let leader = wait_healthy(&mut cluster, &handle, None)?;

        // Patroni also keeps its config and a headless Service in the stand-in.
        let config = handle
            .store()
            .get("endpoints", NS, &format!("{SCOPE}-config"))
            .expect("config endpoints");
        assert!(
            config.pointer("/metadata/annotations/initialize").is_some(),
            "initialize key: {config}"
        );
        assert!(
            config.pointer("/metadata/annotations/config").is_some(),
            "dynamic config: {config}"
        );
        let service = handle
            .store()
            .get("services", NS, &format!("{SCOPE}-config"))
            .expect("config service");
        assert_eq!(service["spec"]["clusterIP"], "None");
        // The leader Endpoints point at the leader's PostgreSQL port.
        let lock = handle
            .store()
            .get("endpoints", NS, SCOPE)
            .expect("leader endpoints");
        let leader_port = cluster.member(&leader)?.pg_port;
        assert_eq!(
            lock["subsets"][0]["ports"][0]["port"],
            json!(leader_port),
            "{lock}"
        );
        assert_eq!(lock["metadata"]["annotations"]["ttl"], "20");

        // Switch over to another member.
        let candidate = cluster
            .members
            .iter()
            .map(|m| m.name.clone())
            .find(|n| *n != leader)
            .expect("a replica");
        let started = Instant::now();
        let answer = cluster.switchover(&leader, &candidate)?;
        eprintln!("switchover {leader} -> {candidate}: {answer}");
        let new_leader = wait_healthy(&mut cluster, &handle, Some(&candidate))?;
        eprintln!(
            "switchover complete after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(new_leader, candidate);
        let transitions = handle.store().get("endpoints", NS, SCOPE).and_then(|e| {
            e.pointer("/metadata/annotations/transitions")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        assert_eq!(
            transitions.as_deref(),
            Some("1"),
            "one leader transition recorded"
        );
        let timelines: Vec<i64> = cluster.cluster_state()?["members"]
            .as_array()
            .map(|ms| ms.iter().filter_map(|m| m["timeline"].as_i64()).collect())
            .unwrap_or_default();
        assert!(
            timelines.iter().all(|t| *t == 2),
            "all members on timeline 2: {timelines:?}"
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("{}", cluster.log_tails(60));
    }
    drop(cluster); // stop Patroni while the stand-in still answers, so it shuts down cleanly
    drop(handle);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir_for_kubeconfig() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("k8s-standin-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn make_world_readable(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        std::fs::set_permissions(entry?.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
