//! The world's PostgreSQL: users, roles, databases, access groups, extensions.

use async_trait::async_trait;

use super::{PgDatabase, PgRole, UnitSession};
use crate::bindings::Error;
use crate::bindings::postgresql::{Connection, ExtensionToggle, Target, UserSpec};
use crate::capability::{CapResult, Postgresql};

/// Roles PostgreSQL always has, hidden from `list-users` as the charm's query does.
const SYSTEM_ROLES: &[&str] = &[
    "postgres",
    "pg_monitor",
    "pg_read_all_data",
    "pg_write_all_data",
];

impl UnitSession {
    /// Connect: the target member must run, the password must match, and writes need the primary.
    fn pg<R>(
        &self,
        call: &str,
        conn: &Connection,
        write: bool,
        f: impl FnOnce(&mut super::PgState) -> CapResult<R>,
    ) -> CapResult<R> {
        let mut g = self.world.lock();
        self.fault(&mut g, "postgresql", call)?;
        super::patroni::tick(&mut g.state);
        let st = &g.state;
        let member = match &conn.at {
            Target::OwnUnit => st.patroni.members.get_key_value(&self.pod_name()),
            Target::PrimaryService => st.patroni.members.iter().find(|(_, m)| m.role == "leader"),
        };
        let (name, m) = member.ok_or_else(|| {
            Error::unreachable(
                "connection to PostgreSQL failed: connection refused (no such member)",
            )
        })?;
        if !matches!(m.state.as_str(), "running" | "streaming") {
            return Err(Error::unreachable(format!(
                "connection to PostgreSQL on {name} failed: the database system is starting up"
            )));
        }
        if write && m.role != "leader" {
            return Err(Error::invalid(format!(
                "{call}: cannot execute in a read-only transaction (on replica {name})"
            )));
        }
        let role = st.postgresql.users.get(&conn.user);
        let stored = st
            .secrets
            .iter()
            .find(|s| s.label == format!("database-peers.{}.app", st.app))
            .and_then(|s| s.content.get(&format!("{}-password", conn.user)));
        // Before the operator role exists (bootstrap), Patroni created it from the secret.
        let expected = role
            .and_then(|r| r.password.clone())
            .or_else(|| stored.cloned());
        if let Some(pw) = expected
            && pw != conn.password
        {
            return Err(Error::forbidden(format!(
                "password authentication failed for user \"{}\"",
                conn.user
            )));
        }
        if let Some(db) = &conn.database
            && db != "postgres"
            && !st.postgresql.databases.contains_key(db)
        {
            return Err(Error::not_found(format!(
                "database \"{db}\" does not exist"
            )));
        }
        f(&mut g.state.postgresql)
    }
}

#[async_trait]
impl Postgresql for UnitSession {
    fn in_memory(&self) -> bool {
        true
    }

    async fn list_users(&self, conn: Connection) -> CapResult<Vec<String>> {
        self.pg("list-users", &conn, false, |pg| {
            Ok(pg
                .users
                .iter()
                .filter(|(n, r)| r.login && !SYSTEM_ROLES.contains(&n.as_str()))
                .map(|(n, _)| n.clone())
                .collect())
        })
    }

    async fn create_user(&self, conn: Connection, user: UserSpec) -> CapResult<()> {
        self.pg("create-user", &conn, true, |pg| {
            if pg.users.contains_key(&user.name) {
                return Err(Error::conflict(format!(
                    "role \"{}\" already exists",
                    user.name
                )));
            }
            for r in &user.roles {
                if !pg.users.contains_key(r) && !SYSTEM_ROLES.contains(&r.as_str()) {
                    return Err(Error::invalid(format!("role \"{r}\" does not exist")));
                }
            }
            pg.users.insert(
                user.name.clone(),
                PgRole {
                    login: true,
                    superuser: user.superuser,
                    password: user.password.clone(),
                    roles: user.roles.clone(),
                    can_create_database: user.can_create_database,
                },
            );
            Ok(())
        })
    }

    async fn set_password(
        &self,
        conn: Connection,
        user: String,
        password: String,
    ) -> CapResult<()> {
        self.pg("set-password", &conn, true, |pg| {
            let r = pg
                .users
                .get_mut(&user)
                .ok_or_else(|| Error::not_found(format!("role \"{user}\" does not exist")))?;
            r.password = Some(password);
            Ok(())
        })
    }

    async fn set_up_database(&self, conn: Connection, _system_users: Vec<String>) -> CapResult<()> {
        self.pg("set-up-database", &conn, true, |pg| {
            if !pg.users.contains_key("admin") {
                pg.users.insert(
                    "admin".into(),
                    PgRole {
                        login: false,
                        roles: vec!["pg_read_all_data".into(), "pg_write_all_data".into()],
                        ..Default::default()
                    },
                );
                pg.database_set_up = true;
            }
            Ok(())
        })
    }

    async fn list_access_groups(&self, conn: Connection) -> CapResult<Vec<String>> {
        self.pg("list-access-groups", &conn, false, |pg| {
            Ok(pg
                .users
                .keys()
                .filter(|n| n.ends_with("_access"))
                .cloned()
                .collect())
        })
    }

    async fn create_access_groups(
        &self,
        conn: Connection,
        groups: Vec<String>,
        system_users: Vec<String>,
    ) -> CapResult<()> {
        self.pg("create-access-groups", &conn, true, |pg| {
            for gname in &groups {
                pg.users.entry(gname.clone()).or_insert_with(|| PgRole {
                    login: false,
                    ..Default::default()
                });
            }
            for u in &system_users {
                if let Some(r) = pg.users.get_mut(u)
                    && !r.roles.iter().any(|x| x == "internal_access")
                {
                    r.roles.push("internal_access".into());
                }
            }
            Ok(())
        })
    }

    async fn list_databases(&self, conn: Connection) -> CapResult<Vec<String>> {
        self.pg("list-databases", &conn, false, |pg| {
            let mut dbs: Vec<String> = vec!["postgres".into()];
            dbs.extend(pg.databases.keys().filter(|d| *d != "postgres").cloned());
            Ok(dbs)
        })
    }

    async fn set_extensions(
        &self,
        conn: Connection,
        database: String,
        extensions: Vec<ExtensionToggle>,
    ) -> CapResult<()> {
        self.pg("set-extensions", &conn, true, |pg| {
            let db = pg
                .databases
                .entry(database)
                .or_insert_with(PgDatabase::default);
            for e in extensions {
                if e.enable {
                    if !db.extensions.contains(&e.name) {
                        db.extensions.push(e.name);
                    }
                } else {
                    db.extensions.retain(|x| *x != e.name);
                }
            }
            Ok(())
        })
    }

    async fn pending_restart(&self, conn: Connection) -> CapResult<bool> {
        self.pg("pending-restart", &conn, false, |pg| Ok(pg.pending_restart))
    }

    async fn ssl_enabled(&self, conn: Connection) -> CapResult<bool> {
        self.pg("ssl-enabled", &conn, false, |pg| Ok(pg.ssl))
    }
}
