//! Dynamic client registration (RFC 7591), its management API (RFC 7592) and `private_key_jwt`
//! client authentication (RFC 7523) for registered clients.

use crate::helpers::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_server::config::RegistrationMode;
use reqwest::StatusCode;
use serde_json::{Value, json};

crate::backend_tests!(
    public_client_registers_and_completes_a_code_flow,
    hostile_registrations_are_refused,
    client_reads_updates_and_deletes_its_registration,
    registration_is_rate_limited_per_address,
    register_answers_cors_preflight,
    closed_and_initial_access_token_modes,
    private_key_jwt_authenticates_a_registered_client,
);

async fn spawn_registering(backend: Backend) -> TestApp {
    spawn_with(backend, |c| {
        c.registration.max_scopes = vec!["contacts.read".into(), "tickets.read".into()];
        // Refused attempts count too; these tests register more than the default allows.
        c.registration.rate_limit_per_minute = 100;
    })
    .await
}

async fn register(app: &TestApp, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    register_with(app, body, None).await
}

async fn register_with(
    app: &TestApp,
    body: &Value,
    bearer: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.post(app.url("/register")).json(body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn public_client() -> Value {
    json!({
        "client_name": "Browser MCP client",
        "redirect_uris": [CLI_REDIRECT],
        "token_endpoint_auth_method": "none",
        "scope": "contacts.read tickets.read billing.read",
    })
}

async fn public_client_registers_and_completes_a_code_flow(backend: Backend) {
    let app = spawn_registering(backend).await;
    let doc = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(
        doc["registration_endpoint"],
        format!("{}/register", app.issuer)
    );
    for key in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        let methods = doc[key].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")), "{key}: {doc}");
    }
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "ES256", "RS256"])
    );

    let (status, headers, reg) = register(&app, &public_client()).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(headers["cache-control"], "no-store");
    let client_id = s(&reg["client_id"]).to_owned();
    assert!(client_id.starts_with("dyn_"), "{client_id}");
    assert_eq!(
        reg["scope"], "contacts.read tickets.read",
        "clamped to max_scopes"
    );
    assert!(
        reg.get("client_secret").is_none(),
        "a public client has no secret"
    );
    assert_eq!(
        reg["registration_client_uri"],
        format!("{}/register/{client_id}", app.issuer)
    );
    assert!(reg["registration_access_token"].is_string());
    let stored = app
        .store
        .registered_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.registration.first_used_at.is_none());
    assert!(stored.agent.tenant_id.is_none(), "any tenant may consent");

    let browser = Browser::default();
    let (verifier, challenge) = pkce();
    let query = [
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", CLI_REDIRECT),
        ("scope", "contacts.read"),
        ("state", "st-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("resource", CRM),
    ];
    let page = browser.authorize(&app, &query).await;
    assert!(page.is_login(), "{}", page.html);
    let page = browser
        .login(&app, &page, "alice", "alice-demo-password")
        .await;
    assert!(page.is_consent(), "{}", page.html);
    assert!(page.html.contains("Browser MCP client"));
    assert!(
        page.html.contains("Unverified") && !page.html.contains(">Verified<"),
        "a self-registered agent is not vouched for: {}",
        page.html
    );
    let done = browser.consent(&app, &page, Some(&["contacts.read"])).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, params) = location_params(&done.headers);
    let code = param(&params, "code").unwrap().to_owned();
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("redirect_uri", CLI_REDIRECT),
                ("code_verifier", &verifier),
                ("resource", CRM),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = app.verify(s(&body["access_token"])).await;
    assert_eq!(claims.client_id, client_id);
    let stored = app
        .store
        .registered_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.registration.first_used_at.is_some(),
        "a used client is no longer abandoned"
    );
}

