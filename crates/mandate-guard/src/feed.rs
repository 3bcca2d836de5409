//! Following the authorization server's revocation feed.
//!
//! Self-contained JWTs stay valid until they expire unless the resource server hears about
//! revocations. The server publishes every revocation as a server-sent event whose id is its
//! sequence number in the append-only event log; this subscriber applies each one to the
//! guard's [`RevocationSet`](crate::revocation::RevocationSet), reconnects with `Last-Event-ID`
//! after any failure (so nothing is missed), and tracks whether it is connected. While the feed
//! has been down longer than the guard's `feed_grace`, every token is also checked at the
//! issuer's introspection endpoint, and refused if that cannot be done (fail-closed, unless
//! the guard was built with `fail_open`).
//!
//! Whatever arrives on the connection is treated as untrusted input: only `200` with
//! `text/event-stream` counts as connected; an event longer than [`MAX_EVENT_BYTES`] drops the
//! connection and invalid UTF-8 spoils only the event it is in (see `crate::sse`); an event
//! that is not a well-formed entry whose id is its sequence number is skipped; the resume
//! position never moves backwards; silence past the read timeout is a dead link; and a
//! connection that keeps being dropped at once does not count as the feed being up. A bad
//! feed can therefore cost a reconnect or the introspection fallback, never a crash, unbounded
//! memory, or a revocation silently lost.

use crate::error::GuardError;
use crate::guard::Guard;
use crate::sse::bounded_events;
use eventsource_stream::Event;
use futures_util::StreamExt;
use mandate_core::challenge::BearerError;
use mandate_core::revocation::{FeedEntry, Revoked};
use mandate_core::time::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// First and longest wait before reconnecting.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The server sends a keep-alive comment every 15 s; silence for longer means a dead link.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(45);
/// The longest one event may be. Real entries are a few hundred bytes; the cap keeps a feed
/// that never ends a line from growing the subscriber's buffer without bound.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// How long a connection must stay open to count as having restored the feed.
const SETTLE: Duration = Duration::from_secs(1);
/// How long one fallback introspection may take before the token is judged unverifiable.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The resource server's own credential at the authorization server.
#[derive(Clone)]
pub struct FeedCredential {
    pub client_id: String,
    pub secret: String,
}

impl std::fmt::Debug for FeedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FeedCredential({}, <redacted>)", self.client_id)
    }
}

/// Shared between the subscriber task and its handle.
#[derive(Debug)]
struct Status {
    connected: AtomicBool,
    /// Sequence number of the last applied entry; -1 before the first.
    last_seq: AtomicI64,
    /// When (unix seconds, the guard's clock) the feed was last lost; it starts lost.
    down_since: AtomicI64,
}

/// What validation needs from a running subscriber: whether the feed can be trusted right
/// now, and, when it cannot, a way to ask the issuer about a token directly.
pub(crate) struct FeedLink {
    status: Arc<Status>,
    http: reqwest::Client,
    credential: FeedCredential,
    introspection_endpoint: Option<String>,
}

impl FeedLink {
    /// Whether the feed has been disconnected for longer than `grace`.
    pub(crate) fn down_longer_than(&self, now: i64, grace: Duration) -> bool {
        if self.status.connected.load(Ordering::SeqCst) {
            return false;
        }
        let since = self.status.down_since.load(Ordering::SeqCst);
        let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        now.saturating_sub(since) > grace
    }

    /// Asks the issuer's introspection endpoint whether `token` is still active. When the
    /// answer cannot be had, refuses the token unless the guard is configured to fail open.
    pub(crate) async fn confirm_active(
        &self,
        token: &str,
        fail_open: bool,
    ) -> Result<(), BearerError> {
        match self.introspect(token).await {
            Some(true) => Ok(()),
            Some(false) => Err(BearerError::InvalidToken("the token is no longer active")),
            None if fail_open => Ok(()),
            None => Err(BearerError::InvalidToken(
                "the token's revocation status cannot be checked right now",
            )),
        }
    }

    async fn introspect(&self, token: &str) -> Option<bool> {
        #[derive(serde::Deserialize)]
        struct Answer {
            active: bool,
        }
        let endpoint = self.introspection_endpoint.as_deref()?;
        let result = self
            .http
            .post(endpoint)
            .basic_auth(&self.credential.client_id, Some(&self.credential.secret))
            .form(&[("token", token)])
            .timeout(INTROSPECTION_TIMEOUT)
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                resp.json::<Answer>().await.ok().map(|a| a.active)
            }
            Ok(resp) => {
                tracing::warn!(
                    status = resp.status().as_u16(),
                    "introspection fallback refused"
                );
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "introspection fallback unreachable");
                None
            }
        }
    }
}

