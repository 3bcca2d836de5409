//! The scale-out backend: PostgreSQL shared by stateless server nodes.
//!
//! This module owns only what is PostgreSQL-specific: the pool and the PostgreSQL migrations
//! (sqlx serializes concurrent migration runs from several nodes with an advisory lock). Every
//! query comes from [`crate::sql`], shared with SQLite. Durability is the server's default
//! (`synchronous_commit = on`): a commit that returned is on disk.

use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};

/// The channel the `events_notify` trigger signals on every committed event insert.
const EVENTS_CHANNEL: &str = "mandate_events";

/// Connections per node. Each is a backend process on the database server, so this stays
/// modest; many nodes share one database's `max_connections`.
const MAX_CONNECTIONS: u32 = 16;

pub(crate) struct PostgresStore {
    pool: PgPool,
    /// Started on first use: one LISTEN connection per node, shared by every feed reader.
    notifications: OnceCell<watch::Receiver<u64>>,
    /// The last audit chain link this process committed (see `sql::events`).
    last_link: crate::sql::events::LastLink,
}

impl PostgresStore {
    /// Connects to and migrates the database at `url` (`postgres://user@host:port/db`).
    pub(crate) async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            notifications: OnceCell::new(),
            last_link: Default::default(),
        })
    }

    /// The connection group-committed event batches are written on: any pooled one (the head
    /// lock orders writers; a server has one writer task anyway).
    async fn event_connection(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// Nothing to do: the `events_notify` trigger announces every commit that wrote events,
    /// to every node.
    fn events_committed(&self) {}
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

    async fn event_notifications(&self) -> StoreResult<Option<watch::Receiver<u64>>> {
        let rx = self
            .notifications
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener.listen(EVENTS_CHANNEL).await?;
                let (tx, rx) = watch::channel(0u64);
                tokio::spawn(async move {
                    let mut seen = 0u64;
                    loop {
                        match listener.recv().await {
                            Ok(_) => {
                                seen += 1;
                                tx.send_replace(seen);
                            }
                            Err(error) => {
                                // PgListener reconnects on the next recv; readers still poll.
                                tracing::warn!(error = %error, "event notifications interrupted");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                });
                Ok::<_, StoreError>(rx)
            })
            .await?;
        Ok(Some(rx.clone()))
    }
}
