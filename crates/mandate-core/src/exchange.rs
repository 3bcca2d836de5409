//! Token exchange (RFC 8693), on-behalf-of only, and the delegation chains it builds.
//!
//! Agents call other agents. An orchestrator holding alice's token asks for a narrower token
//! for the CRM; a sub-agent it hands that token to asks for a narrower one still. Each step is a
//! token exchange, and each result must say who is acting for whom, so the new token's `act`
//! claim records the chain (RFC 8693 §4.1: the outermost `act` is the current actor, nested
//! ones are the prior actors). The rules, each enforced by [`decide`]:
//!
//! - **Delegation, never impersonation.** Every exchanged token carries `act` naming the
//!   requesting agent; there is no request form that yields a token without it. `sub` and
//!   `tenant` are copied from the subject token and never change.
//! - **Scopes only narrow.** The new scope is what was asked, within the subject token's scope,
//!   the agent's maximum and the audience's scopes. Asking for more is `invalid_scope`, not
//!   silently trimmed, so an agent learns its request was wrong rather than getting a token
//!   that fails later.
//! - **Bounded depth.** A chain holds at most [`ExchangePolicy::max_depth`] actors
//!   (default [`DEFAULT_MAX_DEPTH`]). An agent re-narrowing a token it is already the current
//!   actor of does not lengthen the chain.
//! - **Default deny.** [`ExchangePolicy`] lists which agents may exchange for which audiences;
//!   nothing else may.
//! - **Revocation follows lineage.** The new token keeps the subject's `gid`, so revoking the
//!   user's original grant kills every token derived from it. When an agent proves itself with
//!   an `actor_token`, that token's grant is recorded in its `act` entry, and
//!   [`Exchanged::lineage`] lists every grant the result depends on. The server must check all
//!   of them are active before issuing, and a resource server should reject the token if any of
//!   them is revoked ([`Actor::grant_ids`]).
//! - **Never outlives its source.** The new token expires no later than the subject token.
//! - **Service subjects are refused by default.** A client-credentials token speaks for a
//!   service, not a person; letting another agent act "on behalf of" it would hand that agent
//!   the service's tenant-wide scopes without any user's consent. A deployment can opt in with
//!   [`ExchangePolicy::allow_service_subjects`].
//!
//! Scanning tokens and keys, looking up grants and agents, and signing are the server's job;
//! the order is: [`ExchangeRequest::parse`], authenticate the client, verify the subject token
//! (signature, expiry, issuer; any audience) and build a [`Subject`], verify the actor token if
//! any and build an [`ActorToken`], resolve the audience with [`crate::resource::select`], call
//! [`decide`], check every grant in [`Exchanged::lineage`] is active, record the event with the
//! full chain, then sign [`Exchanged::claims`]. An API key presented without an agent goes
//! through [`decide_api_key`] instead.
//!
//! Errors follow RFC 8693 §2.2.2: a subject or actor token that is invalid or unacceptable is
//! `invalid_request` (that includes unsupported token types), an audience the agent may not
//! have is `invalid_target`, and scopes beyond the subject's are `invalid_scope`.

use crate::api_key::{ApiKey, ApiKeyRecord};
use crate::client::{Agent, is_valid_client_id};
use crate::error::OAuthError;
use crate::jwt::{AccessTokenClaims, MAX_TOKEN_LEN};
use crate::params::Params;
use crate::resource::{self, ResourceServer};
use crate::scope::ScopeSet;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// RFC 8693 §2.1: the grant type of a token exchange request.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: an OAuth access token (Mandate's are RFC 9068 JWTs).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A Mandate API key (see [`crate::api_key`]), exchangeable for an access token.
pub const API_KEY_TOKEN_TYPE: &str = "urn:mandate:params:oauth:token-type:api_key";
/// Default longest delegation chain, in actors.
pub const DEFAULT_MAX_DEPTH: usize = 3;
/// Longest `act` chain accepted from any token, whatever the policy says; bounds the work a
/// hostile token can cause.
pub const MAX_CHAIN_LEN: usize = 16;

/// The token types Mandate accepts in an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    AccessToken,
    ApiKey,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessToken => ACCESS_TOKEN_TYPE,
            Self::ApiKey => API_KEY_TOKEN_TYPE,
        }
    }

    /// The token type a URI names; unsupported ones (ID tokens, SAML, refresh tokens, bare
    /// JWTs) are `invalid_request`, as RFC 8693 §2.2.2 asks.
    pub fn parse(uri: &str, parameter: &str) -> Result<Self, OAuthError> {
        match uri {
            ACCESS_TOKEN_TYPE => Ok(Self::AccessToken),
            API_KEY_TOKEN_TYPE => Ok(Self::ApiKey),
            _ => Err(OAuthError::InvalidRequest(
                format!(
                    "unsupported {parameter}; supported: {ACCESS_TOKEN_TYPE}, {API_KEY_TOKEN_TYPE}"
                )
                .into(),
            )),
        }
    }
}

/// The subject token as presented.
#[derive(Clone, PartialEq, Eq)]
pub enum PresentedSubject {
    /// A Mandate access token (not yet verified).
    AccessToken(String),
    /// A Mandate API key whose format and checksum are valid (not yet looked up).
    ApiKey(ApiKey),
}

impl fmt::Debug for PresentedSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessToken(_) => f.write_str("AccessToken(..)"),
            Self::ApiKey(k) => write!(f, "{k:?}"),
        }
    }
}

/// A syntactically valid token exchange request (RFC 8693 §2.1).
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    pub subject: PresentedSubject,
    /// An access token representing the requesting agent itself, if presented.
    pub actor_token: Option<String>,
    /// The audience asked for, from `resource` or `audience` (which must agree). `None`: the
    /// agent's default resource applies ([`crate::resource::select`]).
    pub audience: Option<String>,
    /// `None`: everything the subject token has that the agent and audience allow.
    pub scope: Option<ScopeSet>,
}

