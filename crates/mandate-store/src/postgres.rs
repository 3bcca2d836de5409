//! The scale-out backend: PostgreSQL shared by stateless server nodes.
//!
//! This module owns only what is PostgreSQL-specific: the pool and the PostgreSQL migrations
//! (sqlx serializes concurrent migration runs from several nodes with an advisory lock). Every
//! query comes from [`crate::sql`], shared with SQLite. Durability is the server's default
//! (`synchronous_commit = on`): a commit that returned is on disk.

use crate::{Store, StoreResult};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// Connections per node. Each is a backend process on the database server, so this stays
/// modest; many nodes share one database's `max_connections`.
const MAX_CONNECTIONS: u32 = 16;

pub(crate) struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to and migrates the database at `url` (`postgres://user@host:port/db`).
    pub(crate) async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

crate::sql::impl_store_traits!(PostgresStore, sqlx::Postgres);

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
