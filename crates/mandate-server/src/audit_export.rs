//! Exporting the audit log to SIEMs: one background task per `[[audit_export]]` sink.
//!
//! Each task reads the events after its sink's persisted cursor ([`ExportCursors`]) in
//! sequence order, renders them as JSON Lines ([`mandate_core::audit_export`]), delivers the
//! batch, and only then advances the cursor, by compare-and-set. Delivery is therefore
//! at-least-once: a crash (or a second node running the same sink) between delivering and
//! advancing delivers that batch again, and receivers deduplicate by `metadata.sequence`; an
//! event is never skipped, whatever the receiver answers.
//!
//! - `file`: lines are appended and the file is fsynced before the cursor moves. The file is
//!   opened for every batch, so renaming it away (log rotation) starts a new one.
//! - `webhook`: one `POST` of `application/x-ndjson` per batch, signed with HMAC-SHA256 when a
//!   secret is configured. 2xx is delivered; 408, 429, 5xx, timeouts and connection failures
//!   are retried with exponential backoff and jitter (honouring `Retry-After` in seconds); any
//!   other answer is logged and retried at the slowest rate, since skipping would lose events.
//!
//! A task wakes when this node commits events, when the database announces another node's
//! commit, and every `poll_interval_ms` in any case. It stops at its next wait when the server
//! shuts down; what it had not delivered yet is delivered after the next start.

use crate::config::{AuditExportConfig, AuditExportKind, Secret};
use anyhow::{Context, bail};
use mandate_core::random::Entropy;
use mandate_core::time::Clock;
use mandate_store::{ChainRow, Store};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-mandate-signature";
/// Header carrying the unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-mandate-timestamp";
/// Header carrying the sink's name.
pub const SINK_HEADER: &str = "x-mandate-sink";
/// Header carrying the first and last sequence numbers in the body, `first-last`.
pub const SEQUENCE_HEADER: &str = "x-mandate-sequence";
/// The longest `Retry-After` honoured; a longer one is shortened to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
const MAX_BATCH: u32 = 10_000;
const MIN_SECRET_LEN: usize = 32;

/// How far one sink has come, for status pages and metrics. Updated by the sink's task.
#[derive(Debug)]
pub struct SinkStatus {
    pub name: String,
    pub kind: AuditExportKind,
    cursor: AtomicI64,
    head: AtomicI64,
    failures: AtomicU64,
    delivered: AtomicU64,
}

impl SinkStatus {
    fn new(name: &str, kind: AuditExportKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            cursor: AtomicI64::new(0),
            head: AtomicI64::new(0),
            failures: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// The sequence number of the last event delivered, as last read or advanced.
    pub fn cursor(&self) -> i64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// The newest event's sequence number, as last read.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Relaxed)
    }

    /// Events written but not yet delivered (head − cursor), as last seen.
    pub fn lag(&self) -> u64 {
        u64::try_from(self.head() - self.cursor()).unwrap_or(0)
    }

