//! Mandate's persistence behind one interface.
//!
//! The server holds an `Arc<dyn Store>` and never knows which database is behind it. Small
//! traits per aggregate ([`TenantStore`], [`GrantStore`], ...) compose into [`Store`]; the
//! SQLite backend (the embedded default) and the PostgreSQL backend (scale-out) implement all of
//! them with the same SQL text, and one conformance suite runs against both.
//!
//! The store makes no protocol decisions. It offers the atomic primitives the protocol needs:
//! consume a code exactly once, rotate a refresh token exactly once, revoke a grant together
//! with its refresh families.
//!
//! # Layout
//! - [`model`]: records that exist only in storage (scope catalog entries, sessions, keys).
//! - [`error`]: [`StoreError`], the only error the store returns.
//! - `sql`: the shared SQL implementation, instantiated by `sqlite` and `postgres`.
//! - [`group_commit`]: batches event appends so durability does not cost throughput.
//! - [`testing`]: throwaway PostgreSQL databases for tests.

pub mod error;
pub mod group_commit;
pub mod model;
mod postgres;
mod sql;
mod sqlite;
pub mod testing;

use async_trait::async_trait;
use mandate_core::client::Agent;
use mandate_core::code::AuthorizationCode;
use mandate_core::directory::{Tenant, User};
use mandate_core::event::{Event, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use std::sync::Arc;

pub use error::{StoreError, StoreResult};
pub use model::{
    CodeConsumption, EventFilter, GrantFilter, PendingAuthorization, RefreshLookup, ScopeDef,
    Session, StoredSigningKey,
};

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates the tenant or updates its name.
    async fn upsert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    async fn tenants(&self) -> StoreResult<Vec<Tenant>>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; `Conflict` if the login name is taken (login names are server-wide),
    /// `NotFound` if the tenant does not exist.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    /// Updates display name, password hash, tenant and disabled flag of the user with `user.id`
    /// (the login is kept); `NotFound` if there is no such user or tenant.
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<User>>;
    /// All users, or those of one tenant, ordered by login.
    async fn users(&self, tenant_id: Option<&str>) -> StoreResult<Vec<User>>;
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Creates the agent or replaces its registration (keyed by `client_id`).
    async fn upsert_agent(&self, agent: &Agent) -> StoreResult<()>;
    async fn agent(&self, client_id: &str) -> StoreResult<Option<Agent>>;
    /// All agents ordered by client id.
    async fn agents(&self) -> StoreResult<Vec<Agent>>;
}

#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn upsert_scope(&self, scope: &ScopeDef) -> StoreResult<()>;
    /// The scope catalog ordered by name.
    async fn scopes(&self) -> StoreResult<Vec<ScopeDef>>;
    async fn upsert_resource(&self, resource: &ResourceServer) -> StoreResult<()>;
    /// Registered resource servers ordered by identifier.
    async fn resources(&self) -> StoreResult<Vec<ResourceServer>>;
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    async fn create_grant(&self, grant: &Grant) -> StoreResult<()>;
    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>>;
    /// The newest unrevoked, unexpired grant of `user_id` to `client_id` in `tenant_id`
    /// (`user_id = None`: the agent's own service grant).
    async fn active_grant(
        &self,
        tenant_id: &str,
        user_id: Option<&str>,
        client_id: &str,
        now: Timestamp,
    ) -> StoreResult<Option<Grant>>;
    /// Replaces the scopes of an unrevoked grant; `NotFound` if it is missing or revoked.
    async fn update_grant_scopes(&self, id: &str, scopes: &ScopeSet) -> StoreResult<()>;
    /// Grants matching every filter that is set, newest first (`created_at` descending, then id).
    async fn grants(&self, filter: &GrantFilter) -> StoreResult<Vec<Grant>>;
    /// Revokes the grant and all its refresh families in one transaction. Returns whether the
    /// grant was active before (revoking twice keeps the first time and reason).
    async fn revoke_grant(&self, id: &str, now: Timestamp, reason: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Marks the code used, atomically: exactly one caller ever gets `Fresh` for a code.
    async fn consume_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeConsumption>;
    /// Records the refresh family the code's redemption created.
    async fn set_code_family(&self, code_hash: &str, family_id: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Creates a family with its first token, in one transaction.
    async fn create_family(
        &self,
        family: &RefreshFamily,
        first: &RefreshTokenRecord,
    ) -> StoreResult<()>;
    /// The token with this hash, its family, and whether its successor is still live.
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshLookup>>;
    /// Retires `old_hash` and inserts `successor` in one transaction, only if `old_hash` is
    /// still live. Returns `false` (and changes nothing) if another request rotated it first.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        successor: &RefreshTokenRecord,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Revokes one family (not its grant). Returns whether it was active before.
    async fn revoke_family(&self, family_id: &str, now: Timestamp) -> StoreResult<bool>;
}

#[async_trait]
pub trait RevokedTokenStore: Send + Sync {
    /// Records a revoked access token id until its expiry.
    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> StoreResult<()>;
    /// The session with this id hash if it has not expired at `now`.
    async fn session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    async fn create_pending(&self, pending: &PendingAuthorization) -> StoreResult<()>;
    /// The pending authorization request if it has not expired at `now`.
    async fn pending(&self, id: &str, now: Timestamp) -> StoreResult<Option<PendingAuthorization>>;
    /// Deletes it; returns whether it existed (so a request completes at most once).
    async fn take_pending(&self, id: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> StoreResult<()>;
    /// All signing keys, newest first.
    async fn signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
}

#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// Deletes authorization codes, pending authorization requests, sessions and revoked
    /// token ids whose `expires_at` is before `before`, in one transaction; returns how many
    /// rows went. None of them can matter after expiry (an expired code is refused anyway).
    async fn purge_expired(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events in one transaction, returning their sequence numbers in order.
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<i64>>;
    /// Events matching the filter, oldest first.
    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;
}

/// Everything the server persists.
#[async_trait]
pub trait Store:
    TenantStore
    + UserStore
    + AgentStore
    + CatalogStore
    + GrantStore
    + CodeStore
    + RefreshStore
    + RevokedTokenStore
    + SessionStore
    + KeyStore
    + Housekeeping
    + EventStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Cheap liveness check for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;

    /// A receiver that changes whenever any node commits events to this database, for readers
    /// that follow the log (the revocation feed). `None` where the backend cannot tell (SQLite:
    /// one node, woken in-process); readers then poll.
    async fn event_notifications(&self) -> StoreResult<Option<tokio::sync::watch::Receiver<u64>>> {
        Ok(None)
    }
}

/// Opens (creating if needed) and migrates the database at `url`: `sqlite://path` (or
/// `sqlite:path`) for the embedded backend, `postgres://...` for PostgreSQL.
pub async fn connect(url: &str) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
