//! Wire-level checks with a raw HTTP/1.1 client, for what libraries hide: the exact
//! requests Patroni's hand-written client sends (no Content-Type, `watch=True`), chunked
//! transfer encoding of watches, discovery documents and the seed file loader.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use k8s_standin::{StandIn, Store};

/// A raw response: status, lower-cased headers, de-chunked body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request on a fresh connection (blocking std I/O, so it runs in
/// `spawn_blocking`) and reads until the server closes it.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Raw {
    let request = {
        let mut r = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(body);
        r
    };
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read response");
        parse_response(&bytes)
    })
    .await
    .unwrap()
}

fn parse_response(bytes: &[u8]) -> Raw {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size line");
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Raw {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn patroni_style_requests() {
    let handle = StandIn::start("127.0.0.1:0").await.unwrap();
    let addr = handle.addr();
    let base = "/api/v1/namespaces/demo";

    // Patroni's create: no Content-Type, no kind/apiVersion, nulls inside.
    let body = json!({"metadata": {"name": "pgk8s", "namespace": "demo", "labels": {"application": "patroni", "cluster-name": "pgk8s"},
                      "annotations": {"leader": "pgk8s-0"}},
                      "subsets": [{"addresses": [{"ip": "127.0.0.1", "hostname": null}], "ports": [{"name": "postgresql", "port": 5432}]}]});
    let created = raw(
        addr,
        "POST",
        &format!("{base}/endpoints"),
        &[],
        &body.to_string(),
    )
    .await;
    assert_eq!(created.status, 201);
    let created = created.json();
    assert_eq!(
        (created["kind"].as_str(), created["apiVersion"].as_str()),
        (Some("Endpoints"), Some("v1"))
    );
    assert!(
        created["subsets"][0]["addresses"][0]
            .get("hostname")
            .is_none(),
        "nulls are not stored"
    );
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // List with the label selector carries metadata.resourceVersion; items carry no kind.
    let list = raw(
        addr,
        "GET",
        &format!("{base}/endpoints?labelSelector=application%3Dpatroni%2Ccluster-name%3Dpgk8s"),
        &[],
        "",
    )
    .await;
    let list = list.json();
    assert_eq!(list["kind"], "EndpointsList");
    assert_eq!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        rv
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("kind").is_none());

    // Leader-lock CAS: strategic merge patch with resourceVersion; null deletes an annotation.
    let smp = [("Content-Type", "application/strategic-merge-patch+json")];
    let cas = json!({"metadata": {"resourceVersion": rv.to_string(), "annotations": {"leader": null, "renewTime": "now"}}});
    let patched = raw(
        addr,
        "PATCH",
        &format!("{base}/endpoints/pgk8s"),
        &smp,
        &cas.to_string(),
    )
    .await;
    assert_eq!(patched.status, 200);
    let patched = patched.json();
    assert_eq!(
        patched["metadata"]["annotations"],
        json!({"renewTime": "now"})
    );
    let again = raw(
        addr,
        "PATCH",
        &format!("{base}/endpoints/pgk8s"),
        &smp,
        &cas.to_string(),
    )
    .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["reason"], "Conflict");

    // The watch Patroni opens: watch=True from the list's revision, chunked, one JSON
    // event per line, and it includes the change made after the list.
    let watch = raw(addr, "GET", &format!("{base}/endpoints?labelSelector=application%3Dpatroni&watch=True&resourceVersion={rv}&timeoutSeconds=1"), &[], "").await;
    assert_eq!(watch.status, 200);
    assert_eq!(watch.header("transfer-encoding"), Some("chunked"));
    assert_eq!(watch.header("content-type"), Some("application/json"));
    let text = String::from_utf8(watch.body).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(
        events[0]["object"]["kind"], "Endpoints",
        "Patroni tells pods from endpoints by kind"
    );
    assert_eq!(
        events[0]["object"]["metadata"]["resourceVersion"],
        patched["metadata"]["resourceVersion"]
    );

    // An unknown patch content type is 415, a missing object 404 with a Status body.
    let bad = raw(
        addr,
        "PATCH",
        &format!("{base}/endpoints/pgk8s"),
        &[("Content-Type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(bad.status, 415);
    let dry = raw(
        addr,
        "POST",
        &format!("{base}/configmaps?dryRun=All"),
        &[],
        r#"{"metadata":{"name":"x"}}"#,
    )
    .await;
    assert_eq!(dry.status, 400, "dry runs are refused, never persisted");
    let missing = raw(addr, "DELETE", &format!("{base}/endpoints/nope"), &[], "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["details"],
        json!({"name": "nope", "kind": "endpoints"})
    );
}

#[tokio::test]
async fn watch_without_revision_starts_with_current_state_and_bookmarks() {
    let store = std::sync::Arc::new(Store::new());
    store
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "demo"}}))
        .unwrap();
    let options = k8s_standin::ServerOptions {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let handle = StandIn::start_with("127.0.0.1:0", store, options)
        .await
        .unwrap();
    let watch = raw(
        handle.addr(),
        "GET",
        "/api/v1/namespaces/demo/configmaps?watch=true&allowWatchBookmarks=true&timeoutSeconds=1",
        &[],
        "",
    )
    .await;
    let text = String::from_utf8(watch.body).unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types[0], "ADDED", "{text}");
    assert!(
        types[1..].iter().all(|t| t == "BOOKMARK") && types.len() >= 3,
        "{text}"
    );
}

