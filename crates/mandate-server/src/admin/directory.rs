//! Tenants, users, agents, and the shared catalog of scopes and resources.
//!
//! Creation goes through the declarative apply ([`crate::apply`]) with a one-item
//! configuration, so the admin API, the CLI and `--config` can never disagree about what is
//! valid. Unlike `--config`, which converges, creating something that exists is a conflict:
//! otherwise "create user" with a taken login would move that user between tenants.

use super::api_address;
use super::auth::{Admin, Body, Path, Query};
use super::context::{Ctx, apply_error, not_found};
use super::model::{
    AgentKind, AgentQuery, AgentView, CreatedAgent, CreatedResource, NewAgent, NewResource,
    NewScope, NewTenant, NewUser, ResourceView, ScopeView, TenantView, UserQuery, UserView,
};
use super::page::{self, Listed, Page};
use crate::apply;
use crate::config::{
    AgentConfig, Config, ResourceConfig, ScopeConfig, Secret, TenantConfig, UserConfig,
};
use crate::errors::{AdminError, ServerError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use mandate_core::admin::Principal;
use mandate_core::event::Action;
use mandate_core::random;

type Answer<T> = Result<Json<T>, ServerError>;
type Created<T> = Result<(StatusCode, Json<T>), ServerError>;

async fn create(ctx: &Ctx<'_>, part: Config) -> Result<(), ServerError> {
    apply::apply_as(
        &part,
        ctx.store,
        ctx.entropy,
        ctx.now,
        Some(ctx.actor.as_str()),
    )
    .await
    .map_err(apply_error)?;
    Ok(())
}

fn conflict(what: &str, id: &str) -> ServerError {
    AdminError::Conflict(format!("{what} `{id}` already exists")).into()
}

// ---- tenants ----

pub async fn list_tenants(ctx: &Ctx<'_>) -> Result<Vec<TenantView>, ServerError> {
    let tenants = ctx.store.tenants().await?;
    Ok(tenants
        .into_iter()
        .filter(|t| ctx.authority.can_reach_tenant(&t.id))
        .map(Into::into)
        .collect())
}

pub async fn create_tenant(ctx: &Ctx<'_>, new: NewTenant) -> Result<TenantView, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    if ctx.store.tenant(&new.id).await?.is_some() {
        return Err(conflict("tenant", &new.id));
    }
    let part = Config {
        tenants: vec![TenantConfig {
            name: new.name.unwrap_or_else(|| new.id.clone()),
            id: new.id.clone(),
        }],
        ..Config::default()
    };
    create(ctx, part).await?;
    let t = ctx.store.tenant(&new.id).await?;
    t.map(Into::into)
        .ok_or_else(|| not_found("tenant", &new.id))
}

/// Tenants the caller can see (a tenant admin: their own).
#[utoipa::path(get, path = "/tenants", tag = "tenants",
    responses((status = 200, body = Vec<TenantView>), super::Failures))]
pub async fn tenants_get(State(app): State<AppState>, admin: Admin) -> Answer<Vec<TenantView>> {
    Ok(Json(list_tenants(&admin.ctx(&app)).await?))
}

