//! Proxy mode end to end: real issuer, an echo upstream that reports what it received, and the
//! guard's proxy between them.

use crate::helpers::*;
use axum::Json;
use axum::extract::Request;
use mandate_guard::proxy::{ProxyConfig, proxy_router};
use serde_json::{Value, json};

/// An upstream that answers with the method, path, body length and headers it received.
async fn spawn_echo() -> String {
    let app = axum::Router::new().fallback(|req: Request| async move {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
            .collect();
        Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.to_string(),
            "body_len": body.len(),
            "headers": headers,
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

const ROUTES: &str = r#"
[[routes]]
path = "/tickets"
methods = ["GET"]
scopes = ["tickets.read"]

[[routes]]
path = "/tickets"
methods = ["POST"]
scopes = ["tickets.write"]

[[routes]]
path = "/billing"
scopes = ["billing.read"]

[[routes]]
path = "/health"
public = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_enforces_routes_and_forwards_identity_not_tokens() {
    let issuer = spawn_issuer().await;
    let upstream = spawn_echo().await;
    let guard = issuer.guard(clock_now()).await;
    let router = proxy_router(guard, &upstream, ProxyConfig::from_toml(ROUTES).unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let token = issuer.token("tickets.read tickets.write").await;

    // Authorised: forwarded with the identity, without the token, spoofed headers replaced.
    let resp = http
        .get(format!("{proxy}/tickets/7?x=1"))
        .bearer_auth(&token)
        .header("x-mandate-tenant", "globex")
        .header("x-mandate-subject", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["path"], "/tickets/7?x=1");
    let h = &seen["headers"];
    assert_eq!(h["x-mandate-subject"], "svc-agent");
    assert_eq!(
        h["x-mandate-tenant"], "acme",
        "a spoofed tenant never reaches the upstream"
    );
    assert_eq!(h["x-mandate-client-id"], "svc-agent");
    assert_eq!(h["x-mandate-scopes"], "tickets.read tickets.write");
    assert!(
        h.get("authorization").is_none(),
        "the token is not forwarded"
    );

    let resp = http
        .post(format!("{proxy}/tickets"))
        .bearer_auth(&token)
        .body("{\"title\":\"printer\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(
        (seen["method"].as_str(), seen["body_len"].as_u64()),
        (Some("POST"), Some(19))
    );

    // Refusals come from the guard, never from the upstream.
    let resp = http.get(format!("{proxy}/tickets")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );
    let resp = http
        .get(format!("{proxy}/billing"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"billing.read\"")
    );
    let resp = http
        .delete(format!("{proxy}/tickets/7"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        404,
        "no rule allows DELETE: closed by default"
    );
    let resp = http
        .get(format!("{proxy}/admin"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Public routes need no token and still cannot be fed identity headers.
    let resp = http
        .get(format!("{proxy}/health"))
        .header("x-mandate-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert!(seen["headers"].get("x-mandate-tenant").is_none());

    // The RFC 9728 document is served by the proxy itself.
    let doc: Value = http
        .get(format!("{proxy}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], CRM);
}
