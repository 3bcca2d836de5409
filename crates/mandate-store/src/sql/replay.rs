//! Remembered client assertion `jti`s (RFC 7523 replay protection).
//!
//! "Insert if absent" is one `INSERT ... ON CONFLICT DO NOTHING` on the `(client_id, jti)`
//! primary key: the database lets exactly one of any number of concurrent inserts create the
//! row (PostgreSQL through the unique index, SQLite through its single writer), and the row
//! count tells each caller whether it was the one. Rows are purged by housekeeping after their
//! `expires_at` (the assertion's own expiry, after which it is refused anyway). A `jti` is
//! scoped to its client, as RFC 7523 §3 asks: two clients cannot interfere with each other.

pub(crate) const REMEMBER: &str = "INSERT INTO client_assertion_jtis (client_id, jti, expires_at) \
     VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING";

macro_rules! impl_replay {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::AssertionReplay for $store {
            async fn remember_jti(
                &self,
                client_id: &str,
                jti: &str,
                until: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::replay::REMEMBER)
                    .bind(client_id)
                    .bind(jti)
                    .bind(until.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use impl_replay;