/// Create a tenant (operators only).
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = TenantView), super::Failures))]
pub async fn tenants_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewTenant>,
) -> Created<TenantView> {
    let t = create_tenant(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// One tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantView), super::Failures))]
pub async fn tenant_get(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Answer<TenantView> {
    Ok(Json(reachable_tenant(&admin.ctx(&app), &id).await?))
}

/// The tenant with this id, if the caller may see it (another tenant is "not found").
pub async fn reachable_tenant(ctx: &Ctx<'_>, id: &str) -> Result<TenantView, ServerError> {
    ctx.authority
        .reach(id)
        .map_err(|_| not_found("tenant", id))?;
    let t = ctx.store.tenant(id).await?;
    t.map(Into::into).ok_or_else(|| not_found("tenant", id))
}

// ---- users ----

/// One page of the users the caller can see, by login, optionally of one tenant; with
/// `login`, that user alone.
pub async fn list_users(ctx: &Ctx<'_>, q: UserQuery) -> Result<Page<UserView>, ServerError> {
    let limit = page::limit(q.limit)?;
    let Ok(tenant) = ctx.listed_tenant(q.tenant_id.as_deref()) else {
        return Ok(Page::empty());
    };
    if let Some(login) = &q.login {
        let found = ctx.store.user_by_login(login).await?;
        let items = found
            .filter(|u| tenant.is_none_or(|t| u.tenant_id == t))
            .map(Into::into);
        return Ok(Page {
            items: items.into_iter().collect(),
            next: None,
        });
    }
    let after = q.after.as_deref().map(page::parse_key_cursor).transpose()?;
    let rows = ctx
        .store
        .users(tenant, after.as_deref(), page::fetch_limit(limit))
        .await?;
    Ok(Page::from_rows(
        rows,
        limit,
        |u| page::key_cursor(&u.login),
        UserView::from,
    ))
}

/// The user with this id, if the caller may see them.
pub async fn reachable_user(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<mandate_core::directory::User, ServerError> {
    match ctx.store.user(id).await? {
        Some(u) if ctx.authority.can_reach_tenant(&u.tenant_id) => Ok(u),
        _ => Err(not_found("user", id)),
    }
}

pub async fn create_user(ctx: &Ctx<'_>, new: NewUser) -> Result<UserView, ServerError> {
    if !ctx.authority.can_reach_tenant(&new.tenant_id) {
        return Err(AdminError::Forbidden(
            "a tenant admin can only create users in their own tenant".into(),
        )
        .into());
    }
    if new.password.chars().count() < 8 {
        return Err(
            AdminError::Invalid("the password must have at least 8 characters".into()).into(),
        );
    }
    if ctx.store.user_by_login(&new.login).await?.is_some() {
        return Err(conflict("login", &new.login));
    }
    let part = Config {
        users: vec![UserConfig {
            login: new.login.clone(),
            tenant: new.tenant_id,
            display_name: new.display_name,
            password: Some(Secret::new(new.password)),
            password_hash: None,
        }],
        ..Config::default()
    };
    create(ctx, part).await?;
    let u = ctx.store.user_by_login(&new.login).await?;
    u.map(Into::into)
        .ok_or_else(|| not_found("user", &new.login))
}

/// A tenant admin may not act against an operator who happens to live in their tenant
/// (disable them, revoke their grants): that would let the lesser role lock out the greater.
pub async fn protect_operator(ctx: &Ctx<'_>, target: &Principal) -> Result<(), ServerError> {
    if !ctx.authority.is_operator()
        && ctx.store.admin_role(target).await? == Some(mandate_core::admin::Role::Operator)
    {
        return Err(AdminError::Forbidden(format!(
            "{target} is an operator; only an operator may do this"
        ))
        .into());
    }
    Ok(())
}

pub async fn disable_user(ctx: &Ctx<'_>, id: &str) -> Result<UserView, ServerError> {
    let mut u = reachable_user(ctx, id).await?;
    let target = Principal::User(u.id.clone());
    ctx.spare_self(&target)?;
    protect_operator(ctx, &target).await?;
    if !u.disabled {
        u.disabled = true;
        ctx.store.update_user(&u).await?;
        let mut event = ctx.event(Action::UserDisabled);
        event.tenant_id = Some(u.tenant_id.clone());
        event.user_id = Some(u.id.clone());
        ctx.store.append_events(&[event]).await?;
        ctx.revoked(Action::UserDisabled);
    }
    Ok(u.into())
}

/// Users the caller can see, by login, a page at a time; optionally of one tenant, or the
/// one with a login.
#[utoipa::path(get, path = "/users", tag = "users", params(UserQuery),
    responses((status = 200, body = Vec<UserView>, headers(("Link" = String,
        description = "`<...>; rel=\"next\"` when another page follows"))), super::Failures))]
pub async fn users_get(
    State(app): State<AppState>,
    admin: Admin,
    uri: Uri,
    Query(q): Query<UserQuery>,
) -> Result<Listed<UserView>, ServerError> {
    let page = list_users(&admin.ctx(&app), q).await?;
    Ok(Listed::new(page, &api_address(&app), &uri))
}

/// Create a user with a password (a tenant admin: in their tenant).
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), super::Failures))]
pub async fn users_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewUser>,
) -> Created<UserView> {
    let u = create_user(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(u)))
}

/// One user.
#[utoipa::path(get, path = "/users/{user_id}", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 200, body = UserView), super::Failures))]
pub async fn user_get(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Answer<UserView> {
    Ok(Json(reachable_user(&admin.ctx(&app), &id).await?.into()))
}

/// Disable a user: logins fail and their tokens stop being active at once.
#[utoipa::path(post, path = "/users/{user_id}/disable", tag = "users",
    params(("user_id" = String, Path)),
    responses((status = 200, body = UserView), super::Failures))]
pub async fn user_disable_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Answer<UserView> {
    Ok(Json(disable_user(&admin.ctx(&app), &id).await?))
}

