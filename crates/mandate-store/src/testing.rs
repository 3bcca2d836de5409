//! Test support: throwaway PostgreSQL databases for tests of this crate and of its users.
//!
//! Every test that runs against PostgreSQL gets a database of its own, named
//! `mandate_test_<16 random hex digits>`, so tests run in parallel without seeing each other's
//! rows, and a leftover database is recognisable by its prefix. Not for production use.

use crate::sql::Bind;
use crate::{EventFilter, GrantFilter, StoreError, StoreResult};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

/// The environment variable naming a PostgreSQL server tests may create databases on, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const POSTGRES_TEST_URL_VAR: &str = "MANDATE_TEST_POSTGRES_URL";

/// The admin URL from `MANDATE_TEST_POSTGRES_URL`, if set and not empty. Tests that need
/// PostgreSQL skip (and say so) when this is `None`.
pub fn postgres_test_url() -> Option<String> {
    std::env::var(POSTGRES_TEST_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Creates an empty database on the server at `admin_url` (which must allow `CREATE
/// DATABASE`) and returns the URL of the new database: same host, user and options, new name.
/// Pass the result to [`crate::connect`], which migrates it.
pub async fn fresh_postgres_database(admin_url: &str) -> StoreResult<String> {
    let mut url = url::Url::parse(admin_url).map_err(|_| StoreError::UnsupportedUrl)?;
    let name = format!("mandate_test_{}", random_hex()?);
    let mut admin = PgConnection::connect(admin_url).await?;
    // `name` is our own `[a-z0-9_]` identifier, so it can be spliced in (DDL takes no binds).
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// Drops a database made by [`fresh_postgres_database`], disconnecting anyone still using it.
/// Refuses (with `NotFound`) a URL whose database is not a `mandate_test_` one.
pub async fn drop_postgres_database(admin_url: &str, database_url: &str) -> StoreResult<()> {
    let url = url::Url::parse(database_url).map_err(|_| StoreError::UnsupportedUrl)?;
    let name = url.path().trim_start_matches('/');
    let valid = name
        .strip_prefix("mandate_test_")
        .is_some_and(|suffix| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(StoreError::NotFound("test database"));
    }
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// How the database at `url` would read the events `filter` selects, one line per step:
/// SQLite's `EXPLAIN QUERY PLAN`, or PostgreSQL's generic plan (the one a prepared statement
/// settles on, chosen without its parameters' values, as the store's statements are). For
/// tests that a statement is an index range scan and not a scan or a sort. A filter by user
/// is read in parts ([`crate::sql::events::split_by_user`]): the plans of its first two, the
/// user index's and one grant's (`g_plan`), one after the other.
pub async fn event_query_plan(url: &str, filter: &EventFilter) -> StoreResult<Vec<String>> {
    use crate::sql::events::{events_query, reads_through_grants, split_by_user};
    let revocation_events = if url.starts_with("sqlite:") {
        crate::sqlite::SqliteStore::REVOCATION_EVENTS
    } else {
        crate::postgres::PostgresStore::REVOCATION_EVENTS
    };
    let parts: Vec<(EventFilter, Option<&str>)> = if reads_through_grants(filter) {
        split_by_user(filter, i64::MAX - 1, vec!["g_plan".into()])
            .into_iter()
            .map(|(part, condition)| (part, Some(condition)))
            .collect()
    } else {
        vec![(filter.clone(), None)]
    };
    let mut plan = Vec::new();
    for (part, condition) in &parts {
        let (sql, binds) = events_query(part, revocation_events, *condition);
        let position_and_limit = [Bind::Int(part.after_seq), Bind::Int(i64::from(part.limit))];
        let binds: Vec<Bind<'_>> = position_and_limit.into_iter().chain(binds).collect();
        plan.extend(query_plan(url, &sql, binds).await?);
    }
    Ok(plan)
}

/// [`event_query_plan`] for the first page (100) of the grants `filter` selects
/// ([`crate::GrantStore::grants`]).
pub async fn grant_query_plan(url: &str, filter: &GrantFilter) -> StoreResult<Vec<String>> {
    let (sql, binds) = crate::sql::grants::grants_query(filter, None, 100);
    query_plan(url, &sql, binds).await
}

/// Runs `statement` on the PostgreSQL database at `url`, as an operator would (tests of what
/// the database itself does: triggers, ended sessions).
pub async fn execute_postgres(url: &str, statement: &str) -> StoreResult<()> {
    // A pooled connection, for the same reason as [`query_plan`]'s.
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    sqlx::query(statement).execute(&db).await?;
    db.close().await;
    Ok(())
}

/// Another session holding the database's write lock, as a long transaction of an operator's
/// or a backup tool's would: on SQLite an immediate transaction (no other connection may
/// write), on PostgreSQL a transaction holding `events` in `EXCLUSIVE` mode (no other session
/// may append to the audit log; reads go on). Held until [`WriteLock::release`].
pub enum WriteLock {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

/// Takes the write lock of the database at `url` ([`WriteLock`]).
pub async fn hold_write_lock(url: &str) -> StoreResult<WriteLock> {
    if url.starts_with("sqlite:") {
        let db = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let mut conn = db.acquire().await?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        return Ok(WriteLock::Sqlite(conn));
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let mut conn = db.acquire().await?;
    sqlx::raw_sql("BEGIN; LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    Ok(WriteLock::Postgres(conn))
}

impl WriteLock {
    /// Ends the transaction, and with it the lock.
    pub async fn release(self) -> StoreResult<()> {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
                conn.detach().close().await?;
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
                conn.detach().close().await?;
            }
        }
        Ok(())
    }
}

async fn query_plan(url: &str, sql: &str, binds: Vec<Bind<'_>>) -> StoreResult<Vec<String>> {
    // One pooled connection rather than a bare one: the session state (the plan mode, the
    // prepared statement) stays on it, and the future stays `Send` for spawned test cases.
    if url.starts_with("sqlite:") {
        let db = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let rows = crate::sql::bind_all!(sqlx::query(&explain), binds)
            .fetch_all(&db)
            .await?;
        return rows
            .iter()
            .map(|row| Ok(row.try_get::<String, _>("detail")?))
            .collect();
    }
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let types: Vec<&str> = binds
        .iter()
        .map(|b| match b {
            Bind::Text(_) => "text",
            Bind::Int(_) => "bigint",
        })
        .collect();
    // A generic plan does not look at the values, and `EXECUTE` takes no bound parameters.
    let arguments = vec!["NULL"; binds.len()];
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
        .execute(&db)
        .await?;
    let prepare = format!("PREPARE plan_probe({}) AS {sql}", types.join(", "));
    sqlx::raw_sql(&prepare).execute(&db).await?;
    let explain = format!("EXPLAIN EXECUTE plan_probe({})", arguments.join(", "));
    Ok(sqlx::query_scalar(&explain).fetch_all(&db).await?)
}

/// 64 random bits as 16 lowercase hex digits.
fn random_hex() -> StoreResult<String> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        StoreError::Database(sqlx::Error::Configuration(
            "the system random number generator failed".into(),
        ))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_are_16_hex_digits_and_differ() {
        let a = random_hex().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex().unwrap());
    }

    #[tokio::test]
    async fn only_test_databases_can_be_dropped() {
        let err = drop_postgres_database("postgres://x@127.0.0.1:1/a", "postgres://x@h/prod")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
    }
}
