//! `GET /revocations`: the revocation feed, as server-sent events, for resource servers.
//!
//! The feed is the revocation events of the append-only log in sequence order; each SSE event's
//! id is the event's sequence number, so a guard that reconnects with `Last-Event-ID` (or
//! `?after=`) resumes exactly where it stopped and misses nothing. A reader wakes as soon as
//! this node commits an event batch or, on PostgreSQL, any node does (LISTEN/NOTIFY); it also
//! polls every 250 ms, which covers the CLI on SQLite and any lost notification.
//!
//! Since the audit chain (`mandate_core::audit`), sequence numbers are taken under the chain's
//! head lock and commit in order on both databases, so event 9 can no longer become visible
//! after event 10. Readers still re-read the last [`SETTLE`] of sequence numbers on every pass
//! and send what they have not sent yet, as a second line of defence for a database written
//! by something that bypasses the chain: a late commit would be delivered (out of order,
//! which the guard handles: applying a revocation is idempotent and its resume position only
//! moves forward).

use crate::client_auth;
use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use mandate_core::OAuthError;
use mandate_core::params::Params;
use mandate_core::revocation::FeedEntry;
use mandate_store::EventFilter;
use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a reader looks for revocations this node did not write itself.
const POLL: Duration = Duration::from_millis(250);
/// Events read per query.
const PAGE: u32 = 500;
/// How long a sequence number range stays open for late commits before the reader stops
/// re-reading it. A transaction holding an event insert open longer than this could still be
/// missed by readers that were already past it; Mandate's writers commit in milliseconds.
const SETTLE: Duration = Duration::from_secs(5);

pub async fn revocations_get(
    State(app): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ServerError> {
    let now = app.clock.now();
    let params = Params::parse(query.unwrap_or_default().as_bytes())?;
    client_auth::authenticate_resource_server(
        &app,
        &headers,
        &meta,
        now,
        "the revocation feed is for resource servers",
    )
    .await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or_else(|| params.get("after"));
    let after = match resume {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| {
                OAuthError::invalid_request("Last-Event-ID must be a sequence number")
            })?,
    };
    // Other nodes' commits (PostgreSQL LISTEN/NOTIFY); without it, polling still finds them.
    let elsewhere = match app.store.event_notifications().await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::warn!(error = %e, "no cross-node event notifications; the feed polls");
            None
        }
    };
    let reader = Reader {
        _subscriber: app.metrics.feed_subscriber(),
        shutting_down: app.shutting_down.clone(),
        elsewhere,
        committed: app.events.committed(),
        app,
        settled: after,
        unsettled: VecDeque::new(),
        sent: BTreeSet::new(),
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        let entry = r.next().await?;
        let event = SseEvent::default()
            .id(entry.seq.to_string())
            .event("revocation")
            .json_data(&entry)
            .unwrap_or_else(|_| SseEvent::default().comment("unencodable entry skipped"));
        Some((Ok(event), r))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

impl Reader {
    /// Reads every revocation above `settled`, queueing those not sent yet; whether any was.
    async fn scan(&mut self) -> Result<bool, mandate_store::StoreError> {
        let mut cursor = self.settled;
        let mut fresh = false;
        loop {
            let filter = EventFilter::revocations_after(cursor, PAGE);
            let events = self.app.store.events(&filter).await?;
            for e in &events {
                if self.sent.insert(e.seq) {
                    fresh = true;
                    self.pending.extend(FeedEntry::from_event(e));
                }
            }
            let Some(last) = events.last() else {
                return Ok(fresh);
            };
            cursor = last.seq;
            self.unsettled.push_back((Instant::now(), cursor));
            if events.len() < PAGE as usize {
                return Ok(fresh);
            }
        }
    }

    /// Moves `settled` up to the highest sequence number seen at least [`SETTLE`] ago and
    /// forgets what lies below it.
    fn settle(&mut self, now: Instant) {
        while let Some(&(seen, seq)) = self.unsettled.front() {
            if now.duration_since(seen) < SETTLE {
                break;
            }
            self.unsettled.pop_front();
            self.settled = self.settled.max(seq);
        }
        self.sent = self.sent.split_off(&(self.settled + 1));
    }
}

/// Follows the event log from a sequence number.
struct Reader {
    /// Counts this subscriber in `mandate_revocation_feed_subscribers` for as long as the
    /// stream lives: the stream owns the reader, so a client that disconnects (its response
    /// is dropped) or a server that stops takes it off the gauge.
    _subscriber: crate::metrics::FeedSubscriber,
    app: AppState,
    /// Changes whenever this node commits events.
    committed: watch::Receiver<i64>,
    /// Changes whenever any node commits events (PostgreSQL only).
    elsewhere: Option<watch::Receiver<u64>>,
    /// The server is stopping: end the stream (guards reconnect to another node).
    shutting_down: watch::Receiver<bool>,
    /// Every event at or below this sequence number has been considered for good.
    settled: i64,
    /// Highest sequence numbers seen and when: each becomes `settled` once [`SETTLE`] old.
    unsettled: VecDeque<(Instant, i64)>,
    /// Sequence numbers above `settled` already examined (sent or not a revocation).
    sent: BTreeSet<i64>,
    pending: VecDeque<FeedEntry>,
}

impl Reader {
    /// The next revocation; `None` ends the stream (the store failed or the server is
    /// stopping; the guard reconnects).
    async fn next(&mut self) -> Option<FeedEntry> {
        loop {
            if *self.shutting_down.borrow() {
                return None;
            }
            if let Some(entry) = self.pending.pop_front() {
                return Some(entry);
            }
            // Marked seen before the query, so a commit that lands after it still wakes us.
            self.committed.borrow_and_update();
            if let Some(rx) = &mut self.elsewhere {
                rx.borrow_and_update();
            }
            self.settle(Instant::now());
            match self.scan().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "revocation feed read failed; closing the stream");
                    return None;
                }
            }
            let elsewhere = async {
                match &mut self.elsewhere {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.committed.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(POLL).await;
                    }
                }
                alive = elsewhere => {
                    if !alive {
                        self.elsewhere = None;
                    }
                }
                _ = self.shutting_down.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
