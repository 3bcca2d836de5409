//! Dynamic client registration (RFC 7591, with RFC 7592 management): what a client may say
//! about itself, and what Mandate makes of it.
//!
//! Registration is open to strangers (or to whoever holds an initial access token), so the
//! metadata is hostile input that ends up on the consent page and decides where authorization
//! codes are sent. The rules:
//!
//! - **Redirect URIs** ([`validate_redirect_uri`]): https; http only on a loopback host;
//!   private-use reverse-domain schemes (RFC 8252 §7.1) for native apps. Never a fragment,
//!   user information, a `*`, a backslash, whitespace or non-ASCII text, and never a relative
//!   URI. The URI must already be in the canonical form a URL parser would produce, so no
//!   parser can read it differently from the exact-match comparison at the authorization
//!   endpoint (percent-encoded hosts, numeric IPv4 forms, dot segments, uppercase hosts).
//! - **Grant and response types** must agree (RFC 7591 §2.1): `authorization_code` ⇔ `code`;
//!   no implicit or password; `refresh_token` only beside `authorization_code`;
//!   `client_credentials` only for a client that authenticates.
//! - **Scope** is clamped to the deployment's default maximum for registered clients; a
//!   client never gets more by asking, and the response says what it got.
//! - **Authentication**: `none`, `client_secret_basic`, `client_secret_post` or
//!   `private_key_jwt`; the last needs `jwks` (valid, public keys only) or an https `jwks_uri`,
//!   not both. `client_secret_jwt` is refused: it is a shared secret used as an HMAC key.
//! - **Display URIs** (`client_uri`, `logo_uri`, `tos_uri`, `policy_uri`) must be https, so the
//!   consent page never links to `javascript:` or plain http.
//!
//! Unknown metadata is ignored (RFC 7591 §2). Errors use the RFC 7591 §3.2.2 codes through
//! [`RegistrationError`], a separate type from [`crate::OAuthError`] because these codes are
//! only meaningful at the registration endpoint (always HTTP 400).

use crate::client::{
    Agent, ClientKind, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_REFRESH_TOKEN_TTL, GrantType,
};
use crate::error::{Description, ErrorBody};
use crate::jwks::ClientJwks;
use crate::random::{self, Entropy};
use crate::redirect_uri::RedirectUri;
use crate::scope::ScopeSet;
use crate::secret;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;
use url::Url;

/// Largest registration request body accepted.
pub const MAX_METADATA_BYTES: usize = 32 * 1024;
/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest URI accepted in any metadata field.
pub const MAX_URI_LEN: usize = 2000;
/// Longest `client_name`, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Most `contacts`.
pub const MAX_CONTACTS: usize = 10;
/// Default time a registered client that never completes a flow is kept: 24 hours.
pub const DEFAULT_UNUSED_CLIENT_TTL_SECONDS: u64 = 24 * 60 * 60;
/// Prefix of client ids Mandate assigns at registration.
pub const CLIENT_ID_PREFIX: &str = "dyn_";

/// RFC 7591 §3.2.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// "The value of one or more redirection URIs is invalid."
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(Description),
    /// "The value of one of the client metadata fields is invalid and the server has rejected
    /// this request."
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(Description),
}

impl RegistrationError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRedirectUri(d) | Self::InvalidClientMetadata(d) => d,
        }
    }

    /// The JSON error body (RFC 7591 §3.2.2 uses the RFC 6749 shape).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            error_description: Some(self.description().to_owned()),
        }
    }
}

fn metadata(d: impl Into<Description>) -> RegistrationError {
    RegistrationError::InvalidClientMetadata(d.into())
}

fn redirect(d: impl Into<Description>) -> RegistrationError {
    RegistrationError::InvalidRedirectUri(d.into())
}

/// RFC 7591 `token_endpoint_auth_method` values Mandate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A public client (PKCE only).
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 assertion signed with the client's private key.
    PrivateKeyJwt,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::None,
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether the client is confidential under this method.
    pub fn kind(self) -> ClientKind {
        match self {
            Self::None => ClientKind::Public,
            _ => ClientKind::Confidential,
        }
    }

    /// Whether Mandate issues a client secret for this method.
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AuthMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unsupported token_endpoint_auth_method `{}` (none, client_secret_basic, client_secret_post, private_key_jwt)",
                    printable(s)
                )
            })
    }
}

