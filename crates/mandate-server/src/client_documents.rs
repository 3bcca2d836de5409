//! Fetching MCP client ID metadata documents: a `client_id` that is an https URL names a JSON
//! document in which the client describes itself (the rules are in
//! `mandate_core::client_metadata_document`).
//!
//! Why this module exists apart from core: the fetch is IO, and it is the one place where a
//! stranger chooses a URL this server will request. So the fetch is built to be a poor SSRF
//! tool:
//!
//! - The host is resolved once, here, and **every** resolved address must pass
//!   [`check_address`] (loopback and private ranges only with `allow_private_addresses`;
//!   link-local, multicast and the like never). The HTTP client is then pinned to exactly those
//!   addresses (`resolve_to_addrs`), so it cannot resolve the name again and be sent elsewhere
//!   (DNS rebinding). Proxies from the environment are ignored for the same reason.
//! - No redirects are followed, the whole fetch gives up after the configured timeout (at most
//!   [`FETCH_TIMEOUT_SECONDS`]), a `Content-Length` above [`MAX_DOCUMENT_BYTES`] is refused
//!   before the body is read, and the body is read chunk by chunk and abandoned as soon as it
//!   passes the limit. The response must say it is JSON.
//! - Results are cached per URL, successes for the lifetime `Cache-Control` allows (bounded,
//!   [`cache_lifetime`]) and failures briefly, so naming a URL repeatedly does not make the
//!   server fetch it repeatedly; concurrent requests for one URL share one fetch, and at most
//!   a fixed number of fetches run at once (waiting counts against the timeout).
//!
//! A resolved client is kept as an ordinary agent row with a `metadata_document` registration
//! beside it ([`stored_agent`]), so grants, codes, refresh families, introspection and bulk
//! revocation treat it like any other agent. The client owns its name, redirect URIs, grant
//! types and keys (they follow the document); an operator still owns `disabled`.

use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::client::Agent;
use mandate_core::client_metadata_document::{
    CacheBounds, ClientIdUrl, ClientMetadataDocument, DocumentError, FETCH_TIMEOUT_SECONDS,
    MAX_DOCUMENT_BYTES, cache_lifetime, check_address, validate_document,
};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::registration::RegistrationPolicy;
use mandate_core::time::Timestamp;
use mandate_store::{ClientRegistration, RegistrationOrigin, StoreError};
use moka::Expiry;
use moka::future::Cache;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a metadata document client could not be used. Descriptions are fixed sentences (safe
/// for an OAuth `error_description` and an error page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The document (or the URL, or where it points) breaks a rule.
    #[error(transparent)]
    Refused(#[from] DocumentError),
    /// The document could not be fetched.
    #[error("the client metadata document could not be fetched: {0}")]
    Unavailable(&'static str),
}

/// `[client_metadata_documents]`, resolved.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub enabled: bool,
    pub allow_private_addresses: bool,
    pub timeout: Duration,
    pub bounds: CacheBounds,
    /// How long a failed fetch is remembered.
    pub failure_ttl: Duration,
    pub capacity: u64,
    /// Trusted in addition to the built-in web roots (PEM files read at start).
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl FetchSettings {
    /// Checks `[client_metadata_documents]` and reads the extra root certificates.
    pub fn from_config(c: &crate::config::ClientMetadataDocumentsConfig) -> anyhow::Result<Self> {
        let max_ms = FETCH_TIMEOUT_SECONDS * 1000;
        if c.timeout_ms == 0 || c.timeout_ms > max_ms {
            anyhow::bail!("client_metadata_documents.timeout_ms must be between 1 and {max_ms}");
        }
        if c.cache_min_seconds > c.cache_max_seconds {
            anyhow::bail!(
                "client_metadata_documents.cache_min_seconds must not exceed cache_max_seconds"
            );
        }
        let mut extra_roots = Vec::new();
        for path in &c.extra_root_certificates {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!(
                    "client_metadata_documents.extra_root_certificates: reading {}: {e}",
                    path.display()
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "client_metadata_documents.extra_root_certificates: {} is not PEM: {e}",
                    path.display()
                )
            })?;
            if certs.is_empty() {
                anyhow::bail!(
                    "client_metadata_documents.extra_root_certificates: {} holds no certificate",
                    path.display()
                );
            }
            extra_roots.extend(certs);
        }
        Ok(Self {
            enabled: c.enabled,
            allow_private_addresses: c.allow_private_addresses,
            timeout: Duration::from_millis(c.timeout_ms),
            bounds: CacheBounds {
                min_seconds: c.cache_min_seconds,
                max_seconds: c.cache_max_seconds,
                default_seconds: c.cache_default_seconds,
            },
            failure_ttl: Duration::from_secs(c.failure_cache_seconds),
            capacity: c.cache_capacity,
            extra_roots,
        })
    }
}

