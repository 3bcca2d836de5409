//! The store's own error type. The server maps it; database error text never reaches a client.
//!
//! One distinction matters to callers beyond "it failed": whether the database is unavailable
//! right now ([`StoreError::is_unavailable`]: unreachable, its sessions ended, every connection
//! busy past the wait, or SQLite's file locked by another process past its busy timeout). Such
//! a request did not happen and may succeed if sent again shortly, so the server answers it
//! `503` with `Retry-After` instead of an opaque `500`.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with sqlite: or postgres://")]
    UnsupportedUrl,
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("stored {0} is corrupt")]
    Corrupt(&'static str),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// From the connections SQLite's hottest paths use outside sqlx
    /// ([`crate::sqlite_batch_writer`]).
    #[error("database error")]
    Sqlite(#[source] rusqlite::Error),
    #[error("database migration failed")]
    Migration(#[source] sqlx::migrate::MigrateError),
    #[error("the event writer has stopped")]
    WriterStopped,
    #[error("the event batch could not be written")]
    EventBatchFailed,
    /// The database did not answer in time on an open connection: a point read or an event
    /// batch past its deadline (a database that stopped answering without closing it).
    #[error("the database did not answer in time")]
    TimedOut,
    /// The event batch failed because the database was unavailable (the writer logged why).
    #[error("the event batch could not be written: the database is unavailable")]
    EventBatchUnavailable,
}

impl StoreError {
    /// Whether the failure is the database being unavailable for now rather than a fault of
    /// the request or of the data: a connection that could not be opened within the wait or
    /// ended under the statement, the pool exhausted past its wait, PostgreSQL shutting down,
    /// refusing connections, or resolving a conflict by aborting (serialization failure,
    /// deadlock, lock wait), or SQLite's file busy or locked. A write that failed so was not
    /// acknowledged; whether it committed is what sending it again settles (every write keyed by
    /// a credential is single-use or idempotent).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => sqlx_unavailable(e),
            Self::Sqlite(e) => rusqlite_unavailable(e),
            Self::EventBatchUnavailable | Self::TimedOut => true,
            Self::UnsupportedUrl
            | Self::Conflict(_)
            | Self::NotFound(_)
            | Self::Corrupt(_)
            | Self::Migration(_)
            | Self::WriterStopped
            | Self::EventBatchFailed => false,
        }
    }
}

/// PostgreSQL SQLSTATEs of a session the server ended: class 08 (connection exception) and
/// 57P01-57P03 (shutting down, cannot connect now).
pub(crate) fn postgres_code_session_ended(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// PostgreSQL SQLSTATEs of a database that is unavailable for now: a session it ended
/// ([`postgres_code_session_ended`]), 53300 (too many connections), 40001 and 40P01
/// (serialization failure, deadlock: the transaction was aborted and may be run again),
/// 55P03 (lock not available).
fn postgres_code_unavailable(code: &str) -> bool {
    postgres_code_session_ended(code) || matches!(code, "53300" | "40001" | "40P01" | "55P03")
}

/// SQLite's primary result codes `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6), as sqlx reports
/// them (the extended code in decimal, whose low byte is the primary code).
fn sqlite_code_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                Some(_) => postgres_code_unavailable(&code),
                None => sqlite_code_unavailable(&code),
            }
        }),
        _ => false,
    }
}

fn rusqlite_unavailable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_that_cannot_be_had_are_unavailability() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            sqlx::Error::Io(refused),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(StoreError::Database(e).is_unavailable());
        }
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(StoreError::EventBatchUnavailable.is_unavailable());
        assert!(StoreError::TimedOut.is_unavailable());
        for e in [
            StoreError::EventBatchFailed,
            StoreError::WriterStopped,
            StoreError::Conflict("grant"),
            StoreError::Corrupt("event"),
        ] {
            assert!(!e.is_unavailable(), "{e}");
        }
    }

    #[test]
    fn postgres_codes_of_a_database_unavailable_for_now() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40001", "40P01", "55P03",
        ] {
            assert!(postgres_code_unavailable(code), "{code}");
        }
        // Unique violation, disk full, syntax error: faults, not waits.
        for code in ["23505", "53100", "42601"] {
            assert!(!postgres_code_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_and_locked_in_any_extended_form() {
        // SQLITE_BUSY, BUSY_RECOVERY, BUSY_SNAPSHOT, SQLITE_LOCKED, LOCKED_SHAREDCACHE.
        for code in ["5", "261", "517", "6", "262"] {
            assert!(sqlite_code_unavailable(code), "{code}");
        }
        // SQLITE_CONSTRAINT, CONSTRAINT_UNIQUE, SQLITE_FULL, not a number.
        for code in ["19", "2067", "13", "x"] {
            assert!(!sqlite_code_unavailable(code), "{code}");
        }
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::Sqlite(busy).is_unavailable());
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(!StoreError::Sqlite(full).is_unavailable());
    }
}
