//! Signed audit checkpoints and retention: the server's periodic purge (`[audit]
//! retention_days`) and the operations `mandate audit checkpoint` / `purge` run locally.
//!
//! A purge never deletes what it has not checked and anchored: it picks the cutoff (the last
//! event older than the retention, never the head, never past what a configured
//! `[[audit_export]]` sink has delivered or the anomaly rules have judged, and at most
//! [`MAX_EVENTS_PER_PURGE`] at a time), verifies the chain up to it, signs a checkpoint for
//! it with the token signing key, and then the store moves the chain's start and deletes the
//! events in one transaction ([`mandate_store::AuditRetention::purge_events`]). Every node may
//! run it: two purges of the same cutoff record one checkpoint and delete once.

use crate::state::AppState;
use anyhow::{Context, bail};
use mandate_core::audit_checkpoint;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::jwt::{SigningKey, VerifyingKey};
use mandate_core::time::Timestamp;
use mandate_store::{AuditCheckpoint, PurgedEvents, Store};
use std::time::Duration;

/// How often the server looks for events past the retention.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Most events one purge deletes. A purge holds the chain's head, and so every event writer
/// (token issuance included), for its whole transaction: a large backlog is deleted in steps
/// of this size, each anchored by its own checkpoint, so writers wait milliseconds, not the
/// length of the whole backlog.
pub const MAX_EVENTS_PER_PURGE: i64 = 10_000;

/// The cursors a purge must wait for: every `[[audit_export]]` sink, the anomaly webhook, and
/// the anomaly rules (events they have not judged yet are kept).
pub fn followers(config: &crate::config::Config) -> Vec<String> {
    let mut names: Vec<String> = config.audit_export.iter().map(|s| s.name.clone()).collect();
    if config.anomaly.webhook.is_some() {
        names.push(crate::anomaly::WEBHOOK_CURSOR.to_owned());
    }
    if !config.anomaly.rules.is_empty() {
        names.push(crate::anomaly::CURSOR.to_owned());
    }
    names
}

/// What signs and what verifies: the server's key ring, or the CLI's view of it.
pub struct Signer<'a> {
    pub key: &'a SigningKey,
    /// Keys the chain's current anchor may be signed with (retired ones included).
    pub verifiers: &'a [VerifyingKey],
    pub issuer: &'a str,
}

/// Signs and records a checkpoint for event `seq`, after verifying the chain up to it (a
/// checkpoint never attests a chain that is already broken). `event` (actor, time) becomes
/// the `audit.checkpoint` event. If one exists for that event already, that one is returned.
pub async fn checkpoint(
    store: &dyn Store,
    signer: &Signer<'_>,
    seq: i64,
    mut event: NewEvent,
) -> anyhow::Result<AuditCheckpoint> {
    if let Some(existing) = store.audit_checkpoint(seq).await? {
        return Ok(existing);
    }
    let checked = mandate_store::audit::verify_through(store, signer.verifiers, seq).await?;
    if let Some(broken) = checked.broken {
        bail!("refusing to sign a checkpoint: the audit chain is broken: {broken}");
    }
    let hash = store
        .event_hash(seq)
        .await?
        .with_context(|| format!("event {seq} is not a chained event"))?;
    let jws = audit_checkpoint::sign(signer.key, signer.issuer, seq, &hash, event.at)
        .map_err(|e| anyhow::anyhow!("signing the checkpoint: {e}"))?;
    let cp = AuditCheckpoint {
        seq,
        hash,
        created_at: event.at.unix(),
        jws,
    };
    event.action = Action::AuditCheckpoint;
    if event.detail.is_null() {
        event.detail = serde_json::json!({});
    }
    if let Some(map) = event.detail.as_object_mut() {
        map.insert("kid".into(), signer.key.kid().into());
    }
    if store.record_checkpoint(&cp, event).await? {
        return Ok(cp);
    }
    // Another node recorded one for the same event first; theirs stands.
    store
        .audit_checkpoint(seq)
        .await?
        .context("the checkpoint recorded by another writer is gone")
}

/// The outcome of a purge that deleted something.
#[derive(Debug, Clone)]
pub struct Purge {
    pub purged: PurgedEvents,
    pub checkpoint: AuditCheckpoint,
}

impl Purge {
    /// Whether this step deleted everything up to the cutoff: it stopped short of
    /// [`MAX_EVENTS_PER_PURGE`]. Another step would only delete the events this one wrote.
    pub fn reached_cutoff(&self) -> bool {
        i64::try_from(self.purged.purged).map_or(true, |n| n < MAX_EVENTS_PER_PURGE)
    }
}

/// Deletes the events older than `before` (see the module docs), keeping what any of `sinks`
/// (configured export sink names) has not delivered. `event` (actor, time) is used for the
/// checkpoint's and the purge's events. `None` when there is nothing to delete, or another
/// purge just did it.
pub async fn purge(
    store: &dyn Store,
    signer: &Signer<'_>,
    before: Timestamp,
    sinks: &[String],
    event: NewEvent,
) -> anyhow::Result<Option<Purge>> {
    let head = store.chain_head().await?;
    let cutoff = store
        .purge_cutoff(before, sinks)
        .await?
        .min(head.start_seq.saturating_add(MAX_EVENTS_PER_PURGE));
    if cutoff <= head.start_seq {
        return Ok(None);
    }
    let checkpoint = match self::checkpoint(store, signer, cutoff, event.clone()).await {
        Ok(cp) => cp,
        Err(e) => {
            // A concurrent purge moved the start while this one was checking: nothing to do.
            if store.chain_head().await?.start_seq >= cutoff {
                return Ok(None);
            }
            return Err(e);
        }
    };
    let purged = store.purge_events(cutoff, event).await?;
    Ok(purged.map(|purged| Purge { purged, checkpoint }))
}

/// The server's periodic purge: every [`PURGE_INTERVAL`], events older than `retention` go.
pub async fn purge_periodically(state: AppState, retention: Duration, sinks: Vec<String>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock.now();
        let before = now.minus_seconds(retention.as_secs());
        let keys = state.keys.current();
        let signer = Signer {
            key: keys.signer(now),
            verifiers: keys.checkpoint_verifiers(),
            issuer: &state.settings.issuer,
        };
        let mut event = NewEvent::new(now, Action::AuditPurged, ActorKind::System);
        event.actor_id = Some("retention".into());
        // In steps of at most MAX_EVENTS_PER_PURGE, until nothing is left to purge.
        loop {
            match purge(state.store.as_ref(), &signer, before, &sinks, event.clone()).await {
                Ok(None) => break,
                Ok(Some(p)) => {
                    tracing::info!(
                        purged = p.purged.purged,
                        through = p.purged.to_seq,
                        "purged audit events past the retention"
                    );
                    if p.reached_cutoff() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging old audit events failed");
                    break;
                }
            }
            tokio::task::yield_now().await;
        }
    }
}
