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
    RefreshReuseDetected,
    CodeReplayDetected,
    TokenRevoked,
    GrantRevoked,
    ClientAuthFailed,
    ConfigApplied,
    UserDisabled,
    AgentDisabled,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::ConsentGranted => "consent.granted",
            Self::ConsentDenied => "consent.denied",
            Self::TokenIssued => "token.issued",
            Self::TokenRefreshed => "token.refreshed",
            Self::RefreshReuseDetected => "refresh.reuse_detected",
            Self::CodeReplayDetected => "code.replay_detected",
            Self::TokenRevoked => "token.revoked",
            Self::GrantRevoked => "grant.revoked",
            Self::ClientAuthFailed => "client.auth_failed",
            Self::ConfigApplied => "config.applied",
            Self::UserDisabled => "user.disabled",
            Self::AgentDisabled => "agent.disabled",
        }
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
