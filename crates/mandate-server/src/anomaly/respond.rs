//! What happens when a rule fires: the `anomaly.detected` event that records it (always,
//! before anything else, so the log says why what follows happened), then the revocation the
//! rule asks for, through the same operations an administrator uses, so each is itself an
//! audited revocation that reaches guards through the revocation feed.

use super::Context;
use crate::admin::context::Ctx;
use crate::admin::model::RevokeRequest;
use crate::admin::{api_keys, directory, grants};
use crate::errors::ServerError;
use mandate_core::anomaly::{Firing, Per, Response};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_store::BulkTarget;

/// The `anomaly.detected` event for a firing, recorded at `now`.
pub fn record(f: &Firing, now: mandate_core::time::Timestamp) -> NewEvent {
    let mut e = NewEvent::new(now, Action::AnomalyDetected, ActorKind::System);
    e.actor_id = Some(actor(f));
    e.tenant_id.clone_from(&f.tenant_id);
    e.client_id.clone_from(&f.client_id);
    e.grant_id.clone_from(&f.grant_id);
    match f.subject.per {
        Per::Agent | Per::Client => e.client_id = Some(f.subject.id.clone()),
        Per::Grant => e.grant_id = Some(f.subject.id.clone()),
        Per::Address => e.ip = Some(f.subject.id.clone()),
        Per::ApiKey => {}
    }
    e.reason = Some(f.describe());
    let actions: Vec<&str> = f.rule.responses.iter().map(|r| r.as_str()).collect();
    let mut detail = serde_json::json!({
        "rule": f.rule.name,
        "kind": f.rule.kind.as_str(),
        "subject": { "kind": f.subject.per.as_str(), "id": f.subject.id },
        "count": f.count,
        "threshold": f.rule.threshold,
        "window_seconds": f.rule.window_seconds,
        "first_seq": f.first_seq,
        "last_seq": f.last_seq,
        "fired_at": f.at.unix(),
        "actions": actions,
        "webhook": f.rule.responses.contains(&Response::Webhook),
    });
    if let serde_json::Value::Object(map) = &mut detail {
        if let Some(until) = f.throttle_until() {
            map.insert("throttle_until".into(), until.unix().into());
        }
        if let Some(origin) = &f.origin {
            map.insert("origin".into(), origin.as_str().into());
        }
    }
    e.detail = detail;
    e
}

/// Who the responses are recorded as: `anomaly:<rule>`.
fn actor(f: &Firing) -> String {
    format!("anomaly:{}", f.rule.name)
}

/// Records the firing and carries out its responses. Returns the firing event's number.
pub async fn respond(ctx: &Context, f: &Firing) -> Result<i64, ServerError> {
    let now = ctx.clock.now();
    let seq = ctx.store.append_events(&[record(f, now)]).await?;
    let seq = seq.first().copied().unwrap_or(0);
    if let Some(until) = f.throttle_until() {
        ctx.throttles.install(f.subject.per, &f.subject.id, until);
    }
    for r in &f.rule.responses {
        ctx.metrics.anomaly_fired(&f.rule.name, r.as_str());
    }
    if f.rule.responses.contains(&Response::Revoke) {
        revoke(ctx, f, seq, now).await?;
    }
    Ok(seq)
}

async fn revoke(
    ctx: &Context,
    f: &Firing,
    seq: i64,
    now: mandate_core::time::Timestamp,
) -> Result<(), ServerError> {
    let admin = Ctx::system(
        ctx.store.as_ref(),
        ctx.entropy.as_ref(),
        now,
        ctx.api_keys,
        &ctx.metrics,
        actor(f),
    );
    let reason = || RevokeRequest {
        reason: Some(format!(
            "anomaly rule `{}` fired (event {seq})",
            f.rule.name
        )),
    };
    let id = f.subject.id.as_str();
    match f.subject.per {
        Per::Grant => {
            grants::revoke_grant(&admin, id, reason()).await?;
        }
        Per::ApiKey => {
            api_keys::revoke_key(&admin, id, reason()).await?;
        }
        Per::Agent | Per::Client => {
            if ctx.store.agent(id).await?.is_none() {
                // A client ID that names no agent (guessing at the token endpoint): nothing
                // to revoke; a throttle is what holds it back.
                return Ok(());
            }
            directory::disable_agent(&admin, id).await?;
            ctx.cache.forget_agent(id);
            let target = BulkTarget::Agent {
                client_id: id.to_owned(),
            };
            let why = reason().reason.unwrap_or_default();
            ctx.store
                .revoke_in_bulk(&target, &why, admin.event(Action::GrantRevoked))
                .await?;
            admin.revoked(Action::AgentGrantsRevoked);
        }
        Per::Address => {}
    }
    Ok(())
}
