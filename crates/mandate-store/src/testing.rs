//! Test support: throwaway PostgreSQL databases for tests of this crate and of its users.
//!
//! Every test that runs against PostgreSQL gets a database of its own, named
//! `mandate_test_<16 random hex digits>`, so tests run in parallel without seeing each other's
//! rows, and a leftover database is recognisable by its prefix. Not for production use.

use crate::{StoreError, StoreResult};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

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
