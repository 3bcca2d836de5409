//! Group commit for the event log.
//!
//! Every issued token must have its event durable before the token is returned, and on the
//! client-credentials path that event is the only write. One fsync per request would cap
//! issuance at the disk's sync rate, so requests hand their event to a single writer task,
//! which appends everything that queued up while the previous batch was syncing in one
//! transaction and then acknowledges each request. Under load, batches grow and the cost per
//! event falls; with one request in flight, it is one ordinary commit.

use crate::{Store, StoreError, StoreResult};
use mandate_core::event::NewEvent;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Most events written in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before `append` itself waits (back-pressure).
const QUEUE_DEPTH: usize = 16 * 1024;

type Ack = oneshot::Sender<StoreResult<i64>>;

/// A cloneable handle that appends events through the shared writer task.
#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<(NewEvent, Ack)>,
    /// The highest sequence number committed by this writer, for readers that follow the log
    /// (the revocation feed) and want to wake as soon as something new is durable.
    committed: watch::Receiver<i64>,
}

impl EventWriter {
    /// Starts the writer task. It runs until every handle is dropped, then drains and exits.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(0);
        let task = tokio::spawn(run(store, rx, committed_tx));
        (Self { tx, committed }, task)
    }

    /// A receiver that changes whenever a batch commits (its value: the highest new seq).
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// Appends one event and waits until it is durable; returns its sequence number.
    pub async fn append(&self, event: NewEvent) -> StoreResult<i64> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((event, ack))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        done.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(NewEvent, Ack)>,
    committed: watch::Sender<i64>,
) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut acks = Vec::with_capacity(MAX_BATCH);
    while let Some((event, ack)) = rx.recv().await {
        events.push(event);
        acks.push(ack);
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((event, ack)) => {
                    events.push(event);
                    acks.push(ack);
                }
                Err(_) => break,
            }
        }
        match store.append_events(&events).await {
            Ok(seqs) if seqs.len() == acks.len() => {
                if let Some(&last) = seqs.iter().max() {
                    committed.send_replace(last);
                }
                for (ack, seq) in acks.drain(..).zip(seqs) {
                    let _ = ack.send(Ok(seq));
                }
            }
            Ok(_) => {
                tracing::error!("event store returned a wrong number of sequence numbers");
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(StoreError::EventBatchFailed));
                }
            }
            Err(error) => {
                tracing::error!(error = ?error, batch = events.len(), "event batch failed");
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(StoreError::EventBatchFailed));
                }
            }
        }
        events.clear();
    }
}
