//! Refresh families, their live tokens, the rows of tokens minted before families held their
//! live token, and revoked access-token ids.
//!
//! A family's row holds its live token's generation and hash (`live_*` columns,
//! [`mandate_core::refresh`]): a rotation is one `UPDATE ... WHERE live_generation = $old AND
//! live_hash = $old_hash`, so the database's row lock (PostgreSQL re-checks the condition once
//! the lock is free) or single writer (SQLite) lets exactly one of two requests presenting the
//! same token change the row; the loser sees zero rows, writes nothing and reports `false`.
//! Tokens minted before that are rows of `refresh_tokens`, retired the same way (`... WHERE
//! used_at IS NULL`); the first rotation of one gives its family a live token. The server
//! rotates through a group-commit batch ([`crate::batch`], `apply_change`);
//! `rotate_refresh_token` does the same in a transaction of its own.

use super::grants::JoinedGrantRow;
use super::{opt_ts, scopes, ts};
use crate::model::{FamilyLookup, RefreshLookup};
use crate::{StoreError, StoreResult};
use mandate_core::refresh::{LiveToken, RefreshFamily, RefreshTokenRecord};

/// The columns [`INSERT_FAMILY`] writes, in [`bind_family`]'s order.
macro_rules! family_insert_columns {
    () => {
        "id, grant_id, client_id, tenant_id, user_id, scopes, resource, created_at, revoked_at, \
         live_generation, live_hash, live_issued_at, live_expires_at"
    };
}
pub(crate) const FAMILY_INSERT_COLUMNS: &str = family_insert_columns!();
pub(crate) const INSERT_FAMILY: &str = concat!(
    "INSERT INTO refresh_families (",
    family_insert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);
/// Binds a family's [`INSERT_FAMILY`] columns, in order, to `$query` (evaluates to it, or
/// returns a store error from the enclosing function).
macro_rules! bind_family {
    ($query:expr, $family:expr) => {{
        let family: &::mandate_core::refresh::RefreshFamily = $family;
        let live = family.live.as_ref();
        $query
            .bind(&family.id)
            .bind(&family.grant_id)
            .bind(&family.client_id)
            .bind(&family.tenant_id)
            .bind(&family.user_id)
            .bind(family.scopes.to_string())
            .bind(&family.resource)
            .bind(family.created_at.unix())
            .bind(family.revoked_at.map(|t| t.unix()))
            .bind(
                live.map(|l| $crate::sql::refresh::generation(l.generation))
                    .transpose()?,
            )
            .bind(live.map(|l| &l.token_hash))
            .bind(live.map(|l| l.issued_at.unix()))
            .bind(live.map(|l| l.expires_at.unix()))
    }};
}
pub(crate) use bind_family;

/// Binds a family id and its successor live token (`$1`-`$5` of [`ADVANCE_LIVE`] and
/// [`START_LIVE`]) to `$query` (evaluates to it, or returns a store error from the enclosing
/// function).
macro_rules! bind_successor {
    ($query:expr, $family_id:expr, $successor:expr) => {{
        let successor: &::mandate_core::refresh::LiveToken = $successor;
        $query
            .bind($family_id)
            .bind($crate::sql::refresh::generation(successor.generation)?)
            .bind(&successor.token_hash)
            .bind(successor.issued_at.unix())
            .bind(successor.expires_at.unix())
    }};
}
pub(crate) use bind_successor;

/// Only for [`crate::RefreshStore::insert_legacy_refresh_token`]: nothing mints such rows.
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens \
     (token_hash, family_id, issued_at, expires_at, used_at, successor_hash) \
     VALUES ($1, $2, $3, $4, $5, $6)";
