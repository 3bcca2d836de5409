//! Configuration: server settings plus the declarative model applied at start.
//!
//! Layers, later ones winning: defaults in code (so `mandate serve` needs nothing), a TOML file
//! (`--config`), `MANDATE_*` environment variables for the top-level settings, and command-line
//! flags. Unknown keys are errors that name the key, so a typo never silently falls back to a
//! default. Secrets are wrapped in [`Secret`] so `Debug` output and logs never show them.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use mandate_core::exchange::ExchangePolicy;
use mandate_core::jwt::Algorithm;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable holding the metrics scrape token (`[metrics] token`).
pub const METRICS_TOKEN_ENV: &str = "MANDATE_METRICS_TOKEN";

/// Top-level keys that may come from `MANDATE_<KEY>` environment variables.
pub const ENV_KEYS: &[&str] = &[
    "listen",
    "issuer",
    "data_dir",
    "database_url",
    "key_encryption_key_file",
    "signing_algorithm",
    "refresh_grace_seconds",
    "refresh_token_retention_seconds",
    "session_ttl_seconds",
    "cache_ttl_ms",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Env: `MANDATE_LISTEN`.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Public issuer URL (scheme, host, optional path). Default: `http://<listen>`.
    /// Env: `MANDATE_ISSUER`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Directory for the SQLite file and the key-encryption key. Env: `MANDATE_DATA_DIR`.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`. Default: `sqlite://<data_dir>/mandate.db`.
    /// Env: `MANDATE_DATABASE_URL`.
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// File holding the base64 key-encryption key (32 bytes). Created with mode 0600 if
    /// missing. Default: `<data_dir>/kek`. Env: `MANDATE_KEY_ENCRYPTION_KEY_FILE`.
    #[serde(default)]
    pub key_encryption_key_file: Option<PathBuf>,
    /// `EdDSA` (default) or `ES256`. Env: `MANDATE_SIGNING_ALGORITHM`.
    #[serde(default = "defaults::signing_algorithm")]
    pub signing_algorithm: Algorithm,
    /// Window in which a just-rotated refresh token yields the same successor instead of
    /// counting as reuse. Env: `MANDATE_REFRESH_GRACE_SECONDS`.
    #[serde(default = "defaults::refresh_grace_seconds")]
    pub refresh_grace_seconds: u64,
    /// How long a refresh token is kept after it expires: presenting a used one within this
    /// time is still reuse (the grant is revoked); afterwards housekeeping deletes it and
    /// presenting it is only an unknown token. Env: `MANDATE_REFRESH_TOKEN_RETENTION_SECONDS`.
    #[serde(default = "defaults::refresh_token_retention_seconds")]
    pub refresh_token_retention_seconds: u64,
    /// Lifetime of a login session. Env: `MANDATE_SESSION_TTL_SECONDS`.
    #[serde(default = "defaults::session_ttl_seconds")]
    pub session_ttl_seconds: u64,
    /// How long the token endpoint reuses agent registrations, the resource registry and
    /// service grants before reading them again; changes made elsewhere (the CLI, another
    /// node) take effect within this time. 0 disables the cache. Env: `MANDATE_CACHE_TTL_MS`.
    #[serde(default = "defaults::cache_ttl_ms")]
    pub cache_ttl_ms: u64,

    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    #[serde(default)]
    pub resources: Vec<ResourceConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// Who may use the admin API (`/admin/v1`).
    #[serde(default)]
    pub admin_roles: Vec<AdminRoleConfig>,
    /// RFC 8693 token exchange: which agents may exchange users' tokens for which audiences,
    /// and the longest delegation chain. Nothing may be exchanged without a rule.
    #[serde(default)]
    pub exchange: ExchangePolicy,
    /// Dynamic client registration (RFC 7591/7592).
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Scoped API keys: the longest lifetime a key may be created with and how long a rotated
    /// key keeps working.
    #[serde(default)]
    pub api_keys: ApiKeysConfig,
    /// MCP client ID metadata documents: `client_id`s that are https URLs, fetched.
    #[serde(default)]
    pub client_metadata_documents: ClientMetadataDocumentsConfig,
    /// `[[audit_export]]`: sinks the audit log is exported to (JSON Lines, OCSF-aligned; see
    /// `docs/audit-export.md`), each by a background task with at-least-once delivery.
    #[serde(default)]
    pub audit_export: Vec<AuditExportConfig>,
    /// `[audit]`: retention of the audit log (see `docs/audit.md`).
    #[serde(default)]
    pub audit: AuditConfig,
    /// Prometheus metrics at `GET <issuer>/metrics`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[anomaly]`: rules over the audit log that alert, call a webhook, throttle or revoke.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// `[signing_keys]`: rotation of the keys that sign access tokens.
    #[serde(default)]
    pub signing_keys: SigningKeysConfig,
}

