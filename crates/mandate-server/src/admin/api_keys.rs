//! Scoped API keys: create (shown once), list, rotate (the old key keeps working for the
//! overlap window), revoke. The rules (format, lifetime limits, rotation) live in
//! [`mandate_core::api_key`]; this is who may do it, and the audit trail.

use super::api_address;
use super::auth::{Admin, Body, Path, Query};
use super::context::{Ctx, not_found};
use super::model::{
    ApiKeyQuery, ApiKeyView, CreatedApiKey, NewApiKey, RevokeRequest, Revoked, RotateRequest,
    RotatedApiKey,
};
use super::page::{self, Listed, Page};
use crate::errors::{AdminError, ServerError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use mandate_core::api_key::{self, ApiKeyError, KeyId};
use mandate_core::event::Action;
use mandate_core::scope::ScopeSet;
use mandate_store::{ApiKeyCursor, ApiKeyRotation};

fn key_error(e: ApiKeyError) -> ServerError {
    AdminError::Invalid(e.to_string()).into()
}

fn key_id(id: &str) -> Result<KeyId, ServerError> {
    KeyId::parse(id).ok_or_else(|| not_found("API key", id))
}

pub async fn create_key(ctx: &Ctx<'_>, new: NewApiKey) -> Result<CreatedApiKey, ServerError> {
    if !ctx.authority.can_reach_tenant(&new.tenant_id)
        || ctx.store.tenant(&new.tenant_id).await?.is_none()
    {
        return Err(not_found("tenant", &new.tenant_id));
    }
    if let Some(user_id) = &new.user_id {
        match ctx.store.user(user_id).await? {
            Some(u) if u.tenant_id == new.tenant_id => {}
            _ => return Err(not_found("user in this tenant", user_id)),
        }
    }
    let scopes = ScopeSet::parse(&new.scopes.join(" "))
        .map_err(|e| AdminError::Invalid(format!("scopes: {e}")))?;
    let catalog = ctx.store.scopes().await?;
    if let Some(unknown) = scopes
        .iter()
        .find(|s| !catalog.iter().any(|c| c.name == *s))
    {
        return Err(AdminError::Invalid(format!(
            "scopes: `{unknown}` is not in the scope catalog"
        ))
        .into());
    }
    let expires_at = ctx.now.plus_seconds(new.expires_in);
    let created = api_key::create(
        api_key::NewApiKey {
            tenant_id: new.tenant_id,
            user_id: new.user_id,
            name: new.name,
            scopes,
            expires_at,
        },
        &ctx.api_keys,
        ctx.now,
        ctx.entropy,
    )
    .map_err(key_error)?;
    ctx.store
        .insert_api_key(&created.record, ctx.event(Action::ApiKeyCreated))
        .await?;
    Ok(CreatedApiKey {
        key: created.key.expose().to_owned(),
        api_key: created.record.into(),
    })
}

/// One page of the keys the caller can see, newest first: of one tenant, or (an operator
/// naming none) of every tenant.
pub async fn list_keys(ctx: &Ctx<'_>, q: ApiKeyQuery) -> Result<Page<ApiKeyView>, ServerError> {
    let limit = page::limit(q.limit)?;
    let Ok(tenant) = ctx.listed_tenant(q.tenant_id.as_deref()) else {
        return Ok(Page::empty());
    };
    let after = match q.after.as_deref() {
        Some(a) => {
            let (created_at, id) = page::parse_time_cursor(a)?;
            let id = KeyId::parse(&id).ok_or_else(page::bad_cursor)?;
            Some(ApiKeyCursor { created_at, id })
        }
        None => None,
    };
    let rows = ctx
        .store
        .api_keys(tenant, after.as_ref(), page::fetch_limit(limit))
        .await?;
    Ok(Page::from_rows(
        rows,
        limit,
        |k| page::time_cursor(k.record.created_at, k.record.id.as_str()),
        ApiKeyView::from,
    ))
}

/// The key with this id, within the caller's tenant for a tenant admin.
async fn reachable_key(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<mandate_store::StoredApiKey, ServerError> {
    let key = key_id(id)?;
    let found = ctx
        .store
        .api_key(&key, ctx.authority.tenant_filter())
        .await?;
    found.ok_or_else(|| not_found("API key", id))
}

pub async fn get_key(ctx: &Ctx<'_>, id: &str) -> Result<ApiKeyView, ServerError> {
    Ok(reachable_key(ctx, id).await?.into())
}

pub async fn rotate_key(
    ctx: &Ctx<'_>,
    id: &str,
    req: RotateRequest,
) -> Result<RotatedApiKey, ServerError> {
    let old = reachable_key(ctx, id).await?;
    let rotated_before = || {
        AdminError::Conflict(format!(
            "API key {id} was rotated before; rotate its successor"
        ))
    };
    if old.replaced_by.is_some() {
        return Err(rotated_before().into());
    }
    let rotation = api_key::rotate(
        &old.record,
        ctx.now.plus_seconds(req.expires_in),
        &ctx.api_keys,
        ctx.now,
        ctx.entropy,
    )
    .map_err(key_error)?;
    let successor = &rotation.successor;
    let outcome = ctx
        .store
        .rotate_api_key(
            &old.record.id,
            &successor.record,
            rotation.predecessor_expires_at,
            ctx.event(Action::ApiKeyRotated),
        )
        .await?;
    match outcome {
        ApiKeyRotation::Rotated => {}
        ApiKeyRotation::Unknown => return Err(not_found("API key", id)),
        ApiKeyRotation::Revoked => {
            return Err(AdminError::Conflict(format!("API key {id} is revoked")).into());
        }
        ApiKeyRotation::Expired => {
            return Err(AdminError::Conflict(format!("API key {id} has expired")).into());
        }
        ApiKeyRotation::AlreadyRotated => return Err(rotated_before().into()),
    }
    Ok(RotatedApiKey {
        key: successor.key.expose().to_owned(),
        api_key: successor.record.clone().into(),
        replaces: old.record.id.to_string(),
        predecessor_expires_at: rotation.predecessor_expires_at.unix(),
    })
}

pub async fn revoke_key(
    ctx: &Ctx<'_>,
    id: &str,
    req: RevokeRequest,
) -> Result<Revoked, ServerError> {
    let key = reachable_key(ctx, id).await?;
    let reason = super::grants::reason(req.reason)?;
    let was_active = ctx
        .store
        .revoke_api_key(
            &key.record.id,
            ctx.authority.tenant_filter(),
            &reason,
            ctx.event(Action::ApiKeyRevoked),
        )
        .await?;
    if was_active {
        ctx.revoked(Action::ApiKeyRevoked);
    }
    Ok(Revoked {
        id: key.record.id.to_string(),
        was_active,
    })
}

/// API keys, newest first, a page at a time (never the keys themselves).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(ApiKeyQuery),
    responses((status = 200, body = Vec<ApiKeyView>, headers(("Link" = String,
        description = "`<...>; rel=\"next\"` when another page follows"))), super::Failures))]
