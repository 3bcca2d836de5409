use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

crate::backend_tests!(
    active_tokens_describe_themselves,
    inactive_tokens_reveal_nothing,
    only_confidential_clients_may_introspect,
    disabling_user_or_agent_deactivates_tokens,
    a_cached_token_goes_inactive_at_once_when_revoked,
    introspection_and_revocation_refuse_malformed_requests,
);

async fn active_tokens_describe_themselves(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = user_tokens(&app, "alice", "contacts.read").await;
    let at = app.introspect(s(&tokens["access_token"])).await;
    let claims = app.verify(s(&tokens["access_token"])).await;
    assert_eq!(at["active"], true);
    assert_eq!(at["scope"], "contacts.read");
    assert_eq!(at["client_id"], "cli-agent");
    assert_eq!(at["sub"], claims.sub.as_str());
    assert_eq!(at["aud"], CRM);
    assert_eq!(at["iss"], app.issuer.as_str());
    assert_eq!(at["tenant"], "acme");
    assert_eq!(at["gid"], claims.gid.as_str());
    assert_eq!(at["token_type"], "Bearer");
    let rt = app.introspect(s(&tokens["refresh_token"])).await;
    assert_eq!(rt["active"], true);
    assert_eq!(rt["token_type"], "refresh_token");
    assert_eq!(rt["gid"], claims.gid.as_str());
}

async fn inactive_tokens_reveal_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = app.client_credentials(None).await;
    let token = s(&svc["access_token"]).to_owned();
    let mut tampered = token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    for t in ["garbage", "a.b.c", tampered.as_str(), &"x".repeat(10_000)] {
        assert_eq!(
            app.introspect(t).await,
            json!({"active": false}),
            "{}",
            &t[..t.len().min(20)]
        );
    }
    app.advance(900);
    assert_eq!(
        app.introspect(&token).await,
        json!({"active": false}),
        "expired"
    );
}

async fn only_confidential_clients_may_introspect(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = app.client_credentials(None).await;
    let (status, _, body) = app
        .post_form(
            "/introspect",
            None,
            &[
                ("token", s(&svc["access_token"])),
                ("client_id", "cli-agent"),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, _, body) = app
        .post_form("/introspect", None, &[("token", s(&svc["access_token"]))])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, _, body) = app
        .post_form("/introspect", Some(("svc-agent", SVC_SECRET)), &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

async fn disabling_user_or_agent_deactivates_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = user_tokens(&app, "bob", "contacts.read").await;
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    let mut user = app.store.user_by_login("bob").await.unwrap().unwrap();
    user.disabled = true;
    app.store.update_user(&user).await.unwrap();
    for kind in ["access_token", "refresh_token"] {
        assert_eq!(
            app.introspect(s(&bob[kind])).await["active"],
            false,
            "bob's {kind}"
        );
        assert_eq!(
            app.introspect(s(&alice[kind])).await["active"],
            true,
            "only bob is affected: alice's {kind}"
        );
    }
    let mut agent = app.store.agent("cli-agent").await.unwrap().unwrap();
    agent.disabled = true;
    app.store.upsert_agent(&agent).await.unwrap();
    for kind in ["access_token", "refresh_token"] {
        assert_eq!(
            app.introspect(s(&alice[kind])).await["active"],
            false,
            "alice's {kind} once the agent is disabled"
        );
    }
}

/// The second introspection of a token is answered from the verified-signature cache; what
/// the cache holds is only the signature's verdict, so revoking the token (its jti), its grant,
/// or disabling its user or agent still ends it on the very next call.
async fn a_cached_token_goes_inactive_at_once_when_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let active = |token: String| {
        let app = &app;
        async move { app.introspect(&token).await["active"] == true }
    };
    let svc = s(&app.client_credentials(None).await["access_token"]).to_owned();
    let svc_kept = s(&app.client_credentials(None).await["access_token"]).to_owned();
    let alice = s(&user_tokens(&app, "alice", "contacts.read").await["access_token"]).to_owned();
    let bob = s(&user_tokens(&app, "bob", "contacts.read").await["access_token"]).to_owned();
    for token in [&svc, &svc_kept, &alice, &bob] {
        assert!(active(token.clone()).await);
        assert!(active(token.clone()).await, "a cached answer");
    }

    // The access token itself, through /revoke.
    let (status, _, _) = app
        .post_form(
            "/revoke",
            Some(("svc-agent", SVC_SECRET)),
            &[("token", svc.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!active(svc.clone()).await, "revoked jti");
    assert!(active(svc_kept.clone()).await, "only that token");

    // Its agent disabled, and enabled again.
    let mut agent = app.store.agent("cli-agent").await.unwrap().unwrap();
    agent.disabled = true;
    app.store.upsert_agent(&agent).await.unwrap();
    assert!(!active(alice.clone()).await, "disabled agent");
    agent.disabled = false;
    app.store.upsert_agent(&agent).await.unwrap();
    assert!(active(alice.clone()).await, "enabled again");

    // Its grant.
    let gid = app.verify(&alice).await.gid;
    assert!(
        app.store
            .revoke_grant(&gid, app.now(), "test")
            .await
            .unwrap()
    );
    assert!(!active(alice.clone()).await, "revoked grant");

    // Its user.
    let mut user = app.store.user_by_login("bob").await.unwrap().unwrap();
    user.disabled = true;
    app.store.update_user(&user).await.unwrap();
    assert!(!active(bob.clone()).await, "disabled user");

    // And its expiry, against the server's clock.
    assert!(active(svc_kept.clone()).await);
    app.advance(900);
    assert!(!active(svc_kept).await, "expired");
}

async fn introspection_and_revocation_refuse_malformed_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let form_type = "application/x-www-form-urlencoded";
    let big = format!("token={}", "x".repeat(70_000));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "/introspect",
            form_type,
            "token=a&token=b".into(),
            400,
            "duplicated token",
        ),
        ("/introspect", form_type, "".into(), 400, "missing token"),
        (
            "/introspect",
            "application/json",
            "{\"token\":\"a\"}".into(),
            400,
            "JSON body",
        ),
        ("/introspect", form_type, big.clone(), 413, "oversized body"),
        (
            "/revoke",
            form_type,
            "token=a&token=b".into(),
            400,
            "duplicated token",
        ),
        (
            "/revoke",
            form_type,
            "token_type_hint=refresh_token".into(),
            400,
            "missing token",
        ),
        (
            "/revoke",
            "text/plain",
            "token=a".into(),
            400,
            "wrong content type",
        ),
        ("/revoke", form_type, big, 413, "oversized body"),
    ];
    for (path, ctype, body, status, reason) in cases {
        let resp = app
            .http
            .post(app.url(path))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path} {reason}");
        assert_eq!(
            resp.headers()["cache-control"],
            "no-store",
            "{path} {reason}"
        );
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"], "invalid_request", "{path} {reason}");
    }
}
