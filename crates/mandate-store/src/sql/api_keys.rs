//! Scoped API keys: stored by hash, looked up by hash on every use, rotated and revoked
//! atomically with their events.
//!
//! - Lookup by hash is one probe of the unique `api_keys_hash` index; by id, one of the
//!   primary key (with the tenant as an extra condition when the caller is tenant-bound, so a
//!   key of another tenant is simply not found).
//! - Recording a use is one `UPDATE` by primary key that only writes when the recorded second
//!   moves forward, so a busy key costs at most one row write per second.
//! - Revocation is a conditional `UPDATE ... WHERE revoked_at IS NULL RETURNING`, so of two
//!   concurrent revocations exactly one sees the row and writes the event.
//! - Rotation starts with a conditional `UPDATE` of the old key (unrevoked, unexpired, not
//!   rotated before, same tenant and user as the successor) that shortens its expiry and links
//!   it to the successor; zero rows means nothing may change, and the transaction is rolled
//!   back before the reason is read. Of concurrent rotations exactly one updates the row.

use super::Conditions;
use super::events::add_detail;
use super::{opt_ts, scopes, ts};
use crate::model::{ApiKeyCursor, StoredApiKey};
use crate::{StoreError, StoreResult};
use mandate_core::api_key::{ApiKeyRecord, KeyId};
use mandate_core::event::{Action, NewEvent};
use serde_json::json;

macro_rules! select_api_keys {
    ($rest:literal) => {
        concat!(
            "SELECT id, tenant_id, user_id, name, scopes, hash, created_at, created_by, \
             expires_at, last_used_at, revoked_at, revoked_reason, revoked_by, replaces, \
             replaced_by FROM api_keys",
            $rest
        )
    };
}
pub(crate) const INSERT: &str = "INSERT INTO api_keys (id, tenant_id, user_id, name, scopes, \
     hash, created_at, created_by, expires_at, last_used_at, revoked_at, replaces) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const BY_HASH: &str = select_api_keys!(" WHERE hash = $1");
pub(crate) const BY_ID: &str = select_api_keys!(" WHERE id = $1");
pub(crate) const BY_ID_IN_TENANT: &str = select_api_keys!(" WHERE id = $1 AND tenant_id = $2");
/// One page of keys, of one tenant or all, newest first from the cursor on (the
/// `api_keys_tenant` and `api_keys_created` indexes, in this order).
pub(crate) fn page_query<'a>(
    tenant_id: Option<&'a str>,
    after: Option<&'a ApiKeyCursor>,
    limit: u32,
) -> (String, Vec<super::Bind<'a>>) {
    let mut c = Conditions::new(1);
    c.eq("tenant_id", tenant_id);
    c.older_than(after.map(|a| (a.created_at.unix(), a.id.as_str())));
    c.page(select_api_keys!(""), "created_at DESC, id DESC", limit)
}

/// How many keys are unrevoked and unexpired at `now`, counting no further than `cap`.
pub(crate) fn count_live_query(
    tenant_id: Option<&str>,
    now: i64,
    cap: u32,
) -> (String, Vec<super::Bind<'_>>) {
    let mut c = Conditions::new(1);
    c.eq("tenant_id", tenant_id);
    c.raw("revoked_at IS NULL");
    c.cmp("expires_at", ">", Some(now));
    c.capped_count("api_keys", cap)
}
pub(crate) const RECORD_USE: &str = "UPDATE api_keys SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
/// `$2` NULL: any tenant.
pub(crate) const REVOKE: &str = "UPDATE api_keys \
     SET revoked_at = $3, revoked_reason = $4, revoked_by = $5 \
     WHERE id = $1 AND tenant_id = COALESCE($2, tenant_id) AND revoked_at IS NULL \
     RETURNING tenant_id, user_id";
/// Shortens (never extends) the old key's expiry to `$5` and links it to `$4`, only if it is
/// the successor's tenant's and user's, unrevoked, unexpired at `$6` and not rotated before.
pub(crate) const RETIRE: &str = "UPDATE api_keys \
     SET expires_at = CASE WHEN expires_at < $5 THEN expires_at ELSE $5 END, replaced_by = $4 \
     WHERE id = $1 AND tenant_id = $2 AND user_id IS NOT DISTINCT FROM $3 \
     AND revoked_at IS NULL AND replaced_by IS NULL AND expires_at > $6 \
     RETURNING expires_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    tenant_id: String,
    user_id: Option<String>,
    name: String,
    scopes: String,
    hash: String,
    created_at: i64,
    created_by: Option<String>,
    expires_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    revoked_reason: Option<String>,
    revoked_by: Option<String>,
    replaces: Option<String>,
    replaced_by: Option<String>,
}

