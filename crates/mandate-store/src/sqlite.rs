//! The embedded backend: one SQLite file, the zero-configuration default.
//!
//! This module owns only what is SQLite-specific: opening the file durably (WAL journal with
//! `synchronous = FULL`, so a commit that returned survives a power cut; SQLite is built to sync
//! with `fdatasync`, see `.cargo/config.toml`), checkpointing the WAL beside the writer rather
//! than in its commits ([`checkpoint_wal`]), foreign keys on, a busy timeout so concurrent
//! writers queue instead of failing, the SQLite migrations, announcing this process's event
//! commits (SQLite has no LISTEN/NOTIFY), binding event batches cheaply
//! ([`SqliteStore::insert_events`]), and the connections the hottest reads run on inline
//! ([`crate::sqlite_inline_reads`]) and the group-commit writer's batches are written on
//! ([`crate::sqlite_batch_writer`]). Every query comes from [`crate::sql`], shared with
//! PostgreSQL.

use crate::batch::{Entry, Outcome};
use crate::sql::load;
use crate::sqlite_batch_writer::BatchConnection;
use crate::sqlite_inline_reads::InlineReads;
use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use mandate_core::event::NewEvent;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::sqlite::{SqliteConnection, SqliteSynchronous};
use sqlx::{Connection, Sqlite};
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// Connections in the pool. SQLite has one writer at a time; the others serve reads, which WAL
/// lets run alongside the writer.
const MAX_CONNECTIONS: u32 = 8;
/// How long a writer waits for the write lock before the statement fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a connection of the store's own copies the WAL back into the database file
/// ([`checkpoint_wal`]). Committing connections no longer do it every 1,000 pages (SQLite's
/// default), which stalled the group-commit writer, and with it every request waiting for a
/// commit, for each checkpoint; and a page written by many commits in an interval is copied
/// once. Measured under refresh load (BENCHMARKS.md, "Checkpoints off the writer's path").
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// How often it looks while the WAL stays as it was: an idle server wakes once a second.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);
/// Pages the WAL may reach before a committing connection checkpoints it itself: the
/// backstop for when the checkpointer falls behind or fails. 40 MiB of WAL at the default
/// page size.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Events in one `INSERT` at most (15 parameters each). The writer's batches are larger only
/// under extreme load, and then take several statements in the same transaction.
pub(crate) const MAX_INSERT_ROWS: usize = 256;

/// `INSERT` statements of 1, 2, 4, ... [`MAX_INSERT_ROWS`] rows of `?` parameters, in
/// [`crate::sql::events::INSERT_COLUMNS`] order; rows whose `seq` is NULL are padding and are
/// not inserted.
static PADDED_INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let row = format!(
        "({})",
        vec!["?"; crate::sql::events::COLUMN_COUNT].join(", ")
    );
    std::iter::successors(Some(1usize), |n| (*n < MAX_INSERT_ROWS).then_some(n * 2))
        .map(|rows| {
            format!(
                "INSERT INTO events ({}) SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL",
                crate::sql::events::INSERT_COLUMNS,
                vec![row.as_str(); rows].join(", ")
            )
        })
        .collect()
});

/// The padded `INSERT` for `rows` events (a power of two up to [`MAX_INSERT_ROWS`]).
pub(crate) fn padded_insert(rows: usize) -> StoreResult<&'static str> {
    PADDED_INSERTS
        .get(rows.trailing_zeros() as usize)
        .filter(|_| rows.is_power_of_two())
        .map(String::as_str)
        .ok_or(StoreError::Corrupt("event batch size"))
}

/// One point read on a pooled connection ([`crate::sql::point_read`]): a file on this machine
/// has no connection that ends under the reader, so a failure is final.
pub(crate) struct PooledPointRead<'a>(&'a SqlitePool);

impl PooledPointRead<'_> {
    pub(crate) async fn connection(&self) -> StoreResult<PoolConnection<Sqlite>> {
        Ok(self.0.acquire().await?)
    }

    /// None: a local file answers or fails; no network can drop the answer.
    pub(crate) fn deadline(&self) -> Option<std::time::Duration> {
        None
    }

    /// The statement's value (never `None`: a read here is not run again).
    pub(crate) fn settle<T>(
        &mut self,
        _conn: PoolConnection<Sqlite>,
        result: Result<T, sqlx::Error>,
    ) -> StoreResult<Option<T>> {
        Ok(Some(result?))
    }
}

/// Where the group-commit writer's batches are written: always on one connection of their own
/// (see [`SqliteStore::event_connection`]).
enum Batches {
    /// A file database: one call per batch on a blocking thread, with rusqlite
    /// ([`crate::sqlite_batch_writer`]).
    Inline(BatchConnection),
    /// An in-memory database, which only sqlx's connections share: through sqlx.
    Pooled(tokio::sync::Mutex<SqliteConnection>),
}

pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// The group-commit writer's own connection.
    batches: Batches,
    /// Bumped after every commit that wrote events, for [`Store::event_notifications`].
    events: watch::Sender<u64>,
    /// The last audit chain link this process committed (see `sql::events`).
    last_link: crate::sql::events::LastLink,
    /// Dropped with the store, which ends its [`checkpoint_wal`] task.
    _stop_checkpoints: oneshot::Sender<()>,
    /// Point reads without a hand-off to sqlx's threads (a file database only).
    inline: Option<InlineReads>,
}

impl SqliteStore {
    /// Where the revocation events are read from ([`crate::sql::events::events_query`]).
    /// Without statistics, SQLite's planner prefers looking each revocation action up in the
    /// action index and sorting what it finds over walking their own index in order; naming
    /// the index keeps a feed that starts from the beginning from sorting every revocation
    /// for each page (and fails loudly if the statement ever stops matching the index).
    pub(crate) const REVOCATION_EVENTS: &str = "events INDEXED BY events_revocations";

    /// Opens (creating the file and its directory if needed) and migrates the database at
    /// `url` (`sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `sqlite::memory:`).
    pub(crate) async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Temporary storage in memory: a multi-row insert inside a transaction keeps a
            // statement journal, which SQLite spills to a new file in /var/tmp past 64 KiB, so
            // large event batches each created, wrote and unlinked a file (`strace`).
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        ensure_parent_dir(options.get_filename())?;
        let inline = InlineReads::for_file(options.get_filename());
        // Switching a new file to WAL takes an exclusive lock that the busy timeout does not
        // cover, so pool connections opening side by side can fail with "database is locked".
        // Do the switch and the migrations on one connection before the pool opens any. It
        // stays open until the pool has its own, which keeps an in-memory database alive.
        let mut first = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut first)
            .await?;
        // Connections are never retired: an in-memory database lives only as long as one of its
        // connections, and a file database gains nothing from reconnecting.
        // No ping before handing out a connection: a local file's connection does not go stale,
        // and the ping is one more hand-off to the connection's worker thread for every query
        // and every event batch.
        let batches = if in_memory(options.get_filename()) {
            Batches::Pooled(tokio::sync::Mutex::new(
                SqliteConnection::connect_with(&options).await?,
            ))
        } else {
            let settings = crate::sqlite_batch_writer::Settings {
                busy_timeout: BUSY_TIMEOUT,
                wal_autocheckpoint_pages: WAL_AUTOCHECKPOINT_PAGES,
            };
            Batches::Inline(BatchConnection::open(options.get_filename(), &settings)?)
        };
        let checkpointer = SqliteConnection::connect_with(&options).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        first.close().await?;
        let (stop_checkpoints, stop) = oneshot::channel();
        tokio::spawn(checkpoint_wal(checkpointer, stop));
        Ok(Self {
            pool,
            batches,
            events: watch::Sender::new(0),
            last_link: Default::default(),
            _stop_checkpoints: stop_checkpoints,
            inline,
        })
    }

    /// The connection group-committed event batches are written on, always the same one. In
    /// WAL mode a connection throws its page cache away whenever another connection has
    /// written since its last transaction; batches spread over the pool would therefore
    /// re-read the event table's and its indexes' pages on nearly every commit. On its own
    /// connection the writer finds them cached.
    ///
    /// Only an in-memory database's batches go through sqlx; a file database's have no sqlx
    /// connection to ask for.
    async fn event_connection(&self) -> StoreResult<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        match &self.batches {
            Batches::Pooled(conn) => Ok(conn.lock().await),
            Batches::Inline(_) => Err(StoreError::Corrupt("event connection of a file database")),
        }
    }

    /// Inserts events already numbered and chained (`links`, in input order) inside the
    /// caller's transaction, in one statement per [`MAX_INSERT_ROWS`] events.
    ///
    /// sqlx looks up every `$N` parameter's name through SQLite, which walks the statement's
    /// list of names each time: binding a statement of n named parameters costs O(n²), 4 % of
    /// the server's time under token load with batches of 128 rows (`perf`). Plain `?`
    /// parameters are bound in order with no lookup. A batch is padded with rows of NULLs to
    /// the next power of two, which the statement skips, so a connection caches one statement
    /// per power of two instead of one per batch size, and every batch takes one statement.
    pub(crate) async fn insert_events(
        conn: &mut SqliteConnection,
        events: &[NewEvent],
        details: &[String],
        links: &[(i64, String)],
    ) -> StoreResult<()> {
        let chunks = events
            .chunks(MAX_INSERT_ROWS)
            .zip(details.chunks(MAX_INSERT_ROWS))
            .zip(links.chunks(MAX_INSERT_ROWS));
        for ((events, details), links) in chunks {
            let rows = events.len().next_power_of_two();
            let mut query = sqlx::query(padded_insert(rows)?);
            for ((event, detail), (seq, hash)) in events.iter().zip(details).zip(links) {
                query = crate::sql::events::bind_event!(query, seq, event, detail, hash);
            }
            for _ in 0..(rows - events.len()) * crate::sql::events::COLUMN_COUNT {
                query = query.bind(None::<i64>);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Appends a group-commit batch (see [`crate::group_commit`]).
    async fn append_batch(&self, events: &[NewEvent], details: &[String]) -> StoreResult<Vec<i64>> {
        let Batches::Inline(batches) = &self.batches else {
            return self.append_in_transaction(events, details).await;
        };
        let links = batches
            .append(events.to_vec(), details.to_vec(), self.last_link.last())
            .await?;
        let seqs = links.iter().map(|(seq, _)| *seq).collect();
        self.batch_committed(links);
        Ok(seqs)
    }

    /// A group-commit batch with changes (see [`crate::batch`]).
    async fn commit_entries(&self, entries: &[Entry]) -> StoreResult<Vec<Outcome>> {
        let Batches::Inline(batches) = &self.batches else {
            return self.commit_batch_pooled(entries).await;
        };
        let (outcomes, links) = batches
            .commit(entries.to_vec(), self.last_link.last())
            .await?;
        self.batch_committed(links);
        Ok(outcomes)
    }

    /// After a batch committed on the batch connection: announces its events, if any, and
    /// remembers its last link.
    fn batch_committed(&self, links: Vec<crate::sqlite_batch_writer::Link>) {
        if let Some(last) = links.into_iter().last() {
            self.events_committed();
            self.last_link.committed(last);
        }
    }

    /// Starts one of the hot paths' point reads that could not be answered inline: on a
    /// pooled connection, run once.
    pub(crate) fn point_read(&self) -> PooledPointRead<'_> {
        PooledPointRead(&self.pool)
    }

    /// None: SQLite's writer groups changes ([`Store::groups_changes`]), and a change
    /// applied alone takes the shared transaction.
    async fn redeem_code_alone(
        &self,
        _code_hash: &str,
        _now: mandate_core::time::Timestamp,
        _family: Option<&mandate_core::refresh::RefreshFamily>,
    ) -> StoreResult<Option<crate::batch::Outcome>> {
        Ok(None)
    }

    /// Where the hottest point reads are tried first (`None` for an in-memory database).
    pub(crate) fn inline_reads(&self) -> Option<&InlineReads> {
        self.inline.as_ref()
    }

    /// None: introspection's answer is read on the asking thread, cheaper than keeping it, and
    /// another process writing the file (the CLI) could not tell this one of a change.
    pub(crate) const fn token_state_cache(
        &self,
    ) -> Option<&crate::postgres_token_state_cache::TokenStateCache> {
        None
    }

    /// Nothing to drop ([`Self::token_state_cache`]).
    pub(crate) const fn token_state_change(
        &self,
    ) -> crate::postgres_token_state_cache::TokenStateChange<'_> {
        crate::postgres_token_state_cache::TokenStateChange(None)
    }

    /// Announces a commit that wrote events to this process's readers.
    fn events_committed(&self) {
        self.events.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on `conn`, a connection of its own, until
/// `stop` resolves (its sender, held by the store, is dropped); every [`CHECKPOINT_IDLE`] while
/// the WAL does not change.
///
/// `PASSIVE`: it copies what no reader still needs and never waits for a lock, so it runs
/// beside the writer and the readers instead of in a committing transaction's path. With
/// nothing new in the WAL it returns at once without a sync.
async fn checkpoint_wal(mut conn: SqliteConnection, mut stop: oneshot::Receiver<()>) {
    let mut last = None;
    let mut failing = false;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            () = tokio::time::sleep(wait) => {}
        }
        // (busy, pages in the WAL, pages copied): unchanged means nothing was committed.
        let result: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut conn)
            .await;
        wait = match result {
            Ok(state) => {
                failing = false;
                let idle = last == Some(state);
                last = Some(state);
                if idle {
                    CHECKPOINT_IDLE
                } else {
                    CHECKPOINT_EVERY
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        error = %error,
                        "WAL checkpoint failed; commits will checkpoint past {WAL_AUTOCHECKPOINT_PAGES} pages"
                    );
                }
                failing = true;
                CHECKPOINT_IDLE
            }
        };
    }
    let _ = conn.close().await;
}