mod defaults {
    use super::*;
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("mandate-data")
    }
    pub fn signing_algorithm() -> Algorithm {
        Algorithm::EdDSA
    }
    pub fn refresh_grace_seconds() -> u64 {
        mandate_core::refresh::DEFAULT_GRACE_SECONDS
    }
    pub fn refresh_token_retention_seconds() -> u64 {
        30 * 24 * 60 * 60
    }
    pub fn session_ttl_seconds() -> u64 {
        8 * 60 * 60
    }
    pub fn cache_ttl_ms() -> u64 {
        1000
    }
    pub fn registration_mode() -> RegistrationMode {
        RegistrationMode::Open
    }
    pub fn abandon_after_seconds() -> u64 {
        mandate_core::registration::DEFAULT_UNUSED_CLIENT_TTL_SECONDS
    }
    pub fn rate_limit_per_minute() -> u32 {
        10
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_keys: ApiKeysConfig::default(),
            client_metadata_documents: ClientMetadataDocumentsConfig::default(),
            metrics: MetricsConfig::default(),
            anomaly: AnomalyConfig::default(),
            listen: defaults::listen(),
            issuer: None,
            data_dir: defaults::data_dir(),
            database_url: None,
            key_encryption_key_file: None,
            signing_algorithm: defaults::signing_algorithm(),
            refresh_grace_seconds: defaults::refresh_grace_seconds(),
            refresh_token_retention_seconds: defaults::refresh_token_retention_seconds(),
            session_ttl_seconds: defaults::session_ttl_seconds(),
            cache_ttl_ms: defaults::cache_ttl_ms(),
            tenants: vec![],
            users: vec![],
            scopes: vec![],
            resources: vec![],
            agents: vec![],
            admin_roles: vec![],
            exchange: ExchangePolicy::default(),
            registration: RegistrationConfig::default(),
            audit_export: vec![],
            audit: AuditConfig::default(),
            signing_keys: SigningKeysConfig::default(),
        }
    }
}

/// Who may register clients at `POST /register` (RFC 7591).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    /// Anyone (within the rate limit): what MCP clients expect out of the box.
    Open,
    /// Only callers presenting one of `initial_access_token_hashes` as a Bearer token.
    InitialAccessToken,
    /// Nobody; the endpoint is not advertised. Registered clients can still manage themselves.
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// `open` (default), `initial_access_token` or `closed`.
    #[serde(default = "defaults::registration_mode")]
    pub mode: RegistrationMode,
    /// `sha256:` hashes of the initial access tokens accepted in `initial_access_token` mode.
    #[serde(default)]
    pub initial_access_token_hashes: Vec<String>,
    /// The most any registered client may hold; requests are clamped to it. Default: none, so
    /// a registered client can only obtain tokens once an operator lists scopes here.
    #[serde(default)]
    pub max_scopes: Vec<String>,
    /// A registered client that never completes a token request is deleted after this long.
    #[serde(default = "defaults::abandon_after_seconds")]
    pub abandon_after_seconds: u64,
    /// Registrations accepted per client IP address per minute (0: no limit).
    #[serde(default = "defaults::rate_limit_per_minute")]
    pub rate_limit_per_minute: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            mode: defaults::registration_mode(),
            initial_access_token_hashes: vec![],
            max_scopes: vec![],
            abandon_after_seconds: defaults::abandon_after_seconds(),
            rate_limit_per_minute: defaults::rate_limit_per_minute(),
        }
    }
}