impl fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject", &self.subject)
            .field("actor_token", &self.actor_token.as_ref().map(|_| ".."))
            .field("audience", &self.audience)
            .field("scope", &self.scope)
            .finish()
    }
}

impl ExchangeRequest {
    /// Parses a token endpoint request whose `grant_type` is [`GRANT_TYPE`]. The server
    /// dispatches on `grant_type` before [`crate::token_request::TokenRequest::parse`], which
    /// does not know this grant.
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        if params.require("grant_type")? != GRANT_TYPE {
            return Err(OAuthError::UnsupportedGrantType(
                "this request is not a token exchange".into(),
            ));
        }
        let subject_token = params.require("subject_token")?;
        let subject_type =
            TokenType::parse(params.require("subject_token_type")?, "subject_token_type")?;
        let subject = match subject_type {
            TokenType::AccessToken => {
                if subject_token.len() > MAX_TOKEN_LEN {
                    return Err(OAuthError::invalid_request("subject_token is too long"));
                }
                PresentedSubject::AccessToken(subject_token.to_owned())
            }
            TokenType::ApiKey => {
                PresentedSubject::ApiKey(ApiKey::parse(subject_token).map_err(|e| {
                    OAuthError::InvalidRequest(format!("subject_token: {e}").into())
                })?)
            }
        };
        let actor_token = match (params.get("actor_token"), params.get("actor_token_type")) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(OAuthError::invalid_request(
                    "actor_token_type is required with actor_token",
                ));
            }
            (None, Some(_)) => {
                return Err(OAuthError::invalid_request(
                    "actor_token_type must not be sent without actor_token",
                ));
            }
            (Some(token), Some(kind)) => {
                if TokenType::parse(kind, "actor_token_type")? != TokenType::AccessToken {
                    return Err(OAuthError::invalid_request(
                        "actor_token must be an access token",
                    ));
                }
                if token.len() > MAX_TOKEN_LEN {
                    return Err(OAuthError::invalid_request("actor_token is too long"));
                }
                if matches!(subject, PresentedSubject::ApiKey(_)) {
                    return Err(OAuthError::invalid_request(
                        "an API key is exchanged by its holder; actor_token is not used with it",
                    ));
                }
                Some(token.to_owned())
            }
        };
        if params
            .get("requested_token_type")
            .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
        {
            return Err(OAuthError::InvalidRequest(
                format!("requested_token_type must be {ACCESS_TOKEN_TYPE}").into(),
            ));
        }
        let audience = target(params.get("resource"), params.get("audience"))?;
        let scope = match params.get("scope") {
            None => None,
            Some(s) => {
                let set = ScopeSet::parse(s)?;
                if set.is_empty() {
                    return Err(OAuthError::InvalidScope("scope is empty".into()));
                }
                Some(set)
            }
        };
        Ok(Self {
            subject,
            actor_token,
            audience,
            scope,
        })
    }

    pub fn subject_token_type(&self) -> TokenType {
        match self.subject {
            PresentedSubject::AccessToken(_) => TokenType::AccessToken,
            PresentedSubject::ApiKey(_) => TokenType::ApiKey,
        }
    }
}

