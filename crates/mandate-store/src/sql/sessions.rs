//! Browser sessions, authorization requests waiting for login or consent, and signing keys.
//!
//! Sessions and pending requests are read "as of now": an expired row is as good as absent, so
//! the caller never has to remember to check. A pending request is taken with a `DELETE`, whose
//! row count tells exactly one caller that it completed the request.

use super::{opt_ts, ts};
use crate::model::{PendingAuthorization, Session, StoredSigningKey};
use crate::{StoreError, StoreResult};

pub(crate) const INSERT_SESSION: &str = "INSERT INTO sessions \
     (id_hash, user_id, tenant_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const SESSION: &str = "SELECT id_hash, user_id, tenant_id, created_at, expires_at \
     FROM sessions WHERE id_hash = $1 AND expires_at > $2";
pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_hash = $1";

pub(crate) const INSERT_PENDING: &str = "INSERT INTO pending_authorizations \
     (id, request, created_at, expires_at) VALUES ($1, $2, $3, $4)";
pub(crate) const PENDING: &str = "SELECT id, request, created_at, expires_at \
     FROM pending_authorizations WHERE id = $1 AND expires_at > $2";
pub(crate) const TAKE_PENDING: &str = "DELETE FROM pending_authorizations WHERE id = $1";

pub(crate) const INSERT_KEY: &str = "INSERT INTO signing_keys \
     (kid, alg, private_sealed, public_jwk, created_at, retired_at, activates_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const KEYS: &str = "SELECT kid, alg, private_sealed, public_jwk, created_at, \
     retired_at, activates_at FROM signing_keys ORDER BY created_at DESC, kid DESC";
/// Withdraws a key once: the first withdrawal's time is kept.
pub(crate) const RETIRE_KEY: &str =
    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id_hash: String,
    user_id: String,
    tenant_id: String,
    created_at: i64,
    expires_at: i64,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Self {
        Session {
            id_hash: r.id_hash,
            user_id: r.user_id,
            tenant_id: r.tenant_id,
            created_at: ts(r.created_at),
            expires_at: ts(r.expires_at),
        }
    }
}

/// The authorization request as stored: JSON text.
pub(crate) fn pending_request_json(pending: &PendingAuthorization) -> StoreResult<String> {
    serde_json::to_string(&pending.request)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

#[derive(sqlx::FromRow)]
pub(crate) struct PendingRow {
    id: String,
    request: String,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<PendingRow> for PendingAuthorization {
    type Error = StoreError;
    fn try_from(r: PendingRow) -> StoreResult<Self> {
        Ok(PendingAuthorization {
            id: r.id,
            request: serde_json::from_str(&r.request)
                .map_err(|_| StoreError::Corrupt("pending authorization request"))?,
            created_at: ts(r.created_at),
            expires_at: ts(r.expires_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    kid: String,
    alg: String,
    private_sealed: Vec<u8>,
    public_jwk: String,
    created_at: i64,
    retired_at: Option<i64>,
    activates_at: Option<i64>,
}

impl TryFrom<KeyRow> for StoredSigningKey {
    type Error = StoreError;
    fn try_from(r: KeyRow) -> StoreResult<Self> {
        Ok(StoredSigningKey {
            kid: r.kid,
            alg: r.alg,
            private_sealed: r.private_sealed,
            public_jwk: serde_json::from_str(&r.public_jwk)
                .map_err(|_| StoreError::Corrupt("public JWK"))?,
            created_at: ts(r.created_at),
            retired_at: opt_ts(r.retired_at),
            activates_at: ts(r.activates_at.unwrap_or(r.created_at)),
        })
    }
}

macro_rules! impl_sessions {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::SessionStore for $store {
            async fn create_session(
                &self,
                session: &$crate::model::Session,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::sessions::INSERT_SESSION)
                    .bind(&session.id_hash)
                    .bind(&session.user_id)
                    .bind(&session.tenant_id)
                    .bind(session.created_at.unix())
                    .bind(session.expires_at.unix())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("session", "user"))?;
                Ok(())
            }

            async fn session(
                &self,
                id_hash: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<Option<$crate::model::Session>> {
                let row = ::sqlx::query_as::<_, $crate::sql::sessions::SessionRow>(
                    $crate::sql::sessions::SESSION,
                )
                .bind(id_hash)
                .bind(now.unix())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn delete_session(&self, id_hash: &str) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::sessions::DELETE_SESSION)
                    .bind(id_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_pending(
                &self,
                pending: &$crate::model::PendingAuthorization,
            ) -> $crate::StoreResult<()> {
                let request = $crate::sql::sessions::pending_request_json(pending)?;
                ::sqlx::query($crate::sql::sessions::INSERT_PENDING)
                    .bind(&pending.id)
                    .bind(request)
                    .bind(pending.created_at.unix())
                    .bind(pending.expires_at.unix())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("pending authorization", "client"))?;
                Ok(())
            }

            async fn pending(
                &self,
                id: &str,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<Option<$crate::model::PendingAuthorization>> {
                let row = ::sqlx::query_as::<_, $crate::sql::sessions::PendingRow>(
                    $crate::sql::sessions::PENDING,
                )
                .bind(id)
                .bind(now.unix())
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn take_pending(&self, id: &str) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::sessions::TAKE_PENDING)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::KeyStore for $store {
            async fn insert_signing_key(
                &self,
                key: &$crate::model::StoredSigningKey,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::sessions::INSERT_KEY)
                    .bind(&key.kid)
                    .bind(&key.alg)
                    .bind(&key.private_sealed)
                    .bind(key.public_jwk.to_string())
                    .bind(key.created_at.unix())
                    .bind(key.retired_at.map(|t| t.unix()))
                    .bind(key.activates_at.unix())
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("signing key", "signing key"))?;
                Ok(())
            }

            async fn signing_keys(
                &self,
            ) -> $crate::StoreResult<Vec<$crate::model::StoredSigningKey>> {
                let rows = ::sqlx::query_as::<_, $crate::sql::sessions::KeyRow>(
                    $crate::sql::sessions::KEYS,
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn retire_signing_key(
                &self,
                kid: &str,
                at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::sessions::RETIRE_KEY)
                    .bind(kid)
                    .bind(at.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use impl_sessions;
