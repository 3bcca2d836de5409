//! The append-only event record.
//!
//! Every security-relevant action (login, consent, issuance, refresh, reuse incident,
//! revocation, failed client authentication) is written as one event naming who did what,
//! for whom, through which agent, with which scopes. Events never carry a secret: only ids,
//! scope names and reasons. The full audit capability (hash chain, export, rules) builds on
//! this shape.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Agent,
    Admin,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::Admin => "admin",
            Self::System => "system",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    LoginSucceeded,
    LoginFailed,
    ConsentGranted,
    ConsentDenied,
    TokenIssued,
    TokenRefreshed,
    /// An RFC 8693 token exchange: a token for another audience, acting on behalf of a user.
    TokenExchanged,
    RefreshReuseDetected,
    CodeReplayDetected,
    TokenRevoked,
    GrantRevoked,
    ClientAuthFailed,
    ConfigApplied,
    UserDisabled,
    AgentDisabled,
    /// An API key was created (`grant_id`: the key id).
    ApiKeyCreated,
    /// An API key was rotated (`grant_id`: the old key id; `detail.successor`: the new one).
    ApiKeyRotated,
    /// An API key was revoked (`grant_id`: the key id, which tokens obtained with it carry as
    /// `gid`); a revocation.
    ApiKeyRevoked,
    /// An API key was presented directly to a resource server and checked by introspection
    /// (migration mode; `grant_id`: the key id, `detail.aud`: the resource). Never the key.
    ApiKeyUsed,
    /// A client registered itself (RFC 7591) or was created from its metadata document.
    ClientRegistered,
    /// A registered client replaced its metadata (RFC 7592).
    ClientUpdated,
    /// A registered client was deleted and its grants revoked; a revocation of the agent.
    ClientDeleted,
    /// Bulk revocation of every grant (and API key) of one user; a revocation.
    UserGrantsRevoked,
    /// Bulk revocation of every grant and API key of one tenant; a revocation.
    TenantGrantsRevoked,
    /// Bulk revocation of every grant of one agent, in all tenants; a revocation.
    AgentGrantsRevoked,
    /// Bulk revocation of every grant of one agent within one tenant; a revocation.
    AgentTenantGrantsRevoked,
    /// An admin role was given (`detail`: principal and role).
    AdminRoleGranted,
    /// An admin role was taken away (`detail`: principal).
    AdminRoleRemoved,
    /// A resource server refused a request (reported by its guard, see
    /// [`crate::denial_report`]; `detail`: resource, error, method, path, required scopes).
    AccessDenied,
    /// An anomaly rule fired ([`crate::anomaly`]; `actor_id`: `anomaly:<rule>`; `detail`: the
    /// rule, subject, count, window, the responses taken and any throttle's end).
    AnomalyDetected,
    /// A signed audit checkpoint was recorded (`detail`: `seq`, `hash`, `kid`; see
    /// [`crate::audit_checkpoint`]).
    AuditCheckpoint,
    /// Retention deleted old events (`detail`: `purged`, the range `from`..=`to`, and the
    /// checkpoint the chain now starts from, `checkpoint_seq`).
    AuditPurged,
    /// A signing key was created by a rotation (`detail`: `kid`, `alg`, `activates_at`, and
    /// `automatic` when the rotation schedule made it). Never key material.
    SigningKeyCreated,
    /// A signing key was withdrawn: no longer signs, verifies or is published (`detail`: `kid`).
    SigningKeyRetired,
    /// An operator bulk-loaded grants with `mandate bulk-load` (benchmark fixtures, imports):
    /// ONE event for the whole load (`tenant_id`, `client_id`; `detail`: `grants`,
    /// `refresh_families`, `users_created`, `codes`), never one per grant.
    GrantsBulkLoaded,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 35] = [
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::ConsentGranted,
        Self::ConsentDenied,
        Self::TokenIssued,
        Self::TokenRefreshed,
        Self::TokenExchanged,
        Self::RefreshReuseDetected,
        Self::CodeReplayDetected,
        Self::TokenRevoked,
        Self::GrantRevoked,
        Self::ClientAuthFailed,
        Self::ConfigApplied,
        Self::UserDisabled,
        Self::AgentDisabled,
        Self::ApiKeyCreated,
        Self::ApiKeyRotated,
        Self::ApiKeyRevoked,
        Self::ApiKeyUsed,
        Self::ClientRegistered,
        Self::ClientUpdated,
        Self::ClientDeleted,
        Self::UserGrantsRevoked,
        Self::TenantGrantsRevoked,
        Self::AgentGrantsRevoked,
        Self::AgentTenantGrantsRevoked,
        Self::AdminRoleGranted,
        Self::AdminRoleRemoved,
        Self::AccessDenied,
        Self::AnomalyDetected,
        Self::AuditCheckpoint,
        Self::AuditPurged,
        Self::SigningKeyCreated,
        Self::SigningKeyRetired,
        Self::GrantsBulkLoaded,
    ];

    /// The action with this stored name ([`Self::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::ConsentGranted => "consent.granted",
            Self::ConsentDenied => "consent.denied",
            Self::TokenIssued => "token.issued",
            Self::TokenRefreshed => "token.refreshed",
            Self::TokenExchanged => "token.exchanged",
            Self::RefreshReuseDetected => "refresh.reuse_detected",
            Self::CodeReplayDetected => "code.replay_detected",
            Self::TokenRevoked => "token.revoked",
            Self::GrantRevoked => "grant.revoked",
            Self::ClientAuthFailed => "client.auth_failed",
            Self::ConfigApplied => "config.applied",
            Self::UserDisabled => "user.disabled",
            Self::AgentDisabled => "agent.disabled",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRotated => "api_key.rotated",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::ApiKeyUsed => "api_key.used",
            Self::ClientRegistered => "client.registered",
            Self::ClientUpdated => "client.updated",
            Self::ClientDeleted => "client.deleted",
            Self::UserGrantsRevoked => "user.grants_revoked",
            Self::TenantGrantsRevoked => "tenant.grants_revoked",
            Self::AgentGrantsRevoked => "agent.grants_revoked",
            Self::AgentTenantGrantsRevoked => "agent.tenant_grants_revoked",
            Self::AdminRoleGranted => "admin_role.granted",
            Self::AdminRoleRemoved => "admin_role.removed",
            Self::AccessDenied => "access.denied",
            Self::AnomalyDetected => "anomaly.detected",
            Self::AuditCheckpoint => "audit.checkpoint",
            Self::AuditPurged => "audit.purged",
            Self::SigningKeyCreated => "signing_key.created",
            Self::SigningKeyRetired => "signing_key.retired",
            Self::GrantsBulkLoaded => "grants.bulk_loaded",
        }
    }
}

