//! Group commit for the event log.
//!
//! Every issued token must have its event durable before the token is returned, and on the
//! client-credentials path that event is the only write. One fsync per request would cap
//! issuance at the disk's sync rate, so requests hand their event to a single writer task,
//! which appends everything that queued up while the previous batch was syncing, and what the
//! requests already running hand over while it gathers, in one transaction and then
//! acknowledges each request. Under load, batches grow and the cost per event falls; with one
//! request in flight, it is one ordinary commit.
//!
//! An event may bring a state change that must be durable with it ([`crate::batch`]: a
//! refresh rotation, a new refresh family, a consumed code): on SQLite the writer applies it
//! in the same transaction, so refresh and the code exchange get the same group commit as
//! client credentials (PostgreSQL applies it alone first: [`Store::groups_changes`]). A batch
//! with changes that fails is retried entry by entry, so one change that cannot apply (a
//! constraint, a deadlock between nodes) fails only its own request.
//!
//! A token's event may name the grant the token was issued under
//! ([`EventWriter::append_under_grant`]): the writer checks, once per batch for all such
//! grants, that each is still in force before it writes, and declines the events of those
//! that are not. A caller may then take its grant from a cache: a grant revoked since it was
//! cached, by any node, never has a token returned under it once the revocation has
//! committed. The check is one statement per batch, not one read per request.
//!
//! The writer reports how long each event waited for durability to a [`WriterObserver`] (the
//! server's metrics), and [`EventWriter::pending`] says how many events are waiting, without
//! adding a lock or a shared counter to [`EventWriter::append`].

use crate::batch::{Change, Entry, Outcome, Written};
use crate::log_limit::LogLimit;
use crate::model::CodeConsumption;
use crate::{Store, StoreError, StoreResult};
use mandate_core::event::NewEvent;
use mandate_core::time::Timestamp;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Most times the writer yields to let running requests add to a batch. It stops as soon as a
/// round brings nothing new, so a lone request waits one yield; under load a commit carries
/// every request in flight instead of whichever few were queued at that instant. Measured on
/// SQLite at 32 connections (BENCHMARKS.md, "Cost of auditing"): gathering cut the cost of
/// auditing from about a third of issuance throughput to about a seventh.
const GATHER_ROUNDS: usize = 64;
/// Requests that may wait for the writer before `append` itself waits (back-pressure).
const QUEUE_DEPTH: usize = 16 * 1024;

type Ack = oneshot::Sender<StoreResult<Outcome>>;

/// An entry on its way to the writer, with when it was handed over.
struct Queued {
    entry: Entry,
    /// The grant that must still be in force for the entry to be written.
    grant: Option<GrantInForce>,
    ack: Ack,
    at: Instant,
}

/// A grant an event's token was issued under, and when it was issued.
struct GrantInForce {
    id: String,
    at: Timestamp,
}

/// Told about every event the writer makes durable (the server's metrics).
pub trait WriterObserver: Send + Sync {
    /// An event became durable `waited` after it was handed to [`EventWriter::append`].
    fn committed(&self, waited: Duration);
}

/// Observes nothing.
struct Unobserved;

impl WriterObserver for Unobserved {
    fn committed(&self, _: Duration) {}
}

/// A cloneable handle that appends events through the shared writer task.
#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Queued>,
    /// The highest sequence number committed by this writer, for readers that follow the log
    /// (the revocation feed) and want to wake as soon as something new is durable.
    committed: watch::Receiver<i64>,
    /// Events the writer has taken from the queue and is committing now. Written only by the
    /// writer task, read by [`Self::pending`]: `append` pays nothing for it.
    in_flight: Arc<AtomicUsize>,
    /// For changes the store does not group ([`Store::groups_changes`]).
    store: Arc<dyn Store>,
    groups_changes: bool,
}

