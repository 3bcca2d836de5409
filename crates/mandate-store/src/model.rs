//! Records that exist only in storage, and query filters.

use mandate_core::authorize::AuthorizationRequest;
use mandate_core::code::AuthorizationCode;
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
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
    pub created_at: Timestamp,
    /// Stops signing after this; the public key stays published until its tokens expire.
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

/// A refresh token with its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLookup {
    pub token: RefreshTokenRecord,
    pub family: RefreshFamily,
    /// Whether the token that replaced this one exists and is still unused (`false` for a live
    /// token, which has no successor). The successor's expiry is not checked (the lookup has no
    /// clock): `refresh::classify` only uses this flag within seconds of the rotation that
    /// issued the successor.
    pub successor_live: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub include_revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    /// Any of these actions (empty: no restriction), e.g. the revocation actions for the feed.
    pub actions: Vec<String>,
    pub grant_id: Option<String>,
    /// Only events with a sequence number greater than this.
    pub after_seq: i64,
    pub limit: u32,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            tenant_id: None,
            action: None,
            actions: Vec::new(),
            grant_id: None,
            after_seq: 0,
            limit: 100,
        }
    }
}
