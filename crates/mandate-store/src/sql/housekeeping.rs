//! Purging records whose lifetime is over: codes, pending requests, sessions, revoked token ids.
//!
//! Each is useless once expired (lookups already treat an expired row as absent), so deleting
//! them only bounds table growth. Refresh tokens and grants are kept: reuse detection and
//! accountability need them.

/// One statement per table, all `DELETE ... WHERE expires_at < $1`.
pub(crate) const PURGES: [&str; 4] = [
    "DELETE FROM authorization_codes WHERE expires_at < $1",
    "DELETE FROM pending_authorizations WHERE expires_at < $1",
    "DELETE FROM sessions WHERE expires_at < $1",
    "DELETE FROM revoked_tokens WHERE expires_at < $1",
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
                tx.commit().await?;
                Ok(purged)
            }
        }
    };
}
pub(crate) use impl_housekeeping;
