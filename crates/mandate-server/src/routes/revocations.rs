//! `GET /revocations`: the revocation feed, as server-sent events, for resource servers.
//!
//! The feed is the revocation events of the append-only log in sequence order; each SSE event's
//! id is the event's sequence number, so a guard that reconnects with `Last-Event-ID` (or
//! `?after=`) resumes exactly where it stopped and misses nothing. A reader wakes as soon as
//! this node commits an event batch or, on PostgreSQL, any node does (LISTEN/NOTIFY); it also
//! polls every 250 ms, which covers the CLI on SQLite and any lost notification.

use crate::client_auth::{self, Caller};
use crate::errors::ServerError;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use mandate_core::OAuthError;
use mandate_core::params::Params;
use mandate_core::revocation::{FeedEntry, REVOCATION_ACTIONS};
use mandate_store::EventFilter;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

/// How often a reader looks for revocations this node did not write itself.
const POLL: Duration = Duration::from_millis(250);
/// Events read per query.
const PAGE: u32 = 500;

pub async fn revocations_get(
    State(app): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ServerError> {
    let now = app.clock.now();
    let params = Params::parse(query.unwrap_or_default().as_bytes())?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str())
        .transpose()
        .map_err(|_| OAuthError::InvalidClient("malformed Authorization header".into()))?;
    let caller =
        client_auth::authenticate_caller(&app, authorization, &Params::default(), &meta, now)
            .await?;
    if !matches!(caller, Caller::Resource(_)) {
        return Err(ServerError::ClientAuth {
            error: OAuthError::InvalidClient("the revocation feed is for resource servers".into()),
            basic: authorization.is_some(),
        });
    }
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
        elsewhere,
        committed: app.events.committed(),
        app,
        after,
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

/// Follows the event log from a sequence number.
struct Reader {
    app: AppState,
    /// Changes whenever this node commits events.
    committed: watch::Receiver<i64>,
    /// Changes whenever any node commits events (PostgreSQL only).
    elsewhere: Option<watch::Receiver<u64>>,
    after: i64,
    pending: VecDeque<FeedEntry>,
}

impl Reader {
    /// The next revocation; `None` ends the stream (the store failed; the guard reconnects).
    async fn next(&mut self) -> Option<FeedEntry> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Some(entry);
            }
            // Marked seen before the query, so a commit that lands after it still wakes us.
            self.committed.borrow_and_update();
            if let Some(rx) = &mut self.elsewhere {
                rx.borrow_and_update();
            }
            let filter = EventFilter {
                actions: REVOCATION_ACTIONS
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                after_seq: self.after,
                limit: PAGE,
                ..EventFilter::default()
            };
            match self.app.store.events(&filter).await {
                Ok(events) if !events.is_empty() => {
                    for e in &events {
                        self.after = self.after.max(e.seq);
                        self.pending.extend(FeedEntry::from_event(e));
                    }
                    continue;
                }
                Ok(_) => {}
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
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