/// Validated client metadata, in the form echoed in registration responses (RFC 7591 §3.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<RedirectUri>,
    pub token_endpoint_auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    /// `["code"]` with `authorization_code`, else empty.
    pub response_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// What the client was granted: its request clamped to the default maximum.
    pub scope: ScopeSet,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// Validated inline key set (public keys only), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl ClientMetadata {
    pub fn kind(&self) -> ClientKind {
        self.token_endpoint_auth_method.kind()
    }

    /// The inline key set, parsed (for verifying `private_key_jwt` assertions).
    pub fn client_jwks(&self) -> Option<Result<ClientJwks, crate::jwks::JwksError>> {
        self.jwks.as_ref().map(ClientJwks::from_value)
    }

    /// The agent this registration creates. Registered agents belong to no tenant (any tenant's
    /// users may consent), have no default resource, and hold exactly the clamped scope.
    /// The authentication method and keys are not part of [`Agent`]; store this metadata
    /// beside it.
    pub fn to_agent(&self, client_id: String, secret_hash: Option<String>) -> Agent {
        Agent {
            name: self
                .client_name
                .clone()
                .unwrap_or_else(|| client_id.clone()),
            client_id,
            kind: self.kind(),
            secret_hash,
            redirect_uris: self.redirect_uris.clone(),
            grant_types: self.grant_types.clone(),
            max_scopes: self.scope.clone(),
            tenant_id: None,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            default_resource: None,
            allowed_resources: Vec::new(),
            disabled: false,
        }
    }
}

/// Deployment rules for registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    /// The most any registered client may hold; requests are clamped to it.
    pub default_max_scopes: ScopeSet,
}

/// Which flavour of metadata is being validated: a registration request, or an MCP client ID
/// metadata document (which may only use `none` or `private_key_jwt`, and has no secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Registration,
    MetadataDocument,
}

/// Validates a registration (or RFC 7592 update) request body.
pub fn validate(
    body: &[u8],
    policy: &RegistrationPolicy,
) -> Result<ClientMetadata, RegistrationError> {
    let object = parse_object(body)?;
    validate_object(&object, policy, Profile::Registration)
}

