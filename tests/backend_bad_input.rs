//! Each production backend against tiny fake servers that misbehave: garbage, truncated
//! bodies, wrong content types, answers that never come, refused connections. Every case must
//! end, in bounded time, as a clear error of the right kind. The fakes also record what the
//! backends send, to pin the wire format (auth header, JSON bodies).

mod backend_tools;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend_tools::{assert_kind, free_ports};
use charm_host::backends::{
    PatroniBackend, PatroniConfig, PebbleBackend, PostgresqlBackend, PostgresqlConfig, Targets,
};
use charm_host::bindings::ErrorKind;
use charm_host::bindings::patroni::{Auth, ConfigPatch, Param, StandbyCluster, Target};
use charm_host::bindings::postgresql::{Connection, Target as PgTarget};
use charm_host::capability::{Patroni, Pebble, Postgresql};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a fake does with one request.
#[derive(Clone)]
enum Action {
    /// Write these bytes, then close.
    Reply(Vec<u8>),
    /// Read the request, then say nothing, keeping the connection open.
    Hang,
    /// Close without a word.
    Close,
}

#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Script = Arc<dyn Fn(&Seen) -> Action + Send + Sync>;

fn http(status: &str, content_type: &str, body: &str) -> Action {
    Action::Reply(
        format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            .into_bytes(),
    )
}

/// Reads one HTTP request (head and Content-Length body).
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen { head, body })
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    script: Script,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let Some(req) = read_request(&mut s).await else {
        return;
    };
    let action = script(&req);
    seen.lock().unwrap().push(req);
    match action {
        Action::Reply(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Action::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Action::Close => {}
    }
}

struct Fake {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn fake_tcp(script: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script: Script = Arc::new(script);
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, script.clone(), s2.clone()));
        }
    });
    Fake { port, seen }
}

// ---- Patroni -------------------------------------------------------------------------------------

fn patroni_for(port: u16) -> PatroniBackend {
    let targets = Targets::for_unit("pg", 0, "ns", 8008)
        .with_override("pg-0.pg-endpoints", "127.0.0.1", port)
        .with_override("pg-primary.ns.svc.cluster.local", "127.0.0.1", port);
    PatroniBackend::new(PatroniConfig {
        request_timeout: Duration::from_millis(700),
        restart_timeout: Duration::from_millis(700),
        retry_delay: Duration::from_millis(100),
        ..PatroniConfig::new(targets)
    })
    .unwrap()
}

fn auth() -> Auth {
    Auth {
        password: "s3cret".into(),
        tls: false,
    }
}

const CLUSTER_JSON: &str = r#"{"members":[{"name":"pg-0","role":"leader","state":"running","host":"10.0.0.1","port":5432,"timeline":3},
  {"name":"pg-1","role":"replica","state":"streaming","host":"10.0.0.2","port":5432,"timeline":3,"lag":0}],"scope":"patroni-pg"}"#;

#[tokio::test]
async fn patroni_garbage_truncation_and_wrong_content_types_are_other() {
    let cases: Vec<(&str, Action, &str)> = vec![
        ("not HTTP at all", Action::Reply(b"this is not http\r\n\r\n".to_vec()), "exchange with Patroni failed"),
        ("closed without an answer", Action::Close, "exchange with Patroni failed"),
        (
            "a truncated body",
            Action::Reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"members\": [".to_vec()),
            "truncated or malformed",
        ),
        ("HTML instead of JSON", http("200 OK", "text/html", "<html>hello</html>"), "expected a JSON answer"),
        ("no content type", Action::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec()), "content type \"none\""),
        ("undecodable JSON", http("200 OK", "application/json", "{not json"), "could not be decoded"),
        ("JSON of the wrong shape", http("200 OK", "application/json", r#"{"members":"many"}"#), "could not be decoded"),
    ];
    for (what, action, needle) in cases {
        let fake = fake_tcp(move |_| action.clone()).await;
        let p = patroni_for(fake.port);
        let t0 = Instant::now();
        let e = p.cluster(Target::OwnUnit, auth()).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Other, "{what}: {e:?}");
        assert!(
            e.message.contains(needle),
            "{what}: {needle:?} not in {e:?}"
        );
        assert!(
            e.message
                .contains(&format!("GET http://127.0.0.1:{}/cluster", fake.port)),
            "{what}: {e:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{what}: {:?}",
            t0.elapsed()
        );
    }
}

