//! The real `kube` client against the stand-in over plain HTTP: if kube-rs can drive it,
//! the wire format (paths, query parameters, content types, Status errors, chunked watch
//! streams) is right.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;

use k8s_standin::{DenyRule, Fault, Handle, StandIn};

const NS: &str = "demo";
/// Upper bound for any single wait on the server, so a broken stream fails the test
/// instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

async fn start() -> (Handle, Client) {
    let handle = StandIn::start("127.0.0.1:0").await.expect("bind");
    let config = Config::new(handle.url().parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    (handle, client)
}

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app, "tier": "db"}},
        "spec": {"containers": [{"name": "postgresql", "image": "postgres:15",
                                  "ports": [{"containerPort": 5432, "name": "pg"}]}]}
    }))
    .unwrap()
}

fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn pods_crud_with_every_patch_flavour() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    let created = pods
        .create(&PostParams::default(), &pod("pg-0", "pg"))
        .await?;
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some(NS));
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    pods.create(&PostParams::default(), &pod("pg-1", "pg"))
        .await?;
    pods.create(&PostParams::default(), &pod("other", "web"))
        .await?;
    let (code, reason) = api_error(
        pods.create(&PostParams::default(), &pod("pg-0", "pg"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let got = pods.get("pg-0").await?;
    assert_eq!(got.metadata.resource_version, meta.resource_version);

    // Label selectors: equality, set and existence operators.
    let names = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(pods.list(&ListParams::default().labels("app=pg")).await?),
        ["pg-0", "pg-1"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app notin (pg),tier"))
                .await?
        ),
        ["other"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app in (pg,web),!missing"))
                .await?
        )
        .len(),
        3
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().fields("metadata.name=pg-1"))
                .await?
        ),
        ["pg-1"]
    );
    let listed = pods.list(&ListParams::default()).await?;
    assert!(
        listed.metadata.resource_version.is_some(),
        "lists carry a resourceVersion"
    );

    // Strategic merge: containers merge by name, ports by containerPort.
    let patch = json!({"metadata": {"labels": {"role": "primary"}},
                       "spec": {"containers": [{"name": "postgresql", "ports": [{"containerPort": 8008, "name": "api"}]}]}});
    let p = pods
        .patch("pg-0", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let container = &p.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("postgres:15"),
        "strategic merge keeps unpatched fields"
    );
    assert_eq!(container.ports.as_ref().unwrap().len(), 2);
    assert_eq!(p.metadata.labels.as_ref().unwrap()["role"], "primary");

    // Merge patch: null deletes.
    let p = pods
        .patch(
            "pg-0",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"role": null}, "annotations": {"a": "1"}}}),
            ),
        )
        .await?;
    assert!(!p.metadata.labels.as_ref().unwrap().contains_key("role"));
    assert_eq!(p.metadata.annotations.as_ref().unwrap()["a"], "1");

    // JSON patch (sent raw: kube's typed Patch::Json needs an extra feature).
    let request = http::Request::patch(format!("/api/v1/namespaces/{NS}/pods/pg-0"))
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&json!([
            {"op": "test", "path": "/metadata/annotations/a", "value": "1"},
            {"op": "add", "path": "/metadata/annotations/b", "value": "2"},
            {"op": "remove", "path": "/metadata/annotations/a"}
        ]))?)?;
    let p: Pod = client.request(request).await?;
    assert_eq!(
        p.metadata
            .annotations
            .clone()
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [("b".to_string(), "2".to_string())]
    );

    // Server-side apply with force, on an existing object and as a create.
    let applied = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pg-0", "labels": {"applied": "yes"}}});
    let p = pods
        .patch(
            "pg-0",
            &PatchParams::apply("standin-test").force(),
            &Patch::Apply(&applied),
        )
        .await?;
    assert_eq!(p.metadata.labels.as_ref().unwrap()["applied"], "yes");
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "pg");
    let fresh = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pg-2", "labels": {"app": "pg"}},
                       "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let p = pods
        .patch(
            "pg-2",
            &PatchParams::apply("standin-test").force(),
            &Patch::Apply(&fresh),
        )
        .await?;
    assert!(p.metadata.uid.is_some(), "apply creates a missing object");

    // Replace with the current resourceVersion; a spec change bumps generation.
    let mut current = pods.get("pg-0").await?;
    current.spec.as_mut().unwrap().hostname = Some("pg-0".into());
    let replaced = pods
        .replace("pg-0", &PostParams::default(), &current)
        .await?;
    assert_eq!(replaced.spec.unwrap().hostname.as_deref(), Some("pg-0"));
    assert!(replaced.metadata.generation.unwrap() > 1);

    // Delete returns the object; afterwards it is gone.
    let deleted = pods.delete("pg-1", &DeleteParams::default()).await?;
    assert_eq!(
        deleted.left().and_then(|p| p.metadata.name).as_deref(),
        Some("pg-1")
    );
    let (code, reason) = api_error(pods.get("pg-1").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let (code, _) = api_error(
        pods.delete("pg-1", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);

    // Delete collection by label.
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=pg"),
    )
    .await?;
    assert_eq!(names(pods.list(&ListParams::default()).await?), ["other"]);
    Ok(())
}

