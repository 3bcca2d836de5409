//! PostgreSQL point reads on connections kept outside sqlx's pool, for the reads every request
//! of a hot path makes: whether an access token may still be used (introspection), the lookup
//! of a refresh token, its family or an authorization code before it is redeemed, and which
//! grants of a group-commit batch are still in force. SQLite answers the same reads on the
//! asking thread ([`crate::sqlite_inline_reads`]).
//!
//! sqlx's pool tests every connection returned to it with a round trip (a `Sync` message,
//! answered by `ReadyForQuery`, in a task spawned for it), and that test cannot be turned off.
//! For a one-statement read it is a second round trip to the database for every request, which
//! wakes the server process and this one again: under introspection load half of the socket
//! writes to PostgreSQL were these tests (BENCHMARKS.md, "PostgreSQL statements without the
//! pool's tests"). The connections here are lent for one statement and taken back untested
//! when the statement succeeded. One idle for a second or longer, or last good around a
//! connection loss ([`crate::postgres_connection_loss`]), is tested before it is lent; one
//! whose statement failed or was abandoned (its request went away mid-statement) is closed,
//! since it may be left mid-protocol. A read whose connection turns out to have ended
//! is read again once on another: it changed nothing, so the request need not fail. When all
//! [`MAX_HELD`] are lent, a read takes a pooled connection as any other query does. One idle
//! for [`CLOSE_AFTER_IDLE`] is closed when another is given back, and one open for
//! [`MAX_LIFETIME`] is closed instead of lent, as the pool closes its own.

use crate::StoreResult;
use crate::postgres::ACQUIRE_TIMEOUT;
use crate::postgres_connection_loss::{ConnectionLoss, is_connection_loss};
use sqlx::Connection as _;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a point read's statement may take. A point read is one indexed lookup that
/// answers in well under a millisecond; one that has had no answer for this long is on a
/// connection to a database that stopped answering without closing it (a partition that
/// drops packets), and would otherwise wait for TCP to give up, minutes later. It fails as
/// [`crate::StoreError::TimedOut`] (unavailable), and its connection is closed.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(5);

/// Connections held for point reads per node, besides the pool's.
pub(crate) const MAX_HELD: usize = 8;

/// A held connection idle this long is closed (sqlx's pool closes its own after the same
/// time): what a burst opened does not keep a backend process of the database for good.
const CLOSE_AFTER_IDLE: Duration = Duration::from_secs(600);

/// A held connection open this long is closed rather than lent again (sqlx's pool's default
/// for its own): a backend's caches and memory do not grow for the life of the node, and a
/// balancer or proxy in front of the database sees the node's connections move.
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

pub(crate) struct PointReads {
    pool: PgPool,
    /// Held connections not lent right now.
    idle: Mutex<Vec<Idle>>,
    /// Held connections, idle or lent.
    held: AtomicUsize,
    /// When a connection of this node last ended under it.
    loss: Arc<ConnectionLoss>,
    /// [`CLOSE_AFTER_IDLE`] (shorter in tests).
    close_after_idle: Duration,
    /// [`MAX_LIFETIME`] (shorter in tests).
    max_lifetime: Duration,
}

/// A held connection waiting to be lent.
struct Idle {
    conn: PgConnection,
    opened: Instant,
    /// When it came back from its last statement.
    since: Instant,
}