/// A running subscription; dropping it stops the subscriber.
#[derive(Debug)]
pub struct FeedHandle {
    status: Arc<Status>,
    task: JoinHandle<()>,
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FeedHandle {
    /// Whether the subscriber currently holds an open feed connection.
    pub fn is_connected(&self) -> bool {
        self.status.connected.load(Ordering::SeqCst)
    }

    /// The sequence number of the last revocation applied (the highest, should the feed
    /// deliver an older one late).
    pub fn last_seq(&self) -> Option<i64> {
        self.status.position()
    }

    /// Waits until connected, up to `within`; returns whether it is.
    pub async fn wait_connected(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Guard {
    /// Starts following the issuer's revocation feed with this resource server's credential.
    pub fn follow_revocations(&self, credential: FeedCredential) -> Result<FeedHandle, GuardError> {
        let endpoint = self
            .feed_endpoint()
            .ok_or_else(|| GuardError::NoRevocationFeed(self.issuer().to_owned()))?
            .to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(self.feed_read_timeout())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| GuardError::Fetch {
                url: endpoint.clone(),
                source,
            })?;
        let status = Arc::new(Status {
            connected: AtomicBool::new(false),
            last_seq: AtomicI64::new(-1),
            down_since: AtomicI64::new(self.now().unix()),
        });
        let link = Arc::new(FeedLink {
            status: status.clone(),
            http: http.clone(),
            credential: credential.clone(),
            introspection_endpoint: self.introspection_endpoint().map(str::to_owned),
        });
        if !self.attach_feed(link) {
            return Err(GuardError::FeedAlreadyFollowed);
        }
        let subscriber = Subscriber {
            guard: self.clone(),
            http,
            endpoint,
            credential,
            status: status.clone(),
        };
        let task = tokio::spawn(subscriber.run());
        Ok(FeedHandle { status, task })
    }
}

/// Why a connection attempt did not give a usable event stream.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("unreachable: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("answered HTTP {0}")]
    Status(reqwest::StatusCode),
    #[error("answered with content type {0:?}, not text/event-stream")]
    NotEventStream(String),
}

/// The task that keeps one connection to the feed open and applies what it receives.
struct Subscriber {
    guard: Guard,
    http: reqwest::Client,
    endpoint: String,
    credential: FeedCredential,
    status: Arc<Status>,
}

impl Subscriber {
    /// Connects, reads until the stream fails, and reconnects, for as long as the handle lives.
    /// The backoff restarts only after a connection that stayed open past [`SETTLE`], so a
    /// server that accepts and hangs up at once is retried ever more slowly.
    async fn run(self) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.connect().await {
                Ok(resp) => {
                    if self.stream(resp).await {
                        backoff = BACKOFF_START;
                    }
                }
                Err(why) => tracing::warn!(%why, "revocation feed unavailable"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Opens the feed, resuming after the last applied entry. Only `200 OK` with
    /// `text/event-stream` counts: an error page, a login form or a proxy's HTML is the feed
    /// being down, never an empty feed.
    async fn connect(&self) -> Result<reqwest::Response, Unavailable> {
        let mut request = self
            .http
            .get(&self.endpoint)
            .basic_auth(&self.credential.client_id, Some(&self.credential.secret))
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(last) = self.status.position() {
            request = request.header("last-event-id", last.to_string());
        }
        let resp = request.send().await?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(Unavailable::Status(resp.status()));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_event_stream(&content_type) {
            return Err(Unavailable::NotEventStream(content_type));
        }
        Ok(resp)
    }

    /// Reads events until the stream ends, fails, stays silent past the read timeout or sends
    /// an oversized event. Returns whether the connection lasted long enough to count as
    /// having restored the feed.
    async fn stream(&self, resp: reqwest::Response) -> bool {
        let opened = tokio::time::Instant::now();
        self.status.connected.store(true, Ordering::SeqCst);
        let mut events = std::pin::pin!(bounded_events(resp.bytes_stream(), MAX_EVENT_BYTES));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.receive(&event),
                Err(err) => {
                    tracing::warn!(error = %err, "revocation feed broke; reconnecting");
                    break;
                }
            }
        }
        let settled = opened.elapsed() >= SETTLE;
        self.status.lost(self.guard.now().unix(), settled);
        settled
    }

