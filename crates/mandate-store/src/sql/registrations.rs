//! Clients that introduced themselves: RFC 7591 dynamic registrations and MCP client ID
//! metadata documents.
//!
//! Such a client is an ordinary `agents` row (so every other path, from the authorization
//! endpoint to introspection, treats it like any agent) plus a `client_registrations` row with
//! what only these clients have: the metadata as registered (core's `ClientMetadata` as JSON
//! text), how it came (`dynamic` or `metadata_document`), the hash of its RFC 7592
//! registration access token (unique, indexed), and the dates that decide abandonment.
//!
//! - Registration inserts both rows and the event in one transaction; a taken client id or
//!   token hash fails the whole of it.
//! - An update replaces the metadata and the agent fields the client owns, never the ones an
//!   operator owns (disabled, tenant, lifetimes, resources): a client cannot re-enable itself.
//! - Deletion removes both rows, revokes every grant of the agent (and their refresh families)
//!   and writes one `client.deleted` event, which the revocation feed publishes as an agent
//!   revocation. Only registered clients can be deleted this way.
//! - Abandoned clients (never used, past `expires_at`) are purged by housekeeping: the
//!   registration rows are deleted first (`DELETE ... RETURNING client_id`, a write, so
//!   SQLite takes its write lock at once), then each one's grants are revoked and its agent
//!   deleted, by bound client id. Comparing values rather than joining `client_registrations`
//!   with `grants` keeps the statements free of cross-collation comparisons on PostgreSQL.

use super::{opt_ts, ts};
use crate::model::{ClientRegistration, RegistrationOrigin};
use crate::{StoreError, StoreResult};
use mandate_core::registration::ClientMetadata;

