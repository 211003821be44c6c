//! The production Kubernetes backend against the Kubernetes API stand-in (real `kube`
//! client, real HTTP), plus tiny fake servers for the failures a real API server cannot be
//! made to produce on demand.

use std::time::Duration;

use charm_host::backends::kubernetes::KubernetesBackend;
use charm_host::bindings::ErrorKind;
use charm_host::bindings::kubernetes::{ObjectKind, OwnerReference, Service, ServicePort};
use charm_host::bindings::types::Kv;
use charm_host::capability::Kubernetes;
use k8s_standin::{Fault, StandIn};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NS: &str = "pg-model";
const APP: &str = "postgresql-k8s";

fn kv(k: &str, v: &str) -> Kv {
    Kv::new(k, v)
}

fn sts_owner() -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: APP.into(),
        uid: "sts-uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn seeded() -> (k8s_standin::Handle, KubernetesBackend) {
    let h = StandIn::start("127.0.0.1:0").await.unwrap();
    let s = h.store();
    s.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "postgresql-k8s-0", "namespace": NS,
            "labels": {"app.kubernetes.io/name": APP},
            "annotations": {"juju.is/version": "3.6.11"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": APP, "uid": "sts-uid-1", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": "node-1", "containers": [
            {"name": "charm", "image": "charm"},
            {"name": "postgresql", "image": "pg", "resources": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m"}}}]},
        "status": {"podIP": "10.1.2.3"},
    }))
    .unwrap();
    s.create(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"allocatable": {"cpu": "8", "memory": "32823420Ki", "pods": "110"}}}),
    )
    .unwrap();
    s.create(json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": APP, "namespace": NS},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/name": APP}}, "template": {}}}))
    .unwrap();
    s.create(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "patroni-postgresql-k8s", "namespace": NS,
        "labels": {"application": "patroni", "cluster-name": "patroni-postgresql-k8s"},
        "annotations": {"leader": "postgresql-k8s-0", "ttl": "30"}}}))
    .unwrap();
    s.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "patroni-postgresql-k8s-config", "namespace": NS,
        "labels": {"application": "patroni", "cluster-name": "patroni-postgresql-k8s"}}, "spec": {"clusterIP": "None"}}))
    .unwrap();
    let k = KubernetesBackend::from_url(&h.url(), NS, APP).unwrap();
    (h, k)
}

fn stored(h: &k8s_standin::Handle, resource: &str, name: &str) -> Value {
    h.store()
        .get(resource, NS, name)
        .unwrap_or_else(|| panic!("{resource}/{name} is not stored"))
}

#[tokio::test]
async fn pods_labels_nodes_and_statefulsets() {
    let (h, k) = seeded().await;
    let pod = k.get_pod("postgresql-k8s-0".into()).await.unwrap();
    assert_eq!(pod.name, "postgresql-k8s-0");
    assert_eq!(pod.labels, vec![kv("app.kubernetes.io/name", APP)]);
    assert_eq!(pod.annotations, vec![kv("juju.is/version", "3.6.11")]);
    assert_eq!(pod.owner_references, vec![sts_owner()]);
    assert_eq!(pod.node_name.as_deref(), Some("node-1"));
    assert_eq!(pod.pod_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(pod.containers.len(), 2);
    let pg = &pod.containers[1];
    assert_eq!(
        (pg.name.as_str(), pg.limits.clone(), pg.requests.clone()),
        (
            "postgresql",
            vec![kv("cpu", "2"), kv("memory", "4Gi")],
            vec![kv("cpu", "500m")]
        )
    );
    assert!(pod.containers[0].limits.is_empty());

    // Strategic merge: the labels are added, the existing one stays.
    k.patch_pod_labels(
        "postgresql-k8s-0".into(),
        vec![
            kv("application", "patroni"),
            kv("cluster-name", "patroni-postgresql-k8s"),
        ],
    )
    .await
    .unwrap();
    let labels = &stored(&h, "pods", "postgresql-k8s-0")["metadata"]["labels"];
    assert_eq!(
        labels,
        &json!({"app.kubernetes.io/name": APP, "application": "patroni", "cluster-name": "patroni-postgresql-k8s"})
    );

    let node = k.get_node_allocatable("node-1".into()).await.unwrap();
    assert_eq!(
        (node.cpu.as_str(), node.memory.as_str()),
        ("8", "32823420Ki")
    );

    k.patch_statefulset_partition(APP.into(), 2).await.unwrap();
    let sts = stored(&h, "statefulsets", APP);
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        json!(2)
    );
    assert_eq!(
        sts["spec"]["replicas"],
        json!(3),
        "the patch touched nothing else"
    );
}