    /// Failed delivery attempts since the last success.
    pub fn consecutive_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Events this node delivered since it started.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// One configured sink, checked.
pub struct Sink {
    name: String,
    /// Keys the persisted cursor: the name, for configured sinks.
    cursor: String,
    /// Only rows this accepts are delivered (the cursor still passes the others).
    only: Option<fn(&ChainRow) -> bool>,
    target: Target,
    batch_size: u32,
    retry_initial: Duration,
    retry_max: Duration,
    poll_interval: Duration,
    status: Arc<SinkStatus>,
}

enum Target {
    File(PathBuf),
    Webhook(Webhook),
}

struct Webhook {
    url: url::Url,
    /// Never logged: `Secret` does not print, and errors are built without it.
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl Sink {
    pub fn status(&self) -> Arc<SinkStatus> {
        self.status.clone()
    }
}

/// Checks every `[[audit_export]]` entry. `env` reads `secret_env` variables.
pub fn sinks_from_config(
    configs: &[AuditExportConfig],
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Sink>> {
    let mut sinks: Vec<Sink> = Vec::with_capacity(configs.len());
    for c in configs {
        if sinks.iter().any(|s| s.name == c.name) {
            bail!("audit_export: two sinks are named `{}`", c.name);
        }
        sinks.push(sink(c, &env).with_context(|| format!("audit_export `{}`", c.name))?);
    }
    Ok(sinks)
}

fn sink(c: &AuditExportConfig, env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Sink> {
    let name_ok = !c.name.is_empty()
        && c.name.len() <= 64
        && c.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        bail!("name must be 1 to 64 letters, digits, `-`, `_` or `.`");
    }
    if c.batch_size == 0 || c.batch_size > MAX_BATCH {
        bail!("batch_size must be between 1 and {MAX_BATCH}");
    }
    if c.timeout_ms == 0 || c.retry_initial_ms == 0 || c.poll_interval_ms == 0 {
        bail!("timeout_ms, retry_initial_ms and poll_interval_ms must be positive");
    }
    if c.retry_max_ms < c.retry_initial_ms {
        bail!("retry_max_ms must not be less than retry_initial_ms");
    }
    let target = match c.kind {
        AuditExportKind::File => {
            if c.url.is_some() || c.secret.is_some() || c.secret_env.is_some() {
                bail!("a file sink takes `path`, not `url`, `secret` or `secret_env`");
            }
            match &c.path {
                Some(p) if !p.as_os_str().is_empty() => Target::File(p.clone()),
                _ => bail!("a file sink needs `path`"),
            }
        }
        AuditExportKind::Webhook => {
            if c.path.is_some() {
                bail!("a webhook sink takes `url`, not `path`");
            }
            let raw = c.url.as_deref().context("a webhook sink needs `url`")?;
            let url = webhook_url(raw)?;
            let secret = match (&c.secret, &c.secret_env) {
                (Some(_), Some(_)) => bail!("give `secret` or `secret_env`, not both"),
                (Some(s), None) => Some(s.clone()),
                (None, Some(var)) => Some(Secret::new(
                    env(var).filter(|v| !v.is_empty()).with_context(|| {
                        format!("secret_env: the environment variable {var} is not set")
                    })?,
                )),
                (None, None) => None,
            };
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().len() < MIN_SECRET_LEN)
            {
                bail!("the secret must be at least {MIN_SECRET_LEN} characters");
            }
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .https_only(url.scheme() == "https")
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_millis(c.timeout_ms))
                .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
                .build()
                .context("building the HTTP client")?;
            Target::Webhook(Webhook {
                url,
                secret,
                client,
            })
        }
    };
    Ok(Sink {
        name: c.name.clone(),
        cursor: c.name.clone(),
        only: None,
        status: Arc::new(SinkStatus::new(&c.name, c.kind)),
        target,
        batch_size: c.batch_size,
        retry_initial: Duration::from_millis(c.retry_initial_ms),
        retry_max: Duration::from_millis(c.retry_max_ms),
        poll_interval: Duration::from_millis(c.poll_interval_ms),
    })
}

/// The sink that delivers anomaly firings whose rule has the `webhook` action: a webhook sink
/// with its own cursor (named so no `[[audit_export]]` sink can share it) that passes over
/// every other event.
pub fn anomaly_webhook(
    c: &crate::config::AnomalyWebhookConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Sink> {
    let mut sink = sink(&c.as_sink(), &env).context("[anomaly.webhook]")?;
    sink.cursor = crate::anomaly::WEBHOOK_CURSOR.to_owned();
    sink.only = Some(crate::anomaly::is_webhook_firing);
    Ok(sink)
}

/// https anywhere; plain http only to a loopback address (a local forwarder).
fn webhook_url(raw: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(raw).ok().context("`url` is not a URL")?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => bail!("`url` must be https (or http to a loopback address)"),
    }
}

/// What the sink tasks need from the server, without holding the event writer open.
pub struct ExportContext {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// This node's group-commit writer: changes when a batch of events commits.
    pub committed: watch::Receiver<i64>,
    /// The database's commit announcements (every node on PostgreSQL), if it has them.
    pub notifications: Option<watch::Receiver<u64>>,
    /// Becomes `true` (or is dropped) when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Clone for ExportContext {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            entropy: self.entropy.clone(),
            committed: self.committed.clone(),
            notifications: self.notifications.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// Starts one task per sink.
pub fn spawn(sinks: Vec<Sink>, ctx: &ExportContext) -> Vec<JoinHandle<()>> {
    sinks
        .into_iter()
        .map(|sink| tokio::spawn(run(sink, ctx.clone())))
        .collect()
}

/// Why a delivery did not happen, and when to try again.
#[derive(Debug)]
struct Failure {
    why: String,
    /// The receiver's `Retry-After`.
    retry_after: Option<Duration>,
    /// Retrying soon will not help (a 4xx the receiver must be fixed for): wait the longest.
    slow: bool,
}

impl Failure {
    fn transient(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            retry_after: None,
            slow: false,
        }
    }
}

enum Progress {
    Delivered,
    /// Nothing after the cursor.
    Idle,
}

async fn run(sink: Sink, mut ctx: ExportContext) {
    let mut attempts: u32 = 0;
    while !*ctx.shutdown.borrow() {
        match step(&sink, &ctx).await {
            Ok(Progress::Delivered) => {
                attempts = 0;
                sink.status.failures.store(0, Ordering::Relaxed);
            }
            Ok(Progress::Idle) => {
                if !wait_for_events(&mut ctx, sink.poll_interval).await {
                    break;
                }
            }
            Err(failure) => {
                attempts = attempts.saturating_add(1);
                sink.status.failures.fetch_add(1, Ordering::Relaxed);
                let delay = retry_delay(&sink, attempts, &failure, ctx.entropy.as_ref());
                tracing::warn!(
                    sink = %sink.name,
                    attempt = attempts,
                    error = %failure.why,
                    retry_in_ms = delay.as_millis() as u64,
                    "audit export delivery failed; retrying"
                );
                if !sleep_unless_shutdown(&mut ctx.shutdown, delay).await {
                    break;
                }
            }
        }
    }
    tracing::debug!(sink = %sink.name, "audit export stopped");
}

/// Reads the next batch after the cursor, delivers it, advances the cursor.
async fn step(sink: &Sink, ctx: &ExportContext) -> Result<Progress, Failure> {
    let store = ctx.store.as_ref();
    let storage = |e: mandate_store::StoreError| Failure::transient(format!("database: {e}"));
    let cursor = store.export_cursor(&sink.cursor).await.map_err(storage)?;
    let head = store.chain_head().await.map_err(storage)?.seq;
    sink.status.cursor.store(cursor, Ordering::Relaxed);
    sink.status.head.fetch_max(head, Ordering::Relaxed);
    let rows = store
        .chain_rows(cursor, sink.batch_size)
        .await
        .map_err(storage)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Progress::Idle);
    };
    let (first, last) = (first.seq, last.seq);
    sink.status.head.fetch_max(last, Ordering::Relaxed);
    let body: String = rows
        .iter()
        .filter(|r| sink.only.is_none_or(|only| only(r)))
        .map(|r| mandate_core::audit_export::line(&r.fields(), r.hash.as_deref()))
        .collect();
    if !body.is_empty() {
        match &sink.target {
            Target::File(path) => append(path.clone(), body).await?,
            Target::Webhook(w) => post(w, &sink.name, body, first, last, ctx).await?,
        }
    }
    let moved = store
        .advance_export_cursor(&sink.cursor, cursor, last, ctx.clock.now())
        .await
        .map_err(storage)?;
    if moved {
        sink.status.cursor.store(last, Ordering::Relaxed);
        sink.status
            .delivered
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
    } else {
        // Another node running this sink advanced first; it delivered the same events.
        tracing::debug!(sink = %sink.name, from = cursor, "cursor moved elsewhere");
    }
    Ok(Progress::Delivered)
}

