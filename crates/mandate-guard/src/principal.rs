//! The caller, as a handler sees it once the guard has accepted its token.
//!
//! Handlers depend on this type, not on token claims, so the same handler works whether the
//! principal came from a verified JWT or, in migration mode (`accept_api_keys`), from a raw
//! Mandate API key checked by introspection; [`Principal::api_key_id`] tells them apart.

use mandate_core::jwt::AccessTokenClaims;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use serde::Serialize;

/// Who is calling, for whom, and with what rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The user, or the client id for a service identity (`sub`).
    pub subject: String,
    /// The tenant the token acts in; every data access must be filtered by it.
    pub tenant: String,
    /// The agent (OAuth client) holding the token.
    pub client_id: String,
    /// The scopes the token carries, as issued (hierarchy expansion happens at check time).
    pub scopes: ScopeSet,
    /// The grant the token hangs off: the revocation handle.
    pub grant_id: String,
    /// The token's unique id.
    pub jti: String,
    /// The token's `iat`: a bulk revocation refuses tokens issued up to its time only.
    pub issued_at: Timestamp,
    /// The token's `exp`.
    pub expires_at: Timestamp,
    /// RFC 8693 delegation chain, when the token came from a token exchange.
    pub act: Option<serde_json::Value>,
    /// Set when the caller presented a raw API key (migration mode) instead of an access
    /// token: the key's id (`mkid_...`), also its `grant_id` and `client_id`. For such a
    /// principal `jti` is the key id too, `issued_at` is the key's creation and `expires_at`
    /// its expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

impl From<AccessTokenClaims> for Principal {
    fn from(c: AccessTokenClaims) -> Self {
        Self {
            subject: c.sub,
            tenant: c.tenant,
            client_id: c.client_id,
            scopes: c.scope,
            grant_id: c.gid,
            jti: c.jti,
            issued_at: Timestamp::from_unix(c.iat),
            expires_at: Timestamp::from_unix(c.exp),
            act: c.act,
            api_key_id: None,
        }
    }
}
