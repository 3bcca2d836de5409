//! Purging records whose lifetime is over: codes, pending requests, sessions, revoked token
//! ids, remembered client assertion ids, and abandoned client registrations.
//!
//! Each is useless once expired (lookups already treat an expired row as absent, and an
//! assertion past its `exp` is refused before its `jti` is looked at), so deleting them only
//! bounds table growth. Abandoned registrations (never used by their `expires_at`) go with
//! their agents, see [`super::registrations`]. Grants and API keys are kept: accountability
//! needs them.
//!
//! Refresh tokens are kept past their expiry, since presenting a used one, even an expired one,
//! is reuse and revokes its grant; the server purges them only a retention period after they
//! expire ([`REFRESH_TOKEN_PAGE`] at a time, each page its own short transaction, so a backlog
//! never holds the write lock for long). Presenting a purged token is an ordinary
//! `invalid_grant` (unknown token) that revokes nothing.

/// One statement per table, all `DELETE ... WHERE expires_at < $1`.
pub(crate) const PURGES: [&str; 5] = [
    "DELETE FROM authorization_codes WHERE expires_at < $1",
    "DELETE FROM pending_authorizations WHERE expires_at < $1",
    "DELETE FROM sessions WHERE expires_at < $1",
    "DELETE FROM revoked_tokens WHERE expires_at < $1",
    "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
];

/// Refresh tokens deleted per statement and transaction.
pub(crate) const REFRESH_TOKEN_PAGE: i64 = 1000;

/// Deletes up to `$2` refresh tokens that expired before `$1`, oldest first (the
/// `refresh_tokens_expiry` index).
pub(crate) const PURGE_REFRESH_TOKENS: &str = "DELETE FROM refresh_tokens WHERE token_hash IN \
     (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)";

macro_rules! impl_housekeeping {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::Housekeeping for $store {
            async fn purge_expired(
                &self,
                before: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let mut purged = 0;
                for sql in $crate::sql::housekeeping::PURGES {
                    purged += ::sqlx::query(sql)
                        .bind(before.unix())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                purged += Self::purge_abandoned_in(&mut tx, before).await?;
                tx.commit().await?;
                Ok(purged)
            }

            async fn purge_refresh_tokens(
                &self,
                expired_before: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<u64> {
                use $crate::sql::housekeeping::{PURGE_REFRESH_TOKENS, REFRESH_TOKEN_PAGE};
                let mut purged = 0;
                loop {
                    let page = ::sqlx::query(PURGE_REFRESH_TOKENS)
                        .bind(expired_before.unix())
                        .bind(REFRESH_TOKEN_PAGE)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                    purged += page;
                    if page < REFRESH_TOKEN_PAGE as u64 {
                        return Ok(purged);
                    }
                }
            }
        }
    };
}
pub(crate) use impl_housekeeping;
