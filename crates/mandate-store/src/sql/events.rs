//! The append-only event log.
//!
//! Appends come in batches from the group-commit writer (up to 1024 events), so one statement
//! per event would make the database the bottleneck of token issuance. How a batch's rows are
//! bound is where the two drivers differ most in cost, so each backend inserts them its own way
//! (`insert_events`): SQLite in one multi-row `INSERT` of `?` parameters padded to a power of
//! two, PostgreSQL in one `INSERT ... SELECT * FROM UNNEST(...)` with an array per column.
//! Everything else here is shared.
//!
//! Changes that must be recorded atomically with their event (see the crate docs) append it
//! inside their own transaction with `append_event_in`, as the transaction's last statement,
//! so the time between the event taking its sequence number and becoming visible is as short
//! as for a group-commit batch.
//!
//! Every append is chained ([`mandate_core::audit`]): one `UPDATE ... RETURNING` on the
//! one-row `event_chain` head reserves the batch's sequence numbers and locks the head until
//! the transaction ends (it is also the write that opens a SQLite transaction's write lock);
//! the events are then hashed, each onto the previous one, and inserted with their numbers and
//! hashes. Event-writing transactions therefore commit one at a time and in sequence order on
//! both databases, so numbers are gapless and a committed event is always chained. The head is
//! the last lock such a transaction takes, so it cannot deadlock with the row locks before it.
//!
//! The previous hash is the stored hash of the event just before the reserved numbers. Each
//! process remembers the last link it committed through the group-commit path ([`LastLink`]),
//! so on a node that is the only writer the chain costs one extra statement per batch; when
//! another writer (node, CLI, any other transaction) went in between, the reserved numbers do
//! not follow the remembered link and the previous hash is read from its row instead. On
//! PostgreSQL a node that wrote the head last chains its next batch onto the remembered link
//! before asking, and moves the head and inserts in one statement that does nothing if the
//! head has moved (`postgres.rs`): one round trip per batch instead of four.

use super::{Bind, Conditions, ts};
use crate::model::EventFilter;
use crate::{StoreError, StoreResult};
use mandate_core::event::{Action, ActorKind, Event, NewEvent};
use mandate_core::revocation::REVOCATION_ACTIONS;
use serde_json::Value;
use std::sync::LazyLock;

/// An event's content columns, as read back.
const COLUMNS: &str = "at, action, actor_kind, actor_id, tenant_id, user_id, client_id, \
     grant_id, scopes, reason, ip, user_agent, detail";
/// Written per event: the number, the content, the chain hash. Each backend inserts them in
/// its own way (`insert_events` in `sqlite.rs` and `postgres.rs`): how a batch is bound is
/// where the two drivers differ most in cost.
pub(crate) const INSERT_COLUMNS: &str = "seq, at, action, actor_kind, actor_id, tenant_id, \
     user_id, client_id, grant_id, scopes, reason, ip, user_agent, detail, hash";
pub(crate) const COLUMN_COUNT: usize = 15;

/// Reserves `$1` sequence numbers and locks the chain's head until the transaction ends;
/// returns the new head and where the chain starts (with the start's hash after a purge).
pub(crate) const RESERVE: &str =
    "UPDATE event_chain SET seq = seq + $1 WHERE id = 1 RETURNING seq, start_seq, start_hash";
/// The stored hash of one event: the link the next batch chains onto.
pub(crate) const HASH_OF: &str = "SELECT hash FROM events WHERE seq = $1";
pub(crate) const READ_HEAD: &str =
    "SELECT start_seq, seq, start_hash FROM event_chain WHERE id = 1";

/// The revocation events ([`REVOCATION_ACTIONS`]), as the predicate of the partial index
/// `events_revocations` (migration 0017) spells it. A database uses a partial index only for a
/// statement whose condition implies the index's, which neither can prove for parameters, so
/// readers of the feed put these values in the statement's text, word for word.
static REVOCATIONS: LazyLock<String> = LazyLock::new(|| {
    let actions: Vec<String> = REVOCATION_ACTIONS
        .iter()
        .map(|a| format!("'{}'", a.as_str()))
        .collect();
    format!("action IN ({})", actions.join(", "))
});