fn primary_service() -> Service {
    Service {
        name: "postgresql-k8s-primary".into(),
        labels: vec![kv("app.kubernetes.io/name", APP)],
        selector: vec![
            kv("app.kubernetes.io/name", APP),
            kv("cluster-name", "patroni-postgresql-k8s"),
            kv("role", "primary"),
        ],
        ports: vec![
            ServicePort {
                name: "api".into(),
                port: 8008,
                target_port: 8008,
                protocol: "TCP".into(),
            },
            ServicePort {
                name: "database".into(),
                port: 5432,
                target_port: 5432,
                protocol: "TCP".into(),
            },
        ],
        service_type: "ClusterIP".into(),
        owner_references: vec![sts_owner()],
    }
}

#[tokio::test]
async fn services_apply_get_list_delete() {
    let (h, k) = seeded().await;
    k.apply_service(primary_service()).await.unwrap();
    // Applying again is idempotent (server-side apply, forced).
    k.apply_service(primary_service()).await.unwrap();
    let raw = stored(&h, "services", "postgresql-k8s-primary");
    assert_eq!(
        raw["spec"]["ports"][1],
        json!({"name": "database", "port": 5432, "targetPort": 5432, "protocol": "TCP"})
    );
    assert_eq!(
        raw["metadata"]["ownerReferences"][0]["uid"],
        json!("sts-uid-1")
    );

    let got = k
        .get_service("postgresql-k8s-primary".into())
        .await
        .unwrap();
    assert_eq!(got, primary_service());

    let by_app = k
        .list_services(vec![kv("app.kubernetes.io/name", APP)])
        .await
        .unwrap();
    assert_eq!(
        by_app.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["postgresql-k8s-primary"]
    );
    let patroni = k
        .list_services(vec![
            kv("application", "patroni"),
            kv("cluster-name", "patroni-postgresql-k8s"),
        ])
        .await
        .unwrap();
    assert_eq!(patroni.len(), 1);
    assert_eq!(
        patroni[0].service_type, "",
        "a headless service created elsewhere has no type"
    );
    assert_eq!(k.list_services(vec![]).await.unwrap().len(), 2);

    k.delete_service("postgresql-k8s-primary".into())
        .await
        .unwrap();
    let gone = k
        .get_service("postgresql-k8s-primary".into())
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound, "{gone:?}");
    assert_eq!(
        k.delete_service("postgresql-k8s-primary".into())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn endpoints_annotations_and_owner_references() {
    let (h, k) = seeded().await;
    let e = k
        .get_endpoints("patroni-postgresql-k8s".into())
        .await
        .unwrap();
    assert_eq!(
        e.annotations,
        vec![kv("leader", "postgresql-k8s-0"), kv("ttl", "30")]
    );
    assert!(e.owner_references.is_empty());

    // Set one annotation, remove another (null in the strategic merge patch).
    k.patch_endpoints_annotations(
        "patroni-postgresql-k8s".into(),
        vec![
            ("leader".into(), Some("postgresql-k8s-1".into())),
            ("ttl".into(), None),
        ],
    )
    .await
    .unwrap();
    let anns = &stored(&h, "endpoints", "patroni-postgresql-k8s")["metadata"]["annotations"];
    assert_eq!(anns, &json!({"leader": "postgresql-k8s-1"}));

    let listed = k
        .list_endpoints(vec![kv("application", "patroni")])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        k.list_endpoints(vec![kv("application", "other")])
            .await
            .unwrap()
            .is_empty()
    );

    // The stop hook's fix: the StatefulSet becomes the owner; nothing else changes.
    k.set_owner_references(
        ObjectKind::Endpoints,
        "patroni-postgresql-k8s".into(),
        vec![sts_owner()],
    )
    .await
    .unwrap();
    let raw = stored(&h, "endpoints", "patroni-postgresql-k8s");
    assert_eq!(
        raw["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": APP, "uid": "sts-uid-1", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        raw["metadata"]["annotations"],
        json!({"leader": "postgresql-k8s-1"})
    );
    let rv = raw["metadata"]["resourceVersion"].clone();
    // Already owned as asked: no write at all.
    k.set_owner_references(
        ObjectKind::Endpoints,
        "patroni-postgresql-k8s".into(),
        vec![sts_owner()],
    )
    .await
    .unwrap();
    assert_eq!(
        stored(&h, "endpoints", "patroni-postgresql-k8s")["metadata"]["resourceVersion"],
        rv
    );

    k.set_owner_references(
        ObjectKind::Service,
        "patroni-postgresql-k8s-config".into(),
        vec![sts_owner()],
    )
    .await
    .unwrap();
    let svc = stored(&h, "services", "patroni-postgresql-k8s-config");
    assert_eq!(svc["metadata"]["ownerReferences"][0]["name"], json!(APP));
    assert_eq!(svc["spec"]["clusterIP"], json!("None"));

    // A missing object is reported, not created by the apply.
    let err = k
        .set_owner_references(
            ObjectKind::Endpoints,
            "patroni-postgresql-k8s-sync".into(),
            vec![sts_owner()],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        h.store()
            .get("endpoints", NS, "patroni-postgresql-k8s-sync")
            .is_none()
    );

    k.delete_endpoints("patroni-postgresql-k8s".into())
        .await
        .unwrap();
    assert_eq!(
        k.get_endpoints("patroni-postgresql-k8s".into())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn api_errors_map_to_kinds_and_keep_the_status_message() {
    let (h, k) = seeded().await;

    let nf = k.get_pod("postgresql-k8s-9".into()).await.unwrap_err();
    assert_eq!(nf.kind, ErrorKind::NotFound);
    assert!(
        nf.message.contains("pods \"postgresql-k8s-9\" not found") && nf.message.contains("404"),
        "{}",
        nf.message
    );

    // RBAC: an untrusted application (`juju trust` not run).
    h.controls().set_deny_all(true);
    let f = k.get_node_allocatable("node-1".into()).await.unwrap_err();
    assert_eq!(f.kind, ErrorKind::Forbidden, "{f:?}");
    assert!(
        f.message.contains("forbidden") && f.message.contains("403"),
        "{}",
        f.message
    );
    assert_eq!(
        k.apply_service(primary_service()).await.unwrap_err().kind,
        ErrorKind::Forbidden
    );
    h.controls().allow_all();
    h.controls()
        .deny(k8s_standin::DenyRule::new("patch", "pods"));
    assert_eq!(
        k.patch_pod_labels("postgresql-k8s-0".into(), vec![kv("a", "b")])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Forbidden
    );
    assert!(
        k.get_pod("postgresql-k8s-0".into()).await.is_ok(),
        "only the denied verb is refused"
    );
    h.controls().allow_all();

    for (code, kind) in [
        (500, ErrorKind::Other),
        (409, ErrorKind::Conflict),
        (422, ErrorKind::Invalid),
        (400, ErrorKind::Invalid),
        (504, ErrorKind::Timeout),
        (503, ErrorKind::Other),
    ] {
        h.controls().inject(Fault::new(code).method("GET").times(1));
        let e = k.get_pod("postgresql-k8s-0".into()).await.unwrap_err();
        assert_eq!(e.kind, kind, "HTTP {code}: {e:?}");
        assert!(e.message.contains(&code.to_string()), "{}", e.message);
    }
    assert!(
        k.get_pod("postgresql-k8s-0".into()).await.is_ok(),
        "faults were used up"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let k = KubernetesBackend::from_url(&format!("http://127.0.0.1:{port}"), NS, APP).unwrap();
    let e = k.get_pod("x".into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");
    assert!(
        e.message.to_lowercase().contains("refused"),
        "{}",
        e.message
    );
}

/// A one-trick HTTP server: answers every request with `reply` (None: never answers).
async fn fake_server(reply: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                match reply {
                    Some(r) => {
                        let _ = sock.write_all(r).await;
                        let _ = sock.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn garbage_responses_map_to_kinds() {
    // 200 with an HTML body: not the API's JSON.
    let url = fake_server(Some(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\nConnection: close\r\n\r\n<html>hello</html>\r\n")).await;
    let e = KubernetesBackend::from_url(&url, NS, APP)
        .unwrap()
        .get_pod("x".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Other, "{e:?}");
    assert!(e.message.contains("deserializ"), "{}", e.message);

    // An error status with a non-Status body (a proxy's page): the code still decides.
    let url = fake_server(Some(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nproxy says no")).await;
    let e = KubernetesBackend::from_url(&url, NS, APP)
        .unwrap()
        .get_pod("x".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");
    assert!(e.message.contains("proxy says no"), "{}", e.message);

    // The connection closes mid-body.
    let url = fake_server(Some(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"kind\":\"Pod\",\"apiVer")).await;
    let e = KubernetesBackend::from_url(&url, NS, APP)
        .unwrap()
        .get_pod("x".into())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unreachable, "{e:?}");

    // Accepts, never answers: the request deadline.
    let url = fake_server(None).await;
    let k = KubernetesBackend::from_url(&url, NS, APP)
        .unwrap()
        .with_request_timeout(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let e = k.get_pod("x".into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The same through the client's own read timeout (an io TimedOut deep in the chain).
    let mut config = kube::Config::new(url.parse().unwrap());
    config.read_timeout = Some(Duration::from_millis(300));
    let k = KubernetesBackend::from_config(config, NS, APP).unwrap();
    let e = k.get_pod("x".into()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e:?}");
}
