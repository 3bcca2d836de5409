//! Grants and authorization codes: the user's consent and the single-use codes it yields.
//!
//! The race-sensitive statements live here. A code is consumed by one conditional `UPDATE ...
//! WHERE consumed_at IS NULL RETURNING`, which both databases serialize on the row: exactly one
//! caller sees the row come back. Revoking a grant revokes its refresh families in the same
//! transaction, so no refresh can slip between the two.

use super::{Conditions, opt_ts, scopes, ts};
use crate::model::{CodeLookup, GrantCursor, GrantFilter};
use crate::{StoreError, StoreResult};
use mandate_core::code::AuthorizationCode;
use mandate_core::grant::Grant;
use mandate_core::pkce::CodeChallenge;

macro_rules! select_grants {
    ($rest:literal) => {
        concat!(
            "SELECT id, tenant_id, user_id, client_id, scopes, purpose, created_at, expires_at, \
             revoked_at, revoked_reason FROM grants",
            $rest
        )
    };
}
/// A grant's columns read beside another table's row (left-joined as `g`), prefixed `g_` so
/// they cannot collide with that row's own; [`JoinedGrantRow`] reads them back.
macro_rules! joined_grant_columns {
    () => {
        "g.id AS g_id, g.tenant_id AS g_tenant_id, g.user_id AS g_user_id, \
         g.client_id AS g_client_id, g.scopes AS g_scopes, g.purpose AS g_purpose, \
         g.created_at AS g_created_at, g.expires_at AS g_expires_at, \
         g.revoked_at AS g_revoked_at, g.revoked_reason AS g_revoked_reason"
    };
}
pub(crate) use joined_grant_columns;

pub(crate) const INSERT_GRANT: &str = "INSERT INTO grants (id, tenant_id, user_id, client_id, \
     scopes, purpose, created_at, expires_at, revoked_at, revoked_reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const GRANT: &str = select_grants!(" WHERE id = $1");
/// Newest first; ties (same second) broken by id, descending, so the answer is deterministic
/// and the `grants_active` index (…, created_at, id) yields it without sorting.
pub(crate) const ACTIVE_USER_GRANT: &str = select_grants!(
    " WHERE tenant_id = $1 AND user_id = $2 AND client_id = $3 AND revoked_at IS NULL \
     AND (expires_at IS NULL OR expires_at > $4) ORDER BY created_at DESC, id DESC LIMIT 1"
);
pub(crate) const ACTIVE_SERVICE_GRANT: &str = select_grants!(
    " WHERE tenant_id = $1 AND user_id IS NULL AND client_id = $2 AND revoked_at IS NULL \
     AND (expires_at IS NULL OR expires_at > $3) ORDER BY created_at DESC, id DESC LIMIT 1"
);
pub(crate) const UPDATE_GRANT_SCOPES: &str =
    "UPDATE grants SET scopes = $3 WHERE id = $1 AND revoked_at IS NULL AND scopes = $2";
pub(crate) const REVOKE_GRANT: &str = "UPDATE grants SET revoked_at = $2, revoked_reason = $3 \
     WHERE id = $1 AND revoked_at IS NULL";

/// The conditions of a [`GrantFilter`].
fn grant_conditions(filter: &GrantFilter) -> Conditions<'_> {
    let mut c = Conditions::new(1);
    c.eq("tenant_id", filter.tenant_id.as_deref());
    c.eq("user_id", filter.user_id.as_deref());
    c.eq("client_id", filter.client_id.as_deref());
    if !filter.include_revoked {
        c.raw("revoked_at IS NULL");
    }
    c
}

/// `SELECT` for [`crate::GrantStore::grants`]: one page of the filters that are set, newest
/// first. The `grants_*_created` indexes serve each filter in this order.
pub(crate) fn grants_query<'a>(
    filter: &'a GrantFilter,
    after: Option<&'a GrantCursor>,
    limit: u32,
) -> (String, Vec<super::Bind<'a>>) {
    let mut c = grant_conditions(filter);
    c.older_than(after.map(|a| (a.created_at.unix(), a.id.as_str())));
    c.page(select_grants!(""), "created_at DESC, id DESC", limit)
}

/// `SELECT count(*)` for [`crate::GrantStore::count_grants`].
pub(crate) fn count_grants_query(filter: &GrantFilter, cap: u32) -> (String, Vec<super::Bind<'_>>) {
    grant_conditions(filter).capped_count("grants", cap)
}

