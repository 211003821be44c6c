//! The PostgreSQL family with tokio-postgres: typed operations, never raw SQL from a plugin.
//!
//! Every identifier goes through [`quote_ident`] and every literal through [`quote_literal`]
//! (PostgreSQL's own `quote_ident`/`quote_literal` rules); values in queries travel as bind
//! parameters. Statements are sent one at a time over the extended protocol, which refuses a
//! string holding several commands, so even a quoting bug could not smuggle in a second one.
//!
//! Connections follow upstream's `_connect_to_database`: a fresh connection per operation, as
//! `user` to `database` (default `postgres`), autocommit, TCP connect timeout 1 s, and TLS as
//! psycopg2 gets it from libpq's default `sslmode=prefer` (see [`prefer_tls`]), with its one
//! plain-text retry (see `connect`): once the charm enables TLS its pg_hba has only `hostssl`
//! lines, which refuse a plain connection.
//! Multi-statement operations that must not half-apply run in one transaction.
//!
//! Errors keep the server's message, SQLSTATE, detail and hint, and name the operation and the
//! place (`user@host:port/database`). Kinds:
//! - connection refused, DNS failure, server starting up or shutting down (57P03, 57P01) →
//!   `unreachable`; TCP connect or whole-operation timeout, statement cancelled (57014) →
//!   `timeout`;
//! - authentication failed (28P01, 28000), insufficient privilege (42501) → `forbidden`;
//! - duplicate role or database (42710, 42P04), dependent objects (2BP01) → `conflict`;
//! - undefined role/object (42704), unknown database (3D000) → `not-found`;
//! - extension not installed on the server (58P01 no control file; 0A000 "is not available"
//!   from CREATE EXTENSION only) → `not-found`;
//! - read-only transaction (25006, a write on a replica), invalid parameter value (22023, e.g.
//!   an extension name PostgreSQL refuses), identifiers PostgreSQL would truncate, NUL bytes →
//!   `invalid`;
//! - anything else → `other`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Targets, host_port};
use crate::bindings::postgresql::{Connection, ExtensionToggle, Target, UserSpec};
use crate::bindings::{Error, ErrorKind};
use crate::capability::{CapResult, Postgresql};

const POSTGRESQL_PORT: u16 = 5432;
/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated, so two long names
/// could end up as the same role. Refused instead.
const MAX_IDENTIFIER_BYTES: usize = 63;
/// Length of the random, unstored password of users created without one (the `backup` user).
const RANDOM_PASSWORD_LEN: usize = 32;

/// How the PostgreSQL backend reaches servers and how patient it is.
#[derive(Clone, Debug)]
pub struct PostgresqlConfig {
    pub targets: Targets,
    /// Bound on resolving the host and opening the TCP connection (upstream: `connect_timeout=1`).
    pub connect_timeout: Duration,
    /// Bound on a whole operation: connect, authenticate, run every statement.
    pub operation_timeout: Duration,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
}

impl PostgresqlConfig {
    /// Defaults around explicit targets (tests remap these to loopback).
    pub fn new(targets: Targets) -> Self {
        PostgresqlConfig {
            targets,
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(30),
            application_name: "charm-host".into(),
        }
    }

    /// Unit `<app>/<unit_number>` in namespace `namespace`.
    pub fn production(app: &str, unit_number: u32, namespace: &str) -> Self {
        Self::new(Targets::for_unit(
            app,
            unit_number,
            namespace,
            POSTGRESQL_PORT,
        ))
    }
}

/// [`Postgresql`] against a real server.
pub struct PostgresqlBackend {
    config: PostgresqlConfig,
    tls: MakeRustlsConnect,
}

