//! The overview, tenants, users and agents pages, and the lookups other pages share (a
//! tenant or person named in a filter, logins for user ids), all through the admin directory
//! operations: a tenant admin's lists hold only their tenant, and naming another tenant or
//! its people answers "not found".

use super::pages::{
    AgentRow, AgentsPage, AlertRow, EventRow, OverviewPage, TenantChoice, TenantsPage, UsersPage,
};
use super::session::Console;
use super::{Answer, ConsoleError, Query, filled, next_address, not_found};
use crate::admin::context::Ctx;
use crate::admin::model::{AgentQuery, EventQuery, TenantView, UserQuery, UserView};
use crate::admin::{audit as admin_audit, directory};
use crate::pages::render;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mandate_core::event::Action;
use mandate_store::GrantFilter;
use std::collections::HashMap;

/// The overview counts users, grants and keys this far and no further ("10,000+"): a count
/// reads index entries, and a database of millions must not read them all for one page.
const COUNT_CAP: u32 = 10_000;

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
        login: Some(login_or_id.to_owned()),
        ..UserQuery::default()
    };
    if let Some(u) = directory::list_users(ctx, by_login)
        .await?
        .items
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

/// Logins by user id for these people (those the caller can see): what one page shows
/// beside grants, keys or events, read in one query however many users there are.
pub async fn logins<'a>(
    ctx: &Ctx<'_>,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, String>, ConsoleError> {
    let mut ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
    ids.sort_unstable();
    ids.dedup();
    let users = ctx.store.users_by_ids(&ids).await?;
    Ok(users
        .into_iter()
        .filter(|u| ctx.authority.can_reach_tenant(&u.tenant_id))
        .map(|u| (u.id, u.login))
        .collect())
}

/// A count as the overview shows it: exact up to [`COUNT_CAP`], "10,000+" past it.
fn shown(count: u32) -> String {
    if count >= COUNT_CAP {
        format!("{}+", thousands(COUNT_CAP))
    } else {
        thousands(count)
    }
}

fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn overview_get(State(app): State<AppState>, console: Console) -> Answer {
    let ctx = console.ctx(&app);
    let tenant = ctx.authority.tenant_filter();
    let tenants = directory::list_tenants(&ctx).await?;
    let store = ctx.store;
    let agents = store.count_agents(tenant, COUNT_CAP).await?;
    let users = store.count_users(tenant, COUNT_CAP).await?;
    let active = GrantFilter {
        tenant_id: tenant.map(str::to_owned),
        ..GrantFilter::default()
    };
    let grants = store.count_grants(&active, COUNT_CAP).await?;
    let keys = store
        .count_live_api_keys(tenant, ctx.now, COUNT_CAP)
        .await?;
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
    let logins = logins(&ctx, events.iter().flat_map(EventRow::people)).await?;
    let page = OverviewPage {
        nav: console.nav(&ctx, "overview").await?,
        counts: vec![
            ("Tenants", thousands(tenants.len() as u32), "tenants"),
            ("Users", shown(users), "users"),
            ("Agents", shown(agents), "agents"),
            ("Active grants", shown(grants), "grants"),
            ("Live API keys", shown(keys), "api-keys"),
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
pub struct UsersQuery {
    tenant: Option<String>,
    /// The cursor of the page to show (from the previous page's "Next" link).
    after: Option<String>,
}

pub async fn users_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<UsersQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let tenant_id = tenant_param(&ctx, q.tenant.as_deref()).await?;
    let found = directory::list_users(
        &ctx,
        UserQuery {
            tenant_id: tenant_id.clone(),
            after: filled(q.after.as_deref()).map(str::to_owned),
            ..UserQuery::default()
        },
    )
    .await?;
    let tenant = tenant_id.clone().unwrap_or_default();
    let page = UsersPage {
        tenant: tenant_choice(&ctx, tenant_id.as_deref()).await?,
        users: found.items,
        next: found
            .next
            .map(|after| next_address("users", &[("tenant", &tenant)], &after)),
        nav: console.nav(&ctx, "users").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

#[derive(serde::Deserialize)]
pub struct AgentsQuery {
    /// The cursor of the page to show (from the previous page's "Next" link).
    after: Option<String>,
}

pub async fn agents_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<AgentsQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let names: HashMap<String, String> = directory::list_tenants(&ctx)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let found = directory::list_agents(
        &ctx,
        AgentQuery {
            after: filled(q.after.as_deref()).map(str::to_owned),
            ..AgentQuery::default()
        },
    )
    .await?;
    let agents = found
        .items
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
        next: found.next.map(|after| next_address("agents", &[], &after)),
        nav: console.nav(&ctx, "agents").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_and_stop_at_the_cap() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(shown(9_999), "9,999");
        assert_eq!(shown(COUNT_CAP), "10,000+");
    }
}