/// One cached outcome and how long it may be reused.
#[derive(Clone)]
struct Cached {
    outcome: Result<Arc<ClientMetadataDocument>, ResolveError>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<String, Cached> for PerEntry {
    fn expire_after_create(&self, _: &String, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Fetches, validates and caches metadata documents.
pub struct DocumentFetcher {
    settings: FetchSettings,
    policy: RegistrationPolicy,
    cache: Cache<String, Cached>,
    /// Bounds the fetches in flight, so a flood of distinct URLs cannot tie up the server.
    in_flight: tokio::sync::Semaphore,
}

/// Most documents fetched at the same time.
const MAX_CONCURRENT_FETCHES: usize = 64;

impl DocumentFetcher {
    pub fn new(settings: FetchSettings, policy: RegistrationPolicy) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .expire_after(PerEntry)
            .build();
        Self {
            settings,
            policy,
            cache,
            in_flight: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
        }
    }

    /// Whether URL client ids are accepted at all.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether `client_id` is to be resolved here rather than looked up in the store.
    pub fn handles(&self, client_id: &str) -> bool {
        self.settings.enabled && ClientIdUrl::is_candidate(client_id)
    }

    /// The validated document for `client_id`, from the cache or fetched now.
    pub async fn resolve(
        &self,
        client_id: &str,
    ) -> Result<Arc<ClientMetadataDocument>, ResolveError> {
        let url = ClientIdUrl::parse(client_id)?;
        let cached = self
            .cache
            .get_with(url.as_str().to_owned(), async {
                match self.fetch(&url).await {
                    Ok((doc, seconds)) => Cached {
                        outcome: Ok(Arc::new(doc)),
                        ttl: Duration::from_secs(seconds),
                    },
                    Err(e) => {
                        tracing::info!(client_id = url.as_str(), error = %e, "client metadata document refused");
                        Cached {
                            outcome: Err(e),
                            ttl: self.settings.failure_ttl,
                        }
                    }
                }
            })
            .await;
        cached.outcome
    }

    /// Fetches and validates; returns the document and how many seconds it may be cached.
    async fn fetch(
        &self,
        url: &ClientIdUrl,
    ) -> Result<(ClientMetadataDocument, u64), ResolveError> {
        match tokio::time::timeout(self.settings.timeout, self.fetch_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(ResolveError::Unavailable("it took too long")),
        }
    }

    async fn fetch_inner(
        &self,
        url: &ClientIdUrl,
    ) -> Result<(ClientMetadataDocument, u64), ResolveError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ResolveError::Unavailable("the server is shutting down"))?;
        let parsed = url::Url::parse(url.as_str())
            .map_err(|_| DocumentError::InvalidClientId("is not an absolute URL"))?;
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses = match url.ip_literal() {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((url.host(), port))
                .await
                .map_err(|_| ResolveError::Unavailable("its host name does not resolve"))?
                .collect(),
        };
        let addresses = checked_addresses(&addresses, self.settings.allow_private_addresses)?;

        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .pool_max_idle_per_host(0)
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")));
        if url.ip_literal().is_none() {
            builder = builder.resolve_to_addrs(&url.host(), &addresses);
        }
        for root in &self.settings.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder
            .build()
            .map_err(|_| ResolveError::Unavailable("no HTTP client could be built"))?;
        let mut response = client
            .get(url.as_str())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ResolveError::Unavailable("it took too long")
                } else {
                    ResolveError::Unavailable("the connection failed")
                }
            })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(ResolveError::Unavailable(
                "its URL answered with a redirect, which is not followed",
            ));
        }
        if status != reqwest::StatusCode::OK {
            return Err(ResolveError::Unavailable("its URL did not answer 200 OK"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(DocumentError::TooLarge.into());
        }
        let headers = response.headers();
        if !headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type)
        {
            return Err(DocumentError::NotJson.into());
        }
        let cache_control = headers
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    ResolveError::Unavailable("it took too long")
                } else {
                    ResolveError::Unavailable("reading the response failed")
                }
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(DocumentError::TooLarge.into());
            }
            body.extend_from_slice(&chunk);
        }
        let document = validate_document(url, &body, &self.policy)?;
        let seconds = cache_lifetime(cache_control.as_deref(), &self.settings.bounds);
        Ok((document, seconds))
    }
}

