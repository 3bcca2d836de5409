//! SQLite's group-commit batches ([`crate::group_commit`]), each written in one call on a
//! blocking thread, on a connection of their own.
//!
//! sqlx runs every SQLite statement on its connection's worker thread: the statement is sent
//! there, that thread wakes, runs it and wakes the caller. A batch is a transaction of many
//! statements (open, reserve sequence numbers, insert events, commit) and every refresh or code
//! redemption in it adds its own (then two for a rotation; four for a code: consume, family,
//! first token, link), so a batch of 32 code redemptions made about 130 such round trips between the
//! writer task and sqlx's thread, each costing more than the statement it carried (BENCHMARKS.md,
//! "The writer's batches in one call"). Here the whole transaction runs in one call on tokio's
//! blocking pool with rusqlite, which links the same SQLite library as sqlx (one library, one
//! set of file locks): one hand-off per batch.
//!
//! The statements are the ones sqlx runs for PostgreSQL and for in-memory SQLite
//! ([`crate::sql`]), `$N` bound by name; only the event rows are bound by position, through the
//! padded multi-row `INSERT` the sqlx path uses ([`crate::sqlite`]). The transaction opens
//! with `BEGIN IMMEDIATE`, which takes the write lock (waiting out the busy timeout like any
//! writer) before it reads anything. Changes are applied in lock order before the events are
//! chained, exactly as in `sql::events`. An in-memory database has no file to open a second
//! connection on, and keeps the sqlx path.

use crate::batch::{Change, Entry, Outcome, Retiring};
use crate::model::CodeConsumption;
use crate::sql::events::{HASH_OF, RESERVE, chain};
use crate::sql::grants::{CODE, CONSUME_CODE, CodeRow};
use crate::sql::refresh::{ADVANCE_LIVE, INSERT_FAMILY, RETIRE_TOKEN, START_LIVE, generation};
use crate::{StoreError, StoreResult};
use mandate_core::event::NewEvent;
use mandate_core::refresh::{LiveToken, RefreshFamily};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use rusqlite::{named_params, types::Null};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prepared statements kept: every padded event `INSERT` size and the change statements.
const STATEMENT_CACHE: usize = 32;

/// A chain link: an event's sequence number and hash.
pub(crate) type Link = (i64, String);

/// How the store's other connections are opened, for the batch connection to match.
pub(crate) struct Settings {
    pub(crate) busy_timeout: Duration,
    pub(crate) wal_autocheckpoint_pages: u32,
}

/// The batch connection of a SQLite file database.
pub(crate) struct BatchConnection {
    conn: Arc<Mutex<Connection>>,
}

impl BatchConnection {
    /// Opens the batch connection of the (migrated, WAL-mode) database file at `path`.
    pub(crate) fn open(path: &Path, settings: &Settings) -> StoreResult<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(settings.busy_timeout)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            settings.wal_autocheckpoint_pages,
        )?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Numbers, chains and inserts `events` (with `details`, their `detail` texts) after the
    /// chain's head and commits them; their links in input order. `known` is the last link
    /// this process committed, if any.
    pub(crate) async fn append(
        &self,
        events: Vec<NewEvent>,
        details: Vec<String>,
        known: Option<Link>,
    ) -> StoreResult<Vec<Link>> {
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let links = chain_in(&tx, &events, &details, known.as_ref())?;
            tx.commit()?;
            Ok(links)
        })
        .await
    }

    /// Applies the entries' changes and appends the events of those not declined, in one
    /// transaction: what each entry came to, in input order, and the links of the events
    /// written (in the order of the entries that wrote them).
    pub(crate) async fn commit(
        &self,
        entries: Vec<Entry>,
        known: Option<Link>,
    ) -> StoreResult<(Vec<Outcome>, Vec<Link>)> {
        self.run(move |conn| commit_entries(conn, entries, known.as_ref()))
            .await
    }

    /// Runs `work` on the batch connection, on a blocking thread.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while the lock is held leaves at most an open transaction, which
            // `rusqlite::Transaction` rolls back as it unwinds.
            let mut conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|_| StoreError::EventBatchFailed)?
    }
}

