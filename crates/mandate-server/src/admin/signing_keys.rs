//! Signing keys for administrators: each key's life ([`crate::keys::ring`]), rotation and
//! withdrawal. Only public facts leave this module (key id, algorithm, state and dates): the
//! stored record's sealed private key is dropped here, so no page or answer built on it can
//! show it.
//!
//! Any administrator may read the list: the same keys are published at `/jwks.json`, and none
//! belongs to a tenant. Rotating and withdrawing change what every tenant's tokens are signed
//! and verified with, so they are for operators only, and each is audited.

use super::auth::{Admin, Body};
use super::context::Ctx;
use super::model::ErrorBody;
use crate::errors::{AdminError, ServerError};
use crate::keys::{KeyRing, KeyState};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::event::Action;
use mandate_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A signing key as administrators see it: never its private part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    pub kid: String,
    pub alg: String,
    /// `pending` (published, signs from `activates_at`), `active` (signs new tokens),
    /// `superseded` (verifies until `trusted_until`), `expired`, `standby` (another
    /// algorithm than the server signs with; verifies) or `withdrawn`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
    pub activates_at: i64,
    /// For a superseded key: when it stops verifying and leaves `/jwks.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_until: Option<i64>,
    /// When an operator withdrew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn_at: Option<i64>,
}

/// The longest a rotated-in key may wait before it signs.
const MAX_ACTIVATION_DELAY: u64 = 30 * 24 * 60 * 60;

/// `POST /signing-keys`: when the new key starts signing.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKey {
    /// Seconds from now until the new key signs (default: the server's
    /// `[signing_keys] publish_before_signing_seconds`). Until then it is only published, so
    /// resource servers caching `/jwks.json` fetch it first; 0 switches at once (after a
    /// compromise, together with withdrawing the old key). At most 30 days.
    #[serde(default)]
    pub activate_in_seconds: Option<u64>,
}

/// Every stored signing key with its state, newest first.
pub async fn list(ctx: &Ctx<'_>, ring: &KeyRing) -> Result<Vec<SigningKeyView>, ServerError> {
    Ok(ring
        .states(ctx.now)
        .await?
        .into_iter()
        .map(|(k, state)| SigningKeyView {
            kid: k.kid,
            alg: k.alg,
            status: state.as_str().to_owned(),
            created_at: k.created_at.unix(),
            activates_at: k.activates_at.unix(),
            trusted_until: match state {
                KeyState::Superseded { trusted_until } => Some(trusted_until.unix()),
                _ => None,
            },
            withdrawn_at: k.retired_at.map(Timestamp::unix),
        })
        .collect())
}

/// Creates a key that is published now and signs after `activate_in_seconds`.
pub async fn rotate(
    ctx: &Ctx<'_>,
    ring: &KeyRing,
    req: RotateSigningKey,
) -> Result<SigningKeyView, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let lead = req
        .activate_in_seconds
        .unwrap_or(ring.policy().publish_before_signing);
    if lead > MAX_ACTIVATION_DELAY {
        return Err(AdminError::Invalid(format!(
            "activate_in_seconds may be at most {MAX_ACTIVATION_DELAY} (30 days)"
        ))
        .into());
    }
    let key = ring
        .add_key(ctx.entropy, ctx.now, ctx.now.plus_seconds(lead))
        .await?;
    let mut event = ctx.event(Action::SigningKeyCreated);
    event.detail = serde_json::json!({
        "kid": key.kid,
        "alg": key.alg,
        "activates_at": key.activates_at.unix(),
    });
    ctx.store.append_events(&[event]).await?;
    view_of(ctx, ring, &key.kid).await
}

/// Withdraws a key: it stops signing, verifying and being published on every node (at once on
/// this one; on the others at their next reload). The last usable key cannot be withdrawn.
pub async fn withdraw(
    ctx: &Ctx<'_>,
    ring: &KeyRing,
    kid: &str,
) -> Result<SigningKeyView, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let states = ring.states(ctx.now).await?;
    let Some((key, state)) = states.iter().find(|(k, _)| k.kid == kid) else {
        return Err(AdminError::NotFound(format!("no signing key {kid}")).into());
    };
    if *state == KeyState::Withdrawn {
        return Err(AdminError::Conflict(format!("signing key {kid} is already withdrawn")).into());
    }
    let successor = states.iter().any(|(k, s)| {
        k.kid != kid
            && k.alg == ring.policy().alg.as_str()
            && matches!(s, KeyState::Active | KeyState::Pending)
    });
    if matches!(state, KeyState::Active | KeyState::Pending) && !successor {
        return Err(AdminError::Conflict(format!(
            "signing key {kid} is the only {} key that can sign; rotate first",
            key.alg
        ))
        .into());
    }
    if ctx.store.retire_signing_key(kid, ctx.now).await? {
        let mut event = ctx.event(Action::SigningKeyRetired);
        event.detail = serde_json::json!({ "kid": kid, "alg": key.alg });
        ctx.store.append_events(&[event]).await?;
    }
    ring.reload(ctx.now).await?;
    view_of(ctx, ring, kid).await
}

async fn view_of(ctx: &Ctx<'_>, ring: &KeyRing, kid: &str) -> Result<SigningKeyView, ServerError> {
    let found = list(ctx, ring).await?.into_iter().find(|k| k.kid == kid);
    Ok(found.ok_or_else(|| AdminError::NotFound(format!("no signing key {kid}")))?)
}

/// Every signing key and its state (no private material).
#[utoipa::path(get, path = "/signing-keys", tag = "signing-keys",
    responses((status = 200, body = Vec<SigningKeyView>), super::Failures))]
pub async fn signing_keys_get(
    State(app): State<AppState>,
    admin: Admin,
) -> Result<Json<Vec<SigningKeyView>>, ServerError> {
    Ok(Json(list(&admin.ctx(&app), &app.keys).await?))
}

/// Rotate: create a key that is published now and signs from `activate_in_seconds` on
/// (operators only).
#[utoipa::path(post, path = "/signing-keys", tag = "signing-keys",
    request_body = RotateSigningKey,
    responses((status = 201, body = SigningKeyView), super::Failures))]
pub async fn signing_keys_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(req): Body<RotateSigningKey>,
) -> Result<(StatusCode, Json<SigningKeyView>), ServerError> {
    let view = rotate(&admin.ctx(&app), &app.keys, req).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Withdraw a key (after a compromise): tokens it signed stop verifying (operators only).
#[utoipa::path(post, path = "/signing-keys/{kid}/withdraw", tag = "signing-keys",
    params(("kid" = String, Path)),
    responses((status = 200, body = SigningKeyView), (status = 409, body = ErrorBody,
        description = "Already withdrawn, or the last key that can sign"), super::Failures))]
pub async fn signing_key_withdraw_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(kid): Path<String>,
) -> Result<Json<SigningKeyView>, ServerError> {
    Ok(Json(withdraw(&admin.ctx(&app), &app.keys, &kid).await?))
}
