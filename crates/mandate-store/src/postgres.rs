//! The scale-out backend: PostgreSQL shared by stateless server nodes.
//!
//! This module owns only what is PostgreSQL-specific: the pool and the PostgreSQL migrations
//! (sqlx serializes concurrent migration runs from several nodes with an advisory lock). Every
//! query comes from [`crate::sql`], shared with SQLite. Durability is the server's default
//! (`synchronous_commit = on`): a commit that returned is on disk.

use crate::batch::Outcome;
use crate::postgres_connection_loss::ConnectionLoss;
use crate::postgres_point_reads::{PointRead, PointReads};
use crate::postgres_token_state_cache::{self as token_state, TokenStateCache, TokenStateChange};
use crate::sql::grants::CodeRow;
use crate::sql::load;
use crate::{CodeConsumption, Store, StoreError, StoreResult};
use async_trait::async_trait;
use mandate_core::event::NewEvent;
use mandate_core::refresh::RefreshFamily;
use mandate_core::time::Timestamp;
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions,
};
use sqlx::query::Query;
use sqlx::{Connection as _, Postgres};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};

/// The channel the `events_notify` trigger signals on every committed event insert.
const EVENTS_CHANNEL: &str = "mandate_events";

/// Whom a node's listening connection tells what it hears.
struct Notified {
    /// Readers that follow the log, woken by every event commit.
    events: watch::Sender<u64>,
    loss: Arc<ConnectionLoss>,
    /// Introspection's kept answers, dropped by every change to token state.
    token_state: Arc<TokenStateCache>,
}

impl Notified {
    /// Relays notifications until the process ends. When the connection ends, the loss is
    /// recorded, kept answers are neither used nor kept and readers are woken (notifications
    /// sent meanwhile are lost), until the node listens again on a new connection.
    async fn follow(self, mut listener: PgListener) {
        let mut seen = 0u64;
        let mut listening = true;
        loop {
            if !listening {
                // `unlisten` without a connection only forgets the channel; `listen` then
                // connects, listens on the others again, and on this one.
                let relisten = async {
                    listener.unlisten(token_state::CHANNEL).await?;
                    listener.listen(token_state::CHANNEL).await
                };
                if let Err(error) = relisten.await {
                    tracing::warn!(error = %error, "event notifications interrupted");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                listening = true;
                self.token_state.hearing();
            }
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.channel() == token_state::CHANNEL => {
                    self.token_state.drop_all();
                    continue;
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    // The database ended this connection, and likely every other (a restart,
                    // a failover): test them before use.
                    self.token_state.deaf();
                    self.loss.record();
                    listening = false;
                    tracing::warn!("database connection lost; reconnecting");
                }
                Err(error) => {
                    // Readers still poll while this retries; kept answers wait for it.
                    self.token_state.deaf();
                    listening = false;
                    tracing::warn!(error = %error, "event notifications interrupted");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            seen += 1;
            self.events.send_replace(seen);
        }
    }
}

/// The fifteen event columns as arrays, from parameter `$first` on, as rows (PostgreSQL's
/// `UNNEST`): one statement and one fixed text for a batch of any size, with a parameter per
/// column rather than per value.
fn unnest_columns(first: usize) -> String {
    const TYPES: [&str; 15] = [
        "bigint", "bigint", "text", "text", "text", "text", "text", "text", "text", "text", "text",
        "text", "text", "text", "text",
    ];
    let arrays: Vec<String> = TYPES
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}[]", first + i))
        .collect();
    format!(
        "INSERT INTO events ({}) SELECT * FROM UNNEST({})",
        crate::sql::events::INSERT_COLUMNS,
        arrays.join(", ")
    )
}

/// Inserts a batch of numbered, chained events (parameters `$1`-`$15`, [`bind_columns`]).
static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| unnest_columns(1));

/// A group-commit batch in one statement, and so one implicit transaction: move the chain's
/// head from `$2` (the last event this node committed) by `$1`, and insert the events, already
/// numbered and chained onto that event's hash, but only if the head was still at `$2`. The
/// `UPDATE` locks the head until the statement commits, as the general path's reservation
/// does; a writer that got there first makes it match no row, and then nothing is inserted.
/// PostgreSQL only (`UNNEST`, a data-modifying `WITH`): the SQL shared with SQLite is in
/// [`crate::sql::events`].
static APPEND_AT_HEAD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH head AS (UPDATE event_chain SET seq = seq + $1 WHERE id = 1 AND seq = $2 \
         RETURNING seq) {} WHERE EXISTS (SELECT 1 FROM head)",
        unnest_columns(3)
    )
});