/// `[[admin_roles]]`: one of `user` (a login) or `agent` (a client id), and its role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRoleConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    /// `operator` or `tenant_admin`.
    pub role: String,
    /// The tenant a `tenant_admin` administers (a user's defaults to their own tenant).
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub login: String,
    pub tenant: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Plain password (hashed with argon2id when applied). Give this or `password_hash`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A PHC-format argon2id hash.
    #[serde(default)]
    pub password_hash: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The resource indicator (RFC 8707): an absolute URI, used as the token audience.
    pub identifier: String,
    pub name: String,
    /// Scopes this resource accepts.
    pub scopes: Vec<String>,
    /// The resource server's own credential id, for introspection and the revocation feed
    /// (must differ from every agent's client id).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its secret (at least 32 characters; stored as SHA-256), or `secret_hash`.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `public` or `confidential`.
    pub kind: String,
    /// Client secret of a confidential agent (at least 32 characters); stored as SHA-256.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Or its `sha256:` hash, as printed by `mandate agent create`.
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub max_scopes: Vec<String>,
    /// Owner tenant; required for client credentials. Absent: users of any tenant may consent.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub access_token_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub refresh_token_ttl_seconds: Option<u64>,
    #[serde(default)]
    pub default_resource: Option<String>,
    #[serde(default)]
    pub allowed_resources: Vec<String>,
}

/// A configuration value that must never be printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Settings given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

/// Loads the layered configuration. Errors name the offending key and source.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
    let mut figment = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Box::new(figment::Error::from(format!(
                "configuration file {} does not exist",
                path.display()
            ))));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment
        .merge(Env::prefixed("MANDATE_").filter(|k| ENV_KEYS.iter().any(|known| k == *known)))
        .merge(
            Env::raw()
                .only(&[METRICS_TOKEN_ENV])
                .map(|_| "metrics.token".into()),
        )
        .merge(Serialized::defaults(overrides));
    figment.extract().map_err(Box::new)
}

