//! MCP at `/mcp` with rmcp's own client: tools listed and called with a PKCE token, the
//! step-up challenge for a scope the person has not approved, and tenant isolation.

use crate::helpers::*;
use reqwest::StatusCode;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

async fn connect(demo: &Demo, token: &str) -> RunningService<RoleClient, ()> {
    let config =
        StreamableHttpClientTransportConfig::with_uri(demo.crm_url("/mcp")).auth_header(token);
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> Result<Value, rmcp::ServiceError> {
    let mut params = CallToolRequestParams::new(tool);
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    let result = client.call_tool(params).await?;
    assert_ne!(result.is_error, Some(true), "{result:?}");
    Ok(result.structured_content.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rmcp_client_lists_tools_calls_them_and_steps_up_for_billing() {
    let demo = spawn_demo().await;
    let alice = demo
        .user_token(
            "mcp-assistant",
            "alice",
            "contacts.read billing.read",
            &["contacts.read"],
        )
        .await;
    assert_eq!(
        alice.scope, "contacts.read",
        "alice approved only contacts.read"
    );

    let client = connect(&demo, &alice.access_token).await;
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    tools.sort();
    assert_eq!(tools, ["create_ticket", "list_contacts", "read_billing"]);

    let contacts = call(&client, "list_contacts", json!({})).await.unwrap();
    let emails: Vec<&str> = contacts["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ada@acme.example", "grace@acme.example"]);

    let refused = call(&client, "read_billing", json!({})).await.unwrap_err();
    let challenge = refused
        .auth_challenge()
        .unwrap_or_else(|| panic!("no challenge in {refused:?}"));
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"billing.read\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(
            "resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource\""
        ),
        "{challenge}"
    );
    let _ = client.cancel().await;

    // Step up: alice now approves billing.read too, and the same tool answers.
    let stepped = demo
        .user_token(
            "mcp-assistant",
            "alice",
            "contacts.read billing.read",
            &["contacts.read", "billing.read"],
        )
        .await;
    assert_eq!(stepped.scope, "billing.read contacts.read");
    let client = connect(&demo, &stepped.access_token).await;
    let billing = call(&client, "read_billing", json!({})).await.unwrap();
    assert_eq!(billing["plan"], "Business");
    let _ = client.cancel().await;
}

#[tokio::test]
async fn mcp_tools_act_in_the_callers_tenant_only() {
    let demo = spawn_demo().await;
    let carol = demo
        .user_token(
            "mcp-assistant",
            "carol",
            "contacts.read tickets.write",
            &["contacts.read", "tickets.write"],
        )
        .await;
    let client = connect(&demo, &carol.access_token).await;
    let contacts = call(&client, "list_contacts", json!({})).await.unwrap();
    assert!(!contacts.to_string().contains("acme"), "{contacts}");
    assert_eq!(contacts["contacts"][0]["email"], "hank@globex.example");
    let ticket = call(
        &client,
        "create_ticket",
        json!({ "subject": "From Carol's assistant" }),
    )
    .await
    .unwrap();
    assert!(
        ticket["opened_by"].as_str().unwrap().starts_with("u_"),
        "{ticket}"
    );
    // Bad arguments are a tool error, not a crash.
    let bad = client
        .call_tool(
            CallToolRequestParams::new("create_ticket")
                .with_arguments(json!({ "subject": "" }).as_object().unwrap().clone()),
        )
        .await;
    assert!(
        bad.is_err() || bad.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "{bad:?}"
    );
    let _ = client.cancel().await;

    let svc = demo.service_token("tickets.read").await;
    let (_, tickets, _) = demo.get("/tickets", &svc).await;
    assert!(
        !tickets.to_string().contains("From Carol's assistant"),
        "{tickets}"
    );
}

/// A raw JSON-RPC POST to `/mcp`.
async fn post_mcp(
    demo: &Demo,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let mut req = demo
        .http
        .post(demo.crm_url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge)
}

#[tokio::test]
async fn mcp_refuses_missing_tokens_batches_and_garbage_with_4xx() {
    let demo = spawn_demo().await;
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (status, challenge) = post_mcp(&demo, None, init).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains(
            "resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource\""
        ),
        "{challenge}"
    );

    let svc = demo.service_token("tickets.write").await;
    // A tool call hidden in a batch is still gated.
    let batch = r#"[{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_billing","arguments":{}}}]"#;
    let (status, challenge) = post_mcp(&demo, Some(&svc), batch).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("scope=\"billing.read\""), "{challenge}");

    for garbage in ["", "not json", "{", r#"{"jsonrpc":"2.0"}"#, "[1,2,3]"] {
        let (status, _) = post_mcp(&demo, Some(&svc), garbage).await;
        assert!(status.is_client_error(), "{garbage:?}: {status}");
    }
    let (status, _) = post_mcp(&demo, Some(&svc), vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_agents_token_goes_no_further_than_the_gate() {
    use axum::routing::post;
    let demo = spawn_demo().await;
    // What a tool behind the gate can see of the request.
    let seen = |headers: axum::http::HeaderMap| async move {
        let auth = headers.get("authorization").is_some();
        axum::Json(json!({ "authorization_visible": auth }))
    };
    let app = axum::Router::new()
        .route("/mcp", post(seen))
        .layer(axum::middleware::from_fn_with_state(
            demo.guard.clone(),
            demo_crm::mcp::scope_gate,
        ))
        .layer(demo.guard.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let svc = demo.service_token("tickets.read").await;
    let body: Value = demo
        .http
        .post(url)
        .bearer_auth(&svc)
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["authorization_visible"], false);
}
