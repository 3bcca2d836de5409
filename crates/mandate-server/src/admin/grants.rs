//! Grants (a user's consent to an agent in a tenant) and revocation: one grant, or in bulk by
//! user, tenant, agent, or agent within a tenant. Every revocation takes effect at once at
//! introspection and on the revocation feed; a tenant admin reaches only their tenant.

use super::api_address;
use super::auth::{Admin, Body, Path, Query};
use super::context::{Ctx, not_found};
use super::directory::{protect_operator, reachable_user};
use super::model::{
    BulkRevocationRequest, BulkRevocationResult, GrantQuery, GrantView, RevokeRequest, Revoked,
};
use super::page::{self, Listed, Page};
use crate::errors::{AdminError, ServerError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use mandate_core::admin::Principal;
use mandate_core::event::Action;
use mandate_store::{BulkTarget, GrantCursor, GrantFilter};

const DEFAULT_REASON: &str = "revoked by administrator";
/// Longest reason kept; it is shown to administrators and written to the audit log.
const MAX_REASON_LEN: usize = 500;

/// The reason recorded for a revocation: the default when none is given.
pub(super) fn reason(given: Option<String>) -> Result<String, ServerError> {
    match given {
        None => Ok(DEFAULT_REASON.into()),
        Some(r) if r.trim().is_empty() => Ok(DEFAULT_REASON.into()),
        Some(r) if r.chars().count() > MAX_REASON_LEN || r.chars().any(char::is_control) => {
            Err(AdminError::Invalid(format!(
                "reason must be at most {MAX_REASON_LEN} characters without control characters"
            ))
            .into())
        }
        Some(r) => Ok(r),
    }
}

/// One page of the grants the caller can see, newest first.
pub async fn list_grants(ctx: &Ctx<'_>, q: GrantQuery) -> Result<Page<GrantView>, ServerError> {
    let limit = page::limit(q.limit)?;
    let Ok(tenant) = ctx.listed_tenant(q.tenant_id.as_deref()) else {
        return Ok(Page::empty());
    };
    let after = match q.after.as_deref() {
        Some(a) => {
            let (created_at, id) = page::parse_time_cursor(a)?;
            Some(GrantCursor { created_at, id })
        }
        None => None,
    };
    let filter = GrantFilter {
        tenant_id: tenant.map(str::to_owned),
        user_id: q.user_id,
        client_id: q.client_id,
        include_revoked: q.include_revoked,
    };
    let rows = ctx
        .store
        .grants(&filter, after.as_ref(), page::fetch_limit(limit))
        .await?;
    Ok(Page::from_rows(
        rows,
        limit,
        |g| page::time_cursor(g.created_at, &g.id),
        GrantView::from,
    ))
}

/// The grant with this id, if it is in a tenant the caller may see.
pub async fn reachable_grant(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<mandate_core::grant::Grant, ServerError> {
    match ctx.store.grant(id).await? {
        Some(g) if ctx.authority.can_reach_tenant(&g.tenant_id) => Ok(g),
        _ => Err(not_found("grant", id)),
    }
}

pub async fn revoke_grant(
    ctx: &Ctx<'_>,
    id: &str,
    req: RevokeRequest,
) -> Result<Revoked, ServerError> {
    let grant = reachable_grant(ctx, id).await?;
    ctx.spare_own_grant(|own| own.id == grant.id)?;
    let reason = reason(req.reason)?;
    let event = ctx.event(Action::GrantRevoked);
    let was_active =
        revoke_and_record(ctx.store, &grant, ctx.now, &reason, event, ctx.metrics).await?;
    Ok(Revoked {
        id: grant.id,
        was_active,
    })
}

/// Revokes one grant (with its refresh families) and records `grant.revoked`: the single path
/// for revoking a grant by id, taken by the admin API, anomaly responses and a person's
/// connected agents page. The event is appended durably before this returns, and the
/// revocation feed is derived from the event log, so every guard hears of it. `event` carries
/// the caller (actor, address, user agent); the grant's fields are filled in here. Nothing is
/// recorded when the grant was already revoked. Returns whether it was active.
pub async fn revoke_and_record(
    store: &dyn mandate_store::Store,
    grant: &mandate_core::grant::Grant,
    now: mandate_core::time::Timestamp,
    reason: &str,
    mut event: mandate_core::event::NewEvent,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<bool, ServerError> {
    let was_active = store.revoke_grant(&grant.id, now, reason).await?;
    if was_active {
        event.action = Action::GrantRevoked;
        event.grant_id = Some(grant.id.clone());
        event.tenant_id = Some(grant.tenant_id.clone());
        event.user_id.clone_from(&grant.user_id);
        event.client_id = Some(grant.client_id.clone());
        event.reason = Some(reason.to_owned());
        store.append_events(&[event]).await?;
        if let Some(m) = metrics {
            m.revoked(Action::GrantRevoked);
        }
    }
    Ok(was_active)
}

pub async fn revoke_in_bulk(
    ctx: &Ctx<'_>,
    req: BulkRevocationRequest,
) -> Result<BulkRevocationResult, ServerError> {
    let target = match (req.user_id, req.tenant_id, req.client_id) {
        (Some(user_id), None, None) => {
            reachable_user(ctx, &user_id).await?;
            protect_operator(ctx, &Principal::User(user_id.clone())).await?;
            BulkTarget::User { user_id }
        }
        (None, Some(tenant_id), None) => {
            ctx.authority
                .reach(&tenant_id)
                .map_err(|_| not_found("tenant", &tenant_id))?;
            if ctx.store.tenant(&tenant_id).await?.is_none() {
                return Err(not_found("tenant", &tenant_id));
            }
            BulkTarget::Tenant { tenant_id }
        }
        (None, None, Some(client_id)) => {
            ctx.authority.operate().map_err(|_| {
                AdminError::Forbidden(
                    "an agent's grants span tenants: a tenant admin revokes an agent within \
                     their tenant (give tenant_id too)"
                        .into(),
                )
            })?;
            if ctx.store.agent(&client_id).await?.is_none() {
                return Err(not_found("agent", &client_id));
            }
            BulkTarget::Agent { client_id }
        }
        (None, Some(tenant_id), Some(client_id)) => {
            ctx.authority
                .reach(&tenant_id)
                .map_err(|_| not_found("tenant", &tenant_id))?;
            if ctx.store.tenant(&tenant_id).await?.is_none() {
                return Err(not_found("tenant", &tenant_id));
            }
            if ctx.store.agent(&client_id).await?.is_none() {
                return Err(not_found("agent", &client_id));
            }
            BulkTarget::AgentInTenant {
                client_id,
                tenant_id,
            }
        }
        _ => {
            return Err(AdminError::Invalid(
                "give exactly one of user_id, tenant_id, client_id, or client_id with tenant_id"
                    .into(),
            )
            .into());
        }
    };
    ctx.spare_own_grant(|own| match &target {
        BulkTarget::User { user_id } => own.user_id.as_ref() == Some(user_id),
        BulkTarget::Tenant { tenant_id } => own.tenant_id == *tenant_id,
        BulkTarget::Agent { client_id } => own.client_id == *client_id,
        BulkTarget::AgentInTenant {
            client_id,
            tenant_id,
        } => own.client_id == *client_id && own.tenant_id == *tenant_id,
    })?;
    let reason = reason(req.reason)?;
    let action = match &target {
        BulkTarget::User { .. } => Action::UserGrantsRevoked,
        BulkTarget::Tenant { .. } => Action::TenantGrantsRevoked,
        BulkTarget::Agent { .. } => Action::AgentGrantsRevoked,
        BulkTarget::AgentInTenant { .. } => Action::AgentTenantGrantsRevoked,
    };
    let done = ctx
        .store
        .revoke_in_bulk(&target, &reason, ctx.event(Action::GrantRevoked))
        .await?;
    ctx.revoked(action);
    Ok(BulkRevocationResult {
        grants: done.grants,
        api_keys: done.api_keys,
        event_seq: done.event_seq,
    })
}

/// Grants the caller can see, newest first, a page at a time.
#[utoipa::path(get, path = "/grants", tag = "grants", params(GrantQuery),
    responses((status = 200, body = Vec<GrantView>, headers(("Link" = String,
        description = "`<...>; rel=\"next\"` when another page follows"))), super::Failures))]
pub async fn grants_get(
    State(app): State<AppState>,
    admin: Admin,
    uri: Uri,
    Query(q): Query<GrantQuery>,
) -> Result<Listed<GrantView>, ServerError> {
    let page = list_grants(&admin.ctx(&app), q).await?;
    Ok(Listed::new(page, &api_address(&app), &uri))
}

/// One grant.
#[utoipa::path(get, path = "/grants/{grant_id}", tag = "grants",
    params(("grant_id" = String, Path)),
    responses((status = 200, body = GrantView), super::Failures))]
pub async fn grant_get(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<GrantView>, ServerError> {
    Ok(Json(reachable_grant(&admin.ctx(&app), &id).await?.into()))
}

/// Revoke a grant and every token issued under it.
#[utoipa::path(post, path = "/grants/{grant_id}/revoke", tag = "grants",
    params(("grant_id" = String, Path)), request_body = RevokeRequest,
    responses((status = 200, body = Revoked), super::Failures))]
pub async fn grant_revoke_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Body(req): Body<RevokeRequest>,
) -> Result<Json<Revoked>, ServerError> {
    Ok(Json(revoke_grant(&admin.ctx(&app), &id, req).await?))
}

/// Revoke in bulk: every grant of a user (and their API keys), of a tenant (and its API
/// keys), of an agent (operators only), or of an agent within a tenant.
#[utoipa::path(post, path = "/revocations", tag = "grants", request_body = BulkRevocationRequest,
    responses((status = 200, body = BulkRevocationResult), super::Failures))]
pub async fn revocations_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(req): Body<BulkRevocationRequest>,
) -> Result<Json<BulkRevocationResult>, ServerError> {
    Ok(Json(revoke_in_bulk(&admin.ctx(&app), req).await?))
}