impl PointReads {
    pub(crate) fn new(pool: PgPool, loss: Arc<ConnectionLoss>) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::new()),
            held: AtomicUsize::new(0),
            loss,
            close_after_idle: CLOSE_AFTER_IDLE,
            max_lifetime: MAX_LIFETIME,
        }
    }

    /// Starts one point read ([`crate::sql::point_read`] runs it).
    pub(crate) fn point_read(&self) -> PointRead<'_> {
        PointRead {
            reads: self,
            retried: false,
        }
    }

    /// A connection for one statement: an idle held one, a new held one while fewer than
    /// [`MAX_HELD`] are open, else one from the pool.
    async fn connection(&self) -> StoreResult<ReadConnection<'_>> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(Idle {
                conn,
                opened,
                since,
            }) = idle
            else {
                break;
            };
            // Lent before the test, so that a failed or abandoned test frees its place.
            let mut lent = ReadConnection::Held {
                conn,
                opened,
                slot: Slot(self),
            };
            if opened.elapsed() >= self.max_lifetime {
                continue; // closed as it drops; its place is free for a new one
            }
            if !self.loss.worth_testing(since.elapsed()) || lent.ping().await.is_ok() {
                return Ok(lent);
            }
        }
        let Some(slot) = self.reserve_slot() else {
            return Ok(ReadConnection::Pooled(self.pool.acquire().await?));
        };
        // Bounded as the pool bounds its own connects: a database that does not answer fails
        // the read as unavailable rather than holding it for the system's TCP timeout.
        let options = self.pool.connect_options();
        let conn = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(ReadConnection::Held {
            conn,
            opened: Instant::now(),
            slot,
        })
    }

    /// Puts a connection back with the idle ones. The one idle longest (at the bottom: the
    /// most recently returned is lent first) comes out if it has been idle for
    /// `close_after_idle`, for the caller to close outside the lock.
    fn give_back(&self, conn: PgConnection, opened: Instant) -> Option<PgConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(Idle {
            conn,
            opened,
            since: Instant::now(),
        });
        let stale = idle
            .first()
            .is_some_and(|oldest| oldest.since.elapsed() >= self.close_after_idle);
        if !stale {
            return None;
        }
        let oldest = idle.remove(0);
        self.held.fetch_sub(1, Ordering::Relaxed);
        Some(oldest.conn)
    }

    /// A place for one more held connection, if there is room.
    fn reserve_slot(&self) -> Option<Slot<'_>> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_HELD).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }
}

/// One point read: [`Self::connection`] lends a connection for its statement, and
/// [`Self::settle`] takes it back with the statement's result. If the connection turned out
/// to have ended (a restarted database), the loss is recorded and `settle` asks for the read
/// to run once more, on another connection: it changed nothing, so nothing can happen twice.
pub(crate) struct PointRead<'a> {
    reads: &'a PointReads,
    retried: bool,
}

impl<'a> PointRead<'a> {
    pub(crate) async fn connection(&self) -> StoreResult<ReadConnection<'a>> {
        self.reads.connection().await
    }

    /// [`READ_DEADLINE`].
    pub(crate) fn deadline(&self) -> Option<Duration> {
        Some(READ_DEADLINE)
    }

    /// The statement's value, or `None` to run it again.
    pub(crate) fn settle<T>(
        &mut self,
        conn: ReadConnection<'a>,
        result: Result<T, sqlx::Error>,
    ) -> StoreResult<Option<T>> {
        match result {
            Ok(value) => {
                conn.finished();
                Ok(Some(value))
            }
            Err(error) if !self.retried && is_connection_loss(&error) => {
                drop(conn);
                self.retried = true;
                self.reads.loss.record();
                tracing::warn!(%error, "database connection lost; reading again on another");
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The place of one held connection while it is lent (or being opened): dropped, it frees
/// the place, so a connection that is not given back (and so closed) is not counted.
pub(crate) struct Slot<'a>(&'a PointReads);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection lent by [`PointReads::connection`] for one statement: [`Self::finished`] once
/// the statement succeeded lets it be reused as it is; dropped unfinished, a held one is
/// closed and a pooled one goes back to its pool (which tests it).
pub(crate) enum ReadConnection<'a> {
    Held {
        conn: PgConnection,
        opened: Instant,
        slot: Slot<'a>,
    },
    Pooled(PoolConnection<sqlx::Postgres>),
}

impl Deref for ReadConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Held { conn, .. } => conn,
            Self::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Held { conn, .. } => conn,
            Self::Pooled(conn) => conn,
        }
    }
}