/// TLS the way libpq's default `sslmode=prefer` does it, which is what upstream's psycopg2
/// connections use: ask the server for TLS and use it when offered, continue in plain text when
/// the server has none or the TLS attempt fails. As under libpq's `prefer` (and `require`), the
/// server certificate is not checked against a CA: that is `verify-ca`/`verify-full`, which
/// upstream does not ask for. The handshake's signature is still verified against the
/// certificate the server presents.
fn prefer_tls() -> MakeRustlsConnect {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(UncheckedServerCert(provider)))
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// Accepts any server certificate (libpq `sslmode=prefer`), but checks the handshake signatures
/// with the provider's algorithms, so the server must hold the certificate's key.
#[derive(Debug)]
struct UncheckedServerCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UncheckedServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS connector, noting whether the server agreed to TLS: tokio-postgres calls it only
/// after the server answered the SSLRequest with `S`. libpq retries in plain text only then.
struct TrackedTls<T> {
    inner: T,
    agreed: Arc<AtomicBool>,
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for TrackedTls<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> Self::Future {
        self.agreed.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}

/// One TCP connection within `limit`: refused is `unreachable`, too slow is `timeout`.
async fn tcp_connect(addr: SocketAddr, limit: Duration) -> CapResult<TcpStream> {
    match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(Error::unreachable(format!("cannot connect to {addr}: {e}"))),
        Err(_) => Err(Error::timeout(format!(
            "connecting to {addr} took over {limit:?}"
        ))),
    }
}

/// The connection future drives the socket; it ends when the client is dropped.
fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgresql connection ended with an error");
        }
    });
}

/// Where one operation connects, for messages (never carries the password).
struct Place {
    host: String,
    port: u16,
    user: String,
    database: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}/{}",
            self.user,
            host_port(&self.host, self.port),
            self.database
        )
    }
}