/// Validates an RFC 7592 §2.2 update, which replaces the whole registration: the body must
/// carry `client_id` equal to the registered client's, and is otherwise validated like a new
/// registration. A `client_secret` in the body, if any, is the server's to compare with the
/// stored hash; Mandate never lets a client choose its secret.
pub fn validate_update(
    body: &[u8],
    client_id: &str,
    policy: &RegistrationPolicy,
) -> Result<ClientMetadata, RegistrationError> {
    let object = parse_object(body)?;
    match object.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        _ => {
            return Err(metadata(
                "client_id must be present and equal to the registered client's",
            ));
        }
    }
    validate_object(&object, policy, Profile::Registration)
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, RegistrationError> {
    if body.len() > MAX_METADATA_BYTES {
        return Err(metadata("client metadata is too large"));
    }
    if crate::params::contains_nul(body) {
        return Err(metadata("client metadata must not contain NUL characters"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(metadata("client metadata must be a JSON object")),
    }
}

pub(crate) fn validate_object(
    m: &Map<String, Value>,
    policy: &RegistrationPolicy,
    profile: Profile,
) -> Result<ClientMetadata, RegistrationError> {
    let auth_method = match opt_string(m, "token_endpoint_auth_method")? {
        None => match profile {
            // RFC 7591 §2 default.
            Profile::Registration => AuthMethod::ClientSecretBasic,
            Profile::MetadataDocument => AuthMethod::None,
        },
        Some("client_secret_jwt") => {
            return Err(metadata(
                "client_secret_jwt is not supported; use private_key_jwt",
            ));
        }
        Some(s) => s.parse::<AuthMethod>().map_err(metadata)?,
    };
    if profile == Profile::MetadataDocument && auth_method.uses_secret() {
        return Err(metadata(
            "a client metadata document may only use none or private_key_jwt",
        ));
    }

    let grant_types = match opt_string_array(m, "grant_types", 8)? {
        None => vec![GrantType::AuthorizationCode],
        Some(list) => {
            let mut out: Vec<GrantType> = Vec::new();
            for g in list {
                let parsed = match g.as_str() {
                    "implicit" | "password" => {
                        return Err(metadata(format!("OAuth 2.1 removed the {g} grant")));
                    }
                    other => other.parse::<GrantType>().map_err(|_| {
                        metadata(format!(
                            "grant type `{}` is not available to registered clients",
                            printable(other)
                        ))
                    })?,
                };
                if !out.contains(&parsed) {
                    out.push(parsed);
                }
            }
            out.sort();
            out
        }
    };
    if grant_types.is_empty() {
        return Err(metadata("grant_types must not be empty"));
    }
    let code_flow = grant_types.contains(&GrantType::AuthorizationCode);
    let response_types = match opt_string_array(m, "response_types", 4)? {
        None if code_flow => vec!["code".to_owned()],
        None => Vec::new(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for r in list {
                if r != "code" {
                    return Err(metadata(format!(
                        "response type `{}` is not supported; only code",
                        printable(&r)
                    )));
                }
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            out
        }
    };
    if code_flow != response_types.iter().any(|r| r == "code") {
        return Err(metadata(
            "grant_types and response_types disagree: authorization_code goes with the code response type",
        ));
    }
    if grant_types.contains(&GrantType::RefreshToken) && !code_flow {
        return Err(metadata(
            "refresh_token is only issued with authorization_code",
        ));
    }
    if grant_types.contains(&GrantType::ClientCredentials) {
        if auth_method == AuthMethod::None {
            return Err(metadata(
                "client_credentials needs a client that authenticates",
            ));
        }
        if profile == Profile::MetadataDocument {
            return Err(metadata(
                "client_credentials is not available to metadata-document clients",
            ));
        }
    }

    let redirect_uris = match opt_string_array(m, "redirect_uris", MAX_REDIRECT_URIS) {
        Ok(list) => list.unwrap_or_default(),
        Err(_) => {
            return Err(redirect(format!(
                "redirect_uris must be an array of at most {MAX_REDIRECT_URIS} strings"
            )));
        }
    };
    let mut uris: Vec<RedirectUri> = Vec::with_capacity(redirect_uris.len());
    for raw in &redirect_uris {
        let uri = validate_redirect_uri(raw)?;
        if !uris.contains(&uri) {
            uris.push(uri);
        }
    }
    if code_flow && uris.is_empty() {
        return Err(redirect("redirect_uris is required for authorization_code"));
    }
    if !code_flow && !uris.is_empty() {
        return Err(redirect(
            "redirect_uris are only used with authorization_code",
        ));
    }

    let requested_scope = match opt_string(m, "scope")? {
        None => None,
        Some(s) => Some(ScopeSet::parse(s).map_err(|e| metadata(format!("scope: {e}")))?),
    };
    let scope = match requested_scope {
        None => policy.default_max_scopes.clone(),
        Some(r) => r.intersection(&policy.default_max_scopes),
    };

    let jwks = m.get("jwks").filter(|v| !v.is_null());
    let jwks_uri = opt_string(m, "jwks_uri")?;
    if let Some(j) = jwks {
        ClientJwks::from_value(j).map_err(|e| metadata(format!("jwks: {e}")))?;
    }
    if let Some(u) = jwks_uri {
        https_uri(u, "jwks_uri")?;
    }
    match (auth_method, jwks.is_some(), jwks_uri.is_some()) {
        (_, true, true) => return Err(metadata("send jwks or jwks_uri, not both")),
        (AuthMethod::PrivateKeyJwt, false, false) => {
            return Err(metadata("private_key_jwt needs jwks or jwks_uri"));
        }
        (AuthMethod::PrivateKeyJwt, _, _) | (_, false, false) => {}
        _ => {
            return Err(metadata(
                "jwks and jwks_uri are only used with private_key_jwt",
            ));
        }
    }

    let client_name = opt_string(m, "client_name")?
        .map(|n| text(n, "client_name", MAX_NAME_LEN))
        .transpose()?;
    let display = |field: &str| -> Result<Option<String>, RegistrationError> {
        opt_string(m, field)?
            .map(|u| https_uri(u, field).map(|()| u.to_owned()))
            .transpose()
    };
    let client_uri = display("client_uri")?;
    let logo_uri = display("logo_uri")?;
    let tos_uri = display("tos_uri")?;
    let policy_uri = display("policy_uri")?;
    let contacts = opt_string_array(m, "contacts", MAX_CONTACTS)?
        .unwrap_or_default()
        .into_iter()
        .map(|c| text(&c, "contacts", 254))
        .collect::<Result<Vec<_>, _>>()?;
    let software_id = opt_string(m, "software_id")?
        .map(|s| text(s, "software_id", 200))
        .transpose()?;
    let software_version = opt_string(m, "software_version")?
        .map(|s| text(s, "software_version", 64))
        .transpose()?;

    Ok(ClientMetadata {
        redirect_uris: uris,
        token_endpoint_auth_method: auth_method,
        grant_types,
        response_types,
        client_name,
        client_uri,
        logo_uri,
        tos_uri,
        policy_uri,
        scope,
        contacts,
        jwks: jwks.cloned(),
        jwks_uri: jwks_uri.map(str::to_owned),
        software_id,
        software_version,
    })
}

/// A field name or value safe to echo: printable ASCII, at most 60 characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(60)
        .collect()
}

fn opt_string<'a>(
    m: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, RegistrationError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata(format!("{field} must be a string"))),
    }
}