async fn hostile_registrations_are_refused(backend: Backend) {
    let app = spawn_registering(backend).await;
    let with = |k: &str, v: Value| {
        let mut b = public_client();
        b[k] = v;
        b
    };
    let cases = [
        (
            "javascript: redirect",
            with("redirect_uris", json!(["javascript:alert(1)"])),
            "invalid_redirect_uri",
        ),
        (
            "data: redirect",
            with("redirect_uris", json!(["data:text/html,hi"])),
            "invalid_redirect_uri",
        ),
        (
            "fragment",
            with("redirect_uris", json!(["https://app.example.com/cb#x"])),
            "invalid_redirect_uri",
        ),
        (
            "wildcard",
            with("redirect_uris", json!(["https://*.example.com/cb"])),
            "invalid_redirect_uri",
        ),
        (
            "plain http off loopback",
            with("redirect_uris", json!(["http://app.example.com/cb"])),
            "invalid_redirect_uri",
        ),
        (
            "private_key_jwt without keys",
            with("token_endpoint_auth_method", json!("private_key_jwt")),
            "invalid_client_metadata",
        ),
        (
            "jwks_uri (not fetched by this server)",
            {
                let mut b = with("token_endpoint_auth_method", json!("private_key_jwt"));
                b["jwks_uri"] = json!("https://app.example.com/jwks.json");
                b
            },
            "invalid_client_metadata",
        ),
        (
            "implicit grant",
            with("grant_types", json!(["implicit"])),
            "invalid_client_metadata",
        ),
        (
            "not an object",
            json!(["redirect_uris"]),
            "invalid_client_metadata",
        ),
    ];
    for (name, body, code) in cases {
        let (status, _, err) = register(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {err}");
        assert_eq!(err["error"], code, "{name}: {err}");
        assert!(err["error_description"].is_string(), "{name}");
    }
    // Unknown metadata is ignored (RFC 7591 §2) and never echoed; scope is clamped, not refused.
    let (status, _, reg) = register(&app, &with("x_unknown_field", json!("anything"))).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert!(reg.get("x_unknown_field").is_none());
    let (status, _, reg) = register(&app, &with("scope", json!("billing.write"))).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["scope"], "", "nothing outside max_scopes");
}

async fn client_reads_updates_and_deletes_its_registration(backend: Backend) {
    let app = spawn_registering(backend).await;
    let (_, _, reg) = register(&app, &public_client()).await;
    let (_, _, other) = register(&app, &public_client()).await;
    let client_id = s(&reg["client_id"]).to_owned();
    let token = s(&reg["registration_access_token"]).to_owned();
    let uri = app.url(&format!("/register/{client_id}"));

    let resp = app.http.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let read: Value = resp.json().await.unwrap();
    assert_eq!(read["client_id"], client_id.as_str());
    assert_eq!(read["client_name"], "Browser MCP client");
    assert!(read.get("registration_access_token").is_none());

    for wrong in [
        None,
        Some("not-a-token"),
        Some(s(&other["registration_access_token"])),
    ] {
        let mut req = app.http.get(&uri);
        if let Some(t) = wrong {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
    }

    let mut update = public_client();
    update["client_id"] = json!(client_id);
    update["client_name"] = json!("Renamed client");
    update["scope"] = json!("contacts.read billing.write");
    let resp = app
        .http
        .put(&uri)
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["client_name"], "Renamed client");
    assert_eq!(
        updated["scope"], "contacts.read",
        "an update is clamped too"
    );
    let agent = app.store.agent(&client_id).await.unwrap().unwrap();
    assert_eq!(agent.name, "Renamed client");
    assert_eq!(agent.max_scopes.to_string(), "contacts.read");

    let mut bad = update.clone();
    bad["redirect_uris"] = json!(["javascript:alert(1)"]);
    let resp = app
        .http
        .put(&uri)
        .bearer_auth(&token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let mut mismatched = update.clone();
    mismatched["client_id"] = other["client_id"].clone();
    let resp = app
        .http
        .put(&uri)
        .bearer_auth(&token)
        .json(&mismatched)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "client_id must match"
    );

    let resp = app
        .http
        .delete(&uri)
        .bearer_auth(s(&other["registration_access_token"]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "another client's token"
    );
    let resp = app
        .http
        .delete(&uri)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(app.store.agent(&client_id).await.unwrap().is_none());
    let resp = app.http.get(&uri).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "gone with its token"
    );
}