impl EventWriter {
    /// Starts the writer task. It runs until every handle is dropped, then drains and exits.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        Self::spawn_observed(store, Arc::new(Unobserved))
    }

    /// [`Self::spawn`], reporting each commit to `observer`.
    pub fn spawn_observed(
        store: Arc<dyn Store>,
        observer: Arc<dyn WriterObserver>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(0);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let groups_changes = store.groups_changes();
        let writer = Writer {
            store: store.clone(),
            observer,
            committed: committed_tx,
            in_flight: in_flight.clone(),
        };
        let task = tokio::spawn(writer.run(rx));
        (
            Self {
                tx,
                committed,
                in_flight,
                store,
                groups_changes,
            },
            task,
        )
    }

    /// Events handed to [`Self::append`] and not yet durable: those queued for the writer plus
    /// the batch it is committing.
    pub fn pending(&self) -> usize {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        queued + self.in_flight.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever a batch commits (its value: the highest new seq).
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// Appends one event and waits until it is durable; returns its sequence number.
    #[cfg(not(feature = "bench-unaudited"))]
    pub async fn append(&self, event: NewEvent) -> StoreResult<i64> {
        self.submit(None, Some(event))
            .await?
            .seq
            .ok_or(StoreError::Corrupt(
                "an event without a change was not written",
            ))
    }

    /// Benchmark builds only (`--features bench-unaudited`): drops the event and answers at
    /// once, so `bench/run.sh` can measure what auditing costs. Never in a real build: the
    /// binary then keeps no audit log, no revocation feed and no chain. Events that carry a
    /// change ([`Self::append_with`]) are still written with it.
    #[cfg(feature = "bench-unaudited")]
    pub async fn append(&self, event: NewEvent) -> StoreResult<i64> {
        drop(event);
        Ok(0)
    }

    /// Applies `change` and appends `event` in one group-commit batch and waits until both
    /// are durable; [`Written::Declined`] when the change did not apply (nothing was written).
    ///
    /// Where the store does not group changes ([`Store::groups_changes`]), the change is
    /// applied in a transaction of its own first and the event appended after it.
    pub async fn append_with(&self, change: Change, event: NewEvent) -> StoreResult<Written> {
        let outcome = if self.groups_changes {
            self.submit(Some(change), Some(event)).await?
        } else {
            let applied = self.store.apply_change_alone(&change).await?;
            if applied.declined {
                return Ok(Written::Declined);
            }
            self.submit(None, Some(event)).await?
        };
        match outcome.seq {
            Some(seq) => Ok(Written::Durable(seq)),
            None if outcome.declined => Ok(Written::Declined),
            None => Err(StoreError::Corrupt(
                "an applied change's event was not written",
            )),
        }
    }

    /// Consumes an authorization code, issuing nothing (a failed redemption burns its code),
    /// in a group-commit batch (see [`crate::batch`]), and waits until that is durable.
    pub async fn consume_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> StoreResult<CodeConsumption> {
        let change = Change::RedeemCode {
            code_hash: code_hash.to_owned(),
            now,
            family: None,
        };
        let outcome = if self.groups_changes {
            self.submit(Some(change), None).await?
        } else {
            self.store.apply_change_alone(&change).await?
        };
        outcome
            .consumed
            .ok_or(StoreError::Corrupt("a code consumption reported nothing"))
    }

    /// Appends the event of a token issued under grant `grant_id` at `now`, and waits until
    /// it is durable, unless that grant is no longer in force (revoked, or expired at `now`)
    /// when the writer takes up the event's batch: then nothing is written and the answer is
    /// [`Written::Declined`]. See the module documentation.
    ///
    /// Benchmark builds (`bench-unaudited`) drop the event but keep the check, so that what
    /// `bench/audit-cost.sh` charges to auditing is the event alone (see [`Self::append`]).
    pub async fn append_under_grant(
        &self,
        grant_id: &str,
        now: Timestamp,
        event: NewEvent,
    ) -> StoreResult<Written> {
        let unaudited = cfg!(feature = "bench-unaudited");
        let event = (!unaudited).then_some(event);
        let grant = GrantInForce {
            id: grant_id.to_owned(),
            at: now,
        };
        let outcome = self.submit_checked(None, event, Some(grant)).await?;
        match outcome.seq {
            _ if outcome.declined => Ok(Written::Declined),
            Some(seq) => Ok(Written::Durable(seq)),
            None if unaudited => Ok(Written::Durable(0)),
            None => Err(StoreError::Corrupt("an event in force was not written")),
        }
    }

    async fn submit(
        &self,
        change: Option<Change>,
        event: Option<NewEvent>,
    ) -> StoreResult<Outcome> {
        self.submit_checked(change, event, None).await
    }

    async fn submit_checked(
        &self,
        change: Option<Change>,
        event: Option<NewEvent>,
        grant: Option<GrantInForce>,
    ) -> StoreResult<Outcome> {
        let (ack, done) = oneshot::channel();
        let queued = Queued {
            entry: Entry { change, event },
            grant,
            ack,
            at: Instant::now(),
        };
        self.tx
            .send(queued)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer task's side.
struct Writer {
    store: Arc<dyn Store>,
    observer: Arc<dyn WriterObserver>,
    committed: watch::Sender<i64>,
    in_flight: Arc<AtomicUsize>,
}

/// One gathered batch, in arrival order, with who to answer.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    acks: Vec<(Ack, Instant)>,
    /// Whether any entry carries a change; without one, the events take the plain path.
    changes: bool,
    /// The grants that must be in force, by entry; only until [`Writer::screen`] checks them.
    grants: Vec<Option<GrantInForce>>,
}

impl Batch {
    fn push(&mut self, queued: Queued) {
        self.add(queued.entry, queued.grant, (queued.ack, queued.at));
    }

    fn add(&mut self, entry: Entry, grant: Option<GrantInForce>, ack: (Ack, Instant)) {
        self.changes |= entry.change.is_some();
        self.entries.push(entry);
        self.grants.push(grant);
        self.acks.push(ack);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        while let Some(first) = rx.recv().await {
            let mut batch = Batch::default();
            batch.push(first);
            // Take what is queued; then, while entries keep arriving, let the requests that
            // are ready run on and hand over theirs too, so one commit carries more of them.
            let mut rounds = 0;
            loop {
                let before = batch.len();
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(queued) => batch.push(queued),
                        Err(_) => break,
                    }
                }
                rounds += 1;
                let quiet = rounds > 1 && batch.len() == before;
                if batch.len() >= MAX_BATCH || rounds > GATHER_ROUNDS || quiet {
                    break;
                }
                tokio::task::yield_now().await;
            }
            self.commit(batch).await;
        }
    }

    /// Takes out of the batch the entries whose grant is no longer in force, with their
    /// answer (declined), in one read for the whole batch. If that read fails, the entries
    /// that needed it fail, and the others are still written.
    async fn screen(&self, batch: Batch) -> (Batch, Vec<(Ack, StoreResult<Outcome>)>) {
        let Some(latest) = batch.grants.iter().flatten().map(|g| g.at).max() else {
            return (batch, Vec::new());
        };
        let ids: HashSet<&str> = batch
            .grants
            .iter()
            .flatten()
            .map(|g| g.id.as_str())
            .collect();
        let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
        let in_force: StoreResult<HashSet<String>> = self
            .store
            .grants_in_force(&ids, latest)
            .await
            .map(|live| live.into_iter().collect());
        if let Err(error) = &in_force {
            log_failure(
                error,
                "cannot check the grants of an event batch",
                batch.len(),
            );
        }
        let mut kept = Batch::default();
        let mut answered = Vec::new();
        for ((entry, grant), ack) in batch.entries.into_iter().zip(batch.grants).zip(batch.acks) {
            let Some(grant) = grant else {
                kept.add(entry, None, ack);
                continue;
            };
            match &in_force {
                Ok(live) if live.contains(&grant.id) => kept.add(entry, None, ack),
                Ok(_) => {
                    let declined = Outcome {
                        declined: true,
                        ..Outcome::default()
                    };
                    answered.push((ack.0, Ok(declined)));
                }
                Err(error) => answered.push((ack.0, Err(batch_failure(error)))),
            }
        }
        (kept, answered)
    }

    /// Commits a batch and answers everyone in it. A failed batch with changes is retried
    /// entry by entry, so only the entries that fail alone are told so.
    async fn commit(&self, batch: Batch) {
        self.in_flight.store(batch.len(), Ordering::Relaxed);
        let (mut batch, answered) = self.screen(batch).await;
        let size = batch.len();
        self.in_flight.store(size, Ordering::Relaxed);
        for (ack, answer) in answered {
            let _ = ack.send(answer);
        }
        if size == 0 {
            return;
        }
        let deadline = self.store.batch_deadline();
        let outcome = if batch.changes {
            bounded_by(deadline, self.store.commit_batch(&batch.entries)).await
        } else {
            bounded_by(
                deadline,
                self.append_plain(std::mem::take(&mut batch.entries)),
            )
            .await
        };
        // Before any acknowledgement: an appender that has its answer sees none pending.
        self.in_flight.store(0, Ordering::Relaxed);
        match outcome {
            Ok(outcomes) if outcomes.len() == size => self.acknowledge(batch.acks, outcomes),
            Ok(_) => {
                tracing::error!("event store returned a wrong number of outcomes");
                fail(batch.acks, &StoreError::EventBatchFailed);
            }
            // Retried one by one only when an entry may be at fault: with the database
            // unavailable, each retry would wait out the same failure.
            Err(error) if batch.changes && size > 1 && !error.is_unavailable() => {
                tracing::warn!(error = ?error, batch = size, "batch failed; retrying its entries one by one");
                for (entry, ack) in batch.entries.into_iter().zip(batch.acks) {
                    let outcome = bounded_by(
                        deadline,
                        self.store.commit_batch(std::slice::from_ref(&entry)),
                    )
                    .await;
                    match outcome {
                        Ok(outcomes) if outcomes.len() == 1 => {
                            self.acknowledge(vec![ack], outcomes)
                        }
                        Ok(_) => fail(vec![ack], &StoreError::EventBatchFailed),
                        Err(error) => {
                            tracing::error!(error = ?error, "batch entry failed");
                            fail(vec![ack], &error);
                        }
                    }
                }
            }
            Err(error) => {
                log_failure(&error, "event batch failed", size);
                fail(batch.acks, &error);
            }
        }
    }

    /// Entries without changes: their events through the store's plain append (its fastest
    /// path). An entry without an event was only a grant check ([`Writer::screen`]).
    async fn append_plain(&self, entries: Vec<Entry>) -> StoreResult<Vec<Outcome>> {
        let with_event: Vec<bool> = entries.iter().map(|e| e.event.is_some()).collect();
        let events: Vec<NewEvent> = entries.into_iter().filter_map(|e| e.event).collect();
        let mut seqs = self.store.append_events(&events).await?.into_iter();
        Ok(with_event
            .into_iter()
            .map(|event| Outcome {
                seq: if event { seqs.next() } else { None },
                ..Outcome::default()
            })
            .collect())
    }

    fn acknowledge(&self, acks: Vec<(Ack, Instant)>, outcomes: Vec<Outcome>) {
        if let Some(last) = outcomes.iter().filter_map(|o| o.seq).max() {
            self.committed.send_replace(last);
        }
        let durable = Instant::now();
        for ((ack, queued_at), outcome) in acks.into_iter().zip(outcomes) {
            self.observer
                .committed(durable.saturating_duration_since(queued_at));
            let _ = ack.send(Ok(outcome));
        }
    }
}