/// The events the user index (`events_user_beyond_tokens`, migration 0022 on SQLite, 0023 on
/// PostgreSQL) holds: all but the tokens issued and refreshed under a grant, which are most of
/// the log and would each put an entry on a random page of it (a user's events are scattered
/// over the log), read and written at every code exchange and refresh (BENCHMARKS.md,
/// "Refresh families without a grant index"). Such an event names its grant, whose user is
/// the event's (the code's or the family's, both the grant's), so a user's token events are
/// read through the user's grants and the grant index instead ([`split_by_user`]). The
/// predicate is spelled as the index spells it, as [`REVOCATIONS`].
pub(crate) const USER_INDEXED: &str =
    "(action NOT IN ('token.issued', 'token.refreshed') OR grant_id IS NULL)";
/// The events [`USER_INDEXED`] leaves out (with the grant each part names).
pub(crate) const USER_GRANT_TOKENS: &str = "action IN ('token.issued', 'token.refreshed')";
/// The grants of a user (`grants_user`), revoked ones included.
pub(crate) const USER_GRANTS: &str = "SELECT id FROM grants WHERE user_id = $1";

/// A query filtered by user, as the queries that together answer it: the user's events the
/// user index holds, then one per grant of the user, for that grant's token events. Each
/// takes the same other filters and the same limit, so the first `limit` of their merge
/// ([`merge_parts`]) are the first `limit` of the whole. Only for a filter
/// [`reads_through_grants`]; a filter naming a grant, or reading the revocation index, is one
/// query.
///
/// `head` is the log's last sequence number, read before the user's grants: every part stops
/// there. A token event committed by then was issued under a grant committed before it, so
/// that grant is among those read; without the bound, a grant created between the two reads
/// could have its token events left out of a page whose later events are in it, and a reader
/// paging forwards from that page would never see them.
pub(crate) fn split_by_user(
    filter: &EventFilter,
    head: i64,
    grants: Vec<String>,
) -> Vec<(EventFilter, &'static str)> {
    let until_head = head.saturating_add(1);
    let bounded = EventFilter {
        before_seq: Some(filter.before_seq.map_or(until_head, |b| b.min(until_head))),
        ..filter.clone()
    };
    let mut parts = vec![(bounded.clone(), USER_INDEXED)];
    for grant in grants {
        let by_grant = EventFilter {
            grant_id: Some(grant),
            ..bounded.clone()
        };
        parts.push((by_grant, USER_GRANT_TOKENS));
    }
    parts
}

/// Whether [`split_by_user`] answers `filter`.
pub(crate) fn reads_through_grants(filter: &EventFilter) -> bool {
    filter.user_id.is_some() && filter.grant_id.is_none() && !filter.revocations_only
}

/// The first `limit` events of the parts' answers, in the filter's order.
pub(crate) fn merge_parts(mut events: Vec<Event>, filter: &EventFilter) -> Vec<Event> {
    if filter.newest_first {
        events.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
    } else {
        events.sort_unstable_by_key(|e| e.seq);
    }
    events.truncate(usize::try_from(filter.limit).unwrap_or(usize::MAX));
    events
}

/// The last link (sequence number and hash) this process committed, if known.
#[derive(Debug, Default)]
pub(crate) struct LastLink(std::sync::Mutex<Option<(i64, String)>>);

impl LastLink {
    /// The remembered hash of event `seq`, if that is the link remembered.
    pub(crate) fn hash_of(&self, seq: i64) -> Option<String> {
        let guard = self.0.lock().ok()?;
        guard
            .as_ref()
            .filter(|(s, _)| *s == seq)
            .map(|(_, h)| h.clone())
    }

    /// The remembered link: the last event this process committed and its hash.
    pub(crate) fn last(&self) -> Option<(i64, String)> {
        self.0.lock().ok()?.clone()
    }

