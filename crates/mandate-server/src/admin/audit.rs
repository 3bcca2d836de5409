//! The audit log, searched and followed: by tenant, user, agent, grant, action and time, a
//! page at a time in either direction. A tenant admin sees only events of their own tenant
//! (events without a tenant, such as configuration changes, are operators' only).
//!
//! Searching answers from the log as committed; proving it was not edited is `mandate audit
//! verify`'s job, which reads the database itself.

use super::auth::{Admin, Query};
use super::context::Ctx;
use super::model::{EventPage, EventQuery};
use crate::errors::{AdminError, ServerError};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use mandate_core::event::Action;
use mandate_core::time::Timestamp;
use mandate_store::EventFilter;

/// Events per page unless asked otherwise, and at most.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

fn invalid(message: String) -> ServerError {
    AdminError::Invalid(message).into()
}

fn time(name: &str, given: Option<&str>) -> Result<Option<Timestamp>, ServerError> {
    given
        .map(|text| {
            Timestamp::parse_user(text).ok_or_else(|| {
                invalid(format!(
                    "{name} must be Unix seconds or an RFC 3339 time such as \
                     2026-11-22T09:30:00Z"
                ))
            })
        })
        .transpose()
}

/// The store filter for a query, confined to what the caller may see; `None` when the caller
/// asked for a tenant they cannot see (the answer is then empty, as for other lists).
pub fn filter(ctx: &Ctx<'_>, q: &EventQuery) -> Result<Option<EventFilter>, ServerError> {
    if let Some(action) = &q.action
        && Action::parse(action).is_none()
    {
        return Err(invalid(format!(
            "unknown action `{action}`; actions are: {}",
            Action::ALL.map(Action::as_str).join(", ")
        )));
    }
    let newest_first = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(invalid(format!("order must be asc or desc, not `{other}`"))),
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    if q.after.is_some_and(|s| s < 0) || q.before.is_some_and(|s| s < 1) {
        return Err(invalid(
            "after and before are sequence numbers (after ≥ 0, before ≥ 1)".into(),
        ));
    }
    let since = time("since", q.since.as_deref())?;
    let until = time("until", q.until.as_deref())?;
    let Ok(tenant) = ctx.listed_tenant(q.tenant_id.as_deref()) else {
        return Ok(None);
    };
    Ok(Some(EventFilter {
        tenant_id: tenant.map(str::to_owned),
        user_id: q.user_id.clone(),
        client_id: q.client_id.clone(),
        grant_id: q.grant_id.clone(),
        action: q.action.clone(),
        since,
        until,
        after_seq: q.after.unwrap_or(0),
        before_seq: q.before,
        newest_first,
        limit,
        ..EventFilter::default()
    }))
}

pub async fn search_events(ctx: &Ctx<'_>, q: EventQuery) -> Result<EventPage, ServerError> {
    let Some(filter) = filter(ctx, &q)? else {
        return Ok(EventPage {
            events: Vec::new(),
            last_seq: None,
            has_more: false,
        });
    };
    let events = ctx.store.events(&filter).await?;
    let has_more = events.len() == filter.limit as usize;
    Ok(EventPage {
        last_seq: events.last().map(|e| e.seq),
        has_more,
        events: events.into_iter().map(Into::into).collect(),
    })
}

/// Search the audit log. Oldest first by default (page on with `after`); `order=desc` gives
/// newest first (page on with `before`).
#[utoipa::path(get, path = "/events", tag = "audit", params(EventQuery),
    responses((status = 200, body = EventPage), super::Failures))]
pub async fn events_get(
    State(app): State<AppState>,
    admin: Admin,
    Query(q): Query<EventQuery>,
) -> Result<Json<EventPage>, ServerError> {
    Ok(Json(search_events(&admin.ctx(&app), q).await?))
}
