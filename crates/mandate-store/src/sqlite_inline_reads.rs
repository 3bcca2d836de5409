//! SQLite point reads run on the asking thread, for the reads every request of a hot path
//! makes: whether an access token may still be used (introspection), the lookup of a refresh
//! token or an authorization code before it is redeemed, and which grants of a group-commit
//! batch are still in force (once per batch of client-credentials tokens).
//!
//! sqlx runs each SQLite connection on a thread of its own: a query is sent to that thread,
//! which wakes, runs it, and wakes the asking task. For a read of a few primary keys, whose SQL
//! takes a few microseconds, the two hand-offs cost more than the read: under introspection
//! load the scheduler was a third of the server's samples (BENCHMARKS.md, "Introspection
//! without the hand-off to sqlx's thread"). In WAL mode a reader never waits for the writer,
//! so these reads run where they are asked, on connections kept in a small stack and opened
//! with rusqlite (which links the same SQLite library as sqlx, so both share its locks).
//!
//! A read these connections cannot answer at once returns `None` and the caller asks through
//! sqlx instead, which waits and reports errors as every other query does: `SQLITE_BUSY`
//! (a reader can meet it while another connection rebuilds the WAL index; the busy timeout
//! here is zero so a request thread never sleeps in SQLite), or any other failure (logged
//! once). An in-memory database has no file to open a second connection on; it gets no inline
//! reads. The statements are the ones sqlx runs (`crate::sql`), with `$N` bound by name.

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Idle connections kept for the next read. Reads never await, so at most one per thread
/// that reads at the same moment is in use; more than this are closed after their read.
const MAX_IDLE: usize = 8;

pub(crate) struct InlineReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Whether a failure other than a busy database has been logged.
    warned: AtomicBool,
}

impl InlineReads {
    /// Inline reads of the database file at `path`; `None` for an in-memory database.
    pub(crate) fn for_file(path: &Path) -> Option<Self> {
        if crate::sqlite::in_memory(path) {
            return None;
        }
        Some(Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            warned: AtomicBool::new(false),
        })
    }

    /// Runs `read` on an idle connection (opening one if none is idle); `None` if it could
    /// not answer at once, and the caller should ask through sqlx.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let popped = self.lock_idle().pop();
        let conn = match popped {
            Some(conn) => conn,
            None => match self.open() {
                Ok(conn) => conn,
                Err(error) => {
                    self.note_failure(&error);
                    return None;
                }
            },
        };
        let result = read(&conn);
        // A connection that failed other than by finding the database busy is closed: the
        // next read opens a fresh one.
        if result.as_ref().map_or_else(is_busy, |_| true) {
            let mut idle = self.lock_idle();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result.map_err(|error| self.note_failure(&error)).ok()
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::ZERO)?;
        // Read-write so it can take part in the WAL index like sqlx's connections, but it
        // never writes.
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Nothing panics while the lock is held (reads run outside it).
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn note_failure(&self, error: &rusqlite::Error) {
        if is_busy(error) {
            tracing::debug!(%error, "inline SQLite read busy; asking through the pool");
        } else if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "inline SQLite read failed; asking through the pool (logged once)");
        }
    }
}

/// The row `sql` finds for its one parameter `$1` = `key`, through `map`; `None` if none.
pub(crate) fn row_by_key<T>(
    conn: &Connection,
    sql: &str,
    key: &str,
    map: impl FnOnce(&mut Columns<'_, '_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(sql)?
        .query_row(rusqlite::named_params! {"$1": key}, |row| {
            map(&mut Columns::new(row))
        })
        .optional()
}

/// A row's columns read by name, cheaply when they are read in the order the statement
/// selects them.
///
/// rusqlite finds a column by name by comparing it with every column's name from the first,
/// so reading the 25 columns of a refresh lookup by name made about 300 comparisons, 3 %
/// of a refresh's CPU (BENCHMARKS.md, "A quiet machine"). Here each name is first compared with
/// the column after the one read last, and looked up the slow way only when it is not that
/// one: reading in another order is slower, never wrong.
pub(crate) struct Columns<'a, 'stmt> {
    row: &'a rusqlite::Row<'stmt>,
    next: usize,
}

impl<'a, 'stmt> Columns<'a, 'stmt> {
    pub(crate) fn new(row: &'a rusqlite::Row<'stmt>) -> Self {
        Self { row, next: 0 }
    }

    /// The column called `name`.
    pub(crate) fn get<T: rusqlite::types::FromSql>(&mut self, name: &str) -> rusqlite::Result<T> {
        let statement: &rusqlite::Statement<'_> = self.row.as_ref();
        let at = match statement.column_name(self.next) {
            Ok(found) if found == name => self.next,
            _ => statement.column_index(name)?,
        };
        self.next = at + 1;
        self.row.get(at)
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T>(map: impl FnOnce(&mut Columns<'_, '_>) -> rusqlite::Result<T>) -> T {
        let conn = Connection::open_in_memory().unwrap();
        conn.query_row("SELECT 1 AS a, 'two' AS b, NULL AS c, 4 AS d", [], |row| {
            map(&mut Columns::new(row))
        })
        .unwrap()
    }

    #[test]
    fn columns_read_in_order() {
        let got = read(|cols| {
            Ok((
                cols.get::<i64>("a")?,
                cols.get::<String>("b")?,
                cols.get::<Option<i64>>("c")?,
                cols.get::<i64>("d")?,
            ))
        });
        assert_eq!(got, (1, "two".to_owned(), None, 4));
    }

    #[test]
    fn columns_read_out_of_order_or_twice_are_still_the_named_ones() {
        let got = read(|cols| {
            Ok((
                cols.get::<i64>("d")?,
                cols.get::<i64>("a")?,
                cols.get::<i64>("a")?,
                cols.get::<String>("B")?,
                cols.get::<i64>("d")?,
            ))
        });
        assert_eq!(got, (4, 1, 1, "two".to_owned(), 4));
    }

    #[test]
    fn an_unknown_column_is_an_error() {
        let got = read(|cols| {
            cols.get::<i64>("a")?;
            Ok(cols.get::<i64>("nope"))
        });
        assert!(
            matches!(got, Err(rusqlite::Error::InvalidColumnName(ref n)) if n == "nope"),
            "{got:?}"
        );
    }
}
