//! Accepted tokens: the handler sees the principal; scopes, hierarchy and revocation decide.

use crate::helpers::*;
use mandate_core::time::{Clock, Timestamp};
use mandate_guard::Guard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_reaches_the_handler_and_scope_is_enforced() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let token = issuer.token("tickets.read").await;

    let (status, _, body) = get_bearer(&format!("{app}/tickets"), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], "svc-agent");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["client_id"], "svc-agent");
    assert_eq!(body["scopes"], "tickets.read");
    assert!(body["grant_id"].as_str().is_some_and(|g| !g.is_empty()));

    let (status, _, _) = get_bearer(&format!("{app}/me"), &token).await;
    assert_eq!(
        status, 200,
        "a valid token is enough where no scope is required"
    );

    let (status, challenge, body) = get_bearer(&format!("{app}/billing"), &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        challenge,
        "Bearer error=\"insufficient_scope\", scope=\"billing.read\", resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource\""
    );
    assert_eq!(body["error"], "insufficient_scope");
}

/// RFC 6750 §2.1 via RFC 7235 §2.1: the auth scheme is case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    let token = issuer.token("tickets.read").await;
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {token}");
        let (status, _, body) = get_with(&format!("{app}/tickets"), &[header.as_bytes()]).await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broader_scope_satisfies_an_implied_one() {
    let issuer = spawn_issuer().await;
    let token = issuer.token("tickets.write").await;

    let plain = issuer.guard(clock_now()).await;
    let app = spawn_protected(&plain).await;
    let (status, challenge, _) = get_bearer(&format!("{app}/tickets"), &token).await;
    assert_eq!(
        status, 403,
        "without the hierarchy tickets.write is not tickets.read"
    );
    assert!(challenge.contains("scope=\"tickets.read\""), "{challenge}");

    let guard = Guard::builder(&issuer.issuer, CRM)
        .scope_implies("tickets.write", "tickets.read")
        .build()
        .await
        .unwrap();
    let app = spawn_protected(&guard).await;
    let (status, _, body) = get_bearer(&format!("{app}/tickets"), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scopes"], "tickets.write",
        "the principal keeps the issued scopes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grant_is_refused_although_its_token_is_cached() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let guard = issuer.guard(clock.clone()).await;
    let app = spawn_protected(&guard).await;
    let token = issuer.token("tickets.read").await;
    let url = format!("{app}/tickets");

    let (status, _, body) = get_bearer(&url, &token).await;
    assert_eq!(status, 200);
    let (status, _, _) = get_bearer(&url, &token).await;
    assert_eq!(status, 200, "second call is served from the cache");
    let gid = body["grant_id"].as_str().unwrap();

    // Revoking another grant changes nothing for this one.
    guard
        .revocations()
        .revoke_grant("g_someone_else", clock.now().plus_seconds(3600));
    let (status, _, _) = get_bearer(&url, &token).await;
    assert_eq!(status, 200, "only the revoked grant is refused");

    guard
        .revocations()
        .revoke_grant(gid, clock.now().plus_seconds(3600));
    let (status, challenge, body) = get_bearer(&url, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("revoked"), "{challenge}");

    // A new token of the same grant (svc-agent's service grant) is refused too, uncached.
    let fresh = issuer.token("tickets.read").await;
    let (status, _, _) = get_bearer(&url, &fresh).await;
    assert_eq!(status, 401, "every token of the revoked grant is refused");

    // Direct validation says the same, cached or not.
    let err = guard
        .validate(&format!("Bearer {token}"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 401);
    assert!(guard.revocations().is_revoked(gid));
    guard.revocations().purge(Timestamp::from_unix(i64::MAX));
    assert!(guard.validate(&format!("Bearer {token}")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_fail_closed_without_the_outer_layer() {
    use axum::Router;
    use axum::routing::get;
    use mandate_guard::{Principal, Requirement};
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    // `/scoped` has only the requirement layer (it authenticates on its own); `/bare` has no
    // guard at all, and its handler's `Principal` argument refuses the request.
    let scoped = Router::new()
        .route("/scoped", get(|p: Principal| async move { p.subject }))
        .route_layer(guard.require(Requirement::scope("tickets.read")));
    let app = Router::new()
        .route("/bare", get(|p: Principal| async move { p.subject }))
        .merge(scoped);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let token = issuer.token("tickets.read").await;

    let (status, _, body) = get_bearer(&format!("{base}/scoped"), &token).await;
    assert_eq!((status, body), (200, serde_json::json!("svc-agent")));
    let (status, challenge, _) = get_with(&format!("{base}/scoped"), &[]).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("resource_metadata="), "{challenge}");

    let (status, challenge, _) = get_bearer(&format!("{base}/bare"), &token).await;
    assert_eq!(status, 401, "no guard layer: never served anonymously");
    assert_eq!(challenge, "Bearer");
}
