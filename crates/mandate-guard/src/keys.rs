//! Discovery (RFC 8414) and the issuer's verification keys, refreshed on an unknown `kid`.
//!
//! Keys are read on every uncached validation and replaced rarely, so they sit behind an
//! `RwLock<Arc<..>>`: readers clone the `Arc` and never wait on a fetch, and a refetch swaps the
//! whole set at once. A token naming an unknown `kid` triggers at most one refetch per
//! `min_interval`, so a flood of forged kids cannot turn the guard into a JWKS hammer.

use crate::error::GuardError;
use mandate_core::jwt::{Jwk, VerifyingKey};
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Metadata and JWKS documents larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The parts of RFC 8414 metadata the guard needs; other fields are ignored so any compliant
/// authorization server works.
#[derive(Debug, Deserialize)]
pub(crate) struct IssuerMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    /// Mandate's revocation feed, when the server offers one.
    #[serde(default)]
    pub revocation_feed_endpoint: Option<String>,
    /// Where denial reports go, when the server takes them.
    #[serde(default)]
    pub denial_report_endpoint: Option<String>,
    /// RFC 7662 introspection, the fallback while the feed is down.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

/// Fetches a JSON document, bounded in size; no redirects (set on the client).
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, GuardError> {
    let fetch = |source| GuardError::Fetch {
        url: url.to_owned(),
        source,
    };
    let mut resp = http.get(url).send().await.map_err(fetch)?;
    if !resp.status().is_success() {
        return Err(GuardError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fetch)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(GuardError::TooLarge(url.to_owned()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| GuardError::InvalidDocument {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// Fetches the JWKS and keeps the signing keys the guard can verify with (EdDSA, ES256);
/// others (RSA, encryption keys) are skipped rather than failing the whole set.
pub(crate) async fn fetch_keys(
    http: &reqwest::Client,
    jwks_uri: &str,
) -> Result<Vec<VerifyingKey>, GuardError> {
    let raw: RawJwks = fetch_json(http, jwks_uri).await?;
    let keys: Vec<VerifyingKey> = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter(|jwk| jwk.use_ == "sig")
        .filter_map(|jwk| VerifyingKey::from_jwk(&jwk).ok())
        .collect();
    if keys.is_empty() {
        return Err(GuardError::NoUsableKeys(jwks_uri.to_owned()));
    }
    Ok(keys)
}

/// The current key set and the refetch rate limit.
#[derive(Debug)]
pub(crate) struct KeySet {
    jwks_uri: String,
    http: reqwest::Client,
    current: RwLock<Arc<Vec<VerifyingKey>>>,
    /// When the last refetch started. Held across the fetch so concurrent unknown-kid
    /// requests wait for one fetch instead of each starting their own.
    last_refetch: Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl KeySet {
    pub fn new(
        http: reqwest::Client,
        jwks_uri: String,
        keys: Vec<VerifyingKey>,
        min_interval: Duration,
    ) -> Self {
        Self {
            jwks_uri,
            http,
            current: RwLock::new(Arc::new(keys)),
            last_refetch: Mutex::new(None),
            min_interval,
        }
    }

    pub fn current(&self) -> Arc<Vec<VerifyingKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Refetches the JWKS unless one was fetched less than `min_interval` ago. Returns the
    /// key set to retry with, or `None` when no new keys could be had (rate-limited or failed).
    pub async fn refetch(&self, seen: &Arc<Vec<VerifyingKey>>) -> Option<Arc<Vec<VerifyingKey>>> {
        let mut last = self.last_refetch.lock().await;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.min_interval) {
            // Someone else may have refreshed while this caller waited for the lock.
            let current = self.current();
            return (!Arc::ptr_eq(&current, seen)).then_some(current);
        }
        *last = Some(now);
        match fetch_keys(&self.http, &self.jwks_uri).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = keys.clone();
                tracing::info!(jwks_uri = %self.jwks_uri, keys = keys.len(), "refetched JWKS");
                Some(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch failed; keeping the previous keys");
                None
            }
        }
    }
}
