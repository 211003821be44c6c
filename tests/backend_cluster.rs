//! The production Patroni and PostgreSQL backends against a real 3-member Patroni 4.1.5 +
//! PostgreSQL 15 cluster (etcd DCS), driven only through the capability traits. The cluster is
//! shared by the tests of this binary, which run one at a time (see `cluster_harness`).

// Each test holds the cluster's serialising guard for its whole body, awaits included: the
// guard is the point (one test at a time), and each test has its own single-thread runtime.
#![allow(clippy::await_holding_lock)]

mod backend_tools;
mod cluster_harness;

use std::time::{Duration, Instant};

use backend_tools::{assert_kind, free_ports, wait_for};
use charm_host::bindings::ErrorKind;
use charm_host::bindings::patroni::{Auth, ConfigPatch, Param, Target};
use charm_host::bindings::postgresql::{Connection, ExtensionToggle, Target as PgTarget, UserSpec};
use charm_host::capability::{Patroni, Postgresql};
use cluster_harness::{MEMBERS, SUPERUSER, auth, cluster, member_name, superuser};

/// A database the tests own, so the `postgres` database's privileges (which set-up-database
/// revokes from PUBLIC) do not matter for logins.
const APPS_DB: &str = "apps";

async fn ensure_apps_db(i: usize) {
    let c = cluster().sql(i, "postgres").await;
    let exists = c
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&APPS_DB])
        .await
        .unwrap()
        .is_some();
    if !exists {
        c.batch_execute(&format!("CREATE DATABASE {APPS_DB}"))
            .await
            .unwrap();
    }
}

fn user(name: &str, password: Option<&str>) -> UserSpec {
    UserSpec {
        name: name.into(),
        password: password.map(Into::into),
        superuser: false,
        roles: vec![],
        can_create_database: false,
    }
}

fn as_user(name: &str, password: &str, database: Option<&str>) -> Connection {
    Connection {
        at: PgTarget::PrimaryService,
        user: name.into(),
        password: password.into(),
        database: database.map(Into::into),
    }
}