/// PostgreSQL's `quote_ident`, always quoting: `a"b` → `"a""b"`. Empty names, NUL bytes and
/// names PostgreSQL would truncate are refused.
pub fn quote_ident(name: &str) -> CapResult<String> {
    if name.is_empty() {
        return Err(Error::invalid("an SQL identifier must not be empty"));
    }
    if name.contains('\0') {
        return Err(Error::invalid(format!(
            "SQL identifier {name:?} contains a NUL byte"
        )));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid(format!(
            "SQL identifier {name:?} is {} bytes long; PostgreSQL would truncate it to {MAX_IDENTIFIER_BYTES}",
            name.len()
        )));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// PostgreSQL's `quote_literal`: quotes doubled, and with any backslash the `E''` form with
/// backslashes doubled, so the result means the same whatever `standard_conforming_strings`
/// says. The value is never echoed in the error (it may be a password).
pub fn quote_literal(value: &str) -> CapResult<String> {
    if value.contains('\0') {
        return Err(Error::invalid(
            "an SQL string literal must not contain a NUL byte",
        ));
    }
    let quoted = value.replace('\'', "''");
    Ok(if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    })
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(RANDOM_PASSWORD_LEN);
    while out.len() < RANDOM_PASSWORD_LEN {
        use rand::Rng;
        let mut buf = [0u8; 64];
        rand::rng().fill_bytes(&mut buf);
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for b in buf.iter().filter(|b| usize::from(**b) < 4 * ALPHABET.len()) {
            if out.len() == RANDOM_PASSWORD_LEN {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    out
}

use super::error_chain as chain;

fn sql_kind(code: &SqlState) -> ErrorKind {
    let c = code.code();
    match c {
        "28P01" | "28000" | "42501" => ErrorKind::Forbidden,
        "42710" | "42P04" | "2BP01" => ErrorKind::Conflict,
        "42704" | "3D000" | "58P01" => ErrorKind::NotFound,
        "25006" | "22023" => ErrorKind::Invalid,
        "57P03" | "57P01" => ErrorKind::Unreachable,
        "57014" => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

fn pg_error(op: &str, place: &Place, e: &tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let mut msg = format!(
            "{op} on {place}: {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
        if let Some(d) = db.detail() {
            msg.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            msg.push_str(&format!(" (hint: {h})"));
        }
        return Error::new(sql_kind(db.code()), msg);
    }
    if e.is_closed() {
        return Error::other(format!("{op} on {place}: the server closed the connection"));
    }
    // Not a server error: the server spoke something other than the protocol, or the socket
    // broke mid-exchange.
    Error::other(format!("{op} on {place}: {}", chain(e)))
}

impl PostgresqlBackend {
    pub fn new(config: PostgresqlConfig) -> Self {
        PostgresqlBackend {
            config,
            tls: prefer_tls(),
        }
    }

    /// [`PostgresqlConfig::production`].
    pub fn production(app: &str, unit_number: u32, namespace: &str) -> Self {
        Self::new(PostgresqlConfig::production(app, unit_number, namespace))
    }

    pub fn config(&self) -> &PostgresqlConfig {
        &self.config
    }

    fn place(&self, conn: &Connection, database: Option<&str>) -> Place {
        let name = match conn.at {
            Target::OwnUnit => &self.config.targets.own_unit,
            Target::PrimaryService => &self.config.targets.primary_service,
        };
        let (host, port) = self.config.targets.resolve(name);
        Place {
            host,
            port,
            user: conn.user.clone(),
            database: database
                .or(conn.database.as_deref())
                .unwrap_or("postgres")
                .to_string(),
        }
    }

    /// Resolves and connects the TCP socket ourselves (so refused, DNS and timeout failures are
    /// told apart exactly), then runs PostgreSQL's startup and authentication over it.
    ///
    /// TLS follows libpq's `sslmode=prefer` to the end: when the server agreed to TLS and the
    /// attempt then failed (a broken handshake, or an error from the server during startup, such
    /// as a pg_hba with only `hostnossl` lines), one more connection to the same address is made
    /// in plain text, and its outcome is the operation's. "Cannot connect now" (57P03) is not
    /// retried, as libpq does not: a plain connection would find the server in the same state.
    async fn connect(&self, op: &str, place: &Place, password: &str) -> CapResult<Client> {
        let (stream, addr) = self.open_socket(op, place).await?;
        let mut cfg = tokio_postgres::Config::new();
        cfg.user(&place.user)
            .password(password)
            .dbname(&place.database)
            .application_name(&self.config.application_name)
            .ssl_mode(SslMode::Prefer);
        let tls = MakeTlsConnect::<TcpStream>::make_tls_connect(&mut self.tls.clone(), &place.host)
            .map_err(|e| {
                Error::invalid(format!(
                    "{op} on {place}: cannot set up TLS for {}: {e}",
                    place.host
                ))
            })?;
        let agreed = Arc::new(AtomicBool::new(false));
        let tracked = TrackedTls {
            inner: tls,
            agreed: agreed.clone(),
        };
        let over_tls = match cfg.connect_raw(stream, tracked).await {
            Ok((client, connection)) => {
                spawn_connection(connection);
                return Ok(client);
            }
            Err(e) => e,
        };
        let cannot_connect_now = over_tls.code() == Some(&SqlState::CANNOT_CONNECT_NOW);
        if !agreed.load(Ordering::Relaxed) || cannot_connect_now {
            return Err(pg_error(op, place, &over_tls));
        }
        let over_tls = pg_error(op, place, &over_tls);
        tracing::debug!(error = %over_tls.message, "retrying without TLS (libpq sslmode=prefer)");
        let stream = tcp_connect(addr, self.config.connect_timeout)
            .await
            .map_err(|e| {
                Error::new(
                    e.kind,
                    format!("{}; retrying without TLS: {}", over_tls.message, e.message),
                )
            })?;
        cfg.ssl_mode(SslMode::Disable);
        match cfg.connect_raw(stream, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                spawn_connection(connection);
                Ok(client)
            }
            Err(e) => {
                let plain = pg_error(op, place, &e);
                // Both attempts' messages, as libpq reports them; the place is said once.
                let prefix = format!("{op} on {place}: ");
                let second = plain
                    .message
                    .strip_prefix(&prefix)
                    .unwrap_or(&plain.message);
                Err(Error::new(
                    plain.kind,
                    format!("{}; retried without TLS: {second}", over_tls.message),
                ))
            }
        }
    }

    /// The first of the host's addresses that accepts a TCP connection, and that address.
    async fn open_socket(&self, op: &str, place: &Place) -> CapResult<(TcpStream, SocketAddr)> {
        let limit = self.config.connect_timeout;
        let addrs: Vec<_> = match tokio::time::timeout(
            limit,
            tokio::net::lookup_host((place.host.as_str(), place.port)),
        )
        .await
        {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(Error::unreachable(format!(
                    "{op} on {place}: cannot resolve {}: {e}",
                    place.host
                )));
            }
            Err(_) => {
                return Err(Error::timeout(format!(
                    "{op} on {place}: resolving {} took over {limit:?}",
                    place.host
                )));
            }
        };
        let mut last: Option<Error> = None;
        for addr in addrs {
            match tcp_connect(addr, limit).await {
                Ok(s) => return Ok((s, addr)),
                Err(e) => {
                    last = Some(Error::new(
                        e.kind,
                        format!("{op} on {place}: {}", e.message),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::unreachable(format!("{op} on {place}: {} has no address", place.host))
        }))
    }

    /// Runs one operation: connect as `conn` (to `database` when given), then `body`, all
    /// within the operation timeout.
    async fn run<T, F>(
        &self,
        op: &str,
        conn: &Connection,
        database: Option<&str>,
        body: F,
    ) -> CapResult<T>
    where
        F: AsyncFnOnce(&mut Client, &Place) -> CapResult<T>,
    {
        let place = self.place(conn, database);
        let limit = self.config.operation_timeout;
        let work = async {
            let mut client = self.connect(op, &place, &conn.password).await?;
            body(&mut client, &place).await
        };
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(format!(
                "{op} on {place}: not finished within {limit:?}"
            ))),
        }
    }
}

/// Runs one statement that returns no rows.
async fn exec(
    client: &impl tokio_postgres::GenericClient,
    op: &str,
    place: &Place,
    sql: &str,
) -> CapResult<()> {
    client
        .execute(sql, &[])
        .await
        .map(drop)
        .map_err(|e| pg_error(op, place, &e))
}

async fn names(client: &Client, op: &str, place: &Place, sql: &str) -> CapResult<Vec<String>> {
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|e| pg_error(op, place, &e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

#[async_trait]
impl Postgresql for PostgresqlBackend {
    /// Upstream's query: `pg_user` is the roles that can log in, which leaves out the
    /// predefined `pg_*` roles and the NOLOGIN groups.
    async fn list_users(&self, conn: Connection) -> CapResult<Vec<String>> {
        let op = "list-users";
        self.run(op, &conn, None, async |c, place| {
            names(
                c,
                op,
                place,
                "SELECT usename::text FROM pg_catalog.pg_user ORDER BY 1",
            )
            .await
        })
        .await
    }

    /// One transaction: the role and its grants appear together or not at all. An existing
    /// role is a `conflict`.
    async fn create_user(&self, conn: Connection, user: UserSpec) -> CapResult<()> {
        let op = "create-user";
        let name = quote_ident(&user.name)?;
        let password = quote_literal(&user.password.clone().unwrap_or_else(random_password))?;
        let roles = user
            .roles
            .iter()
            .map(|r| quote_ident(r))
            .collect::<CapResult<Vec<_>>>()?;
        let mut create = format!("CREATE ROLE {name} WITH LOGIN");
        if user.superuser {
            create.push_str(" SUPERUSER");
        }
        if user.can_create_database {
            create.push_str(" CREATEDB");
        }
        create.push_str(&format!(" ENCRYPTED PASSWORD {password}"));
        self.run(op, &conn, None, async |c, place| {
            let tx = c.transaction().await.map_err(|e| pg_error(op, place, &e))?;
            exec(&tx, op, place, &create).await?;
            for role in &roles {
                exec(&tx, op, place, &format!("GRANT {role} TO {name}")).await?;
            }
            tx.commit().await.map_err(|e| pg_error(op, place, &e))
        })
        .await
    }

    async fn set_password(
        &self,
        conn: Connection,
        user: String,
        password: String,
    ) -> CapResult<()> {
        let op = "set-password";
        let sql = format!(
            "ALTER ROLE {} WITH ENCRYPTED PASSWORD {}",
            quote_ident(&user)?,
            quote_literal(&password)?
        );
        self.run(op, &conn, None, async |c, place| {
            exec(c, op, place, &sql).await
        })
        .await
    }

    /// Spec 3.3.8, in one transaction so that a failure leaves no `admin` behind (its
    /// existence is what marks the set-up as done).
    async fn set_up_database(&self, conn: Connection, system_users: Vec<String>) -> CapResult<()> {
        let op = "set-up-database";
        let users = system_users
            .iter()
            .map(|u| quote_ident(u))
            .collect::<CapResult<Vec<_>>>()?;
        self.run(op, &conn, None, async |c, place| {
            let tx = c.transaction().await.map_err(|e| pg_error(op, place, &e))?;
            let admin = tx
                .query_opt(
                    "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                    &[&"admin"],
                )
                .await
                .map_err(|e| pg_error(op, place, &e))?;
            if admin.is_some() {
                return Ok(());
            }
            exec(
                &tx,
                op,
                place,
                "REVOKE ALL PRIVILEGES ON DATABASE postgres FROM PUBLIC",
            )
            .await?;
            exec(&tx, op, place, "REVOKE CREATE ON SCHEMA public FROM PUBLIC").await?;
            for u in &users {
                exec(
                    &tx,
                    op,
                    place,
                    &format!("GRANT ALL PRIVILEGES ON DATABASE postgres TO {u}"),
                )
                .await?;
            }
            exec(
                &tx,
                op,
                place,
                "CREATE ROLE admin NOLOGIN IN ROLE pg_read_all_data, pg_write_all_data",
            )
            .await?;
            exec(
                &tx,
                op,
                place,
                "GRANT CONNECT ON DATABASE postgres TO admin",
            )
            .await?;
            tx.commit().await.map_err(|e| pg_error(op, place, &e))
        })
        .await
    }

    async fn list_access_groups(&self, conn: Connection) -> CapResult<Vec<String>> {
        let op = "list-access-groups";
        self.run(op, &conn, None, async |c, place| {
            names(c, op, place, r"SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname LIKE '%\_access' ORDER BY 1")
                .await
        })
        .await
    }

    /// One transaction: create the missing groups (NOLOGIN), then make every system user a
    /// member of `internal_access`.
    async fn create_access_groups(
        &self,
        conn: Connection,
        groups: Vec<String>,
        system_users: Vec<String>,
    ) -> CapResult<()> {
        let op = "create-access-groups";
        for g in &groups {
            quote_ident(g)?;
        }
        let users = system_users
            .iter()
            .map(|u| quote_ident(u))
            .collect::<CapResult<Vec<_>>>()?;
        self.run(op, &conn, None, async |c, place| {
            let tx = c.transaction().await.map_err(|e| pg_error(op, place, &e))?;
            let existing: Vec<String> = tx
                .query(
                    "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
                    &[&groups],
                )
                .await
                .map_err(|e| pg_error(op, place, &e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for g in groups.iter().filter(|g| !existing.contains(g)) {
                exec(
                    &tx,
                    op,
                    place,
                    &format!("CREATE ROLE {} NOLOGIN", quote_ident(g)?),
                )
                .await?;
            }
            for u in &users {
                exec(&tx, op, place, &format!("GRANT internal_access TO {u}")).await?;
            }
            tx.commit().await.map_err(|e| pg_error(op, place, &e))
        })
        .await
    }

    async fn list_databases(&self, conn: Connection) -> CapResult<Vec<String>> {
        let op = "list-databases";
        self.run(op, &conn, None, async |c, place| {
            names(c, op, place, "SELECT datname::text FROM pg_catalog.pg_database WHERE NOT datistemplate ORDER BY 1").await
        })
        .await
    }

    /// In `database`, one autocommitted statement per extension, in the given order (as
    /// upstream: dependencies first is the caller's order). Extension names are raw names
    /// (`uuid-ossp`, not `"uuid-ossp"`). A concurrent creation of the same extension by another
    /// unit (23505) is success, as upstream treats it.
    async fn set_extensions(
        &self,
        conn: Connection,
        database: String,
        extensions: Vec<ExtensionToggle>,
    ) -> CapResult<()> {
        let op = "set-extensions";
        let statements = extensions
            .iter()
            .map(|e| {
                let name = quote_ident(&e.name)?;
                Ok(if e.enable {
                    format!("CREATE EXTENSION IF NOT EXISTS {name}")
                } else {
                    format!("DROP EXTENSION IF EXISTS {name}")
                })
            })
            .collect::<CapResult<Vec<_>>>()?;
        self.run(op, &conn, Some(&database), async |c, place| {
            for sql in &statements {
                match c.execute(sql.as_str(), &[]).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                    // PostgreSQL 15 reports a missing extension as "feature not supported"
                    // (`extension "x" is not available`); for the charm it is simply absent.
                    Err(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) => {
                        let mut err = pg_error(op, place, &e);
                        err.kind = ErrorKind::NotFound;
                        return Err(err);
                    }
                    Err(e) => return Err(pg_error(op, place, &e)),
                }
            }
            Ok(())
        })
        .await
    }

    async fn pending_restart(&self, conn: Connection) -> CapResult<bool> {
        let op = "pending-restart";
        self.run(op, &conn, None, async |c, place| {
            let row = c
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_settings WHERE pending_restart",
                    &[],
                )
                .await
                .map_err(|e| pg_error(op, place, &e))?;
            Ok(row.get::<_, i64>(0) > 0)
        })
        .await
    }

    async fn ssl_enabled(&self, conn: Connection) -> CapResult<bool> {
        let op = "ssl-enabled";
        self.run(op, &conn, None, async |c, place| {
            let row = c
                .query_one("SHOW ssl", &[])
                .await
                .map_err(|e| pg_error(op, place, &e))?;
            Ok(row.get::<_, String>(0) == "on")
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_and_escaped() {
        assert_eq!(quote_ident("admin").unwrap(), r#""admin""#);
        assert_eq!(
            quote_ident(r#"x"; DROP TABLE y; --"#).unwrap(),
            r#""x""; DROP TABLE y; --""#
        );
        assert_eq!(quote_ident("Mixed Case").unwrap(), r#""Mixed Case""#);
        assert_eq!(quote_ident("").unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(quote_ident("a\0b").unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(
            quote_ident(&"a".repeat(64)).unwrap_err().kind,
            ErrorKind::Invalid
        );
        assert!(quote_ident(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn literals_follow_postgresqls_quote_literal() {
        assert_eq!(quote_literal("pw").unwrap(), "'pw'");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal(r"a\'b").unwrap(), r"E'a\\''b'");
        assert_eq!(quote_literal("").unwrap(), "''");
        let e = quote_literal("secret\0").unwrap_err();
        assert!(!e.message.contains("secret"), "{}", e.message);
    }

    #[test]
    fn random_passwords_are_long_alphanumeric_and_differ() {
        let a = random_password();
        let b = random_password();
        assert_eq!(a.len(), RANDOM_PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn sqlstates_map_to_kinds() {
        let k = |c: &str| sql_kind(&SqlState::from_code(c));
        assert_eq!(k("28P01"), ErrorKind::Forbidden);
        assert_eq!(k("42710"), ErrorKind::Conflict);
        assert_eq!(k("42704"), ErrorKind::NotFound);
        assert_eq!(k("3D000"), ErrorKind::NotFound);
        assert_eq!(k("25006"), ErrorKind::Invalid);
        assert_eq!(k("57P03"), ErrorKind::Unreachable);
        assert_eq!(k("42601"), ErrorKind::Other);
    }
}