fn opt_string_array(
    m: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<Vec<String>>, RegistrationError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= max => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(metadata(format!("{field} must be an array of strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata(format!(
            "{field} must be an array of at most {max} strings"
        ))),
    }
}

/// Free text shown to people: bounded, no control characters.
fn text(s: &str, field: &str, max_chars: usize) -> Result<String, RegistrationError> {
    let trimmed = s.trim();
    if trimmed.is_empty()
        || trimmed.chars().count() > max_chars
        || trimmed
            .chars()
            .any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(metadata(format!(
            "{field} must be 1 to {max_chars} characters without control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Bidirectional overrides and isolates, which can make a name read differently than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// Checks the characters and canonical form of any URI in metadata; returns the parsed URL.
fn clean_uri(raw: &str) -> Result<Url, &'static str> {
    if raw.is_empty() || raw.len() > MAX_URI_LEN {
        return Err("must be 1 to 2000 characters");
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces (write hosts in punycode)");
    }
    if raw.contains('*') {
        return Err("must not contain wildcards");
    }
    if raw.contains('\\') {
        return Err("must not contain backslashes");
    }
    if raw.contains('#') {
        return Err("must not contain a fragment");
    }
    let url = Url::parse(raw).map_err(|_| "must be an absolute URI")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information");
    }
    if url.as_str() != raw {
        return Err(
            "must be written in canonical form (lowercase host, no default port, no dot segments, no percent-encoded host; e.g. a trailing slash after a bare host)",
        );
    }
    Ok(url)
}

/// An https URI for display or fetching.
fn https_uri(raw: &str, field: &str) -> Result<(), RegistrationError> {
    let url = clean_uri(raw).map_err(|why| metadata(format!("{field} {why}")))?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err(metadata(format!("{field} must be an https URI")));
    }
    Ok(())
}

/// Validates one redirect URI for registration: everything [`RedirectUri::parse`] checks,
/// plus the character, wildcard and canonical-form rules described in the module docs.
pub fn validate_redirect_uri(raw: &str) -> Result<RedirectUri, RegistrationError> {
    let url = clean_uri(raw).map_err(|why| redirect(format!("redirect URI {why}")))?;
    let uri = RedirectUri::parse(raw).map_err(|e| redirect(e.to_string()))?;
    // A private-use scheme must be a reverse domain name (RFC 8252 §7.1): labels of letters,
    // digits and hyphens, at least two of them.
    let scheme = url.scheme();
    if scheme != "https" && scheme != "http" {
        let labels_ok = scheme.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && l.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        });
        if !labels_ok || !scheme.contains('.') {
            return Err(redirect(
                "a private-use scheme must be a reverse domain name, such as com.example.app",
            ));
        }
    }
    Ok(uri)
}

/// Credentials Mandate issues for a newly registered client.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub client_id: String,
    /// For `client_secret_basic` / `client_secret_post` only.
    pub client_secret: Option<String>,
    /// RFC 7592 bearer token for reading, updating and deleting the registration.
    pub registration_access_token: String,
}