/// An authorization code's redemption alone, in one statement and so one implicit transaction
/// (no `BEGIN` and `COMMIT` round trips): consume the code if it is unused, record on it the
/// refresh family its redemption creates (`$3`, so a replay can revoke the family), and
/// insert that family (`$3`-`$15`, [`crate::sql::refresh::INSERT_FAMILY`]'s columns) only if
/// the code was consumed. Answers the consumed code's row, or no row. PostgreSQL only (a
/// data-modifying `WITH`).
static REDEEM_CODE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH consumed AS (UPDATE authorization_codes SET consumed_at = $2, family_id = $3 \
         WHERE code_hash = $1 AND consumed_at IS NULL RETURNING {code}), \
         family AS (INSERT INTO refresh_families ({family}) \
         SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM consumed) \
         SELECT {code} FROM consumed",
        code = crate::sql::grants::CODE_COLUMNS,
        family = crate::sql::refresh::FAMILY_INSERT_COLUMNS,
    )
});

/// Binds a batch's columns as arrays, in [`crate::sql::events::INSERT_COLUMNS`] order.
fn bind_columns<'q>(
    query: Query<'q, Postgres, PgArguments>,
    events: &'q [NewEvent],
    details: &'q [String],
    links: &'q [(i64, String)],
) -> Query<'q, Postgres, PgArguments> {
    let column = |f: fn(&NewEvent) -> Option<&str>| events.iter().map(f).collect::<Vec<_>>();
    query
        .bind(links.iter().map(|(seq, _)| *seq).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.at.unix()).collect::<Vec<_>>())
        .bind(column(|e| Some(e.action.as_str())))
        .bind(column(|e| Some(e.actor_kind.as_str())))
        .bind(column(|e| e.actor_id.as_deref()))
        .bind(column(|e| e.tenant_id.as_deref()))
        .bind(column(|e| e.user_id.as_deref()))
        .bind(column(|e| e.client_id.as_deref()))
        .bind(column(|e| e.grant_id.as_deref()))
        .bind(column(|e| e.scopes.as_deref()))
        .bind(column(|e| e.reason.as_deref()))
        .bind(column(|e| e.ip.as_deref()))
        .bind(column(|e| e.user_agent.as_deref()))
        .bind(details)
        .bind(
            links
                .iter()
                .map(|(_, hash)| hash.as_str())
                .collect::<Vec<_>>(),
        )
}

/// Connections per node. Each is a backend process on the database server, so this stays
/// modest; many nodes share one database's `max_connections`.
const MAX_CONNECTIONS: u32 = 16;

/// How long a statement waits for a connection: for one of the pool's to be free, or for the
/// database to accept a new one. Past it the statement fails as unavailable
/// ([`StoreError::is_unavailable`]) and its request answers `503`, instead of holding the
/// caller for sqlx's default 30 s while the database is down. The same bound as SQLite's busy
/// timeout.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a statement waits for a lock another session holds (PostgreSQL's `lock_timeout`,
/// set on every connection unless the URL's `options` set it): past it the statement fails
/// as unavailable and its request answers `503`, as SQLite's does past its busy timeout,
/// instead of waiting for as long as, say, an operator's open transaction lasts.
const LOCK_TIMEOUT: &str = "5s";

fn with_lock_timeout(options: PgConnectOptions) -> PgConnectOptions {
    if options
        .get_options()
        .is_some_and(|set| set.contains("lock_timeout"))
    {
        return options;
    }
    options.options([("lock_timeout", LOCK_TIMEOUT)])
}

/// Applies the migrations on a connection without [`LOCK_TIMEOUT`]: nodes starting together
/// wait for each other's migration (sqlx's advisory lock) as long as it takes, and a
/// migration waits for the locks it needs rather than failing a start. The connection is
/// closed afterwards, not returned to the pool with that setting.
async fn migrate(pool: &PgPool) -> StoreResult<()> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET lock_timeout = 0")
        .execute(&mut conn)
        .await?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// How long a group-commit batch may take ([`Store::batch_deadline`]). A commit takes
/// milliseconds, or up to [`LOCK_TIMEOUT`] per statement when another session holds what it
/// needs; one that has had no answer for this long is on a connection to a database that
/// stopped answering without closing it, and every request queued behind it would wait for
/// TCP to give up, minutes later.
const BATCH_DEADLINE: Duration = Duration::from_secs(15);

