//! The guard: configuration, discovery at build time, and token validation.
//!
//! [`Guard::validate`] is the whole decision for one request: parse the `Authorization` header,
//! look the token up in the verified-token cache (keyed by its SHA-256, never the token), or
//! verify it (signature with the issuer's published keys, RFC 9068 `typ`, `iss`, `aud`,
//! `exp`/`iat`/`nbf` with leeway), then consult the revocation set on every call, cached or
//! not. The tower layers in [`crate::layer`] only move headers and render the outcome.
//!
//! A bearer value that is a Mandate API key (`mk_...`) is refused with `invalid_token` unless
//! the guard was built with [`GuardBuilder::accept_api_keys`] (migration mode, see
//! [`crate::api_key`]), in which case the issuer is asked about it by introspection.

use crate::api_key::{self, Answer, ApiKeySettings, ApiKeys};
use crate::cache::{CachedPrincipal, TokenCache};
use crate::error::GuardError;
use crate::feed::FeedCredential;
use crate::keys::{self, IssuerMetadata, KeySet};
use crate::metadata::{self, ProtectedResourceMetadata};
use crate::principal::Principal;
use crate::revocation::RevocationSet;
use crate::scope::{Requirement, ScopeHierarchy};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use mandate_core::api_key::ApiKey;
use mandate_core::challenge::BearerError;
use mandate_core::jwt::{self, Expectations, JwtError, MAX_TOKEN_LEN};
use mandate_core::scope::is_valid_token;
use mandate_core::time::SystemClock;
use mandate_core::time::{Clock, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// Validates Mandate access tokens for one resource. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    resource: String,
    metadata_url: String,
    metadata: ProtectedResourceMetadata,
    /// RFC 9728 §3.1 path (`/.well-known/oauth-protected-resource{path}`) served by the router.
    metadata_path: String,
    keys: KeySet,
    cache: TokenCache,
    revocations: Arc<RevocationSet>,
    hierarchy: ScopeHierarchy,
    clock: Arc<dyn Clock>,
    leeway_seconds: i64,
    /// Where revocations are published, from the issuer's metadata (or configured).
    feed_endpoint: Option<String>,
    /// The issuer's RFC 7662 endpoint, asked while the feed is down.
    introspection_endpoint: Option<String>,
    /// Set once [`Guard::follow_revocations`] starts a subscriber.
    feed: std::sync::OnceLock<Arc<crate::feed::FeedLink>>,
    /// How long the feed may be down before every token is also introspected.
    feed_grace: Duration,
    /// How long the feed may stay silent before the subscriber reconnects.
    feed_read_timeout: Duration,
    /// Accept JWT-valid tokens when neither the feed nor introspection can vouch for them.
    fail_open: bool,
    /// How long a revoked grant, user or agent is remembered: at least the longest access
    /// token lifetime, so no token it covers can outlive the memory of its revocation.
    revocation_retention: Duration,
    /// Migration mode: raw API keys checked by introspection (off unless configured).
    api_keys: Option<ApiKeys>,
    /// Where denial reports go, from the issuer's metadata (or configured).
    report_endpoint: Option<String>,
    /// Set once [`Guard::report_denials`] starts a reporter; refusals are queued here.
    reporter: std::sync::OnceLock<Arc<crate::report::ReportQueue>>,
}

/// A refusal and, when the credential was verified before it was refused (a revoked, expired
/// or under-scoped token, a known API key), whose it was: the attribution a denial report may
/// carry. A token whose signature did not verify is never attributed.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub error: BearerError,
    pub verified: Option<Arc<Principal>>,
}

impl From<BearerError> for Refusal {
    fn from(error: BearerError) -> Self {
        Self {
            error,
            verified: None,
        }
    }
}

