//! Authorization server metadata (RFC 8414), also served at the OpenID discovery path.
//!
//! The MCP authorization spec has clients discover everything from here, so the document
//! advertises exactly what the server enforces: `S256` only, the `iss` response parameter
//! (RFC 9207), and the three grant types.

use crate::jwks::ClientKeyAlgorithm;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    /// RFC 7591 registration endpoint; absent when registration is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms accepted for `private_key_jwt` client assertions.
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub authorization_response_iss_parameter_supported: bool,
    pub prompt_values_supported: Vec<String>,
    /// Mandate's revocation feed (server-sent events) for resource servers; an extension
    /// field, which RFC 8414 §2 permits.
    pub revocation_feed_endpoint: String,
    /// Where resource servers' guards report the requests they refused
    /// ([`crate::denial_report`]); an extension field like the feed's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial_report_endpoint: Option<String>,
    /// The server resolves `client_id`s that are https URLs by fetching their client ID
    /// metadata document (the mechanism the MCP authorization spec prefers over registration).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_id_metadata_document_supported: bool,
}

impl AuthorizationServerMetadata {
    /// The document for `issuer` (no trailing slash), listing the scope catalog.
    pub fn new(issuer: &str, scopes: Vec<String>) -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let secret_methods = strings(&[
            "client_secret_basic",
            "client_secret_post",
            crate::client_assertion::AUTH_METHOD,
        ]);
        let assertion_algs = [
            ClientKeyAlgorithm::EdDSA,
            ClientKeyAlgorithm::ES256,
            ClientKeyAlgorithm::RS256,
        ]
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect::<Vec<_>>();
        Self {
            issuer: issuer.to_owned(),
            authorization_endpoint: format!("{issuer}/authorize"),
            token_endpoint: format!("{issuer}/token"),
            jwks_uri: format!("{issuer}/jwks.json"),
            introspection_endpoint: format!("{issuer}/introspect"),
            revocation_endpoint: format!("{issuer}/revoke"),
            registration_endpoint: None,
            scopes_supported: scopes,
            response_types_supported: strings(&["code"]),
            response_modes_supported: strings(&["query"]),
            grant_types_supported: strings(&[
                "authorization_code",
                "refresh_token",
                "client_credentials",
                crate::exchange::GRANT_TYPE,
            ]),
            token_endpoint_auth_methods_supported: strings(&[
                "client_secret_basic",
                "client_secret_post",
                crate::client_assertion::AUTH_METHOD,
                "none",
            ]),
            token_endpoint_auth_signing_alg_values_supported: assertion_algs,
            introspection_endpoint_auth_methods_supported: secret_methods.clone(),
            revocation_endpoint_auth_methods_supported: strings(&[
                "client_secret_basic",
                "client_secret_post",
                crate::client_assertion::AUTH_METHOD,
                "none",
            ]),
            code_challenge_methods_supported: strings(&["S256"]),
            authorization_response_iss_parameter_supported: true,
            prompt_values_supported: strings(&["none", "login", "consent"]),
            revocation_feed_endpoint: format!("{issuer}/revocations"),
            denial_report_endpoint: Some(format!(
                "{issuer}{}",
                crate::denial_report::ENDPOINT_PATH
            )),
            client_id_metadata_document_supported: false,
        }
    }

    /// Advertises `client_id_metadata_document_supported: true`.
    pub fn with_client_id_metadata_documents(mut self) -> Self {
        self.client_id_metadata_document_supported = true;
        self
    }

    /// Advertises the RFC 7591 registration endpoint (`{issuer}/register`).
    pub fn with_registration_endpoint(mut self) -> Self {
        self.registration_endpoint = Some(format!("{}/register", self.issuer));
        self
    }
}
