//! Refresh families, their rotating tokens, and revoked access-token ids.
//!
//! Rotation is the race that matters: two requests presenting the same live token must not
//! both get a successor. Retiring is one `UPDATE ... WHERE used_at IS NULL`, so the database's
//! row lock (PostgreSQL re-checks the condition once the lock is free) or single writer
//! (SQLite) lets exactly one of them change the row; the loser sees zero rows, writes nothing
//! and reports `false`. The server rotates through a group-commit batch ([`crate::batch`],
//! `apply_change`); `rotate_refresh_token` does the same in a transaction of its own.

use super::grants::JoinedGrantRow;
use super::{opt_ts, scopes, ts};
use crate::model::RefreshLookup;
use crate::{StoreError, StoreResult};
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};

pub(crate) const INSERT_FAMILY: &str = "INSERT INTO refresh_families (id, grant_id, client_id, \
     tenant_id, user_id, scopes, resource, created_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens \
     (token_hash, family_id, issued_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)";
/// The token, its family, whether its successor (if any) is still unused, the family's grant
/// (if the row exists), whether its user (if any) is still active and whether its agent is
/// enabled: everything a refresh or an introspection checks, in one statement (point reads by
/// primary key) instead of one query per fact.
pub(crate) const LOOKUP: &str = concat!(
    "SELECT t.token_hash, t.family_id, t.issued_at, t.expires_at, t.used_at, f.grant_id, \
     f.client_id, f.tenant_id, f.user_id, f.scopes, f.resource, f.created_at AS family_created_at, \
     f.revoked_at AS family_revoked_at, \
     EXISTS (SELECT 1 FROM refresh_tokens s \
             WHERE s.token_hash = t.successor_hash AND s.used_at IS NULL) AS successor_live, \
     (f.user_id IS NULL OR EXISTS (SELECT 1 FROM users u \
             WHERE u.id = f.user_id AND NOT u.disabled)) AS user_active, \
     EXISTS (SELECT 1 FROM agents a \
             WHERE a.client_id = f.client_id AND NOT a.disabled) AS agent_active, ",
    super::grants::joined_grant_columns!(),
    " FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     LEFT JOIN grants g ON g.id = f.grant_id WHERE t.token_hash = $1"
);
/// Retires the token only if it is still live; zero rows means someone else rotated it.
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

#[derive(sqlx::FromRow)]
pub(crate) struct LookupRow {
    token_hash: String,
    family_id: String,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    grant_id: String,
    client_id: String,
    tenant_id: String,
    user_id: Option<String>,
    scopes: String,
    resource: String,
    family_created_at: i64,
    family_revoked_at: Option<i64>,
    successor_live: bool,
    user_active: bool,
    agent_active: bool,
    #[sqlx(flatten)]
    grant: JoinedGrantRow,
}

