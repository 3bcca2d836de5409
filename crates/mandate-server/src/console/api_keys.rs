//! API keys: `GET api-keys` lists them (never the keys themselves: only their hashes are
//! stored), `POST create-key` and `POST rotate-key` answer with the one page that shows the new
//! key, once, and `POST revoke-key` revokes. All through [`crate::admin::api_keys`], so the
//! lifetime limits, tenant checks and audit events are the admin API's.
//!
//! The new key is in that answer's body only: it is not stored, not put in a redirect, a
//! cookie or a log line, and the page is `no-store`, so reloading the list never shows it.
//! Sending the form again creates another key rather than showing this one.

use super::directory::{find_user, logins, tenant_choice, tenant_param};
use super::pages::{ApiKeysPage, KeyRow, Lifetime, NewKeyPage, when};
use super::session::{Console, ConsoleForm};
use super::{Answer, ConsoleError, Query, filled, next_address, page_url};
use crate::admin::api_keys;
use crate::admin::context::Ctx;
use crate::admin::directory;
use crate::admin::model::{ApiKeyQuery, ApiKeyView, NewApiKey, RevokeRequest, RotateRequest};
use crate::errors::ServerError;
use crate::pages::render;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use std::collections::HashMap;

const DAY: u64 = 24 * 60 * 60;

/// Lifetimes offered, up to the configured maximum; 30 days preselected.
fn lifetimes(ctx: &Ctx<'_>) -> Vec<Lifetime> {
    [
        (DAY, "1 day"),
        (7 * DAY, "7 days"),
        (30 * DAY, "30 days"),
        (90 * DAY, "90 days"),
        (365 * DAY, "1 year"),
    ]
    .into_iter()
    .filter(|(seconds, _)| *seconds <= ctx.api_keys.max_lifetime_seconds)
    .map(|(seconds, label)| Lifetime {
        seconds,
        label,
        selected: seconds == 30 * DAY,
    })
    .collect()
}

fn row(k: ApiKeyView, now: i64, logins: &HashMap<String, String>) -> KeyRow {
    let expired = k.expires_at <= now;
    let status = match (&k.revoked_at, &k.replaced_by, expired) {
        (Some(_), _, _) => "revoked",
        (None, _, true) => "expired",
        (None, Some(_), false) => "rotated",
        (None, None, false) => "active",
    };
    let live = k.revoked_at.is_none() && !expired;
    KeyRow {
        user: k.user_id.map(|id| logins.get(&id).cloned().unwrap_or(id)),
        created: when(k.created_at),
        expires: when(k.expires_at),
        last_used: k.last_used_at.map(when),
        status,
        live,
        rotatable: live && k.replaced_by.is_none(),
        id: k.id,
        name: k.name,
        tenant_id: k.tenant_id,
        scopes: k.scopes,
    }
}

#[derive(serde::Deserialize)]
pub struct KeysQuery {
    tenant: Option<String>,
    done: Option<String>,
    /// The cursor of the page to show (from the previous page's "Next" link).
    after: Option<String>,
}

pub async fn api_keys_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<KeysQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let tenant_id = tenant_param(&ctx, q.tenant.as_deref()).await?;
    let found = api_keys::list_keys(
        &ctx,
        ApiKeyQuery {
            tenant_id: tenant_id.clone(),
            after: filled(q.after.as_deref()).map(str::to_owned),
            ..ApiKeyQuery::default()
        },
    )
    .await?;
    let logins = logins(
        &ctx,
        found.items.iter().filter_map(|k| k.user_id.as_deref()),
    )
    .await?;
    let tenant = tenant_id.clone().unwrap_or_default();
    let next = found
        .next
        .map(|after| next_address("api-keys", &[("tenant", &tenant)], &after));
    let now = ctx.now.unix();
    let notice = match q.done.as_deref() {
        Some("key-revoked") => Some("API key revoked. Tokens obtained with it stop working now."),
        Some("already") => Some("That API key was already revoked."),
        _ => None,
    };
    let page = ApiKeysPage {
        notice,
        tenant: tenant_choice(&ctx, tenant_id.as_deref()).await?,
        scopes: crate::admin::directory::list_scopes(&ctx)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect(),
        lifetimes: lifetimes(&ctx),
        keys: found
            .items
            .into_iter()
            .map(|k| row(k, now, &logins))
            .collect(),
        next,
        create_tenants: directory::list_tenants(&ctx).await?,
        nav: console.nav(&ctx, "api-keys").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

fn lifetime(submitted: &ConsoleForm) -> Result<u64, ConsoleError> {
    let text = submitted.form.single("expires_in")?;
    text.parse().map_err(|_| {
        ServerError::page(
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "The lifetime must be a number of seconds.",
        )
        .into()
    })
}

/// `POST create-key`: `tenant_id`, `user` (a login or user id; empty: a tenant-level key),
/// `name`, `scope` (repeated), `expires_in` (seconds).
pub async fn create_key_post(State(app): State<AppState>, submitted: ConsoleForm) -> Answer {
    let ctx = submitted.ctx(&app);
    let form = &submitted.form;
    let user_id = match filled(form.get("user")) {
        Some(u) => Some(find_user(&ctx, u).await?.id),
        None => None,
    };
    let new = NewApiKey {
        tenant_id: form.single("tenant_id")?.to_owned(),
        user_id,
        name: form.single("name")?.to_owned(),
        scopes: form.all("scope").map(str::to_owned).collect(),
        expires_in: lifetime(&submitted)?,
    };
    let created = api_keys::create_key(&ctx, new).await?;
    let logins = logins(&ctx, created.api_key.user_id.as_deref()).await?;
    let page = NewKeyPage {
        heading: "API key created",
        key: created.key,
        row: row(created.api_key, ctx.now.unix(), &logins),
        old_key_until: None,
        nav: submitted.nav(&ctx, "api-keys").await?,
    };
    Ok(render(StatusCode::OK, &page).into_response())
}

/// `POST rotate-key`: `key_id`, `expires_in` (the successor's lifetime, seconds).
pub async fn rotate_key_post(State(app): State<AppState>, submitted: ConsoleForm) -> Answer {
    let ctx = submitted.ctx(&app);
    let id = submitted.form.single("key_id")?;
    let expires_in = lifetime(&submitted)?;
    let rotated = api_keys::rotate_key(&ctx, id, RotateRequest { expires_in }).await?;
    let logins = logins(&ctx, rotated.api_key.user_id.as_deref()).await?;
    let page = NewKeyPage {
        heading: "API key rotated",
        key: rotated.key,
        row: row(rotated.api_key, ctx.now.unix(), &logins),
        old_key_until: Some((rotated.replaces, when(rotated.predecessor_expires_at))),
        nav: submitted.nav(&ctx, "api-keys").await?,
    };
    Ok(render(StatusCode::OK, &page).into_response())
}

/// `POST revoke-key`: `key_id`.
pub async fn revoke_key_post(State(app): State<AppState>, submitted: ConsoleForm) -> Answer {
    let ctx = submitted.ctx(&app);
    let id = submitted.form.single("key_id")?;
    let done = api_keys::revoke_key(&ctx, id, RevokeRequest::default()).await?;
    let outcome = if done.was_active {
        "key-revoked"
    } else {
        "already"
    };
    Ok(Redirect::to(&page_url(&app, &format!("api-keys?done={outcome}"))).into_response())
}
