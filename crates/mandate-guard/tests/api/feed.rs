//! The guard following the real server's revocation feed.

use crate::helpers::*;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::Clock;
use std::time::{Duration, Instant};

/// A guard of `issuer` following its revocation feed, once the feed is connected.
async fn following_guard(issuer: &Issuer) -> (mandate_guard::Guard, mandate_guard::FeedHandle) {
    let guard = issuer.guard(clock_now()).await;
    let feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);
    (guard, feed)
}

/// Validates `token` until the guard refuses it; returns how long that took.
async fn time_until_refused(guard: &mandate_guard::Guard, token: &str) -> Duration {
    let started = Instant::now();
    while guard.validate_token(token).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_and_grants_are_refused_within_a_second() {
    let issuer = spawn_issuer().await;
    let (guard, feed) = following_guard(&issuer).await;

    // One access token revoked at the server's revocation endpoint.
    let token = issuer.token("tickets.read").await;
    guard.validate_token(&token).await.unwrap();
    issuer.revoke(&token).await;
    let took = time_until_refused(&guard, &token).await;
    eprintln!("token revocation refused at the guard after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "token revocation took {took:?}"
    );

    // A whole grant revoked by another process writing to the database, as the CLI does.
    let other = issuer.token("tickets.read").await;
    let principal = guard.validate_token(&other).await.unwrap();
    let store = mandate_store::connect(&issuer.database_url).await.unwrap();
    let now = mandate_core::time::SystemClock.now();
    store
        .revoke_grant(&principal.grant_id, now, "test")
        .await
        .unwrap();
    let mut event = NewEvent::new(now, Action::GrantRevoked, ActorKind::Admin);
    event.grant_id = Some(principal.grant_id.clone());
    store.append_events(&[event]).await.unwrap();
    let took = time_until_refused(&guard, &other).await;
    eprintln!("grant revocation by another process refused at the guard after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "grant revocation took {took:?}"
    );
    assert!(feed.last_seq().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_signing_key_is_refused_at_once_even_for_cached_tokens() {
    let issuer = spawn_issuer().await;
    let (guard, _feed) = following_guard(&issuer).await;
    let token = issuer.token("tickets.read").await;
    guard.validate_token(&token).await.unwrap();
    guard.validate_token(&token).await.unwrap();

    // Withdrawn by another process writing the database, as `mandate signing-key withdraw`
    // does: the guard still holds the key in its JWKS copy and the token in its cache.
    let header: serde_json::Value = {
        use base64::Engine;
        let part = token.split('.').next().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let kid = header["kid"].as_str().unwrap().to_owned();
    let store = mandate_store::connect(&issuer.database_url).await.unwrap();
    let now = mandate_core::time::SystemClock.now();
    assert!(store.retire_signing_key(&kid, now).await.unwrap());
    let mut event = NewEvent::new(now, Action::SigningKeyRetired, ActorKind::Admin);
    event.detail = serde_json::json!({ "kid": kid, "alg": "EdDSA" });
    store.append_events(&[event]).await.unwrap();
    let took = time_until_refused(&guard, &token).await;
    eprintln!("signing-key withdrawal refused at the guard after {took:?}");
    assert!(took < Duration::from_secs(1), "withdrawal took {took:?}");
    assert_eq!(
        guard.validate_token(&token).await.unwrap_err(),
        mandate_core::challenge::BearerError::InvalidToken(
            "the key that signed the token has been withdrawn"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_made_before_the_guard_connects_are_replayed() {
    let issuer = spawn_issuer().await;
    let token = issuer.token("tickets.read").await;
    issuer.revoke(&token).await;
    let guard = issuer.guard(clock_now()).await;
    assert!(
        guard.validate_token(&token).await.is_ok(),
        "no feed yet: the guard cannot know"
    );
    let feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);
    time_until_refused(&guard, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_never_connects() {
    let issuer = spawn_issuer().await;
    let guard = issuer.guard(clock_now()).await;
    let feed = guard
        .follow_revocations(crm_credential("not-the-secret-not-the-secret-not-the"))
        .unwrap();
    assert!(!feed.wait_connected(Duration::from_millis(800)).await);
    assert_eq!(feed.last_seq(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_feed_is_down_tokens_are_introspected_and_refused_when_that_fails() {
    let issuer = spawn_issuer().await;
    let clock = clock_now();
    let build = |fail_open: bool| {
        mandate_guard::Guard::builder(&issuer.issuer, CRM)
            .clock(clock.clone())
            // Nothing listens there: the feed never connects.
            .revocation_feed_endpoint("http://127.0.0.1:1/revocations")
            .feed_grace(Duration::from_secs(5))
            .fail_open(fail_open)
            .build()
    };
    let guard = build(false).await.unwrap();
    let open_guard = build(true).await.unwrap();
    let _feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    let _open_feed = open_guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(matches!(
        guard.follow_revocations(crm_credential(CRM_SECRET)),
        Err(mandate_guard::GuardError::FeedAlreadyFollowed)
    ));

    let token = issuer.token("tickets.read").await;
    let other = issuer.token("tickets.read").await;
    guard
        .validate_token(&token)
        .await
        .expect("within the grace period the JWT suffices");

    clock.advance(6);
    guard
        .validate_token(&token)
        .await
        .expect("introspection vouches for it");
    guard.validate_token(&other).await.unwrap();
    open_guard.validate_token(&other).await.unwrap();

    // Revoked at the server: no feed entry ever arrives, but introspection says inactive.
    issuer.revoke(&token).await;
    let refused = guard.validate_token(&token).await.unwrap_err();
    assert_eq!(refused.status(), 401);

    // The authorization server goes away: the guard can no longer vouch for any token.
    drop(issuer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = guard.validate_token(&other).await.unwrap_err();
    assert!(
        refused.challenge("m").contains("invalid_token"),
        "fail-closed: {refused:?}"
    );
    open_guard
        .validate_token(&other)
        .await
        .expect("a fail-open guard accepts a JWT-valid token");
}

/// Two server nodes share one PostgreSQL database (and key-encryption key, and issuer). A
/// revocation made on node A reaches a guard that follows node B's feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_reaches_a_guard_fed_by_another() {
    let Some(cluster) = spawn_postgres_cluster("the two-node feed test", 2, |_| {}).await else {
        return;
    };
    let (issuer, addresses) = (&cluster.issuer, &cluster.nodes);
    let (node_a, node_b) = (&addresses[0], &addresses[1]);

    // The guard discovers through node A (the issuer URL) but follows node B's feed.
    let guard = mandate_guard::Guard::builder(issuer, CRM)
        .revocation_feed_endpoint(&format!("{node_b}/revocations"))
        .build()
        .await
        .unwrap();
    let feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);

    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{node_b}/token"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    guard.validate_token(&token).await.unwrap();
    let resp = http
        .post(format!("{node_a}/revoke"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let took = time_until_refused(&guard, &token).await;
    eprintln!("revocation on node A refused by a guard fed from node B after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "cross-node revocation took {took:?}"
    );

    drop(feed);
    cluster.finish().await;
}