/// [`LOOKUP`] on an inline connection ([`crate::sqlite_inline_reads`]).
pub(crate) fn lookup_inline(
    conn: &rusqlite::Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<LookupRow>> {
    crate::sqlite_inline_reads::row_by_key(conn, LOOKUP, token_hash, |cols| {
        Ok(LookupRow {
            token_hash: cols.get("token_hash")?,
            family_id: cols.get("family_id")?,
            issued_at: cols.get("issued_at")?,
            expires_at: cols.get("expires_at")?,
            used_at: cols.get("used_at")?,
            grant_id: cols.get("grant_id")?,
            client_id: cols.get("client_id")?,
            tenant_id: cols.get("tenant_id")?,
            user_id: cols.get("user_id")?,
            scopes: cols.get("scopes")?,
            resource: cols.get("resource")?,
            family_created_at: cols.get("family_created_at")?,
            family_revoked_at: cols.get("family_revoked_at")?,
            successor_live: cols.get("successor_live")?,
            user_active: cols.get("user_active")?,
            agent_active: cols.get("agent_active")?,
            grant: JoinedGrantRow::from_inline(cols)?,
        })
    })
}

impl TryFrom<LookupRow> for RefreshLookup {
    type Error = StoreError;
    fn try_from(r: LookupRow) -> StoreResult<Self> {
        Ok(RefreshLookup {
            grant: r.grant.into_grant()?,
            user_active: r.user_active,
            agent_active: r.agent_active,
            family: RefreshFamily {
                id: r.family_id.clone(),
                grant_id: r.grant_id,
                client_id: r.client_id,
                tenant_id: r.tenant_id,
                user_id: r.user_id,
                scopes: scopes(&r.scopes, "refresh family scopes")?,
                resource: r.resource,
                created_at: ts(r.family_created_at),
                revoked_at: opt_ts(r.family_revoked_at),
            },
            token: RefreshTokenRecord {
                token_hash: r.token_hash,
                family_id: r.family_id,
                issued_at: ts(r.issued_at),
                expires_at: ts(r.expires_at),
                used_at: opt_ts(r.used_at),
            },
            successor_live: r.successor_live,
        })
    }
}

macro_rules! impl_refresh {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Inserts one refresh token inside `tx`.
            async fn insert_refresh_token(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                token: &::mandate_core::refresh::RefreshTokenRecord,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::refresh::INSERT_TOKEN)
                    .bind(&token.token_hash)
                    .bind(&token.family_id)
                    .bind(token.issued_at.unix())
                    .bind(token.expires_at.unix())
                    .bind(token.used_at.map(|t| t.unix()))
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::sql::write_error("refresh token", "refresh family"))?;
                Ok(())
            }

            /// Inserts a family and its first token inside `tx`.
            async fn insert_family(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                family: &::mandate_core::refresh::RefreshFamily,
                first: &::mandate_core::refresh::RefreshTokenRecord,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::refresh::INSERT_FAMILY)
                    .bind(&family.id)
                    .bind(&family.grant_id)
                    .bind(&family.client_id)
                    .bind(&family.tenant_id)
                    .bind(&family.user_id)
                    .bind(family.scopes.to_string())
                    .bind(&family.resource)
                    .bind(family.created_at.unix())
                    .bind(family.revoked_at.map(|t| t.unix()))
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::sql::write_error("refresh family", "grant"))?;
                Self::insert_refresh_token(tx, first).await
            }

            /// Retires `old_hash` if it is still live and inserts `successor`, inside `tx`.
            /// `false` when another request retired it first; then nothing was written.
            async fn retire_and_succeed(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                old_hash: &str,
                successor: &::mandate_core::refresh::RefreshTokenRecord,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let retired = ::sqlx::query($crate::sql::refresh::RETIRE_TOKEN)
                    .bind(old_hash)
                    .bind(now.unix())
                    .bind(&successor.token_hash)
                    .execute(&mut **tx)
                    .await?;
                if retired.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::insert_refresh_token(tx, successor).await?;
                Ok(true)
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
                        old_hash,
                        successor,
                        now,
                    } => {
                        outcome.declined =
                            !Self::retire_and_succeed(tx, old_hash, successor, *now).await?;
                    }
                    $crate::batch::Change::RedeemCode {
                        code_hash,
                        now,
                        family,
                    } => {
                        let consumed = Self::consume_code_in(tx, code_hash, *now).await?;
                        outcome.declined =
                            !matches!(consumed, $crate::model::CodeConsumption::Fresh(_));
                        outcome.consumed = Some(consumed);
                        if let (false, Some(new)) = (outcome.declined, family) {
                            Self::insert_family(tx, &new.family, &new.first).await?;
                            ::sqlx::query($crate::sql::grants::SET_CODE_FAMILY)
                                .bind(code_hash)
                                .bind(&new.family.id)
                                .execute(&mut **tx)
                                .await?;
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
                first: &::mandate_core::refresh::RefreshTokenRecord,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_family(&mut tx, family, first).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refresh_token(
                &self,
                token_hash: &str,
            ) -> $crate::StoreResult<Option<$crate::model::RefreshLookup>> {
                let inline = self.inline_reads().and_then(|reads| {
                    reads.read(|conn| $crate::sql::refresh::lookup_inline(conn, token_hash))
                });
                if let Some(row) = inline {
                    return row.map(TryInto::try_into).transpose();
                }
                let row = ::sqlx::query_as::<_, $crate::sql::refresh::LookupRow>(
                    $crate::sql::refresh::LOOKUP,
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn rotate_refresh_token(
                &self,
                old_hash: &str,
                successor: &::mandate_core::refresh::RefreshTokenRecord,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::retire_and_succeed(&mut tx, old_hash, successor, now).await? {
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
        }

        #[::async_trait::async_trait]
        impl $crate::RevokedTokenStore for $store {
            async fn revoke_jti(
                &self,
                jti: &str,
                expires_at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<()> {
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
