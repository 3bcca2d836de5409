//! Mandate's persistence behind one interface.
//!
//! The server holds an `Arc<dyn Store>` and never knows which database is behind it. Small
//! traits per aggregate ([`TenantStore`], [`GrantStore`], ...) compose into [`Store`]; the
//! SQLite backend (the embedded default) and the PostgreSQL backend (scale-out) implement all of
//! them with the same SQL text, and one conformance suite runs against both.
//!
//! The store makes no protocol decisions. It offers the atomic primitives the protocol needs:
//! consume a code exactly once, rotate a refresh token exactly once, revoke a grant together
//! with its refresh families, remember a client assertion's `jti` exactly once.
//!
//! # Changes that carry their own event
//! Administrative changes whose record must never disagree with the database (creating,
//! rotating and revoking API keys; registering, updating and deleting clients; bulk
//! revocation) append their event in the same transaction as the rows they change, instead of
//! through the [`group_commit`] writer: either both are durable or neither is, so the
//! revocation feed (which is derived from the event log) can neither miss a revocation nor
//! announce one that did not happen. The caller prepares the event with what only it knows
//! (actor, IP, user agent, extra detail); the store sets the fields that describe the change
//! (action, tenant, user, client, grant, reason, and counts in `detail`), so they cannot be
//! wrong. The change is dated `event.at`, and the event's `actor_id` is stored as the row's
//! `created_by` / `revoked_by`.
//!
//! # Layout
//! - [`model`]: records that exist only in storage (scope catalog entries, sessions, keys).
//! - [`error`]: [`StoreError`], the only error the store returns.
//! - `sql`: the shared SQL implementation, instantiated by `sqlite` and `postgres`.
//! - `sqlite_inline_reads`: SQLite point reads on the asking thread (introspection, and the
//!   refresh and code lookups).
//! - `sqlite` and `postgres` also bind bulk loads ([`BulkLoad`]) their own fastest way.
//! - [`group_commit`]: batches event appends so durability does not cost throughput.
//! - [`batch`]: the state changes (refresh rotation, new refresh family) that ride a batch.
//! - [`testing`]: throwaway PostgreSQL databases for tests.

pub mod audit;
pub mod batch;
pub mod error;
pub mod group_commit;
pub mod log_limit;
pub mod model;
mod postgres;
mod postgres_connection_loss;
mod postgres_point_reads;
mod postgres_token_state_cache;
mod sql;
mod sqlite;
mod sqlite_batch_writer;
mod sqlite_inline_reads;
pub mod testing;