/// `SELECT` for [`crate::GrantStore::grants_in_force`]: which of `ids` are unrevoked and
/// unexpired at `$1`, one statement however many (each is a primary-key lookup).
pub(crate) fn grants_in_force_query(ids: &[String]) -> (String, Vec<super::Bind<'_>>) {
    let mut c = Conditions::new(2);
    c.any_of("id", ids);
    c.raw("revoked_at IS NULL");
    c.raw("(expires_at IS NULL OR expires_at > $1)");
    let (clause, binds) = c.finish();
    (format!("SELECT id FROM grants{clause}"), binds)
}

/// [`grants_in_force_query`]'s statement on an inline connection
/// ([`crate::sqlite_inline_reads`]): `$1` is `now`, the ids are `$2` onwards.
pub(crate) fn grants_in_force_inline(
    conn: &rusqlite::Connection,
    sql: &str,
    now: i64,
    ids: &[super::Bind<'_>],
) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(sql)?;
    let values = std::iter::once(super::Bind::Int(now)).chain(ids.iter().copied());
    for (number, value) in (1..).zip(values) {
        let index = statement
            .parameter_index(&format!("${number}"))?
            .ok_or(rusqlite::Error::InvalidParameterName(format!("${number}")))?;
        match value {
            super::Bind::Text(v) => statement.raw_bind_parameter(index, v)?,
            super::Bind::Int(v) => statement.raw_bind_parameter(index, v)?,
        }
    }
    let mut rows = statement.raw_query();
    let mut live = Vec::new();
    while let Some(row) = rows.next()? {
        live.push(row.get(0)?);
    }
    Ok(live)
}

#[derive(sqlx::FromRow)]
pub(crate) struct GrantRow {
    id: String,
    tenant_id: String,
    user_id: Option<String>,
    client_id: String,
    scopes: String,
    purpose: Option<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;
    fn try_from(r: GrantRow) -> StoreResult<Self> {
        Ok(Grant {
            id: r.id,
            tenant_id: r.tenant_id,
            user_id: r.user_id,
            client_id: r.client_id,
            scopes: scopes(&r.scopes, "grant scopes")?,
            purpose: r.purpose,
            created_at: ts(r.created_at),
            expires_at: opt_ts(r.expires_at),
            revoked_at: opt_ts(r.revoked_at),
            revoked_reason: r.revoked_reason,
        })
    }
}

macro_rules! code_columns {
    () => {
        "code_hash, client_id, grant_id, user_id, tenant_id, redirect_uri, \
         redirect_uri_explicit, code_challenge, resource, scopes, created_at, expires_at, \
         family_id"
    };
}
/// A code's columns, as [`CodeRow`] reads them.
pub(crate) const CODE_COLUMNS: &str = code_columns!();
pub(crate) const INSERT_CODE: &str = concat!(
    "INSERT INTO authorization_codes (",
    code_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);
/// Marks the code used only if nobody has, with the refresh family its redemption creates
/// (`$3`, or `NULL`), so a replay can name it: the row comes back to exactly one caller. One
/// write of the row: setting the family after would grow it a second time, and rows appended
/// in issuance order fill their page, so each growth can split one.
pub(crate) const CONSUME_CODE: &str = concat!(
    "UPDATE authorization_codes SET consumed_at = $2, family_id = $3 \
     WHERE code_hash = $1 AND consumed_at IS NULL RETURNING ",
    code_columns!()
);
pub(crate) const CODE: &str = concat!(
    "SELECT ",
    code_columns!(),
    " FROM authorization_codes WHERE code_hash = $1"
);
pub(crate) const SET_CODE_FAMILY: &str =
    "UPDATE authorization_codes SET family_id = $2 WHERE code_hash = $1";
/// A code with whether it was used, its grant (if the row exists), and whether its user is
/// active: everything a redemption checks before it consumes the code, in one statement.
pub(crate) const CODE_LOOKUP: &str = concat!(
    "SELECT c.code_hash, c.client_id, c.grant_id, c.user_id, c.tenant_id, c.redirect_uri, \
     c.redirect_uri_explicit, c.code_challenge, c.resource, c.scopes, c.created_at, \
     c.expires_at, c.family_id, c.consumed_at IS NOT NULL AS consumed, ",
    joined_grant_columns!(),
    ", EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id AND NOT u.disabled) AS user_active \
     FROM authorization_codes c LEFT JOIN grants g ON g.id = c.grant_id WHERE c.code_hash = $1"
);

