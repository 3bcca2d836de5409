//! Reporting refused requests to the authorization server, for its audit log.
//!
//! With [`Guard::report_denials`] on, every refusal the guard answers (401, 403, 400, from the
//! layers, the extractor's route requirements, the proxy, or [`Guard::refuse`]) is also queued
//! as a [`DenialReport`]: the error and its description, the method and path (never the
//! query), the end client's address and user agent, when it happened, and, only when the token
//! was verified before being refused, whose it was (subject, tenant, agent, grant, scopes).
//! A token, an API key or a secret is never put in a report.
//!
//! The request path never waits for the network: queueing takes a short lock on a bounded
//! in-memory queue. A background task sends what is queued to the issuer's
//! `denial_report_endpoint` with the resource server's own credential, every
//! [`ReportSettings::interval`] or as soon as [`ReportSettings::batch_size`] are waiting, and
//! retries with backoff while the server is unreachable or failing. When the queue is full the
//! oldest report is dropped and counted; the next batch delivered carries the count, which the
//! server records. A batch the server refuses as malformed or unauthorised is not retried (it
//! would be refused again); its reports count as dropped. Stopping the reporter (dropping or
//! [`ReportHandle::shutdown`]) sends what is still queued, for at most
//! [`ReportSettings::flush_timeout`].

use crate::error::GuardError;
use crate::feed::FeedCredential;
use crate::guard::{Guard, Refusal};
use crate::principal::Principal;
use axum::extract::{ConnectInfo, OriginalUri};
use axum::response::Response;
use http::header::{AUTHORIZATION, USER_AGENT};
use http::{Extensions, HeaderMap, Method, Uri};
use mandate_core::api_key::ApiKey;
use mandate_core::challenge::BearerError;
use mandate_core::denial_report::{
    self, CredentialKind, DenialError, DenialReport, MAX_BATCH_BYTES, MAX_REASON_LEN,
    MAX_REPORTS_PER_BATCH, MAX_USER_AGENT_LEN,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long one delivery attempt may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Room kept in a batch body for its envelope (`{"reports":[...],"dropped":n}`).
const ENVELOPE_BYTES: usize = 64;

/// How the reporter queues and sends.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Most reports held while the server is unreachable; beyond it the oldest are dropped
    /// (default 10,000).
    pub capacity: usize,
    /// Send as soon as this many are queued (default 100).
    pub batch_size: usize,
    /// Send whatever is queued at least this often (default 1 s).
    pub interval: Duration,
    /// How long stopping may spend sending what is still queued (default 2 s).
    pub flush_timeout: Duration,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            batch_size: 100,
            interval: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(2),
        }
    }
}

/// The bounded queue between the request path and the sender task.
#[derive(Debug)]
pub(crate) struct ReportQueue {
    reports: Mutex<VecDeque<DenialReport>>,
    /// Dropped since the last batch that carried a count.
    dropped: AtomicU64,
    /// Dropped since the start (never reset), for monitoring.
    dropped_total: AtomicU64,
    /// Reports the server acknowledged.
    delivered: AtomicU64,
    capacity: usize,
    batch_size: usize,
    /// Wakes the sender when a batch is full.
    wake: Notify,
    /// Set when the sender has stopped: nothing more is queued.
    closed: AtomicBool,
}

impl ReportQueue {
    /// Queues a report, dropping the oldest when full; never waits on the network.
    pub(crate) fn push(&self, report: DenialReport) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let len = {
            let Ok(mut q) = self.reports.lock() else {
                return;
            };
            if q.len() >= self.capacity {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(report);
            q.len()
        };
        if len >= self.batch_size {
            self.wake.notify_one();
        }
    }