impl Config {
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("mandate.db").display()),
        }
    }

    pub fn kek_path(&self) -> PathBuf {
        self.key_encryption_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kek"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error by design
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_need_no_file() {
        Jail::expect_with(|_jail| {
            let c = load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.database_url(), "sqlite://mandate-data/mandate.db");
            assert_eq!(c.signing_algorithm, Algorithm::EdDSA);
            assert_eq!(c.refresh_token_retention_seconds, 30 * 24 * 3600);
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order_and_env_is_filtered() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "m.toml",
                "listen = \"127.0.0.1:9000\"\nrefresh_grace_seconds = 9\n",
            )?;
            jail.set_env("MANDATE_REFRESH_GRACE_SECONDS", "3");
            jail.set_env("MANDATE_REFRESH_TOKEN_RETENTION_SECONDS", "86400");
            jail.set_env("MANDATE_TEST_POSTGRES_URL", "ignored: not a setting");
            let overrides = Overrides {
                database_url: Some("postgres://x/y".into()),
                ..Overrides::default()
            };
            let c = load(Some(Path::new("m.toml")), &overrides).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
            assert_eq!(c.refresh_grace_seconds, 3);
            assert_eq!(c.refresh_token_retention_seconds, 86400);
            assert_eq!(c.database_url(), "postgres://x/y");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[[agents]]\nclient_id = \"a\"\nkind = \"public\"\ngrant_types = []\nmax_scopes = []\nredirect_uri = \"x\"\n")?;
            let err = load(Some(Path::new("m.toml")), &Overrides::default()).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("redirect_uri"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("m.toml", "signing_algorithm = \"HS256\"\n")?;
            let text = load(Some(Path::new("m.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("signing_algorithm") && text.contains("HS256"),
                "{text}"
            );
            Ok(())
        });
    }

    #[test]
    fn audit_retention_is_optional_and_at_least_a_day() {
        Jail::expect_with(|jail| {
            let c = load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.audit.retention_days, None, "kept forever by default");
            jail.create_file("m.toml", "[audit]\nretention_days = 400\n")?;
            let c = load(Some(Path::new("m.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.audit.retention_days.map(|d| d.get()), Some(400));
            jail.create_file("zero.toml", "[audit]\nretention_days = 0\n")?;
            let text = load(Some(Path::new("zero.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(text.contains("retention_days"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn metrics_token_comes_from_its_env_variable() {
        Jail::expect_with(|jail| {
            jail.create_file("m.toml", "[metrics]\nmax_agent_labels = 7\n")?;
            jail.set_env(METRICS_TOKEN_ENV, "scrape-token-from-env");
            let c = load(Some(Path::new("m.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.metrics.max_agent_labels, 7);
            assert!(c.metrics.enabled);
            assert_eq!(
                c.metrics.token.as_ref().map(Secret::expose),
                Some("scrape-token-from-env")
            );
            assert!(!format!("{c:?}").contains("scrape-token-from-env"));
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}

/// `[audit]`: how long audit events are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Delete events older than this many days (at least 1), after a signed checkpoint of the
    /// last one deleted, so the chain stays verifiable. Events a configured `[[audit_export]]`
    /// sink has not delivered yet are kept. Absent (default): keep every event forever.
    pub retention_days: Option<std::num::NonZeroU32>,
}

/// `[metrics]`: Prometheus metrics (see `crate::metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET <issuer>/metrics` (default true); `false` removes the route.
    pub enabled: bool,
    /// Scrapers must present it as `Authorization: Bearer <token>`. Without one, only direct
    /// loopback callers are served. Env: `MANDATE_METRICS_TOKEN`.
    pub token: Option<Secret>,
    /// Most distinct agents (client ids) labelled in `mandate_tokens_issued_total`; later
    /// ones are counted as `other` (default 500).
    pub max_agent_labels: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            token: None,
            max_agent_labels: crate::metrics::DEFAULT_MAX_AGENT_LABELS,
        }
    }
}

/// `[anomaly]`: anomaly rules (see `crate::anomaly` and `mandate_core::anomaly`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// `[[anomaly.rules]]`, evaluated in order over every committed event.
    pub rules: Vec<AnomalyRuleConfig>,
    /// Where firings of rules with the `webhook` action are POSTed (JSON Lines, signed and
    /// retried like an `[[audit_export]]` webhook).
    pub webhook: Option<AnomalyWebhookConfig>,
    /// How often to look for events written by other nodes or processes, in milliseconds
    /// (default 250); this node's own commits wake the rules at once.
    pub poll_interval_ms: u64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            webhook: None,
            poll_interval_ms: 250,
        }
    }
}

/// `[[anomaly.rules]]`: one rule (kinds, subjects and actions in `mandate_core::anomaly`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyRuleConfig {
    /// Unique name, recorded in every firing.
    pub name: String,
    /// `issuance_spike`, `client_auth_failures`, `out_of_scope`, `refresh_reuse`,
    /// `new_address`, `new_user_agent` or `rotated_api_key_use`.
    pub kind: String,
    /// What to count per: `grant`, `agent`, `client`, `address` or `api_key` (default: the
    /// kind's first).
    #[serde(default)]
    pub per: Option<String>,
    /// Hits within the window that fire the rule (default 1).
    #[serde(default = "anomaly_defaults::threshold")]
    pub threshold: u32,
    /// The window, in seconds (default 60).
    #[serde(default = "anomaly_defaults::window_seconds")]
    pub window_seconds: u64,
    /// Any of `alert`, `webhook`, `throttle`, `revoke` (default `["alert"]`).
    #[serde(default)]
    pub actions: Vec<String>,
    /// How long `throttle` lasts, in seconds (default: the window).
    #[serde(default)]
    pub throttle_seconds: Option<u64>,
}

mod anomaly_defaults {
    pub fn threshold() -> u32 {
        1
    }
    pub fn window_seconds() -> u64 {
        60
    }
}

impl AnomalyRuleConfig {
    /// A rule counting `per` subject, `threshold` hits in the default window, taking `actions`.
    pub fn new(name: &str, kind: &str, per: &str, threshold: u32, actions: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            per: Some(per.to_owned()),
            threshold,
            window_seconds: anomaly_defaults::window_seconds(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            throttle_seconds: None,
        }
    }

    pub fn spec(&self) -> mandate_core::anomaly::RuleSpec {
        mandate_core::anomaly::RuleSpec {
            name: self.name.clone(),
            kind: self.kind.clone(),
            per: self.per.clone(),
            threshold: self.threshold,
            window_seconds: self.window_seconds,
            actions: self.actions.clone(),
            throttle_seconds: self.throttle_seconds,
        }
    }
}

/// `[anomaly.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyWebhookConfig {
    /// https, or http to a loopback address only.
    pub url: String,
    /// Key for the `X-Mandate-Signature` HMAC-SHA256 of each body. Or `secret_env`.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Longest a request may take, in milliseconds (default 10000).
    #[serde(default = "audit_export_defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// First retry delay, in milliseconds (default 1000), doubled per failure, with jitter.
    #[serde(default = "audit_export_defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds (default 60000).
    #[serde(default = "audit_export_defaults::retry_max_ms")]
    pub retry_max_ms: u64,
}

impl AnomalyWebhookConfig {
    /// The export sink that delivers the firings.
    pub fn as_sink(&self) -> AuditExportConfig {
        AuditExportConfig {
            secret_env: self.secret_env.clone(),
            timeout_ms: self.timeout_ms,
            retry_initial_ms: self.retry_initial_ms,
            retry_max_ms: self.retry_max_ms,
            batch_size: 100,
            ..AuditExportConfig::webhook("anomaly-webhook", &self.url, self.secret.clone())
        }
    }
}

/// `[signing_keys]`: how signing keys rotate (see `crate::keys::ring` for a key's life). Every
/// node sharing a database should have the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningKeysConfig {
    /// Seconds a new key is published at `/jwks.json` before it signs (default 600: twice the
    /// document's `max-age`, so resource servers have it before they meet a token it signed).
    pub publish_before_signing_seconds: u64,
    /// Seconds a replaced key still verifies and stays published (default 86,400). Must be
    /// longer than the longest access-token lifetime, or tokens it signed stop verifying early.
    pub trust_after_superseded_seconds: u64,
    /// Rotate automatically when the newest key is this many days old (default 90; 0 = only
    /// when an operator rotates).
    pub rotate_after_days: u64,
    /// Seconds between re-reads of the keys on each node (default 10), so a rotation or a
    /// withdrawal made on one node reaches the others. A token naming a key a node has not
    /// read yet makes it re-read at once.
    pub reload_seconds: u64,
}

impl Default for SigningKeysConfig {
    fn default() -> Self {
        let p = crate::keys::KeyPolicy::new(Algorithm::EdDSA);
        Self {
            publish_before_signing_seconds: p.publish_before_signing,
            trust_after_superseded_seconds: p.trust_after_superseded,
            rotate_after_days: p.rotate_after.map_or(0, |s| s / 86_400),
            reload_seconds: 10,
        }
    }
}

impl SigningKeysConfig {
    pub fn policy(&self, alg: Algorithm) -> crate::keys::KeyPolicy {
        crate::keys::KeyPolicy {
            alg,
            publish_before_signing: self.publish_before_signing_seconds,
            trust_after_superseded: self.trust_after_superseded_seconds,
            rotate_after: (self.rotate_after_days > 0)
                .then(|| self.rotate_after_days.saturating_mul(86_400)),
        }
    }
}

/// `[api_keys]`: limits for scoped API keys (see `mandate_core::api_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeysConfig {
    /// Longest lifetime a key may be created (or rotated) with, in seconds (default 90 days).
    pub max_lifetime_seconds: u64,
    /// How long a rotated key keeps working, in seconds (default 24 hours).
    pub rotation_overlap_seconds: u64,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        let p = mandate_core::api_key::ApiKeyPolicy::default();
        Self {
            max_lifetime_seconds: p.max_lifetime_seconds,
            rotation_overlap_seconds: p.rotation_overlap_seconds,
        }
    }
}

impl ApiKeysConfig {
    pub fn policy(&self) -> mandate_core::api_key::ApiKeyPolicy {
        mandate_core::api_key::ApiKeyPolicy {
            max_lifetime_seconds: self.max_lifetime_seconds,
            rotation_overlap_seconds: self.rotation_overlap_seconds,
        }
    }
}

/// `[client_metadata_documents]`: clients whose `client_id` is an https URL naming their
/// metadata document (see `crate::client_documents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientMetadataDocumentsConfig {
    /// Accept such clients (default true) and advertise
    /// `client_id_metadata_document_supported`.
    pub enabled: bool,
    /// Also fetch from loopback, private (RFC 1918), CGNAT and unique-local addresses. For
    /// development and tests only: on a server, this lets any client make it request internal
    /// services. Link-local (cloud metadata), multicast and unspecified addresses stay refused.
    pub allow_private_addresses: bool,
    /// PEM files of certificate authorities trusted for fetching documents, in addition to the
    /// built-in web roots (for a private CA, or a test server's self-signed certificate).
    pub extra_root_certificates: Vec<PathBuf>,
    /// Longest a fetch may take, in milliseconds (at most 5000).
    pub timeout_ms: u64,
    /// Bounds on how long a fetched document is reused, from its `Cache-Control`.
    pub cache_min_seconds: u64,
    pub cache_max_seconds: u64,
    /// Used when the response says nothing about caching.
    pub cache_default_seconds: u64,
    /// How long a failed fetch is remembered, so a client cannot make the server fetch in a
    /// loop.
    pub failure_cache_seconds: u64,
    /// Most documents (and failures) cached at once.
    pub cache_capacity: u64,
}