/// A batch's call to the store, failed as unavailable if it has no answer within `deadline`
/// ([`Store::batch_deadline`]: a database that stopped answering on an open connection would
/// otherwise hold every request queued behind the batch until TCP gives up, minutes later).
/// Whether a batch cut off so committed is unknown, as after any connection lost mid-commit:
/// nobody in it was acknowledged, and the chain stays whole (the next batch reads the head it
/// builds on).
async fn bounded_by<T>(
    deadline: Option<Duration>,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or(Err(StoreError::TimedOut))
}

/// While the database is away every batch fails alike: logged once a second as a warning
/// (each request's own line is limited the same way in the server), anything else at once.
static UNAVAILABLE_LOG: LogLimit = LogLimit::new(Duration::from_secs(1));

fn log_failure(error: &StoreError, what: &'static str, batch: usize) {
    if !error.is_unavailable() {
        tracing::error!(error = ?error, batch, "{what}");
    } else if let Some(unlogged) = UNAVAILABLE_LOG.admit(Instant::now()) {
        tracing::warn!(error = ?error, batch, unlogged, "{what}: the database is unavailable");
    }
}

/// Tells everyone in a failed batch, each with an error of its own that says whether the
/// database was unavailable (the cause itself was logged once, here in the writer).
fn fail(acks: Vec<(Ack, Instant)>, cause: &StoreError) {
    for (ack, _) in acks {
        let _ = ack.send(Err(batch_failure(cause)));
    }
}

fn batch_failure(cause: &StoreError) -> StoreError {
    if cause.is_unavailable() {
        StoreError::EventBatchUnavailable
    } else {
        StoreError::EventBatchFailed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_without_an_answer_fails_as_unavailable_at_its_deadline() {
        let deadline = Duration::from_millis(20);
        let started = Instant::now();
        let never = std::future::pending::<StoreResult<()>>();
        let error = bounded_by(Some(deadline), never).await.unwrap_err();
        assert!(matches!(error, StoreError::TimedOut));
        assert!(error.is_unavailable());
        assert!(started.elapsed() >= deadline);
        assert_eq!(
            bounded_by(Some(deadline), async { Ok(7) }).await.unwrap(),
            7
        );
        assert_eq!(bounded_by(None, async { Ok(8) }).await.unwrap(), 8);
    }
}
