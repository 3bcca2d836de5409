//! Who may administer: `GET /me` for any administrator, and role management for operators.

use super::auth::{Admin, Body, Path};
use super::context::{Ctx, not_found};
use super::model::{Removed, RoleView, SetRole, WhoAmI};
use crate::errors::{AdminError, ServerError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use mandate_core::admin::{self, Principal, Role, RoleAssignment};
use mandate_core::event::Action;

impl From<RoleAssignment> for RoleView {
    fn from(a: RoleAssignment) -> Self {
        Self {
            principal_kind: a.principal.kind().to_owned(),
            principal_id: a.principal.id().to_owned(),
            role: a.role.as_str().to_owned(),
            tenant_id: a.role.tenant().map(str::to_owned),
        }
    }
}

pub async fn list_roles(ctx: &Ctx<'_>) -> Result<Vec<RoleView>, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let roles = ctx.store.admin_roles().await?;
    Ok(roles.into_iter().map(Into::into).collect())
}

fn principal(kind: &str, id: &str) -> Result<Principal, ServerError> {
    Principal::from_parts(kind, id).ok_or_else(|| {
        AdminError::Invalid("principal_kind must be `user` or `agent`".into()).into()
    })
}

pub async fn set_role(ctx: &Ctx<'_>, req: SetRole) -> Result<RoleView, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let principal = principal(req.principal_kind.as_str(), &req.principal_id)?;
    ctx.spare_self(&principal)?;
    let role = Role::from_parts(req.role.as_str(), req.tenant_id.as_deref()).ok_or_else(|| {
        AdminError::Invalid(
            "role must be `operator` (without tenant_id) or `tenant_admin` (with tenant_id)".into(),
        )
    })?;
    let own_tenant = match &principal {
        Principal::User(id) => {
            let user = ctx.store.user(id).await?;
            Some(user.ok_or_else(|| not_found("user", id))?.tenant_id)
        }
        Principal::Agent(id) => {
            let agent = ctx.store.agent(id).await?;
            agent.ok_or_else(|| not_found("agent", id))?.tenant_id
        }
    };
    if let Some(t) = role.tenant()
        && ctx.store.tenant(t).await?.is_none()
    {
        return Err(not_found("tenant", t));
    }
    let assignment = RoleAssignment { principal, role };
    admin::check_assignment(&assignment, own_tenant.as_deref())
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    let mut event = ctx.event(Action::AdminRoleGranted);
    event.detail = serde_json::json!({
        "principal": assignment.principal.to_string(),
        "role": assignment.role.as_str(),
    });
    event.tenant_id = assignment.role.tenant().map(str::to_owned);
    ctx.store.set_admin_role(&assignment, event).await?;
    Ok(assignment.into())
}

pub async fn remove_role(ctx: &Ctx<'_>, kind: &str, id: &str) -> Result<Removed, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let principal = principal(kind, id)?;
    ctx.spare_self(&principal)?;
    let mut event = ctx.event(Action::AdminRoleRemoved);
    event.detail = serde_json::json!({ "principal": principal.to_string() });
    let removed = ctx.store.remove_admin_role(&principal, event).await?;
    Ok(Removed { removed })
}

/// The caller: principal and role.
#[utoipa::path(get, path = "/me", tag = "roles",
    responses((status = 200, body = WhoAmI), super::Failures))]
pub async fn me_get(admin: Admin) -> Json<WhoAmI> {
    let a = &admin.authority;
    Json(WhoAmI {
        principal_kind: a.principal.kind().to_owned(),
        principal_id: a.principal.id().to_owned(),
        role: a.role.as_str().to_owned(),
        tenant_id: a.role.tenant().map(str::to_owned),
    })
}

/// Every admin role (operators only).
#[utoipa::path(get, path = "/roles", tag = "roles",
    responses((status = 200, body = Vec<RoleView>), super::Failures))]
pub async fn roles_get(
    State(app): State<AppState>,
    admin: Admin,
) -> Result<Json<Vec<RoleView>>, ServerError> {
    Ok(Json(list_roles(&admin.ctx(&app)).await?))
}

/// Give a user or agent a role, replacing any previous one (operators only).
#[utoipa::path(post, path = "/roles", tag = "roles", request_body = SetRole,
    responses((status = 200, body = RoleView), super::Failures))]
pub async fn roles_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(req): Body<SetRole>,
) -> Result<Json<RoleView>, ServerError> {
    Ok(Json(set_role(&admin.ctx(&app), req).await?))
}

/// Take a role away (operators only); takes effect at the principal's next request.
#[utoipa::path(delete, path = "/roles/{principal_kind}/{principal_id}", tag = "roles",
    params(("principal_kind" = String, Path), ("principal_id" = String, Path)),
    responses((status = 200, body = Removed), super::Failures))]
pub async fn role_delete(
    State(app): State<AppState>,
    admin: Admin,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Removed>, ServerError> {
    Ok(Json(remove_role(&admin.ctx(&app), &kind, &id).await?))
}