fn empty_patch() -> ConfigPatch {
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

async fn role_flags(i: usize, role: &str) -> Option<(bool, bool, bool)> {
    let c = cluster().sql(i, "postgres").await;
    c.query_opt(
        "SELECT rolcanlogin, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

async fn is_member(i: usize, role: &str, group: &str) -> bool {
    let c = cluster().sql(i, "postgres").await;
    c.query_one("SELECT pg_has_role($1, $2, 'MEMBER')", &[&role, &group])
        .await
        .unwrap()
        .get(0)
}

// ---- PostgreSQL ---------------------------------------------------------------------------------

#[tokio::test]
async fn postgresql_users_and_passwords() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    ensure_apps_db(leader).await;
    let pg = c.postgresql(leader);
    let admin = superuser(PgTarget::PrimaryService);

    let users = pg.list_users(admin.clone()).await.unwrap();
    for u in [SUPERUSER, "replicator", "rewinder"] {
        assert!(users.contains(&u.to_string()), "{u} missing from {users:?}");
    }
    assert!(!users.iter().any(|u| u.starts_with("pg_")), "{users:?}");

    // A login user with CREATEDB and a granted role.
    let alice = UserSpec {
        roles: vec!["pg_monitor".into()],
        can_create_database: true,
        ..user("alice", Some("alice-pw"))
    };
    pg.create_user(admin.clone(), alice.clone()).await.unwrap();
    assert_eq!(role_flags(leader, "alice").await, Some((true, false, true)));
    assert!(is_member(leader, "alice", "pg_monitor").await);
    assert!(
        pg.list_users(admin.clone())
            .await
            .unwrap()
            .contains(&"alice".to_string())
    );
    // Alice can log in with her password.
    pg.list_databases(as_user("alice", "alice-pw", Some(APPS_DB)))
        .await
        .unwrap();
    // Creating her again is a conflict, and says who.
    let e = assert_kind(
        pg.create_user(admin.clone(), alice).await,
        ErrorKind::Conflict,
    );
    assert!(
        e.message.contains("alice") && e.message.contains("42710"),
        "{e:?}"
    );

    // set-password: the old password stops working, the new one works.
    pg.set_password(admin.clone(), "alice".into(), "new-pw".into())
        .await
        .unwrap();
    let e = assert_kind(
        pg.list_databases(as_user("alice", "alice-pw", Some(APPS_DB)))
            .await,
        ErrorKind::Forbidden,
    );
    assert!(
        e.message.contains("28P01") && e.message.contains("alice@"),
        "{e:?}"
    );
    pg.list_databases(as_user("alice", "new-pw", Some(APPS_DB)))
        .await
        .unwrap();
    assert_kind(
        pg.set_password(admin.clone(), "nobody-here".into(), "x".into())
            .await,
        ErrorKind::NotFound,
    );

    // No password: a random one that nobody knows; SUPERUSER as the `backup` user.
    pg.create_user(
        admin.clone(),
        UserSpec {
            superuser: true,
            ..user("backup", None)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        role_flags(leader, "backup").await,
        Some((true, true, false))
    );
    let direct = c.sql(leader, "postgres").await;
    let hash: Option<String> = direct
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'backup'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        hash.is_some_and(|h| h.starts_with("SCRAM-SHA-256$")),
        "the random password is set and stored hashed"
    );

    // A grant that fails undoes the whole creation (one transaction).
    let bad = UserSpec {
        roles: vec!["no_such_role".into()],
        ..user("carol", Some("pw"))
    };
    let e = assert_kind(
        pg.create_user(admin.clone(), bad).await,
        ErrorKind::NotFound,
    );
    assert!(e.message.contains("no_such_role"), "{e:?}");
    assert_eq!(role_flags(leader, "carol").await, None);
}

#[tokio::test]
async fn postgresql_set_up_database_and_access_groups() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    let pg = c.postgresql(leader);
    let admin = superuser(PgTarget::PrimaryService);
    let direct = c.sql(leader, "postgres").await;
    direct
        .batch_execute(
            "DROP ROLE IF EXISTS outsider; CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'",
        )
        .await
        .unwrap();

    let system_users = vec![
        SUPERUSER.to_string(),
        "replicator".to_string(),
        "rewinder".to_string(),
    ];
    pg.set_up_database(admin.clone(), system_users.clone())
        .await
        .unwrap();
    // `admin`: NOLOGIN, reads and writes all data, may connect to `postgres`.
    assert_eq!(
        role_flags(leader, "admin").await,
        Some((false, false, false))
    );
    assert!(is_member(leader, "admin", "pg_read_all_data").await);
    assert!(is_member(leader, "admin", "pg_write_all_data").await);
    let r = direct
        .query_one(
            "SELECT has_database_privilege('admin', 'postgres', 'CONNECT'), \
                    has_database_privilege('replicator', 'postgres', 'CREATE'), \
                    has_schema_privilege('outsider', 'public', 'CREATE')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            r.get::<_, bool>(0),
            r.get::<_, bool>(1),
            r.get::<_, bool>(2)
        ),
        (true, true, false)
    );
    // PUBLIC lost CONNECT on `postgres`: a user without grants is turned away (forbidden).
    let e = assert_kind(
        pg.list_users(as_user("outsider", "outsider-pw", None))
            .await,
        ErrorKind::Forbidden,
    );
    assert!(e.message.contains("42501"), "{e:?}");
    // Running it again changes nothing and does not fail (admin exists).
    pg.set_up_database(admin.clone(), system_users.clone())
        .await
        .unwrap();

    // Access groups.
    let before = pg.list_access_groups(admin.clone()).await.unwrap();
    let groups: Vec<String> = ["identity_access", "internal_access", "relation_access"]
        .map(String::from)
        .to_vec();
    pg.create_access_groups(admin.clone(), groups.clone(), system_users.clone())
        .await
        .unwrap();
    let after = pg.list_access_groups(admin.clone()).await.unwrap();
    for g in &groups {
        assert!(
            after.contains(g),
            "{g} missing from {after:?} (before: {before:?})"
        );
        assert_eq!(
            role_flags(leader, g).await,
            Some((false, false, false)),
            "{g} must be NOLOGIN"
        );
    }
    for u in &system_users {
        assert!(
            is_member(leader, u, "internal_access").await,
            "{u} not in internal_access"
        );
    }
    // `LIKE '%\_access'`: the underscore is literal.
    direct
        .batch_execute("DROP ROLE IF EXISTS xaccess; CREATE ROLE xaccess NOLOGIN")
        .await
        .unwrap();
    assert!(
        !pg.list_access_groups(admin.clone())
            .await
            .unwrap()
            .contains(&"xaccess".to_string())
    );
    // Again: the existing groups are kept, nothing fails.
    pg.create_access_groups(admin.clone(), groups, system_users)
        .await
        .unwrap();
    // A system user that does not exist is not-found, and nothing half-applies.
    let e = assert_kind(
        pg.create_access_groups(
            admin.clone(),
            vec!["extra_access".into()],
            vec!["ghost".into()],
        )
        .await,
        ErrorKind::NotFound,
    );
    assert!(e.message.contains("ghost"), "{e:?}");
    assert!(
        !pg.list_access_groups(admin)
            .await
            .unwrap()
            .contains(&"extra_access".to_string())
    );
}