// ---- agents ----

/// One page of the agents the caller can see, by client id (a tenant admin: those their
/// tenant owns).
pub async fn list_agents(ctx: &Ctx<'_>, q: AgentQuery) -> Result<Page<AgentView>, ServerError> {
    let limit = page::limit(q.limit)?;
    let Ok(tenant) = ctx.listed_tenant(q.tenant_id.as_deref()) else {
        return Ok(Page::empty());
    };
    let after = q.after.as_deref().map(page::parse_key_cursor).transpose()?;
    let rows = ctx
        .store
        .agents(tenant, after.as_deref(), page::fetch_limit(limit))
        .await?;
    Ok(Page::from_rows(
        rows,
        limit,
        |a| page::key_cursor(&a.client_id),
        AgentView::from,
    ))
}

pub async fn reachable_agent(
    ctx: &Ctx<'_>,
    client_id: &str,
) -> Result<mandate_core::client::Agent, ServerError> {
    match ctx.store.agent(client_id).await? {
        Some(a) if ctx.authority.reach_agent(a.tenant_id.as_deref()).is_ok() => Ok(a),
        _ => Err(not_found("agent", client_id)),
    }
}

pub async fn create_agent(ctx: &Ctx<'_>, new: NewAgent) -> Result<CreatedAgent, ServerError> {
    let tenant = match (ctx.authority.tenant_filter(), new.tenant_id) {
        (None, t) => t,
        (Some(own), None) => Some(own.to_owned()),
        (Some(own), Some(t)) if t == own => Some(t),
        (Some(_), Some(_)) => {
            return Err(AdminError::Forbidden(
                "a tenant admin can only create agents owned by their own tenant".into(),
            )
            .into());
        }
    };
    if ctx.store.agent(&new.client_id).await?.is_some() {
        return Err(conflict("agent", &new.client_id));
    }
    let secret = (new.kind == AgentKind::Confidential).then(|| random::opaque_secret(ctx.entropy));
    let part = Config {
        agents: vec![AgentConfig {
            client_id: new.client_id.clone(),
            name: new.name,
            kind: new.kind.as_str().to_owned(),
            secret: secret.clone().map(Secret::new),
            secret_hash: None,
            redirect_uris: new.redirect_uris,
            grant_types: new.grant_types,
            max_scopes: new.max_scopes,
            tenant,
            access_token_ttl_seconds: None,
            refresh_token_ttl_seconds: None,
            default_resource: new.default_resource,
            allowed_resources: new.allowed_resources,
        }],
        ..Config::default()
    };
    create(ctx, part).await?;
    let agent = ctx
        .store
        .agent(&new.client_id)
        .await?
        .ok_or_else(|| not_found("agent", &new.client_id))?;
    Ok(CreatedAgent {
        agent: agent.into(),
        client_secret: secret,
    })
}

pub async fn disable_agent(ctx: &Ctx<'_>, client_id: &str) -> Result<AgentView, ServerError> {
    let mut a = reachable_agent(ctx, client_id).await?;
    let target = Principal::Agent(a.client_id.clone());
    ctx.spare_self(&target)?;
    protect_operator(ctx, &target).await?;
    if !a.disabled {
        a.disabled = true;
        ctx.store.upsert_agent(&a).await?;
        let mut event = ctx.event(Action::AgentDisabled);
        event.client_id = Some(a.client_id.clone());
        event.tenant_id.clone_from(&a.tenant_id);
        ctx.store.append_events(&[event]).await?;
        ctx.revoked(Action::AgentDisabled);
    }
    Ok(a.into())
}

/// Agents the caller can see (a tenant admin: those their tenant owns), by client id, a page
/// at a time.
#[utoipa::path(get, path = "/agents", tag = "agents", params(AgentQuery),
    responses((status = 200, body = Vec<AgentView>, headers(("Link" = String,
        description = "`<...>; rel=\"next\"` when another page follows"))), super::Failures))]
pub async fn agents_get(
    State(app): State<AppState>,
    admin: Admin,
    uri: Uri,
    Query(q): Query<AgentQuery>,
) -> Result<Listed<AgentView>, ServerError> {
    let page = list_agents(&admin.ctx(&app), q).await?;
    Ok(Listed::new(page, &api_address(&app), &uri))
}

/// Register an agent; a confidential agent's secret is in the answer, once.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = NewAgent,
    responses((status = 201, body = CreatedAgent), super::Failures))]