/// The columns of [`joined_grant_columns`]: all NULL when the joined grant is missing.
#[derive(sqlx::FromRow)]
pub(crate) struct JoinedGrantRow {
    g_id: Option<String>,
    g_tenant_id: Option<String>,
    g_user_id: Option<String>,
    g_client_id: Option<String>,
    g_scopes: Option<String>,
    g_purpose: Option<String>,
    g_created_at: Option<i64>,
    g_expires_at: Option<i64>,
    g_revoked_at: Option<i64>,
    g_revoked_reason: Option<String>,
}

impl JoinedGrantRow {
    /// The columns of [`joined_grant_columns`] from an inline read.
    pub(crate) fn from_inline(
        cols: &mut crate::sqlite_inline_reads::Columns<'_, '_>,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            g_id: cols.get("g_id")?,
            g_tenant_id: cols.get("g_tenant_id")?,
            g_user_id: cols.get("g_user_id")?,
            g_client_id: cols.get("g_client_id")?,
            g_scopes: cols.get("g_scopes")?,
            g_purpose: cols.get("g_purpose")?,
            g_created_at: cols.get("g_created_at")?,
            g_expires_at: cols.get("g_expires_at")?,
            g_revoked_at: cols.get("g_revoked_at")?,
            g_revoked_reason: cols.get("g_revoked_reason")?,
        })
    }

    /// The grant, or `None` when the join found none.
    pub(crate) fn into_grant(self) -> StoreResult<Option<Grant>> {
        let Some(id) = self.g_id else {
            return Ok(None);
        };
        let missing = || StoreError::Corrupt("joined grant column");
        GrantRow {
            id,
            tenant_id: self.g_tenant_id.ok_or_else(missing)?,
            user_id: self.g_user_id,
            client_id: self.g_client_id.ok_or_else(missing)?,
            scopes: self.g_scopes.ok_or_else(missing)?,
            purpose: self.g_purpose,
            created_at: self.g_created_at.ok_or_else(missing)?,
            expires_at: self.g_expires_at,
            revoked_at: self.g_revoked_at,
            revoked_reason: self.g_revoked_reason,
        }
        .try_into()
        .map(Some)
    }
}

/// A row of [`CODE_LOOKUP`].
#[derive(sqlx::FromRow)]
pub(crate) struct CodeLookupRow {
    #[sqlx(flatten)]
    code: CodeRow,
    consumed: bool,
    #[sqlx(flatten)]
    grant: JoinedGrantRow,
    user_active: bool,
}

/// [`CODE_LOOKUP`] on an inline connection ([`crate::sqlite_inline_reads`]).
pub(crate) fn code_lookup_inline(
    conn: &rusqlite::Connection,
    code_hash: &str,
) -> rusqlite::Result<Option<CodeLookupRow>> {
    crate::sqlite_inline_reads::row_by_key(conn, CODE_LOOKUP, code_hash, |cols| {
        Ok(CodeLookupRow {
            code: CodeRow::from_inline(cols)?,
            consumed: cols.get("consumed")?,
            grant: JoinedGrantRow::from_inline(cols)?,
            user_active: cols.get("user_active")?,
        })
    })
}

