use crate::helpers::*;
use reqwest::StatusCode;

crate::backend_tests!(
    revoking_a_refresh_token_kills_its_family_and_the_grants_access_tokens,
    revoking_an_access_token_kills_only_that_token,
    revocation_ignores_unknown_and_foreign_tokens,
);

async fn revoke(app: &TestApp, client: (&str, Option<&str>), token: &str) -> StatusCode {
    let (status, headers, body) = match client {
        (id, Some(secret)) => {
            app.post_form("/revoke", Some((id, secret)), &[("token", token)])
                .await
        }
        (id, None) => {
            app.post_form("/revoke", None, &[("token", token), ("client_id", id)])
                .await
        }
    };
    if status == StatusCode::OK {
        assert_eq!(headers["cache-control"], "no-store");
    } else {
        panic!("revoke failed: {status} {body}");
    }
    status
}

async fn revoking_a_refresh_token_kills_its_family_and_the_grants_access_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = user_tokens(&app, "alice", "contacts.read").await;
    let (_, rotated) = refresh(&app, s(&tokens["refresh_token"])).await;
    assert_eq!(
        app.introspect(s(&tokens["access_token"])).await["active"],
        true
    );
    revoke(&app, ("cli-agent", None), s(&rotated["refresh_token"])).await;
    assert_eq!(
        app.introspect(s(&tokens["access_token"])).await["active"],
        false,
        "earlier access token"
    );
    assert_eq!(
        app.introspect(s(&rotated["access_token"])).await["active"],
        false,
        "latest access token"
    );
    let (status, body) = refresh(&app, s(&rotated["refresh_token"])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

async fn revoking_an_access_token_kills_only_that_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.client_credentials(Some("tickets.read")).await;
    let b = app.client_credentials(Some("tickets.read")).await;
    revoke(&app, ("svc-agent", Some(SVC_SECRET)), s(&a["access_token"])).await;
    assert_eq!(app.introspect(s(&a["access_token"])).await["active"], false);
    assert_eq!(
        app.introspect(s(&b["access_token"])).await["active"],
        true,
        "same grant, other token"
    );
}

async fn revocation_ignores_unknown_and_foreign_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = app.client_credentials(None).await;
    let user = user_tokens(&app, "alice", "contacts.read").await;
    assert_eq!(
        revoke(&app, ("cli-agent", None), "no-such-token").await,
        StatusCode::OK
    );
    assert_eq!(
        revoke(&app, ("cli-agent", None), "a.b.c").await,
        StatusCode::OK
    );
    // cli-agent cannot revoke svc-agent's token, nor svc-agent cli-agent's refresh token.
    revoke(&app, ("cli-agent", None), s(&svc["access_token"])).await;
    revoke(
        &app,
        ("svc-agent", Some(SVC_SECRET)),
        s(&user["refresh_token"]),
    )
    .await;
    assert_eq!(
        app.introspect(s(&svc["access_token"])).await["active"],
        true
    );
    assert_eq!(
        app.introspect(s(&user["refresh_token"])).await["active"],
        true
    );
    let (status, _, body) = app
        .post_form(
            "/revoke",
            Some(("svc-agent", "wrong-secret-value")),
            &[("token", "x")],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, _, body) = app
        .post_form("/revoke", Some(("svc-agent", SVC_SECRET)), &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}