impl fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl IssuedCredentials {
    /// A fresh client id (`dyn_` + 32 hex digits, made at `now`), secret when the method
    /// uses one, and registration access token, all from `entropy`.
    pub fn generate(method: AuthMethod, entropy: &dyn Entropy, now: Timestamp) -> Self {
        Self {
            client_id: random::identifier(entropy, now, CLIENT_ID_PREFIX),
            client_secret: method.uses_secret().then(|| random::opaque_secret(entropy)),
            registration_access_token: random::opaque_secret(entropy),
        }
    }

    /// `sha256:` hash of the secret, for [`Agent::secret_hash`].
    pub fn secret_hash(&self) -> Option<String> {
        self.client_secret.as_deref().map(secret::hash_secret)
    }

    /// `sha256:` hash of the registration access token, the only form to store.
    pub fn registration_access_token_hash(&self) -> String {
        secret::hash_secret(&self.registration_access_token)
    }
}

/// RFC 7591 §3.2.1 / RFC 7592 §3 response: the credentials and the metadata as registered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationResponse {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_id_issued_at: i64,
    /// Required when a secret is issued; 0 means it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_client_uri: Option<String>,
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

impl fmt::Debug for RegistrationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationResponse")
            .field("client_id", &self.client_id)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl RegistrationResponse {
    /// The response to a successful registration. `registration_client_uri` is the RFC 7592
    /// management URL (e.g. `{issuer}/register/{client_id}`); `secret_expires_at` is `None`
    /// for a secret that does not expire.
    pub fn new(
        credentials: &IssuedCredentials,
        metadata: ClientMetadata,
        issued_at: Timestamp,
        secret_expires_at: Option<Timestamp>,
        registration_client_uri: String,
    ) -> Self {
        Self {
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.clone(),
            client_id_issued_at: issued_at.unix(),
            client_secret_expires_at: credentials
                .client_secret
                .as_ref()
                .map(|_| secret_expires_at.map_or(0, Timestamp::unix)),
            registration_access_token: Some(credentials.registration_access_token.clone()),
            registration_client_uri: Some(registration_client_uri),
            metadata,
        }
    }
}

