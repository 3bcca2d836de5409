use crate::helpers::*;
use mandate_store::EventFilter;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use reqwest::StatusCode;

crate::backend_tests!(
    oauth2_crate_gets_a_token_with_basic_and_post_auth,
    token_claims_follow_rfc_9068,
    scope_defaults_to_agent_maximum_at_the_resource,
    bad_requests_get_rfc_6749_errors,
    issuance_is_recorded_as_an_event,
    a_disabled_agent_is_refused_once_the_cache_ttl_has_passed,
    a_service_grant_revoked_behind_the_cache_is_not_used_again,
);

fn oauth2_client(
    app: &TestApp,
    auth: AuthType,
) -> BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    BasicClient::new(ClientId::new("svc-agent".into()))
        .set_client_secret(ClientSecret::new(SVC_SECRET.into()))
        .set_auth_type(auth)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap())
}

async fn oauth2_crate_gets_a_token_with_basic_and_post_auth(backend: Backend) {
    let app = spawn_app(backend).await;
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let token = oauth2_client(&app, auth)
            .exchange_client_credentials()
            .add_scope(Scope::new("tickets.read".into()))
            .request_async(&app.http)
            .await
            .unwrap();
        assert_eq!(token.scopes().unwrap()[0].as_str(), "tickets.read");
        assert_eq!(token.expires_in().unwrap().as_secs(), 900);
        assert!(
            token.refresh_token().is_none(),
            "client credentials never yield a refresh token"
        );
        let claims = app.verify(token.access_token().secret()).await;
        assert_eq!(claims.scope.to_string(), "tickets.read");
    }
}

async fn token_claims_follow_rfc_9068(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, headers, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", SVC_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "tickets.read tickets.write"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    let claims = app.verify(s(&body["access_token"])).await;
    assert_eq!(claims.iss, app.issuer);
    assert_eq!(claims.sub, "svc-agent");
    assert_eq!(claims.client_id, "svc-agent");
    assert_eq!(claims.aud, CRM);
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(claims.gid.starts_with("g_") && claims.jti.starts_with("at_"));
    assert_eq!(claims.scope.to_string(), "tickets.read tickets.write");
    let again = app.client_credentials(None).await;
    let second = app.verify(s(&again["access_token"])).await;
    assert_eq!(second.gid, claims.gid, "the service grant is reused");
    assert_ne!(second.jti, claims.jti);
}

async fn scope_defaults_to_agent_maximum_at_the_resource(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = app.client_credentials(None).await;
    assert_eq!(body["scope"], "tickets.read tickets.write");
}

async fn bad_requests_get_rfc_6749_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = Some(("svc-agent", SVC_SECRET));
    let cc = ("grant_type", "client_credentials");
    let verifier = "a".repeat(43);
    type Case<'a> = (
        Option<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            Some(("svc-agent", "wrong-secret")),
            vec![cc],
            401,
            "invalid_client",
            "wrong secret",
        ),
        (
            Some(("nobody", "x")),
            vec![cc],
            401,
            "invalid_client",
            "unknown client",
        ),
        (
            None,
            vec![cc],
            401,
            "invalid_client",
            "no client authentication",
        ),
        (
            None,
            vec![cc, ("client_id", "svc-agent")],
            401,
            "invalid_client",
            "confidential client without secret",
        ),
        (
            None,
            vec![cc, ("client_id", "svc-agent"), ("client_secret", "nope")],
            401,
            "invalid_client",
            "wrong post secret",
        ),
        (
            good,
            vec![cc, ("client_secret", SVC_SECRET)],
            400,
            "invalid_request",
            "two authentication methods",
        ),
        (
            good,
            vec![cc, ("scope", "billing.read")],
            400,
            "invalid_scope",
            "beyond the agent maximum",
        ),
        (
            good,
            vec![cc, ("scope", "tickets.read billing.read")],
            400,
            "invalid_scope",
            "partly beyond the maximum",
        ),
        (
            good,
            vec![cc, ("scope", "bad\"scope")],
            400,
            "invalid_scope",
            "malformed scope",
        ),
        (
            good,
            vec![cc, ("resource", "http://unknown.example")],
            400,
            "invalid_target",
            "unknown resource",
        ),
        (
            good,
            vec![cc, ("resource", "not a uri")],
            400,
            "invalid_target",
            "malformed resource",
        ),
        (
            good,
            vec![cc, ("resource", "http://127.0.0.1:8081#frag")],
            400,
            "invalid_target",
            "resource with fragment",
        ),
        (good, vec![], 400, "invalid_request", "missing grant_type"),
        (
            good,
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "x"),
            ],
            400,
            "unsupported_grant_type",
            "password grant",
        ),
        (
            good,
            vec![("grant_type", "implicit")],
            400,
            "unsupported_grant_type",
            "implicit grant",
        ),
        (
            good,
            vec![("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
            400,
            "unsupported_grant_type",
            "unknown grant",
        ),
        (
            good,
            vec![
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("code_verifier", &verifier),
            ],
            400,
            "unauthorized_client",
            "grant not allowed for agent",
        ),
        (
            None,
            vec![cc, ("client_id", "cli-agent")],
            400,
            "unauthorized_client",
            "public agent",
        ),
    ];
    for (basic, pairs, status, code, reason) in cases {
        let (got, headers, body) = app.post_form("/token", basic, &pairs).await;
        assert_eq!(got.as_u16(), status, "{reason}: {body}");
        assert_eq!(body["error"], code, "{reason}: {body}");
        assert!(body["error_description"].is_string(), "{reason}");
        assert_eq!(headers["cache-control"], "no-store", "{reason}");
        if status == 401 && basic.is_some() {
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic"),
                "{reason}"
            );
        }
        assert!(
            !body.to_string().contains("wrong-secret"),
            "{reason}: secrets are never echoed"
        );
    }

    // Duplicated parameters, wrong content type, oversized bodies.
    let raw = |body: String, ctype: &'static str| {
        app.http
            .post(app.url("/token"))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let form_type = "application/x-www-form-urlencoded";
    let raw_cases: Vec<(String, &str, u16, &str)> = vec![
        (
            "grant_type=client_credentials&scope=a&scope=b".into(),
            form_type,
            400,
            "duplicated parameter",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials".into(),
            form_type,
            400,
            "duplicated grant_type",
        ),
        (
            "{\"grant_type\":\"client_credentials\"}".into(),
            "application/json",
            400,
            "JSON body",
        ),
        (
            format!("grant_type=client_credentials&pad={}", "x".repeat(100_000)),
            form_type,
            413,
            "oversized body",
        ),
        ("%%%&&&===".into(), form_type, 400, "garbage"),
    ];
    for (body, ctype, status, reason) in raw_cases {
        let resp = raw(body, ctype).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{reason}");
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"], "invalid_request", "{reason}");
    }
}

