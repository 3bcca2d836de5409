//! Agents: the OAuth clients Mandate issues tokens to.
//!
//! An agent is bounded by its registration: the grant types it may use, the exact redirect URIs
//! it may receive codes at, and the maximum scopes it may ever hold. Every token is computed
//! inside those bounds, whatever a user approves or a request asks.

use crate::redirect_uri::RedirectUri;
use crate::scope::ScopeSet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// RFC 6749 §2.1 client types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// Cannot keep a secret (CLI, desktop, browser app); authenticates with PKCE only.
    Public,
    /// Holds a secret and authenticates at the token endpoint.
    Confidential,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Confidential => "confidential",
        }
    }
}

impl FromStr for ClientKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "public" => Ok(Self::Public),
            "confidential" => Ok(Self::Confidential),
            other => Err(format!(
                "unknown client kind `{other}` (public, confidential)"
            )),
        }
    }
}

/// The grant types Mandate implements. OAuth 2.1 removed implicit and password; they have no
/// variant, so nothing can enable them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GrantType::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unsupported grant type `{s}` (authorization_code, refresh_token, client_credentials)"
                )
            })
    }
}

/// Token lifetimes in seconds.
pub const DEFAULT_ACCESS_TOKEN_TTL: u64 = 15 * 60;
pub const DEFAULT_REFRESH_TOKEN_TTL: u64 = 7 * 24 * 60 * 60;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub client_id: String,
    pub name: String,
    pub kind: ClientKind,
    /// `sha256:` hash of the client secret (confidential agents only).
    #[serde(skip_serializing)]
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    /// The most this agent may ever receive, whoever approves what.
    pub max_scopes: ScopeSet,
    /// The tenant that owns the agent. `None`: any tenant's users may consent to it. A service
    /// identity (client credentials) always acts within its owner tenant.
    pub tenant_id: Option<String>,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    /// Audience used when a token request names no `resource`.
    pub default_resource: Option<String>,
    /// Resources this agent may obtain tokens for; empty means any registered resource.
    pub allowed_resources: Vec<String>,
    pub disabled: bool,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("client_id", &self.client_id)
            .field("kind", &self.kind)
            .field("grant_types", &self.grant_types)
            .field("max_scopes", &self.max_scopes.to_string())
            .field("tenant_id", &self.tenant_id)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered redirect URI that `presented` matches, if any.
    pub fn matching_redirect_uri(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|r| r.matches(presented))
    }

    /// The single redirect URI to use when a request omits `redirect_uri` (OAuth 2.1 §4.1.1
    /// allows that only when exactly one is registered; a loopback one needs its port, so it
    /// must always be given).
    pub fn sole_redirect_uri(&self) -> Option<&RedirectUri> {
        match self.redirect_uris.as_slice() {
            [only] if !only.is_loopback() => Some(only),
            _ => None,
        }
    }
}

/// Client ids are printable ASCII without spaces, at most 128 characters.
pub fn is_valid_client_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_round_trip_and_legacy_ones_do_not_exist() {
        for g in GrantType::ALL {
            assert_eq!(g.as_str().parse::<GrantType>(), Ok(g));
        }
        assert!("password".parse::<GrantType>().is_err());
        assert!("implicit".parse::<GrantType>().is_err());
    }

    #[test]
    fn client_id_rules() {
        assert!(is_valid_client_id("cli-agent"));
        assert!(!is_valid_client_id("a:b"), "a colon breaks HTTP Basic");
        assert!(!is_valid_client_id("a b"));
        assert!(!is_valid_client_id(""));
    }
}
