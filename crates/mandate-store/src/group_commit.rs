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
//! The writer reports how long each event waited for durability to a [`WriterObserver`] (the
//! server's metrics), and [`EventWriter::pending`] says how many events are waiting, without
//! adding a lock or a shared counter to [`EventWriter::append`].

use crate::{Store, StoreError, StoreResult};
use mandate_core::event::NewEvent;
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

type Ack = oneshot::Sender<StoreResult<i64>>;

/// An event on its way to the writer, with when it was handed over.
type Queued = (NewEvent, Ack, Instant);

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
        let writer = Writer {
            store,
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
        self.append_durably(event).await
    }

    /// Benchmark builds only (`--features bench-unaudited`): drops the event and answers at
    /// once, so `bench/run.sh` can measure what auditing costs. Never in a real build: the
    /// binary then keeps no audit log, no revocation feed and no chain.
    #[cfg(feature = "bench-unaudited")]
    pub async fn append(&self, event: NewEvent) -> StoreResult<i64> {
        drop(event);
        Ok(0)
    }

    #[cfg_attr(feature = "bench-unaudited", allow(dead_code))]
    async fn append_durably(&self, event: NewEvent) -> StoreResult<i64> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((event, ack, Instant::now()))
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

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let mut events = Vec::with_capacity(MAX_BATCH);
        let mut acks = Vec::with_capacity(MAX_BATCH);
        while let Some((event, ack, queued_at)) = rx.recv().await {
            events.push(event);
            acks.push((ack, queued_at));
            // Take what is queued; then, while events keep arriving, let the requests that
            // are ready run on and hand over theirs too, so one commit carries more of them.
            let mut rounds = 0;
            loop {
                let before = events.len();
                while events.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((event, ack, queued_at)) => {
                            events.push(event);
                            acks.push((ack, queued_at));
                        }
                        Err(_) => break,
                    }
                }
                rounds += 1;
                let quiet = rounds > 1 && events.len() == before;
                if events.len() >= MAX_BATCH || rounds > GATHER_ROUNDS || quiet {
                    break;
                }
                tokio::task::yield_now().await;
            }
            self.in_flight.store(events.len(), Ordering::Relaxed);
            let outcome = self.store.append_events(&events).await;
            // Before any acknowledgement: an appender that has its answer sees none pending.
            self.in_flight.store(0, Ordering::Relaxed);
            match outcome {
                Ok(seqs) if seqs.len() == acks.len() => {
                    if let Some(&last) = seqs.iter().max() {
                        self.committed.send_replace(last);
                    }
                    let durable = Instant::now();
                    for ((ack, queued_at), seq) in acks.drain(..).zip(seqs) {
                        self.observer
                            .committed(durable.saturating_duration_since(queued_at));
                        let _ = ack.send(Ok(seq));
                    }
                }
                Ok(_) => {
                    tracing::error!("event store returned a wrong number of sequence numbers");
                    for (ack, _) in acks.drain(..) {
                        let _ = ack.send(Err(StoreError::EventBatchFailed));
                    }
                }
                Err(error) => {
                    tracing::error!(error = ?error, batch = events.len(), "event batch failed");
                    for (ack, _) in acks.drain(..) {
                        let _ = ack.send(Err(StoreError::EventBatchFailed));
                    }
                }
            }
            events.clear();
        }
    }
}
