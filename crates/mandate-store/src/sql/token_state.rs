//! Whether an access token's revocation state lets it be used: the introspection hot path.
//!
//! A signed access token names its `jti`, its grant and its client. It is usable while the
//! `jti` was not revoked, the grant exists and is active (not revoked, not expired: the rule of
//! [`mandate_core::grant::Grant::is_active`]), the agent exists and is enabled, and the grant's
//! user, if it has one, exists and is enabled. Asked as four point reads, each is a round trip
//! (on SQLite, a hand-off to sqlx's worker thread and back, which costs more than the SQL), so
//! it is asked here as one statement of four primary-key lookups. On SQLite that statement runs
//! on the asking thread ([`crate::sqlite_inline_reads`]), without the hand-off at all. On
//! PostgreSQL a node keeps the answer "usable" in memory until a change could end it
//! ([`crate::postgres_token_state_cache`]).

/// `$1` jti, `$2` grant id, `$3` client id, `$4` now (Unix seconds). One row when usable, with
/// the grant's expiry (`NULL`: none), which bounds how long PostgreSQL may keep the answer
/// ([`crate::postgres_token_state_cache`]); no row otherwise.
pub(crate) const ACCESS_TOKEN_USABLE: &str = "SELECT g.expires_at FROM grants g \
     WHERE g.id = $2 AND g.revoked_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > $4) \
     AND (g.user_id IS NULL \
         OR EXISTS (SELECT 1 FROM users u WHERE u.id = g.user_id AND NOT u.disabled)) \
     AND EXISTS (SELECT 1 FROM agents WHERE client_id = $3 AND NOT disabled) \
     AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)";

/// [`ACCESS_TOKEN_USABLE`] on an inline connection (rusqlite binds `$N` by name).
pub(crate) fn access_token_usable_inline(
    conn: &rusqlite::Connection,
    jti: &str,
    grant_id: &str,
    client_id: &str,
    now: mandate_core::time::Timestamp,
) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension as _;
    let row = conn
        .prepare_cached(ACCESS_TOKEN_USABLE)?
        .query_row(
            rusqlite::named_params! {"$1": jti, "$2": grant_id, "$3": client_id, "$4": now.unix()},
            |row| row.get::<_, Option<i64>>(0),
        )
        .optional()?;
    Ok(row.is_some())
}

macro_rules! impl_token_state {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::TokenStateStore for $store {
            async fn access_token_usable(
                &self,
                jti: &str,
                grant_id: &str,
                client_id: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let inline = self.inline_reads().and_then(|reads| {
                    reads.read(|conn| {
                        $crate::sql::token_state::access_token_usable_inline(
                            conn, jti, grant_id, client_id, now,
                        )
                    })
                });
                if let Some(usable) = inline {
                    return Ok(usable);
                }
                let cache = self.token_state_cache();
                if cache.is_some_and(|c| c.holds(jti, grant_id, client_id, now.unix())) {
                    return Ok(true);
                }
                let generation = cache.and_then(|c| c.generation());
                let usable: Option<Option<i64>> = $crate::sql::point_read!(self, |conn| {
                    ::sqlx::query_scalar::<_, Option<i64>>(
                        $crate::sql::token_state::ACCESS_TOKEN_USABLE,
                    )
                    .bind(jti)
                    .bind(grant_id)
                    .bind(client_id)
                    .bind(now.unix())
                    .fetch_optional(conn)
                });
                if let (Some(cache), Some(generation), Some(until)) = (cache, generation, usable) {
                    cache.keep(generation, jti, grant_id, client_id, until);
                }
                Ok(usable.is_some())
            }
        }
    };
}
pub(crate) use impl_token_state;