#[tokio::test]
async fn patroni_hangs_time_out_and_refusals_are_unreachable() {
    let fake = fake_tcp(|_| Action::Hang).await;
    let p = patroni_for(fake.port);
    let t0 = Instant::now();
    let e = assert_kind(
        p.health(Target::PrimaryService, auth()).await,
        ErrorKind::Timeout,
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(600) && t0.elapsed() < Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        e.message.contains("/health") && e.message.contains("700ms"),
        "{e:?}"
    );
    // A timed-out request is not repeated (a POST may have taken effect).
    assert_kind(p.restart(Target::OwnUnit, auth()).await, ErrorKind::Timeout);
    assert_eq!(fake.seen().len(), 2);

    let port = free_ports(1)[0];
    let e = assert_kind(
        patroni_for(port).cluster(Target::OwnUnit, auth()).await,
        ErrorKind::Unreachable,
    );
    assert!(
        e.message.contains("2 attempts") && e.message.contains(&port.to_string()),
        "{e:?}"
    );
    let e = assert_kind(
        patroni_for(port)
            .cluster(Target::Host("no-such-host.invalid".into()), auth())
            .await,
        ErrorKind::Unreachable,
    );
    assert!(e.message.contains("no-such-host.invalid:8008"), "{e:?}");
}

/// A refused first connection is retried once: a Patroni whose REST server comes back within
/// the retry delay is reached.
#[tokio::test]
async fn patroni_connect_failure_is_retried_once() {
    let port = free_ports(1)[0];
    let targets = Targets::for_unit("pg", 0, "ns", 8008).with_override(
        "pg-0.pg-endpoints",
        "127.0.0.1",
        port,
    );
    let p = PatroniBackend::new(PatroniConfig {
        retry_delay: Duration::from_millis(800),
        ..PatroniConfig::new(targets)
    })
    .unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut s, _) = listener.accept().await.unwrap();
        read_request(&mut s).await.unwrap();
        let Action::Reply(bytes) = http("200 OK", "application/json", CLUSTER_JSON) else {
            unreachable!()
        };
        s.write_all(&bytes).await.unwrap();
    });
    let c = p.cluster(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(c.members.len(), 2);
    late.await.unwrap();
}