#[tokio::test]
async fn postgresql_databases_extensions_and_settings() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    ensure_apps_db(leader).await;
    let pg = c.postgresql(leader);
    let admin = superuser(PgTarget::PrimaryService);

    let dbs = pg.list_databases(admin.clone()).await.unwrap();
    assert!(
        dbs.contains(&"postgres".to_string()) && dbs.contains(&APPS_DB.to_string()),
        "{dbs:?}"
    );
    assert!(!dbs.iter().any(|d| d.starts_with("template")), "{dbs:?}");

    let on = |name: &str, enable| ExtensionToggle {
        name: name.into(),
        enable,
    };
    let extensions = async || -> Vec<String> {
        let d = c.sql(leader, APPS_DB).await;
        d.query("SELECT extname::text FROM pg_extension ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    pg.set_extensions(
        admin.clone(),
        APPS_DB.into(),
        vec![on("pg_trgm", true), on("uuid-ossp", true)],
    )
    .await
    .unwrap();
    let now = extensions().await;
    assert!(
        now.contains(&"pg_trgm".into()) && now.contains(&"uuid-ossp".into()),
        "{now:?}"
    );
    // Enabling again is a no-op; disabling drops it; disabling a missing one is fine.
    pg.set_extensions(
        admin.clone(),
        APPS_DB.into(),
        vec![
            on("pg_trgm", true),
            on("pg_trgm", false),
            on("hstore", false),
        ],
    )
    .await
    .unwrap();
    let now = extensions().await;
    assert!(
        !now.contains(&"pg_trgm".into()) && now.contains(&"uuid-ossp".into()),
        "{now:?}"
    );
    // Only in that database.
    let in_postgres: i64 = c
        .sql(leader, "postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_postgres, 0);
    // An extension that is not installed, and a database that does not exist: not-found.
    let e = assert_kind(
        pg.set_extensions(admin.clone(), APPS_DB.into(), vec![on("timescaledb", true)])
            .await,
        ErrorKind::NotFound,
    );
    assert!(e.message.contains("timescaledb"), "{e:?}");
    let e = assert_kind(
        pg.set_extensions(admin.clone(), "nodb".into(), vec![on("hstore", true)])
            .await,
        ErrorKind::NotFound,
    );
    assert!(
        e.message.contains("nodb") && e.message.contains("3D000"),
        "{e:?}"
    );

    // ssl is off in this cluster.
    assert!(!pg.ssl_enabled(admin.clone()).await.unwrap());

    // pending-restart: a restart-only setting changed and reloaded, then put back.
    let direct = c.sql(leader, "postgres").await;
    assert!(!pg.pending_restart(admin.clone()).await.unwrap());
    direct
        .batch_execute("ALTER SYSTEM SET max_prepared_transactions = 7")
        .await
        .unwrap();
    direct
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    wait_for(
        "pending_restart after the reload",
        Duration::from_secs(10),
        || async {
            match pg.pending_restart(admin.clone()).await {
                Ok(true) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    direct
        .batch_execute("ALTER SYSTEM RESET max_prepared_transactions")
        .await
        .unwrap();
    direct
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    wait_for(
        "no pending_restart after the reset",
        Duration::from_secs(10),
        || async {
            match pg.pending_restart(admin.clone()).await {
                Ok(false) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// Every identifier and literal a plugin passes is data, never SQL.
#[tokio::test]
async fn postgresql_names_and_passwords_cannot_inject_sql() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    ensure_apps_db(leader).await;
    let pg = c.postgresql(leader);
    let admin = superuser(PgTarget::PrimaryService);
    let direct = c.sql(leader, APPS_DB).await;
    direct
        .batch_execute("DROP TABLE IF EXISTS y; CREATE TABLE y (v int); INSERT INTO y VALUES (1)")
        .await
        .unwrap();
    let canary = async || -> i64 {
        let d = c.sql(leader, APPS_DB).await;
        d.query_one("SELECT count(*) FROM y", &[])
            .await
            .expect("table y must survive")
            .get(0)
    };

    let evil_name = r#"x"; DROP TABLE y; --"#;
    let evil_pw = r"p'; DROP TABLE y; -- \' \\";
    pg.create_user(
        admin.clone(),
        UserSpec {
            can_create_database: true,
            ..user(evil_name, Some(evil_pw))
        },
    )
    .await
    .unwrap();
    assert_eq!(canary().await, 1);
    assert_eq!(
        role_flags(leader, evil_name).await,
        Some((true, false, true)),
        "the role has exactly that name"
    );
    // The password is exactly that string: logging in with it works.
    pg.list_databases(as_user(evil_name, evil_pw, Some(APPS_DB)))
        .await
        .unwrap();

    let evil_pw2 = "'); DROP TABLE y; --";
    pg.set_password(admin.clone(), evil_name.into(), evil_pw2.into())
        .await
        .unwrap();
    pg.list_databases(as_user(evil_name, evil_pw2, Some(APPS_DB)))
        .await
        .unwrap();
    assert_eq!(canary().await, 1);

    // Roles, system users, groups, extensions and databases with SQL in their names.
    let e = pg
        .create_user(
            admin.clone(),
            UserSpec {
                roles: vec![evil_name.into()],
                ..user("dave", Some("pw"))
            },
        )
        .await;
    assert!(
        e.is_ok(),
        "granting the (existing) evil role by its exact name works: {e:?}"
    );
    assert!(is_member(leader, "dave", evil_name).await);
    let evil_role = r#"pg_monitor TO dave; DROP TABLE y; --"#;
    assert_kind(
        pg.create_user(
            admin.clone(),
            UserSpec {
                roles: vec![evil_role.into()],
                ..user("erin", Some("pw"))
            },
        )
        .await,
        ErrorKind::NotFound,
    );
    let evil_group = r#"g"; DROP TABLE y; --_access"#;
    pg.create_access_groups(
        admin.clone(),
        vec![evil_group.into(), "internal_access".into()],
        vec![evil_name.into()],
    )
    .await
    .unwrap();
    assert!(
        pg.list_access_groups(admin.clone())
            .await
            .unwrap()
            .contains(&evil_group.to_string())
    );
    assert!(is_member(leader, evil_name, "internal_access").await);
    // (admin exists by now or not, depending on test order; either way the name is data.)
    let r = pg
        .set_up_database(admin.clone(), vec![r#"u"; DROP TABLE y; --"#.into()])
        .await;
    assert!(
        r.is_ok() || r.as_ref().unwrap_err().kind == ErrorKind::NotFound,
        "{r:?}"
    );
    let on = |name: &str| ExtensionToggle {
        name: name.into(),
        enable: true,
    };
    // PostgreSQL itself refuses `--` in an extension name (22023): invalid.
    assert_kind(
        pg.set_extensions(
            admin.clone(),
            APPS_DB.into(),
            vec![on(r#"x"; DROP TABLE y; --"#)],
        )
        .await,
        ErrorKind::Invalid,
    );
    assert_kind(
        pg.set_extensions(
            admin.clone(),
            APPS_DB.into(),
            vec![on(r#"x"; DROP TABLE y; "#)],
        )
        .await,
        ErrorKind::NotFound,
    );
    assert_kind(
        pg.set_extensions(
            admin.clone(),
            r#"apps"; DROP TABLE y; --"#.into(),
            vec![on("hstore")],
        )
        .await,
        ErrorKind::NotFound,
    );
    // A user name or password in the connection itself is a startup parameter, not SQL.
    assert_kind(
        pg.list_users(as_user(r#"postgres' OR '1'='1"#, "x", None))
            .await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        pg.list_users(as_user(SUPERUSER, "' OR '1'='1", None)).await,
        ErrorKind::Forbidden,
    );
    // NUL bytes and names PostgreSQL would truncate never reach the server.
    assert_kind(
        pg.create_user(admin.clone(), user("nul\0user", Some("pw")))
            .await,
        ErrorKind::Invalid,
    );
    assert_kind(
        pg.set_password(admin.clone(), "dave".into(), "nul\0pw".into())
            .await,
        ErrorKind::Invalid,
    );
    assert_kind(
        pg.create_user(admin.clone(), user(&"l".repeat(64), Some("pw")))
            .await,
        ErrorKind::Invalid,
    );

    assert_eq!(canary().await, 1, "table y survived every attempt");
}

#[tokio::test]
async fn postgresql_errors_have_the_right_kinds() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    let replica = c.replicas()[0];

    // Wrong password.
    let pg = c.postgresql(leader);
    let e = assert_kind(
        pg.list_users(as_user(SUPERUSER, "wrong", None)).await,
        ErrorKind::Forbidden,
    );
    assert!(
        e.message.contains("password authentication failed") && e.message.contains(SUPERUSER),
        "{e:?}"
    );

    // A write on a replica (own unit is a replica): read-only, invalid; reads work there.
    let on_replica = c.postgresql(replica);
    let own = superuser(PgTarget::OwnUnit);
    assert!(
        on_replica
            .list_users(own.clone())
            .await
            .unwrap()
            .contains(&SUPERUSER.to_string())
    );
    let e = assert_kind(
        on_replica
            .create_user(own.clone(), user("frank", Some("pw")))
            .await,
        ErrorKind::Invalid,
    );
    assert!(
        e.message.contains("25006") && e.message.contains("read-only"),
        "{e:?}"
    );
    assert_kind(
        on_replica
            .set_password(own.clone(), SUPERUSER.into(), "x".into())
            .await,
        ErrorKind::Invalid,
    );

    // A port nobody listens on: unreachable, quickly.
    let port = free_ports(1)[0];
    let mut cfg = pg.config().clone();
    cfg.targets = cfg
        .targets
        .with_override(member_name(leader), "127.0.0.1", port)
        .with_override("primary-service", "127.0.0.1", port);
    let refused = charm_host::backends::PostgresqlBackend::new(cfg);
    let t0 = Instant::now();
    let e = assert_kind(
        refused
            .list_users(superuser(PgTarget::PrimaryService))
            .await,
        ErrorKind::Unreachable,
    );
    assert!(e.message.contains(&port.to_string()), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_kind(
        refused.ssl_enabled(superuser(PgTarget::OwnUnit)).await,
        ErrorKind::Unreachable,
    );

    // A database that does not exist.
    let e = assert_kind(
        pg.list_users(Connection {
            database: Some("nodb".into()),
            ..superuser(PgTarget::PrimaryService)
        })
        .await,
        ErrorKind::NotFound,
    );
    assert!(e.message.contains("nodb"), "{e:?}");
}

// ---- Patroni -------------------------------------------------------------------------------------

#[tokio::test]
async fn patroni_cluster_and_health() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    let replica = c.replicas()[0];
    let patroni = c.patroni(replica);

    for at in [
        Target::OwnUnit,
        Target::PrimaryService,
        Target::Host(member_name(leader)),
    ] {
        let cl = patroni.cluster(at.clone(), auth()).await.unwrap();
        assert_eq!(cl.members.len(), MEMBERS, "{at:?}: {cl:?}");
        let leaders: Vec<_> = cl.members.iter().filter(|m| m.role == "leader").collect();
        assert_eq!(leaders.len(), 1, "{cl:?}");
        assert_eq!(leaders[0].name, member_name(leader));
        assert_eq!(leaders[0].state, "running");
        assert_eq!(leaders[0].lag, None, "the leader has no lag");
        let streaming = cl.members.iter().filter(|m| m.state == "streaming").count();
        assert_eq!(streaming, MEMBERS - 1, "{cl:?}");
        // Bootstrapped in synchronous mode with one sync standby.
        assert_eq!(
            cl.members
                .iter()
                .filter(|m| m.role == "sync_standby")
                .count(),
            1,
            "{cl:?}"
        );
        for m in &cl.members {
            assert_eq!(m.host, "127.0.0.1");
            assert!(m.timeline.is_some(), "{m:?}");
            if m.role != "leader" {
                assert!(m.lag.is_some(), "{m:?}");
            }
        }
    }

    let h = patroni
        .health(Target::PrimaryService, auth())
        .await
        .unwrap();
    assert_eq!((h.state.as_str(), h.role.as_str()), ("running", "primary"));
    assert!(!h.pending_restart);
    let h = patroni.health(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(
        (
            h.state.as_str(),
            h.role.as_str(),
            h.replication_state.as_deref()
        ),
        ("running", "replica", Some("streaming"))
    );

    // GETs need no password in Patroni; a wrong one does not matter there.
    let wrong = Auth {
        password: "wrong".into(),
        tls: false,
    };
    patroni.health(Target::OwnUnit, wrong).await.unwrap();

    // A host that does not resolve, and a member port nobody listens on: unreachable.
    let e = assert_kind(
        patroni
            .cluster(Target::Host("no-such-member.invalid".into()), auth())
            .await,
        ErrorKind::Unreachable,
    );
    assert!(
        e.message.contains("no-such-member.invalid") && e.message.contains("2 attempts"),
        "{e:?}"
    );
    let port = free_ports(1)[0];
    let mut cfg = patroni.config().clone();
    cfg.targets = cfg.targets.with_override("gone", "127.0.0.1", port);
    let refused = charm_host::backends::PatroniBackend::new(cfg).unwrap();
    let e = assert_kind(
        refused.health(Target::Host("gone".into()), auth()).await,
        ErrorKind::Unreachable,
    );
    assert!(
        e.message.contains(&format!("127.0.0.1:{port}/health")),
        "{e:?}"
    );
}

#[tokio::test]
async fn patroni_wrong_password_is_forbidden() {
    let c = cluster();
    let _serial = c.lock();
    let patroni = c.patroni(c.replicas()[0]);
    let wrong = Auth {
        password: "wrong".into(),
        tls: false,
    };
    let e = assert_kind(
        patroni
            .patch_config(
                Target::PrimaryService,
                wrong.clone(),
                ConfigPatch {
                    max_timelines_history: Some(1),
                    ..empty_patch()
                },
            )
            .await,
        ErrorKind::Forbidden,
    );
    assert!(
        e.message.contains("401") && e.message.contains("PATCH"),
        "{e:?}"
    );
    assert_ne!(
        c.config()["max_timelines_history"],
        1,
        "the PATCH was refused"
    );
    assert_kind(
        patroni
            .switchover(Target::PrimaryService, wrong.clone(), None, None)
            .await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        patroni.restart(Target::OwnUnit, wrong.clone()).await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        patroni.reinitialize(Target::OwnUnit, wrong).await,
        ErrorKind::Forbidden,
    );
}

async fn wait_sync_standbys(n: usize) {
    let c = cluster();
    wait_for(
        &format!("{n} sync standby(s)"),
        Duration::from_secs(60),
        || async {
            let roles = c.roles();
            let sync = roles.iter().filter(|(_, r)| r == "sync_standby").count();
            if sync == n {
                Ok(())
            } else {
                Err(format!("{roles:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn patroni_config_patch_sync_mode_and_switchover() {
    let c = cluster();
    let _serial = c.lock();
    let patroni = c.patroni(c.leader());

    // Every typed field, serialised as Patroni expects; `standby_cluster: null` is a delete.
    let patch = ConfigPatch {
        synchronous_node_count: Some(2),
        synchronous_mode_strict: Some(false),
        maximum_lag_on_failover: Some(2097152),
        failsafe_mode: Some(true),
        max_timelines_history: Some(50),
        remove_data_directory_on_rewind_failure: Some(false),
        remove_data_directory_on_diverged_timelines: Some(false),
        parameters: vec![
            ("work_mem".into(), Param::Text("8MB".into())),
            ("max_connections".into(), Param::Integer(50)),
            ("log_connections".into(), Param::Boolean(false)),
            ("random_page_cost".into(), Param::Float(1.5)),
        ],
        standby_cluster: Some(None),
    };
    patroni
        .patch_config(Target::PrimaryService, auth(), patch)
        .await
        .unwrap();
    // GET /config answers from Patroni's cached copy of the DCS, which may lag the PATCH by a
    // loop; wait (bounded) for the patch to show, then check every field.
    let cfg = wait_for(
        "the patched dynamic config",
        Duration::from_secs(20),
        || async {
            let cfg = c.config();
            if cfg["synchronous_node_count"] == 2 {
                Ok(cfg)
            } else {
                Err(format!("{cfg}"))
            }
        },
    )
    .await;
    assert_eq!(cfg["synchronous_node_count"], 2);
    assert_eq!(cfg["maximum_lag_on_failover"], 2097152);
    assert_eq!(cfg["failsafe_mode"], true);
    assert_eq!(cfg["max_timelines_history"], 50);
    assert_eq!(
        cfg["postgresql"]["remove_data_directory_on_rewind_failure"],
        false
    );
    assert_eq!(cfg["postgresql"]["parameters"]["work_mem"], "8MB");
    assert_eq!(cfg["postgresql"]["parameters"]["random_page_cost"], 1.5);
    assert_eq!(
        cfg["postgresql"]["parameters"]["max_connections"], 50,
        "the other parameters are kept (a merge)"
    );
    assert!(cfg.get("standby_cluster").is_none(), "{cfg}");
    // Two sync standbys appear.
    wait_sync_standbys(2).await;

    // Back to one: one sync standby, one asynchronous replica.
    patroni
        .patch_config(
            Target::OwnUnit,
            auth(),
            ConfigPatch {
                synchronous_node_count: Some(1),
                ..empty_patch()
            },
        )
        .await
        .unwrap();
    wait_sync_standbys(1).await;
    let roles = c.roles();
    let name_of = |role: &str| {
        roles
            .iter()
            .find(|(_, r)| r == role)
            .map(|(n, _)| n.clone())
            .unwrap()
    };
    let (old_leader, sync, replica) = (
        name_of("leader"),
        name_of("sync_standby"),
        name_of("replica"),
    );

    // In synchronous mode only the sync standby may take over: 412, with Patroni's words.
    let e = assert_kind(
        patroni
            .switchover(
                Target::PrimaryService,
                auth(),
                Some(old_leader.clone()),
                Some(replica.clone()),
            )
            .await,
        ErrorKind::Conflict,
    );
    assert!(
        e.message.contains("412")
            && e.message
                .contains("candidate name does not match with sync_standby"),
        "{e:?}"
    );

    // To the sync standby, with the leader looked up by the backend.
    let t0 = Instant::now();
    patroni
        .switchover(Target::PrimaryService, auth(), None, Some(sync.clone()))
        .await
        .unwrap();
    eprintln!("switchover answered after {:.1?}", t0.elapsed());
    wait_for("the new leader", Duration::from_secs(60), || async {
        let roles = c.roles();
        if roles.iter().any(|(n, r)| *n == sync && r == "leader") {
            Ok(())
        } else {
            Err(format!("{roles:?}"))
        }
    })
    .await;
    c.wait_ready().unwrap();
    assert_ne!(member_name(c.leader()), old_leader);

    // A switchover naming a leader that is not the leader is refused by Patroni.
    let e = patroni
        .switchover(Target::Host(sync.clone()), auth(), Some(old_leader), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            ErrorKind::Invalid | ErrorKind::Conflict | ErrorKind::Other
        ),
        "{e:?}"
    );
    assert!(e.message.contains("leader"), "{e:?}");
}

#[tokio::test]
async fn patroni_restart_and_reinitialize() {
    let c = cluster();
    let _serial = c.lock();
    let leader = c.leader();
    let replica = c.replicas()[0];
    let patroni = c.patroni(replica);
    let start_time = async |i: usize| -> String {
        let d = c.sql(i, "postgres").await;
        d.query_one("SELECT pg_postmaster_start_time()::text", &[])
            .await
            .unwrap()
            .get(0)
    };

    // Restart a replica: Patroni answers once PostgreSQL is back.
    let before = start_time(replica).await;
    let t0 = Instant::now();
    patroni.restart(Target::OwnUnit, auth()).await.unwrap();
    eprintln!("restart answered after {:.1?}", t0.elapsed());
    assert_ne!(start_time(replica).await, before, "PostgreSQL restarted");
    let h = patroni.health(Target::OwnUnit, auth()).await.unwrap();
    assert_eq!(h.state, "running");
    c.wait_ready().unwrap();

    // Reinitialise: refused on the leader (503 → other, with Patroni's reason), started on a replica.
    let e = assert_kind(
        patroni
            .reinitialize(Target::Host(member_name(leader)), auth())
            .await,
        ErrorKind::Other,
    );
    assert!(
        e.message.contains("503") && e.message.contains("leader"),
        "{e:?}"
    );
    patroni.reinitialize(Target::OwnUnit, auth()).await.unwrap();
    wait_for(
        "the reinitialised replica to stream again",
        Duration::from_secs(90),
        || async {
            match patroni.health(Target::OwnUnit, auth()).await {
                Ok(h)
                    if h.state == "running"
                        && h.replication_state.as_deref() == Some("streaming") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    c.wait_ready().unwrap();
}

/// A standalone PostgreSQL (not the Patroni cluster) with TLS on and only `hostssl` lines in
/// pg_hba, as the charm's `patroni.yml` has them once TLS is enabled: a plain connection is
/// refused there. Stopped (fast shutdown) and removed when dropped.
mod tls_server {
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use charm_host::backends::{PostgresqlBackend, PostgresqlConfig, Targets};
    use charm_host::bindings::postgresql::{Connection, Target as PgTarget};

    use crate::backend_tools::{free_ports, pg_bin_dir};

    pub const PASSWORD: &str = "tls-superuser-pass";

    pub struct TlsServer {
        pub dir: PathBuf,
        pub port: u16,
        child: Child,
    }

    fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program)
            .process_group(0);
        cmd
    }

    fn ok(cmd: &mut Command, what: &str) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl TlsServer {
        /// A PostgreSQL with `ssl=on` and this `pg_hba.conf`.
        pub fn start(pg_hba: &str) -> TlsServer {
            // One directory per server: the tests of this file run as threads of one process.
            static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = PathBuf::from(format!(
                "/dev/shm/charm-host-tls-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            ok(
                Command::new("openssl")
                    .args([
                        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    ])
                    .args(["-subj", "/CN=postgresql-k8s-0.postgresql-k8s-endpoints"])
                    .arg("-keyout")
                    .arg(dir.join("server.key"))
                    .arg("-out")
                    .arg(dir.join("server.crt")),
                "openssl req",
            );
            std::fs::write(dir.join("pw"), PASSWORD).unwrap();
            ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&dir),
                "chown",
            );
            ok(
                Command::new("chmod").arg("600").arg(dir.join("server.key")),
                "chmod",
            );
            let bin = pg_bin_dir();
            ok(
                as_postgres(bin.join("initdb"))
                    .arg("-D")
                    .arg(dir.join("data"))
                    .args([
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                    ])
                    .arg(format!("--pwfile={}", dir.join("pw").display())),
                "initdb",
            );
            std::fs::write(dir.join("data/pg_hba.conf"), pg_hba).unwrap();
            let port = free_ports(1)[0];
            let child = as_postgres(bin.join("postgres"))
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-c", &format!("port={port}")])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", &format!("unix_socket_directories={}", dir.display())])
                .args(["-c", "ssl=on"])
                .args([
                    "-c",
                    &format!("ssl_cert_file={}", dir.join("server.crt").display()),
                ])
                .args([
                    "-c",
                    &format!("ssl_key_file={}", dir.join("server.key").display()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let server = TlsServer { dir, port, child };
            let t0 = Instant::now();
            // Ready when the server answers on its socket (pg_isready, as upstream's tooling).
            while !Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success())
            {
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "PostgreSQL did not start"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            server
        }

        /// The production backend aimed at this server, and the superuser's connection.
        pub fn backend(&self) -> (PostgresqlBackend, Connection) {
            let own = "postgresql-k8s-0.postgresql-k8s-endpoints";
            let targets = Targets {
                own_unit: own.into(),
                primary_service: "primary-service".into(),
                default_port: 5432,
                overrides: Default::default(),
                resolver: None,
            }
            .with_override(own, "127.0.0.1", self.port);
            let conn = Connection {
                at: PgTarget::OwnUnit,
                user: "postgres".into(),
                password: PASSWORD.into(),
                database: None,
            };
            (PostgresqlBackend::new(PostgresqlConfig::new(targets)), conn)
        }
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            // SIGINT: PostgreSQL's fast shutdown.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Once the charm enables TLS, pg_hba has only `hostssl` lines. The backend connects as
/// upstream's psycopg2 does (libpq's `sslmode=prefer`), so its operations still work there,
/// where a plain-text connection is refused.
#[tokio::test]
async fn postgresql_uses_tls_where_the_server_requires_it() {
    let server = tls_server::TlsServer::start(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    );
    // The control: without TLS the server refuses this login.
    let plain = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(server.port)
        .user("postgres")
        .password(tls_server::PASSWORD)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await;
    let refused = plain.err().expect("a plain connection is refused");
    let why = refused.as_db_error().map(|d| d.message().to_owned());
    assert!(
        why.as_deref().is_some_and(|m| m.contains("no encryption")),
        "{refused:?}"
    );

    let (pg, conn) = server.backend();
    let users = pg.list_users(conn.clone()).await.unwrap();
    assert!(users.iter().any(|u| u == "postgres"), "{users:?}");
    assert!(
        pg.ssl_enabled(conn.clone()).await.unwrap(),
        "the server has ssl on"
    );
    // A wrong password is still told apart from a TLS problem.
    let wrong = Connection {
        password: "nope".into(),
        ..conn
    };
    assert_kind(pg.list_users(wrong).await, ErrorKind::Forbidden);
}

/// libpq's `sslmode=prefer` retries once in plain text when the server took the connection over
/// TLS and then refused it. Here pg_hba has only `hostnossl` lines: a TLS login is refused, the
/// backend's retry in plain text gets in.
#[tokio::test]
async fn postgresql_retries_in_plain_text_where_the_server_refuses_tls_logins() {
    let server = tls_server::TlsServer::start(
        "local all all trust\nhostnossl all all 127.0.0.1/32 scram-sha-256\n",
    );
    // The control: a client that insists on TLS is refused.
    let out = std::process::Command::new(backend_tools::pg_bin_dir().join("psql"))
        .arg(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require",
            server.port
        ))
        .args(["-c", "SELECT 1"])
        .env("PGPASSWORD", tls_server::PASSWORD)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no pg_hba.conf entry"),
        "{stderr}"
    );

    let (pg, conn) = server.backend();
    let users = pg.list_users(conn.clone()).await.unwrap();
    assert!(users.iter().any(|u| u == "postgres"), "{users:?}");
    // A wrong password fails both attempts: forbidden, and the message tells both.
    let wrong = Connection {
        password: "nope".into(),
        ..conn
    };
    let e = assert_kind(pg.list_users(wrong).await, ErrorKind::Forbidden);
    assert!(
        e.message.contains("no pg_hba.conf entry")
            && e.message.contains("retried without TLS")
            && e.message.contains("password authentication failed"),
        "{e:?}"
    );
}