/// The pool's settings: [`MAX_CONNECTIONS`], [`ACQUIRE_TIMEOUT`], and a test only for a connection that sat idle
/// or may have ended with others (`loss`).
///
/// sqlx tests every connection as it returns to the pool (a `Sync` round trip), and by
/// default tests it again as it leaves (`test_before_acquire`): two round trips besides the
/// statement for every query, which cost more of a point read's CPU than the read. A
/// connection that came back a moment ago passed the first test then; one that sat idle, or
/// was last good around a connection loss this node saw, is still tested
/// ([`ConnectionLoss::worth_testing`]), so a dead connection is replaced before a request can
/// see it fail.
pub(crate) fn pool_options(loss: Arc<ConnectionLoss>) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            let test = loss.worth_testing(meta.idle_for);
            Box::pin(async move {
                // A failed test closes the connection and the pool opens another.
                Ok(!test || conn.ping().await.is_ok())
            })
        })
}

pub(crate) struct PostgresStore {
    pool: PgPool,
    /// Started on first use: one LISTEN connection per node, shared by every feed reader.
    notifications: OnceCell<watch::Receiver<u64>>,
    /// The last audit chain link this process committed (see `sql::events`).
    last_link: crate::sql::events::LastLink,
    /// Connections lent for the hot paths' point reads, outside the pool.
    point_reads: PointReads,
    /// When a connection of this node last ended under it.
    loss: Arc<ConnectionLoss>,
    /// Introspection's kept answers, once the server turns them on.
    token_state: Arc<TokenStateCache>,
}

impl PostgresStore {
    /// Where the revocation events are read from ([`crate::sql::events::events_query`]):
    /// PostgreSQL picks their partial index by itself.
    pub(crate) const REVOCATION_EVENTS: &str = "events";

    /// None: a PostgreSQL statement is a round trip to the server either way; there is no
    /// hand-off to another thread to save.
    pub(crate) const fn inline_reads(&self) -> Option<&crate::sqlite_inline_reads::InlineReads> {
        None
    }

    /// Where introspection's answers are kept ([`crate::postgres_token_state_cache`]).
    pub(crate) fn token_state_cache(&self) -> Option<&TokenStateCache> {
        Some(&self.token_state)
    }