#[tokio::test]
async fn patroni_statuses_map_to_kinds_with_patronis_text() {
    let cases = [
        (
            "412 Precondition Failed",
            "candidate name does not match with sync_standby",
            ErrorKind::Conflict,
        ),
        (
            "409 Conflict",
            "Failed to schedule restart: Another restart is already scheduled",
            ErrorKind::Conflict,
        ),
        (
            "401 Unauthorized",
            "no auth header received",
            ErrorKind::Forbidden,
        ),
        ("403 Forbidden", "Access is denied", ErrorKind::Forbidden),
        ("404 Not Found", "Not found", ErrorKind::NotFound),
        (
            "400 Bad Request",
            "Switchover could be performed only from a specific leader",
            ErrorKind::Invalid,
        ),
        (
            "503 Service Unavailable",
            "restart conditions are not satisfied",
            ErrorKind::Other,
        ),
        ("500 Internal Server Error", "boom", ErrorKind::Other),
    ];
    for (status, text, kind) in cases {
        let fake = fake_tcp(move |_| http(status, "text/html", text)).await;
        let p = patroni_for(fake.port);
        let e = p
            .switchover(
                Target::PrimaryService,
                auth(),
                Some("pg-0".into()),
                Some("pg-2".into()),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{status}: {e:?}");
        assert!(
            e.message.contains(text) && e.message.contains(&status[..3]),
            "{status}: {e:?}"
        );
        assert!(
            e.message.contains("POST") && e.message.contains("/switchover"),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn patroni_requests_on_the_wire() {
    let fake = fake_tcp(|req| match req.request_line() {
        l if l.starts_with("GET /cluster") => http("200 OK", "application/json", CLUSTER_JSON),
        l if l.starts_with("GET /health") => http(
            "503 Service Unavailable",
            "application/json",
            r#"{"state":"stopped","role":"replica","pending_restart":true}"#,
        ),
        l if l.starts_with("POST /switchover") => http(
            "200 OK",
            "text/html",
            "Successfully switched over to \"pg-1\"",
        ),
        _ => http("200 OK", "text/html; charset=utf-8", "ok"),
    })
    .await;
    let p = patroni_for(fake.port);

    // /health's 503 still carries the member's state: a result, not an error.
    let h = p.health(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(
        (
            h.state.as_str(),
            h.role.as_str(),
            h.pending_restart,
            h.replication_state
        ),
        ("stopped", "replica", true, None)
    );

    let c = p.cluster(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(c.members[1].lag, Some(0));
    assert_eq!(c.members[0].timeline, Some(3));

    let patch = ConfigPatch {
        synchronous_node_count: Some(1),
        synchronous_mode_strict: None,
        maximum_lag_on_failover: None,
        failsafe_mode: None,
        max_timelines_history: None,
        remove_data_directory_on_rewind_failure: Some(false),
        remove_data_directory_on_diverged_timelines: None,
        parameters: vec![("max_connections".into(), Param::Integer(100))],
        standby_cluster: Some(None),
    };
    p.patch_config(Target::PrimaryService, auth(), patch)
        .await
        .unwrap();
    p.patch_config(
        Target::PrimaryService,
        auth(),
        ConfigPatch {
            synchronous_node_count: None,
            remove_data_directory_on_rewind_failure: None,
            parameters: vec![],
            standby_cluster: Some(Some(StandbyCluster {
                host: "other.ns.svc.cluster.local".into(),
                port: 5432,
            })),
            ..p_empty()
        },
    )
    .await
    .unwrap();
    // Without a leader, the backend asks /cluster who leads, then names it.
    p.switchover(Target::PrimaryService, auth(), None, Some("pg-1".into()))
        .await
        .unwrap();
    p.switchover(Target::PrimaryService, auth(), Some("pg-0".into()), None)
        .await
        .unwrap();
    p.restart(Target::OwnUnit, auth()).await.unwrap();
    p.reinitialize(Target::OwnUnit, auth()).await.unwrap();

    let seen = fake.seen();
    let lines: Vec<&str> = seen.iter().map(|s| s.request_line()).collect();
    assert_eq!(
        lines,
        [
            "GET /health HTTP/1.1",
            "GET /cluster HTTP/1.1",
            "PATCH /config HTTP/1.1",
            "PATCH /config HTTP/1.1",
            "GET /cluster HTTP/1.1",
            "POST /switchover HTTP/1.1",
            "POST /switchover HTTP/1.1",
            "POST /restart HTTP/1.1",
            "POST /reinitialize HTTP/1.1",
        ]
    );
    // Basic auth patroni:s3cret on every request.
    for s in &seen {
        assert_eq!(
            s.header("authorization").as_deref(),
            Some("Basic cGF0cm9uaTpzM2NyZXQ="),
            "{s:?}"
        );
    }
    assert_eq!(
        seen[2].header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        String::from_utf8(seen[2].body.clone()).unwrap(),
        r#"{"postgresql":{"parameters":{"max_connections":100},"remove_data_directory_on_rewind_failure":false},"standby_cluster":null,"synchronous_node_count":1}"#
    );
    assert_eq!(
        seen[3].json(),
        serde_json::json!({"standby_cluster": {"host": "other.ns.svc.cluster.local", "port": 5432}})
    );
    assert_eq!(
        seen[5].json(),
        serde_json::json!({"leader": "pg-0", "candidate": "pg-1"})
    );
    assert_eq!(seen[6].json(), serde_json::json!({"leader": "pg-0"}));
}

fn p_empty() -> ConfigPatch {
    ConfigPatch {
        synchronous_node_count: None,
        synchronous_mode_strict: None,
        maximum_lag_on_failover: None,
        failsafe_mode: None,
        max_timelines_history: None,
        remove_data_directory_on_rewind_failure: None,
        remove_data_directory_on_diverged_timelines: None,
        parameters: vec![],
        standby_cluster: None,
    }
}

#[tokio::test]
async fn patroni_switchover_without_a_leader_is_a_conflict() {
    let fake = fake_tcp(|_| {
        http(
            "200 OK",
            "application/json",
            r#"{"members":[{"name":"pg-1","role":"replica","state":"streaming"}]}"#,
        )
    })
    .await;
    let e = assert_kind(
        patroni_for(fake.port)
            .switchover(Target::OwnUnit, auth(), None, None)
            .await,
        ErrorKind::Conflict,
    );
    assert!(e.message.contains("no leader"), "{e:?}");
    assert_eq!(fake.seen().len(), 1, "nothing was POSTed");
}

#[tokio::test]
async fn patroni_https_needs_a_usable_ca() {
    let tls = Auth {
        password: "x".into(),
        tls: true,
    };
    let targets = Targets::for_unit("pg", 0, "ns", 8008);
    let e = assert_kind(
        PatroniBackend::new(PatroniConfig::new(targets.clone()))
            .unwrap()
            .cluster(Target::OwnUnit, tls.clone())
            .await,
        ErrorKind::Other,
    );
    assert!(e.message.contains("no CA file"), "{e:?}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ca.pem");
    let cfg = |ca: &std::path::Path| PatroniConfig {
        ca_file: Some(ca.to_path_buf()),
        ..PatroniConfig::new(targets.clone())
    };
    let e = assert_kind(
        PatroniBackend::new(cfg(&missing))
            .unwrap()
            .health(Target::OwnUnit, tls.clone())
            .await,
        ErrorKind::Other,
    );
    assert!(e.message.contains(&missing.display().to_string()), "{e:?}");

    std::fs::write(&missing, "not a certificate").unwrap();
    let e = assert_kind(
        PatroniBackend::new(cfg(&missing))
            .unwrap()
            .health(Target::OwnUnit, tls.clone())
            .await,
        ErrorKind::Other,
    );
    assert!(e.message.contains("no certificate"), "{e:?}");

    // A real CA: the https request is attempted against the production-style URL.
    let pem = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=test-ca",
            "-days",
            "1",
            "-keyout",
        ])
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(&missing)
        .output();
    assert!(
        pem.as_ref().is_ok_and(|o| o.status.success()),
        "openssl req failed: {pem:?}"
    );
    // A server that answers the ClientHello with plain text: the handshake fails, clearly.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not TLS")
                .await;
        }
    });
    let mut c = cfg(&missing);
    c.targets = c
        .targets
        .with_override("pg-0.pg-endpoints", "127.0.0.1", port);
    let t0 = Instant::now();
    let e = assert_kind(
        PatroniBackend::new(c)
            .unwrap()
            .health(Target::OwnUnit, tls)
            .await,
        ErrorKind::Other,
    );
    assert!(
        e.message
            .contains(&format!("https://127.0.0.1:{port}/health"))
            && e.message.contains("TLS handshake"),
        "{e:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

// ---- PostgreSQL -----------------------------------------------------------------------------------

/// The code of the protocol's SSLRequest packet (length 8, then this).
const SSL_REQUEST: [u8; 4] = 80877103u32.to_be_bytes();

/// A fake PostgreSQL: declines TLS as a server without it does (`N` to the SSLRequest the
/// backend sends first, libpq's `sslmode=prefer`), reads the startup packet, then acts.
async fn fake_pg(action: Action) -> u16 {
    fake_pg_counted(action).await.0
}

/// [`fake_pg`], and the number of connections it has accepted.
async fn fake_pg_counted(action: Action) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let action = action.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut packet = vec![0u8; u32::from_be_bytes(len).saturating_sub(4) as usize];
                    let _ = s.read_exact(&mut packet).await;
                    if packet != SSL_REQUEST {
                        break;
                    }
                    let _ = s.write_all(b"N").await;
                }
                match action {
                    Action::Reply(b) => {
                        let _ = s.write_all(&b).await;
                        let _ = s.shutdown().await;
                    }
                    Action::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Action::Close => {}
                }
            });
        }
    });
    (port, connections)
}

