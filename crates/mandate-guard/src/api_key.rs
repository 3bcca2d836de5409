//! Migration mode: raw Mandate API keys presented as bearer tokens.
//!
//! Resource servers normally only see access tokens; an integration holding an API key
//! exchanges it at the token endpoint first. During a migration, old integrations still send
//! the key itself. With [`GuardBuilder::accept_api_keys`](crate::GuardBuilder::accept_api_keys)
//! the guard accepts such a key by asking the issuer's RFC 7662 introspection endpoint with the
//! resource server's own credential (the one it follows the revocation feed with):
//!
//! - The key's shape and checksum are checked locally first, so typos and garbage never leave
//!   the guard; a key whose id (derived locally, `mkid_...`) the revocation feed has named is
//!   refused without asking.
//! - Answers are cached briefly, keyed by the SHA-256 of the key (never the key): an active
//!   one for [`DEFAULT_ACTIVE_TTL`], an inactive one for [`DEFAULT_INACTIVE_TTL`] (both
//!   configurable). Every use, cached or not, is still checked against the revocation set
//!   (the key id is the principal's `grant_id`), so a revoked key is refused within the feed's
//!   latency even while its answer is cached. While the feed has been down longer than the
//!   guard's `feed_grace`, cached active answers are not trusted and the key is asked about
//!   on every use.
//! - The issuer is the only one who can vouch for a key, so when it cannot be asked (down,
//!   slow, an error or a malformed answer) the key is refused with `401 invalid_token`,
//!   exactly as the feed's fail-closed fallback refuses a JWT it cannot check (RFC 6750 §3.1:
//!   the credential cannot be accepted; the client may retry). With `fail_open`, an active
//!   answer still in the cache is used instead of refusing.
//! - Each answer the issuer gives is a recorded use of the key (its last-used time and an
//!   `api_key.used` audit event naming the key id and this resource), at most once per cache
//!   lifetime per key and guard.
//!
//! The key never appears in a log line, an error or a challenge.

use crate::feed::FeedCredential;
use crate::principal::Principal;
use mandate_core::api_key::ApiKey;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use moka::Expiry;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an active answer is reused by default.
pub const DEFAULT_ACTIVE_TTL: Duration = Duration::from_secs(5);
/// How long an inactive answer is reused by default.
pub const DEFAULT_INACTIVE_TTL: Duration = Duration::from_secs(2);
/// The `token_type_hint` sent with a key (the server's `token_type` for keys).
pub const TOKEN_TYPE_HINT: &str = "mandate_api_key";
/// How long one introspection may take before the key is judged uncheckable.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// Most keys whose answers are remembered.
const CACHE_CAPACITY: u64 = 10_000;
/// Introspection answers larger than this are not believed.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Migration-mode settings, as configured on the builder.
#[derive(Clone)]
pub(crate) struct ApiKeySettings {
    pub credential: FeedCredential,
    pub active_ttl: Duration,
    pub inactive_ttl: Duration,
}

/// A remembered answer.
#[derive(Clone)]
pub(crate) enum Answer {
    Active(Arc<Principal>),
    Inactive,
}

#[derive(Clone)]
struct Entry {
    answer: Answer,
    ttl: Duration,
}

struct ForTtl;

