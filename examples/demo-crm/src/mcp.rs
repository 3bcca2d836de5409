//! The CRM as an MCP server (Streamable HTTP at `/mcp`, built on the official `rmcp` SDK).
//!
//! The MCP authorization spec asks a resource server to answer a request whose token lacks a
//! needed scope with HTTP 403 and `WWW-Authenticate: Bearer error="insufficient_scope",
//! scope="..."`, so the client can step up (ask the user for more) rather than fail. A tool
//! call travels inside a JSON-RPC body, so [`scope_gate`] reads the body before `rmcp` does,
//! finds the tools being called and answers that challenge itself. The tools check the scope
//! again, so a route wired without the gate still refuses (as a tool error).
//!
//! The tools act with the verified [`Principal`] only: the agent's token is removed from the
//! request once the guard has accepted it and is never forwarded anywhere.

use crate::data::{Crm, NewTicket};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mandate_guard::{BearerError, Guard, Principal, RefusedRequest, Requirement};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// Largest JSON-RPC body accepted at `/mcp`; larger ones get 413 before any parsing.
pub const MAX_MCP_BODY_BYTES: usize = 1024 * 1024;

/// Each tool and the scope it needs. The single source for both the gate and the tools.
pub const TOOL_SCOPES: &[(&str, &str)] = &[
    ("list_contacts", "contacts.read"),
    ("create_ticket", "tickets.write"),
    ("read_billing", "billing.read"),
];

fn scope_for(tool: &str) -> Option<&'static str> {
    TOOL_SCOPES
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, s)| *s)
}

/// The MCP tool server; one is made per session by the `rmcp` service.
#[derive(Clone)]
pub struct CrmTools {
    crm: Arc<Crm>,
    guard: Guard,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct CreateTicketArgs {
    /// What the ticket is about.
    pub subject: String,
}

type Parts = http::request::Parts;

impl CrmTools {
    pub fn new(crm: Arc<Crm>, guard: Guard) -> Self {
        Self {
            crm,
            guard,
            tool_router: Self::tool_router(),
        }
    }

    /// The caller, if it holds `tool`'s scope (through the hierarchy).
    fn authorize(&self, parts: &Parts, tool: &str) -> Result<Principal, ErrorData> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))?;
        let scope = scope_for(tool)
            .ok_or_else(|| ErrorData::internal_error("tool without a scope", None))?;
        self.guard
            .check(&principal, &Requirement::scope(scope))
            .map_err(|_| {
                ErrorData::invalid_request(format!("insufficient_scope: needs {scope}"), None)
            })?;
        Ok(principal)
    }
}

fn structured(value: impl Serialize) -> Result<CallToolResult, ErrorData> {
    serde_json::to_value(value)
        .map(CallToolResult::structured)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

#[tool_router]
impl CrmTools {
    #[tool(
        description = "List the contacts of the signed-in user's organisation. Needs contacts.read."
    )]
    async fn list_contacts(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.authorize(&parts, "list_contacts")?;
        structured(serde_json::json!({ "contacts": self.crm.contacts(&principal.tenant) }))
    }

    #[tool(
        description = "Open a support ticket for the signed-in user's organisation. Needs tickets.write."
    )]
    async fn create_ticket(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<CreateTicketArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.authorize(&parts, "create_ticket")?;
        let ticket = self
            .crm
            .open_ticket(
                &principal.tenant,
                &principal.subject,
                NewTicket {
                    subject: args.subject,
                },
            )
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        structured(ticket)
    }

    #[tool(description = "Read the organisation's plan, balance and invoices. Needs billing.read.")]
    async fn read_billing(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.authorize(&parts, "read_billing")?;
        structured(self.crm.billing(&principal.tenant))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CrmTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Demo CRM. Each tool acts for the signed-in user, in their organisation only.",
        )
    }
}

/// The `/mcp` service. `allowed_hosts` are the `Host` values accepted (DNS-rebinding defence).
pub fn service(
    crm: Arc<Crm>,
    guard: Guard,
    allowed_hosts: Vec<String>,
) -> StreamableHttpService<CrmTools, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .with_max_request_body_bytes(MAX_MCP_BODY_BYTES);
    StreamableHttpService::new(
        move || Ok(CrmTools::new(crm.clone(), guard.clone())),
        Arc::default(),
        config,
    )
}

/// Middleware for `/mcp`: answers a tool call the token's scopes do not cover with the
/// step-up challenge, and removes the `Authorization` header so nothing past the guard can
/// pass the agent's token on.
pub async fn scope_gate(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(http::header::AUTHORIZATION);
    let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
        return guard.reject(&BearerError::Missing);
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_MCP_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    if let Some(refusal) = refusal(&guard, &principal, &bytes) {
        // Reported to the issuer's audit log when the guard reports denials.
        return guard.refuse(&refusal, RefusedRequest::from(&parts), Some(&principal));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The refusal for the first tool called in `body` (a JSON-RPC request or batch) whose scope
/// the principal lacks. Bodies that are not JSON-RPC pass through for `rmcp` to refuse.
fn refusal(guard: &Guard, principal: &Principal, body: &Bytes) -> Option<BearerError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let messages = match value {
        Value::Array(batch) => batch,
        single => vec![single],
    };
    messages
        .iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"))
        .filter_map(|m| m.pointer("/params/name").and_then(Value::as_str))
        .filter_map(scope_for)
        .find_map(|scope| guard.check(principal, &Requirement::scope(scope)).err())
}
