//! The store's own error type. The server maps it; database error text never reaches a client.

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