pub(crate) const INSERT_AGENT: &str = "INSERT INTO agents (client_id, name, kind, secret_hash, \
     redirect_uris, grant_types, max_scopes, tenant_id, access_token_ttl, refresh_token_ttl, \
     default_resource, allowed_resources, disabled) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(crate) const INSERT: &str = "INSERT INTO client_registrations (client_id, origin, metadata, \
     registration_token_hash, registered_at, first_used_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
macro_rules! select_registered {
    ($rest:literal) => {
        concat!(
            "SELECT a.client_id, a.name, a.kind, a.secret_hash, a.redirect_uris, a.grant_types, \
             a.max_scopes, a.tenant_id, a.access_token_ttl, a.refresh_token_ttl, \
             a.default_resource, a.allowed_resources, a.disabled, r.origin, r.metadata, \
             r.registration_token_hash, r.registered_at, r.first_used_at, r.expires_at \
             FROM client_registrations r JOIN agents a ON a.client_id = r.client_id",
            $rest
        )
    };
}
pub(crate) const BY_CLIENT_ID: &str = select_registered!(" WHERE r.client_id = $1");
pub(crate) const BY_TOKEN_HASH: &str = select_registered!(" WHERE r.registration_token_hash = $1");
pub(crate) const UPDATE_METADATA: &str =
    "UPDATE client_registrations SET metadata = $2 WHERE client_id = $1";
/// Only the fields the client owns.
pub(crate) const UPDATE_AGENT: &str = "UPDATE agents SET name = $2, kind = $3, secret_hash = $4, \
     redirect_uris = $5, grant_types = $6, max_scopes = $7 WHERE client_id = $1";
pub(crate) const DELETE: &str = "DELETE FROM client_registrations WHERE client_id = $1";
pub(crate) const DELETE_AGENT: &str = "DELETE FROM agents WHERE client_id = $1";
pub(crate) const MARK_FIRST_USE: &str = "UPDATE client_registrations SET first_used_at = $2 \
     WHERE client_id = $1 AND first_used_at IS NULL";
/// Uses the partial index on unused registrations' `expires_at`.
pub(crate) const TAKE_ABANDONED: &str = "DELETE FROM client_registrations \
     WHERE first_used_at IS NULL AND expires_at < $1 RETURNING client_id";
/// The revocation reason of grants held by an abandoned client.
pub(crate) const ABANDONED_REASON: &str = "client registration abandoned";

/// The metadata as stored: JSON text.
pub(crate) fn metadata_json(metadata: &ClientMetadata) -> StoreResult<String> {
    serde_json::to_string(metadata)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

#[derive(sqlx::FromRow)]
pub(crate) struct RegisteredRow {
    #[sqlx(flatten)]
    agent: super::directory::AgentRow,
    origin: String,
    metadata: String,
    registration_token_hash: Option<String>,
    registered_at: i64,
    first_used_at: Option<i64>,
    expires_at: Option<i64>,
}

impl TryFrom<RegisteredRow> for crate::model::RegisteredClient {
    type Error = StoreError;
    fn try_from(r: RegisteredRow) -> StoreResult<Self> {
        let agent: mandate_core::client::Agent = r.agent.try_into()?;
        Ok(Self {
            registration: ClientRegistration {
                client_id: agent.client_id.clone(),
                origin: RegistrationOrigin::parse(&r.origin)
                    .ok_or(StoreError::Corrupt("registration origin"))?,
                metadata: serde_json::from_str(&r.metadata)
                    .map_err(|_| StoreError::Corrupt("registration metadata"))?,
                registration_token_hash: r.registration_token_hash,
                registered_at: ts(r.registered_at),
                first_used_at: opt_ts(r.first_used_at),
                expires_at: opt_ts(r.expires_at),
            },
            agent,
        })
    }
}

/// Sets the fields of a registration event that describe the client.
pub(crate) fn describe(
    event: &mut mandate_core::event::NewEvent,
    action: mandate_core::event::Action,
    agent: &mandate_core::client::Agent,
    origin: Option<RegistrationOrigin>,
) {
    event.action = action;
    event.client_id = Some(agent.client_id.clone());
    event.tenant_id = agent.tenant_id.clone();
    event.user_id = None;
    event.grant_id = None;
    event.scopes = Some(agent.max_scopes.to_string());
    if let Some(origin) = origin {
        super::events::add_detail(
            event,
            [("origin", serde_json::Value::from(origin.as_str()))],
        );
    }
}

macro_rules! impl_registrations {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Purges abandoned registrations inside `tx` (see the module docs); returns how
            /// many clients went.
            pub(crate) async fn purge_abandoned_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<u64> {
                let abandoned =
                    ::sqlx::query_scalar::<_, String>($crate::sql::registrations::TAKE_ABANDONED)
                        .bind(now.unix())
                        .fetch_all(&mut **tx)
                        .await?;
                for client_id in &abandoned {
                    let target = $crate::model::BulkTarget::Agent {
                        client_id: client_id.clone(),
                    };
                    Self::revoke_target_in(
                        tx,
                        &target,
                        now,
                        $crate::sql::registrations::ABANDONED_REASON,
                        None,
                    )
                    .await?;
                    ::sqlx::query($crate::sql::registrations::DELETE_AGENT)
                        .bind(client_id)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(u64::try_from(abandoned.len()).unwrap_or(u64::MAX))
            }
        }

        #[::async_trait::async_trait]
        impl $crate::Registrations for $store {
            async fn register_client(
                &self,
                agent: &::mandate_core::client::Agent,
                registration: &$crate::model::ClientRegistration,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<()> {
                let metadata = $crate::sql::registrations::metadata_json(&registration.metadata)?;
                let mut tx = self.pool.begin().await?;
                $crate::sql::directory::bind_agent!(
                    ::sqlx::query($crate::sql::registrations::INSERT_AGENT),
                    agent
                )
                .execute(&mut *tx)
                .await
                .map_err($crate::sql::write_error("client", "client"))?;
                ::sqlx::query($crate::sql::registrations::INSERT)
                    .bind(&registration.client_id)
                    .bind(registration.origin.as_str())
                    .bind(&metadata)
                    .bind(&registration.registration_token_hash)
                    .bind(registration.registered_at.unix())
                    .bind(registration.first_used_at.map(|t| t.unix()))
                    .bind(registration.expires_at.map(|t| t.unix()))
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::write_error("client registration", "agent"))?;
                $crate::sql::registrations::describe(
                    &mut event,
                    ::mandate_core::event::Action::ClientRegistered,
                    agent,
                    Some(registration.origin),
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(())
            }

            async fn registered_client(
                &self,
                client_id: &str,
            ) -> $crate::StoreResult<Option<$crate::model::RegisteredClient>> {
                let row = ::sqlx::query_as::<_, $crate::sql::registrations::RegisteredRow>(
                    $crate::sql::registrations::BY_CLIENT_ID,
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn registered_client_by_token_hash(
                &self,
                token_hash: &str,
            ) -> $crate::StoreResult<Option<$crate::model::RegisteredClient>> {
                let row = ::sqlx::query_as::<_, $crate::sql::registrations::RegisteredRow>(
                    $crate::sql::registrations::BY_TOKEN_HASH,
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn update_registration(
                &self,
                agent: &::mandate_core::client::Agent,
                metadata: &::mandate_core::registration::ClientMetadata,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<()> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                let metadata = $crate::sql::registrations::metadata_json(metadata)?;
                let c = $crate::sql::directory::AgentColumns::of(agent);
                let mut tx = self.pool.begin().await?;
                let found = ::sqlx::query($crate::sql::registrations::UPDATE_METADATA)
                    .bind(&agent.client_id)
                    .bind(&metadata)
                    .execute(&mut *tx)
                    .await?;
                if found.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err($crate::StoreError::NotFound("client registration"));
                }
                ::sqlx::query($crate::sql::registrations::UPDATE_AGENT)
                    .bind(&agent.client_id)
                    .bind(&agent.name)
                    .bind(agent.kind.as_str())
                    .bind(&agent.secret_hash)
                    .bind(&c.redirect_uris)
                    .bind(&c.grant_types)
                    .bind(&c.max_scopes)
                    .execute(&mut *tx)
                    .await?;
                $crate::sql::registrations::describe(
                    &mut event,
                    ::mandate_core::event::Action::ClientUpdated,
                    agent,
                    None,
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(())
            }

            async fn delete_registration(
                &self,
                client_id: &str,
                reason: &str,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<bool> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                let mut tx = self.pool.begin().await?;
                let found = ::sqlx::query($crate::sql::registrations::DELETE)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                if found.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                ::sqlx::query($crate::sql::registrations::DELETE_AGENT)
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?;
                let target = $crate::model::BulkTarget::Agent {
                    client_id: client_id.to_owned(),
                };
                let counts = Self::revoke_target_in(
                    &mut tx,
                    &target,
                    event.at,
                    reason,
                    event.actor_id.as_deref(),
                )
                .await?;
                $crate::sql::bulk::describe(
                    &mut event,
                    ::mandate_core::event::Action::ClientDeleted,
                    &target,
                    None,
                    reason,
                    counts,
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(true)
            }

            async fn mark_client_first_use(
                &self,
                client_id: &str,
                at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                let done = ::sqlx::query($crate::sql::registrations::MARK_FIRST_USE)
                    .bind(client_id)
                    .bind(at.unix())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn purge_abandoned_registrations(
                &self,
                now: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<u64> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                let mut tx = self.pool.begin().await?;
                let purged = Self::purge_abandoned_in(&mut tx, now).await?;
                tx.commit().await?;
                Ok(purged)
            }
        }
    };
}
pub(crate) use impl_registrations;