pub async fn agents_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewAgent>,
) -> Created<CreatedAgent> {
    let a = create_agent(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

/// One agent.
#[utoipa::path(get, path = "/agents/{client_id}", tag = "agents",
    params(("client_id" = String, Path)),
    responses((status = 200, body = AgentView), super::Failures))]
pub async fn agent_get(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Answer<AgentView> {
    Ok(Json(reachable_agent(&admin.ctx(&app), &id).await?.into()))
}

/// Disable an agent: it can no longer authenticate and its tokens stop being active.
#[utoipa::path(post, path = "/agents/{client_id}/disable", tag = "agents",
    params(("client_id" = String, Path)),
    responses((status = 200, body = AgentView), super::Failures))]
pub async fn agent_disable_post(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Answer<AgentView> {
    Ok(Json(disable_agent(&admin.ctx(&app), &id).await?))
}

// ---- scopes and resources ----

pub async fn list_scopes(ctx: &Ctx<'_>) -> Result<Vec<ScopeView>, ServerError> {
    Ok(ctx
        .store
        .scopes()
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn create_scope(ctx: &Ctx<'_>, new: NewScope) -> Result<ScopeView, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    if ctx.store.scopes().await?.iter().any(|s| s.name == new.name) {
        return Err(conflict("scope", &new.name));
    }
    let part = Config {
        scopes: vec![ScopeConfig {
            name: new.name.clone(),
            description: new.description.clone(),
            sensitive: new.sensitive,
        }],
        ..Config::default()
    };
    create(ctx, part).await?;
    Ok(ScopeView {
        name: new.name,
        description: new.description,
        sensitive: new.sensitive,
    })
}

pub async fn list_resources(ctx: &Ctx<'_>) -> Result<Vec<ResourceView>, ServerError> {
    Ok(ctx
        .store
        .resources()
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn create_resource(
    ctx: &Ctx<'_>,
    new: NewResource,
) -> Result<CreatedResource, ServerError> {
    ctx.authority.operate().map_err(AdminError::from)?;
    let existing = ctx.store.resources().await?;
    if existing.iter().any(|r| r.identifier == new.identifier) {
        return Err(conflict("resource", &new.identifier));
    }
    let secret = new
        .client_id
        .as_ref()
        .map(|_| random::opaque_secret(ctx.entropy));
    let part = Config {
        resources: vec![ResourceConfig {
            identifier: new.identifier.clone(),
            name: new.name.unwrap_or_else(|| new.identifier.clone()),
            scopes: new.scopes,
            client_id: new.client_id,
            secret: secret.clone().map(Secret::new),
            secret_hash: None,
        }],
        ..Config::default()
    };
    create(ctx, part).await?;
    let resource = ctx
        .store
        .resources()
        .await?
        .into_iter()
        .find(|r| r.identifier == new.identifier)
        .ok_or_else(|| not_found("resource", &new.identifier))?;
    Ok(CreatedResource {
        resource: resource.into(),
        client_secret: secret,
    })
}

/// The scope catalog (shared by every tenant).
#[utoipa::path(get, path = "/scopes", tag = "catalog",
    responses((status = 200, body = Vec<ScopeView>), super::Failures))]
pub async fn scopes_get(State(app): State<AppState>, admin: Admin) -> Answer<Vec<ScopeView>> {
    Ok(Json(list_scopes(&admin.ctx(&app)).await?))
}

/// Add a scope to the catalog (operators only).
#[utoipa::path(post, path = "/scopes", tag = "catalog", request_body = NewScope,
    responses((status = 201, body = ScopeView), super::Failures))]
pub async fn scopes_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewScope>,
) -> Created<ScopeView> {
    let s = create_scope(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// Resource servers (token audiences).
#[utoipa::path(get, path = "/resources", tag = "catalog",
    responses((status = 200, body = Vec<ResourceView>), super::Failures))]
pub async fn resources_get(State(app): State<AppState>, admin: Admin) -> Answer<Vec<ResourceView>> {
    Ok(Json(list_resources(&admin.ctx(&app)).await?))
}

/// Register a resource server (operators only); its credential secret is shown once.
#[utoipa::path(post, path = "/resources", tag = "catalog", request_body = NewResource,
    responses((status = 201, body = CreatedResource), super::Failures))]
pub async fn resources_post(
    State(app): State<AppState>,
    admin: Admin,
    Body(new): Body<NewResource>,
) -> Created<CreatedResource> {
    let r = create_resource(&admin.ctx(&app), new).await?;
    Ok((StatusCode::CREATED, Json(r)))
}