#[tokio::test]
async fn other_types_round_trip() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let pp = PostParams::default();

    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "pg"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}))?;
    services.create(&pp, &svc).await?;
    let s = services
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "api", "port": 8008}]}})),
        )
        .await?;
    assert_eq!(
        s.spec.unwrap().ports.unwrap().len(),
        2,
        "service ports merge by port"
    );

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NS);
    let ep: Endpoints = serde_json::from_value(
        json!({"metadata": {"name": "pg", "annotations": {"leader": "pg-0"}},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "pg", "port": 5432}]}]}),
    )?;
    endpoints.create(&pp, &ep).await?;
    let e = endpoints
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Strategic(json!({"subsets": [{"addresses": [{"ip": "127.0.0.2"}]}]})),
        )
        .await?;
    let subsets = e.subsets.unwrap();
    assert_eq!(
        subsets.len(),
        1,
        "Endpoints subsets are replaced, not merged"
    );
    assert!(subsets[0].ports.is_none());

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}}))?;
    configmaps.create(&pp, &cm).await?;
    let c = configmaps
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await?;
    assert_eq!(c.data.unwrap().len(), 2);
    configmaps.delete("cfg", &DeleteParams::default()).await?;
    assert!(configmaps.get_opt("cfg").await?.is_none());

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "pg"}, "spec": {
        "replicas": 3, "serviceName": "pg", "selector": {"matchLabels": {"app": "pg"}},
        "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:15"}]}}}}))?;
    statefulsets.create(&pp, &sts).await?;
    let s = statefulsets
        .patch(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await?;
    assert_eq!(s.spec.replicas, Some(1));
    assert_eq!(s.metadata.generation, Some(2));
    // The status subresource changes status only.
    let s = statefulsets
        .patch_status(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"replicas": 1, "readyReplicas": 1}, "spec": {"replicas": 5}}),
            ),
        )
        .await?;
    assert_eq!(
        (s.status.unwrap().ready_replicas, s.spec.replicas),
        (Some(1), Some(1))
    );
    // The scale subresource (kubectl scale) reads and writes spec.replicas.
    let scale = statefulsets.get_scale("pg").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(
        scale.status.map(|s| s.selector),
        Some(Some("app=pg".to_string()))
    );
    statefulsets
        .patch_scale(
            "pg",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    assert_eq!(statefulsets.get("pg").await?.spec.replicas, Some(3));

    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": "node-1", "labels": {"zone": "a"}}}))?;
    let n = nodes.create(&pp, &node).await?;
    assert!(n.metadata.namespace.is_none(), "nodes are cluster-scoped");
    assert_eq!(
        nodes
            .list(&ListParams::default().labels("zone=a"))
            .await?
            .items
            .len(),
        1
    );
    nodes.delete("node-1", &DeleteParams::default()).await?;

    // All-namespace list of a namespaced type.
    let all_services: Api<Service> = Api::all(client);
    assert_eq!(
        all_services.list(&ListParams::default()).await?.items.len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn not_found_parses_into_api_error() {
    let (_handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    match pods.get("missing").await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.reason, "NotFound");
            assert_eq!(status.message, "pods \"missing\" not found");
            assert!(status.is_not_found());
        }
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_writes_conflict() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let endpoints: Api<Endpoints> = Api::namespaced(client, NS);
    let ep: Endpoints = serde_json::from_value(json!({"metadata": {"name": "pgk8s"}}))?;
    let v1 = endpoints.create(&PostParams::default(), &ep).await?;
    let mut v2 = v1.clone();
    v2.metadata.annotations = Some([("leader".to_string(), "pg-0".to_string())].into());
    endpoints
        .replace("pgk8s", &PostParams::default(), &v2)
        .await?;

    // Replacing again from the stale copy loses the race.
    let (code, reason) = api_error(
        endpoints
            .replace("pgk8s", &PostParams::default(), &v2)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    // Patroni's leader lock: a patch carrying metadata.resourceVersion is compare-and-swap.
    let stale_rv = v1.metadata.resource_version.unwrap();
    let cas = json!({"metadata": {"resourceVersion": stale_rv, "annotations": {"leader": "pg-1"}}});
    let (code, _) = api_error(
        endpoints
            .patch("pgk8s", &PatchParams::default(), &Patch::Strategic(&cas))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    let current_rv = endpoints
        .get("pgk8s")
        .await?
        .metadata
        .resource_version
        .unwrap();
    let cas =
        json!({"metadata": {"resourceVersion": current_rv, "annotations": {"leader": "pg-1"}}});
    let won = endpoints
        .patch("pgk8s", &PatchParams::default(), &Patch::Strategic(&cas))
        .await?;
    assert_eq!(won.metadata.annotations.unwrap()["leader"], "pg-1");

    // Endpoints can be created by PUT (AllowCreateOnUpdate), pods cannot.
    let fresh: Endpoints = serde_json::from_value(json!({"metadata": {"name": "by-put"}}))?;
    endpoints
        .replace("by-put", &PostParams::default(), &fresh)
        .await?;
    let pods: Api<Pod> = Api::namespaced(endpoints.into_client(), NS);
    let (code, _) = api_error(
        pods.replace("by-put", &PostParams::default(), &pod("by-put", "pg"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
    Ok(())
}

#[tokio::test]
async fn rbac_switch_forbids() -> anyhow::Result<()> {
    let (handle, client) = start().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, NS);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}}))?;

    handle
        .controls()
        .deny(DenyRule::new("create", "configmaps"));
    match configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap_err()
    {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert!(
                status
                    .message
                    .contains("cannot create resource \"configmaps\""),
                "{}",
                status.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    configmaps.list(&ListParams::default()).await?; // other verbs still allowed

    handle.controls().allow_all();
    configmaps.create(&PostParams::default(), &cm).await?;

    handle.controls().set_deny_all(true);
    let (code, _) = api_error(configmaps.get("cfg").await.unwrap_err());
    assert_eq!(code, 403);
    handle.controls().allow_all();
    configmaps.get("cfg").await?;
    Ok(())
}

#[tokio::test]
async fn injected_fault_surfaces() -> anyhow::Result<()> {
    let (handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    pods.create(&PostParams::default(), &pod("pg-0", "pg"))
        .await?;
    handle.controls().inject(
        Fault::new(500)
            .method("GET")
            .path_prefix(format!("/api/v1/namespaces/{NS}/pods"))
            .times(2),
    );
    for _ in 0..2 {
        let (code, reason) = api_error(pods.get("pg-0").await.unwrap_err());
        assert_eq!((code, reason.as_str()), (500, "InternalError"));
    }
    pods.get("pg-0").await?; // the fault is used up
    Ok(())
}

#[tokio::test]
async fn list_paging_with_limit_and_continue() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    for i in 0..5 {
        pods.create(&PostParams::default(), &pod(&format!("pg-{i}"), "pg"))
            .await?;
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = pods.list(&params).await?;
        seen.extend(page.items.into_iter().map(|p| p.metadata.name.unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(2).continue_token(&token),
            None => break,
        }
    }
    assert_eq!(seen, ["pg-0", "pg-1", "pg-2", "pg-3", "pg-4"]);
    Ok(())
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin),
) -> WatchEvent<Pod> {
    loop {
        let event = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("watch event within the deadline")
            .expect("stream still open")
            .expect("event decodes");
        if !matches!(event, WatchEvent::Bookmark(_)) {
            return event;
        }
    }
}

#[tokio::test]
async fn api_watch_streams_changes() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    pods.create(&PostParams::default(), &pod("before", "pg"))
        .await?;
    let rv = pods
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap();

    let mut stream = pods
        .watch(&WatchParams::default().labels("app=pg").timeout(30), &rv)
        .await?
        .boxed();
    pods.create(&PostParams::default(), &pod("pg-0", "pg"))
        .await?;
    pods.create(&PostParams::default(), &pod("web", "web"))
        .await?; // filtered out
    pods.patch(
        "pg-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"x": "y"}}})),
    )
    .await?;
    // Leaving the selection shows as DELETED to a filtered watch.
    pods.patch(
        "pg-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
    )
    .await?;
    pods.delete("before", &DeleteParams::default()).await?;

    let name = |p: &Pod| p.metadata.name.clone().unwrap();
    match next_event(&mut stream).await {
        WatchEvent::Added(p) => assert_eq!(name(&p), "pg-0"),
        other => panic!("expected Added, got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Modified(p) => assert_eq!(p.metadata.annotations.unwrap()["x"], "y"),
        other => panic!("expected Modified, got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Deleted(p) => assert_eq!(name(&p), "pg-0"),
        other => panic!("expected Deleted (left selection), got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Deleted(p) => assert_eq!(name(&p), "before"),
        other => panic!("expected Deleted, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn watch_from_compacted_revision_is_gone() -> anyhow::Result<()> {
    let store = std::sync::Arc::new(k8s_standin::Store::with_history(3));
    let handle = StandIn::start_with("127.0.0.1:0", store, Default::default()).await?;
    let client = Client::try_from(Config::new(handle.url().parse()?))?;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    for i in 0..6 {
        pods.create(&PostParams::default(), &pod(&format!("pg-{i}"), "pg"))
            .await?;
    }
    let mut stream = pods.watch(&WatchParams::default(), "1").await?.boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn runtime_watcher_inits_then_applies() -> anyhow::Result<()> {
    let (_handle, client) = start().await;
    let pods: Api<Pod> = Api::namespaced(client, NS);
    pods.create(&PostParams::default(), &pod("pg-0", "pg"))
        .await?;

    let mut events = watcher(pods.clone(), watcher::Config::default().labels("app=pg")).boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("watcher event within the deadline")
            .expect("watcher ok")
            .expect("stream open")
    };
    assert!(matches!(next().await, watcher::Event::Init));
    match next().await {
        watcher::Event::InitApply(p) => assert_eq!(p.metadata.name.as_deref(), Some("pg-0")),
        other => panic!("expected InitApply, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::InitDone));

    pods.patch(
        "pg-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"role": "primary"}}})),
    )
    .await?;
    match next().await {
        watcher::Event::Apply(p) => assert_eq!(p.metadata.labels.unwrap()["role"], "primary"),
        other => panic!("expected Apply, got {other:?}"),
    }
    pods.delete("pg-0", &DeleteParams::default()).await?;
    assert!(matches!(next().await, watcher::Event::Delete(_)));
    Ok(())
}

/// The store's event subscription is enough to simulate a controller: here a toy
/// StatefulSet controller creates one pod per replica, as Kubernetes would.
#[tokio::test]
async fn store_subscription_drives_a_simulated_controller() -> anyhow::Result<()> {
    let (handle, client) = start().await;
    let store = handle.store().clone();
    let mut events = store.subscribe();
    let controller = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if event.resource.kind != "StatefulSet"
                || event.event_type == k8s_standin::EventType::Deleted
            {
                continue;
            }
            let sts = &event.object;
            let name = sts["metadata"]["name"].as_str().unwrap_or_default();
            for i in 0..sts["spec"]["replicas"].as_u64().unwrap_or(1) {
                let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-{i}"), "namespace": event.namespace,
                                 "labels": sts["spec"]["template"]["metadata"]["labels"]},
                    "spec": sts["spec"]["template"]["spec"], "status": {"phase": "Running", "podIP": "127.0.0.1"}});
                if store
                    .get("pods", &event.namespace, &format!("{name}-{i}"))
                    .is_none()
                {
                    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                        "uid": sts["metadata"]["uid"], "controller": true}]);
                    store.upsert(pod).expect("controller writes pods");
                }
            }
        }
    });

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts: StatefulSet = serde_json::from_value(json!({"metadata": {"name": "pg"}, "spec": {
        "replicas": 2, "serviceName": "pg", "selector": {"matchLabels": {"app": "pg"}},
        "template": {"metadata": {"labels": {"app": "pg"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:15"}]}}}}))?;
    statefulsets.create(&PostParams::default(), &sts).await?;

    let pods: Api<Pod> = Api::namespaced(client, NS);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = pods.list(&ListParams::default().labels("app=pg")).await?;
        if listed.items.len() == 2 {
            let phase = listed.items[0]
                .status
                .as_ref()
                .and_then(|s| s.phase.clone());
            assert_eq!(
                phase.as_deref(),
                Some("Running"),
                "controller-written status is kept"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "simulated controller created no pods"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    Ok(())
}