/// Creates the directory the database file goes in, so a fresh data directory works; reports
/// the path if that fails (SQLite would only say "unable to open database file").
fn ensure_parent_dir(filename: &Path) -> StoreResult<()> {
    if in_memory(filename) {
        return Ok(());
    }
    let Some(parent) = filename.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(parent).map_err(|source| {
        StoreError::Database(sqlx::Error::Configuration(Box::new(DirectoryError {
            path: parent.display().to_string(),
            source,
        })))
    })
}

/// Whether sqlx's filename for a database names an in-memory one (sqlx turns
/// `sqlite::memory:` into a shared-cache `file:` URI only its own connections open).
pub(crate) fn in_memory(filename: &Path) -> bool {
    let name = filename.to_string_lossy();
    name == ":memory:" || name.starts_with("file:")
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create the database directory {path}")]
struct DirectoryError {
    path: String,
    #[source]
    source: std::io::Error,
}

crate::sql::impl_store_traits!(SqliteStore, sqlx::Sqlite);

/// Page cache of a connection that bulk-loads: 1 GiB (negative: KiB).
const LOAD_CACHE_PRAGMA: &str = "PRAGMA cache_size = -1048576";

/// Inserts one table's rows of a bulk load inside `tx`, [`load::SQLITE_ROWS_PER_INSERT`] rows
/// per statement with `?` parameters, bound row by row.
async fn load_table(
    tx: &mut sqlx::SqliteConnection,
    table: &load::Table,
    columns: &[load::Column],
    rows: usize,
) -> StoreResult<()> {
    let full = table.values_insert(load::SQLITE_ROWS_PER_INSERT);
    let mut start = 0;
    while start < rows {
        let end = (start + load::SQLITE_ROWS_PER_INSERT).min(rows);
        let partial;
        let sql = if end - start == load::SQLITE_ROWS_PER_INSERT {
            &full
        } else {
            partial = table.values_insert(end - start);
            &partial
        };
        let mut query = sqlx::query(sql);
        for row in start..end {
            for column in columns {
                query = match column {
                    load::Column::Text(v) => query.bind(v.get(row).and_then(Option::as_deref)),
                    load::Column::Int(v) => query.bind(v.get(row).copied().flatten()),
                    load::Column::Bool(v) => query.bind(v.get(row).copied()),
                };
            }
        }
        query.execute(&mut *tx).await.map_err(load::load_error)?;
        start = end;
    }
    Ok(())
}

#[async_trait]
impl crate::BulkLoad for SqliteStore {
    async fn load_batch(&self, batch: &crate::LoadBatch) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        // Rows with random keys land on random index pages: millions of rows touch far more
        // pages than SQLite's default 2 MiB cache holds, and every miss is a read. A bulk load
        // gets a large cache on its connection (allocated only as it fills).
        sqlx::query(LOAD_CACHE_PRAGMA).execute(&mut *conn).await?;
        let mut tx = conn.begin().await?;
        for (table, columns, rows) in load::batch_tables(batch)? {
            load_table(&mut tx, table, &columns, rows).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn refresh_statistics(&self) -> StoreResult<()> {
        // No statistics to refresh: see the trait's documentation.
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn groups_changes(&self) -> bool {
        true
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn event_notifications(&self) -> StoreResult<Option<watch::Receiver<u64>>> {
        Ok(Some(self.events.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantStore;
    use mandate_core::directory::Tenant;
    use mandate_core::time::Timestamp;

    #[tokio::test]
    async fn relative_and_absolute_urls_open_files_and_create_directories() {
        let dir = tempfile::tempdir().unwrap();
        let absolute = dir.path().join("nested/deeper/mandate.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", absolute.display()))
            .await
            .unwrap();
        store.ping().await.unwrap();
        assert!(absolute.exists());

        // Relative to the working directory, which tests cannot change safely: use a path
        // relative to it that points into the temporary directory.
        let cwd = std::env::current_dir().unwrap();
        let target = dir.path().join("rel/mandate.db");
        let relative = pathdiff(&target, &cwd);
        let store = SqliteStore::connect(&format!("sqlite://{relative}"))
            .await
            .unwrap();
        store
            .upsert_tenant(&Tenant {
                id: "acme".into(),
                name: "Acme".into(),
            })
            .await
            .unwrap();
        assert!(
            target.exists(),
            "{relative} should resolve to {}",
            target.display()
        );
    }

    /// Commits leave their pages in the WAL; the store's own connection copies them into the
    /// database file, with far fewer pages written than the commits' backstop.
    #[tokio::test]
    async fn the_wal_is_checkpointed_beside_the_writer() {
        use crate::EventStore;
        use mandate_core::event::{Action, ActorKind};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mandate.db");
        let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let events: Vec<NewEvent> = (0..2_000)
            .map(|i| {
                let mut e = NewEvent::new(
                    Timestamp::from_unix(1_000 + i),
                    Action::TokenIssued,
                    ActorKind::Agent,
                );
                e.tenant_id = Some("acme".into());
                e.grant_id = Some(format!("g_{i:032x}"));
                e
            })
            .collect();
        store.append_events(&events).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(
            pages < i64::from(WAL_AUTOCHECKPOINT_PAGES) / 10,
            "{pages} pages"
        );
        let wanted = u64::try_from(pages * page_size).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let len = std::fs::metadata(&path).unwrap().len();
            if len >= wanted {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the database file holds {len} of the {wanted} bytes committed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The events are read back from the file as written.
        let read = store
            .events(&crate::EventFilter {
                limit: 5_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(read.len(), events.len());
    }

    #[tokio::test]
    async fn in_memory_database_keeps_its_data_across_pool_connections() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store
            .upsert_tenant(&Tenant {
                id: "acme".into(),
                name: "Acme".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.tenants().await.unwrap().len(), 1);
    }

    /// A store on a new file in `dir` with [`usable_service_grant`].
    async fn file_store_with_service_grant(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        usable_service_grant(&store).await;
        store
    }

    /// A service grant of agent `cli` in tenant `acme`, for the inline-read tests.
    async fn usable_service_grant(store: &SqliteStore) {
        use crate::{AgentStore, GrantStore};
        use mandate_core::client::{Agent, ClientKind};
        use mandate_core::grant::Grant;
        use mandate_core::scope::ScopeSet;
        store
            .upsert_tenant(&Tenant {
                id: "acme".into(),
                name: "Acme".into(),
            })
            .await
            .unwrap();
        store
            .upsert_agent(&Agent {
                client_id: "cli".into(),
                name: "CLI".into(),
                kind: ClientKind::Public,
                secret_hash: None,
                redirect_uris: vec![],
                grant_types: vec![],
                max_scopes: ScopeSet::new(),
                tenant_id: None,
                access_token_ttl: 60,
                refresh_token_ttl: 0,
                default_resource: None,
                allowed_resources: vec![],
                disabled: false,
            })
            .await
            .unwrap();
        store
            .create_grant(&Grant {
                id: "g_1".into(),
                tenant_id: "acme".into(),
                user_id: None,
                client_id: "cli".into(),
                scopes: ScopeSet::new(),
                purpose: None,
                created_at: Timestamp::from_unix(1000),
                expires_at: None,
                revoked_at: None,
                revoked_reason: None,
            })
            .await
            .unwrap();
    }

    fn usable_inline(store: &SqliteStore, jti: &str) -> Option<bool> {
        let now = Timestamp::from_unix(1500);
        store.inline_reads()?.read(|conn| {
            crate::sql::token_state::access_token_usable_inline(conn, jti, "g_1", "cli", now)
        })
    }

    /// Introspection's read runs on the asking thread, and sees what the pool's connections
    /// committed the moment the commit returned (the conformance suite checks every answer).
    #[tokio::test]
    async fn token_state_is_read_inline_and_sees_every_commit() {
        use crate::{RevokedTokenStore, TokenStateStore};
        let dir = tempfile::tempdir().unwrap();
        let store = file_store_with_service_grant(&dir).await;
        let now = Timestamp::from_unix(1500);
        assert_eq!(usable_inline(&store, "j_1"), Some(true));
        store
            .revoke_jti("j_1", Timestamp::from_unix(5000))
            .await
            .unwrap();
        assert_eq!(usable_inline(&store, "j_1"), Some(false));
        assert_eq!(usable_inline(&store, "j_2"), Some(true));
        // A read that fails gives no answer (the caller asks the pool) and spoils nothing.
        let inline = store.inline_reads().unwrap();
        assert_eq!(
            inline
                .read(|conn| conn
                    .query_row("SELECT * FROM no_such_table", [], |r| r.get::<_, i64>(0))),
            None
        );
        assert_eq!(usable_inline(&store, "j_2"), Some(true));
        // The inline connections only read, and never sleep on a lock (a busy database is
        // left to the pool's connections, which wait on threads of their own).
        assert_eq!(
            inline.read(|conn| conn.execute("DELETE FROM grants", [])),
            None
        );
        assert_eq!(
            inline.read(|conn| conn.query_row("PRAGMA busy_timeout", [], |r| r.get::<_, i64>(0))),
            Some(0)
        );
        assert!(
            store
                .access_token_usable("j_2", "g_1", "cli", now)
                .await
                .unwrap()
        );
    }

    /// The group-commit writer's check of a batch's grants runs inline and finds what the
    /// pool finds: a live grant, not a revoked or an expired one, nor an unknown one.
    #[tokio::test]
    async fn grants_in_force_are_read_inline() {
        use crate::GrantStore;
        use crate::sql::grants::{grants_in_force_inline, grants_in_force_query};
        use mandate_core::grant::Grant;
        let dir = tempfile::tempdir().unwrap();
        let store = file_store_with_service_grant(&dir).await;
        let grant = |id: &str, expires_at: Option<i64>| Grant {
            id: id.into(),
            tenant_id: "acme".into(),
            user_id: Some(format!("u_{id}")),
            client_id: "cli".into(),
            scopes: mandate_core::scope::ScopeSet::new(),
            purpose: None,
            created_at: Timestamp::from_unix(1000),
            expires_at: expires_at.map(Timestamp::from_unix),
            revoked_at: None,
            revoked_reason: None,
        };
        store
            .create_grant(&grant("g_expired", Some(1200)))
            .await
            .unwrap();
        store
            .create_grant(&grant("g_later", Some(9000)))
            .await
            .unwrap();
        store.create_grant(&grant("g_revoked", None)).await.unwrap();
        let revoked = store
            .revoke_grant("g_revoked", Timestamp::from_unix(1100), "test")
            .await
            .unwrap();
        assert!(revoked);
        let ids: Vec<String> = ["g_1", "g_expired", "g_later", "g_revoked", "g_unknown"]
            .map(String::from)
            .into();
        let (sql, binds) = grants_in_force_query(&ids);
        let mut inline = store
            .inline_reads()
            .unwrap()
            .read(|conn| grants_in_force_inline(conn, &sql, 1500, &binds))
            .expect("answered inline");
        inline.sort();
        assert_eq!(inline, ["g_1", "g_later"]);
        let query = sqlx::query_scalar::<_, String>(&sql).bind(1500_i64);
        let mut pooled = crate::sql::bind_all!(query, binds)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        pooled.sort();
        assert_eq!(inline, pooled);
    }

    /// What `inline` reads for `key` on an inline connection and what `sql` reads through the
    /// pool, both turned into the store's record; fails if the inline read gave no answer.
    async fn inline_and_pooled<R, T>(
        store: &SqliteStore,
        sql: &'static str,
        key: &str,
        inline: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<Option<R>>,
    ) -> (Option<T>, Option<T>)
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        let read = store
            .inline_reads()
            .unwrap()
            .read(|conn| inline(conn, key))
            .expect("answered inline");
        let pooled = sqlx::query_as::<_, R>(sql)
            .bind(key)
            .fetch_optional(&store.pool)
            .await
            .unwrap();
        let record = |row: Option<R>| row.map(T::try_from).transpose().unwrap();
        (record(read), record(pooled))
    }

    /// The refresh and code lookups map every column inline as sqlx does: a mapping error
    /// would only fall back to the pool, which the conformance suite could not tell apart.
    #[tokio::test]
    async fn redemption_lookups_read_inline_what_the_pool_reads() {
        use crate::batch::Retiring;
        use crate::model::{CodeLookup, FamilyLookup, RefreshLookup};
        use crate::sql::grants::{CODE_LOOKUP, code_lookup_inline};
        use crate::sql::refresh::{FAMILY_LOOKUP, LOOKUP, family_lookup_inline, lookup_inline};
        use crate::{CodeStore, GrantStore, RefreshStore};
        use mandate_core::code::AuthorizationCode;
        use mandate_core::grant::Grant;
        use mandate_core::pkce::CodeChallenge;
        use mandate_core::refresh::{LiveToken, RefreshFamily, RefreshTokenRecord};
        use mandate_core::scope::ScopeSet;

        let dir = tempfile::tempdir().unwrap();
        let store = file_store_with_service_grant(&dir).await;
        let scopes = ScopeSet::parse("contacts.read contacts.write").unwrap();
        // Every optional grant column set: a user, a purpose, an expiry, a revocation.
        store
            .create_grant(&Grant {
                id: "g_full".into(),
                tenant_id: "acme".into(),
                user_id: Some("u_1".into()),
                client_id: "cli".into(),
                scopes: scopes.clone(),
                purpose: Some("sync contacts".into()),
                created_at: Timestamp::from_unix(1000),
                expires_at: Some(Timestamp::from_unix(9000)),
                revoked_at: None,
                revoked_reason: None,
            })
            .await
            .unwrap();
        let live = |generation: u64, hash: &str, issued_at: i64| LiveToken {
            generation,
            token_hash: hash.into(),
            issued_at: Timestamp::from_unix(issued_at),
            expires_at: Timestamp::from_unix(issued_at + 3600),
        };
        let family = |id: &str, grant_id: &str, live: Option<LiveToken>| RefreshFamily {
            id: id.into(),
            grant_id: grant_id.into(),
            client_id: "cli".into(),
            tenant_id: "acme".into(),
            user_id: Some("u_1".into()),
            scopes: scopes.clone(),
            resource: "https://crm.example/api".into(),
            created_at: Timestamp::from_unix(1000),
            revoked_at: None,
            live,
        };
        let token = |hash: &str, family_id: &str| RefreshTokenRecord {
            token_hash: hash.into(),
            family_id: family_id.into(),
            issued_at: Timestamp::from_unix(1000),
            expires_at: Timestamp::from_unix(4600),
            used_at: None,
        };
        // Two families whose tokens are rows of their own (one of them then rotated, which
        // gives it a live token) and one holding its live token from the start.
        for (f, g, r) in [("f_1", "g_full", "r_1"), ("f_2", "g_gone", "r_2")] {
            store.create_family(&family(f, g, None)).await.unwrap();
            store
                .insert_legacy_refresh_token(&token(r, f), None)
                .await
                .unwrap();
        }
        let legacy = Retiring::Legacy {
            token_hash: "r_1".into(),
        };
        let rotated = store
            .rotate_refresh_token(
                "f_1",
                &legacy,
                &live(1, "r_1b", 2000),
                Timestamp::from_unix(2000),
            )
            .await
            .unwrap();
        assert!(rotated);
        store
            .create_family(&family("f_3", "g_full", Some(live(0, "r_3", 1000))))
            .await
            .unwrap();
        for (hash, grant_id) in [("c_1", "g_full"), ("c_2", "g_gone")] {
            store
                .insert_code(&AuthorizationCode {
                    code_hash: hash.into(),
                    client_id: "cli".into(),
                    grant_id: grant_id.into(),
                    user_id: "u_1".into(),
                    tenant_id: "acme".into(),
                    redirect_uri: "http://127.0.0.1:5000/cb".into(),
                    redirect_uri_explicit: true,
                    code_challenge: CodeChallenge::from_stored(
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    )
                    .unwrap(),
                    resource: "https://crm.example/api".into(),
                    scopes: scopes.clone(),
                    created_at: Timestamp::from_unix(1000),
                    expires_at: Timestamp::from_unix(1060),
                    family_id: Some("f_1".into()),
                })
                .await
                .unwrap();
        }
        assert!(
            store
                .revoke_grant("g_full", Timestamp::from_unix(3000), "test")
                .await
                .unwrap()
        );
        for hash in ["r_1", "r_1b", "r_2", "r_missing"] {
            let (read, pooled): (Option<RefreshLookup>, _) =
                inline_and_pooled(&store, LOOKUP, hash, lookup_inline).await;
            assert_eq!(read, pooled, "{hash}");
            assert_eq!(read.is_some(), ["r_1", "r_2"].contains(&hash), "{hash}");
        }
        let full = store.refresh_token("r_1").await.unwrap().unwrap();
        assert!(full.successor_live && full.token.used_at.is_some());
        assert_eq!(full.found.family.live, Some(live(1, "r_1b", 2000)));
        assert_eq!(
            full.found.grant.and_then(|g| g.revoked_reason).as_deref(),
            Some("test")
        );
        for id in ["f_1", "f_2", "f_3", "f_missing"] {
            let (read, pooled): (Option<FamilyLookup>, _) =
                inline_and_pooled(&store, FAMILY_LOOKUP, id, family_lookup_inline).await;
            assert_eq!(read, pooled, "{id}");
            assert_eq!(read.is_some(), id != "f_missing", "{id}");
        }
        let f_3 = store.refresh_family("f_3").await.unwrap().unwrap();
        assert_eq!(f_3.family.live, Some(live(0, "r_3", 1000)));
        assert_eq!(f_3.grant.map(|g| g.id).as_deref(), Some("g_full"));

        for hash in ["c_1", "c_2", "c_missing"] {
            let (read, pooled): (Option<CodeLookup>, _) =
                inline_and_pooled(&store, CODE_LOOKUP, hash, code_lookup_inline).await;
            assert_eq!(read, pooled, "{hash}");
            assert_eq!(read.is_some(), hash != "c_missing");
        }
        let c_2 = store.authorization_code("c_2").await.unwrap().unwrap();
        assert!(c_2.grant.is_none() && !c_2.consumed);
    }

    #[tokio::test]
    async fn an_in_memory_database_has_no_inline_reads() {
        use crate::TokenStateStore;
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.inline.is_none());
        usable_service_grant(&store).await;
        let now = Timestamp::from_unix(1500);
        assert!(
            store
                .access_token_usable("j_1", "g_1", "cli", now)
                .await
                .unwrap()
        );
    }

    /// One code with [`usable_service_grant`]'s grant, for the batch tests.
    fn code(hash: &str) -> mandate_core::code::AuthorizationCode {
        mandate_core::code::AuthorizationCode {
            code_hash: hash.into(),
            client_id: "cli".into(),
            grant_id: "g_1".into(),
            user_id: "u_1".into(),
            tenant_id: "acme".into(),
            redirect_uri: "http://127.0.0.1:5000/cb".into(),
            redirect_uri_explicit: false,
            code_challenge: mandate_core::pkce::CodeChallenge::from_stored(
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )
            .unwrap(),
            resource: "https://crm.example/api".into(),
            scopes: mandate_core::scope::ScopeSet::parse("contacts.read").unwrap(),
            created_at: Timestamp::from_unix(1000),
            expires_at: Timestamp::from_unix(1060),
            family_id: None,
        }
    }

    /// What each of a series of batches came to: its outcomes, or its error's name.
    async fn batch_results(store: &SqliteStore) -> Vec<Result<Vec<Outcome>, String>> {
        use crate::batch::{Change, Retiring};
        use crate::{CodeStore, EventStore, RefreshStore};
        use mandate_core::event::{Action, ActorKind, NewEvent};
        use mandate_core::refresh::{LiveToken, RefreshFamily};
        let now = Timestamp::from_unix(1010);
        let live = |generation: u64, hash: &str| LiveToken {
            generation,
            token_hash: hash.into(),
            issued_at: now,
            expires_at: Timestamp::from_unix(4600),
        };
        let family = RefreshFamily {
            id: "f_1".into(),
            grant_id: "g_1".into(),
            client_id: "cli".into(),
            tenant_id: "acme".into(),
            user_id: Some("u_1".into()),
            scopes: mandate_core::scope::ScopeSet::parse("contacts.read").unwrap(),
            resource: "https://crm.example/api".into(),
            created_at: now,
            revoked_at: None,
            live: Some(live(0, "h_1")),
        };
        store.insert_code(&code("c_1")).await.unwrap();
        store.insert_code(&code("c_2")).await.unwrap();
        let taken = RefreshFamily {
            id: "f_0".into(),
            live: Some(live(0, "h_0")),
            ..family.clone()
        };
        store.create_family(&taken).await.unwrap();
        let event = |reason: &str| NewEvent {
            reason: Some(reason.into()),
            ..NewEvent::new(now, Action::TokenIssued, ActorKind::Agent)
        };
        let entry = |change: Option<Change>, reason: &str| Entry {
            change,
            event: Some(event(reason)),
        };
        let redeem = |hash: &str, family: Option<RefreshFamily>| Change::RedeemCode {
            code_hash: hash.into(),
            now,
            family: family.map(Box::new),
        };
        let rotate = |generation: u64, old: &str, new: &str| Change::RotateRefresh {
            family_id: "f_1".into(),
            retiring: Retiring::Live {
                generation,
                token_hash: old.into(),
            },
            successor: live(generation + 1, new),
            now,
        };
        let batches = vec![
            vec![
                entry(None, "plain"),
                entry(Some(redeem("c_1", Some(family.clone()))), "redeemed"),
                entry(Some(redeem("c_missing", None)), "unknown"),
            ],
            vec![
                entry(Some(redeem("c_1", Some(family))), "replayed"),
                entry(Some(rotate(0, "h_1", "h_2")), "rotated"),
                Entry {
                    change: None,
                    event: None,
                },
            ],
            // A new family whose id is taken: the whole batch fails, writing nothing.
            vec![
                entry(None, "lost"),
                entry(Some(redeem("c_2", Some(taken))), "duplicate"),
            ],
            vec![
                entry(Some(rotate(1, "h_2", "h_4")), "rotated again"),
                entry(Some(rotate(0, "h_1", "h_3")), "rotated twice"),
            ],
        ];
        let mut results = Vec::new();
        for batch in batches {
            let result = store.commit_batch(&batch).await;
            results.push(result.map_err(|e| {
                format!("{e:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            }));
        }
        let events = store
            .events(&crate::EventFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let reasons: Vec<_> = events
            .iter()
            .filter_map(|e| e.event.reason.as_deref())
            .collect();
        assert_eq!(reasons, ["plain", "redeemed", "rotated", "rotated again"]);
        results
    }

    /// A file database writes the writer's batches on its batch connection (rusqlite), an
    /// in-memory one through sqlx: the same batches come to the same outcomes, errors and
    /// events on both, and the batch connection is opened as the pool's are.
    #[tokio::test]
    async fn batches_come_to_the_same_on_the_batch_connection_and_through_sqlx() {
        use crate::model::CodeConsumption;
        let dir = tempfile::tempdir().unwrap();
        let file = file_store_with_service_grant(&dir).await;
        assert!(matches!(file.batches, Batches::Inline(_)));
        let memory = SqliteStore::connect("sqlite::memory:").await.unwrap();
        usable_service_grant(&memory).await;
        assert!(matches!(memory.batches, Batches::Pooled(_)));

        let inline = batch_results(&file).await;
        assert_eq!(inline, batch_results(&memory).await);
        let [first, second, third, fourth] = &inline[..] else {
            panic!("{inline:?}");
        };
        let first = first.as_ref().unwrap();
        assert!(matches!(first[1].consumed, Some(CodeConsumption::Fresh(_))));
        assert_eq!(first[2].consumed, Some(CodeConsumption::Unknown));
        assert!(first[2].declined && first[2].seq.is_none());
        let second = second.as_ref().unwrap();
        assert!(matches!(
            second[0].consumed,
            Some(CodeConsumption::Replayed(_))
        ));
        assert!(second[0].declined && !second[1].declined);
        assert_eq!(third.as_ref().unwrap_err(), "Conflict");
        let fourth = fourth.as_ref().unwrap();
        assert_eq!(fourth[0].seq, Some(4));
        assert!(fourth[1].declined && fourth[1].seq.is_none());

        let Batches::Inline(batches) = &file.batches else {
            unreachable!()
        };
        let pragmas = batches
            .run(|conn| {
                let read = |name: &str| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
                Ok((
                    read("foreign_keys")?,
                    read("synchronous")?,
                    read("busy_timeout")?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(pragmas, (1, 2, 5000));
    }

    #[tokio::test]
    async fn unusable_directory_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let url = format!("sqlite://{}/mandate.db", file.display());
        let err = SqliteStore::connect(&url).await.err().unwrap();
        let chain = format!("{:?}", error_chain(&err));
        assert!(chain.contains("not-a-dir"), "{chain}");
    }

    fn error_chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut out = vec![err.to_string()];
        let mut source = err.source();
        while let Some(e) = source {
            out.push(e.to_string());
            source = e.source();
        }
        out
    }

    /// `target` relative to `base` (both absolute).
    fn pathdiff(target: &Path, base: &Path) -> String {
        let t: Vec<_> = target.components().collect();
        let b: Vec<_> = base.components().collect();
        let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut parts: Vec<String> = b[common..].iter().map(|_| "..".to_owned()).collect();
        parts.extend(
            t[common..]
                .iter()
                .map(|c| c.as_os_str().to_string_lossy().into_owned()),
        );
        parts.join("/")
    }
}