fn key_id(stored: &str) -> StoreResult<KeyId> {
    KeyId::parse(stored).ok_or(StoreError::Corrupt("API key id"))
}

impl TryFrom<ApiKeyRow> for StoredApiKey {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> StoreResult<Self> {
        Ok(StoredApiKey {
            record: ApiKeyRecord {
                id: key_id(&r.id)?,
                tenant_id: r.tenant_id,
                user_id: r.user_id,
                name: r.name,
                scopes: scopes(&r.scopes, "API key scopes")?,
                hash: r.hash,
                created_at: ts(r.created_at),
                expires_at: ts(r.expires_at),
                revoked_at: opt_ts(r.revoked_at),
                last_used_at: opt_ts(r.last_used_at),
                replaces: r.replaces.as_deref().map(key_id).transpose()?,
            },
            created_by: r.created_by,
            revoked_reason: r.revoked_reason,
            revoked_by: r.revoked_by,
            replaced_by: r.replaced_by.as_deref().map(key_id).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RevokedRow {
    pub(crate) tenant_id: String,
    pub(crate) user_id: Option<String>,
}

/// Sets the fields of a key event that describe the key.
pub(crate) fn describe(event: &mut NewEvent, action: Action, key: &ApiKeyRecord) {
    event.action = action;
    event.tenant_id = Some(key.tenant_id.clone());
    event.user_id = key.user_id.clone();
    event.client_id = None;
    event.grant_id = Some(key.id.as_str().to_owned());
    event.scopes = Some(key.scopes.to_string());
}

/// The `api_key.revoked` event's fields.
pub(crate) fn describe_revocation(event: &mut NewEvent, id: &KeyId, row: RevokedRow, reason: &str) {
    event.action = Action::ApiKeyRevoked;
    event.tenant_id = Some(row.tenant_id);
    event.user_id = row.user_id;
    event.client_id = None;
    event.grant_id = Some(id.as_str().to_owned());
    event.reason = Some(reason.to_owned());
}

/// The `api_key.rotated` event's fields: `grant_id` is the old key, `detail` names the
/// successor and the old key's new expiry.
pub(crate) fn describe_rotation(
    event: &mut NewEvent,
    old: &KeyId,
    successor: &ApiKeyRecord,
    old_expires_at: i64,
) {
    describe(event, Action::ApiKeyRotated, successor);
    event.grant_id = Some(old.as_str().to_owned());
    add_detail(
        event,
        [
            ("successor", json!(successor.id.as_str())),
            ("predecessor_expires_at", json!(old_expires_at)),
        ],
    );
}

macro_rules! impl_api_keys {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Inserts a key row inside `tx`; `replaces` overrides the record's field.
            async fn insert_api_key_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                key: &::mandate_core::api_key::ApiKeyRecord,
                created_by: Option<&str>,
                replaces: Option<&str>,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::api_keys::INSERT)
                    .bind(key.id.as_str())
                    .bind(&key.tenant_id)
                    .bind(&key.user_id)
                    .bind(&key.name)
                    .bind(key.scopes.to_string())
                    .bind(&key.hash)
                    .bind(key.created_at.unix())
                    .bind(created_by)
                    .bind(key.expires_at.unix())
                    .bind(key.last_used_at.map(|t| t.unix()))
                    .bind(key.revoked_at.map(|t| t.unix()))
                    .bind(replaces)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::sql::write_error("API key", "tenant or user"))?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::ApiKeys for $store {
            async fn insert_api_key(
                &self,
                key: &::mandate_core::api_key::ApiKeyRecord,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_api_key_in(
                    &mut tx,
                    key,
                    event.actor_id.as_deref(),
                    key.replaces.as_ref().map(|k| k.as_str()),
                )
                .await?;
                $crate::sql::api_keys::describe(
                    &mut event,
                    ::mandate_core::event::Action::ApiKeyCreated,
                    key,
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(())
            }

            async fn api_key_by_hash(
                &self,
                hash: &str,
            ) -> $crate::StoreResult<Option<$crate::model::StoredApiKey>> {
                let row = ::sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(
                    $crate::sql::api_keys::BY_HASH,
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn api_key(
                &self,
                id: &::mandate_core::api_key::KeyId,
                tenant_id: Option<&str>,
            ) -> $crate::StoreResult<Option<$crate::model::StoredApiKey>> {
                let query = match tenant_id {
                    Some(tenant_id) => ::sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(
                        $crate::sql::api_keys::BY_ID_IN_TENANT,
                    )
                    .bind(id.as_str())
                    .bind(tenant_id),
                    None => ::sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(
                        $crate::sql::api_keys::BY_ID,
                    )
                    .bind(id.as_str()),
                };
                let row = query.fetch_optional(&self.pool).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn api_keys(
                &self,
                tenant_id: Option<&str>,
                after: Option<&$crate::model::ApiKeyCursor>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::model::StoredApiKey>> {
                let (sql, binds) = $crate::sql::api_keys::page_query(tenant_id, after, limit);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(&sql),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn count_live_api_keys(
                &self,
                tenant_id: Option<&str>,
                now: ::mandate_core::time::Timestamp,
                cap: u32,
            ) -> $crate::StoreResult<u32> {
                let (sql, binds) =
                    $crate::sql::api_keys::count_live_query(tenant_id, now.unix(), cap);
                $crate::sql::capped_count!(&self.pool, &sql, binds)
            }

            async fn record_api_key_use(
                &self,
                id: &::mandate_core::api_key::KeyId,
                at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::api_keys::RECORD_USE)
                    .bind(id.as_str())
                    .bind(at.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn revoke_api_key(
                &self,
                id: &::mandate_core::api_key::KeyId,
                tenant_id: Option<&str>,
                reason: &str,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let revoked = ::sqlx::query_as::<_, $crate::sql::api_keys::RevokedRow>(
                    $crate::sql::api_keys::REVOKE,
                )
                .bind(id.as_str())
                .bind(tenant_id)
                .bind(event.at.unix())
                .bind(reason)
                .bind(&event.actor_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = revoked else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                $crate::sql::api_keys::describe_revocation(&mut event, id, row, reason);
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(true)
            }

            async fn rotate_api_key(
                &self,
                old: &::mandate_core::api_key::KeyId,
                successor: &::mandate_core::api_key::ApiKeyRecord,
                predecessor_expires_at: ::mandate_core::time::Timestamp,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<$crate::model::ApiKeyRotation> {
                use $crate::model::ApiKeyRotation;
                let mut tx = self.pool.begin().await?;
                let retired = ::sqlx::query_scalar::<_, i64>($crate::sql::api_keys::RETIRE)
                    .bind(old.as_str())
                    .bind(&successor.tenant_id)
                    .bind(&successor.user_id)
                    .bind(successor.id.as_str())
                    .bind(predecessor_expires_at.unix())
                    .bind(event.at.unix())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(old_expires_at) = retired else {
                    tx.rollback().await?;
                    let current = ::sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(
                        $crate::sql::api_keys::BY_ID_IN_TENANT,
                    )
                    .bind(old.as_str())
                    .bind(&successor.tenant_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map($crate::model::StoredApiKey::try_from)
                    .transpose()?;
                    return Ok(match current {
                        Some(k) if k.record.user_id != successor.user_id => ApiKeyRotation::Unknown,
                        Some(k) if k.record.revoked_at.is_some() => ApiKeyRotation::Revoked,
                        Some(k) if k.replaced_by.is_some() => ApiKeyRotation::AlreadyRotated,
                        Some(k) if k.record.expires_at <= event.at => ApiKeyRotation::Expired,
                        // Changed between the two statements; report what was true at first.
                        Some(_) => ApiKeyRotation::AlreadyRotated,
                        None => ApiKeyRotation::Unknown,
                    });
                };
                Self::insert_api_key_in(
                    &mut tx,
                    successor,
                    event.actor_id.as_deref(),
                    Some(old.as_str()),
                )
                .await?;
                $crate::sql::api_keys::describe_rotation(
                    &mut event,
                    old,
                    successor,
                    old_expires_at,
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(ApiKeyRotation::Rotated)
            }
        }
    };
}
pub(crate) use impl_api_keys;