async fn registration_is_rate_limited_per_address(backend: Backend) {
    let app = spawn_with(backend, |c| c.registration.rate_limit_per_minute = 2).await;
    for _ in 0..2 {
        let (status, _, body) = register(&app, &public_client()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, headers, body) = register(&app, &public_client()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    app.advance(60);
    let (status, _, body) = register(&app, &public_client()).await;
    assert_eq!(status, StatusCode::CREATED, "a new minute: {body}");
}

async fn register_answers_cors_preflight(backend: Backend) {
    let app = spawn_app(backend).await;
    for (path, method) in [("/register", "POST"), ("/register/dyn_x", "PUT")] {
        let resp = app
            .http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://mcp-client.example")
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        let methods = resp.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains(method), "{methods}");
    }
    let resp = app
        .http
        .post(app.url("/register"))
        .header("origin", "https://mcp-client.example")
        .json(&public_client())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

async fn closed_and_initial_access_token_modes(backend: Backend) {
    let closed = spawn_with(backend, |c| c.registration.mode = RegistrationMode::Closed).await;
    let doc = closed
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        doc.get("registration_endpoint").is_none(),
        "not advertised when closed"
    );
    let (status, _, _) = register(&closed, &public_client()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop(closed);

    let iat = "initial-access-token-0123456789abcdef";
    let gated = spawn_with(backend, |c| {
        c.registration.mode = RegistrationMode::InitialAccessToken;
        c.registration.initial_access_token_hashes = vec![mandate_core::secret::hash_secret(iat)];
    })
    .await;
    for wrong in [None, Some("guess")] {
        let (status, headers, body) = register_with(&gated, &public_client(), wrong).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_token");
        assert!(headers.contains_key("www-authenticate"));
    }
    let (status, _, body) = register_with(&gated, &public_client(), Some(iat)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// An Ed25519 key pair and its public JWK, as a client would hold them.
pub(crate) fn client_key() -> (Ed25519KeyPair, Value) {
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    let jwk = json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": "k1",
        "alg": "EdDSA",
        "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    });
    (pair, jwk)
}

pub(crate) fn sign(pair: &Ed25519KeyPair, claims: &Value) -> String {
    let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": "k1" });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = pair.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

async fn private_key_jwt_authenticates_a_registered_client(backend: Backend) {
    let app = spawn_registering(backend).await;
    let (pair, jwk) = client_key();
    let (status, _, reg) = register(
        &app,
        &json!({
            "client_name": "Key-holding agent",
            "redirect_uris": ["https://agent.example.com/callback"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": { "keys": [jwk] },
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert!(reg.get("client_secret").is_none(), "no shared secret");
    let client_id = s(&reg["client_id"]).to_owned();
    let now = app.now().unix();
    let claims = |jti: &str, aud: &str, exp: i64| json!({ "iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "iat": now, "jti": jti });
    let revoke = |assertion: String, extra: Option<(&'static str, &'static str)>| {
        let app = &app;
        async move {
            let mut pairs = vec![
                ("token", "not-a-token".to_owned()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ),
                ("client_assertion", assertion),
            ];
            if let Some((k, v)) = extra {
                pairs.push((k, v.to_owned()));
            }
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = app.post_form("/revoke", None, &pairs).await;
            (status, body)
        }
    };

    let token_endpoint = app.url("/token");
    let good = sign(&pair, &claims("jti-1", &app.issuer, now + 60));
    let (status, body) = revoke(good.clone(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = revoke(good, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed: {body}");
    assert_eq!(body["error"], "invalid_client");

    let at_token_endpoint = sign(&pair, &claims("jti-2", &token_endpoint, now + 60));
    let (status, body) = revoke(at_token_endpoint, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the token endpoint URL is an accepted aud: {body}"
    );

    let expired = sign(&pair, &claims("jti-3", &app.issuer, now - 120));
    let (status, _) = revoke(expired, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");
    let wrong_aud = sign(
        &pair,
        &claims("jti-4", "https://elsewhere.example", now + 60),
    );
    let (status, _) = revoke(wrong_aud, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong aud");
    let (other_key, _) = client_key();
    let forged = sign(&other_key, &claims("jti-5", &app.issuer, now + 60));
    let (status, _) = revoke(forged, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "signed with another key");
    let both = sign(&pair, &claims("jti-6", &app.issuer, now + 60));
    let (status, body) = revoke(both, Some(("client_secret", "x"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "two credentials: {body}");
    assert_eq!(body["error"], "invalid_request");

    // A secret-less confidential client cannot fall back to other methods.
    let (status, _, _) = app
        .post_form("/revoke", Some((&client_id, "guess")), &[("token", "x")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A client registered for secrets cannot present an assertion.
    let (_, _, secret_client) = register(
        &app,
        &json!({ "redirect_uris": ["https://agent.example.com/cb"] }),
    )
    .await;
    let secret_id = s(&secret_client["client_id"]).to_owned();
    assert!(secret_client["client_secret"].is_string());
    let assertion = sign(
        &pair,
        &json!({ "iss": secret_id, "sub": secret_id, "aud": app.issuer, "exp": now + 60, "jti": "j" }),
    );
    let (status, _) = revoke(assertion, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let failures = app
        .store
        .events(&mandate_store::EventFilter {
            action: Some(
                mandate_core::event::Action::ClientAuthFailed
                    .as_str()
                    .into(),
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.client_id.as_deref() == Some(client_id.as_str()))
        .count();
    assert!(failures >= 4, "failures are recorded: {failures}");
}
