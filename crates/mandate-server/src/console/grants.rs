//! `GET grants`: grants the administrator can see, filtered by tenant, person and agent;
//! `POST revoke-grant` revokes one through [`crate::admin::grants::revoke_grant`], the admin
//! API's path, so the revocation is audited with the administrator as actor and published on
//! the revocation feed, and a grant in another tenant is "not found".

use super::directory::{find_user, logins, tenant_choice, tenant_param};
use super::pages::{GrantRow, GrantsPage, when};
use super::session::{Console, ConsoleForm};
use super::{Answer, Query, filled, next_address, page_url};
use crate::admin::grants;
use crate::admin::model::{GrantQuery, GrantView, RevokeRequest};
use crate::pages::render;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use std::collections::HashMap;

#[derive(serde::Deserialize)]
pub struct GrantsQuery {
    tenant: Option<String>,
    /// A login or user id.
    user: Option<String>,
    /// A client id.
    agent: Option<String>,
    /// `on` to list revoked grants too.
    revoked: Option<String>,
    /// What the last form did, to say so once.
    done: Option<String>,
    /// The cursor of the page to show (from the previous page's "Next" link).
    after: Option<String>,
}

fn row(g: GrantView, logins: &HashMap<String, String>) -> GrantRow {
    GrantRow {
        user: g.user_id.map(|id| logins.get(&id).cloned().unwrap_or(id)),
        created: when(g.created_at),
        expires: g.expires_at.map(when),
        revoked: g
            .revoked_at
            .map(|at| (when(at), g.revoked_reason.unwrap_or_default())),
        id: g.id,
        tenant_id: g.tenant_id,
        client_id: g.client_id,
        scopes: g.scopes,
        purpose: g.purpose,
    }
}

pub async fn grants_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<GrantsQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let tenant_id = tenant_param(&ctx, q.tenant.as_deref()).await?;
    let user_id = match filled(q.user.as_deref()) {
        Some(u) => Some(find_user(&ctx, u).await?.id),
        None => None,
    };
    let agent = filled(q.agent.as_deref()).map(str::to_owned);
    let include_revoked = q.revoked.as_deref() == Some("on");
    let found = grants::list_grants(
        &ctx,
        GrantQuery {
            tenant_id: tenant_id.clone(),
            user_id,
            client_id: agent.clone(),
            include_revoked,
            after: filled(q.after.as_deref()).map(str::to_owned),
            ..GrantQuery::default()
        },
    )
    .await?;
    let logins = logins(
        &ctx,
        found.items.iter().filter_map(|g| g.user_id.as_deref()),
    )
    .await?;
    let tenant = tenant_id.clone().unwrap_or_default();
    let user = q.user.unwrap_or_default();
    let agent = agent.unwrap_or_default();
    let revoked = if include_revoked { "on" } else { "" };
    let filters = [
        ("tenant", tenant.as_str()),
        ("user", user.as_str()),
        ("agent", agent.as_str()),
        ("revoked", revoked),
    ];
    let next = found
        .next
        .map(|after| next_address("grants", &filters, &after));
    let notice = match q.done.as_deref() {
        Some("revoked") => Some("Grant revoked. Its tokens stop working now."),
        Some("already") => Some("That grant was already revoked."),
        _ => None,
    };
    let page = GrantsPage {
        notice,
        tenant: tenant_choice(&ctx, tenant_id.as_deref()).await?,
        user,
        agent,
        include_revoked,
        grants: found.items.into_iter().map(|g| row(g, &logins)).collect(),
        next,
        nav: console.nav(&ctx, "grants").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

/// `POST revoke-grant` with `grant_id` (and an optional `reason`).
pub async fn revoke_grant_post(State(app): State<AppState>, submitted: ConsoleForm) -> Answer {
    let ctx = submitted.ctx(&app);
    let grant_id = submitted.form.single("grant_id")?;
    let reason = filled(submitted.form.get("reason")).map(str::to_owned);
    let done = grants::revoke_grant(&ctx, grant_id, RevokeRequest { reason }).await?;
    let outcome = if done.was_active {
        "revoked"
    } else {
        "already"
    };
    Ok(Redirect::to(&page_url(&app, &format!("grants?done={outcome}"))).into_response())
}
