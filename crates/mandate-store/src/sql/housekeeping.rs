//! Purging records whose lifetime is over: codes, pending requests, sessions, revoked token
//! ids, remembered client assertion ids, and abandoned client registrations.
//!
//! Each is useless once expired (lookups already treat an expired row as absent, and an
//! assertion past its `exp` is refused before its `jti` is looked at), so deleting them only
//! bounds table growth. Abandoned registrations (never used by their `expires_at`) go with
//! their agents, see [`super::registrations`]. Refresh tokens, grants and API keys are kept:
//! reuse detection and accountability need them.

/// One statement per table, all `DELETE ... WHERE expires_at < $1`.
pub(crate) const PURGES: [&str; 5] = [
    "DELETE FROM authorization_codes WHERE expires_at < $1",
    "DELETE FROM pending_authorizations WHERE expires_at < $1",
    "DELETE FROM sessions WHERE expires_at < $1",
    "DELETE FROM revoked_tokens WHERE expires_at < $1",
    "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
];

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
        }
    };
}
pub(crate) use impl_housekeeping;
