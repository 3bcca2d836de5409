//! `GET audit`: the audit log, newest first, filtered by tenant, person, agent, grant, action
//! and time, a page at a time; `GET alerts`: the anomaly rules' firings (`anomaly.detected`
//! events). Both search through [`crate::admin::audit::search_events`], so a tenant admin
//! sees only their tenant's events, and naming another tenant, person or grant in a filter is
//! "not found".

use super::directory::{find_user, logins, tenant_choice, tenant_param};
use super::pages::{AlertRow, AlertsPage, AuditFilters, AuditPage, EventRow};
use super::session::Console;
use super::{Answer, ConsoleError, Query, address, filled};
use crate::admin::audit::search_events;
use crate::admin::grants::reachable_grant;
use crate::admin::model::{EventPage, EventQuery};
use crate::errors::ServerError;
use crate::pages::render;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mandate_core::event::Action;

/// Events per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditQuery {
    tenant: Option<String>,
    /// A login or user id.
    user: Option<String>,
    /// A client id.
    agent: Option<String>,
    grant: Option<String>,
    action: Option<String>,
    /// From `<input type="datetime-local">` (UTC), or Unix seconds, or RFC 3339.
    since: Option<String>,
    until: Option<String>,
    /// The page of events before this sequence number.
    before: Option<String>,
}

fn text(v: Option<&String>) -> String {
    v.map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn given(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

/// A time from the form: a `datetime-local` value (`2026-12-02T14:05`, read as UTC) becomes
/// RFC 3339; anything else goes on as typed, for the audit search to accept or explain.
fn time(v: &str) -> Option<String> {
    let v = v.trim();
    let bytes = v.as_bytes();
    let local = |len: usize| bytes.len() == len && bytes.get(10) == Some(&b'T');
    if local(16) {
        Some(format!("{v}:00Z"))
    } else if local(19) {
        Some(format!("{v}Z"))
    } else {
        given(v)
    }
}

fn before(v: Option<&str>) -> Result<Option<i64>, ConsoleError> {
    match filled(v) {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            ServerError::page(
                StatusCode::BAD_REQUEST,
                "Invalid address",
                "`before` must be an event number.",
            )
            .into()
        }),
    }
}

/// The address of a page of `path` with these filter pairs (empty ones left out).
fn page_address(path: &str, pairs: &[(&str, &str)], before: Option<i64>) -> String {
    let before = before.map(|seq| seq.to_string()).unwrap_or_default();
    let mut all = pairs.to_vec();
    all.push(("before", &before));
    address(path, &all)
}

/// The "older" and "newest" links of a page of results.
fn paging(
    path: &str,
    pairs: &[(&str, &str)],
    found: &EventPage,
    before: Option<i64>,
) -> (Option<String>, Option<String>) {
    let older = found
        .has_more
        .then_some(found.last_seq)
        .flatten()
        .map(|seq| page_address(path, pairs, Some(seq)));
    let newest = before.map(|_| page_address(path, pairs, None));
    (older, newest)
}

pub async fn audit_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<AuditQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let tenant_id = tenant_param(&ctx, q.tenant.as_deref()).await?;
    let user = text(q.user.as_ref());
    let user_id = match given(&user) {
        Some(u) => Some(find_user(&ctx, &u).await?.id),
        None => None,
    };
    let grant = text(q.grant.as_ref());
    if let Some(g) = given(&grant) {
        reachable_grant(&ctx, &g).await?;
    }
    let (agent, action) = (text(q.agent.as_ref()), text(q.action.as_ref()));
    let (since, until) = (text(q.since.as_ref()), text(q.until.as_ref()));
    let before = before(q.before.as_deref())?;
    let found = search_events(
        &ctx,
        EventQuery {
            tenant_id: tenant_id.clone(),
            user_id,
            client_id: given(&agent),
            grant_id: given(&grant),
            action: given(&action),
            since: time(&since),
            until: time(&until),
            before,
            order: Some("desc".into()),
            limit: Some(PAGE),
            ..EventQuery::default()
        },
    )
    .await?;
    let tenant = tenant_id.clone().unwrap_or_default();
    let pairs = [
        ("tenant", tenant.as_str()),
        ("user", user.as_str()),
        ("agent", agent.as_str()),
        ("grant", grant.as_str()),
        ("action", action.as_str()),
        ("since", since.as_str()),
        ("until", until.as_str()),
    ];
    let (older, newest) = paging("audit", &pairs, &found, before);
    let logins = logins(&ctx, found.events.iter().flat_map(EventRow::people)).await?;
    let page = AuditPage {
        filters: AuditFilters {
            tenant: tenant_choice(&ctx, tenant_id.as_deref()).await?,
            user,
            agent,
            grant,
            action,
            since,
            until,
        },
        actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
        events: found
            .events
            .into_iter()
            .map(|e| EventRow::new(e, &logins))
            .collect(),
        older,
        newest,
        nav: console.nav(&ctx, "audit").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

#[derive(serde::Deserialize)]
pub struct AlertsQuery {
    before: Option<String>,
}

pub async fn alerts_get(
    State(app): State<AppState>,
    console: Console,
    Query(q): Query<AlertsQuery>,
) -> Answer {
    let ctx = console.ctx(&app);
    let before = before(q.before.as_deref())?;
    let found = search_events(
        &ctx,
        EventQuery {
            action: Some(Action::AnomalyDetected.as_str().to_owned()),
            before,
            order: Some("desc".into()),
            limit: Some(PAGE),
            ..EventQuery::default()
        },
    )
    .await?;
    let (older, newest) = paging("alerts", &[], &found, before);
    let page = AlertsPage {
        alerts: found.events.into_iter().map(AlertRow::new).collect(),
        older,
        newest,
        nav: console.nav(&ctx, "alerts").await?,
    };
    Ok((console.jar, render(StatusCode::OK, &page)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_times_become_rfc3339_in_utc() {
        for (typed, sent, why) in [
            (
                "2026-12-02T14:05",
                Some("2026-12-02T14:05:00Z"),
                "datetime-local",
            ),
            (
                "2026-12-02T14:05:30",
                Some("2026-12-02T14:05:30Z"),
                "with seconds",
            ),
            (
                "2026-12-02T14:05:00Z",
                Some("2026-12-02T14:05:00Z"),
                "RFC 3339 as typed",
            ),
            ("1795355529", Some("1795355529"), "Unix seconds as typed"),
            ("  ", None, "empty"),
        ] {
            assert_eq!(time(typed).as_deref(), sent, "{why}");
        }
    }

    #[test]
    fn paging_links_keep_the_filters_and_drop_empty_ones() {
        let pairs = [
            ("user", "alice"),
            ("agent", ""),
            ("action", "grant.revoked"),
        ];
        assert_eq!(
            page_address("audit", &pairs, Some(42)),
            "audit?user=alice&action=grant.revoked&before=42"
        );
        assert_eq!(page_address("alerts", &[], None), "alerts");
    }
}