    /// Applies one event if it is a well-formed revocation entry; anything else is logged and
    /// skipped (events of other types are not for the guard).
    fn receive(&self, event: &Event) {
        if event.event != "revocation" {
            return;
        }
        match parse_entry(event) {
            Ok(entry) => {
                apply(&self.guard, &entry);
                self.status.advance(entry.seq);
            }
            Err(why) => {
                tracing::warn!(id = ?event.id, why, "skipping a malformed revocation event")
            }
        }
    }
}

impl Status {
    /// The sequence number to resume after, once something was applied.
    fn position(&self) -> Option<i64> {
        Some(self.last_seq.load(Ordering::SeqCst)).filter(|s| *s >= 0)
    }

    /// Moves the resume position forward to `seq`, never back: an older entry arriving late
    /// (a replay) is still applied, but must not make the next reconnect replay everything
    /// after it again, nor hide entries.
    fn advance(&self, seq: i64) {
        self.last_seq.fetch_max(seq, Ordering::SeqCst);
    }

    /// Records a lost connection. Only one that had settled restarts the down clock: a
    /// connection that is dropped at once never restored the feed, and must not keep
    /// postponing the introspection fallback.
    fn lost(&self, now: i64, settled: bool) {
        if settled {
            self.down_since.store(now, Ordering::SeqCst);
        }
        self.connected.store(false, Ordering::SeqCst);
    }
}

/// Whether a `Content-Type` value is `text/event-stream` (parameters allowed).
fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The entry an event carries: JSON of a known kind whose `seq` is the event's id (the
/// server sends both; an event where they disagree, or whose id is not a number, is not one
/// the server sent, and resuming from it could skip entries).
fn parse_entry(event: &Event) -> Result<FeedEntry, &'static str> {
    let entry: FeedEntry = serde_json::from_str(&event.data)
        .map_err(|_| "its data is not a revocation entry of a known kind")?;
    if event.id.parse::<i64>().ok() != Some(entry.seq) {
        return Err("its id is not its sequence number");
    }
    Ok(entry)
}

/// Remembers a revocation for as long as a token it covers could still be presented.
fn apply(guard: &Guard, entry: &FeedEntry) {
    let until = match &entry.revoked {
        Revoked::Token { expires_at, .. } => Timestamp::from_unix(*expires_at),
        // A withdrawn key is refused for good, however old the entry.
        Revoked::SigningKey { .. } => Timestamp::from_unix(i64::MAX),
        _ => Timestamp::from_unix(entry.at).plus_seconds(guard.revocation_retention().as_secs()),
    };
    let now = guard.now();
    if until >= now {
        guard
            .revocations()
            .apply(&entry.revoked, Timestamp::from_unix(entry.at), until);
        guard.revocations().purge(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, data: &str) -> Event {
        Event {
            event: "revocation".into(),
            data: data.into(),
            id: id.into(),
            retry: None,
        }
    }

    #[test]
    fn only_well_formed_entries_whose_id_is_their_seq_are_accepted() {
        let grant = r#"{"seq":7,"at":1,"tenant":"acme","kind":"grant","grant_id":"g_1"}"#;
        assert!(parse_entry(&event("7", grant)).is_ok());
        let cases = [
            ("7", "not json", "not JSON"),
            ("7", r#"{"seq":7,"at":1,"kind":"grant"}"#, "no grant id"),
            (
                "7",
                r#"{"seq":7,"at":1,"kind":"teleport","grant_id":"g"}"#,
                "unknown kind",
            ),
            ("7", r#"[7]"#, "wrong shape"),
            ("abc", grant, "non-numeric id"),
            ("8", grant, "id is not the seq"),
            ("", grant, "no id"),
        ];
        for (id, data, reason) in cases {
            assert!(parse_entry(&event(id, data)).is_err(), "{reason}");
        }
    }

    #[test]
    fn the_position_only_moves_forward() {
        let status = Status {
            connected: AtomicBool::new(false),
            last_seq: AtomicI64::new(-1),
            down_since: AtomicI64::new(0),
        };
        assert_eq!(status.position(), None);
        status.advance(-5);
        assert_eq!(status.position(), None);
        status.advance(10);
        status.advance(4);
        assert_eq!(status.position(), Some(10));
    }

    #[test]
    fn event_stream_content_types() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream("text/html"));
        assert!(!is_event_stream(""));
        assert!(!is_event_stream("text/event-streamx"));
    }
}