/// Appends `body` to the file and fsyncs it. A line torn by a crash mid-write is closed off
/// with a newline first, so it cannot swallow the next line.
async fn append(path: PathBuf, body: String) -> Result<(), Failure> {
    let write = move || -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
        let mut file = options.open(&path)?;
        if file.metadata()?.len() > 0 {
            file.seek(SeekFrom::End(-1))?;
            let mut last = [0u8; 1];
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        file.write_all(body.as_bytes())?;
        file.sync_all()
    };
    match tokio::task::spawn_blocking(write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::transient(format!("writing the file: {e}"))),
        Err(_) => Err(Failure::transient("the file writer task failed")),
    }
}

async fn post(
    w: &Webhook,
    sink: &str,
    body: String,
    first: i64,
    last: i64,
    ctx: &ExportContext,
) -> Result<(), Failure> {
    let timestamp = ctx.clock.now().unix().to_string();
    let mut request = w
        .client
        .post(w.url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            mandate_core::audit_export::MEDIA_TYPE,
        )
        .header(SINK_HEADER, sink)
        .header(SEQUENCE_HEADER, format!("{first}-{last}"))
        .header(TIMESTAMP_HEADER, &timestamp);
    if let Some(secret) = &w.secret {
        request = request.header(
            SIGNATURE_HEADER,
            signature(secret.expose().as_bytes(), &timestamp, body.as_bytes()),
        );
    }
    let response = request.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            Failure::transient("the request timed out")
        } else {
            Failure::transient(format!("the request failed: {}", e.without_url()))
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    Err(Failure {
        why: format!("the receiver answered {status}"),
        retry_after,
        slow: !retryable,
    })
}

/// `sha256=<hex>`: HMAC-SHA256 with `secret` over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    use aws_lc_rs::hmac;
    use std::fmt::Write;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut out = String::from("sha256=");
    for b in tag.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Exponential backoff with jitter: the n-th retry waits between half and all of
/// `initial × 2^(n−1)` (at most `retry_max`); the slowest rate for answers retrying will not
/// change soon; never less than the receiver's `Retry-After`.
fn retry_delay(sink: &Sink, attempt: u32, f: &Failure, entropy: &dyn Entropy) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let base = sink
        .retry_initial
        .saturating_mul(1u32 << exp)
        .min(sink.retry_max);
    let delay = if f.slow {
        sink.retry_max
    } else {
        let mut r = [0u8; 8];
        entropy.fill(&mut r);
        let half = base / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(u64::from_le_bytes(r) % spread)
    };
    f.retry_after.map_or(delay, |ra| delay.max(ra))
}

