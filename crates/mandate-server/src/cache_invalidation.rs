//! Drops what the token endpoint's caches ([`crate::cache`]) hold about agents named by a
//! revocation, on every node, within milliseconds.
//!
//! The caches keep agents for `cache_ttl_ms`, so that authenticating a client reads nothing
//! from the database. An agent can be disabled or deleted from many places (the admin API,
//! the console, an anomaly rule, the CLI, another node), and every one of them writes a
//! revocation event to the log: the same events the revocation feed serves to guards. This
//! task follows those events and forgets the agent each one names, and its service grant (a
//! revoked service grant is also caught by the event writer's check, so this only spares the
//! next token a retry). It wakes on this node's commits and, on PostgreSQL, on every node's
//! (LISTEN/NOTIFY), and polls as a fallback (the CLI writing SQLite). It queries at most once
//! per [`MIN_GAP`], so a busy writer does not turn it into a query per batch. The TTL stays as
//! the backstop.

use crate::audit_export::{ExportContext, sleep_unless_shutdown, wait_for_events};
use crate::cache::HotPathCache;
use mandate_store::{EventFilter, Store, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Shortest time between two queries for new revocation events.
const MIN_GAP: Duration = Duration::from_millis(20);
/// Longest time between two queries when nothing wakes the task.
const POLL: Duration = Duration::from_millis(250);
/// Events read per query.
const PAGE: u32 = 500;
/// Wait after a database error before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Starts following the log from its current head, read before the server answers its first
/// request: an agent cached by any request is then dropped by every revocation written after
/// it was read. (Read by the task instead, a revocation written while the task was starting
/// could be skipped, and the agent kept until its TTL.) If the database cannot say yet, the
/// task keeps asking.
pub async fn spawn(cache: Arc<HotPathCache>, wake: ExportContext) -> JoinHandle<()> {
    let head = wake
        .store
        .chain_head()
        .await
        .inspect_err(
            |e| tracing::warn!(error = %e, "cache invalidation cannot start yet; retrying"),
        )
        .ok()
        .map(|head| head.seq);
    tokio::spawn(run(cache, wake, head))
}

async fn run(cache: Arc<HotPathCache>, mut wake: ExportContext, head: Option<i64>) {
    let store = wake.store.clone();
    let mut position = match head {
        Some(seq) => seq,
        None => loop {
            if !sleep_unless_shutdown(&mut wake.shutdown, RETRY).await {
                return;
            }
            match store.chain_head().await {
                Ok(head) => break head.seq,
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation cannot start yet; retrying");
                }
            }
        },
    };
    loop {
        match step(store.as_ref(), &cache, position).await {
            Ok(next) if next > position => {
                position = next;
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cache invalidation: database failure; retrying");
                cache.forget_everything();
                if !sleep_unless_shutdown(&mut wake.shutdown, RETRY).await {
                    return;
                }
                continue;
            }
        }
        if !wait_for_events(&mut wake, POLL).await
            || !sleep_unless_shutdown(&mut wake.shutdown, MIN_GAP).await
        {
            return;
        }
    }
}

/// Applies the revocation events after `position`; returns the new position.
async fn step(store: &dyn Store, cache: &HotPathCache, position: i64) -> StoreResult<i64> {
    let events = store
        .events(&EventFilter::revocations_after(position, PAGE))
        .await?;
    let mut next = position;
    for e in &events {
        if let Some(client_id) = &e.event.client_id {
            cache.forget_agent(client_id);
        }
        next = next.max(e.seq);
    }
    Ok(next)
}