/// The one audience of the new token. Mandate tokens name exactly one resource (RFC 8707), and
/// Mandate's audiences are resource identifiers, so `resource` and `audience` are the same
/// thing here; giving both is fine only if they agree.
fn target(resource: Option<&str>, audience: Option<&str>) -> Result<Option<String>, OAuthError> {
    let chosen = match (resource, audience) {
        (Some(r), Some(a)) if r != a => {
            return Err(OAuthError::InvalidTarget(
                "resource and audience differ; a Mandate token has exactly one audience".into(),
            ));
        }
        (Some(r), _) => Some(r),
        (None, a) => a,
    };
    match chosen {
        Some(t) if !resource::is_valid_identifier(t) => Err(OAuthError::InvalidTarget(
            "resource must be an absolute URI without a fragment".into(),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// One link of a delegation chain: the `act` claim (RFC 8693 §4.1).
///
/// `sub` is the acting agent's client id. `gid` is the grant of the actor token the agent
/// presented at that step, if it presented one: a Mandate extension (RFC 8693 §4.1 allows
/// other claims in `act`) so resource servers can reject the token when any grant it depends
/// on is revoked. `act` is the previous actor. Unknown members are ignored when reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            gid: None,
            act: None,
        }
    }

    /// The actors from the current (outermost) to the first.
    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }

    /// How many actors the chain holds (1 for a single `act`).
    pub fn depth(&self) -> usize {
        self.actors().count()
    }

    /// The grants recorded in the chain, outermost first.
    pub fn grant_ids(&self) -> impl Iterator<Item = &str> {
        self.actors().filter_map(|a| a.gid.as_deref())
    }

    /// This chain with `current` acting on top of it.
    pub fn prepend(current: impl Into<String>, gid: Option<String>, prior: Option<Actor>) -> Self {
        Self {
            sub: current.into(),
            gid,
            act: prior.map(Box::new),
        }
    }

    /// Reads an `act` claim, refusing chains longer than [`MAX_CHAIN_LEN`] or naming an actor
    /// that is not a valid client id.
    pub fn from_claim(value: &serde_json::Value) -> Result<Self, OAuthError> {
        let bad = || OAuthError::invalid_request("the token's act claim is malformed");
        // Check the nesting before deserialising, so a hostile chain costs nothing.
        let mut level = Some(value);
        let mut depth = 0;
        while let Some(v) = level {
            depth += 1;
            if depth > MAX_CHAIN_LEN {
                return Err(bad());
            }
            level = v.get("act");
        }
        let actor: Actor = serde_json::from_value(value.clone()).map_err(|_| bad())?;
        if actor
            .actors()
            .any(|a| !is_valid_client_id(&a.sub) || a.gid.as_deref().is_some_and(str::is_empty))
        {
            return Err(bad());
        }
        Ok(actor)
    }

    /// The claim value, for [`AccessTokenClaims::act`].
    pub fn to_claim(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The validated facts of a subject token, whatever its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub token_type: TokenType,
    pub sub: String,
    pub tenant: String,
    /// The client the subject token was issued to (for an API key, the key id).
    pub client_id: String,
    pub scope: ScopeSet,
    pub gid: String,
    pub act: Option<Actor>,
    /// The subject token's audience, for the audit record.
    pub aud: Option<String>,
    pub expires_at: Timestamp,
    /// Whether `sub` is a service identity (a client-credentials token, or an API key without
    /// a user) rather than a person.
    pub service: bool,
}

impl Subject {
    /// From a Mandate access token the caller has verified (signature, issuer, expiry) and
    /// found not revoked. A token whose `sub` is its `client_id` is a service identity
    /// (client credentials; see `DESIGN.md`, Tokens).
    pub fn from_access_token(claims: &AccessTokenClaims) -> Result<Self, OAuthError> {
        let act = claims.act.as_ref().map(Actor::from_claim).transpose()?;
        Ok(Self {
            token_type: TokenType::AccessToken,
            sub: claims.sub.clone(),
            tenant: claims.tenant.clone(),
            client_id: claims.client_id.clone(),
            scope: claims.scope.clone(),
            gid: claims.gid.clone(),
            act,
            aud: Some(claims.aud.clone()),
            expires_at: Timestamp::from_unix(claims.exp),
            service: claims.sub == claims.client_id,
        })
    }

    /// From a stored API key the caller found by the presented key's hash. The key id serves
    /// as client id and as `gid`: revoking the key must publish a grant revocation for its id,
    /// which then kills every token obtained with it.
    pub fn from_api_key(key: &ApiKeyRecord) -> Self {
        Self {
            token_type: TokenType::ApiKey,
            sub: key.subject().to_owned(),
            tenant: key.tenant_id.clone(),
            client_id: key.id.as_str().to_owned(),
            scope: key.scopes.clone(),
            gid: key.id.as_str().to_owned(),
            act: None,
            aud: None,
            expires_at: key.expires_at,
            service: key.user_id.is_none(),
        }
    }
}

/// The validated facts of an actor token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorToken {
    pub sub: String,
    pub client_id: String,
    pub tenant: String,
    pub gid: String,
    /// Whether the actor token is itself a delegated token (has `act`); refused.
    pub delegated: bool,
}

impl ActorToken {
    /// From a Mandate access token the caller has verified and found not revoked.
    pub fn from_access_token(claims: &AccessTokenClaims) -> Self {
        Self {
            sub: claims.sub.clone(),
            client_id: claims.client_id.clone(),
            tenant: claims.tenant.clone(),
            gid: claims.gid.clone(),
            delegated: claims.act.is_some(),
        }
    }
}

/// One allow rule: this agent may exchange tokens for these audiences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRule {
    /// The agent's client id.
    pub agent: String,
    /// Resource identifiers, compared exactly. No wildcards.
    pub audiences: Vec<String>,
}

/// Which agents may exchange tokens for which audiences, and the chain limits. With no rules,
/// nothing may be exchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangePolicy {
    /// Longest chain of actors in an exchanged token.
    pub max_depth: usize,
    pub rules: Vec<ExchangeRule>,
    /// Whether a service identity's token (client credentials) may be a subject. Off by
    /// default; see the module documentation.
    pub allow_service_subjects: bool,
}

impl Default for ExchangePolicy {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            rules: Vec::new(),
            allow_service_subjects: false,
        }
    }
}

impl ExchangePolicy {
    /// Whether `agent` may obtain exchanged tokens for `audience`.
    pub fn allows(&self, agent: &str, audience: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.agent == agent && r.audiences.iter().any(|a| a == audience))
    }

    /// The depth limit actually applied: the configured one, never above [`MAX_CHAIN_LEN`].
    pub fn effective_max_depth(&self) -> usize {
        self.max_depth.min(MAX_CHAIN_LEN)
    }
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub struct ExchangeInput<'a> {
    pub subject: &'a Subject,
    /// The authenticated requesting agent (with an actor token and no client authentication,
    /// the agent the actor token was issued to).
    pub agent: &'a Agent,
    pub actor_token: Option<&'a ActorToken>,
    pub requested_scope: Option<&'a ScopeSet>,
    /// The audience, resolved by [`crate::resource::select`] (which applies the agent's own
    /// resource allow-list and default).
    pub resource: &'a ResourceServer,
    pub policy: &'a ExchangePolicy,
    pub now: Timestamp,
    /// The new token's lifetime before capping at the subject's expiry.
    pub ttl_seconds: u64,
}

/// The new token's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanged {
    /// Copied from the subject, always.
    pub sub: String,
    /// Copied from the subject, always.
    pub tenant: String,
    /// The agent the new token is issued to.
    pub client_id: String,
    pub audience: String,
    pub scope: ScopeSet,
    /// The subject's grant: revoking it revokes this token.
    pub gid: String,
    /// The delegation chain; `None` only for an API key exchanged by its holder.
    pub act: Option<Actor>,
    /// Every grant this token depends on (the subject's first, then those in the chain), each
    /// once. Check all are active before issuing.
    pub lineage: Vec<String>,
    pub expires_at: Timestamp,
}

