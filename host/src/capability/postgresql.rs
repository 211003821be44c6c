use async_trait::async_trait;

use super::CapResult;
use crate::bindings::postgresql::{Connection, ExtensionToggle, UserSpec};

/// PostgreSQL as typed operations. Implementations quote every identifier and literal.
#[async_trait]
pub trait Postgresql: Send + Sync {
    /// Answers from memory without waiting on anything (the simulated world). The host then
    /// skips the per-call timeout, which guards against a hung backend: it cannot fire, and
    /// its timer and runtime-handle clone were a visible share of a fuzz execution.
    fn in_memory(&self) -> bool {
        false
    }
    async fn list_users(&self, conn: Connection) -> CapResult<Vec<String>>;
    async fn create_user(&self, conn: Connection, user: UserSpec) -> CapResult<()>;
    async fn set_password(&self, conn: Connection, user: String, password: String)
    -> CapResult<()>;
    async fn set_up_database(&self, conn: Connection, system_users: Vec<String>) -> CapResult<()>;
    async fn list_access_groups(&self, conn: Connection) -> CapResult<Vec<String>>;
    async fn create_access_groups(
        &self,
        conn: Connection,
        groups: Vec<String>,
        system_users: Vec<String>,
    ) -> CapResult<()>;
    async fn list_databases(&self, conn: Connection) -> CapResult<Vec<String>>;
    async fn set_extensions(
        &self,
        conn: Connection,
        database: String,
        extensions: Vec<ExtensionToggle>,
    ) -> CapResult<()>;
    async fn pending_restart(&self, conn: Connection) -> CapResult<bool>;
    async fn ssl_enabled(&self, conn: Connection) -> CapResult<bool>;
}