impl Default for ClientMetadataDocumentsConfig {
    fn default() -> Self {
        let bounds = mandate_core::client_metadata_document::CacheBounds::default();
        Self {
            enabled: true,
            allow_private_addresses: false,
            extra_root_certificates: vec![],
            timeout_ms: mandate_core::client_metadata_document::FETCH_TIMEOUT_SECONDS * 1000,
            cache_min_seconds: bounds.min_seconds,
            cache_max_seconds: bounds.max_seconds,
            cache_default_seconds: bounds.default_seconds,
            failure_cache_seconds: 30,
            cache_capacity: 10_000,
        }
    }
}

/// Where an audit export sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditExportKind {
    /// Appends lines to a local file, fsynced before the cursor advances.
    File,
    /// POSTs batches of lines to an HTTP endpoint.
    Webhook,
}

/// `[[audit_export]]`: one sink (see `crate::audit_export`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExportConfig {
    /// Unique name; keys the sink's persisted cursor, so renaming a sink starts it over.
    pub name: String,
    /// `file` or `webhook`.
    pub kind: AuditExportKind,
    /// The file lines are appended to (`kind = "file"`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The endpoint batches are POSTed to (`kind = "webhook"`): https, or http to a loopback
    /// address only.
    #[serde(default)]
    pub url: Option<String>,
    /// Key for the `X-Mandate-Signature` HMAC-SHA256 of each webhook body. Or `secret_env`.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The environment variable holding the secret, read at start.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Most events per write or request (default 500, at most 10000).
    #[serde(default = "audit_export_defaults::batch_size")]
    pub batch_size: u32,
    /// Longest a webhook request may take, in milliseconds (default 10000).
    #[serde(default = "audit_export_defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// First retry delay after a failed delivery, in milliseconds (default 1000); doubled on
    /// each further failure, with jitter.
    #[serde(default = "audit_export_defaults::retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds (default 60000); also the delay after answers that
    /// retrying soon will not change (4xx other than 408 and 429).
    #[serde(default = "audit_export_defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// How often to look for events written by other nodes or processes, in milliseconds
    /// (default 1000); this node's own commits wake the sink at once.
    #[serde(default = "audit_export_defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
}

mod audit_export_defaults {
    pub fn batch_size() -> u32 {
        500
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn retry_initial_ms() -> u64 {
        1_000
    }
    pub fn retry_max_ms() -> u64 {
        60_000
    }
    pub fn poll_interval_ms() -> u64 {
        1_000
    }
}

impl AuditExportConfig {
    /// A file sink with default settings.
    pub fn file(name: &str, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            kind: AuditExportKind::File,
            path: Some(path.into()),
            url: None,
            secret: None,
            secret_env: None,
            batch_size: audit_export_defaults::batch_size(),
            timeout_ms: audit_export_defaults::timeout_ms(),
            retry_initial_ms: audit_export_defaults::retry_initial_ms(),
            retry_max_ms: audit_export_defaults::retry_max_ms(),
            poll_interval_ms: audit_export_defaults::poll_interval_ms(),
        }
    }

    /// A webhook sink with default settings.
    pub fn webhook(name: &str, url: &str, secret: Option<Secret>) -> Self {
        Self {
            kind: AuditExportKind::Webhook,
            path: None,
            url: Some(url.to_owned()),
            secret,
            ..Self::file(name, "")
        }
    }
}