/// A protocol ErrorResponse with these fields.
fn pg_error_response(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (t, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(t);
        fields.extend_from_slice(v.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

fn pg_for(port: u16) -> PostgresqlBackend {
    let targets = Targets::for_unit("pg", 0, "ns", 5432)
        .with_override("pg-0.pg-endpoints", "127.0.0.1", port)
        .with_override("pg-primary.ns.svc.cluster.local", "127.0.0.1", port);
    PostgresqlBackend::new(PostgresqlConfig {
        operation_timeout: Duration::from_millis(700),
        ..PostgresqlConfig::new(targets)
    })
}

fn conn(at: PgTarget) -> Connection {
    Connection {
        at,
        user: "operator".into(),
        password: "pw".into(),
        database: None,
    }
}

#[tokio::test]
async fn postgresql_misbehaving_servers() {
    // Server errors during startup keep their SQLSTATE and text.
    let cases = [
        (
            "28P01",
            "password authentication failed for user \"operator\"",
            ErrorKind::Forbidden,
        ),
        (
            "3D000",
            "database \"postgres\" does not exist",
            ErrorKind::NotFound,
        ),
        (
            "57P03",
            "the database system is starting up",
            ErrorKind::Unreachable,
        ),
        ("53300", "sorry, too many clients already", ErrorKind::Other),
    ];
    for (code, text, kind) in cases {
        let port = fake_pg(Action::Reply(pg_error_response(code, text))).await;
        let e = pg_for(port)
            .list_users(conn(PgTarget::PrimaryService))
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{code}: {e:?}");
        assert!(
            e.message.contains(code) && e.message.contains(text),
            "{e:?}"
        );
        assert!(
            e.message
                .contains(&format!("list-users on operator@127.0.0.1:{port}/postgres")),
            "{e:?}"
        );
    }

    // Garbage, a closed connection: other.
    for (what, action) in [
        (
            "garbage",
            Action::Reply(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ),
        ("close", Action::Close),
    ] {
        let port = fake_pg(action).await;
        let t0 = Instant::now();
        let e = assert_kind(
            pg_for(port).ssl_enabled(conn(PgTarget::OwnUnit)).await,
            ErrorKind::Other,
        );
        assert!(
            e.message.contains("ssl-enabled on operator@127.0.0.1"),
            "{what}: {e:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            t0.elapsed()
        );
    }

    // A server that agrees to TLS and then answers the handshake with garbage. As libpq's
    // `sslmode=prefer`, the backend makes one more connection, in plain text, and that one's
    // outcome is the operation's: here the server refuses the password (forbidden), and the
    // message tells both attempts. In bounded time, naming the operation.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<&str>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if s.read_exact(&mut request).await.is_err() {
                continue;
            }
            if request[4..] == SSL_REQUEST {
                log.lock().unwrap().push("tls");
                let _ = s.write_all(b"S").await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            } else {
                // A plain startup packet: read the rest of it, refuse the login.
                log.lock().unwrap().push("plain");
                let len = u32::from_be_bytes(request[..4].try_into().unwrap()) as usize;
                let mut rest = vec![0u8; len.saturating_sub(8)];
                let _ = s.read_exact(&mut rest).await;
                let _ = s
                    .write_all(&pg_error_response(
                        "28P01",
                        "password authentication failed for user \"operator\"",
                    ))
                    .await;
            }
            let _ = s.shutdown().await;
        }
    });
    let t0 = Instant::now();
    let e = assert_kind(
        pg_for(port).list_users(conn(PgTarget::OwnUnit)).await,
        ErrorKind::Forbidden,
    );
    assert!(
        e.message.contains("list-users on operator@127.0.0.1")
            && e.message.contains("TLS handshake")
            && e.message.contains("retried without TLS")
            && e.message.contains("28P01"),
        "{e:?}"
    );
    assert_eq!(*seen.lock().unwrap(), ["tls", "plain"]);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());

    // A server without TLS that refuses the login: no second attempt (libpq retries only a
    // connection the server took over TLS).
    let (port, connections) = fake_pg_counted(Action::Reply(pg_error_response(
        "28P01",
        "password authentication failed",
    )))
    .await;
    let e = assert_kind(
        pg_for(port).list_users(conn(PgTarget::OwnUnit)).await,
        ErrorKind::Forbidden,
    );
    assert!(!e.message.contains("retried"), "{e:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // A server that accepts and then says nothing: the operation timeout.
    let port = fake_pg(Action::Hang).await;
    let t0 = Instant::now();
    let e = assert_kind(
        pg_for(port).pending_restart(conn(PgTarget::OwnUnit)).await,
        ErrorKind::Timeout,
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(
        e.message.contains("pending-restart") && e.message.contains("700ms"),
        "{e:?}"
    );

    // Refused, and a name that does not resolve: unreachable.
    let port = free_ports(1)[0];
    let e = assert_kind(
        pg_for(port).list_databases(conn(PgTarget::OwnUnit)).await,
        ErrorKind::Unreachable,
    );
    assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e:?}");
    let nowhere = PostgresqlBackend::new(PostgresqlConfig::new(Targets::for_unit(
        "pg",
        0,
        "no-such-ns.invalid",
        5432,
    )));
    let e = assert_kind(
        nowhere.list_users(conn(PgTarget::PrimaryService)).await,
        ErrorKind::Unreachable,
    );
    assert!(
        e.message
            .contains("pg-primary.no-such-ns.invalid.svc.cluster.local"),
        "{e:?}"
    );
}