impl TryFrom<CodeLookupRow> for CodeLookup {
    type Error = StoreError;
    fn try_from(r: CodeLookupRow) -> StoreResult<Self> {
        Ok(CodeLookup {
            code: r.code.try_into()?,
            consumed: r.consumed,
            grant: r.grant.into_grant()?,
            user_active: r.user_active,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CodeRow {
    code_hash: String,
    client_id: String,
    grant_id: String,
    user_id: String,
    tenant_id: String,
    redirect_uri: String,
    redirect_uri_explicit: bool,
    code_challenge: String,
    resource: String,
    scopes: String,
    created_at: i64,
    expires_at: i64,
    family_id: Option<String>,
}

impl CodeRow {
    /// The columns of [`code_columns`] from a row read with rusqlite (inline reads, and the
    /// SQLite group-commit writer).
    pub(crate) fn from_inline(
        cols: &mut crate::sqlite_inline_reads::Columns<'_, '_>,
    ) -> rusqlite::Result<Self> {
        Ok(Self {
            code_hash: cols.get("code_hash")?,
            client_id: cols.get("client_id")?,
            grant_id: cols.get("grant_id")?,
            user_id: cols.get("user_id")?,
            tenant_id: cols.get("tenant_id")?,
            redirect_uri: cols.get("redirect_uri")?,
            redirect_uri_explicit: cols.get("redirect_uri_explicit")?,
            code_challenge: cols.get("code_challenge")?,
            resource: cols.get("resource")?,
            scopes: cols.get("scopes")?,
            created_at: cols.get("created_at")?,
            expires_at: cols.get("expires_at")?,
            family_id: cols.get("family_id")?,
        })
    }
}

impl TryFrom<CodeRow> for AuthorizationCode {
    type Error = StoreError;
    fn try_from(r: CodeRow) -> StoreResult<Self> {
        Ok(AuthorizationCode {
            code_hash: r.code_hash,
            client_id: r.client_id,
            grant_id: r.grant_id,
            user_id: r.user_id,
            tenant_id: r.tenant_id,
            redirect_uri: r.redirect_uri,
            redirect_uri_explicit: r.redirect_uri_explicit,
            code_challenge: CodeChallenge::from_stored(&r.code_challenge)
                .ok_or(StoreError::Corrupt("code challenge"))?,
            resource: r.resource,
            scopes: scopes(&r.scopes, "code scopes")?,
            created_at: ts(r.created_at),
            expires_at: ts(r.expires_at),
            family_id: r.family_id,
        })
    }
}

macro_rules! impl_grants {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Consumes a code inside `tx`: `Fresh` for the first consumer, `Replayed` after.
            pub(crate) async fn consume_code_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                code_hash: &str,
                now: ::mandate_core::time::Timestamp,
                family_id: Option<&str>,
            ) -> $crate::StoreResult<$crate::model::CodeConsumption> {
                let fresh = ::sqlx::query_as::<_, $crate::sql::grants::CodeRow>(
                    $crate::sql::grants::CONSUME_CODE,
                )
                .bind(code_hash)
                .bind(now.unix())
                .bind(family_id)
                .fetch_optional(&mut **tx)
                .await?;
                match fresh {
                    Some(row) => Ok($crate::model::CodeConsumption::Fresh(row.try_into()?)),
                    None => Self::not_consumed(&mut **tx, code_hash).await,
                }
            }

            /// What a code that a consumption did not take was: `Replayed` if it exists (used
            /// already), `Unknown` if not.
            pub(crate) async fn not_consumed<'e, E>(
                executor: E,
                code_hash: &str,
            ) -> $crate::StoreResult<$crate::model::CodeConsumption>
            where
                E: ::sqlx::Executor<'e, Database = $db>,
            {
                let used =
                    ::sqlx::query_as::<_, $crate::sql::grants::CodeRow>($crate::sql::grants::CODE)
                        .bind(code_hash)
                        .fetch_optional(executor)
                        .await?;
                Ok(match used {
                    Some(row) => $crate::model::CodeConsumption::Replayed(row.try_into()?),
                    None => $crate::model::CodeConsumption::Unknown,
                })
            }
        }

        #[::async_trait::async_trait]
        impl $crate::GrantStore for $store {
            async fn create_grant(
                &self,
                grant: &::mandate_core::grant::Grant,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::grants::INSERT_GRANT)
                    .bind(&grant.id)
                    .bind(&grant.tenant_id)
                    .bind(&grant.user_id)
                    .bind(&grant.client_id)
                    .bind(grant.scopes.to_string())
                    .bind(&grant.purpose)
                    .bind(grant.created_at.unix())
                    .bind(grant.expires_at.map(|t| t.unix()))
                    .bind(grant.revoked_at.map(|t| t.unix()))
                    .bind(&grant.revoked_reason)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("grant", "grant"))?;
                Ok(())
            }