    /// Held by a write that may end tokens' use: this node's kept answers are dropped when it
    /// ends, before its caller hears back.
    pub(crate) fn token_state_change(&self) -> TokenStateChange<'_> {
        self.token_state.change()
    }

    /// Starts one of the hot paths' point reads ([`crate::postgres_point_reads`]).
    pub(crate) fn point_read(&self) -> PointRead<'_> {
        self.point_reads.point_read()
    }

    /// Connects to and migrates the database at `url` (`postgres://user@host:port/db`).
    pub(crate) async fn connect(url: &str) -> StoreResult<Self> {
        let loss = Arc::new(ConnectionLoss::default());
        let options = with_lock_timeout(url.parse()?);
        let pool = pool_options(loss.clone()).connect_with(options).await?;
        migrate(&pool).await?;
        Ok(Self {
            point_reads: PointReads::new(pool.clone(), loss.clone()),
            loss,
            pool,
            notifications: OnceCell::new(),
            last_link: Default::default(),
            token_state: Arc::default(),
        })
    }

    /// The connection group-committed event batches are written on: any pooled one (the head
    /// lock orders writers; a server has one writer task anyway).
    async fn event_connection(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    /// Inserts events already numbered and chained (`links`, in input order) inside the
    /// caller's transaction, in one statement.
    pub(crate) async fn insert_events(
        conn: &mut PgConnection,
        events: &[NewEvent],
        details: &[String],
        links: &[(i64, String)],
    ) -> StoreResult<()> {
        bind_columns(sqlx::query(&INSERT_EVENTS), events, details, links)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Appends a group-commit batch (see [`crate::group_commit`]). When this node wrote the
    /// chain's head, the batch is chained onto the link it remembers and written by one
    /// statement in one round trip ([`APPEND_AT_HEAD`]), instead of a transaction of four or
    /// more. If another writer moved the head since, that statement changes nothing and the
    /// batch goes through the general path, which reads the head.
    async fn append_batch(&self, events: &[NewEvent], details: &[String]) -> StoreResult<Vec<i64>> {
        if let Some((head, head_hash)) = self.last_link.last() {
            let links = crate::sql::events::chain(head, &head_hash, events, details);
            if self.append_at_head(head, events, details, &links).await? {
                let seqs = links.iter().map(|(seq, _)| *seq).collect();
                if let Some(last) = links.into_iter().last() {
                    self.last_link.committed(last);
                }
                return Ok(seqs);
            }
        }
        self.append_in_transaction(events, details).await
    }

    /// Runs [`APPEND_AT_HEAD`]; `false` if the head was no longer at `head` (nothing written).
    async fn append_at_head(
        &self,
        head: i64,
        events: &[NewEvent],
        details: &[String],
        links: &[(i64, String)],
    ) -> StoreResult<bool> {
        let count =
            i64::try_from(events.len()).map_err(|_| StoreError::Corrupt("event batch size"))?;
        let query = sqlx::query(&APPEND_AT_HEAD).bind(count).bind(head);
        let result = bind_columns(query, events, details, links)
            .execute(&self.pool)
            .await?;
        match result.rows_affected() {
            0 => Ok(false),
            n if n == events.len() as u64 => Ok(true),
            _ => Err(StoreError::Corrupt("audit chain: partial batch")),
        }
    }

    /// A code's redemption alone in one statement ([`REDEEM_CODE`], or the plain consumption
    /// when it creates no family); a code not consumed is then read to tell a replay from an
    /// unknown code.
    async fn redeem_code_alone(
        &self,
        code_hash: &str,
        now: Timestamp,
        family: Option<&RefreshFamily>,
    ) -> StoreResult<Option<Outcome>> {
        let consume = |sql| {
            sqlx::query_as::<_, CodeRow>(sql)
                .bind(code_hash)
                .bind(now.unix())
        };
        let fresh = match family {
            Some(family) => crate::sql::refresh::bind_family!(consume(&REDEEM_CODE), family)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::sql::write_error("refresh family", "grant"))?,
            None => {
                consume(crate::sql::grants::CONSUME_CODE)
                    .bind(None::<&str>)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let consumed = match fresh {
            Some(row) => CodeConsumption::Fresh(row.try_into()?),
            None => Self::not_consumed(&self.pool, code_hash).await?,
        };
        Ok(Some(Outcome {
            declined: !matches!(consumed, CodeConsumption::Fresh(_)),
            consumed: Some(consumed),
            seq: None,
        }))
    }

    /// A group-commit batch with changes: on the event connection, through sqlx. (The
    /// writer does not send PostgreSQL such batches, [`Store::groups_changes`], but the
    /// trait's callers may.)
    async fn commit_entries(
        &self,
        entries: &[crate::batch::Entry],
    ) -> StoreResult<Vec<crate::batch::Outcome>> {
        self.commit_batch_pooled(entries).await
    }

    /// Nothing to do: the `events_notify` trigger announces every commit that wrote events,
    /// to every node.
    fn events_committed(&self) {}
}

crate::sql::impl_store_traits!(PostgresStore, sqlx::Postgres);

/// Inserts one table's rows of a bulk load inside `tx`: one `UNNEST` statement, each column
/// bound as one array.
async fn load_table(
    tx: &mut PgConnection,
    table: &load::Table,
    columns: &[load::Column],
    rows: usize,
) -> StoreResult<()> {
    if rows == 0 {
        return Ok(());
    }
    let sql = table.unnest_insert();
    let mut query = sqlx::query(&sql);
    for column in columns {
        query = match column {
            load::Column::Text(v) => query.bind(v),
            load::Column::Int(v) => query.bind(v),
            load::Column::Bool(v) => query.bind(v),
        };
    }
    query.execute(&mut *tx).await.map_err(load::load_error)?;
    Ok(())
}

#[async_trait]
impl crate::BulkLoad for PostgresStore {
    async fn load_batch(&self, batch: &crate::LoadBatch) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (table, columns, rows) in load::batch_tables(batch)? {
            load_table(&mut tx, table, &columns, rows).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn refresh_statistics(&self) -> StoreResult<()> {
        sqlx::query(&load::analyze_statement())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn groups_changes(&self) -> bool {
        false
    }

    fn batch_deadline(&self) -> Option<Duration> {
        Some(BATCH_DEADLINE)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn cache_token_state(&self, ttl: Duration) -> StoreResult<()> {
        self.token_state.enable(ttl);
        // Answers are kept only while this node listens for the changes that drop them.
        self.event_notifications().await?;
        Ok(())
    }

    async fn event_notifications(&self) -> StoreResult<Option<watch::Receiver<u64>>> {
        let rx = self
            .notifications
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                // Reconnected here, after the loss is recorded, so that the pool tests the
                // connection it lends for it.
                listener.eager_reconnect(false);
                listener
                    .listen_all([EVENTS_CHANNEL, token_state::CHANNEL])
                    .await?;
                self.token_state.hearing();
                let (tx, rx) = watch::channel(0u64);
                let notified = Notified {
                    events: tx,
                    loss: self.loss.clone(),
                    token_state: self.token_state.clone(),
                };
                tokio::spawn(notified.follow(listener));
                Ok::<_, StoreError>(rx)
            })
            .await?;
        Ok(Some(rx.clone()))
    }
}