pub async fn api_keys_get(
    State(app): State<AppState>,
    admin: Admin,
    uri: Uri,
    Query(q): Query<ApiKeyQuery>,
) -> Result<Listed<ApiKeyView>, ServerError> {
    let page = list_keys(&admin.ctx(&app), q).await?;
    Ok(Listed::new(page, &api_address(&app), &uri))
}

/// Create a key; the answer holds it once (only its hash is stored).
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), super::Failures))]
pub async fn api_keys_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ServerError> {
    let created = create_key(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One key.
#[utoipa::path(get, path = "/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses((status = 200, body = ApiKeyView), super::Failures))]
pub async fn api_key_get(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ServerError> {
    Ok(Json(get_key(&admin.ctx(&app), &id).await?))
}

/// Rotate a key: a successor is created and shown once; the old key keeps working for the
/// configured overlap.
#[utoipa::path(post, path = "/api-keys/{key_id}/rotate", tag = "api-keys",
    params(("key_id" = String, Path)), request_body = RotateRequest,
    responses((status = 200, body = RotatedApiKey), super::Failures))]
pub async fn api_key_rotate_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(req): Body<RotateRequest>,
) -> Result<Json<RotatedApiKey>, ServerError> {
    Ok(Json(rotate_key(&admin.ctx(&app), &id, req).await?))
}

/// Revoke a key; tokens obtained with it stop being active at once.
#[utoipa::path(post, path = "/api-keys/{key_id}/revoke", tag = "api-keys",
    params(("key_id" = String, Path)), request_body = RevokeRequest,
    responses((status = 200, body = Revoked), super::Failures))]
pub async fn api_key_revoke_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(req): Body<RevokeRequest>,
) -> Result<Json<Revoked>, ServerError> {
    Ok(Json(revoke_key(&admin.ctx(&app), &id, req).await?))
}