    fn len(&self) -> usize {
        self.reports.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// The next batch body, taking its reports (at most [`MAX_REPORTS_PER_BATCH`], within
    /// [`MAX_BATCH_BYTES`]) and the drop count; `None` when there is nothing to send.
    fn take(&self) -> Option<Batch> {
        let mut parts = Vec::new();
        let mut size = ENVELOPE_BYTES;
        if let Ok(mut q) = self.reports.lock() {
            while parts.len() < MAX_REPORTS_PER_BATCH {
                let Some(next) = q.front() else { break };
                let Ok(json) = serde_json::to_string(next) else {
                    q.pop_front();
                    continue;
                };
                if size + json.len() + 1 > MAX_BATCH_BYTES {
                    if parts.is_empty() {
                        // Cannot fit any batch (never the case within core's bounds).
                        q.pop_front();
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        self.dropped_total.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    break;
                }
                size += json.len() + 1;
                parts.push(json);
                q.pop_front();
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if parts.is_empty() && dropped == 0 {
            return None;
        }
        let body = format!(r#"{{"reports":[{}],"dropped":{dropped}}}"#, parts.join(","));
        Some(Batch {
            body,
            reports: parts.len() as u64,
            dropped,
        })
    }

    /// A batch that will not be delivered: its reports and count become drops.
    fn lose(&self, batch: &Batch) {
        let n = batch.reports + batch.dropped;
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.dropped_total
            .fetch_add(batch.reports, Ordering::Relaxed);
    }
}

struct Batch {
    body: String,
    reports: u64,
    dropped: u64,
}

/// A running reporter; dropping it stops the sender after a last, bounded flush.
#[derive(Debug)]
pub struct ReportHandle {
    queue: Arc<ReportQueue>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    flush_timeout: Duration,
}

impl ReportHandle {
    /// Reports waiting to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Reports dropped since the start because the queue was full (or a batch was refused).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped_total.load(Ordering::Relaxed)
    }

    /// Reports the server has acknowledged.
    pub fn delivered(&self) -> u64 {
        self.queue.delivered.load(Ordering::Relaxed)
    }

    /// Stops the reporter after sending what is queued (for at most the flush timeout).
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        if let Some(task) = self.task.take() {
            let limit = self.flush_timeout + Duration::from_millis(500);
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!("denial reporter did not stop in time");
            }
        }
    }
}

impl Drop for ReportHandle {
    /// The sender notices the closed channel, flushes within its timeout and exits.
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// The parts of a refused request a report is made from (never its body or credentials).
#[derive(Debug, Clone, Copy)]
pub struct RefusedRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub extensions: &'a Extensions,
}

impl<'a, B> From<&'a http::Request<B>> for RefusedRequest<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

impl<'a> From<&'a http::request::Parts> for RefusedRequest<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

impl Guard {
    /// Starts reporting refusals to the issuer's `denial_report_endpoint` with this resource
    /// server's credential (the one it follows the revocation feed with), with default
    /// [`ReportSettings`].
    pub fn report_denials(&self, credential: FeedCredential) -> Result<ReportHandle, GuardError> {
        self.report_denials_with(credential, ReportSettings::default())
    }

    /// [`Guard::report_denials`] with explicit queue and timing settings.
    pub fn report_denials_with(
        &self,
        credential: FeedCredential,
        settings: ReportSettings,
    ) -> Result<ReportHandle, GuardError> {
        let endpoint = self
            .report_endpoint()
            .ok_or_else(|| GuardError::NoReportEndpoint(self.issuer().to_owned()))?
            .to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(SEND_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| GuardError::Fetch {
                url: endpoint.clone(),
                source,
            })?;
        let queue = Arc::new(ReportQueue {
            reports: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            capacity: settings.capacity.max(1),
            batch_size: settings.batch_size.clamp(1, MAX_REPORTS_PER_BATCH),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        if !self.attach_reporter(queue.clone()) {
            return Err(GuardError::ReportsAlreadyOn);
        }
        let (stop, stopped) = oneshot::channel();
        let sender = Sender {
            queue: queue.clone(),
            http,
            endpoint,
            credential,
            settings: settings.clone(),
        };
        let task = tokio::spawn(sender.run(stopped));
        Ok(ReportHandle {
            queue,
            stop: Some(stop),
            task: Some(task),
            flush_timeout: settings.flush_timeout,
        })
    }

    /// Refuses a request: the RFC 6750 response for `err` and, when reporting is on, a denial
    /// report. `verified` is the principal of a token the guard accepted (for a scope refusal);
    /// leave it `None` when the credential itself was refused. For handlers and middleware that
    /// make their own checks (the layers and the proxy call this themselves).
    pub fn refuse(
        &self,
        err: &BearerError,
        request: RefusedRequest<'_>,
        verified: Option<&Principal>,
    ) -> Response {
        self.record(err, request, verified);
        self.reject(err)
    }

    /// [`Guard::refuse`] for a refusal that may know whose verified credential it was.
    pub(crate) fn refuse_with(&self, refusal: &Refusal, request: RefusedRequest<'_>) -> Response {
        self.refuse(&refusal.error, request, refusal.verified.as_deref())
    }

    fn record(&self, err: &BearerError, request: RefusedRequest<'_>, verified: Option<&Principal>) {
        let Some(queue) = self.reporter() else {
            return;
        };
        queue.push(report_of(self.now(), err, request, verified));
    }
}

/// The report for one refusal.
fn report_of(
    now: mandate_core::time::Timestamp,
    err: &BearerError,
    request: RefusedRequest<'_>,
    verified: Option<&Principal>,
) -> DenialReport {
    let (error, reason) = match err {
        BearerError::Missing => (DenialError::MissingToken, None),
        BearerError::InvalidToken(why) => (DenialError::InvalidToken, Some(*why)),
        BearerError::InvalidRequest(why) => (DenialError::InvalidRequest, Some(*why)),
        BearerError::InsufficientScope(_) => (DenialError::InsufficientScope, None),
    };
    // The path the client asked for, also when the router nested this one under a prefix.
    let path = request
        .extensions
        .get::<OriginalUri>()
        .map_or(request.uri.path(), |o| o.0.path());
    let mut r = DenialReport::new(now, error, request.method.as_str(), path);
    r.reason = reason.map(|s| denial_report::clean_text(s, MAX_REASON_LEN));
    r.client_ip = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    r.user_agent = request
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| denial_report::clean_text(s, MAX_USER_AGENT_LEN))
        .filter(|s| !s.is_empty());
    r.credential = credential_kind(request.headers);
    if let BearerError::InsufficientScope(needed) = err
        && !needed.is_empty()
    {
        r.required_scopes = Some(needed.to_string());
    }
    if let Some(p) = verified {
        let id = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        r.subject = id(&p.subject);
        r.tenant = id(&p.tenant);
        r.client_id = id(&p.client_id);
        r.grant_id = id(&p.grant_id);
        r.scopes = (!p.scopes.is_empty()).then(|| p.scopes.to_string());
        if p.api_key_id.is_some() {
            r.credential = Some(CredentialKind::ApiKey);
        }
    }
    // A report that would not pass the server's validation loses its identity rather than
    // the whole batch (an oversized claim, say); the refusal itself is still reported.
    if r.validate().is_err() {
        r.subject = None;
        r.tenant = None;
        r.client_id = None;
        r.grant_id = None;
        r.scopes = None;
        r.required_scopes = None;
    }
    r
}

/// Whether the `Authorization` header held a bearer token or a raw API key (by its shape;
/// the value itself is not kept).
fn credential_kind(headers: &HeaderMap) -> Option<CredentialKind> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(if ApiKey::looks_like(token.trim()) {
        CredentialKind::ApiKey
    } else {
        CredentialKind::AccessToken
    })
}

/// The task that delivers queued reports.
struct Sender {
    queue: Arc<ReportQueue>,
    http: reqwest::Client,
    endpoint: String,
    credential: FeedCredential,
    settings: ReportSettings,
}

/// What became of one delivery attempt.
enum Delivery {
    Done,
    /// Worth trying again (unreachable, 5xx, 429).
    Retry,
    /// Refused for good (malformed, unauthorised, no such endpoint).
    Refused,
}

impl Sender {
    async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = BACKOFF_START;
        'outer: loop {
            tokio::select! {
                _ = &mut stop => break 'outer,
                () = self.queue.wake.notified() => {}
                () = tokio::time::sleep(self.settings.interval) => {}
            }
            while let Some(batch) = self.queue.take() {
                loop {
                    match self.send(&batch).await {
                        Delivery::Done => {
                            backoff = BACKOFF_START;
                            break;
                        }
                        Delivery::Refused => {
                            self.queue.lose(&batch);
                            break;
                        }
                        Delivery::Retry => {
                            tokio::select! {
                                _ = &mut stop => {
                                    self.flush(Some(batch)).await;
                                    return;
                                }
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            }
        }
        self.flush(None).await;
    }

    /// Sends what is left (and `pending`, a batch not yet delivered), one attempt each, until
    /// the flush timeout; then stops queueing.
    async fn flush(&self, pending: Option<Batch>) {
        self.queue.closed.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.settings.flush_timeout;
        let mut next = pending.or_else(|| self.queue.take());
        while let Some(batch) = next {
            let sent = tokio::time::timeout_at(deadline, self.send(&batch)).await;
            if !matches!(sent, Ok(Delivery::Done)) {
                tracing::warn!(
                    left = batch.reports as usize + self.queue.len(),
                    "denial reports not delivered before stopping"
                );
                return;
            }
            next = self.queue.take();
        }
    }

    async fn send(&self, batch: &Batch) -> Delivery {
        let result = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.credential.client_id, Some(&self.credential.secret))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(batch.body.clone())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                self.queue
                    .delivered
                    .fetch_add(batch.reports, Ordering::Relaxed);
                Delivery::Done
            }
            Ok(resp)
                if resp.status().is_server_error()
                    || resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::debug!(status = resp.status().as_u16(), "denial reports: retrying");
                Delivery::Retry
            }
            Ok(resp) => {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    reports = batch.reports,
                    "the issuer refused a batch of denial reports"
                );
                Delivery::Refused
            }
            Err(err) => {
                tracing::debug!(error = %err, "denial reports: issuer unreachable, retrying");
                Delivery::Retry
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> ReportQueue {
        ReportQueue {
            reports: Mutex::new(VecDeque::new()),
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            capacity,
            batch_size: 100,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn report(path: &str) -> DenialReport {
        DenialReport::new(
            mandate_core::time::Timestamp::from_unix(1),
            DenialError::InvalidToken,
            "GET",
            path,
        )
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_the_next_batch_says_so() {
        let q = queue(3);
        for i in 0..5 {
            q.push(report(&format!("/r{i}")));
        }
        let batch = q.take().unwrap();
        let parsed =
            mandate_core::denial_report::DenialBatch::parse(batch.body.as_bytes()).unwrap();
        assert_eq!(parsed.dropped, 2);
        let paths: Vec<_> = parsed.reports.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/r2", "/r3", "/r4"]);
        assert!(q.take().is_none(), "nothing left, count reset");
    }

    #[test]
    fn batches_stay_within_the_wire_bounds() {
        let q = queue(5000);
        for _ in 0..1200 {
            let mut r = report(&format!("/{}", "p".repeat(1000)));
            r.user_agent = Some("u".repeat(256));
            q.push(r);
        }
        let mut total = 0;
        while let Some(b) = q.take() {
            assert!(b.body.len() <= MAX_BATCH_BYTES);
            let parsed =
                mandate_core::denial_report::DenialBatch::parse(b.body.as_bytes()).unwrap();
            assert!(parsed.reports.len() <= MAX_REPORTS_PER_BATCH);
            total += parsed.reports.len();
        }
        assert_eq!(total, 1200);
    }

    #[test]
    fn reports_never_carry_the_credential() {
        let token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln";
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("/billing?access_token={token}"))
            .header("authorization", format!("Bearer {token}"))
            .header("user-agent", "agent/1.0")
            .body(())
            .unwrap();
        let r = report_of(
            mandate_core::time::Timestamp::from_unix(5),
            &BearerError::InvalidToken("the token signature is invalid"),
            RefusedRequest::from(&req),
            None,
        );
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains(token), "{json}");
        assert!(!json.contains("c2ln"), "{json}");
        assert_eq!(r.path, "/billing");
        assert_eq!(r.credential, Some(CredentialKind::AccessToken));
        assert!(r.subject.is_none() && r.client_id.is_none());
        assert_eq!(r.user_agent.as_deref(), Some("agent/1.0"));
    }
}
