//! Building and running the server.
//!
//! [`Application::build`] does everything that can fail before traffic arrives (bind, open and
//! migrate the database, apply the declarative configuration, load or create keys), so a server
//! that starts is a server that works. Binding port 0 is allowed; [`Application::port`] says
//! which port was chosen, which is how the tests run many servers side by side.

use crate::apply::{self, Applied};
use crate::cache::HotPathCache;
use crate::config::Config;
use crate::config::RegistrationMode;
use crate::keys::{Kek, KeyRing};
use crate::routes;
use crate::state::{AppState, RegistrationSettings, Settings, Shared};
use crate::system::{OsEntropy, SystemClock};
use anyhow::{Context, bail};
use axum::Router;
use mandate_core::random::Entropy;
use mandate_core::registration::RegistrationPolicy;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Clock;
use mandate_store::group_commit::EventWriter;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The clock and entropy the server runs on; tests substitute controllable ones.
#[derive(Clone)]
pub struct Dependencies {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy::default()),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    event_writer: JoinHandle<()>,
    applied: Applied,
    shutting_down: tokio::sync::watch::Sender<bool>,
    /// Checked at build, started by [`Self::run_until`].
    exports: Vec<crate::audit_export::Sink>,
    /// `[anomaly]`, checked at build, started by [`Self::run_until`].
    anomaly_rules: Vec<mandate_core::anomaly::Rule>,
    poll_anomalies: Duration,
    key_reload_every: Duration,
    /// `[audit] retention_days` and the export sinks a purge must wait for.
    retention: Option<(Duration, Vec<String>)>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Dependencies::default()).await
    }

    pub async fn build_with(config: Config, deps: Dependencies) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (issuer, issuer_path) = resolve_issuer(config.issuer.as_deref(), addr)?;

        if config.database_url.is_none() || config.key_encryption_key_file.is_none() {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating data directory {}", config.data_dir.display())
            })?;
        }
        let store = mandate_store::connect(&config.database_url())
            .await
            .context("opening the database")?;
        let cache_ttl = Duration::from_millis(config.cache_ttl_ms);
        if let Err(e) = store.cache_token_state(cache_ttl).await {
            // Introspection then asks the database every time.
            tracing::warn!(error = %e, "cannot listen for token state changes; not caching them");
        }
        let now = deps.clock.now();
        crate::admin::install(store.as_ref(), &issuer)
            .await
            .context("installing the admin API resource")?;
        let applied = apply::apply(&config, store.as_ref(), deps.entropy.as_ref(), now)
            .await
            .context("applying the configuration")?;
        let kek = Arc::new(Kek::load_or_create(
            &config.kek_path(),
            deps.entropy.as_ref(),
        )?);
        let keys = KeyRing::load_or_create(
            store.clone(),
            kek.clone(),
            config.signing_keys.policy(config.signing_algorithm),
            deps.entropy.as_ref(),
            now,
        )
        .await
        .context("loading signing keys")?;
        let metrics = Arc::new(crate::metrics::Metrics::new(
            config.metrics.max_agent_labels,
        ));
        let (events, event_writer) = EventWriter::spawn_observed(store.clone(), metrics.clone());

        let registration = registration_settings(&config)?;
        let mut exports = crate::audit_export::sinks_from_config(&config.audit_export, |var| {
            std::env::var(var).ok()
        })?;
        let (anomaly_rules, anomaly_webhook) =
            crate::anomaly::checked(&config.anomaly, |var| std::env::var(var).ok())?;
        exports.extend(anomaly_webhook);
        let retention = config.audit.retention_days.map(|days| {
            (
                Duration::from_secs(u64::from(days.get()) * 24 * 60 * 60),
                crate::audit_retention::followers(&config),
            )
        });
        let (shutting_down, shutdown_seen) = tokio::sync::watch::channel(false);
        let client_documents = crate::client_documents::DocumentFetcher::new(
            crate::client_documents::FetchSettings::from_config(&config.client_metadata_documents)?,
            registration.policy.clone(),
        );
        let state = AppState::new(Shared {
            throttles: Arc::default(),
            metrics,
            client_documents: Arc::new(client_documents),
            audit_export: exports.iter().map(|s| s.status()).collect(),
            shutting_down: shutdown_seen,
            registration_limiter: Arc::new(crate::rate_limit::RateLimiter::new(
                config.registration.rate_limit_per_minute,
            )),
            cache: Arc::new(HotPathCache::new(cache_ttl)),
            store,
            events,
            keys: Arc::new(keys),
            kek,
            clock: deps.clock,
            entropy: deps.entropy,
            settings: Arc::new(Settings {
                secure_cookies: issuer.starts_with("https://"),
                issuer,
                issuer_path,
                refresh_grace_seconds: config.refresh_grace_seconds,
                refresh_token_retention_seconds: config.refresh_token_retention_seconds,
                session_ttl_seconds: config.session_ttl_seconds,
                exchange: config.exchange.clone(),
                registration,
                api_keys: config.api_keys.policy(),
                metrics_enabled: config.metrics.enabled,
                metrics_token_hash: config
                    .metrics
                    .token
                    .as_ref()
                    .map(|t| mandate_core::secret::hash_secret(t.expose())),
            }),
        });
        let router = routes::router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            event_writer,
            applied,
            shutting_down,
            exports,
            anomaly_rules,
            poll_anomalies: Duration::from_millis(config.anomaly.poll_interval_ms),
            key_reload_every: Duration::from_secs(config.signing_keys.reload_seconds.max(1)),
            retention,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn issuer(&self) -> &str {
        &self.state.settings.issuer
    }

    /// The server's own store: a write through it is this node's write (on PostgreSQL, kept
    /// introspection answers are dropped before it returns), as an embedding tool or test
    /// wants. A store opened separately is another node: its writes are heard within moments.
    pub fn store(&self) -> Arc<dyn mandate_store::Store> {
        self.state.store.clone()
    }

    pub fn backend(&self) -> &'static str {
        self.state.store.backend()
    }

    /// Each audit export sink's progress (cursor, head, lag), updated while running.
    pub fn audit_export_status(&self) -> Vec<Arc<crate::audit_export::SinkStatus>> {
        self.state.audit_export.to_vec()
    }

    /// What the declarative configuration defined at start.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and flushes events.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            state,
            event_writer,
            shutting_down,
            exports,
            anomaly_rules,
            poll_anomalies,
            key_reload_every,
            retention,
            ..
        } = self;
        let export_context = crate::audit_export::ExportContext {
            store: state.store.clone(),
            clock: state.clock.clone(),
            entropy: state.entropy.clone(),
            committed: state.events.committed(),
            notifications: if exports.is_empty()
                && anomaly_rules.is_empty()
                && !state.cache.enabled()
            {
                None
            } else {
                state.store.event_notifications().await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "no commit notifications; followers of the log poll");
                    None
                })
            },
            shutdown: state.shutting_down.clone(),
        };
        let mut exporters = crate::audit_export::spawn(exports, &export_context);
        if state.cache.enabled() {
            exporters.push(
                crate::cache_invalidation::spawn(state.cache.clone(), export_context.clone()).await,
            );
        }
        let anomaly_context = crate::anomaly::Context {
            store: state.store.clone(),
            clock: state.clock.clone(),
            entropy: state.entropy.clone(),
            api_keys: state.settings.api_keys,
            metrics: state.metrics.clone(),
            cache: state.cache.clone(),
            throttles: state.throttles.clone(),
            poll_interval: poll_anomalies,
        };
        exporters.extend(
            crate::anomaly::spawn(anomaly_rules, anomaly_context, export_context.clone()).await,
        );
        drop(export_context);
        let retention = retention.map(|(keep, sinks)| {
            tokio::spawn(crate::audit_retention::purge_periodically(
                state.clone(),
                keep,
                sinks,
            ))
        });
        let key_reload = tokio::spawn(crate::keys::rotation::reload_periodically(
            state.clone(),
            key_reload_every,
        ));
        let janitor = tokio::spawn(purge_expired_periodically(state));
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = shutting_down.send(true);
        })
        .await
        .context("serving HTTP")?;
        janitor.abort();
        let _ = janitor.await;
        key_reload.abort();
        let _ = key_reload.await;
        if let Some(retention) = retention {
            // A purge is one transaction: aborting it mid-way rolls it back.
            retention.abort();
            let _ = retention.await;
        }
        if tokio::time::timeout(Duration::from_secs(10), event_writer)
            .await
            .is_err()
        {
            tracing::warn!("the event writer did not finish within 10 s of shutdown");
        }
        // Each sink stops at its next wait; one in the middle of a delivery finishes it.
        for mut exporter in exporters {
            if tokio::time::timeout(Duration::from_secs(15), &mut exporter)
                .await
                .is_err()
            {
                tracing::warn!("a follower of the log did not stop within 15 s; aborting it");
                exporter.abort();
            }
        }
        Ok(())
    }
}

