//! The overview, tenants, users and agents pages, and the lookups other pages share (a
//! tenant or person named in a filter, logins for user ids), all through the admin directory
//! operations: a tenant admin's lists hold only their tenant, and naming another tenant or
//! its people answers "not found".

use super::pages::{
    AgentRow, AgentsPage, AlertRow, EventRow, OverviewPage, TenantChoice, TenantsPage, UsersPage,
};
use super::session::Console;
use super::{Answer, ConsoleError, Query, not_found};
use crate::admin::context::Ctx;
use crate::admin::model::{EventQuery, GrantQuery, TenantView, UserQuery, UserView};
use crate::admin::{api_keys, audit as admin_audit, directory, grants};
use crate::pages::render;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mandate_core::event::Action;
use std::collections::HashMap;

/// How many recent alerts and events the overview shows.
const RECENT_ALERTS: u32 = 5;
const RECENT_EVENTS: u32 = 10;

/// The tenant `id`, if the caller may see it.
pub async fn tenant(ctx: &Ctx<'_>, id: &str) -> Result<TenantView, ConsoleError> {
    Ok(directory::reachable_tenant(ctx, id).await?)
}

/// A `tenant` filter as submitted: `None` when empty, "not found" when the caller cannot
/// see it.
pub async fn tenant_param(
    ctx: &Ctx<'_>,
    given: Option<&str>,
) -> Result<Option<String>, ConsoleError> {
    match super::filled(given) {
        None => Ok(None),
        Some(id) => Ok(Some(tenant(ctx, id).await?.id)),
    }
}

/// The operator's tenant selector with `selected` chosen; `None` for a tenant admin.
pub async fn tenant_choice(
    ctx: &Ctx<'_>,
    selected: Option<&str>,
) -> Result<Option<TenantChoice>, ConsoleError> {
    if !ctx.authority.is_operator() {
        return Ok(None);
    }
    Ok(Some(TenantChoice {
        tenants: directory::list_tenants(ctx).await?,
        selected: selected.unwrap_or_default().to_owned(),
    }))
}

/// The person a filter names, by login or by id; "not found" when the caller cannot see them.
pub async fn find_user(ctx: &Ctx<'_>, login_or_id: &str) -> Result<UserView, ConsoleError> {
    let by_login = UserQuery {
        tenant_id: None,
        login: Some(login_or_id.to_owned()),
    };
    if let Some(u) = directory::list_users(ctx, by_login)
        .await?
        .into_iter()
        .next()
    {
        return Ok(u);
    }
    match directory::reachable_user(ctx, login_or_id).await {
        Ok(u) => Ok(u.into()),
        Err(_) => Err(not_found("user", login_or_id)),
    }
}

/// Logins by user id, for every person the caller can see.
pub async fn logins(ctx: &Ctx<'_>) -> Result<HashMap<String, String>, ConsoleError> {
    let users = directory::list_users(ctx, UserQuery::default()).await?;
    Ok(users.into_iter().map(|u| (u.id, u.login)).collect())
}

pub async fn overview_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let tenants = directory::list_tenants(&ctx).await?;
    let users = directory::list_users(&ctx, UserQuery::default()).await?;
    let agents = directory::list_agents(&ctx).await?;
    let active_grants = grants::list_grants(&ctx, GrantQuery::default()).await?;
    let mut live_keys = 0;
    for t in &tenants {
        let keys = api_keys::list_keys(&ctx, &t.id).await?;
        live_keys += keys
            .iter()
            .filter(|k| k.revoked_at.is_none() && k.expires_at > ctx.now.unix())
            .count();
    }
    let recent = |action: Option<Action>, limit: u32| EventQuery {
        action: action.map(|a| a.as_str().to_owned()),
        order: Some("desc".into()),
        limit: Some(limit),
        ..EventQuery::default()
    };
    let alerts =
        admin_audit::search_events(&ctx, recent(Some(Action::AnomalyDetected), RECENT_ALERTS))
            .await?
            .events;
    let events = admin_audit::search_events(&ctx, recent(None, RECENT_EVENTS))
        .await?
        .events;
    let logins: HashMap<String, String> = users
        .iter()
        .map(|u| (u.id.clone(), u.login.clone()))
        .collect();
    let page = OverviewPage {
        nav: console.nav(&ctx, "overview").await?,
        counts: vec![
            ("Tenants", tenants.len(), "tenants"),
            ("Users", users.len(), "users"),
            ("Agents", agents.len(), "agents"),
            ("Active grants", active_grants.len(), "grants"),
            ("Live API keys", live_keys, "api-keys"),
        ],
        alerts: alerts.into_iter().map(AlertRow::new).collect(),
        events: events
            .into_iter()
            .map(|e| EventRow::new(e, &logins))
            .collect(),
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

pub async fn tenants_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let page = TenantsPage {
        tenants: directory::list_tenants(&ctx).await?,
        nav: console.nav(&ctx, "tenants").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

#[derive(serde::Deserialize)]
pub struct TenantQuery {
    tenant: Option<String>,
}

pub async fn users_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<TenantQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let tenant_id = tenant_param(&ctx, q.tenant.as_deref()).await?;
    let users = directory::list_users(
        &ctx,
        UserQuery {
            tenant_id: tenant_id.clone(),
            login: None,
        },
    )
    .await?;
    let page = UsersPage {
        tenant: tenant_choice(&ctx, tenant_id.as_deref()).await?,
        users,
        nav: console.nav(&ctx, "users").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

pub async fn agents_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let names: HashMap<String, String> = directory::list_tenants(&ctx)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let agents = directory::list_agents(&ctx)
        .await?
        .into_iter()
        .map(|agent| AgentRow {
            owner: agent
                .tenant_id
                .as_ref()
                .map(|t| names.get(t).cloned().unwrap_or_else(|| t.clone())),
            agent,
        })
        .collect();
    let page = AgentsPage {
        agents,
        nav: console.nav(&ctx, "agents").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}