fn commit_entries(
    conn: &mut Connection,
    entries: Vec<Entry>,
    known: Option<&Link>,
) -> StoreResult<(Vec<Outcome>, Vec<Link>)> {
    let mut outcomes = vec![Outcome::default(); entries.len()];
    let mut changes: Vec<(usize, &Change)> = entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| entry.change.as_ref().map(|c| (index, c)))
        .collect();
    changes.sort_unstable_by(|a, b| a.1.lock_key().cmp(b.1.lock_key()));
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (index, change) in changes {
        let outcome = outcomes
            .get_mut(index)
            .ok_or(StoreError::Corrupt("event batch index"))?;
        apply(&tx, change, outcome)?;
    }
    let (kept, events): (Vec<usize>, Vec<NewEvent>) = entries
        .into_iter()
        .zip(&outcomes)
        .enumerate()
        .filter(|(_, (_, outcome))| !outcome.declined)
        .filter_map(|(index, (entry, _))| entry.event.map(|e| (index, e)))
        .unzip();
    let links = if events.is_empty() {
        Vec::new()
    } else {
        let details = crate::sql::events::details(&events);
        chain_in(&tx, &events, &details, known)?
    };
    tx.commit()?;
    for (index, (seq, _)) in kept.into_iter().zip(&links) {
        if let Some(outcome) = outcomes.get_mut(index) {
            outcome.seq = Some(*seq);
        }
    }
    Ok((outcomes, links))
}

/// One change, as `apply_change` in `sql::refresh` applies it through sqlx.
fn apply(tx: &Transaction<'_>, change: &Change, outcome: &mut Outcome) -> StoreResult<()> {
    match change {
        Change::RotateRefresh {
            family_id,
            retiring,
            successor,
            now,
        } => {
            outcome.declined = !retire_and_succeed(tx, family_id, retiring, successor, *now)?;
        }
        Change::RedeemCode {
            code_hash,
            now,
            family,
        } => {
            let family_id = family.as_ref().map(|f| f.id.as_str());
            let consumed = consume_code(tx, code_hash, now.unix(), family_id)?;
            outcome.declined = !matches!(consumed, CodeConsumption::Fresh(_));
            outcome.consumed = Some(consumed);
            if let (false, Some(family)) = (outcome.declined, family) {
                insert_family(tx, family)?;
            }
        }
    }
    Ok(())
}

fn consume_code(
    tx: &Transaction<'_>,
    code_hash: &str,
    now: i64,
    family_id: Option<&str>,
) -> StoreResult<CodeConsumption> {
    let fresh = tx
        .prepare_cached(CONSUME_CODE)?
        .query_row(
            named_params! {"$1": code_hash, "$2": now, "$3": family_id},
            code_row,
        )
        .optional()?;
    if let Some(row) = fresh {
        return Ok(CodeConsumption::Fresh(row.try_into()?));
    }
    let used = tx
        .prepare_cached(CODE)?
        .query_row(named_params! {"$1": code_hash}, code_row)
        .optional()?;
    Ok(match used {
        Some(row) => CodeConsumption::Replayed(row.try_into()?),
        None => CodeConsumption::Unknown,
    })
}

fn code_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CodeRow> {
    CodeRow::from_inline(&mut crate::sqlite_inline_reads::Columns::new(row))
}

/// As `retire_and_succeed` in `sql::refresh`.
fn retire_and_succeed(
    tx: &Transaction<'_>,
    family_id: &str,
    retiring: &Retiring,
    successor: &LiveToken,
    now: mandate_core::time::Timestamp,
) -> StoreResult<bool> {
    let next = named_params! {
        "$1": family_id,
        "$2": generation(successor.generation)?,
        "$3": successor.token_hash,
        "$4": successor.issued_at.unix(),
        "$5": successor.expires_at.unix(),
    };
    let changed = match retiring {
        Retiring::Live {
            generation: from,
            token_hash,
        } => {
            let mut params = next.to_vec();
            let from = generation(*from)?;
            params.extend(named_params! {"$6": from, "$7": token_hash});
            tx.prepare_cached(ADVANCE_LIVE)?
                .execute(params.as_slice())?
        }
        Retiring::Legacy { token_hash } => {
            let retired = tx.prepare_cached(RETIRE_TOKEN)?.execute(named_params! {
                "$1": token_hash,
                "$2": now.unix(),
                "$3": successor.token_hash,
            })?;
            if retired > 0 {
                tx.prepare_cached(START_LIVE)?.execute(next)?;
            }
            retired
        }
    };
    Ok(changed > 0)
}

