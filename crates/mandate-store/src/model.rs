//! Records that exist only in storage, and query filters.

use mandate_core::api_key::{ApiKeyRecord, KeyId};
use mandate_core::authorize::AuthorizationRequest;
use mandate_core::client::Agent;
use mandate_core::code::AuthorizationCode;
use mandate_core::directory::User;
use mandate_core::grant::Grant;
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
use mandate_core::registration::ClientMetadata;
use mandate_core::time::Timestamp;
use serde_json::Value;

/// An entry of the scope catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDef {
    pub name: String,
    pub description: String,
    /// Sensitive scopes are marked on the consent page.
    pub sensitive: bool,
}

/// A logged-in browser session. Only the hash of the session id is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user_id: String,
    pub tenant_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An authorization request waiting for login or consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// Random, unguessable id carried by the login and consent forms.
    pub id: String,
    pub request: AuthorizationRequest,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A signing key as stored: the private part encrypted under the key-encryption key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// AES-256-GCM nonce followed by the sealed PKCS#8 document.
    pub private_sealed: Vec<u8>,
    /// The public JWK as JSON.
    pub public_jwk: Value,
    /// Published from here on.
    pub created_at: Timestamp,
    /// Signs from here on, until a newer key activates (keys stored before rotation existed:
    /// `created_at`).
    pub activates_at: Timestamp,
    /// Withdrawn: neither signs nor verifies nor is published from here on (a compromised key).
    pub retired_at: Option<Timestamp>,
}

/// The outcome of presenting an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeConsumption {
    /// First presentation: the code is now marked used and this caller owns the redemption.
    Fresh(AuthorizationCode),
    /// Already used: a replay. Carries the record so the caller can revoke what it issued.
    Replayed(AuthorizationCode),
    Unknown,
}

/// An authorization code read before it is redeemed, with what the redemption checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeLookup {
    pub code: AuthorizationCode,
    /// Whether the code was already consumed (a presentation now is a replay).
    pub consumed: bool,
    /// The grant the code was issued under, as stored (revoked or expired included); `None`
    /// if its row is gone.
    pub grant: Option<Grant>,
    /// Whether the code's user exists and is enabled.
    pub user_active: bool,
}

/// A refresh family with its grant and its parties' standing: what a refresh or an
/// introspection of a token naming this family checks, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyLookup {
    /// The family, with its live token (if it has one yet).
    pub family: RefreshFamily,
    /// The family's grant as stored (revoked or expired included: the caller decides); `None`
    /// if its row is gone.
    pub grant: Option<Grant>,
    /// `true` for a service family (no user), else whether the user exists and is enabled.
    pub user_active: bool,
    /// Whether the family's agent exists and is enabled.
    pub agent_active: bool,
}

impl FamilyLookup {
    /// When the family was revoked: the earlier of its own revocation and its grant's.
    /// Revoking a grant does not write to its families (no index finds families by grant: a
    /// code exchange would write a random page of it, BENCHMARKS.md "Refresh families without
    /// a grant index"), so every check of a family goes through this.
    pub fn revoked_at(&self) -> Option<Timestamp> {
        let grant = self.grant.as_ref().and_then(|g| g.revoked_at);
        match (self.family.revoked_at, grant) {
            (Some(own), Some(grant)) => Some(own.min(grant)),
            (own, grant) => own.or(grant),
        }
    }
}

/// A refresh token stored as a row of its own (minted before families held their live token)
/// with everything [`FamilyLookup`] reads for its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLookup {
    pub token: RefreshTokenRecord,
    /// The token's family, its grant and its parties' standing.
    pub found: FamilyLookup,
    /// Whether the token that replaced this one is still unused: a row of its own still
    /// unused, or the family's live token (`false` for a live token, which has no successor).
    /// The successor's expiry is not checked (the lookup has no clock): the server only uses
    /// this flag within seconds of the rotation that issued the successor.
    pub successor_live: bool,
}

/// Which grants to list or count. Every filter that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub include_revoked: bool,
}

/// A position in a grant listing (newest first: `created_at` descending, then id descending):
/// the last grant of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCursor {
    pub created_at: Timestamp,
    pub id: String,
}

impl GrantCursor {
    /// The cursor that continues a listing after `grant`.
    pub fn after(grant: &Grant) -> Self {
        Self {
            created_at: grant.created_at,
            id: grant.id.clone(),
        }
    }
}

/// Which events to read, and in which order. Every filter that is set must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    /// The agent (OAuth client) the event names.
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub action: Option<String>,
    /// Any of these actions (empty: no restriction).
    pub actions: Vec<String>,
    /// Only the revocation events (`mandate_core::revocation::REVOCATION_ACTIONS`), which
    /// have an index of their own: what the revocation feed and cache invalidation follow.
    pub revocations_only: bool,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events before this time.
    pub until: Option<Timestamp>,
    /// Only events with a sequence number greater than this.
    pub after_seq: i64,
    /// Only events with a sequence number smaller than this.
    pub before_seq: Option<i64>,
    /// Newest first (for "latest events" pages, paging backwards with `before_seq`); oldest
    /// first otherwise (for following the log, paging forwards with `after_seq`).
    pub newest_first: bool,
    pub limit: u32,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            tenant_id: None,
            user_id: None,
            client_id: None,
            grant_id: None,
            action: None,
            actions: Vec::new(),
            revocations_only: false,
            since: None,
            until: None,
            after_seq: 0,
            before_seq: None,
            newest_first: false,
            limit: 100,
        }
    }
}