/// A family's columns, aliased as [`FamilyRow`] reads them.
macro_rules! family_columns {
    () => {
        "f.id AS family_id, f.grant_id, f.client_id, f.tenant_id, f.user_id, f.scopes, \
         f.resource, f.created_at AS family_created_at, f.revoked_at AS family_revoked_at, \
         f.live_generation, f.live_hash, f.live_issued_at, f.live_expires_at, \
         (f.user_id IS NULL OR EXISTS (SELECT 1 FROM users u \
                 WHERE u.id = f.user_id AND NOT u.disabled)) AS user_active, \
         EXISTS (SELECT 1 FROM agents a \
                 WHERE a.client_id = f.client_id AND NOT a.disabled) AS agent_active, "
    };
}
/// A family by its id, with its grant (if the row exists), whether its user (if any) is still
/// active and whether its agent is enabled: everything a refresh or an introspection of a
/// token naming this family checks, in one statement of point reads by primary key.
pub(crate) const FAMILY_LOOKUP: &str = concat!(
    "SELECT ",
    family_columns!(),
    super::grants::joined_grant_columns!(),
    " FROM refresh_families f LEFT JOIN grants g ON g.id = f.grant_id WHERE f.id = $1"
);
/// A token stored as a row of its own, with all of [`FAMILY_LOOKUP`] for its family, and
/// whether its successor (if any) is still unused: a row of its own (a rotation before families
/// held their live token) or the family's live token.
pub(crate) const LOOKUP: &str = concat!(
    "SELECT t.token_hash, t.issued_at, t.expires_at, t.used_at, \
     (EXISTS (SELECT 1 FROM refresh_tokens s \
             WHERE s.token_hash = t.successor_hash AND s.used_at IS NULL) \
      OR (t.successor_hash IS NOT NULL AND f.live_hash = t.successor_hash)) AS successor_live, ",
    family_columns!(),
    super::grants::joined_grant_columns!(),
    " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     LEFT JOIN grants g ON g.id = f.grant_id WHERE t.token_hash = $1"
);
/// Makes `$2..$5` the family's live token if its live token is still generation `$6` with hash
/// `$7`; zero rows means someone else rotated it.
pub(crate) const ADVANCE_LIVE: &str = "UPDATE refresh_families SET live_generation = $2, \
     live_hash = $3, live_issued_at = $4, live_expires_at = $5 \
     WHERE id = $1 AND live_generation = $6 AND live_hash = $7";
/// Gives a family whose tokens were rows of their own its first live token (after
/// [`RETIRE_TOKEN`] retired the last such row, in the same transaction).
pub(crate) const START_LIVE: &str = "UPDATE refresh_families SET live_generation = $2, \
     live_hash = $3, live_issued_at = $4, live_expires_at = $5 WHERE id = $1";
/// Retires a token row only if it is still live; zero rows means someone else rotated it.
pub(crate) const RETIRE_TOKEN: &str = "UPDATE refresh_tokens SET used_at = $2, \
     successor_hash = $3 WHERE token_hash = $1 AND used_at IS NULL";
pub(crate) const REVOKE_FAMILY: &str =
    "UPDATE refresh_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

/// Keeps the later expiry if a jti is revoked twice.
pub(crate) const REVOKE_JTI: &str = "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
     ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
     WHEN excluded.expires_at > revoked_tokens.expires_at THEN excluded.expires_at \
     ELSE revoked_tokens.expires_at END";
pub(crate) const IS_JTI_REVOKED: &str =
    "SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = $1)";

/// A family's columns ([`family_columns!`]) with its grant's.
#[derive(sqlx::FromRow)]
pub(crate) struct FamilyRow {
    family_id: String,
    grant_id: String,
    client_id: String,
    tenant_id: String,
    user_id: Option<String>,
    scopes: String,
    resource: String,
    family_created_at: i64,
    family_revoked_at: Option<i64>,
    live_generation: Option<i64>,
    live_hash: Option<String>,
    live_issued_at: Option<i64>,
    live_expires_at: Option<i64>,
    user_active: bool,
    agent_active: bool,
    #[sqlx(flatten)]
    grant: JoinedGrantRow,
}

#[derive(sqlx::FromRow)]
pub(crate) struct LookupRow {
    token_hash: String,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    successor_live: bool,
    #[sqlx(flatten)]
    family: FamilyRow,
}

impl FamilyRow {
    fn from_inline(
        cols: &mut crate::sqlite_inline_reads::Columns<'_, '_>,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            family_id: cols.get("family_id")?,
            grant_id: cols.get("grant_id")?,
            client_id: cols.get("client_id")?,
            tenant_id: cols.get("tenant_id")?,
            user_id: cols.get("user_id")?,
            scopes: cols.get("scopes")?,
            resource: cols.get("resource")?,
            family_created_at: cols.get("family_created_at")?,
            family_revoked_at: cols.get("family_revoked_at")?,
            live_generation: cols.get("live_generation")?,
            live_hash: cols.get("live_hash")?,
            live_issued_at: cols.get("live_issued_at")?,
            live_expires_at: cols.get("live_expires_at")?,
            user_active: cols.get("user_active")?,
            agent_active: cols.get("agent_active")?,
            grant: JoinedGrantRow::from_inline(cols)?,
        })
    }
}

/// [`FAMILY_LOOKUP`] on an inline connection ([`crate::sqlite_inline_reads`]).
pub(crate) fn family_lookup_inline(
    conn: &rusqlite::Connection,
    family_id: &str,
) -> rusqlite::Result<Option<FamilyRow>> {
    crate::sqlite_inline_reads::row_by_key(conn, FAMILY_LOOKUP, family_id, FamilyRow::from_inline)
}