fn insert_family(tx: &Transaction<'_>, family: &RefreshFamily) -> StoreResult<()> {
    let live = family.live.as_ref();
    tx.prepare_cached(INSERT_FAMILY)?
        .execute(named_params! {
            "$1": family.id,
            "$2": family.grant_id,
            "$3": family.client_id,
            "$4": family.tenant_id,
            "$5": family.user_id,
            "$6": family.scopes.to_string(),
            "$7": family.resource,
            "$8": family.created_at.unix(),
            "$9": family.revoked_at.map(|t| t.unix()),
            "$10": live.map(|l| generation(l.generation)).transpose()?,
            "$11": live.map(|l| &l.token_hash),
            "$12": live.map(|l| l.issued_at.unix()),
            "$13": live.map(|l| l.expires_at.unix()),
        })
        .map_err(write_error("refresh family", "grant"))?;
    Ok(())
}

/// Reserves numbers for `events` at the chain's head, chains each onto the one before and
/// inserts them: `sql::events`'s `chain_in`, on this connection.
fn chain_in(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    details: &[String],
    known: Option<&Link>,
) -> StoreResult<Vec<Link>> {
    let count = i64::try_from(events.len()).map_err(|_| StoreError::Corrupt("event batch size"))?;
    let (head, start_seq, start_hash): (i64, i64, Option<String>) = tx
        .prepare_cached(RESERVE)?
        .query_row(named_params! {"$1": count}, |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let before = head - count;
    let prev = if before <= start_seq {
        start_hash.unwrap_or_else(|| mandate_core::audit::GENESIS.to_owned())
    } else if let Some((_, hash)) = known.filter(|(seq, _)| *seq == before) {
        hash.clone()
    } else {
        let stored: Option<Option<String>> = tx
            .prepare_cached(HASH_OF)?
            .query_row(named_params! {"$1": before}, |row| row.get(0))
            .optional()?;
        stored
            .flatten()
            .ok_or(StoreError::Corrupt("audit chain: previous event"))?
    };
    let links = chain(before, &prev, events, details);
    insert_events(tx, events, details, &links)?;
    Ok(links)
}

/// Inserts numbered, chained events through the padded `INSERT`s of `crate::sqlite` (one
/// statement per [`crate::sqlite::MAX_INSERT_ROWS`] events; padding rows are NULL).
fn insert_events(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    details: &[String],
    links: &[Link],
) -> StoreResult<()> {
    let size = crate::sqlite::MAX_INSERT_ROWS;
    let chunks = events
        .chunks(size)
        .zip(details.chunks(size))
        .zip(links.chunks(size));
    for ((events, details), links) in chunks {
        let rows = events.len().next_power_of_two();
        let sql = crate::sqlite::padded_insert(rows)?;
        let mut statement = tx.prepare_cached(sql)?;
        let mut index = 0;
        let mut bind = |value: &dyn rusqlite::ToSql| -> rusqlite::Result<()> {
            index += 1;
            statement.raw_bind_parameter(index, value)
        };
        for ((event, detail), (seq, hash)) in events.iter().zip(details).zip(links) {
            bind(seq)?;
            bind(&event.at.unix())?;
            bind(&event.action.as_str())?;
            bind(&event.actor_kind.as_str())?;
            bind(&event.actor_id)?;
            bind(&event.tenant_id)?;
            bind(&event.user_id)?;
            bind(&event.client_id)?;
            bind(&event.grant_id)?;
            bind(&event.scopes)?;
            bind(&event.reason)?;
            bind(&event.ip)?;
            bind(&event.user_agent)?;
            bind(detail)?;
            bind(hash)?;
        }
        for _ in 0..(rows - events.len()) * crate::sql::events::COLUMN_COUNT {
            bind(&Null)?;
        }
        statement.raw_execute()?;
    }
    Ok(())
}

/// Maps a failed write as `crate::sql::write_error` does for sqlx: a unique violation means
/// `what` already exists, a foreign-key violation that `parent` does not.
fn write_error(
    what: &'static str,
    parent: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| match e.sqlite_error().map(|code| code.extended_code) {
        Some(
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
        ) => StoreError::Conflict(what),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::NotFound(parent),
        _ => StoreError::Sqlite(e),
    }
}