impl EventFilter {
    /// The revocation events after `after_seq`, oldest first, at most `limit` of them.
    pub fn revocations_after(after_seq: i64, limit: u32) -> Self {
        Self {
            revocations_only: true,
            after_seq,
            limit,
            ..Self::default()
        }
    }
}

/// An API key as stored: core's record plus who created, revoked and replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub record: ApiKeyRecord,
    /// The creating event's `actor_id`.
    pub created_by: Option<String>,
    pub revoked_reason: Option<String>,
    /// The revoking event's `actor_id`.
    pub revoked_by: Option<String>,
    /// The key that replaced this one by rotation (the reverse of `record.replaces`).
    pub replaced_by: Option<KeyId>,
}

impl StoredApiKey {
    /// The cursor that continues a listing after this key.
    pub fn cursor(&self) -> ApiKeyCursor {
        ApiKeyCursor {
            created_at: self.record.created_at,
            id: self.record.id.clone(),
        }
    }
}

/// A position in a tenant's key listing (newest first: `created_at` descending, then id
/// descending): the last key of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCursor {
    pub created_at: Timestamp,
    pub id: KeyId,
}

/// The outcome of [`crate::ApiKeys::rotate_api_key`]. Only `Rotated` changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyRotation {
    /// The successor is stored, the old key shortened and both linked.
    Rotated,
    /// No such key (in that tenant, for that user).
    Unknown,
    Revoked,
    /// Expired at the rotation time: rotating it would resurrect access.
    Expired,
    /// Rotated before: rotate its successor instead.
    AlreadyRotated,
}

/// How a client came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationOrigin {
    /// RFC 7591 dynamic registration; managed with its registration access token (RFC 7592).
    Dynamic,
    /// An MCP client ID metadata document, fetched from the `client_id` URL.
    MetadataDocument,
}

impl RegistrationOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::MetadataDocument => "metadata_document",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Dynamic, Self::MetadataDocument]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A client that introduced itself, stored beside its [`Agent`] row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    pub client_id: String,
    pub origin: RegistrationOrigin,
    /// The metadata as registered (what RFC 7592 reads return).
    pub metadata: ClientMetadata,
    /// `sha256:` hash of the RFC 7592 registration access token; `None` for metadata
    /// documents, which are managed by their URL's owner.
    pub registration_token_hash: Option<String>,
    pub registered_at: Timestamp,
    /// When the client first completed a flow; `None` until then.
    pub first_used_at: Option<Timestamp>,
    /// A client still unused at this time is abandoned and purged; `None` keeps it.
    pub expires_at: Option<Timestamp>,
}

/// A registered client: its agent row and its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClient {
    pub agent: Agent,
    pub registration: ClientRegistration,
}

/// Whose grants a bulk revocation revokes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BulkTarget {
    /// Every grant and every API key of the user (offboarding).
    User { user_id: String },
    /// Every grant (user and service) and every API key of the tenant.
    Tenant { tenant_id: String },
    /// Every grant of the agent, in every tenant (a compromised agent).
    Agent { client_id: String },
    /// Every grant of the agent within one tenant.
    AgentInTenant {
        client_id: String,
        tenant_id: String,
    },
}

/// What a bulk revocation changed: rows that were unrevoked before it. The refresh families of
/// the revoked grants are revoked with them ([`FamilyLookup::revoked_at`]), not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRevoked {
    pub grants: u64,
    pub api_keys: u64,
    /// The sequence number of the one event that records it (and feeds the revocation feed).
    pub event_seq: i64,
}

/// One stored event, raw, as the audit chain verifier reads it: no field is interpreted, so a
/// tampered row is still readable and reported rather than refused as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChainRow {
    pub seq: i64,
    pub at: i64,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub scopes: Option<String>,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
    pub hash: Option<String>,
}

impl ChainRow {
    pub fn fields(&self) -> mandate_core::audit::ChainedFields<'_> {
        mandate_core::audit::ChainedFields {
            seq: self.seq,
            at: self.at,
            action: &self.action,
            actor_kind: &self.actor_kind,
            actor_id: self.actor_id.as_deref(),
            tenant_id: self.tenant_id.as_deref(),
            user_id: self.user_id.as_deref(),
            client_id: self.client_id.as_deref(),
            grant_id: self.grant_id.as_deref(),
            scopes: self.scopes.as_deref(),
            reason: self.reason.as_deref(),
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
            detail: &self.detail,
        }
    }
}

/// A signed audit checkpoint as stored ([`mandate_core::audit_checkpoint`]): event `seq` had
/// chain hash `hash`, attested by `jws`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: String,
    /// Unix seconds.
    pub created_at: i64,
    pub jws: String,
}

/// What one retention purge deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedEvents {
    /// Events deleted.
    pub purged: u64,
    /// The chain's start before (events after it were kept until now).
    pub from_seq: i64,
    /// The new start: every event up to it is gone, and the checkpoint for it anchors the chain.
    pub to_seq: i64,
    /// The sequence number of the `audit.purged` event recording this purge.
    pub event_seq: i64,
}

/// One transaction's worth of bulk-loaded rows ([`crate::BulkLoad`]): users, grants, families
/// (each with its first refresh token as its live token), and authorization codes, built by the caller exactly as
/// the protocol code builds them (only hashes of tokens and codes). A user holds one live grant
/// per agent ([`crate::GrantStore::create_grant`]), so a load of many grants to one agent
/// brings as many users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBatch {
    pub users: Vec<User>,
    pub grants: Vec<Grant>,
    pub families: Vec<RefreshFamily>,
    pub codes: Vec<AuthorizationCode>,
}