impl ReadConnection<'_> {
    /// A held connection goes back to the idle ones, keeping its place. (Dropped instead,
    /// its socket closes: PostgreSQL ends the session quietly, or logs that it could not send
    /// a statement's result when the request went away in the middle of one.)
    fn finished(self) {
        if let Self::Held { conn, opened, slot } = self {
            let reads = slot.0;
            std::mem::forget(slot);
            drop(reads.give_back(conn, opened));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::pool_options;
    use crate::postgres_connection_loss::TEST_AFTER_IDLE;
    use crate::testing::postgres_test_url;

    /// Point reads on the test server's admin database (they need no schema), or `None`
    /// (and a note) without one.
    async fn point_reads(test: &str) -> Option<PointReads> {
        let Some(url) = postgres_test_url() else {
            eprintln!("SKIPPED {test}: MANDATE_TEST_POSTGRES_URL not set");
            return None;
        };
        let loss = Arc::new(ConnectionLoss::default());
        let pool = pool_options(loss.clone()).connect(&url).await.unwrap();
        Some(PointReads::new(pool, loss))
    }

    async fn backend_of(conn: &mut ReadConnection<'_>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap()
    }

    fn held(conn: &ReadConnection<'_>) -> bool {
        matches!(conn, ReadConnection::Held { .. })
    }

    /// Ends a backend from another connection, as a restarted server or a proxy would.
    async fn terminate(reads: &PointReads, backend: i32) {
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(backend)
            .fetch_one(&reads.pool)
            .await
            .unwrap();
        assert!(ended);
    }

    /// Makes every idle held connection look idle for [`TEST_AFTER_IDLE`] already.
    fn age_idle(reads: &PointReads) {
        for idle in reads.idle.lock().unwrap().iter_mut() {
            idle.since = Instant::now().checked_sub(TEST_AFTER_IDLE).unwrap();
        }
    }

    #[tokio::test]
    async fn a_finished_connection_is_lent_again() {
        let Some(reads) = point_reads("a_finished_connection_is_lent_again").await else {
            return;
        };
        let mut first = reads.connection().await.unwrap();
        assert!(held(&first));
        let backend = backend_of(&mut first).await;
        first.finished();
        let mut again = reads.connection().await.unwrap();
        assert!(held(&again));
        assert_eq!(backend_of(&mut again).await, backend);
        again.finished();
        assert_eq!(reads.held.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_unfinished_connection_is_closed_and_not_lent_again() {
        let Some(reads) = point_reads("an_unfinished_connection_is_closed").await else {
            return;
        };
        let mut first = reads.connection().await.unwrap();
        let backend = backend_of(&mut first).await;
        drop(first); // as when a request goes away mid-statement
        assert_eq!(reads.held.load(Ordering::Relaxed), 0);
        let mut next = reads.connection().await.unwrap();
        assert!(held(&next));
        assert_ne!(backend_of(&mut next).await, backend);
        next.finished();
    }

    #[tokio::test]
    async fn a_connection_idle_for_a_while_is_tested_and_a_dead_one_replaced() {
        let Some(reads) = point_reads("a_connection_idle_for_a_while_is_tested").await else {
            return;
        };
        let mut first = reads.connection().await.unwrap();
        let backend = backend_of(&mut first).await;
        first.finished();
        terminate(&reads, backend).await;
        age_idle(&reads);
        let mut next = reads.connection().await.unwrap();
        assert!(held(&next));
        assert_ne!(backend_of(&mut next).await, backend);
        next.finished();
        assert_eq!(reads.held.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn beyond_the_held_connections_reads_use_the_pool() {
        let Some(reads) = point_reads("beyond_the_held_connections").await else {
            return;
        };
        let mut lent = Vec::new();
        for _ in 0..MAX_HELD {
            lent.push(reads.connection().await.unwrap());
        }
        assert!(lent.iter().all(held));
        let mut pooled = reads.connection().await.unwrap();
        assert!(!held(&pooled));
        backend_of(&mut pooled).await;
        pooled.finished();
        lent.into_iter().for_each(ReadConnection::finished);
        assert_eq!(reads.idle.lock().unwrap().len(), MAX_HELD);
        assert!(held(&reads.connection().await.unwrap()));
    }

    #[tokio::test]
    async fn the_connection_idle_longest_is_closed_once_idle_too_long() {
        let Some(mut reads) = point_reads("the_connection_idle_longest_is_closed").await else {
            return;
        };
        reads.close_after_idle = std::time::Duration::from_millis(100);
        let mut first = reads.connection().await.unwrap();
        let mut second = reads.connection().await.unwrap();
        let first_backend = backend_of(&mut first).await;
        let second_backend = backend_of(&mut second).await;
        first.finished();
        second.finished();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        // Lends `second` (the last back) and gives it back: `first` has sat too long.
        reads.connection().await.unwrap().finished();
        assert_eq!(reads.held.load(Ordering::Relaxed), 1);
        assert_eq!(reads.idle.lock().unwrap().len(), 1);
        let mut kept = reads.connection().await.unwrap();
        assert_eq!(backend_of(&mut kept).await, second_backend);
        assert_ne!(second_backend, first_backend);
        kept.finished();
    }

    /// A one-connection pool (which tests connections as `loss` says), whose connection has
    /// gone back to it and then had its backend ended from another connection; `None` (and a
    /// note) without a test server.
    async fn pool_whose_connection_ended(
        test: &str,
        loss: Arc<ConnectionLoss>,
    ) -> Option<(PgPool, i32)> {
        let Some(url) = postgres_test_url() else {
            eprintln!("SKIPPED {test}: MANDATE_TEST_POSTGRES_URL not set");
            return None;
        };
        let pool = pool_options(loss)
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let backend = pooled_backend(&pool).await;
        // Back in the pool, past its return test.
        while pool.num_idle() < 1 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut other = PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(backend)
            .execute(&mut other)
            .await
            .unwrap();
        Some((pool, backend))
    }

    async fn pooled_backend(pool: &PgPool) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    /// The pool's own connections: tested only after sitting idle, so one whose server went
    /// away meanwhile is replaced before a statement meets it.
    #[tokio::test]
    async fn a_pooled_connection_idle_for_a_while_is_tested_and_a_dead_one_replaced() {
        let test = "a_pooled_connection_idle_for_a_while_is_tested";
        let Some((pool, backend)) = pool_whose_connection_ended(test, Arc::default()).await else {
            return;
        };
        tokio::time::sleep(TEST_AFTER_IDLE + std::time::Duration::from_millis(100)).await;
        assert_ne!(pooled_backend(&pool).await, backend);
    }

    /// The backend a point read runs on.
    async fn read_backend(reads: &PointReads) -> StoreResult<i32> {
        Ok(crate::sql::point_read!(reads, |conn| {
            sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn)
        }))
    }

    /// A database restart ends every backend, including one used a moment ago (so not
    /// tested before it is lent): the read runs again on another connection and succeeds,
    /// and the other idle connections are tested before they are lent.
    #[tokio::test]
    async fn a_read_whose_connection_ended_runs_again_on_another() {
        let Some(reads) = point_reads("a_read_whose_connection_ended_runs_again").await else {
            return;
        };
        let mut first = reads.connection().await.unwrap();
        let mut second = reads.connection().await.unwrap();
        let ended = [backend_of(&mut first).await, backend_of(&mut second).await];
        second.finished();
        first.finished(); // lent next
        for backend in ended {
            terminate(&reads, backend).await;
        }
        let mut statements = 0;
        let backend = async {
            StoreResult::Ok(crate::sql::point_read!(reads, |conn| {
                statements += 1;
                sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(conn)
            }))
        }
        .await
        .unwrap();
        assert_eq!(statements, 2);
        assert!(!ended.contains(&backend));
        // Both ended connections were closed (`second`, last good before the loss, was
        // tested rather than lent: lent, the second statement would have failed too).
        assert_eq!(reads.held.load(Ordering::Relaxed), 1);
        assert_eq!(read_backend(&reads).await.unwrap(), backend);
    }

    /// A statement that fails for another reason is not run again, and its error is kept.
    #[tokio::test]
    async fn a_read_that_fails_on_a_live_connection_is_not_run_again() {
        let Some(reads) = point_reads("a_read_that_fails_on_a_live_connection").await else {
            return;
        };
        let mut statements = 0;
        let failed = async {
            StoreResult::Ok(crate::sql::point_read!(reads, |conn| {
                statements += 1;
                sqlx::query_scalar::<_, i32>("SELECT 1 / 0").fetch_one(conn)
            }))
        }
        .await;
        assert!(matches!(failed, Err(crate::StoreError::Database(_))));
        assert_eq!(statements, 1);
        // Its connection was closed, not given back.
        assert_eq!(reads.held.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_connection_open_too_long_is_closed_instead_of_lent() {
        let Some(mut reads) = point_reads("a_connection_open_too_long_is_closed").await else {
            return;
        };
        reads.max_lifetime = std::time::Duration::from_millis(100);
        let first = read_backend(&reads).await.unwrap();
        assert_eq!(read_backend(&reads).await.unwrap(), first);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let next = read_backend(&reads).await.unwrap();
        assert_ne!(next, first);
        assert_eq!(reads.held.load(Ordering::Relaxed), 1);
    }

    /// The pool's own connections after a loss: one used a moment ago is tested too, so a
    /// statement does not meet it dead.
    #[tokio::test]
    async fn after_a_loss_a_pooled_connection_used_a_moment_ago_is_tested() {
        let test = "after_a_loss_a_pooled_connection_used_a_moment_ago_is_tested";
        let loss = Arc::new(ConnectionLoss::default());
        let Some((pool, backend)) = pool_whose_connection_ended(test, loss.clone()).await else {
            return;
        };
        loss.record();
        assert_ne!(pooled_backend(&pool).await, backend);
    }
}