/// Waits for a commit, the poll interval, or shutdown; `false` on shutdown.
pub(crate) async fn wait_for_events(ctx: &mut ExportContext, poll: Duration) -> bool {
    tokio::select! {
        () = changed(&mut ctx.committed) => true,
        () = changed_opt(&mut ctx.notifications) => true,
        () = tokio::time::sleep(poll) => true,
        _ = ctx.shutdown.changed() => false,
    }
}

pub(crate) async fn sleep_unless_shutdown(
    shutdown: &mut watch::Receiver<bool>,
    delay: Duration,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => !*shutdown.borrow(),
        _ = shutdown.changed() => false,
    }
}

/// Completes when the value changes; never, once the sender is gone.
async fn changed<T>(rx: &mut watch::Receiver<T>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn changed_opt<T>(rx: &mut Option<watch::Receiver<T>>) {
    match rx {
        Some(rx) => changed(rx).await,
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(url: &str) -> AuditExportConfig {
        AuditExportConfig::webhook("siem", url, None)
    }

    #[test]
    fn webhook_urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://siem.example.com/ingest",
            "http://127.0.0.1:9000/x",
            "http://[::1]/x",
            "http://localhost:8088/",
        ] {
            assert!(sinks_from_config(&[webhook(ok)], |_| None).is_ok(), "{ok}");
        }
        for bad in [
            "http://siem.example.com/",
            "http://10.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(
                sinks_from_config(&[webhook(bad)], |_| None).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn configuration_mistakes_are_named_and_secrets_never_shown() {
        let secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";
        let err = |c: AuditExportConfig| match sinks_from_config(&[c], |_| None) {
            Ok(_) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        };
        let mut c = webhook("https://siem.example.com/");
        c.secret_env = Some("NOPE_UNSET".into());
        assert!(err(c).contains("NOPE_UNSET"));
        let mut c = webhook("https://siem.example.com/");
        c.secret = Some(Secret::new("short"));
        let text = err(c);
        assert!(
            text.contains("at least") && !text.contains("short\""),
            "{text}"
        );
        let mut c = AuditExportConfig::file("a b", "/tmp/x");
        assert!(err(c.clone()).contains("name"));
        c.name = "ok".into();
        c.batch_size = 0;
        assert!(err(c).contains("batch_size"));
        let mut c = AuditExportConfig::file("f", "/tmp/x");
        c.secret = Some(Secret::new(secret));
        assert!(!err(c).contains(secret));
        let two = [
            AuditExportConfig::file("f", "/tmp/x"),
            AuditExportConfig::file("f", "/tmp/y"),
        ];
        assert!(sinks_from_config(&two, |_| None).is_err());
        let mut c = webhook("https://siem.example.com/");
        c.secret_env = Some("SIEM_KEY".into());
        let sinks = sinks_from_config(&[c], |k| (k == "SIEM_KEY").then(|| secret.into())).unwrap();
        assert_eq!(sinks.len(), 1);
    }

    /// The signature is HMAC-SHA256 over `timestamp.body`, as documented; the value was
    /// computed independently (Python: hmac.new(b"key", b"1700000000.{}\n", sha256)).
    #[test]
    fn signatures_cover_timestamp_and_body() {
        assert_eq!(
            signature(b"key", "1700000000", b"{}\n"),
            "sha256=e7b2db2a9191d08b7d95e17269f78ba083729e7bd3bf9be2b82d2f8cd93c86ef"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut c = AuditExportConfig::file("f", "/tmp/x");
        c.retry_initial_ms = 100;
        c.retry_max_ms = 1_000;
        let sink = sinks_from_config(&[c], |_| None).unwrap().remove(0);
        let entropy = mandate_core::random::SeededEntropy::new(7);
        let t = Failure::transient("x");
        for attempt in 1..=10u32 {
            let base = Duration::from_millis((100u64 << (attempt - 1).min(20)).min(1_000));
            let d = retry_delay(&sink, attempt, &t, &entropy);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
        let slow = Failure {
            slow: true,
            ..Failure::transient("x")
        };
        assert_eq!(
            retry_delay(&sink, 1, &slow, &entropy),
            Duration::from_secs(1)
        );
        let later = Failure {
            retry_after: Some(Duration::from_secs(3)),
            ..Failure::transient("x")
        };
        assert_eq!(
            retry_delay(&sink, 1, &later, &entropy),
            Duration::from_secs(3)
        );
    }
}