    /// Remembers a link, only once its transaction has committed.
    pub(crate) fn committed(&self, link: (i64, String)) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = Some(link);
        }
    }
}
/// Stored events as the chain verifier reads them: raw, in order, after `$1`, at most `$2`.
/// The head's hash is the last row's.
pub(crate) const CHAIN_ROWS: &str = "SELECT seq, at, action, actor_kind, actor_id, tenant_id, \
     user_id, client_id, grant_id, scopes, reason, ip, user_agent, detail, hash FROM events \
     WHERE seq > $1 ORDER BY seq LIMIT $2";

/// Numbers `events` after the head and chains each onto the one before: `(seq, hash)` in input
/// order. `details` are the events' `detail` texts exactly as they will be stored.
pub(crate) fn chain(
    head_seq: i64,
    head_hash: &str,
    events: &[NewEvent],
    details: &[String],
) -> Vec<(i64, String)> {
    let mut prev = head_hash.to_owned();
    let mut links = Vec::with_capacity(events.len());
    for (i, (e, detail)) in events.iter().zip(details).enumerate() {
        let seq = head_seq + 1 + i as i64;
        let hash = mandate_core::audit::link(
            &prev,
            &mandate_core::audit::ChainedFields {
                seq,
                at: e.at.unix(),
                action: e.action.as_str(),
                actor_kind: e.actor_kind.as_str(),
                actor_id: e.actor_id.as_deref(),
                tenant_id: e.tenant_id.as_deref(),
                user_id: e.user_id.as_deref(),
                client_id: e.client_id.as_deref(),
                grant_id: e.grant_id.as_deref(),
                scopes: e.scopes.as_deref(),
                reason: e.reason.as_deref(),
                ip: e.ip.as_deref(),
                user_agent: e.user_agent.as_deref(),
                detail,
            },
        );
        prev.clone_from(&hash);
        links.push((seq, hash));
    }
    links
}