impl Expiry<[u8; 32], Entry> for ForTtl {
    fn expire_after_create(&self, _: &[u8; 32], entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Why the issuer's answer could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unverifiable {
    #[error("the issuer offers no introspection endpoint")]
    NoEndpoint,
    #[error("introspection unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("introspection answered HTTP {0}")]
    Status(u16),
    #[error("introspection answer is not usable: {0}")]
    BadAnswer(&'static str),
}

/// The running migration mode of one guard.
pub(crate) struct ApiKeys {
    http: reqwest::Client,
    credential: FeedCredential,
    endpoint: Option<String>,
    cache: Cache<[u8; 32], Entry>,
    active_ttl: Duration,
    inactive_ttl: Duration,
}

/// The fields of an RFC 7662 answer the guard needs.
#[derive(serde::Deserialize)]
struct Introspected {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    gid: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

impl ApiKeys {
    pub fn new(http: reqwest::Client, endpoint: Option<String>, settings: ApiKeySettings) -> Self {
        Self {
            http,
            credential: settings.credential,
            endpoint,
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(ForTtl)
                .build(),
            active_ttl: settings.active_ttl,
            inactive_ttl: settings.inactive_ttl,
        }
    }

    pub fn cached(&self, digest: &[u8; 32]) -> Option<Answer> {
        self.cache.get(digest).map(|e| e.answer)
    }

    /// Remembers a definite answer for its configured time (a zero time: not at all).
    pub fn remember(&self, digest: [u8; 32], answer: Answer) {
        let ttl = match answer {
            Answer::Active(_) => self.active_ttl,
            Answer::Inactive => self.inactive_ttl,
        };
        if !ttl.is_zero() {
            self.cache.insert(digest, Entry { answer, ttl });
        }
    }

    /// Asks the issuer about `key` as `resource`. `Ok(None)`: the issuer says the key is not
    /// active here (or describes a different key or resource, which it must not).
    pub async fn introspect(
        &self,
        key: &ApiKey,
        resource: &str,
    ) -> Result<Option<Principal>, Unverifiable> {
        let endpoint = self.endpoint.as_deref().ok_or(Unverifiable::NoEndpoint)?;
        let mut resp = self
            .http
            .post(endpoint)
            .basic_auth(&self.credential.client_id, Some(&self.credential.secret))
            .form(&[
                ("token", key.expose()),
                ("token_type_hint", TOKEN_TYPE_HINT),
            ])
            .timeout(INTROSPECTION_TIMEOUT)
            .send()
            .await
            .map_err(Unverifiable::Unreachable)?;
        if !resp.status().is_success() {
            return Err(Unverifiable::Status(resp.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(Unverifiable::Unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Unverifiable::BadAnswer("too large"));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Introspected =
            serde_json::from_slice(&body).map_err(|_| Unverifiable::BadAnswer("not JSON"))?;
        principal(answer, key, resource)
    }
}

/// Maps an active answer to a principal, checking it describes this key at this resource.
fn principal(
    a: Introspected,
    key: &ApiKey,
    resource: &str,
) -> Result<Option<Principal>, Unverifiable> {
    if !a.active {
        return Ok(None);
    }
    let id = key.id();
    if a.gid.as_deref() != Some(id.as_str()) || a.aud.as_deref() != Some(resource) {
        // Active, but for another key or resource: never ours to accept.
        return Ok(None);
    }
    let missing = Unverifiable::BadAnswer("a required member is missing");
    let scopes = ScopeSet::parse(
        a.scope
            .as_deref()
            .ok_or(Unverifiable::BadAnswer("no scope"))?,
    )
    .map_err(|_| Unverifiable::BadAnswer("invalid scope"))?;
    if scopes.is_empty() {
        return Ok(None);
    }
    let (Some(subject), Some(tenant), Some(client_id), Some(exp)) =
        (a.sub, a.tenant, a.client_id, a.exp)
    else {
        return Err(missing);
    };
    Ok(Some(Principal {
        subject,
        tenant,
        client_id,
        scopes,
        grant_id: id.as_str().to_owned(),
        jti: id.as_str().to_owned(),
        issued_at: Timestamp::from_unix(a.iat.unwrap_or(i64::MIN)),
        expires_at: Timestamp::from_unix(exp),
        act: None,
        api_key_id: Some(id.as_str().to_owned()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::random::SeededEntropy;

    fn answer(json: serde_json::Value) -> Introspected {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn answers_map_to_principals_only_for_this_key_and_resource() {
        let key = ApiKey::generate(&SeededEntropy::new(1));
        let id = key.id();
        let good = serde_json::json!({
            "active": true, "scope": "tickets.read", "client_id": id.as_str(),
            "sub": "u_1", "aud": "https://crm.example", "tenant": "acme",
            "gid": id.as_str(), "exp": 2000, "iat": 1000, "token_type": "mandate_api_key",
        });
        let p = principal(answer(good.clone()), &key, "https://crm.example")
            .unwrap()
            .unwrap();
        assert_eq!(p.api_key_id.as_deref(), Some(id.as_str()));
        assert_eq!(p.grant_id, id.as_str());
        assert_eq!(p.tenant, "acme");
        assert_eq!(p.scopes.to_string(), "tickets.read");
        assert_eq!(p.expires_at, Timestamp::from_unix(2000));
        assert_eq!(p.issued_at, Timestamp::from_unix(1000));

        let other = ApiKey::generate(&SeededEntropy::new(2));
        assert!(
            principal(answer(good.clone()), &other, "https://crm.example")
                .unwrap()
                .is_none(),
            "an answer about another key"
        );
        assert!(
            principal(answer(good.clone()), &key, "https://other.example")
                .unwrap()
                .is_none(),
            "an answer for another resource"
        );
        assert!(
            principal(answer(serde_json::json!({"active": false})), &key, "x")
                .unwrap()
                .is_none()
        );
        let mut no_tenant = good.clone();
        no_tenant.as_object_mut().unwrap().remove("tenant");
        assert!(principal(answer(no_tenant), &key, "https://crm.example").is_err());
        let mut bad_scope = good;
        bad_scope["scope"] = serde_json::json!("a\"b");
        assert!(principal(answer(bad_scope), &key, "https://crm.example").is_err());
    }
}