use async_trait::async_trait;
use mandate_core::admin::{Principal, Role, RoleAssignment};
use mandate_core::api_key::{ApiKeyRecord, KeyId};
use mandate_core::client::Agent;
use mandate_core::code::AuthorizationCode;
use mandate_core::directory::{Tenant, User};
use mandate_core::event::{Event, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::refresh::{LiveToken, RefreshFamily, RefreshTokenRecord};
use mandate_core::registration::ClientMetadata;
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use std::sync::Arc;

pub use error::{StoreError, StoreResult};
pub use model::{
    ApiKeyCursor, ApiKeyRotation, AuditCheckpoint, BulkRevoked, BulkTarget, ChainRow,
    ClientRegistration, CodeConsumption, CodeLookup, EventFilter, FamilyLookup, GrantCursor,
    GrantFilter, LoadBatch, PendingAuthorization, PurgedEvents, RefreshLookup, RegisteredClient,
    RegistrationOrigin, ScopeDef, Session, StoredApiKey, StoredSigningKey,
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
    /// Up to `limit` users, or of one tenant, ordered by login, after the login `after` (the
    /// previous page's last): one index range scan however many users there are.
    async fn users(
        &self,
        tenant_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<User>>;
    /// The users with these ids (those that exist, in no particular order): the logins to show
    /// beside one page of grants or events.
    async fn users_by_ids(&self, ids: &[String]) -> StoreResult<Vec<User>>;
    /// How many users there are, or in one tenant, counting no further than `cap` (a count
    /// that reads at most `cap` index entries; `cap` means "at least `cap`").
    async fn count_users(&self, tenant_id: Option<&str>, cap: u32) -> StoreResult<u32>;
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Creates the agent or replaces its registration (keyed by `client_id`).
    async fn upsert_agent(&self, agent: &Agent) -> StoreResult<()>;
    async fn agent(&self, client_id: &str) -> StoreResult<Option<Agent>>;
    /// Up to `limit` agents ordered by client id, after the client id `after`: all of them, or
    /// those owned by one tenant.
    async fn agents(
        &self,
        tenant_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Agent>>;
    /// How many agents [`AgentStore::agents`] would list, counting no further than `cap`.
    async fn count_agents(&self, tenant_id: Option<&str>, cap: u32) -> StoreResult<u32>;
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
    /// Stores a new grant. A user (or the agent itself, `user_id = None`) holds at most one
    /// live, non-expiring grant per agent and tenant: a second is a `Conflict`, so two nodes
    /// racing to create it cannot both win.
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
    /// Which of `ids` are unrevoked and unexpired at `now`, in no particular order (the
    /// group-commit writer's check before it writes a batch of tokens' events:
    /// [`group_commit::EventWriter::append_under_grant`]).
    async fn grants_in_force(&self, ids: &[String], now: Timestamp) -> StoreResult<Vec<String>>;
    /// Replaces the scopes of an unrevoked grant if they are still `from` (compare and set, so
    /// two consents at once cannot lose one's answer). `false`: the grant is missing, revoked,
    /// or its scopes changed since they were read; read it again.
    async fn update_grant_scopes(
        &self,
        id: &str,
        from: &ScopeSet,
        to: &ScopeSet,
    ) -> StoreResult<bool>;
    /// Up to `limit` grants matching every filter that is set, newest first (`created_at`
    /// descending, then id descending), after `after` (the previous page's last grant).
    async fn grants(
        &self,
        filter: &GrantFilter,
        after: Option<&GrantCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Grant>>;
    /// How many grants match the filter, counting no further than `cap`.
    async fn count_grants(&self, filter: &GrantFilter, cap: u32) -> StoreResult<u32>;
    /// Revokes the grant, and with it all its refresh families (each family's lookup reads its
    /// grant: [`model::FamilyLookup::revoked_at`]). Returns whether the grant was active before
    /// (revoking twice keeps the first time and reason).
    async fn revoke_grant(&self, id: &str, now: Timestamp, reason: &str) -> StoreResult<bool>;
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Marks the code used, atomically: exactly one caller ever gets `Fresh` for a code.
    async fn consume_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeConsumption>;
    /// The code with this hash, whether it was used, its grant and its user's standing, read
    /// without consuming it; `None` if there is no such code.
    async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<CodeLookup>>;
    /// Records the refresh family the code's redemption created.
    async fn set_code_family(&self, code_hash: &str, family_id: &str) -> StoreResult<()>;
}

#[async_trait]
pub trait RefreshStore: Send + Sync {
    /// Creates a family with its live (first) token, `family.live`.
    async fn create_family(&self, family: &RefreshFamily) -> StoreResult<()>;
    /// The family with this id, its grant and its parties' standing.
    async fn refresh_family(&self, family_id: &str) -> StoreResult<Option<FamilyLookup>>;
    /// The token stored as a row of its own with this hash (minted before families held their
    /// live token), its family, and whether its successor is still live.
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshLookup>>;
    /// Retires `retiring` and makes `successor` the live token of `family_id`, in one
    /// transaction, only if `retiring` is still live. Returns `false` (and changes nothing) if
    /// another request rotated it first.
    async fn rotate_refresh_token(
        &self,
        family_id: &str,
        retiring: &batch::Retiring,
        successor: &LiveToken,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Revokes one family (not its grant). Returns whether it was active before.
    async fn revoke_family(&self, family_id: &str, now: Timestamp) -> StoreResult<bool>;
    /// Stores a token as a row of its own, the form before families held their live token,
    /// with the hash of the successor a rotation named (`successor_hash`, for a used token).
    /// Nothing mints these any more; this lets the handling of the ones that exist (lookup,
    /// reuse, the rotation that moves their family to a live token, purging) be tested on
    /// every backend.
    async fn insert_legacy_refresh_token(
        &self,
        token: &RefreshTokenRecord,
        successor_hash: Option<&str>,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait RevokedTokenStore: Send + Sync {
    /// Records a revoked access token id until its expiry.
    async fn revoke_jti(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool>;
}

/// The revocation state of a signed access token, in one statement (the introspection hot
/// path).
#[async_trait]
pub trait TokenStateStore: Send + Sync {
    /// Whether an access token with this `jti`, grant and client may be used at `now`: the
    /// `jti` is not revoked ([`RevokedTokenStore::is_jti_revoked`]), the grant exists and is
    /// active ([`Grant::is_active`]), the agent `client_id` exists and is enabled, and the
    /// grant's user, if it has one, exists and is enabled. Answers for grant rows only: an API
    /// key id is no grant here (`false`).
    async fn access_token_usable(
        &self,
        jti: &str,
        grant_id: &str,
        client_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
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
    /// Withdraws a key (sets `retired_at`) unless it was withdrawn before; returns whether
    /// this call did it.
    async fn retire_signing_key(&self, kid: &str, at: Timestamp) -> StoreResult<bool>;
}

#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// Deletes authorization codes, pending authorization requests, sessions, revoked token
    /// ids and remembered client assertion ids whose `expires_at` is before `before`, and
    /// purges abandoned client registrations as
    /// [`Registrations::purge_abandoned_registrations`] does, in one transaction; returns how
    /// many rows (registrations counted once each) went. None of them can matter after expiry
    /// (an expired code is refused anyway).
    async fn purge_expired(&self, before: Timestamp) -> StoreResult<u64>;

    /// Deletes refresh tokens whose `expires_at` is before `expired_before`, used or not, a
    /// page at a time; returns how many went. Their families stay. The server passes its
    /// retention period before now: until then a used token presented again is still reuse.
    async fn purge_refresh_tokens(&self, expired_before: Timestamp) -> StoreResult<u64>;
}

/// Scoped API keys (`mk_...`), stored by hash.
#[async_trait]
pub trait ApiKeys: Send + Sync {
    /// Stores a new key and appends its `api_key.created` event, in one transaction.
    /// `Conflict` if the id or hash exists, `NotFound` if the tenant or user does not.
    async fn insert_api_key(&self, key: &ApiKeyRecord, event: NewEvent) -> StoreResult<()>;
    /// The key with this hash: the authentication hot path, one unique-index lookup. Revoked
    /// and expired keys are returned too ([`ApiKeyRecord::check_usable`] decides).
    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<StoredApiKey>>;
    /// The key with this id; with `tenant_id` set, only if it belongs to that tenant.
    async fn api_key(
        &self,
        id: &KeyId,
        tenant_id: Option<&str>,
    ) -> StoreResult<Option<StoredApiKey>>;
    /// Up to `limit` keys (revoked and expired ones included), of one tenant or all, newest
    /// first (`created_at` descending, then id descending), after `after` (the previous page's
    /// last key, see [`StoredApiKey::cursor`]).
    async fn api_keys(
        &self,
        tenant_id: Option<&str>,
        after: Option<&ApiKeyCursor>,
        limit: u32,
    ) -> StoreResult<Vec<StoredApiKey>>;
    /// How many keys, of one tenant or all, are unrevoked and unexpired at `now`, counting no
    /// further than `cap`.
    async fn count_live_api_keys(
        &self,
        tenant_id: Option<&str>,
        now: Timestamp,
        cap: u32,
    ) -> StoreResult<u32>;
    /// Records a use of the key at `at`: one `UPDATE` by primary key, which writes nothing if
    /// a use in the same or a later second is already recorded.
    async fn record_api_key_use(&self, id: &KeyId, at: Timestamp) -> StoreResult<()>;
    /// Revokes the key (with `tenant_id` set, only if it belongs to that tenant) at
    /// `event.at`, and appends its `api_key.revoked` event (`grant_id`: the key id, which the
    /// revocation feed publishes as a grant revocation), in one transaction. Returns whether
    /// the key was unrevoked before; revoking twice keeps the first time and reason and writes
    /// no second event.
    async fn revoke_api_key(
        &self,
        id: &KeyId,
        tenant_id: Option<&str>,
        reason: &str,
        event: NewEvent,
    ) -> StoreResult<bool>;
    /// Rotates `old` at `event.at`, in one transaction: stores `successor` (its `replaces`
    /// set to `old`), lowers the old key's expiry to `predecessor_expires_at` (never raises
    /// it), links the old key to the successor, and appends the `api_key.rotated` event.
    /// Only a key of the successor's tenant and user that is unrevoked, unexpired at
    /// `event.at` and not rotated before can be rotated; otherwise nothing changes and the
    /// outcome says why. Of concurrent rotations of one key exactly one succeeds. `Conflict`
    /// if the successor's id or hash exists.
    async fn rotate_api_key(
        &self,
        old: &KeyId,
        successor: &ApiKeyRecord,
        predecessor_expires_at: Timestamp,
        event: NewEvent,
    ) -> StoreResult<ApiKeyRotation>;
}

/// Clients that registered themselves (RFC 7591/7592) or were created from an MCP client ID
/// metadata document. Each is an [`Agent`] row plus a registration row.
#[async_trait]
pub trait Registrations: Send + Sync {
    /// Creates the agent and its registration and appends the `client.registered` event, in
    /// one transaction. `Conflict` if the client id (as any agent) or the registration token
    /// hash exists; then nothing is stored.
    async fn register_client(
        &self,
        agent: &Agent,
        registration: &ClientRegistration,
        event: NewEvent,
    ) -> StoreResult<()>;
    async fn registered_client(&self, client_id: &str) -> StoreResult<Option<RegisteredClient>>;
    /// The client whose registration access token has this hash (RFC 7592 requests).
    async fn registered_client_by_token_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<RegisteredClient>>;
    /// Replaces the registration's metadata and the agent fields the client owns (name, kind,
    /// secret hash, redirect URIs, grant types, maximum scopes) from `agent`, keyed by
    /// `agent.client_id`, and appends the `client.updated` event, in one transaction. Fields
    /// an operator owns (disabled, tenant, token lifetimes, resources) are kept. `NotFound` if
    /// the client is not registered.
    async fn update_registration(
        &self,
        agent: &Agent,
        metadata: &ClientMetadata,
        event: NewEvent,
    ) -> StoreResult<()>;
    /// Deletes a registered client (its registration and its agent), revokes all its grants
    /// and their refresh families at `event.at` with `reason`, and appends the
    /// `client.deleted` event (published on the revocation feed as an agent revocation), in
    /// one transaction. Returns `false` and changes nothing if the client is not a registered
    /// one: agents from configuration are never deleted here.
    async fn delete_registration(
        &self,
        client_id: &str,
        reason: &str,
        event: NewEvent,
    ) -> StoreResult<bool>;
    /// Records that the client completed its first flow. Returns whether this call recorded
    /// it (`false`: recorded before, or not a registered client). Idempotent; a write only
    /// the first time.
    async fn mark_client_first_use(&self, client_id: &str, at: Timestamp) -> StoreResult<bool>;
    /// Deletes registered clients never used whose `expires_at` is before `now` (registration
    /// and agent), revoking any grants they hold (no token was ever issued for them, so no
    /// event is written). Returns how many clients went.
    async fn purge_abandoned_registrations(&self, now: Timestamp) -> StoreResult<u64>;
}

/// Replay protection for `private_key_jwt` client assertions (RFC 7523 `jti`).
#[async_trait]
pub trait AssertionReplay: Send + Sync {
    /// Remembers `jti` for `client_id` until `until`. Returns `true` the first time, `false`
    /// if it is remembered already (a replay): exactly one of any number of concurrent calls
    /// gets `true`. Housekeeping forgets it once `until` has passed.
    async fn remember_jti(&self, client_id: &str, jti: &str, until: Timestamp)
    -> StoreResult<bool>;
}

/// Revoking everything of one user, tenant, agent, or agent within a tenant at once.
#[async_trait]
pub trait BulkRevocation: Send + Sync {
    /// Revokes, in one transaction at `event.at` with `reason`: every unrevoked grant of the
    /// target, the refresh families of every grant of the target (as
    /// [`GrantStore::revoke_grant`] does), for a user or tenant target also its unrevoked API
    /// keys, and appends ONE event whose revocation feed entry covers all of it
    /// (`user.grants_revoked`, `tenant.grants_revoked`, `agent.grants_revoked`,
    /// `agent.tenant_grants_revoked`; counts in `detail`). Nothing outside the target is
    /// touched. Revoking again revokes only what appeared since and keeps the first time and
    /// reason of the rest; the event is written every time, as the record of the request.
    async fn revoke_in_bulk(
        &self,
        target: &BulkTarget,
        reason: &str,
        event: NewEvent,
    ) -> StoreResult<BulkRevoked>;
}

/// Loading many grants at once (`mandate bulk-load`): benchmark fixtures and imports.
#[async_trait]
pub trait BulkLoad: Send + Sync {
    /// Inserts every row of `batch` in one transaction, with multi-row statements (a few per
    /// table, not one per row): grants first, then families (with their first tokens), and codes.
    /// `Conflict` if an id or hash exists; then nothing is stored. Rows are stored exactly as [`GrantStore::create_grant`],
    /// [`RefreshStore::create_family`] and [`CodeStore::insert_code`] store them.
    async fn load_batch(&self, batch: &LoadBatch) -> StoreResult<()>;
    /// Brings the planner's statistics up to date after loading (PostgreSQL: `ANALYZE` of the
    /// loaded tables). Until autovacuum gets to it, a table that just grew by a million rows
    /// looks as small as before, and the planner may sort every grant of a tenant to show one
    /// page of them instead of reading its index in order (measured: 4.7 s instead of 25 ms
    /// per page at 1 million grants; BENCHMARKS.md). SQLite keeps no statistics unless told
    /// to, none are kept anywhere in Mandate, and its planner picks these indexes by their
    /// shape, so there is nothing to refresh there.
    async fn refresh_statistics(&self) -> StoreResult<()>;
}

/// Admin API roles ([`mandate_core::admin`]).
#[async_trait]
pub trait AdminRoles: Send + Sync {
    /// Gives `assignment.principal` its role, replacing any previous one; `event` is appended
    /// in the same transaction. `NotFound("tenant")` if a tenant admin's tenant does not exist.
    async fn set_admin_role(&self, assignment: &RoleAssignment, event: NewEvent)
    -> StoreResult<()>;
    /// Takes the principal's role away; `false` (and no event) if it had none.
    async fn remove_admin_role(&self, principal: &Principal, event: NewEvent) -> StoreResult<bool>;
    async fn admin_role(&self, principal: &Principal) -> StoreResult<Option<Role>>;
    /// Every assignment, by principal.
    async fn admin_roles(&self) -> StoreResult<Vec<RoleAssignment>>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events in one transaction, returning their sequence numbers in order.
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<Vec<i64>>;
    /// A group-commit batch with state changes ([`batch`]): applies each entry's change,
    /// then appends the events of the entries whose change applied (or that have none), all
    /// in one transaction. Returns what became of each entry, in input order.
    async fn commit_batch(&self, entries: &[batch::Entry]) -> StoreResult<Vec<batch::Outcome>>;
    /// Applies one change in a transaction of its own, on any connection (see
    /// [`Store::groups_changes`]): a single statement where one does it all (a live-token
    /// rotation; a redemption on PostgreSQL), saving the round trips of `BEGIN` and `COMMIT`.
    /// Its event, if any, is the caller's to append.
    async fn apply_change_alone(&self, change: &batch::Change) -> StoreResult<batch::Outcome>;
    /// Events matching the filter, oldest first.
    async fn events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;
    /// Where the audit chain stands ([`mandate_core::audit`]).
    async fn chain_head(&self) -> StoreResult<mandate_core::audit::ChainHead>;
    /// Stored events exactly as written (for verifying the chain), after `after_seq`, in
    /// order, at most `limit`.
    async fn chain_rows(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<ChainRow>>;
}

/// Where each audit export sink stands ([`mandate_core::audit_export`]): the sequence number
/// of the last event it delivered. Sinks read events after it with
/// [`EventStore::chain_rows`], in order (numbers are gapless), deliver them, then advance.
#[async_trait]
pub trait ExportCursors: Send + Sync {
    /// The sink's cursor; 0 for a sink that never delivered anything.
    async fn export_cursor(&self, sink: &str) -> StoreResult<i64>;
    /// Moves the sink's cursor from `from` to `to` at `at`, only if it still is `from` (a
    /// compare-and-set) and `to > from`. Returns whether it moved: of any number of callers
    /// advancing from the same value exactly one succeeds, so two nodes running one sink can
    /// neither move it backwards nor advance it twice from one read.
    async fn advance_export_cursor(
        &self,
        sink: &str,
        from: i64,
        to: i64,
        at: Timestamp,
    ) -> StoreResult<bool>;
}

/// Audit retention ([`mandate_core::audit_checkpoint`]): signed checkpoints, and deleting
/// old events while the chain stays verifiable from a checkpoint.
#[async_trait]
pub trait AuditRetention: Send + Sync {
    /// The stored chain hash of event `seq`; `None` if there is no such event (or it was
    /// written before the chain existed).
    async fn event_hash(&self, seq: i64) -> StoreResult<Option<String>>;
    /// The last event a purge of everything older than `before` may delete: every chained
    /// event after the chain's start up to it has `at < before`, it is below the head (the
    /// head is never purged), and each export sink in `sinks` has delivered it (a sink that
    /// never delivered anything holds everything back). The chain's start when there is
    /// nothing to purge.
    async fn purge_cutoff(&self, before: Timestamp, sinks: &[String]) -> StoreResult<i64>;
    /// Stores `checkpoint` and appends `event` as its `audit.checkpoint` event (action and
    /// `detail.seq` / `detail.hash` set here), in one transaction. Returns `false` and writes
    /// nothing if a checkpoint for that event exists (the first one stays). `Corrupt` if the
    /// event's stored hash is not the checkpoint's.
    async fn record_checkpoint(
        &self,
        checkpoint: &AuditCheckpoint,
        event: NewEvent,
    ) -> StoreResult<bool>;
    /// The checkpoint for event `seq`, if one is stored.
    async fn audit_checkpoint(&self, seq: i64) -> StoreResult<Option<AuditCheckpoint>>;
    /// Deletes every event up to `through` in one transaction under the chain's head lock:
    /// moves the chain's start to `through` (with its hash), deletes the events, and appends
    /// `event` as the `audit.purged` event (count, range and checkpoint in `detail`). A
    /// checkpoint for `through` matching its stored hash must have been recorded (`NotFound`
    /// / `Corrupt` otherwise); `through` must be below the head. Returns `None` and changes
    /// nothing if the chain already starts at or after `through`, so purging twice (or from
    /// two nodes at once) purges once.
    async fn purge_events(
        &self,
        through: i64,
        event: NewEvent,
    ) -> StoreResult<Option<PurgedEvents>>;
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
    + TokenStateStore
    + SessionStore
    + KeyStore
    + Housekeeping
    + EventStore
    + ApiKeys
    + Registrations
    + AssertionReplay
    + BulkRevocation
    + BulkLoad
    + AdminRoles
    + ExportCursors
    + AuditRetention
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Cheap liveness check for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Whether state changes ([`batch`]) should ride the group-commit writer's batches. Yes
    /// on SQLite, where every write takes the one write lock anyway and a writer of its own
    /// avoids the busy handler's sleeps. No on PostgreSQL, where a batch's changes would run
    /// one round trip after another on the writer's one connection, while transactions of
    /// their own run side by side under row locks and share WAL flushes (measured: the code
    /// exchange at 534 requests/s batched against 962 alone; BENCHMARKS.md).
    fn groups_changes(&self) -> bool;

    /// How long a group-commit batch may go without an answer before the writer takes the
    /// database for one that stopped answering on an open connection (a partition that drops
    /// packets) and fails the batch as unavailable ([`group_commit`]). `None` for a database
    /// that is a local file, where no network can drop the answer and a stalled disk holds
    /// the writer's one connection whether or not the caller stops waiting.
    fn batch_deadline(&self) -> Option<std::time::Duration> {
        None
    }

    /// A receiver that changes whenever any node commits events to this database, for readers
    /// that follow the log (the revocation feed). PostgreSQL hears every node (LISTEN/NOTIFY);
    /// SQLite hears this process's commits only (another process writing the same file, such
    /// as the CLI, is found by polling). `None` where the backend cannot tell; readers then
    /// poll.
    async fn event_notifications(&self) -> StoreResult<Option<tokio::sync::watch::Receiver<u64>>> {
        Ok(None)
    }

    /// Lets [`TokenStateStore::access_token_usable`] keep its "usable" answers for up to `ttl`
    /// (zero: never), where that is faster than asking and every change that could end a
    /// token's use is heard at once: on PostgreSQL, which notifies every node of such changes.
    /// Answers are dropped by this node's own changes before the write returns, and by any
    /// other writer's within the notification's delay. Off until called; a server calls it
    /// with its `cache_ttl_ms`. Nothing on SQLite.
    async fn cache_token_state(&self, ttl: std::time::Duration) -> StoreResult<()> {
        let _ = ttl;
        Ok(())
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
