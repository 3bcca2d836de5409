//! Keeping each node's [`KeyRing`](super::KeyRing) in step with the shared database, and
//! rotating on schedule.
//!
//! Every node re-reads the keys every `[signing_keys] reload_seconds`, so a rotation or a
//! withdrawal made through any node (or the CLI) reaches all of them without a message
//! between nodes; the database is the only authority. The same tick rotates when the newest
//! key is older than `rotate_after_days`. Two nodes that rotate in the same instant each store
//! a key; that is harmless, since all nodes pick the same signer from the rows, and the spare
//! key simply supersedes the other at once.

use crate::state::AppState;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::Timestamp;
use std::time::Duration;

/// The node's reload (and scheduled rotation) loop; runs until the server stops.
pub async fn reload_periodically(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = state.clock.now();
        if let Err(e) = rotate_if_due(&state, now).await {
            tracing::warn!(error = %e, "scheduled signing-key rotation failed; retrying at the next tick");
        }
        if let Err(e) = state.keys.reload(now).await {
            tracing::warn!(error = %e, "re-reading signing keys failed; keeping the current ones");
        }
    }
}

/// Stores a new key (published now, signing after the publication lead) when the newest key
/// that signs or will sign is older than the policy's rotation age.
pub async fn rotate_if_due(state: &AppState, now: Timestamp) -> anyhow::Result<bool> {
    let policy = *state.keys.policy();
    let Some(after) = policy.rotate_after else {
        return Ok(false);
    };
    let states = state.keys.states(now).await?;
    let newest = states
        .iter()
        .filter(|(k, s)| {
            k.alg == policy.alg.as_str()
                && matches!(s, super::KeyState::Active | super::KeyState::Pending)
        })
        .map(|(k, _)| k.created_at)
        .max();
    if newest.is_some_and(|created| created.plus_seconds(after) > now) {
        return Ok(false);
    }
    let key = state
        .keys
        .add_key(
            state.entropy.as_ref(),
            now,
            now.plus_seconds(policy.publish_before_signing),
        )
        .await?;
    let mut event = NewEvent::new(now, Action::SigningKeyCreated, ActorKind::System);
    event.actor_id = Some("key-rotation".into());
    event.detail = serde_json::json!({
        "kid": key.kid,
        "alg": key.alg,
        "activates_at": key.activates_at.unix(),
        "automatic": true,
    });
    state.events.append(event).await?;
    Ok(true)
}
