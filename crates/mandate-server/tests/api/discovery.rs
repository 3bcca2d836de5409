use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

crate::backend_tests!(
    metadata_advertises_what_is_enforced,
    issuer_with_a_path_serves_path_inserted_metadata,
    jwks_publishes_the_key_tokens_are_signed_with,
    es256_can_be_selected,
    healthz_reports_the_backend,
    browser_clients_may_call_token_and_metadata_cross_origin_but_not_the_pages,
    every_answer_carries_the_security_headers,
);

async fn metadata_advertises_what_is_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc: Value = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    let oidc: Value = app.get_json("/.well-known/openid-configuration").await;
    assert_eq!(doc, oidc, "both discovery paths serve the same document");
    assert_eq!(doc["issuer"], app.issuer.as_str());
    assert_eq!(doc["token_endpoint"], format!("{}/token", app.issuer));
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(!grants.iter().any(|g| g == "implicit" || g == "password"));
    // The demo's six CRM scopes and the admin API's own.
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert_eq!(scopes.len(), 7, "{scopes:?}");
    assert!(scopes.iter().any(|s| s == "mandate.admin"));
    assert_eq!(
        doc["revocation_feed_endpoint"],
        format!("{}/revocations", app.issuer)
    );
}

async fn issuer_with_a_path_serves_path_inserted_metadata(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.issuer = Some("http://mandate.test/auth".into())
    })
    .await;
    for path in [
        "/.well-known/oauth-authorization-server/auth",
        "/.well-known/openid-configuration/auth",
        "/auth/.well-known/openid-configuration",
        "/auth/.well-known/oauth-authorization-server",
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["issuer"], "http://mandate.test/auth", "{path}");
        assert_eq!(
            doc["authorization_endpoint"],
            "http://mandate.test/auth/authorize"
        );
    }
    let root = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        root.status(),
        StatusCode::NOT_FOUND,
        "the path-less form belongs to another issuer"
    );
    let (status, _, body) = app
        .post_form(
            "/auth/token",
            Some(("svc-agent", SVC_SECRET)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "endpoints live under the issuer path: {body}"
    );
}

async fn jwks_publishes_the_key_tokens_are_signed_with(backend: Backend) {
    let app = spawn_app(backend).await;
    let resp = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/jwk-set+json");
    let jwks: Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(
        keys[0].get("d").is_none(),
        "no private part is ever published"
    );
    let token = app.client_credentials(None).await;
    let header = s(&token["access_token"])
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    let header: Value = serde_json::from_slice(&base64_decode(&header)).unwrap();
    assert_eq!(header["kid"], keys[0]["kid"]);
    assert_eq!(header["typ"], "at+jwt");
}

async fn es256_can_be_selected(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.signing_algorithm = mandate_core::jwt::Algorithm::ES256
    })
    .await;
    let token = app.client_credentials(Some("tickets.read")).await;
    let claims = app.verify(s(&token["access_token"])).await;
    assert_eq!(claims.sub, "svc-agent");
    let jwks: Value = app.get_json("/jwks.json").await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");
}

async fn healthz_reports_the_backend(backend: Backend) {
    let app = spawn_app(backend).await;
    let body: Value = app.get_json("/healthz").await;
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "database": expected})
    );
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

async fn browser_clients_may_call_token_and_metadata_cross_origin_but_not_the_pages(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let origin = "https://mcp-client.example";
    let preflight = |path: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    for path in [
        "/token",
        "/revoke",
        "/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let resp = preflight(path).await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], "*", "{path}");
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        let allowed = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"));
        assert!(
            h.get("access-control-allow-credentials").is_none(),
            "never with cookies"
        );
    }
    // The actual cross-origin call carries the header too, errors included.
    let resp = app
        .http
        .post(app.url("/token"))
        .header("origin", origin)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // Login, consent and introspection stay same-origin.
    for path in ["/login", "/consent", "/authorize", "/introspect"] {
        let resp = preflight(path).await.unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{path} must not be cross-origin"
        );
    }
}

/// The middleware stack is one layer around every route and the fallback: whatever answers,
/// success, refusal by a handler, refusal before routing (an encoded NUL) or no route at all,
/// the response carries the same security headers.
async fn every_answer_carries_the_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = |path: &str| app.http.get(app.url(path));
    let requests = [
        (
            "token",
            app.http
                .post(app.url("/token"))
                .basic_auth("svc-agent", Some(SVC_SECRET))
                .form(&[("grant_type", "client_credentials")]),
            StatusCode::OK,
        ),
        (
            "introspect",
            app.http
                .post(app.url("/introspect"))
                .form(&[("token", "x")]),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "NUL",
            get("/authorize?client_id=a%00b"),
            StatusCode::BAD_REQUEST,
        ),
        ("jwks", get("/jwks.json"), StatusCode::OK),
        ("fallback", get("/nowhere"), StatusCode::NOT_FOUND),
        ("admin", get("/admin/v1/tenants"), StatusCode::UNAUTHORIZED),
    ];
    for (what, request, status) in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{what}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        if what == "NUL" {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request", "{body}");
        }
    }
}