/// An exhaustive match, so adding an `Action` fails to compile here until it is added to
/// [`Action::ALL`] as well (otherwise its stored events could not be read back). Never called.
const _: fn(Action) = every_action_is_listed;
fn every_action_is_listed(a: Action) {
    match a {
        Action::LoginSucceeded
        | Action::LoginFailed
        | Action::ConsentGranted
        | Action::ConsentDenied
        | Action::TokenIssued
        | Action::TokenRefreshed
        | Action::TokenExchanged
        | Action::RefreshReuseDetected
        | Action::CodeReplayDetected
        | Action::TokenRevoked
        | Action::GrantRevoked
        | Action::ClientAuthFailed
        | Action::ConfigApplied
        | Action::UserDisabled
        | Action::AgentDisabled
        | Action::ApiKeyCreated
        | Action::ApiKeyRotated
        | Action::ApiKeyRevoked
        | Action::ApiKeyUsed
        | Action::ClientRegistered
        | Action::ClientUpdated
        | Action::ClientDeleted
        | Action::UserGrantsRevoked
        | Action::TenantGrantsRevoked
        | Action::AgentGrantsRevoked
        | Action::AgentTenantGrantsRevoked
        | Action::AdminRoleGranted
        | Action::AdminRoleRemoved
        | Action::AccessDenied
        | Action::AnomalyDetected
        | Action::AuditCheckpoint
        | Action::AuditPurged
        | Action::SigningKeyCreated
        | Action::SigningKeyRetired
        | Action::GrantsBulkLoaded => {}
    }
}

/// An event about to be appended; the store assigns its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub at: Timestamp,
    pub action: Action,
    pub actor_kind: ActorKind,
    pub actor_id: Option<String>,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub scopes: Option<String>,
    /// Why, for failures and revocations (never a secret).
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Action-specific, non-secret details (grant type, audience, jti...).
    pub detail: serde_json::Value,
}

impl NewEvent {
    pub fn new(at: Timestamp, action: Action, actor_kind: ActorKind) -> Self {
        Self {
            at,
            action,
            actor_kind,
            actor_id: None,
            tenant_id: None,
            user_id: None,
            client_id: None,
            grant_id: None,
            scopes: None,
            reason: None,
            ip: None,
            user_agent: None,
            detail: serde_json::Value::Null,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewEvent,
}