// ---- Pebble ---------------------------------------------------------------------------------------

async fn fake_unix(
    script: impl Fn(&Seen) -> Action + Send + Sync + 'static,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pebble.socket");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let script: Script = Arc::new(script);
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve(sock, script.clone(), seen.clone()));
        }
    });
    (dir, path)
}

fn pebble_for(socket: &std::path::Path) -> PebbleBackend {
    PebbleBackend::with_client(
        pebble_client::Client::new(socket).with_request_timeout(Duration::from_millis(700)),
    )
}

fn envelope_error(status: u16, text: &str, kind: Option<&str>) -> Action {
    let kind = kind
        .map(|k| format!(r#","kind":"{k}""#))
        .unwrap_or_default();
    http(
        &format!("{status} X"),
        "application/json",
        &format!(
            r#"{{"type":"error","status-code":{status},"status":"X","result":{{"message":"{text}"{kind}}}}}"#
        ),
    )
}

#[tokio::test]
async fn pebble_misbehaving_daemons() {
    let cases: Vec<(&str, Action, ErrorKind, &str)> = vec![
        ("garbage", Action::Reply(b"garbage\r\n\r\n".to_vec()), ErrorKind::Other, "connection to pebble failed"),
        ("closed", Action::Close, ErrorKind::Other, "connection to pebble failed"),
        ("html", http("200 OK", "text/html", "<html></html>"), ErrorKind::Other, "invalid response from pebble"),
        ("bad json", http("200 OK", "application/json", "{\"type\":"), ErrorKind::Other, "invalid response from pebble"),
        (
            "truncated",
            Action::Reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":\"sync\"".to_vec()),
            ErrorKind::Other,
            "GET /v1/system-info",
        ),
        ("hang", Action::Hang, ErrorKind::Timeout, "timed out after 700ms"),
        ("404", envelope_error(404, "not found", None), ErrorKind::NotFound, "not found"),
        ("403", envelope_error(403, "access denied", None), ErrorKind::Forbidden, "access denied"),
        ("401 login", envelope_error(401, "login required", Some("login-required")), ErrorKind::Forbidden, "login required"),
        ("500", envelope_error(500, "internal error", None), ErrorKind::Other, "internal error"),
    ];
    for (what, action, kind, needle) in cases {
        let (_dir, socket) = fake_unix(move |_| action.clone()).await;
        let t0 = Instant::now();
        let e = pebble_for(&socket).system_info().await.unwrap_err();
        assert_eq!(e.kind, kind, "{what}: {e:?}");
        assert!(
            e.message.contains(needle),
            "{what}: {needle:?} not in {e:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{what}: {:?}",
            t0.elapsed()
        );
    }

    // A file error inside a 200 answer keeps Pebble's kind.
    let (_dir, socket) = fake_unix(|_| {
        http(
            "200 OK",
            "application/json",
            r#"{"type":"sync","status-code":200,"status":"OK","result":[{"path":"/x","error":{"kind":"permission-denied","message":"open /x: permission denied"}}]}"#,
        )
    })
    .await;
    let e = assert_kind(
        pebble_for(&socket)
            .make_dir(
                "/x".into(),
                false,
                None,
                charm_host::bindings::pebble::FileOwner {
                    user: None,
                    group: None,
                },
            )
            .await,
        ErrorKind::Forbidden,
    );
    assert!(e.message.contains("permission denied"), "{e:?}");

    // Nobody there.
    let dir = tempfile::tempdir().unwrap();
    assert_kind(
        pebble_for(&dir.path().join("none.socket")).plan().await,
        ErrorKind::Unreachable,
    );
}

/// Runs `openssl` (Debian's, present on the build machines) and fails with its stderr.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and a server certificate for 127.0.0.1 signed by it.
fn make_ca_and_server_cert(dir: &std::path::Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={ca}"),
            "-days",
            "1",
        ]
        .into_iter()
        .chain([
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ])
        .collect::<Vec<_>>(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
}

/// An https server presenting `<name>.pem` that answers every request with a healthy member.
async fn fake_https(dir: &std::path::Path, name: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let script: Script = Arc::new(|_| {
                    http(
                        "200 OK",
                        "application/json",
                        r#"{"state":"running","role":"primary"}"#,
                    )
                });
                serve(tls, script, Arc::new(Mutex::new(Vec::new()))).await;
            });
        }
    });
    port
}