impl Exchanged {
    /// The access token claims, ready to sign.
    pub fn claims(&self, issuer: &str, jti: String, now: Timestamp) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: issuer.to_owned(),
            sub: self.sub.clone(),
            aud: self.audience.clone(),
            exp: self.expires_at.unix(),
            iat: now.unix(),
            jti,
            client_id: self.client_id.clone(),
            scope: self.scope.clone(),
            tenant: self.tenant.clone(),
            gid: self.gid.clone(),
            act: self.act.as_ref().map(Actor::to_claim),
        }
    }

    /// Depth of the chain (0 without `act`).
    pub fn depth(&self) -> usize {
        self.act.as_ref().map_or(0, Actor::depth)
    }
}

fn refuse(d: &'static str) -> OAuthError {
    OAuthError::invalid_request(d)
}

/// The new token's scope: what was asked, which must lie within `ceiling`; or the whole
/// ceiling when nothing was asked. Never empty.
fn narrowed(requested: Option<&ScopeSet>, ceiling: ScopeSet) -> Result<ScopeSet, OAuthError> {
    match requested {
        Some(r) => {
            let outside = r.difference(&ceiling);
            if !outside.is_empty() {
                return Err(OAuthError::InvalidScope(
                    format!("the exchanged token cannot carry `{outside}`").into(),
                ));
            }
            if r.is_empty() {
                return Err(OAuthError::InvalidScope("scope is empty".into()));
            }
            Ok(r.clone())
        }
        None if ceiling.is_empty() => Err(OAuthError::InvalidScope(
            "no scope of the subject token is available to this agent for that audience".into(),
        )),
        None => Ok(ceiling),
    }
}

/// Decides an on-behalf-of exchange: may `agent` act for the subject towards `resource`, and
/// with which token. See the module documentation for the rules.
pub fn decide(input: &ExchangeInput<'_>) -> Result<Exchanged, OAuthError> {
    let ExchangeInput {
        subject,
        agent,
        actor_token,
        requested_scope,
        resource,
        policy,
        now,
        ttl_seconds,
    } = *input;
    if agent.disabled {
        return Err(OAuthError::UnauthorizedClient(
            "this client is disabled".into(),
        ));
    }
    if subject.expires_at <= now {
        return Err(refuse("subject_token has expired"));
    }
    if subject.service && !policy.allow_service_subjects {
        return Err(refuse(
            "subject_token represents a service, not a person; exchange acts on behalf of users",
        ));
    }
    if agent
        .tenant_id
        .as_deref()
        .is_some_and(|t| t != subject.tenant)
    {
        return Err(refuse("subject_token belongs to another tenant"));
    }
    let actor_gid = match actor_token {
        None => None,
        Some(a) => {
            if a.tenant != subject.tenant {
                return Err(refuse(
                    "actor_token and subject_token belong to different tenants",
                ));
            }
            if a.client_id != agent.client_id || a.sub != agent.client_id {
                return Err(refuse(
                    "actor_token must represent the requesting agent itself",
                ));
            }
            if a.delegated {
                return Err(refuse("actor_token must not itself be a delegated token"));
            }
            Some(a.gid.clone())
        }
    };
    if !policy.allows(&agent.client_id, &resource.identifier) {
        return Err(OAuthError::InvalidTarget(
            "this agent may not exchange tokens for that audience".into(),
        ));
    }
    // The current actor narrowing again does not lengthen the chain, unless it brings a new
    // grant that the result must also depend on.
    let act = match &subject.act {
        Some(current)
            if current.sub == agent.client_id
                && (actor_gid.is_none() || actor_gid == current.gid) =>
        {
            current.clone()
        }
        prior => Actor::prepend(agent.client_id.clone(), actor_gid, prior.clone()),
    };
    if act.depth() > policy.effective_max_depth() {
        return Err(OAuthError::InvalidRequest(
            format!(
                "delegation chain would exceed {} actors",
                policy.effective_max_depth()
            )
            .into(),
        ));
    }
    let ceiling = subject
        .scope
        .intersection(&agent.max_scopes)
        .intersection(&resource.scopes);
    let scope = narrowed(requested_scope, ceiling)?;
    let mut lineage = vec![subject.gid.clone()];
    for g in act.grant_ids() {
        if !lineage.iter().any(|l| l == g) {
            lineage.push(g.to_owned());
        }
    }
    Ok(Exchanged {
        sub: subject.sub.clone(),
        tenant: subject.tenant.clone(),
        client_id: agent.client_id.clone(),
        audience: resource.identifier.clone(),
        scope,
        gid: subject.gid.clone(),
        act: Some(act),
        lineage,
        expires_at: now.plus_seconds(ttl_seconds).min(subject.expires_at),
    })
}

/// Decides the exchange of an API key by its holder (no agent, no actor token): a short-lived
/// access token for the key's subject, with the key id as `client_id` and `gid`, scopes within
/// the key's and the audience's, and no `act` (the holder is not acting for someone else).
///
/// The caller has found the key by its hash; `key.check_usable` is applied here too.
pub fn decide_api_key(
    key: &ApiKeyRecord,
    requested_scope: Option<&ScopeSet>,
    resource: &ResourceServer,
    now: Timestamp,
    ttl_seconds: u64,
) -> Result<Exchanged, OAuthError> {
    key.check_usable(now)
        .map_err(|e| OAuthError::InvalidRequest(format!("subject_token: {e}").into()))?;
    let scope = narrowed(requested_scope, key.scopes.intersection(&resource.scopes))?;
    Ok(Exchanged {
        sub: key.subject().to_owned(),
        tenant: key.tenant_id.clone(),
        client_id: key.id.as_str().to_owned(),
        audience: resource.identifier.clone(),
        scope,
        gid: key.id.as_str().to_owned(),
        act: None,
        lineage: vec![key.id.as_str().to_owned()],
        expires_at: now.plus_seconds(ttl_seconds).min(key.expires_at),
    })
}