/// Every address must be allowed; the list of distinct addresses to connect to, or a refusal.
pub fn checked_addresses(
    addresses: &[SocketAddr],
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if addresses.is_empty() {
        return Err(ResolveError::Unavailable("its host name does not resolve"));
    }
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for a in addresses {
        check_address(a.ip(), allow_private)?;
        if !out.contains(a) {
            out.push(*a);
        }
    }
    Ok(out)
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Resolves a metadata document client and returns its stored agent, creating or updating the
/// agent row (with a `metadata_document` registration) to match the document. The inner error
/// is the client's fault; the outer one a storage failure.
pub async fn stored_agent(
    app: &AppState,
    client_id: &str,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Result<Agent, ResolveError>, ServerError> {
    let document = match app.client_documents.resolve(client_id).await {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let fresh = document.to_agent();
    for _ in 0..2 {
        match app.store.registered_client(client_id).await? {
            Some(mut stored) => {
                let agent = &mut stored.agent;
                let differs = stored.registration.metadata != document.metadata
                    || agent.name != fresh.name
                    || agent.kind != fresh.kind
                    || agent.secret_hash != fresh.secret_hash
                    || agent.redirect_uris != fresh.redirect_uris
                    || agent.grant_types != fresh.grant_types
                    || agent.max_scopes != fresh.max_scopes;
                if differs {
                    agent.name.clone_from(&fresh.name);
                    agent.kind = fresh.kind;
                    agent.secret_hash.clone_from(&fresh.secret_hash);
                    agent.redirect_uris.clone_from(&fresh.redirect_uris);
                    agent.grant_types.clone_from(&fresh.grant_types);
                    agent.max_scopes = fresh.max_scopes.clone();
                    let event =
                        meta.stamp(NewEvent::new(now, Action::ClientUpdated, ActorKind::Agent));
                    app.store
                        .update_registration(agent, &document.metadata, event)
                        .await?;
                    app.cache.forget_agent(client_id);
                }
                return Ok(Ok(stored.agent));
            }
            None => {
                if let Some(configured) = app.store.agent(client_id).await? {
                    // An agent an operator defined under this id keeps its own definition.
                    return Ok(Ok(configured));
                }
                let record = ClientRegistration {
                    client_id: client_id.to_owned(),
                    origin: RegistrationOrigin::MetadataDocument,
                    metadata: document.metadata.clone(),
                    registration_token_hash: None,
                    registered_at: now,
                    first_used_at: None,
                    expires_at: Some(
                        now.plus_seconds(app.settings.registration.abandon_after_seconds),
                    ),
                };
                let event = meta.stamp(NewEvent::new(
                    now,
                    Action::ClientRegistered,
                    ActorKind::Agent,
                ));
                match app.store.register_client(&fresh, &record, event).await {
                    Ok(()) => {
                        app.cache.forget_agent(client_id);
                        return Ok(Ok(fresh));
                    }
                    // Another request stored it first: read it back.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(anyhow::anyhow!("metadata document client {client_id} could not be stored").into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 443))
            .collect()
    }

    /// What a hostile DNS answer may contain: one bad address among good ones refuses all.
    #[test]
    fn every_resolved_address_is_checked() {
        let public = "93.184.216.34";
        let cases: &[(&[&str], bool, bool, &str)] = &[
            (&[public], true, true, "public"),
            (
                &[public, "2606:2800:220:1::1"],
                true,
                true,
                "public v4 and v6",
            ),
            (&["127.0.0.1"], false, true, "loopback"),
            (&["::1"], false, true, "v6 loopback"),
            (&[public, "127.0.0.1"], false, true, "public then loopback"),
            (&["10.0.0.7"], false, true, "RFC 1918"),
            (&["192.168.1.1", public], false, true, "private first"),
            (&["100.64.0.1"], false, true, "CGNAT"),
            (&["fd00::1"], false, true, "unique-local"),
            (&["169.254.169.254"], false, false, "cloud metadata"),
            (
                &[public, "169.254.169.254"],
                false,
                false,
                "public then metadata",
            ),
            (&["fe80::1"], false, false, "v6 link-local"),
            (&["::ffff:169.254.169.254"], false, false, "mapped metadata"),
            (&["::ffff:10.0.0.1"], false, true, "mapped private"),
            (&["0.0.0.0"], false, false, "unspecified"),
            (&["224.0.0.1"], false, false, "multicast"),
            (&[], false, false, "no address"),
        ];
        for (list, public_ok, private_ok, reason) in cases {
            let list = addrs(list);
            assert_eq!(
                checked_addresses(&list, false).is_ok(),
                *public_ok,
                "{reason}"
            );
            assert_eq!(
                checked_addresses(&list, true).is_ok(),
                *private_ok,
                "{reason} with allow_private"
            );
        }
        assert_eq!(
            checked_addresses(&addrs(&["10.0.0.7"]), false),
            Err(ResolveError::Refused(DocumentError::AddressNotAllowed))
        );
        assert_eq!(
            checked_addresses(&addrs(&[public, public]), false)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn settings_are_checked_at_start() {
        use crate::config::ClientMetadataDocumentsConfig;
        let ok = FetchSettings::from_config(&ClientMetadataDocumentsConfig::default()).unwrap();
        assert!(ok.enabled && !ok.allow_private_addresses, "safe defaults");
        assert_eq!(ok.timeout, Duration::from_secs(FETCH_TIMEOUT_SECONDS));
        let bad = [
            ClientMetadataDocumentsConfig {
                timeout_ms: 60_000,
                ..Default::default()
            },
            ClientMetadataDocumentsConfig {
                timeout_ms: 0,
                ..Default::default()
            },
            ClientMetadataDocumentsConfig {
                cache_min_seconds: 10,
                cache_max_seconds: 5,
                ..Default::default()
            },
            ClientMetadataDocumentsConfig {
                extra_root_certificates: vec!["/nonexistent/ca.pem".into()],
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(FetchSettings::from_config(&c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn json_media_types() {
        for (v, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/client-metadata+json", true),
            ("text/html", false),
            ("text/json", false),
            ("application/jsonp", false),
            ("", false),
        ] {
            assert_eq!(is_json_media_type(v), ok, "{v}");
        }
    }

    #[test]
    fn descriptions_are_safe_error_descriptions() {
        let e = ResolveError::Unavailable("it took too long");
        assert!(
            e.to_string()
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        );
    }
}
