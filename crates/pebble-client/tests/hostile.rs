//! Against a fake daemon that misbehaves: every way a reply can be wrong must map to an error
//! of the right kind that names the call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pebble_client::{Client, Error, ErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// What the fake does on one connection, in order; the connection is closed afterwards.
enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
}

/// A complete HTTP/1.1 response.
fn http(status: &str, content_type: &str, body: &str) -> Step {
    Step::Write(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn raw(bytes: &str) -> Step {
    Step::Write(bytes.as_bytes().to_vec())
}

/// A fake daemon; `script` gets the request head and the 0-based request count.
struct Fake {
    _dir: tempfile::TempDir,
    client: Client,
    requests: Arc<AtomicUsize>,
}

fn fake<F>(script: F) -> Fake
where
    F: Fn(&str, usize) -> Vec<Step> + Send + Sync + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.socket");
    let listener = UnixListener::bind(&socket).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let script = script.clone();
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let head = read_head(&mut conn).await;
                for step in script(&head, n) {
                    match step {
                        Step::Write(bytes) => {
                            if conn.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Step::Sleep(d) => tokio::time::sleep(d).await,
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    Fake {
        client: Client::new(&socket).with_request_timeout(Duration::from_secs(2)),
        _dir: dir,
        requests,
    }
}

async fn read_head(conn: &mut tokio::net::UnixStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

const CHANGE_READY: &str = r#"{"type":"sync","status-code":200,"status":"OK","result":{"id":"7","kind":"replan","summary":"s","status":"Done","ready":true,"spawn-time":"2026-01-01T00:00:00Z","tasks":[]}}"#;
const TIMEOUT_504: &str = r#"{"type":"error","status-code":504,"status":"Gateway Timeout","result":{"message":"timed out waiting for change after 4s"}}"#;

#[tokio::test]
async fn garbage_json_is_a_protocol_error() {
    let fake = fake(|_, _| vec![http("200 OK", "application/json", "this is not json{")]);
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Other);
    let text = err.to_string();
    assert!(text.contains("GET /v1/system-info"), "{text}");
    assert!(text.contains("cannot decode the JSON body"), "{text}");
    assert!(text.contains("this is not json"), "{text}");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_protocol_error() {
    let fake = fake(|_, _| {
        vec![http(
            "200 OK",
            "application/json",
            r#"{"type":"sync","result":{"no-version":1}}"#,
        )]
    });
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("version"), "{err}");
}

#[tokio::test]
async fn a_body_cut_short_of_its_length_is_a_connection_error() {
    let fake = fake(|_, _| {
        vec![raw(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"type\":\"sync\",\"result\":{\"vers",
        )]
    });
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Other);
    let text = err.to_string();
    assert!(text.contains("GET /v1/system-info"), "{text}");
    assert!(text.contains("end of file"), "{text}");
}

#[tokio::test]
async fn truncated_json_with_a_matching_length_is_a_protocol_error() {
    let fake = fake(|_, _| {
        vec![http(
            "200 OK",
            "application/json",
            r#"{"type":"sync","result":{"vers"#,
        )]
    });
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[tokio::test]
async fn a_wrong_content_type_is_a_protocol_error() {
    let fake = fake(|_, _| {
        vec![http(
            "200 OK",
            "text/html; charset=utf-8",
            r#"{"type":"sync","result":{"version":"v1"}}"#,
        )]
    });
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Other);
    let text = err.to_string();
    assert!(
        text.contains("expected Content-Type application/json"),
        "{text}"
    );
    assert!(text.contains("text/html"), "{text}");
}

#[tokio::test]
async fn a_connection_closed_mid_headers_is_a_connection_error() {
    let fake = fake(|_, _| vec![raw("HTTP/1.1 200 OK\r\nContent-Ty")]);
    let err = fake.client.plan().await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("GET /v1/plan"), "{err}");
}

#[tokio::test]
async fn a_connection_closed_without_a_reply_is_a_connection_error() {
    let fake = fake(|_, _| vec![]);
    let err = fake.client.services(&[]).await.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("GET /v1/services"), "{err}");
}

#[tokio::test]
async fn a_slow_reply_times_out() {
    let fake = fake(|_, _| {
        vec![
            Step::Sleep(Duration::from_secs(5)),
            http(
                "200 OK",
                "application/json",
                r#"{"type":"sync","result":{"version":"v1"}}"#,
            ),
        ]
    });
    let client = fake
        .client
        .clone()
        .with_request_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = client.system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(300)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("GET /v1/system-info"), "{err}");
}

#[tokio::test]
async fn a_body_that_trickles_past_the_timeout_times_out() {
    let fake = fake(|_, _| {
        let mut steps = vec![raw(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )];
        for _ in 0..50 {
            steps.push(raw(" "));
            steps.push(Step::Sleep(Duration::from_millis(100)));
        }
        steps
    });
    let client = fake
        .client
        .clone()
        .with_request_timeout(Duration::from_millis(500));
    let err = client.system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.socket");
    // Bound then closed: the file stays, nobody listens, connect() is refused.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let err = Client::new(&socket).system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
    let Error::Unreachable { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains("stale.socket"), "{err}");
}