/// RFC 8693 §2.2.1 successful response.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeResponse {
    pub access_token: String,
    /// Always [`ACCESS_TOKEN_TYPE`].
    pub issued_token_type: String,
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

impl fmt::Debug for ExchangeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ExchangeResponse {
    pub fn new(access_token: String, exchanged: &Exchanged, now: Timestamp) -> Self {
        Self {
            access_token,
            issued_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: now.seconds_until(exchanged.expires_at),
            scope: exchanged.scope.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_key::{self, ApiKeyPolicy, NewApiKey};
    use crate::client::{ClientKind, GrantType};
    use crate::random::SeededEntropy;
    use proptest::prelude::*;
    use serde_json::json;

    const CRM: &str = "https://crm.example";

    fn s(x: &str) -> ScopeSet {
        ScopeSet::parse(x).unwrap()
    }

    fn agent(id: &str, max: &str) -> Agent {
        Agent {
            client_id: id.into(),
            name: id.into(),
            kind: ClientKind::Confidential,
            secret_hash: None,
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            max_scopes: s(max),
            tenant_id: None,
            access_token_ttl: 900,
            refresh_token_ttl: 3600,
            default_resource: None,
            allowed_resources: vec![],
            disabled: false,
        }
    }

    fn crm(scopes: &str) -> ResourceServer {
        ResourceServer {
            identifier: CRM.into(),
            name: "CRM".into(),
            scopes: s(scopes),
            client_id: None,
            secret_hash: None,
        }
    }

    fn alice(scope: &str) -> Subject {
        Subject {
            token_type: TokenType::AccessToken,
            sub: "u_alice".into(),
            tenant: "acme".into(),
            client_id: "orchestrator".into(),
            scope: s(scope),
            gid: "g_alice".into(),
            act: None,
            aud: Some("https://orchestrator.example".into()),
            expires_at: Timestamp::from_unix(2000),
            service: false,
        }
    }

    fn allow_all(agents: &[&str]) -> ExchangePolicy {
        ExchangePolicy {
            rules: agents
                .iter()
                .map(|a| ExchangeRule {
                    agent: (*a).into(),
                    audiences: vec![CRM.into()],
                })
                .collect(),
            ..ExchangePolicy::default()
        }
    }

    fn input<'a>(
        subject: &'a Subject,
        agent: &'a Agent,
        resource: &'a ResourceServer,
        policy: &'a ExchangePolicy,
    ) -> ExchangeInput<'a> {
        ExchangeInput {
            subject,
            agent,
            actor_token: None,
            requested_scope: None,
            resource,
            policy,
            now: Timestamp::from_unix(1000),
            ttl_seconds: 300,
        }
    }

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn request_parsing_cases() {
        let key = api_key::ApiKey::generate(&SeededEntropy::new(1));
        let base = format!(
            "grant_type={GRANT_TYPE}&subject_token=s3cr3t-subject&subject_token_type={ACCESS_TOKEN_TYPE}"
        );
        let cases: Vec<(String, Result<(), &str>, &str)> = vec![
            (base.clone(), Ok(()), "minimal"),
            (
                format!(
                    "{base}&resource={CRM}&audience={CRM}&scope=contacts.read&requested_token_type={ACCESS_TOKEN_TYPE}"
                ),
                Ok(()),
                "full",
            ),
            (
                format!("{base}&actor_token=a&actor_token_type={ACCESS_TOKEN_TYPE}"),
                Ok(()),
                "with actor token",
            ),
            (
                format!(
                    "grant_type={GRANT_TYPE}&subject_token={}&subject_token_type={API_KEY_TOKEN_TYPE}",
                    key.expose()
                ),
                Ok(()),
                "API key",
            ),
            (
                format!(
                    "grant_type={GRANT_TYPE}&subject_token=mk_nope&subject_token_type={API_KEY_TOKEN_TYPE}"
                ),
                Err("invalid_request"),
                "bad API key",
            ),
            (
                format!(
                    "grant_type={GRANT_TYPE}&subject_token={}&subject_token_type={API_KEY_TOKEN_TYPE}&actor_token=a&actor_token_type={ACCESS_TOKEN_TYPE}",
                    key.expose()
                ),
                Err("invalid_request"),
                "API key with actor token",
            ),
            (
                "grant_type=client_credentials".into(),
                Err("unsupported_grant_type"),
                "other grant",
            ),
            (
                format!("grant_type={GRANT_TYPE}&subject_token_type={ACCESS_TOKEN_TYPE}"),
                Err("invalid_request"),
                "no subject token",
            ),
            (
                format!("grant_type={GRANT_TYPE}&subject_token=t"),
                Err("invalid_request"),
                "no subject token type",
            ),
            (
                format!(
                    "grant_type={GRANT_TYPE}&subject_token=t&subject_token_type=urn:ietf:params:oauth:token-type:id_token"
                ),
                Err("invalid_request"),
                "unsupported subject type",
            ),
            (
                format!("{base}&actor_token=a"),
                Err("invalid_request"),
                "actor token without type",
            ),
            (
                format!("{base}&actor_token_type={ACCESS_TOKEN_TYPE}"),
                Err("invalid_request"),
                "actor type without token",
            ),
            (
                format!("{base}&actor_token=a&actor_token_type={API_KEY_TOKEN_TYPE}"),
                Err("invalid_request"),
                "API key as actor",
            ),
            (
                format!(
                    "{base}&requested_token_type=urn:ietf:params:oauth:token-type:refresh_token"
                ),
                Err("invalid_request"),
                "refresh token requested",
            ),
            (
                format!("{base}&resource={CRM}&audience=https://other.example"),
                Err("invalid_target"),
                "two audiences",
            ),
            (
                format!("{base}&resource=https://crm.example%23frag"),
                Err("invalid_target"),
                "fragment in resource",
            ),
            (
                format!("{base}&audience=crm"),
                Err("invalid_target"),
                "relative audience",
            ),
            (
                format!("{base}&scope=+"),
                Err("invalid_scope"),
                "empty scope",
            ),
            (
                format!("{base}&scope=a%22b"),
                Err("invalid_scope"),
                "malformed scope",
            ),
            (
                format!("{base}&subject_token={}", "x".repeat(10)),
                Err("invalid_request"),
                "duplicated subject token",
            ),
            (
                format!(
                    "grant_type={GRANT_TYPE}&subject_token={}&subject_token_type={ACCESS_TOKEN_TYPE}",
                    "x".repeat(MAX_TOKEN_LEN + 1)
                ),
                Err("invalid_request"),
                "oversized",
            ),
        ];
        for (body, expected, reason) in cases {
            let got = Params::parse(body.as_bytes()).and_then(|p| ExchangeRequest::parse(&p));
            match (got, expected) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{reason}"),
                (got, _) => panic!("{reason}: unexpected {got:?}"),
            }
        }
        let full =
            ExchangeRequest::parse(&params(&format!("{base}&audience={CRM}&scope=b+a"))).unwrap();
        assert_eq!(full.audience.as_deref(), Some(CRM));
        assert_eq!(full.scope, Some(s("a b")));
        assert_eq!(full.subject_token_type(), TokenType::AccessToken);
        assert!(
            !format!("{full:?}").contains("s3cr3t"),
            "debug hides tokens"
        );
    }

    #[test]
    fn actor_chain_is_nested_rfc8693_json() {
        let chain = Actor::prepend(
            "sub-agent",
            Some("g_sub".into()),
            Some(Actor::new("orchestrator")),
        );
        let v = chain.to_claim();
        assert_eq!(
            v,
            json!({"sub": "sub-agent", "gid": "g_sub", "act": {"sub": "orchestrator"}})
        );
        assert_eq!(Actor::from_claim(&v).unwrap(), chain);
        assert_eq!(chain.depth(), 2);
        assert_eq!(
            chain.actors().map(|a| a.sub.as_str()).collect::<Vec<_>>(),
            ["sub-agent", "orchestrator"]
        );
        assert_eq!(chain.grant_ids().collect::<Vec<_>>(), ["g_sub"]);
        // Unknown members (e.g. iss) are tolerated.
        assert!(Actor::from_claim(&json!({"sub": "a", "iss": "https://x"})).is_ok());
    }

    #[test]
    fn malformed_act_claims_are_refused() {
        let mut deep = json!({"sub": "a"});
        for _ in 0..MAX_CHAIN_LEN {
            deep = json!({"sub": "a", "act": deep});
        }
        for (v, reason) in [
            (json!("agent"), "string"),
            (json!({"act": {"sub": "a"}}), "no sub"),
            (json!({"sub": "a b"}), "invalid client id"),
            (
                json!({"sub": "a", "act": {"sub": 3}}),
                "nested not a string",
            ),
            (json!({"sub": "a", "gid": ""}), "empty gid"),
            (deep, "too deep"),
        ] {
            assert_eq!(
                Actor::from_claim(&v).unwrap_err().code(),
                "invalid_request",
                "{reason}"
            );
        }
    }

    #[test]
    fn orchestrator_then_sub_agent() {
        let resource = crm("contacts.read contacts.write billing.read");
        let orch = agent("orchestrator", "contacts.read contacts.write");
        let sub_agent = agent("sub-agent", "contacts.read billing.read");
        let policy = allow_all(&["orchestrator", "sub-agent"]);
        let subject = alice("contacts.read contacts.write billing.read");

        let first = decide(&input(&subject, &orch, &resource, &policy)).unwrap();
        assert_eq!(first.sub, "u_alice");
        assert_eq!(first.tenant, "acme");
        assert_eq!(first.client_id, "orchestrator");
        assert_eq!(first.scope, s("contacts.read contacts.write"));
        assert_eq!(first.gid, "g_alice");
        assert_eq!(first.act, Some(Actor::new("orchestrator")));
        assert_eq!(first.expires_at, Timestamp::from_unix(1300));
        assert_eq!(first.lineage, ["g_alice"]);

        let claims = first.claims("https://as", "at_1".into(), Timestamp::from_unix(1000));
        let next_subject = Subject::from_access_token(&claims).unwrap();
        let token = ActorToken {
            sub: "sub-agent".into(),
            client_id: "sub-agent".into(),
            tenant: "acme".into(),
            gid: "g_sub".into(),
            delegated: false,
        };
        let narrowed = s("contacts.read");
        let second = decide(&ExchangeInput {
            actor_token: Some(&token),
            requested_scope: Some(&narrowed),
            ..input(&next_subject, &sub_agent, &resource, &policy)
        })
        .unwrap();
        assert_eq!(second.scope, s("contacts.read"));
        assert_eq!(second.client_id, "sub-agent");
        assert_eq!(second.depth(), 2);
        assert_eq!(
            second
                .claims("https://as", "at_2".into(), Timestamp::from_unix(1000))
                .act,
            Some(json!({"sub": "sub-agent", "gid": "g_sub", "act": {"sub": "orchestrator"}}))
        );
        assert_eq!(second.lineage, ["g_alice", "g_sub"]);
        assert_eq!(second.expires_at, Timestamp::from_unix(1300));

        // The orchestrator re-narrowing its own exchanged token keeps the chain as it is.
        let again = decide(&ExchangeInput {
            requested_scope: Some(&narrowed),
            ..input(&next_subject, &orch, &resource, &policy)
        })
        .unwrap();
        assert_eq!(again.depth(), 1);
    }

    #[test]
    fn refusals() {
        let resource = crm("contacts.read contacts.write");
        let orch = agent("orchestrator", "contacts.read");
        let policy = allow_all(&["orchestrator"]);
        let subject = alice("contacts.read");
        let ok = |i: ExchangeInput<'_>| decide(&i).map(|_| ()).map_err(|e| e.code());

        assert_eq!(ok(input(&subject, &orch, &resource, &policy)), Ok(()));

        let wider = s("contacts.read contacts.write");
        assert_eq!(
            ok(ExchangeInput {
                requested_scope: Some(&wider),
                ..input(&subject, &orch, &resource, &policy)
            }),
            Err("invalid_scope"),
            "asking beyond the subject/agent is refused, not trimmed"
        );

        let nothing_shared = alice("billing.read");
        assert_eq!(
            ok(input(&nothing_shared, &orch, &resource, &policy)),
            Err("invalid_scope"),
            "empty intersection"
        );

        assert_eq!(
            ok(input(
                &subject,
                &orch,
                &resource,
                &ExchangePolicy::default()
            )),
            Err("invalid_target"),
            "default deny"
        );
        let other_audience = ResourceServer {
            identifier: "https://billing.example".into(),
            ..crm("contacts.read")
        };
        assert_eq!(
            ok(input(&subject, &orch, &other_audience, &policy)),
            Err("invalid_target"),
            "audience not in the agent's rule"
        );

        let mut service = alice("contacts.read");
        service.sub = "svc".into();
        service.client_id = "svc".into();
        service.service = true;
        assert_eq!(
            ok(input(&service, &orch, &resource, &policy)),
            Err("invalid_request"),
            "service subject"
        );
        let permissive = ExchangePolicy {
            allow_service_subjects: true,
            ..policy.clone()
        };
        assert_eq!(ok(input(&service, &orch, &resource, &permissive)), Ok(()));

        let mut expired = alice("contacts.read");
        expired.expires_at = Timestamp::from_unix(1000);
        assert_eq!(
            ok(input(&expired, &orch, &resource, &policy)),
            Err("invalid_request"),
            "expired subject"
        );

        let mut other_tenant_agent = orch.clone();
        other_tenant_agent.tenant_id = Some("globex".into());
        assert_eq!(
            ok(input(&subject, &other_tenant_agent, &resource, &policy)),
            Err("invalid_request"),
            "agent owned by another tenant"
        );
        let mut own_tenant_agent = orch.clone();
        own_tenant_agent.tenant_id = Some("acme".into());
        assert_eq!(
            ok(input(&subject, &own_tenant_agent, &resource, &policy)),
            Ok(())
        );

        let mut disabled = orch.clone();
        disabled.disabled = true;
        assert_eq!(
            ok(input(&subject, &disabled, &resource, &policy)),
            Err("unauthorized_client")
        );

        let actor = |tenant: &str, client: &str, sub: &str, delegated: bool| ActorToken {
            sub: sub.into(),
            client_id: client.into(),
            tenant: tenant.into(),
            gid: "g_orch".into(),
            delegated,
        };
        for (token, reason) in [
            (
                actor("globex", "orchestrator", "orchestrator", false),
                "actor in another tenant",
            ),
            (
                actor("acme", "other", "other", false),
                "actor token of another agent",
            ),
            (
                actor("acme", "orchestrator", "u_bob", false),
                "actor token is a user's",
            ),
            (
                actor("acme", "orchestrator", "orchestrator", true),
                "delegated actor token",
            ),
        ] {
            assert_eq!(
                ok(ExchangeInput {
                    actor_token: Some(&token),
                    ..input(&subject, &orch, &resource, &policy)
                }),
                Err("invalid_request"),
                "{reason}"
            );
        }
    }

    #[test]
    fn depth_limit() {
        let resource = crm("a");
        let agents: Vec<Agent> = ["a1", "a2", "a3", "a4"]
            .iter()
            .map(|id| agent(id, "a"))
            .collect();
        let policy = allow_all(&["a1", "a2", "a3", "a4"]);
        let mut subject = alice("a");
        for (i, ag) in agents.iter().enumerate() {
            let got = decide(&input(&subject, ag, &resource, &policy));
            if i < DEFAULT_MAX_DEPTH {
                let ex = got.unwrap();
                assert_eq!(ex.depth(), i + 1);
                subject = Subject::from_access_token(&ex.claims(
                    "iss",
                    "j".into(),
                    Timestamp::from_unix(1000),
                ))
                .unwrap();
            } else {
                assert_eq!(got.unwrap_err().code(), "invalid_request");
            }
        }
    }

    #[test]
    fn api_key_exchange() {
        let e = SeededEntropy::new(5);
        let policy = ApiKeyPolicy::default();
        let now = Timestamp::from_unix(1000);
        let created = api_key::create(
            NewApiKey {
                tenant_id: "acme".into(),
                user_id: None,
                name: "sync".into(),
                scopes: s("contacts.read billing.read"),
                expires_at: Timestamp::from_unix(1100),
            },
            &policy,
            now,
            &e,
        )
        .unwrap();
        let key = created.record;
        let resource = crm("contacts.read contacts.write");
        let ex = decide_api_key(&key, None, &resource, now, 900).unwrap();
        assert_eq!(ex.scope, s("contacts.read"));
        assert_eq!(ex.sub, key.id.as_str());
        assert_eq!(ex.gid, key.id.as_str());
        assert_eq!(ex.client_id, key.id.as_str());
        assert_eq!(ex.act, None);
        assert_eq!(
            ex.expires_at,
            Timestamp::from_unix(1100),
            "capped at key expiry"
        );
        let resp = ExchangeResponse::new("tok".into(), &ex, now);
        assert_eq!(resp.expires_in, 100);
        assert_eq!(resp.issued_token_type, ACCESS_TOKEN_TYPE);
        assert!(!format!("{resp:?}").contains("tok"));

        let wider = s("contacts.write");
        assert_eq!(
            decide_api_key(&key, Some(&wider), &resource, now, 900)
                .unwrap_err()
                .code(),
            "invalid_scope"
        );
        let mut revoked = key.clone();
        revoked.revoked_at = Some(now);
        assert_eq!(
            decide_api_key(&revoked, None, &resource, now, 900)
                .unwrap_err()
                .code(),
            "invalid_request"
        );

        // A tenant key is a service subject for agents: refused by default.
        let subject = Subject::from_api_key(&key);
        assert!(subject.service);
        let ag = agent("orchestrator", "contacts.read");
        let p = allow_all(&["orchestrator"]);
        assert!(decide(&input(&subject, &ag, &resource, &p)).is_err());
        // A user's key may be acted on like the user's token.
        let mut users = key.clone();
        users.user_id = Some("u_alice".into());
        let subject = Subject::from_api_key(&users);
        let ex = decide(&input(&subject, &ag, &resource, &p)).unwrap();
        assert_eq!(ex.sub, "u_alice");
        assert_eq!(ex.gid, key.id.as_str());
    }

    #[test]
    fn policy_deserialises_with_defaults_and_refuses_typos() {
        let p: ExchangePolicy =
            serde_json::from_value(json!({"rules": [{"agent": "a", "audiences": [CRM]}]})).unwrap();
        assert_eq!(p.max_depth, DEFAULT_MAX_DEPTH);
        assert!(p.allows("a", CRM));
        assert!(!p.allows("a", "https://crm.example/"));
        assert!(!p.allows("b", CRM));
        assert!(serde_json::from_value::<ExchangePolicy>(json!({"max_dept": 2})).is_err());
    }

    const POOL: [&str; 4] = ["a1", "a2", "a3", "a4"];
    const SCOPES: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

    fn scope_from_bits(bits: u8) -> ScopeSet {
        ScopeSet::from_tokens(
            SCOPES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, s)| *s),
        )
        .unwrap()
    }

    #[derive(Debug, Clone)]
    struct Step {
        agent: usize,
        requested: Option<u8>,
        actor_token: bool,
    }

    fn step() -> impl Strategy<Value = Step> {
        (0..POOL.len(), proptest::option::of(0u8..64), any::<bool>()).prop_map(
            |(agent, requested, actor_token)| Step {
                agent,
                requested,
                actor_token,
            },
        )
    }

    proptest! {
        /// Over random chains of exchanges by random agents: no token ever widens scope,
        /// changes subject or tenant, drops the original grant, or exceeds the depth limit.
        #[test]
        fn chains_only_narrow(
            start in 0u8..64,
            maxes in proptest::collection::vec(0u8..64, POOL.len()),
            resource_bits in 0u8..64,
            max_depth in 0usize..5,
            steps in proptest::collection::vec(step(), 1..10),
        ) {
            let agents: Vec<Agent> = POOL
                .iter()
                .zip(&maxes)
                .map(|(id, m)| Agent { max_scopes: scope_from_bits(*m), ..agent(id, "") })
                .collect();
            let resource = ResourceServer { scopes: scope_from_bits(resource_bits), ..crm("") };
            let policy = ExchangePolicy { max_depth, ..allow_all(&POOL) };
            let original = Subject { scope: scope_from_bits(start), ..alice("") };
            let mut current = original.clone();
            let now = Timestamp::from_unix(1000);
            for st in steps {
                let ag = &agents[st.agent];
                let requested = st.requested.map(scope_from_bits);
                let token = ActorToken {
                    sub: ag.client_id.clone(),
                    client_id: ag.client_id.clone(),
                    tenant: "acme".into(),
                    gid: format!("g_{}", ag.client_id),
                    delegated: false,
                };
                let result = decide(&ExchangeInput {
                    actor_token: st.actor_token.then_some(&token),
                    requested_scope: requested.as_ref(),
                    ..input(&current, ag, &resource, &policy)
                });
                let Ok(ex) = result else { continue };
                prop_assert!(ex.scope.is_subset(&current.scope));
                prop_assert!(ex.scope.is_subset(&ag.max_scopes));
                prop_assert!(ex.scope.is_subset(&resource.scopes));
                prop_assert!(!ex.scope.is_empty());
                if let Some(r) = &requested {
                    prop_assert_eq!(&ex.scope, r);
                }
                prop_assert_eq!(&ex.sub, &original.sub);
                prop_assert_eq!(&ex.tenant, &original.tenant);
                prop_assert_eq!(&ex.gid, &original.gid);
                prop_assert_eq!(ex.lineage.first(), Some(&original.gid));
                prop_assert!(ex.depth() >= 1 && ex.depth() <= max_depth);
                prop_assert!(ex.depth() <= current.act.as_ref().map_or(0, Actor::depth) + 1);
                prop_assert_eq!(ex.act.as_ref().map(|a| a.sub.as_str()), Some(ag.client_id.as_str()));
                prop_assert!(ex.expires_at <= current.expires_at);
                let claims = ex.claims("https://as", "j".into(), now);
                current = Subject::from_access_token(&claims).unwrap();
            }
        }

        #[test]
        fn act_claim_parsing_never_panics(v in arb_json(4)) {
            let _ = Actor::from_claim(&v);
        }
    }

    fn arb_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            "[a-z ]{0,6}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(depth, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("sub".to_owned()),
                        Just("act".to_owned()),
                        Just("gid".to_owned())
                    ],
                    inner,
                    0..3
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