async fn issuance_is_recorded_as_an_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = app.client_credentials(Some("tickets.read")).await;
    let claims = app.verify(s(&body["access_token"])).await;
    let _ = app
        .post_form(
            "/token",
            Some(("svc-agent", "bad-secret-value")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    let events = app
        .store
        .events(&EventFilter {
            tenant_id: Some("acme".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let issued = events
        .iter()
        .find(|e| e.event.action.as_str() == "token.issued")
        .expect("token.issued");
    assert_eq!(issued.event.client_id.as_deref(), Some("svc-agent"));
    assert_eq!(issued.event.grant_id.as_deref(), Some(claims.gid.as_str()));
    assert_eq!(issued.event.scopes.as_deref(), Some("tickets.read"));
    assert_eq!(issued.event.detail["jti"], claims.jti.as_str());
    assert_eq!(issued.event.ip.as_deref(), Some("127.0.0.1"));
    let all = app
        .store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let failed = all
        .iter()
        .find(|e| e.event.action.as_str() == "client.auth_failed")
        .expect("client.auth_failed");
    assert_eq!(failed.event.client_id.as_deref(), Some("svc-agent"));
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains(SVC_SECRET) && !text.contains("bad-secret-value"),
        "no secret in events"
    );
    assert!(
        !text.contains(s(&body["access_token"])),
        "no token in events"
    );
}

async fn a_disabled_agent_is_refused_once_the_cache_ttl_has_passed(backend: Backend) {
    for ttl_ms in [0u64, 100] {
        let app = spawn_with(backend, |c| c.cache_ttl_ms = ttl_ms).await;
        app.client_credentials(None).await;
        let mut agent = app.store.agent("svc-agent").await.unwrap().unwrap();
        agent.disabled = true;
        app.store.upsert_agent(&agent).await.unwrap();
        // The cache holds entries for ttl_ms of wall-clock time (an operational bound, not
        // protocol time); wait well past it.
        tokio::time::sleep(std::time::Duration::from_millis(ttl_ms * 4)).await;
        let (status, _, body) = app
            .post_form(
                "/token",
                Some(("svc-agent", SVC_SECRET)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_client")),
            "ttl {ttl_ms} ms"
        );
    }
}

/// The service grant is cached, and here revoked straight in the database, where neither the
/// TTL (a minute) nor the log follower (no revocation event) can tell the server: the event
/// writer's check is all that stands between the cached grant and the next token.
async fn a_service_grant_revoked_behind_the_cache_is_not_used_again(backend: Backend) {
    let app = spawn_with(backend, |c| c.cache_ttl_ms = 60_000).await;
    let first = app.client_credentials(None).await;
    let first_gid = app.verify(s(&first["access_token"])).await.gid;
    assert!(
        app.store
            .revoke_grant(&first_gid, app.now(), "revoked in the database")
            .await
            .unwrap()
    );
    let second = app.client_credentials(None).await;
    let second_gid = app.verify(s(&second["access_token"])).await.gid;
    assert_ne!(
        second_gid, first_gid,
        "a new service grant, not the revoked one"
    );
    assert_eq!(
        app.introspect(s(&second["access_token"])).await["active"],
        true
    );
    assert_eq!(
        app.introspect(s(&first["access_token"])).await["active"],
        false
    );
    let third = app.client_credentials(None).await;
    assert_eq!(
        app.verify(s(&third["access_token"])).await.gid,
        second_gid,
        "the new grant is reused"
    );
    let issued_under_first = app
        .store
        .events(&EventFilter {
            grant_id: Some(first_gid.clone()),
            action: Some("token.issued".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        issued_under_first.len(),
        1,
        "nothing issued after the revocation"
    );
}