#[tokio::test]
async fn error_envelopes_keep_pebbles_message_and_kind() {
    let fake = fake(|head, _| {
        if head.starts_with("GET /v1/files") {
            vec![http(
                "403 Forbidden",
                "application/json",
                r#"{"type":"error","status-code":403,"status":"Forbidden","result":{"message":"access denied","kind":"permission-denied"}}"#,
            )]
        } else {
            vec![http(
                "409 Conflict",
                "application/json",
                r#"{"type":"error","status-code":409,"status":"Conflict","result":{"message":"already there","value":{"x":1}}}"#,
            )]
        }
    });
    let err = fake
        .client
        .list_files("/etc", None, false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert_eq!(err.pebble_message(), Some("access denied"));
    assert_eq!(err.status(), Some(403));

    let err = fake.client.system_info().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let Error::Api { value, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(value.as_ref().unwrap()["x"], 1);
}

#[tokio::test]
async fn an_error_status_with_a_non_json_body_is_a_protocol_error() {
    let fake = fake(|_, _| vec![http("502 Bad Gateway", "text/plain", "upstream exploded")]);
    let err = fake.client.system_info().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("502") && text.contains("upstream exploded"),
        "{text}"
    );
}

#[tokio::test]
async fn an_async_reply_without_a_change_id_is_a_protocol_error() {
    let fake = fake(|_, _| {
        vec![http(
            "202 Accepted",
            "application/json",
            r#"{"type":"async","status-code":202,"status":"Accepted","result":null}"#,
        )]
    });
    let err = fake.client.replan().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("no change id"), "{err}");
}

#[tokio::test]
async fn wait_change_long_polls_through_gateway_timeouts() {
    let fake = fake(|head, n| {
        assert!(
            head.starts_with("GET /v1/changes/7/wait?timeout="),
            "{head}"
        );
        if n < 2 {
            vec![http("504 Gateway Timeout", "application/json", TIMEOUT_504)]
        } else {
            vec![http("200 OK", "application/json", CHANGE_READY)]
        }
    });
    let change = fake
        .client
        .wait_change("7", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(change.ready);
    assert_eq!(change.id, "7");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn wait_change_gives_up_at_its_deadline() {
    let fake = fake(|_, _| {
        vec![
            Step::Sleep(Duration::from_millis(50)),
            http("504 Gateway Timeout", "application/json", TIMEOUT_504),
        ]
    });
    let started = Instant::now();
    let err = fake
        .client
        .wait_change("7", Duration::from_millis(400))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("change 7"), "{err}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn wait_change_falls_back_to_polling_without_a_wait_endpoint() {
    let fake = fake(|head, _| {
        if head.starts_with("GET /v1/changes/7/wait") {
            vec![http(
                "404 Not Found",
                "application/json",
                r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"not found"}}"#,
            )]
        } else {
            assert!(head.starts_with("GET /v1/changes/7 "), "{head}");
            vec![http("200 OK", "application/json", CHANGE_READY)]
        }
    });
    let change = fake
        .client
        .wait_change("7", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(change.ready);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_change_error_is_reported_with_its_err() {
    let fake = fake(|head, _| {
        if head.starts_with("POST /v1/services") {
            vec![http(
                "202 Accepted",
                "application/json",
                r#"{"type":"async","status-code":202,"status":"Accepted","change":"9","result":null}"#,
            )]
        } else {
            vec![http(
                "200 OK",
                "application/json",
                r#"{"type":"sync","result":{"id":"9","kind":"start","summary":"Start","status":"Error","ready":true,"err":"cannot start service: exited quickly with code 7","spawn-time":"t"}}"#,
            )]
        }
    });
    let err = fake.client.start(&["svc"]).await.unwrap_err();
    assert!(matches!(err, Error::Change { .. }), "{err:?}");
    assert_eq!(
        err.pebble_message(),
        Some("cannot start service: exited quickly with code 7")
    );
    assert!(err.to_string().contains("change 9 (start) failed"), "{err}");
}

#[tokio::test]
async fn a_malformed_multipart_pull_is_a_protocol_error() {
    let fake = fake(|_, _| {
        vec![http(
            "200 OK",
            "multipart/form-data; boundary=abcdefabcdefabcdefabcdefabcdefabcdef",
            "--abcdefabcdefabcdefabcdefabcdefabcdef\r\nContent-Disposition: form-data; name=\"files\"; filename=\"/x\"\r\n\r\nhalf a file",
        )]
    });
    let err = fake.client.pull("/x").await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("GET /v1/files"), "{err}");
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_sending() {
    let fake = fake(|_, _| panic!("nothing should be sent"));
    for err in [
        fake.client.pull("relative").await.unwrap_err(),
        fake.client
            .wait_change("../x", Duration::from_secs(1))
            .await
            .unwrap_err(),
        fake.client
            .exec(&pebble_client::ExecRequest::new(Vec::<String>::new()))
            .await
            .unwrap_err(),
        fake.client
            .push(
                "/x",
                b"",
                &pebble_client::PushOptions {
                    permissions: Some(0o10000),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    }
    assert_eq!(fake.requests.load(Ordering::SeqCst), 0);
}