/// https end to end: the configured CA verifies Patroni's certificate; a certificate from
/// another CA is refused as a TLS failure (other), not retried, not mistaken for a dead host.
#[tokio::test]
async fn patroni_https_verifies_against_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    make_ca_and_server_cert(dir.path(), "patroni");
    make_ca_and_server_cert(dir.path(), "stranger");
    let port = fake_https(dir.path(), "patroni").await;
    let stranger = fake_https(dir.path(), "stranger").await;
    let tls = Auth {
        password: "x".into(),
        tls: true,
    };
    let targets = Targets::for_unit("pg", 0, "ns", 8008)
        .with_override("pg-0.pg-endpoints", "127.0.0.1", port)
        .with_override("impostor", "127.0.0.1", stranger);
    let p = PatroniBackend::new(PatroniConfig {
        ca_file: Some(dir.path().join("patroni-ca.pem")),
        ..PatroniConfig::new(targets)
    })
    .unwrap();

    let h = p.health(Target::OwnUnit, tls.clone()).await.unwrap();
    assert_eq!((h.state.as_str(), h.role.as_str()), ("running", "primary"));

    let t0 = Instant::now();
    let e = assert_kind(
        p.health(Target::Host("impostor".into()), tls.clone()).await,
        ErrorKind::Other,
    );
    assert!(
        e.message.contains("TLS handshake") && !e.message.contains("attempts"),
        "{e:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(400),
        "not retried: {:?}",
        t0.elapsed()
    );

    // Plain http to an https server is not mistaken for success either.
    let e = p
        .health(Target::OwnUnit, Auth { tls: false, ..tls })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Other, "{e:?}");
}