/// Whether a registered client that has never completed a flow should be removed: registered
/// more than `ttl_seconds` ago and never used.
pub fn is_abandoned(
    registered_at: Timestamp,
    first_used_at: Option<Timestamp>,
    now: Timestamp,
    ttl_seconds: u64,
) -> bool {
    first_used_at.is_none() && now >= registered_at.plus_seconds(ttl_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::test_keys::TestKey;
    use crate::random::SeededEntropy;
    use serde_json::json;

    fn policy() -> RegistrationPolicy {
        RegistrationPolicy {
            default_max_scopes: ScopeSet::parse("contacts.read tickets.read").unwrap(),
        }
    }

    fn register(v: Value) -> Result<ClientMetadata, RegistrationError> {
        validate(v.to_string().as_bytes(), &policy())
    }

    fn public_client() -> Value {
        json!({
            "client_name": "MCP Inspector",
            "redirect_uris": ["http://127.0.0.1:6274/callback"],
            "token_endpoint_auth_method": "none",
        })
    }

    fn with(mut base: Value, k: &str, v: Value) -> Value {
        base[k] = v;
        base
    }

    #[test]
    fn a_typical_public_client_gets_defaults() {
        let m = register(public_client()).unwrap();
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::None);
        assert_eq!(m.kind(), ClientKind::Public);
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(
            m.scope,
            policy().default_max_scopes,
            "no scope asked: the default"
        );
        let agent = m.to_agent("dyn_1".into(), None);
        assert_eq!(agent.name, "MCP Inspector");
        assert_eq!(agent.max_scopes, m.scope);
        assert!(
            agent
                .matching_redirect_uri("http://127.0.0.1:5555/callback")
                .is_some()
        );
    }

    #[test]
    fn scope_is_clamped_never_widened() {
        let m = register(with(
            public_client(),
            "scope",
            json!("contacts.read admin.all billing.write"),
        ))
        .unwrap();
        assert_eq!(m.scope, ScopeSet::parse("contacts.read").unwrap());
        let none = register(with(public_client(), "scope", json!("admin.all"))).unwrap();
        assert!(none.scope.is_empty());
    }

    #[test]
    fn redirect_uri_cases() {
        let cases: &[(&str, bool, &str)] = &[
            ("https://app.example.com/cb", true, "https"),
            ("https://app.example.com/cb?tab=1", true, "query"),
            ("http://127.0.0.1/cb", true, "loopback v4"),
            ("http://[::1]:8080/cb", true, "loopback v6"),
            ("http://localhost:3000/cb", true, "localhost"),
            ("com.example.app:/oauth", true, "private-use scheme"),
            (
                "com.example.app://callback",
                true,
                "private-use with authority",
            ),
            ("https://xn--bcher-kva.example/cb", true, "punycode host"),
            ("http://app.example.com/cb", false, "plain http"),
            ("javascript:alert(1)", false, "javascript"),
            ("JavaScript:alert(1)", false, "javascript, mixed case"),
            ("data:text/html,<script>", false, "data"),
            ("file:///etc/passwd", false, "file"),
            ("vbscript:msgbox", false, "vbscript"),
            ("https://app.example.com/cb#x", false, "fragment"),
            ("https://app.example.com/cb#", false, "empty fragment"),
            ("https://user@app.example.com/cb", false, "userinfo"),
            (
                "https://app.example.com@evil.com/cb",
                false,
                "userinfo as host trick",
            ),
            ("https://*.example.com/cb", false, "wildcard host"),
            ("https://app.example.com/*", false, "wildcard path"),
            ("/cb", false, "relative"),
            ("//app.example.com/cb", false, "scheme-relative"),
            ("https://bücher.example/cb", false, "non-ASCII host"),
            ("https://app.example.com/cb\u{202e}", false, "bidi override"),
            ("https://app.example.com/c b", false, "space"),
            ("https://evil.com\\@app.example.com/cb", false, "backslash"),
            ("https://APP.example.com/cb", false, "uppercase host"),
            ("https://app.example.com:443/cb", false, "default port"),
            ("https://app.example.com/a/../cb", false, "dot segment"),
            ("https://ex%61mple.com/cb", false, "percent-encoded host"),
            ("http://2130706433/cb", false, "numeric IPv4 loopback"),
            ("http://0x7f.1/cb", false, "hex IPv4"),
            (
                "https://app.example.com",
                false,
                "bare host (canonical has /)",
            ),
            ("myapp:/cb", false, "private-use scheme without a dot"),
            ("com..app:/cb", false, "empty label"),
            (
                "com.example.app-:/cb",
                true,
                "hyphen at label end is allowed",
            ),
            ("1com.example:/cb", false, "label starting with a digit"),
            ("https:app.example.com/cb", false, "https without slashes"),
        ];
        for (uri, ok, reason) in cases {
            let got = validate_redirect_uri(uri);
            assert_eq!(got.is_ok(), *ok, "{reason}: {uri} -> {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code(), "invalid_redirect_uri", "{reason}");
            }
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_URI_LEN));
        assert!(validate_redirect_uri(&long).is_err());
    }

    #[test]
    fn metadata_refusals() {
        let key = TestKey::ed25519();
        let jwks = json!({"keys": [key.jwk("k")]});
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!([]), "invalid_client_metadata", "not an object"),
            (
                with(
                    public_client(),
                    "redirect_uris",
                    json!("https://a.example/cb"),
                ),
                "invalid_redirect_uri",
                "redirect_uris not an array",
            ),
            (
                with(public_client(), "redirect_uris", json!([])),
                "invalid_redirect_uri",
                "code flow without redirect URIs",
            ),
            (
                with(
                    public_client(),
                    "redirect_uris",
                    json!(vec!["https://a.example/cb"; MAX_REDIRECT_URIS + 1]),
                ),
                "invalid_redirect_uri",
                "too many redirect URIs",
            ),
            (
                with(
                    public_client(),
                    "redirect_uris",
                    json!(["javascript:alert(1)"]),
                ),
                "invalid_redirect_uri",
                "javascript redirect",
            ),
            (
                with(public_client(), "grant_types", json!(["implicit"])),
                "invalid_client_metadata",
                "implicit",
            ),
            (
                with(public_client(), "grant_types", json!(["password"])),
                "invalid_client_metadata",
                "password",
            ),
            (
                with(
                    public_client(),
                    "grant_types",
                    json!(["urn:ietf:params:oauth:grant-type:token-exchange"]),
                ),
                "invalid_client_metadata",
                "token exchange is granted by policy, not registration",
            ),
            (
                with(public_client(), "grant_types", json!([])),
                "invalid_client_metadata",
                "empty grant types",
            ),
            (
                with(public_client(), "response_types", json!(["token"])),
                "invalid_client_metadata",
                "implicit response type",
            ),
            (
                with(public_client(), "response_types", json!([])),
                "invalid_client_metadata",
                "code grant without code response",
            ),
            (
                json!({
                    "grant_types": ["client_credentials"], "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic"
                }),
                "invalid_client_metadata",
                "code response without code grant",
            ),
            (
                json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
                "invalid_client_metadata",
                "public client credentials",
            ),
            (
                json!({"grant_types": ["refresh_token", "client_credentials"]}),
                "invalid_client_metadata",
                "refresh without code",
            ),
            (
                json!({
                    "grant_types": ["client_credentials"],
                    "redirect_uris": ["https://a.example/cb"]
                }),
                "invalid_redirect_uri",
                "redirect URIs without code flow",
            ),
            (
                with(
                    public_client(),
                    "token_endpoint_auth_method",
                    json!("client_secret_jwt"),
                ),
                "invalid_client_metadata",
                "client_secret_jwt",
            ),
            (
                with(
                    public_client(),
                    "token_endpoint_auth_method",
                    json!("tls_client_auth"),
                ),
                "invalid_client_metadata",
                "unknown method",
            ),
            (
                with(
                    public_client(),
                    "token_endpoint_auth_method",
                    json!("private_key_jwt"),
                ),
                "invalid_client_metadata",
                "private_key_jwt without keys",
            ),
            (
                with(
                    with(
                        public_client(),
                        "token_endpoint_auth_method",
                        json!("private_key_jwt"),
                    ),
                    "jwks_uri",
                    json!("http://keys.example/jwks.json"),
                ),
                "invalid_client_metadata",
                "http jwks_uri",
            ),
            (
                with(
                    with(
                        with(
                            public_client(),
                            "token_endpoint_auth_method",
                            json!("private_key_jwt"),
                        ),
                        "jwks_uri",
                        json!("https://keys.example/jwks.json"),
                    ),
                    "jwks",
                    jwks.clone(),
                ),
                "invalid_client_metadata",
                "both jwks and jwks_uri",
            ),
            (
                with(
                    with(
                        public_client(),
                        "token_endpoint_auth_method",
                        json!("private_key_jwt"),
                    ),
                    "jwks",
                    json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
                ),
                "invalid_client_metadata",
                "symmetric key in jwks",
            ),
            (
                with(public_client(), "jwks", jwks.clone()),
                "invalid_client_metadata",
                "jwks without private_key_jwt",
            ),
            (
                with(public_client(), "client_uri", json!("javascript:alert(1)")),
                "invalid_client_metadata",
                "javascript client_uri",
            ),
            (
                with(
                    public_client(),
                    "logo_uri",
                    json!("http://a.example/logo.png"),
                ),
                "invalid_client_metadata",
                "http logo",
            ),
            (
                with(
                    public_client(),
                    "client_name",
                    json!("x".repeat(MAX_NAME_LEN + 1)),
                ),
                "invalid_client_metadata",
                "long name",
            ),
            (
                with(public_client(), "client_name", json!("Good\u{202e}evil")),
                "invalid_client_metadata",
                "bidi name",
            ),
            (
                with(public_client(), "client_name", json!(42)),
                "invalid_client_metadata",
                "name not a string",
            ),
            (
                with(public_client(), "scope", json!("a\"b")),
                "invalid_client_metadata",
                "malformed scope",
            ),
            (
                with(public_client(), "contacts", json!(["a\nb"])),
                "invalid_client_metadata",
                "control character in contact",
            ),
        ];
        for (v, code, reason) in cases {
            let got = register(v);
            assert_eq!(
                got.as_ref().map_err(RegistrationError::code),
                Err(code),
                "{reason}"
            );
        }
        assert_eq!(
            validate(&vec![b' '; MAX_METADATA_BYTES + 1], &policy())
                .unwrap_err()
                .code(),
            "invalid_client_metadata"
        );
    }

    #[test]
    fn confidential_clients() {
        let key = TestKey::p256();
        let pk = register(json!({
            "redirect_uris": ["https://agent.example/cb"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.jwk("k1")]},
            "client_uri": "https://agent.example/",
            "software_id": "agent-kit",
            "unknown_extension": {"ignored": true},
        }))
        .unwrap();
        assert_eq!(pk.kind(), ClientKind::Confidential);
        assert!(pk.client_jwks().unwrap().is_ok());
        assert_eq!(
            pk.grant_types,
            [
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials
            ]
        );
        let by_uri = register(json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://agent.example/jwks.json",
        }))
        .unwrap();
        assert!(by_uri.response_types.is_empty());
        assert!(by_uri.redirect_uris.is_empty());

        let basic = register(json!({"grant_types": ["client_credentials"]})).unwrap();
        assert_eq!(
            basic.token_endpoint_auth_method,
            AuthMethod::ClientSecretBasic,
            "RFC 7591 default"
        );
    }

    #[test]
    fn response_and_credentials() {
        let e = SeededEntropy::new(3);
        let m = register(json!({
            "redirect_uris": ["https://agent.example/cb"],
            "token_endpoint_auth_method": "client_secret_post",
        }))
        .unwrap();
        let creds = IssuedCredentials::generate(
            m.token_endpoint_auth_method,
            &e,
            Timestamp::from_unix(100),
        );
        assert!(creds.client_id.starts_with(CLIENT_ID_PREFIX));
        assert!(crate::client::is_valid_client_id(&creds.client_id));
        let secret = creds.client_secret.clone().unwrap();
        assert!(secret::verify_secret(
            &secret,
            &creds.secret_hash().unwrap()
        ));
        assert!(!format!("{creds:?}").contains(&secret));

        let resp = RegistrationResponse::new(
            &creds,
            m,
            Timestamp::from_unix(100),
            None,
            format!("https://as.example/register/{}", creds.client_id),
        );
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["client_secret_expires_at"], json!(0));
        assert_eq!(v["client_id_issued_at"], json!(100));
        assert_eq!(v["token_endpoint_auth_method"], json!("client_secret_post"));
        assert_eq!(v["grant_types"], json!(["authorization_code"]));
        assert_eq!(v["response_types"], json!(["code"]));
        assert_eq!(v["scope"], json!("contacts.read tickets.read"));
        assert_eq!(v["redirect_uris"], json!(["https://agent.example/cb"]));
        assert!(!format!("{resp:?}").contains(&secret));
        let back: RegistrationResponse = serde_json::from_value(v).unwrap();
        assert_eq!(back, resp);

        let public = IssuedCredentials::generate(AuthMethod::None, &e, Timestamp::from_unix(100));
        assert!(public.client_secret.is_none());
        let resp = RegistrationResponse::new(
            &public,
            register(public_client()).unwrap(),
            Timestamp::from_unix(100),
            None,
            "u".into(),
        );
        let v = serde_json::to_value(&resp).unwrap();
        assert!(v.get("client_secret").is_none() && v.get("client_secret_expires_at").is_none());
    }

    #[test]
    fn updates_must_name_the_client() {
        let body = with(public_client(), "client_id", json!("dyn_1")).to_string();
        assert!(validate_update(body.as_bytes(), "dyn_1", &policy()).is_ok());
        assert!(validate_update(body.as_bytes(), "dyn_2", &policy()).is_err());
        assert!(
            validate_update(public_client().to_string().as_bytes(), "dyn_1", &policy()).is_err()
        );
    }

    #[test]
    fn abandoned_clients() {
        let t = Timestamp::from_unix;
        assert!(!is_abandoned(t(0), None, t(99), 100));
        assert!(is_abandoned(t(0), None, t(100), 100));
        assert!(!is_abandoned(t(0), Some(t(5)), t(1000), 100));
    }

    #[test]
    fn error_body_uses_rfc7591_codes() {
        let e = RegistrationError::InvalidRedirectUri("x".into());
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            json!({"error": "invalid_redirect_uri", "error_description": "x"})
        );
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = validate(&body, &policy());
        }

        #[test]
        fn redirect_validation_never_panics(s in "\\PC{0,80}") {
            let _ = validate_redirect_uri(&s);
        }

        #[test]
        fn scope_never_exceeds_the_maximum(words in proptest::collection::vec("[a-z]{1,6}\\.(read|write)", 0..6)) {
            let mut v = public_client();
            v["scope"] = json!(words.join(" "));
            let m = register(v).unwrap();
            proptest::prop_assert!(m.scope.is_subset(&policy().default_max_scopes));
        }
    }
}