            async fn grant(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Option<::mandate_core::grant::Grant>> {
                let row = ::sqlx::query_as::<_, $crate::sql::grants::GrantRow>(
                    $crate::sql::grants::GRANT,
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn active_grant(
                &self,
                tenant_id: &str,
                user_id: Option<&str>,
                client_id: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<Option<::mandate_core::grant::Grant>> {
                // Two statements rather than `user_id IS NOT DISTINCT FROM $2`, so both
                // databases can use the (tenant_id, user_id, client_id, created_at) index.
                let query = match user_id {
                    Some(user_id) => ::sqlx::query_as::<_, $crate::sql::grants::GrantRow>(
                        $crate::sql::grants::ACTIVE_USER_GRANT,
                    )
                    .bind(tenant_id)
                    .bind(user_id),
                    None => ::sqlx::query_as::<_, $crate::sql::grants::GrantRow>(
                        $crate::sql::grants::ACTIVE_SERVICE_GRANT,
                    )
                    .bind(tenant_id),
                };
                let row = query
                    .bind(client_id)
                    .bind(now.unix())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn update_grant_scopes(
                &self,
                id: &str,
                from: &::mandate_core::scope::ScopeSet,
                to: &::mandate_core::scope::ScopeSet,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::grants::UPDATE_GRANT_SCOPES)
                    .bind(id)
                    .bind(from.to_string())
                    .bind(to.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn grants_in_force(
                &self,
                ids: &[String],
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<Vec<String>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let (sql, binds) = $crate::sql::grants::grants_in_force_query(ids);
                let inline = self.inline_reads().and_then(|reads| {
                    reads.read(|conn| {
                        $crate::sql::grants::grants_in_force_inline(conn, &sql, now.unix(), &binds)
                    })
                });
                if let Some(live) = inline {
                    return Ok(live);
                }
                Ok($crate::sql::point_read!(self, |conn| {
                    let query = ::sqlx::query_scalar::<_, String>(&sql).bind(now.unix());
                    $crate::sql::bind_all!(query, binds.iter().copied()).fetch_all(conn)
                }))
            }

            async fn grants(
                &self,
                filter: &$crate::model::GrantFilter,
                after: Option<&$crate::model::GrantCursor>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<::mandate_core::grant::Grant>> {
                let (sql, binds) = $crate::sql::grants::grants_query(filter, after, limit);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::grants::GrantRow>(&sql),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn count_grants(
                &self,
                filter: &$crate::model::GrantFilter,
                cap: u32,
            ) -> $crate::StoreResult<u32> {
                let (sql, binds) = $crate::sql::grants::count_grants_query(filter, cap);
                $crate::sql::capped_count!(&self.pool, &sql, binds)
            }

            async fn revoke_grant(
                &self,
                id: &str,
                now: ::mandate_core::time::Timestamp,
                reason: &str,
            ) -> $crate::StoreResult<bool> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                // One statement: the grant's families are revoked with it, also one created
                // by a request that raced the revocation, because every family lookup reads
                // its grant (`FamilyLookup::revoked_at`).
                let grant = ::sqlx::query($crate::sql::grants::REVOKE_GRANT)
                    .bind(id)
                    .bind(now.unix())
                    .bind(reason)
                    .execute(&self.pool)
                    .await?;
                Ok(grant.rows_affected() > 0)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::CodeStore for $store {
            async fn insert_code(
                &self,
                code: &::mandate_core::code::AuthorizationCode,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::grants::INSERT_CODE)
                    .bind(&code.code_hash)
                    .bind(&code.client_id)
                    .bind(&code.grant_id)
                    .bind(&code.user_id)
                    .bind(&code.tenant_id)
                    .bind(&code.redirect_uri)
                    .bind(code.redirect_uri_explicit)
                    .bind(code.code_challenge.as_str())
                    .bind(&code.resource)
                    .bind(code.scopes.to_string())
                    .bind(code.created_at.unix())
                    .bind(code.expires_at.unix())
                    .bind(&code.family_id)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("authorization code", "grant"))?;
                Ok(())
            }

            async fn consume_code(
                &self,
                code_hash: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<$crate::model::CodeConsumption> {
                let mut tx = self.pool.begin().await?;
                let consumed = Self::consume_code_in(&mut tx, code_hash, now, None).await?;
                tx.commit().await?;
                Ok(consumed)
            }

            async fn authorization_code(
                &self,
                code_hash: &str,
            ) -> $crate::StoreResult<Option<$crate::model::CodeLookup>> {
                $crate::sql::lookup_by_key!(
                    self,
                    $crate::sql::grants::CODE_LOOKUP,
                    $crate::sql::grants::code_lookup_inline,
                    $crate::sql::grants::CodeLookupRow,
                    code_hash
                )
            }

            async fn set_code_family(
                &self,
                code_hash: &str,
                family_id: &str,
            ) -> $crate::StoreResult<()> {
                let done = ::sqlx::query($crate::sql::grants::SET_CODE_FAMILY)
                    .bind(code_hash)
                    .bind(family_id)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound("authorization code"));
                }
                Ok(())
            }
        }
    };
}
pub(crate) use impl_grants;