/// [`LOOKUP`] on an inline connection ([`crate::sqlite_inline_reads`]).
pub(crate) fn lookup_inline(
    conn: &rusqlite::Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<LookupRow>> {
    crate::sqlite_inline_reads::row_by_key(conn, LOOKUP, token_hash, |cols| {
        Ok(LookupRow {
            token_hash: cols.get("token_hash")?,
            issued_at: cols.get("issued_at")?,
            expires_at: cols.get("expires_at")?,
            used_at: cols.get("used_at")?,
            successor_live: cols.get("successor_live")?,
            family: FamilyRow::from_inline(cols)?,
        })
    })
}

/// A generation as the databases store it (a signed 64-bit integer).
pub(crate) fn generation(generation: u64) -> StoreResult<i64> {
    i64::try_from(generation).map_err(|_| StoreError::Corrupt("refresh family live generation"))
}

/// The live columns, all set or all null.
fn live_token(r: &FamilyRow) -> StoreResult<Option<LiveToken>> {
    match (
        &r.live_generation,
        &r.live_hash,
        r.live_issued_at,
        r.live_expires_at,
    ) {
        (None, None, None, None) => Ok(None),
        (Some(generation), Some(hash), Some(issued), Some(expires)) => Ok(Some(LiveToken {
            generation: u64::try_from(*generation)
                .map_err(|_| StoreError::Corrupt("refresh family live generation"))?,
            token_hash: hash.clone(),
            issued_at: ts(issued),
            expires_at: ts(expires),
        })),
        _ => Err(StoreError::Corrupt("refresh family live token")),
    }
}

impl TryFrom<FamilyRow> for FamilyLookup {
    type Error = StoreError;
    fn try_from(r: FamilyRow) -> StoreResult<Self> {
        let live = live_token(&r)?;
        Ok(FamilyLookup {
            family: RefreshFamily {
                id: r.family_id,
                grant_id: r.grant_id,
                client_id: r.client_id,
                tenant_id: r.tenant_id,
                user_id: r.user_id,
                scopes: scopes(&r.scopes, "refresh family scopes")?,
                resource: r.resource,
                created_at: ts(r.family_created_at),
                revoked_at: opt_ts(r.family_revoked_at),
                live,
            },
            grant: r.grant.into_grant()?,
            user_active: r.user_active,
            agent_active: r.agent_active,
        })
    }
}

impl TryFrom<LookupRow> for RefreshLookup {
    type Error = StoreError;
    fn try_from(r: LookupRow) -> StoreResult<Self> {
        let found = FamilyLookup::try_from(r.family)?;
        Ok(RefreshLookup {
            token: RefreshTokenRecord {
                token_hash: r.token_hash,
                family_id: found.family.id.clone(),
                issued_at: ts(r.issued_at),
                expires_at: ts(r.expires_at),
                used_at: opt_ts(r.used_at),
            },
            found,
            successor_live: r.successor_live,
        })
    }
}

macro_rules! impl_refresh {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Inserts a family with its live token inside `tx`.
            async fn insert_family(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                family: &::mandate_core::refresh::RefreshFamily,
            ) -> $crate::StoreResult<()> {
                $crate::sql::refresh::bind_family!(
                    ::sqlx::query($crate::sql::refresh::INSERT_FAMILY),
                    family
                )
                .execute(&mut **tx)
                .await
                .map_err($crate::sql::write_error("refresh family", "grant"))?;
                Ok(())
            }

            /// Retires `retiring` if it is still live and makes `successor` the family's live
            /// token, inside `tx`. `false` when another request retired it first; then nothing
            /// was written.
            async fn retire_and_succeed(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                family_id: &str,
                retiring: &$crate::batch::Retiring,
                successor: &::mandate_core::refresh::LiveToken,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let token_hash = match retiring {
                    $crate::batch::Retiring::Live {
                        generation,
                        token_hash,
                    } => {
                        return Self::advance_live(
                            &mut **tx,
                            family_id,
                            *generation,
                            token_hash,
                            successor,
                        )
                        .await;
                    }
                    $crate::batch::Retiring::Legacy { token_hash } => token_hash,
                };
                let retired = ::sqlx::query($crate::sql::refresh::RETIRE_TOKEN)
                    .bind(token_hash)
                    .bind(now.unix())
                    .bind(&successor.token_hash)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if retired == 0 {
                    return Ok(false);
                }
                $crate::sql::refresh::bind_successor!(
                    ::sqlx::query($crate::sql::refresh::START_LIVE),
                    family_id,
                    successor
                )
                .execute(&mut **tx)
                .await?;
                Ok(true)
            }

            /// Makes `successor` the family's live token if its live token is still
            /// `generation` / `token_hash`, in one statement on `executor`. `false` when
            /// another request advanced it first; then nothing was written.
            async fn advance_live<'e, E>(
                executor: E,
                family_id: &str,
                generation: u64,
                token_hash: &str,
                successor: &::mandate_core::refresh::LiveToken,
            ) -> $crate::StoreResult<bool>
            where
                E: ::sqlx::Executor<'e, Database = $db>,
            {
                let changed = $crate::sql::refresh::bind_successor!(
                    ::sqlx::query($crate::sql::refresh::ADVANCE_LIVE),
                    family_id,
                    successor
                )
                .bind($crate::sql::refresh::generation(generation)?)
                .bind(token_hash)
                .execute(executor)
                .await?
                .rows_affected();
                Ok(changed > 0)
            }

            /// Applies one group-commit change inside the batch's transaction
            /// ([`crate::batch`]), recording what it did in `outcome`.
            pub(crate) async fn apply_change(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                change: &$crate::batch::Change,
                outcome: &mut $crate::batch::Outcome,
            ) -> $crate::StoreResult<()> {
                match change {
                    $crate::batch::Change::RotateRefresh {
                        family_id,
                        retiring,
                        successor,
                        now,
                    } => {
                        outcome.declined =
                            !Self::retire_and_succeed(tx, family_id, retiring, successor, *now)
                                .await?;
                    }
                    $crate::batch::Change::RedeemCode {
                        code_hash,
                        now,
                        family,
                    } => {
                        let family_id = family.as_ref().map(|f| f.id.as_str());
                        let consumed =
                            Self::consume_code_in(tx, code_hash, *now, family_id).await?;
                        outcome.declined =
                            !matches!(consumed, $crate::model::CodeConsumption::Fresh(_));
                        outcome.consumed = Some(consumed);
                        if let (false, Some(family)) = (outcome.declined, family) {
                            Self::insert_family(tx, family).await?;
                        }
                    }
                }
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::RefreshStore for $store {
            async fn create_family(
                &self,
                family: &::mandate_core::refresh::RefreshFamily,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_family(&mut tx, family).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refresh_family(
                &self,
                family_id: &str,
            ) -> $crate::StoreResult<Option<$crate::model::FamilyLookup>> {
                $crate::sql::lookup_by_key!(
                    self,
                    $crate::sql::refresh::FAMILY_LOOKUP,
                    $crate::sql::refresh::family_lookup_inline,
                    $crate::sql::refresh::FamilyRow,
                    family_id
                )
            }

            async fn refresh_token(
                &self,
                token_hash: &str,
            ) -> $crate::StoreResult<Option<$crate::model::RefreshLookup>> {
                $crate::sql::lookup_by_key!(
                    self,
                    $crate::sql::refresh::LOOKUP,
                    $crate::sql::refresh::lookup_inline,
                    $crate::sql::refresh::LookupRow,
                    token_hash
                )
            }

            async fn rotate_refresh_token(
                &self,
                family_id: &str,
                retiring: &$crate::batch::Retiring,
                successor: &::mandate_core::refresh::LiveToken,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::retire_and_succeed(&mut tx, family_id, retiring, successor, now).await? {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_family(
                &self,
                family_id: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::refresh::REVOKE_FAMILY)
                    .bind(family_id)
                    .bind(now.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn insert_legacy_refresh_token(
                &self,
                token: &::mandate_core::refresh::RefreshTokenRecord,
                successor_hash: Option<&str>,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::refresh::INSERT_TOKEN)
                    .bind(&token.token_hash)
                    .bind(&token.family_id)
                    .bind(token.issued_at.unix())
                    .bind(token.expires_at.unix())
                    .bind(token.used_at.map(|t| t.unix()))
                    .bind(successor_hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("refresh token", "refresh family"))?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::RevokedTokenStore for $store {
            async fn revoke_jti(
                &self,
                jti: &str,
                expires_at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<()> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                ::sqlx::query($crate::sql::refresh::REVOKE_JTI)
                    .bind(jti)
                    .bind(expires_at.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn is_jti_revoked(&self, jti: &str) -> $crate::StoreResult<bool> {
                let revoked = ::sqlx::query_scalar::<_, bool>($crate::sql::refresh::IS_JTI_REVOKED)
                    .bind(jti)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(revoked)
            }
        }
    };
}
pub(crate) use impl_refresh;
