//! The demo CRM: a small multi-tenant API (contacts, tickets, billing) over REST and MCP,
//! protected by `mandate-guard` the way any real resource server would be.
//!
//! It exists to show, end to end, what Mandate promises: an agent's token names a user and a
//! tenant, carries only the scopes that user approved, and stops working everywhere when its
//! grant is revoked. `mandate demo` runs it beside the server; `demo-crm` runs it alone.
//!
//! # Layout
//! - [`data`]: the records, partitioned by tenant; the only way in takes the caller's tenant.
//! - [`rest`]: `GET/POST /contacts`, `GET /contacts/{id}`, `GET/POST /tickets`, `GET /billing`.
//! - [`mcp`]: the same data as MCP tools at `/mcp`, with the step-up challenge the MCP
//!   authorization spec asks for.

pub mod data;
pub mod mcp;
pub mod rest;

use axum::routing::get;
use axum::{Json, Router};
use mandate_guard::{Guard, GuardBuilder};
use serde_json::json;
use std::sync::Arc;

pub use data::Crm;

/// The scopes this API understands.
pub const SCOPES: &[&str] = &[
    "contacts.read",
    "contacts.write",
    "tickets.read",
    "tickets.write",
    "billing.read",
    "billing.write",
];

/// Broader scopes and the narrower ones they include (from the demo's scope catalog).
pub const SCOPE_IMPLICATIONS: &[(&str, &str)] = &[
    ("contacts.write", "contacts.read"),
    ("tickets.write", "tickets.read"),
    ("billing.write", "billing.read"),
];

/// A guard builder for the CRM at `resource`, trusting `issuer`, with the scope hierarchy.
pub fn guard_builder(issuer: &str, resource: &str) -> GuardBuilder {
    SCOPE_IMPLICATIONS
        .iter()
        .fold(
            Guard::builder(issuer, resource),
            |b, (broader, narrower)| b.scope_implies(broader, narrower),
        )
        .scopes_supported(SCOPES.iter().copied())
}

/// The whole application: REST and MCP behind the guard, plus the public RFC 9728 metadata
/// and an index at `/`.
pub fn app(guard: Guard, crm: Arc<Crm>) -> Router {
    let mcp = Router::new()
        .nest_service(
            "/mcp",
            mcp::service(crm.clone(), guard.clone(), allowed_hosts(&guard)),
        )
        .layer(axum::middleware::from_fn_with_state(
            guard.clone(),
            mcp::scope_gate,
        ));
    let resource = guard.resource().to_owned();
    let index = move || {
        let resource = resource.clone();
        async move {
            Json(json!({
                "name": "Demo CRM",
                "resource": resource,
                "rest": ["GET /contacts", "POST /contacts", "GET /contacts/{id}",
                         "GET /tickets", "POST /tickets", "GET /billing"],
                "mcp": "/mcp",
                "tools": mcp::TOOL_SCOPES.iter().map(|(t, s)| json!({ "name": t, "scope": s })).collect::<Vec<_>>(),
            }))
        }
    };
    rest::routes(&guard, crm)
        .merge(mcp)
        .layer(guard.layer())
        .merge(guard.metadata_router())
        .route("/", get(index))
}

/// `Host` values the MCP endpoint accepts: loopback names and the resource's own host.
fn allowed_hosts(guard: &Guard) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let resource_host = url::Url::parse(guard.resource())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    if let Some(host) = resource_host
        && !hosts.contains(&host)
    {
        hosts.push(host);
    }
    hosts
}