impl Refusal {
    fn of(error: BearerError, principal: &Arc<Principal>) -> Self {
        Self {
            error,
            verified: Some(principal.clone()),
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("issuer", &self.inner.issuer)
            .field("resource", &self.inner.resource)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Guard`]; [`GuardBuilder::build`] performs discovery.
pub struct GuardBuilder {
    issuer: String,
    resource: String,
    leeway_seconds: i64,
    jwks_refresh_min_interval: Duration,
    cache_capacity: u64,
    clock: Arc<dyn Clock>,
    hierarchy: ScopeHierarchy,
    implications: Vec<(String, String)>,
    scopes_supported: Vec<String>,
    http: Option<reqwest::Client>,
    revocation_retention: Duration,
    feed_endpoint: Option<String>,
    report_endpoint: Option<String>,
    feed_grace: Duration,
    feed_read_timeout: Duration,
    fail_open: bool,
    api_key_credential: Option<FeedCredential>,
    api_key_active_ttl: Duration,
    api_key_inactive_ttl: Duration,
}

impl Guard {
    /// Starts configuring a guard for `resource` (its RFC 8707 identifier, the tokens' `aud`)
    /// trusting tokens from `issuer`.
    pub fn builder(issuer: &str, resource: &str) -> GuardBuilder {
        GuardBuilder {
            issuer: issuer.to_owned(),
            resource: resource.to_owned(),
            leeway_seconds: 30,
            jwks_refresh_min_interval: Duration::from_secs(30),
            cache_capacity: 100_000,
            clock: Arc::new(SystemClock),
            hierarchy: ScopeHierarchy::new(),
            implications: Vec::new(),
            scopes_supported: Vec::new(),
            http: None,
            revocation_retention: Duration::from_secs(24 * 60 * 60),
            feed_endpoint: None,
            report_endpoint: None,
            feed_grace: Duration::from_secs(5),
            feed_read_timeout: crate::feed::READ_TIMEOUT,
            fail_open: false,
            api_key_credential: None,
            api_key_active_ttl: api_key::DEFAULT_ACTIVE_TTL,
            api_key_inactive_ttl: api_key::DEFAULT_INACTIVE_TTL,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The RFC 9728 metadata URL every challenge carries.
    pub fn metadata_url(&self) -> &str {
        &self.inner.metadata_url
    }

    /// The path the metadata document is served at (see [`Guard::metadata_router`]).
    pub fn metadata_path(&self) -> &str {
        &self.inner.metadata_path
    }

    pub fn protected_resource_metadata(&self) -> &ProtectedResourceMetadata {
        &self.inner.metadata
    }

    /// Revoked grants; the revocation feed subscriber writes here, and so may tests.
    pub(crate) fn feed_endpoint(&self) -> Option<&str> {
        self.inner.feed_endpoint.as_deref()
    }

    pub(crate) fn report_endpoint(&self) -> Option<&str> {
        self.inner.report_endpoint.as_deref()
    }

    /// Records the running reporter's queue; only the first one counts.
    pub(crate) fn attach_reporter(&self, queue: Arc<crate::report::ReportQueue>) -> bool {
        self.inner.reporter.set(queue).is_ok()
    }

    /// The running reporter's queue, if denials are reported.
    pub(crate) fn reporter(&self) -> Option<&Arc<crate::report::ReportQueue>> {
        self.inner.reporter.get()
    }

    pub(crate) fn introspection_endpoint(&self) -> Option<&str> {
        self.inner.introspection_endpoint.as_deref()
    }

    /// Records the running subscriber; only the first one counts.
    pub(crate) fn attach_feed(&self, link: Arc<crate::feed::FeedLink>) -> bool {
        self.inner.feed.set(link).is_ok()
    }

    pub(crate) fn feed_read_timeout(&self) -> Duration {
        self.inner.feed_read_timeout
    }

    pub(crate) fn revocation_retention(&self) -> Duration {
        self.inner.revocation_retention
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub fn revocations(&self) -> &Arc<RevocationSet> {
        &self.inner.revocations
    }

    pub fn scope_hierarchy(&self) -> &ScopeHierarchy {
        &self.inner.hierarchy
    }

    /// Checks a principal's scopes (expanded by the configured hierarchy) against `requirement`.
    pub fn check(
        &self,
        principal: &Principal,
        requirement: &Requirement,
    ) -> Result<(), BearerError> {
        requirement.check(&principal.scopes, &self.inner.hierarchy)
    }

    /// Validates a request's headers: exactly one `Authorization` header holding a valid
    /// bearer token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, BearerError> {
        self.authenticate_attributed(headers)
            .await
            .map_err(|r| r.error)
    }

    /// [`Guard::authenticate`], keeping whose verified credential was refused.
    pub(crate) async fn authenticate_attributed(
        &self,
        headers: &HeaderMap,
    ) -> Result<Principal, Refusal> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if headers.contains_key(AUTHORIZATION) {
                BearerError::InvalidRequest("more than one Authorization header")
            } else {
                BearerError::Missing
            }
            .into());
        };
        let value = value
            .to_str()
            .map_err(|_| BearerError::InvalidToken("the Authorization header is malformed"))?;
        let token = bearer_token(value)?;
        self.validate_attributed(token).await
    }

    /// Validates an `Authorization` header value (`Bearer <token>`, RFC 6750 §2.1).
    pub async fn validate(&self, authorization: &str) -> Result<Principal, BearerError> {
        let token = bearer_token(authorization)?;
        self.validate_token(token).await
    }

    /// Validates a bare access token.
    pub async fn validate_token(&self, token: &str) -> Result<Principal, BearerError> {
        self.validate_attributed(token).await.map_err(|r| r.error)
    }

    async fn validate_attributed(&self, token: &str) -> Result<Principal, Refusal> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(BearerError::InvalidToken("the token is too long").into());
        }
        if ApiKey::looks_like(token) {
            return self.validate_api_key(token).await;
        }
        let inner = &*self.inner;
        let now = inner.clock.now().unix();
        let key = TokenCache::key(token);
        let entry = match inner.cache.get(&key) {
            Some(entry) => {
                check_window(
                    entry.not_before,
                    entry.principal.expires_at.unix(),
                    now,
                    inner.leeway_seconds,
                )
                .map_err(|e| Refusal::of(e, &entry.principal))?;
                entry
            }
            None => {
                let entry = self.verify(token, now).await?;
                inner
                    .cache
                    .insert(key, entry.clone(), now, inner.leeway_seconds);
                entry
            }
        };
        if let Some(why) = inner.revocations.refusal(&entry.principal) {
            return Err(Refusal::of(
                BearerError::InvalidToken(why),
                &entry.principal,
            ));
        }
        if inner.revocations.is_key_withdrawn(&entry.kid) {
            return Err(Refusal::of(
                BearerError::InvalidToken("the key that signed the token has been withdrawn"),
                &entry.principal,
            ));
        }
        if let Some(feed) = inner.feed.get()
            && feed.down_longer_than(now, inner.feed_grace)
        {
            feed.confirm_active(token, inner.fail_open)
                .await
                .map_err(|e| Refusal::of(e, &entry.principal))?;
        }
        Ok((*entry.principal).clone())
    }

    /// A raw API key presented as a bearer token (migration mode, see [`crate::api_key`]).
    async fn validate_api_key(&self, token: &str) -> Result<Principal, Refusal> {
        let inner = &*self.inner;
        let Some(mode) = &inner.api_keys else {
            return Err(BearerError::InvalidToken(
                "API keys are not accepted here; exchange the key for an access token",
            )
            .into());
        };
        let key = ApiKey::parse(token)
            .map_err(|_| BearerError::InvalidToken("the API key is malformed"))?;
        // Known revoked: refused without asking anyone.
        if inner.revocations.is_revoked(key.id().as_str()) {
            return Err(BearerError::InvalidToken("the API key has been revoked").into());
        }
        let now = inner.clock.now().unix();
        let digest = TokenCache::key(token);
        let feed_down = inner
            .feed
            .get()
            .is_some_and(|feed| feed.down_longer_than(now, inner.feed_grace));
        let inactive = BearerError::InvalidToken("the API key is not active");
        let cached = mode.cached(&digest);
        let principal = match &cached {
            Some(Answer::Inactive) => return Err(inactive.into()),
            Some(Answer::Active(p)) if !feed_down => p.clone(),
            _ => match mode.introspect(&key, &inner.resource).await {
                Ok(Some(p)) => {
                    let p = Arc::new(p);
                    mode.remember(digest, Answer::Active(p.clone()));
                    p
                }
                Ok(None) => {
                    mode.remember(digest, Answer::Inactive);
                    return Err(inactive.into());
                }
                Err(why) => {
                    tracing::warn!(key_id = %key.id(), %why, "an API key could not be checked");
                    match cached {
                        Some(Answer::Active(p)) if inner.fail_open => p,
                        _ => {
                            return Err(BearerError::InvalidToken(
                                "the API key cannot be checked right now",
                            )
                            .into());
                        }
                    }
                }
            },
        };
        if principal.expires_at.unix() <= now {
            return Err(Refusal::of(
                BearerError::InvalidToken("the API key has expired"),
                &principal,
            ));
        }
        if let Some(why) = inner.revocations.refusal(&principal) {
            return Err(Refusal::of(BearerError::InvalidToken(why), &principal));
        }
        Ok((*principal).clone())
    }

    /// Full verification of a token not in the cache.
    async fn verify(&self, token: &str, now: i64) -> Result<CachedPrincipal, Refusal> {
        let inner = &*self.inner;
        let keys = inner.keys.current();
        let verified = match jwt::verify_with_key(token, &keys) {
            Err(JwtError::UnknownKey) if declares_supported_alg(token) => {
                match inner.keys.refetch(&keys).await {
                    Some(fresh) => {
                        jwt::verify_with_key(token, &fresh).map(|(c, k)| (c, k.kid().to_owned()))
                    }
                    None => Err(JwtError::UnknownKey),
                }
            }
            other => other.map(|(c, k)| (c, k.kid().to_owned())),
        };
        let (claims, kid) = verified.map_err(rejection)?;
        // The signature verified: from here on a refusal may name whose token it was.
        let checked = Expectations {
            issuer: &inner.issuer,
            audience: Some(&inner.resource),
            now: Timestamp::from_unix(now),
            leeway_seconds: inner.leeway_seconds,
        }
        .check(&claims);
        // RFC 7519 §4.1.5 `nbf`: core's claims do not carry it, so read it from the payload.
        let not_before = claims.iat.max(nbf(token).unwrap_or(i64::MIN));
        let principal = Arc::new(Principal::from(claims));
        checked.map_err(|e| Refusal::of(rejection(e), &principal))?;
        check_window(
            not_before,
            principal.expires_at.unix(),
            now,
            inner.leeway_seconds,
        )
        .map_err(|e| Refusal::of(e, &principal))?;
        Ok(CachedPrincipal {
            principal,
            not_before,
            kid: kid.into(),
        })
    }
}

/// The one mapping from verification failures to `invalid_token` descriptions.
fn rejection(e: JwtError) -> BearerError {
    BearerError::InvalidToken(match e {
        JwtError::Malformed => "the token is malformed",
        JwtError::WrongType => "the token is not an at+jwt access token",
        JwtError::UnknownKey => "the token's algorithm or key is not accepted",
        JwtError::BadSignature => "the token signature is invalid",
        JwtError::Expired => "the token has expired",
        JwtError::NotYetValid => "the token is not valid yet",
        JwtError::WrongIssuer => "the token is from another issuer",
        JwtError::WrongAudience => "the token is not for this resource",
        JwtError::BadKey | JwtError::SigningFailed => "the token could not be verified",
    })
}

/// `exp` and `iat`/`nbf` against `now`, with leeway (also applied to cached entries, since the
/// cache's own expiry runs on its own clock, not the injected one).
fn check_window(not_before: i64, exp: i64, now: i64, leeway: i64) -> Result<(), BearerError> {
    if exp.saturating_add(leeway) <= now {
        return Err(rejection(JwtError::Expired));
    }
    if not_before.saturating_sub(leeway) > now {
        return Err(rejection(JwtError::NotYetValid));
    }
    Ok(())
}

/// Extracts the token from `Bearer <b64token>` (RFC 6750 §2.1; scheme case-insensitive).
/// Another scheme counts as no bearer token (a bare challenge, RFC 6750 §3.1); a malformed
/// `Bearer` value is `invalid_token`.
pub(crate) fn bearer_token(value: &str) -> Result<&str, BearerError> {
    let malformed = BearerError::InvalidToken("the Authorization header is malformed");
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(malformed);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                BearerError::Missing
            } else {
                malformed
            },
        );
    }
    let token = rest.trim_start_matches(' ');
    if token.len() > MAX_TOKEN_LEN {
        return Err(BearerError::InvalidToken("the token is too long"));
    }
    let body = token.trim_end_matches('=');
    let b64token = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !b64token {
        return Err(malformed);
    }
    Ok(token)
}

/// Whether the token's header names an algorithm the guard could have a key for; only then
/// is an unknown `kid` worth a JWKS refetch (`none` and HMAC never are).
fn declares_supported_alg(token: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Alg {
        alg: String,
    }
    decode_segment::<Alg>(token.split('.').next().unwrap_or(""))
        .is_some_and(|h| h.alg.parse::<jwt::Algorithm>().is_ok())
}

/// The payload's `nbf`, if present and numeric.
fn nbf(token: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Nbf {
        #[serde(default)]
        nbf: Option<i64>,
    }
    decode_segment::<Nbf>(token.split('.').nth(1)?)?.nbf
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

impl GuardBuilder {
    /// Clock skew tolerated on `exp`, `iat` and `nbf` (default 30 s).
    pub fn leeway_seconds(mut self, seconds: u32) -> Self {
        self.leeway_seconds = i64::from(seconds);
        self
    }

    /// Minimum time between two JWKS refetches triggered by unknown `kid`s (default 30 s).
    pub fn jwks_refresh_min_interval(mut self, interval: Duration) -> Self {
        self.jwks_refresh_min_interval = interval;
        self
    }

    /// How long revoked grants, users and agents are remembered (default 24 h; it must be at
    /// least the longest access-token lifetime the issuer grants).
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.revocation_retention = retention;
        self
    }

    /// Report denials to this URL instead of the issuer's `denial_report_endpoint` (see
    /// [`Guard::report_denials`]).
    pub fn denial_report_endpoint(mut self, url: &str) -> Self {
        self.report_endpoint = Some(url.to_owned());
        self
    }

    /// Follow revocations at this URL instead of the issuer's `revocation_feed_endpoint`.
    pub fn revocation_feed_endpoint(mut self, url: &str) -> Self {
        self.feed_endpoint = Some(url.to_owned());
        self
    }

    /// How long the revocation feed may be down before every token is also checked by
    /// introspection (default 5 s).
    pub fn feed_grace(mut self, grace: Duration) -> Self {
        self.feed_grace = grace;
        self
    }

    /// How long the revocation feed may stay silent (no event, no keep-alive) before the
    /// subscriber treats the link as dead and reconnects (default 45 s; the server sends a
    /// keep-alive every 15 s). Also bounds the wait for the feed's response headers.
    pub fn feed_read_timeout(mut self, timeout: Duration) -> Self {
        self.feed_read_timeout = timeout;
        self
    }

    /// While the feed is down and introspection fails too, accept tokens that are otherwise
    /// valid (default: refuse them, fail-closed).
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// Migration mode (off by default): also accept raw Mandate API keys (`mk_...`) as bearer
    /// tokens, checking each at the issuer's introspection endpoint with `credential` (this
    /// resource server's own credential, the one it follows the revocation feed with). The
    /// principal of a key has [`Principal::api_key_id`] set. See [`crate::api_key`].
    pub fn accept_api_keys(mut self, credential: FeedCredential) -> Self {
        self.api_key_credential = Some(credential);
        self
    }

    /// How long an API key's introspection answer is reused in migration mode: an active one
    /// (default 5 s) and an inactive one (default 2 s). Zero: ask every time. Revocations on
    /// the feed apply to cached keys at once whatever these are.
    pub fn api_key_cache_ttl(mut self, active: Duration, inactive: Duration) -> Self {
        self.api_key_active_ttl = active;
        self.api_key_inactive_ttl = inactive;
        self
    }

    /// Maximum number of verified tokens kept (default 100,000).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Where "now" comes from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Declares that `broader` implies `narrower` (e.g. `contacts.write` → `contacts.read`).
    pub fn scope_implies(mut self, broader: &str, narrower: &str) -> Self {
        self.implications
            .push((broader.to_owned(), narrower.to_owned()));
        self
    }

    /// The scopes listed as `scopes_supported` in the RFC 9728 document.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The HTTP client for discovery and JWKS (default: 5 s connect, 10 s total, no redirects).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Fetches the issuer's RFC 8414 metadata, checks its `issuer` is exactly the configured
    /// one (RFC 8414 §3.3), and fetches its JWKS.
    pub async fn build(self) -> Result<Guard, GuardError> {
        let issuer_url = metadata::split_url(&self.issuer)?;
        let resource_url = metadata::split_url(&self.resource)?;
        let mut hierarchy = self.hierarchy;
        for (broader, narrower) in &self.implications {
            for s in [broader, narrower] {
                if !is_valid_token(s) {
                    return Err(GuardError::InvalidScope(s.clone()));
                }
            }
            hierarchy.add(broader, narrower);
        }
        if let Some(bad) = self.scopes_supported.iter().find(|s| !is_valid_token(s)) {
            return Err(GuardError::InvalidScope(bad.clone()));
        }
        let http = match self.http {
            Some(c) => c,
            None => reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|source| GuardError::Fetch {
                    url: self.issuer.clone(),
                    source,
                })?,
        };
        let discovery = metadata::issuer_metadata_url(&issuer_url);
        let as_meta: IssuerMetadata = keys::fetch_json(&http, &discovery).await?;
        if as_meta.issuer != self.issuer {
            return Err(GuardError::IssuerMismatch {
                expected: self.issuer,
                found: as_meta.issuer,
            });
        }
        metadata::split_url(&as_meta.jwks_uri)?;
        let initial = keys::fetch_keys(&http, &as_meta.jwks_uri).await?;
        let api_keys = match self.api_key_credential {
            None => None,
            Some(credential) => {
                let endpoint = as_meta
                    .introspection_endpoint
                    .clone()
                    .ok_or_else(|| GuardError::NoIntrospectionEndpoint(self.issuer.clone()))?;
                metadata::split_url(&endpoint)?;
                Some(ApiKeys::new(
                    http.clone(),
                    Some(endpoint),
                    ApiKeySettings {
                        credential,
                        active_ttl: self.api_key_active_ttl,
                        inactive_ttl: self.api_key_inactive_ttl,
                    },
                ))
            }
        };
        let key_set = KeySet::new(
            http,
            as_meta.jwks_uri,
            initial,
            self.jwks_refresh_min_interval,
        );
        let metadata_doc = ProtectedResourceMetadata {
            resource: self.resource.clone(),
            authorization_servers: vec![self.issuer.clone()],
            scopes_supported: self.scopes_supported,
            bearer_methods_supported: vec!["header".to_owned()],
        };
        Ok(Guard {
            inner: Arc::new(Inner {
                metadata_url: metadata::metadata_url(&resource_url),
                metadata_path: format!("{}{}", metadata::WELL_KNOWN, resource_url.path),
                metadata: metadata_doc,
                issuer: self.issuer,
                resource: self.resource,
                keys: key_set,
                cache: TokenCache::new(self.cache_capacity),
                revocations: Arc::new(RevocationSet::new()),
                hierarchy,
                clock: self.clock,
                leeway_seconds: self.leeway_seconds,
                feed_endpoint: self.feed_endpoint.or(as_meta.revocation_feed_endpoint),
                report_endpoint: self.report_endpoint.or(as_meta.denial_report_endpoint),
                reporter: std::sync::OnceLock::new(),
                introspection_endpoint: as_meta.introspection_endpoint,
                feed: std::sync::OnceLock::new(),
                feed_grace: self.feed_grace,
                feed_read_timeout: self.feed_read_timeout,
                fail_open: self.fail_open,
                revocation_retention: self.revocation_retention,
                api_keys,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_cases() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        let cases: Vec<(&str, Result<&str, &str>, &str)> = vec![
            ("Bearer abc.def.ghi", Ok("abc.def.ghi"), "plain"),
            ("bearer abc", Ok("abc"), "scheme is case-insensitive"),
            ("BEARER  abc==", Ok("abc=="), "extra spaces and padding"),
            (
                "Basic dXNlcjpwdw==",
                Err("missing"),
                "other scheme is no bearer token",
            ),
            ("Bearer", Err("invalid"), "no token"),
            ("Bearer ", Err("invalid"), "empty token"),
            ("Bearer a b", Err("invalid"), "space inside"),
            ("Bearer a\"b", Err("invalid"), "quote"),
            ("Bearer a=b", Err("invalid"), "padding inside"),
            ("garbage", Err("invalid"), "no scheme"),
            ("!!! x", Err("invalid"), "garbage scheme"),
            (long.as_str(), Err("invalid"), "oversized"),
        ];
        for (value, expected, reason) in cases {
            let got = bearer_token(value).map_err(|e| match e {
                BearerError::Missing => "missing",
                BearerError::InvalidToken(_) => "invalid",
                _ => "other",
            });
            assert_eq!(got, expected, "{reason}");
        }
    }

    #[test]
    fn time_window_applies_leeway() {
        assert!(check_window(100, 200, 150, 0).is_ok());
        assert!(check_window(100, 200, 200, 0).is_err());
        assert!(check_window(100, 200, 229, 30).is_ok());
        assert!(check_window(100, 200, 80, 30).is_ok());
        assert!(check_window(100, 200, 69, 30).is_err());
        assert!(check_window(i64::MIN, i64::MAX, 0, i64::MAX).is_ok());
    }
}