/// Adds `entries` to the event's `detail` object (a `null` detail becomes an object; a detail
/// that is neither is left alone rather than lose what the caller put there).
pub(crate) fn add_detail(
    event: &mut NewEvent,
    entries: impl IntoIterator<Item = (&'static str, Value)>,
) {
    if event.detail.is_null() {
        event.detail = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = &mut event.detail {
        for (key, value) in entries {
            map.insert(key.to_owned(), value);
        }
    }
}

/// Binds one event's columns, in [`INSERT_COLUMNS`] order, to a query.
macro_rules! bind_event {
    ($query:expr, $seq:expr, $event:expr, $detail:expr, $hash:expr) => {
        $query
            .bind($seq)
            .bind($event.at.unix())
            .bind($event.action.as_str())
            .bind($event.actor_kind.as_str())
            .bind(&$event.actor_id)
            .bind(&$event.tenant_id)
            .bind(&$event.user_id)
            .bind(&$event.client_id)
            .bind(&$event.grant_id)
            .bind(&$event.scopes)
            .bind(&$event.reason)
            .bind(&$event.ip)
            .bind(&$event.user_agent)
            .bind($detail)
            .bind($hash)
    };
}
pub(crate) use bind_event;

/// `SELECT` for [`crate::EventStore::events`]: `$1` is `after_seq`, `$2` the limit, then the
/// filters that are set. Each identifier filter has an index leading with that column and
/// ending with `seq`, so a page is an index range scan in either direction; time bounds are
/// checked on the rows that scan reaches (an event's time follows its sequence number to
/// within the commit delay). The revocation events have an index of their own, which
/// `revocation_events` (the table, with SQLite's `INDEXED BY`) may name. `part` is one of
/// [`split_by_user`]'s conditions, for a filter by user: the user index holds only some
/// events, and is used only by a statement that spells its predicate.
pub(crate) fn events_query<'a>(
    filter: &'a EventFilter,
    revocation_events: &str,
    part: Option<&str>,
) -> (String, Vec<Bind<'a>>) {
    let mut c = Conditions::new(3);
    c.raw("seq > $1");
    c.cmp("seq", "<", filter.before_seq);
    c.eq("tenant_id", filter.tenant_id.as_deref());
    c.eq("user_id", filter.user_id.as_deref());
    c.eq("client_id", filter.client_id.as_deref());
    c.eq("grant_id", filter.grant_id.as_deref());
    c.eq("action", filter.action.as_deref());
    c.any_of("action", &filter.actions);
    if filter.revocations_only {
        c.raw(&REVOCATIONS);
    }
    if let Some(part) = part {
        c.raw(part);
    }
    c.cmp("at", ">=", filter.since.map(|t| t.unix()));
    c.cmp("at", "<", filter.until.map(|t| t.unix()));
    let (clause, binds) = c.finish();
    let order = if filter.newest_first { "DESC" } else { "ASC" };
    let table = if filter.revocations_only {
        revocation_events
    } else {
        "events"
    };
    (
        format!("SELECT seq, {COLUMNS} FROM {table}{clause} ORDER BY seq {order} LIMIT $2"),
        binds,
    )
}

/// The `detail` column of each event, as JSON text.
pub(crate) fn details(events: &[NewEvent]) -> Vec<String> {
    events.iter().map(|e| e.detail.to_string()).collect()
}

const ACTOR_KINDS: [ActorKind; 4] = [
    ActorKind::User,
    ActorKind::Agent,
    ActorKind::Admin,
    ActorKind::System,
];

/// As for actions: a new `ActorKind` must be added to [`ACTOR_KINDS`].
const _: fn(ActorKind) = every_actor_kind_is_listed;
fn every_actor_kind_is_listed(k: ActorKind) {
    match k {
        ActorKind::User | ActorKind::Agent | ActorKind::Admin | ActorKind::System => {}
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    at: i64,
    action: String,
    actor_kind: String,
    actor_id: Option<String>,
    tenant_id: Option<String>,
    user_id: Option<String>,
    client_id: Option<String>,
    grant_id: Option<String>,
    scopes: Option<String>,
    reason: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: String,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> StoreResult<Self> {
        let action = Action::parse(&r.action).ok_or(StoreError::Corrupt("event action"))?;
        let actor_kind = ACTOR_KINDS
            .into_iter()
            .find(|k| k.as_str() == r.actor_kind)
            .ok_or(StoreError::Corrupt("event actor kind"))?;
        Ok(Event {
            seq: r.seq,
            event: NewEvent {
                at: ts(r.at),
                action,
                actor_kind,
                actor_id: r.actor_id,
                tenant_id: r.tenant_id,
                user_id: r.user_id,
                client_id: r.client_id,
                grant_id: r.grant_id,
                scopes: r.scopes,
                reason: r.reason,
                ip: r.ip,
                user_agent: r.user_agent,
                detail: serde_json::from_str(&r.detail)
                    .map_err(|_| StoreError::Corrupt("event detail"))?,
            },
        })
    }
}

macro_rules! impl_events {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Appends one event inside `tx` (call it last, just before the commit) and
            /// returns its sequence number. Call `events_committed` after the commit.
            pub(crate) async fn append_event_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                event: &::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<i64> {
                let detail = event.detail.to_string();
                let links = Self::chain_in(
                    tx,
                    ::std::slice::from_ref(event),
                    ::std::slice::from_ref(&detail),
                    None,
                )
                .await?;
                links
                    .first()
                    .map(|(seq, _)| *seq)
                    .ok_or($crate::StoreError::Corrupt("event chain"))
            }

            /// Reserves numbers for `events` at the chain's head, hashes each onto the one
            /// before and inserts them, inside `tx`; returns `(seq, hash)` in input order.
            /// `known` is this process's last committed link, if the caller has it.
            async fn chain_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                events: &[::mandate_core::event::NewEvent],
                details: &[String],
                known: Option<&$crate::sql::events::LastLink>,
            ) -> $crate::StoreResult<Vec<(i64, String)>> {
                let count = i64::try_from(events.len())
                    .map_err(|_| $crate::StoreError::Corrupt("event batch size"))?;
                let (head, start_seq, start_hash): (i64, i64, Option<String>) =
                    ::sqlx::query_as($crate::sql::events::RESERVE)
                        .bind(count)
                        .fetch_one(&mut **tx)
                        .await?;
                let before = head - count;
                let prev = if before <= start_seq {
                    // The first event after the start: chained onto the purged start event's
                    // hash, or onto the genesis value.
                    start_hash.unwrap_or_else(|| ::mandate_core::audit::GENESIS.to_owned())
                } else if let Some(hash) = known.and_then(|k| k.hash_of(before)) {
                    hash
                } else {
                    let stored: Option<String> = ::sqlx::query_scalar($crate::sql::events::HASH_OF)
                        .bind(before)
                        .fetch_optional(&mut **tx)
                        .await?
                        .flatten();
                    stored.ok_or($crate::StoreError::Corrupt("audit chain: previous event"))?
                };
                let links = $crate::sql::events::chain(before, &prev, events, details);
                Self::insert_events(&mut **tx, events, details, &links).await?;
                Ok(links)
            }
        }

        impl $store {
            /// Appends a group-commit batch in a transaction of its own on the event
            /// connection: reserve, chain, insert, commit. Works whoever wrote last.
            async fn append_in_transaction(
                &self,
                events: &[::mandate_core::event::NewEvent],
                details: &[String],
            ) -> $crate::StoreResult<Vec<i64>> {
                let mut conn = self.event_connection().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *conn).await?;
                let links = Self::chain_in(&mut tx, events, details, Some(&self.last_link)).await?;
                tx.commit().await?;
                self.events_committed();
                let seqs = links.iter().map(|(seq, _)| *seq).collect();
                if let Some(last) = links.into_iter().last() {
                    self.last_link.committed(last);
                }
                Ok(seqs)
            }

            /// Applies a batch's changes and appends its events in one transaction on the
            /// event connection (the backend's `commit_entries` decides whether to).
            pub(crate) async fn commit_batch_pooled(
                &self,
                entries: &[$crate::batch::Entry],
            ) -> $crate::StoreResult<Vec<$crate::batch::Outcome>> {
                let mut outcomes = vec![$crate::batch::Outcome::default(); entries.len()];
                let mut changes: Vec<_> = entries
                    .iter()
                    .zip(0..)
                    .filter_map(|(entry, index)| entry.change.as_ref().map(|c| (index, c)))
                    .collect();
                changes.sort_unstable_by(|a, b| a.1.lock_key().cmp(b.1.lock_key()));
                let mut conn = self.event_connection().await?;
                let mut tx = ::sqlx::Connection::begin(&mut *conn).await?;
                for (index, change) in changes {
                    let outcome = outcomes
                        .get_mut(index)
                        .ok_or($crate::StoreError::Corrupt("event batch index"))?;
                    Self::apply_change(&mut tx, change, outcome).await?;
                }
                let (kept, events): (Vec<usize>, Vec<::mandate_core::event::NewEvent>) = entries
                    .iter()
                    .zip(&outcomes)
                    .zip(0..)
                    .filter(|((_, outcome), _)| !outcome.declined)
                    .filter_map(|((entry, _), index)| entry.event.clone().map(|e| (index, e)))
                    .unzip();
                let links = if events.is_empty() {
                    Vec::new()
                } else {
                    let details = $crate::sql::events::details(&events);
                    Self::chain_in(&mut tx, &events, &details, Some(&self.last_link)).await?
                };
                tx.commit().await?;
                if let Some(last) = links.last() {
                    self.events_committed();
                    self.last_link.committed(last.clone());
                }
                for (index, (seq, _)) in kept.into_iter().zip(links) {
                    if let Some(outcome) = outcomes.get_mut(index) {
                        outcome.seq = Some(seq);
                    }
                }
                Ok(outcomes)
            }

            /// The events `filter` selects that also meet `part` (one of
            /// [`crate::sql::events::split_by_user`]'s conditions), if given.
            async fn events_part(
                &self,
                filter: &$crate::model::EventFilter,
                part: Option<&str>,
            ) -> $crate::StoreResult<Vec<::mandate_core::event::Event>> {
                let (sql, binds) =
                    $crate::sql::events::events_query(filter, Self::REVOCATION_EVENTS, part);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::events::EventRow>(&sql)
                        .bind(filter.after_seq)
                        .bind(i64::from(filter.limit)),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }
        }

        #[::async_trait::async_trait]
        impl $crate::EventStore for $store {
            async fn append_events(
                &self,
                events: &[::mandate_core::event::NewEvent],
            ) -> $crate::StoreResult<Vec<i64>> {
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                let details = $crate::sql::events::details(events);
                self.append_batch(events, &details).await
            }

            async fn commit_batch(
                &self,
                entries: &[$crate::batch::Entry],
            ) -> $crate::StoreResult<Vec<$crate::batch::Outcome>> {
                self.commit_entries(entries).await
            }

            async fn apply_change_alone(
                &self,
                change: &$crate::batch::Change,
            ) -> $crate::StoreResult<$crate::batch::Outcome> {
                let mut outcome = $crate::batch::Outcome::default();
                // The rotation of a family's live token is one statement: alone, it is its
                // own transaction, without the round trips of `BEGIN` and `COMMIT`.
                if let $crate::batch::Change::RotateRefresh {
                    family_id,
                    retiring:
                        $crate::batch::Retiring::Live {
                            generation,
                            token_hash,
                        },
                    successor,
                    ..
                } = change
                {
                    outcome.declined = !Self::advance_live(
                        &self.pool,
                        family_id,
                        *generation,
                        token_hash,
                        successor,
                    )
                    .await?;
                    return Ok(outcome);
                }
                if let $crate::batch::Change::RedeemCode {
                    code_hash,
                    now,
                    family,
                } = change
                    && let Some(outcome) = self
                        .redeem_code_alone(code_hash, *now, family.as_deref())
                        .await?
                {
                    return Ok(outcome);
                }
                let mut tx = self.pool.begin().await?;
                Self::apply_change(&mut tx, change, &mut outcome).await?;
                if outcome.declined {
                    tx.rollback().await?;
                } else {
                    tx.commit().await?;
                }
                Ok(outcome)
            }

            async fn chain_head(&self) -> $crate::StoreResult<::mandate_core::audit::ChainHead> {
                let (start_seq, seq, start_hash): (i64, i64, Option<String>) =
                    ::sqlx::query_as($crate::sql::events::READ_HEAD)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(::mandate_core::audit::ChainHead {
                    start_seq,
                    seq,
                    start_hash,
                })
            }

            async fn chain_rows(
                &self,
                after_seq: i64,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::model::ChainRow>> {
                Ok(
                    ::sqlx::query_as::<_, $crate::model::ChainRow>($crate::sql::events::CHAIN_ROWS)
                        .bind(after_seq)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn events(
                &self,
                filter: &$crate::model::EventFilter,
            ) -> $crate::StoreResult<Vec<::mandate_core::event::Event>> {
                let through_grants = $crate::sql::events::reads_through_grants(filter);
                let Some(user) = filter.user_id.as_deref().filter(|_| through_grants) else {
                    return self.events_part(filter, None).await;
                };
                // The head first, then the grants (see `split_by_user`).
                let head = $crate::EventStore::chain_head(self).await?.seq;
                let grants = ::sqlx::query_scalar::<_, String>($crate::sql::events::USER_GRANTS)
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?;
                let mut found = Vec::new();
                let parts = $crate::sql::events::split_by_user(filter, head, grants);
                for (part, condition) in parts {
                    found.extend(self.events_part(&part, Some(condition)).await?);
                }
                Ok($crate::sql::events::merge_parts(found, filter))
            }
        }
    };
}
pub(crate) use impl_events;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_detail_keeps_what_the_caller_put_there() {
        let mut e = NewEvent::new(
            mandate_core::time::Timestamp::from_unix(1),
            Action::TokenIssued,
            ActorKind::Admin,
        );
        add_detail(&mut e, [("grants", Value::from(2))]);
        assert_eq!(e.detail, serde_json::json!({"grants": 2}));
        e.detail = serde_json::json!({"note": "x", "grants": 9});
        add_detail(
            &mut e,
            [("grants", Value::from(3)), ("api_keys", Value::from(0))],
        );
        assert_eq!(
            e.detail,
            serde_json::json!({"note": "x", "grants": 3, "api_keys": 0})
        );
        e.detail = serde_json::json!(["not", "an", "object"]);
        add_detail(&mut e, [("grants", Value::from(3))]);
        assert_eq!(e.detail, serde_json::json!(["not", "an", "object"]));
    }

    #[test]
    fn revocation_reads_spell_the_predicate_of_their_index() {
        let index = format!(
            "events_revocations ON events (seq)\n    WHERE {};",
            *REVOCATIONS
        );
        for migration in [
            include_str!("../../migrations/sqlite/0017_revocation_events_index.sql"),
            include_str!("../../migrations/postgres/0017_revocation_events_index.sql"),
        ] {
            assert!(migration.contains(&index), "{index}");
        }
        let filter = EventFilter::revocations_after(7, 500);
        let (sql, binds) = events_query(&filter, "events", None);
        assert!(
            sql.contains(&format!("WHERE seq > $1 AND {}", *REVOCATIONS)),
            "{sql}"
        );
        assert!(binds.is_empty());
    }

    #[test]
    fn user_reads_spell_the_predicate_of_their_index() {
        let index = format!(
            "events_user_beyond_tokens ON events (user_id, seq)\n    WHERE {USER_INDEXED};"
        );
        for migration in [
            include_str!("../../migrations/sqlite/0022_user_index_without_token_events.sql"),
            include_str!("../../migrations/postgres/0023_user_index_without_token_events.sql"),
        ] {
            assert!(migration.contains(&index), "{index}");
        }
        // Both name the same actions: one part takes them, the other leaves them.
        for action in Action::ALL {
            let quoted = format!("'{}'", action.as_str());
            let tokens = USER_GRANT_TOKENS.contains(&quoted);
            assert_eq!(USER_INDEXED.contains(&quoted), tokens, "{quoted}");
        }
        let filter = EventFilter {
            user_id: Some("u_1".into()),
            ..EventFilter::default()
        };
        assert!(reads_through_grants(&filter));
        let parts = split_by_user(&filter, 40, vec!["g_1".into(), "g_2".into()]);
        assert_eq!(parts.len(), 3);
        // Every part stops at the head read before the grants, or earlier if asked.
        assert!(parts.iter().all(|(p, _)| p.before_seq == Some(41)));
        let earlier = EventFilter {
            before_seq: Some(12),
            ..filter.clone()
        };
        assert_eq!(
            split_by_user(&earlier, 40, Vec::new())[0].0.before_seq,
            Some(12)
        );
        let (sql, _) = events_query(&parts[0].0, "events", Some(parts[0].1));
        assert!(sql.contains(&format!("AND {USER_INDEXED}")), "{sql}");
        assert_eq!(parts[2].0.grant_id.as_deref(), Some("g_2"));
        assert_eq!(parts[2].1, USER_GRANT_TOKENS);
        for one_query in [
            EventFilter {
                grant_id: Some("g_1".into()),
                ..filter.clone()
            },
            EventFilter {
                revocations_only: true,
                ..filter.clone()
            },
            EventFilter::default(),
        ] {
            assert!(!reads_through_grants(&one_query), "{one_query:?}");
        }
    }

    #[test]
    fn every_action_and_actor_kind_has_a_distinct_name() {
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        let mut kinds: Vec<_> = ACTOR_KINDS.iter().map(|k| k.as_str()).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 4);
    }
}
