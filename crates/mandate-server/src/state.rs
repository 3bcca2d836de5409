//! What every handler shares: the store, the event writer, keys, clock, entropy and settings.

use crate::cache::HotPathCache;
use crate::keys::{Kek, KeyRing};
use mandate_core::random::Entropy;
use mandate_core::time::Clock;
use mandate_store::Store;
use mandate_store::group_commit::EventWriter;
use std::sync::Arc;

/// Cloned for every request (axum's `State`), so a clone is one reference count: the parts
/// live once, in [`Shared`], and are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Arc<dyn Store>,
    /// Group-committed event appends; a token is returned only after its event is durable.
    pub events: EventWriter,
    pub keys: Arc<KeyRing>,
    pub kek: Arc<Kek>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub settings: Arc<Settings>,
    /// Agents, resources and service grants for the token endpoint (not authoritative).
    pub cache: Arc<HotPathCache>,
    /// Becomes `true` when the server starts shutting down: long-lived responses (the
    /// revocation feed) end then, so graceful shutdown does not wait on them forever.
    pub shutting_down: tokio::sync::watch::Receiver<bool>,
    /// Registrations per client IP address (RFC 7591 endpoint abuse).
    pub registration_limiter: Arc<crate::rate_limit::RateLimiter>,
    /// MCP client ID metadata documents, fetched and cached.
    pub client_documents: Arc<crate::client_documents::DocumentFetcher>,
    /// How far each `[[audit_export]]` sink has delivered (for metrics and status pages).
    pub audit_export: Arc<[Arc<crate::audit_export::SinkStatus>]>,
    /// This server's Prometheus metrics (one registry per server, not a global).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Agents, addresses, grants and keys anomaly rules throttled at the token endpoint.
    pub throttles: Arc<crate::anomaly::throttle::Throttles>,
}

/// Settings resolved at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer URL without a trailing slash.
    pub issuer: String,
    /// The issuer's path ("" or "/something"); every route is mounted under it.
    pub issuer_path: String,
    /// Whether cookies get the `Secure` attribute (issuer is https).
    pub secure_cookies: bool,
    pub refresh_grace_seconds: u64,
    /// How long after expiry refresh tokens are kept for reuse detection.
    pub refresh_token_retention_seconds: u64,
    pub session_ttl_seconds: u64,
    /// Who may exchange tokens for which audiences (RFC 8693).
    pub exchange: mandate_core::exchange::ExchangePolicy,
    /// Dynamic client registration (RFC 7591/7592).
    pub registration: RegistrationSettings,
    /// API key lifetimes and rotation overlap (admin API).
    pub api_keys: mandate_core::api_key::ApiKeyPolicy,
    /// Whether `GET /metrics` is served.
    pub metrics_enabled: bool,
    /// The `sha256:` hash of `[metrics] token`: kept hashed so the comparison is constant-time
    /// whatever the presented token's length, and the token itself is not held in memory.
    pub metrics_token_hash: Option<String>,
}

/// `[registration]`, resolved.
#[derive(Debug, Clone)]
pub struct RegistrationSettings {
    pub mode: crate::config::RegistrationMode,
    pub initial_access_token_hashes: Vec<String>,
    pub policy: mandate_core::registration::RegistrationPolicy,
    pub abandon_after_seconds: u64,
}