#[tokio::test]
async fn watch_ends_when_the_client_disconnects() {
    let handle = StandIn::start("127.0.0.1:0").await.unwrap();
    let addr = handle.addr();
    let store = handle.store().clone();
    // Open a watch, read the response head, then drop the connection — what Patroni's
    // kill_stream() does to its watches after a failed leader-lock update.
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET /api/v1/namespaces/demo/pods?watch=True HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 64];
        stream.read_exact(&mut head).unwrap();
        assert!(head.starts_with(b"HTTP/1.1 200"));
        stream.shutdown(std::net::Shutdown::Both).unwrap();
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.live_receivers() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn discovery_documents() {
    let handle = StandIn::start("127.0.0.1:0").await.unwrap();
    let addr = handle.addr();
    assert_eq!(
        raw(addr, "GET", "/version", &[], "").await.json()["major"],
        "1"
    );
    assert_eq!(
        raw(addr, "GET", "/api", &[], "").await.json()["versions"],
        json!(["v1"])
    );
    let core = raw(addr, "GET", "/api/v1", &[], "").await.json();
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for expected in [
        "pods",
        "pods/status",
        "endpoints",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "nodes",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let groups = raw(addr, "GET", "/apis", &[], "").await.json();
    assert_eq!(groups["groups"][0]["name"], "apps");
    let apps = raw(addr, "GET", "/apis/apps/v1", &[], "").await.json();
    assert_eq!(apps["resources"][0]["kind"], "StatefulSet");
    assert_eq!(
        raw(addr, "GET", "/apis/batch/v1", &[], "").await.status,
        404
    );
    assert_eq!(
        raw(addr, "GET", "/api/v1/widgets", &[], "").await.status,
        404
    );
}

#[tokio::test]
async fn kubeconfig_and_seed_file() {
    let dir = std::env::temp_dir().join(format!("k8s-standin-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.yaml");
    std::fs::write(
        &seed,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\n\
         apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: pg-0, namespace: demo, labels: {app: pg}}}\n\
         - {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: pg, namespace: demo}, spec: {replicas: 1}}\n",
    )
    .unwrap();
    let store = Store::new();
    assert_eq!(k8s_standin::seed_from_file(&store, &seed).unwrap(), 3);
    assert_eq!(store.list("pods", Some("demo"), "app=pg").unwrap().len(), 1);
    assert!(store.get("sts", "demo", "pg").is_some());
    std::fs::write(&seed, "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n").unwrap();
    let err = k8s_standin::seed_from_file(&store, &seed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Widget"), "{err}");

    let handle = StandIn::start("127.0.0.1:0").await.unwrap();
    let path = dir.join("kubeconfig");
    handle.write_kubeconfig(&path, "demo").unwrap();
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config["clusters"][0]["cluster"]["server"], handle.url());
    assert_eq!(config["contexts"][0]["context"]["namespace"], "demo");
    assert_eq!(config["current-context"], k8s_standin::KUBECONFIG_CONTEXT);
    std::fs::remove_dir_all(&dir).unwrap();
}
