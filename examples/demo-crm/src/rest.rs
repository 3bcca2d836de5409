//! The REST API: contacts, tickets and billing for the caller's tenant.
//!
//! Each route declares its scope with the guard's `require`; handlers take the verified
//! [`Principal`] and pass only its tenant to the data layer. Nothing in the path, query, body
//! or headers can choose a tenant. Every answer names the caller, so a person trying the demo
//! sees whose authority a request ran under.

use crate::data::{Crm, CrmError, NewContact, NewTicket};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mandate_guard::{Guard, Principal, Requirement};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// Who a request ran as: echoed in every response.
#[derive(Debug, Serialize)]
struct Caller<'a> {
    subject: &'a str,
    tenant: &'a str,
    client_id: &'a str,
    /// The agents the subject's authority passed through (RFC 8693 `act`), the one calling
    /// first; absent when the subject's own agent calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    acting_through: Vec<&'a str>,
}

/// The actors of a delegation chain, outermost (the current caller) first.
fn actors(act: Option<&serde_json::Value>) -> Vec<&str> {
    let mut chain = Vec::new();
    let mut next = act;
    while let Some(actor) = next {
        let Some(sub) = actor.get("sub").and_then(serde_json::Value::as_str) else {
            break;
        };
        chain.push(sub);
        next = actor.get("act");
    }
    chain
}

fn answer(status: StatusCode, principal: &Principal, data: impl Serialize) -> Response {
    let caller = Caller {
        subject: &principal.subject,
        tenant: &principal.tenant,
        client_id: &principal.client_id,
        acting_through: actors(principal.act.as_ref()),
    };
    (status, Json(json!({ "caller": caller, "data": data }))).into_response()
}

/// A refused write or unreadable body, in the RFC 6749 error shape the rest of Mandate uses.
fn bad_request(description: &str) -> Response {
    let body = json!({ "error": "invalid_request", "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

impl IntoResponse for CrmError {
    fn into_response(self) -> Response {
        bad_request(&self.to_string())
    }
}

/// The REST routes, each behind its scope requirement. The caller adds the guard's
/// authenticating layer around the whole application.
pub fn routes(guard: &Guard, crm: Arc<Crm>) -> Router {
    let need = |scope: &str| guard.require(Requirement::scope(scope));
    Router::new()
        .route(
            "/contacts",
            get(list_contacts.layer(need("contacts.read")))
                .post(create_contact.layer(need("contacts.write"))),
        )
        .route(
            "/contacts/{id}",
            get(show_contact.layer(need("contacts.read"))),
        )
        .route(
            "/tickets",
            get(list_tickets.layer(need("tickets.read")))
                .post(create_ticket.layer(need("tickets.write"))),
        )
        .route("/billing", get(show_billing.layer(need("billing.read"))))
        .with_state(crm)
}

async fn list_contacts(principal: Principal, State(crm): State<Arc<Crm>>) -> Response {
    answer(StatusCode::OK, &principal, crm.contacts(&principal.tenant))
}

async fn show_contact(
    principal: Principal,
    State(crm): State<Arc<Crm>>,
    Path(id): Path<String>,
) -> Response {
    match crm.contact(&principal.tenant, &id) {
        Some(contact) => answer(StatusCode::OK, &principal, contact),
        None => {
            let body = json!({ "error": "not_found", "error_description": "no such contact" });
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

async fn create_contact(
    principal: Principal,
    State(crm): State<Arc<Crm>>,
    body: Result<Json<NewContact>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request(&rejection.body_text()),
    };
    match crm.add_contact(&principal.tenant, new) {
        Ok(contact) => answer(StatusCode::CREATED, &principal, contact),
        Err(e) => e.into_response(),
    }
}

async fn list_tickets(principal: Principal, State(crm): State<Arc<Crm>>) -> Response {
    answer(StatusCode::OK, &principal, crm.tickets(&principal.tenant))
}

async fn create_ticket(
    principal: Principal,
    State(crm): State<Arc<Crm>>,
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => return bad_request(&rejection.body_text()),
    };
    match crm.open_ticket(&principal.tenant, &principal.subject, new) {
        Ok(ticket) => answer(StatusCode::CREATED, &principal, ticket),
        Err(e) => e.into_response(),
    }
}

async fn show_billing(principal: Principal, State(crm): State<Arc<Crm>>) -> Response {
    answer(StatusCode::OK, &principal, crm.billing(&principal.tenant))
}