/// How often expired codes, pending requests, sessions and revoked token ids are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Bounds the growth of short-lived tables. Every node may run it: the deletes are idempotent.
async fn purge_expired_periodically(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock.now();
        match state.store.purge_expired(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "purged expired records"),
            Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
        }
        let cutoff = now.minus_seconds(state.settings.refresh_token_retention_seconds);
        match state.store.purge_refresh_tokens(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "purged refresh tokens past their retention"),
            Err(e) => tracing::warn!(error = %e, "purging refresh tokens failed"),
        }
    }
}

/// `[registration]` checked and resolved.
fn registration_settings(config: &Config) -> anyhow::Result<RegistrationSettings> {
    let r = &config.registration;
    let max_scopes = ScopeSet::from_tokens(r.max_scopes.iter())
        .map_err(|e| anyhow::anyhow!("registration.max_scopes: {e}"))?;
    if r.mode == RegistrationMode::InitialAccessToken && r.initial_access_token_hashes.is_empty() {
        bail!("registration.mode = \"initial_access_token\" needs initial_access_token_hashes");
    }
    if let Some(bad) = r
        .initial_access_token_hashes
        .iter()
        .find(|h| !h.starts_with("sha256:"))
    {
        bail!(
            "registration.initial_access_token_hashes: `{}...` is not a sha256: hash",
            bad.chars().take(8).collect::<String>()
        );
    }
    Ok(RegistrationSettings {
        mode: r.mode,
        initial_access_token_hashes: r.initial_access_token_hashes.clone(),
        policy: RegistrationPolicy {
            default_max_scopes: max_scopes,
        },
        abandon_after_seconds: r.abandon_after_seconds,
    })
}

/// The issuer URL (no trailing slash) and its path, defaulting to `http://<bound address>`.
fn resolve_issuer(configured: Option<&str>, bound: SocketAddr) -> anyhow::Result<(String, String)> {
    let raw = match configured {
        Some(s) => s.trim_end_matches('/').to_owned(),
        None => format!("http://{bound}"),
    };
    let url = url::Url::parse(&raw).with_context(|| format!("issuer `{raw}` is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        bail!("issuer `{raw}` must be an http(s) URL without query or fragment (RFC 8414 §2)");
    }
    let path = url.path().trim_end_matches('/').to_owned();
    Ok((raw, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_resolution() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            resolve_issuer(None, bound).unwrap(),
            ("http://127.0.0.1:4000".into(), "".into())
        );
        assert_eq!(
            resolve_issuer(Some("https://id.example.com/tenant1/"), bound).unwrap(),
            ("https://id.example.com/tenant1".into(), "/tenant1".into())
        );
        assert!(resolve_issuer(Some("https://id.example.com/?x=1"), bound).is_err());
        assert!(resolve_issuer(Some("ftp://id.example.com"), bound).is_err());
    }
}
