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

use crate::error::GuardError;
use crate::guard::Guard;
use eventsource_stream::Eventsource;
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
const READ_TIMEOUT: Duration = Duration::from_secs(45);
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

    /// The sequence number of the last revocation applied.
    pub fn last_seq(&self) -> Option<i64> {
        Some(self.status.last_seq.load(Ordering::SeqCst)).filter(|s| *s >= 0)
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
            .read_timeout(READ_TIMEOUT)
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
        let task = tokio::spawn(follow(
            self.clone(),
            http,
            endpoint,
            credential,
            status.clone(),
        ));
        Ok(FeedHandle { status, task })
    }
}

async fn follow(
    guard: Guard,
    http: reqwest::Client,
    endpoint: String,
    credential: FeedCredential,
    status: Arc<Status>,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let mut request = http
            .get(&endpoint)
            .basic_auth(&credential.client_id, Some(&credential.secret))
            .header("accept", "text/event-stream");
        let last = status.last_seq.load(Ordering::SeqCst);
        if last >= 0 {
            request = request.header("last-event-id", last.to_string());
        }
        match request.send().await {
            Ok(resp) if resp.status().is_success() => {
                status.connected.store(true, Ordering::SeqCst);
                backoff = BACKOFF_START;
                let mut events = resp.bytes_stream().eventsource();
                while let Some(event) = events.next().await {
                    match event {
                        Ok(e) if e.event == "revocation" => {
                            match serde_json::from_str::<FeedEntry>(&e.data) {
                                Ok(entry) => {
                                    apply(&guard, &entry);
                                    status.last_seq.store(entry.seq, Ordering::SeqCst);
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "ignoring a malformed revocation entry")
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(error = %err, "revocation feed broke; reconnecting");
                            break;
                        }
                    }
                }
                status
                    .down_since
                    .store(guard.now().unix(), Ordering::SeqCst);
                status.connected.store(false, Ordering::SeqCst);
            }
            Ok(resp) => tracing::warn!(
                status = resp.status().as_u16(),
                "revocation feed refused the connection"
            ),
            Err(err) => tracing::warn!(error = %err, "revocation feed unreachable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Remembers a revocation for as long as a token it covers could still be presented.
fn apply(guard: &Guard, entry: &FeedEntry) {
    let until = match &entry.revoked {
        Revoked::Token { expires_at, .. } => Timestamp::from_unix(*expires_at),
        _ => Timestamp::from_unix(entry.at).plus_seconds(guard.revocation_retention().as_secs()),
    };
    let now = guard.now();
    if until >= now {
        guard.revocations().apply(&entry.revoked, until);
        guard.revocations().purge(now);
    }
}
