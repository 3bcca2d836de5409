//! A database that cannot take a write right now: another session holds its write lock past
//! the store's wait (SQLite's busy timeout, PostgreSQL's `lock_timeout`). The request answers
//! `503 temporarily_unavailable` with `Retry-After` in bounded time, not a `500` and not a
//! hang; reads go on meanwhile; nothing of the refused request is recorded; and once the lock
//! is released the same request succeeds. A refresh refused so may be sent again: on SQLite
//! its rotation was rolled back with its event, and on PostgreSQL (where the rotation commits
//! before the event) the retry falls inside the grace window and gets the same successor, so
//! the grant survives a client doing what `Retry-After` asks.

use crate::helpers::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

crate::backend_tests!(a_write_the_database_cannot_take_answers_503_then_succeeds);

async fn audit_head(app: &TestApp) -> i64 {
    let v = mandate_store::audit::verify(app.store.as_ref(), &[], |_, _| {})
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    v.head.seq
}

async fn a_write_the_database_cannot_take_answers_503_then_succeeds(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let before = app.client_credentials(None).await;
    let before = s(&before["access_token"]).to_owned();
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    let head = audit_head(&app).await;

    let lock = mandate_store::testing::hold_write_lock(&app.database_url)
        .await
        .unwrap();
    let started = Instant::now();
    let issuance = app.post_form(
        "/token",
        Some(("svc-agent", SVC_SECRET)),
        &[("grant_type", "client_credentials")],
    );
    let rotation = refresh(&app, s(&alice["refresh_token"]));
    // Bounded even if the store waited forever: a regression fails here instead of hanging.
    let ((status, headers, body), (refreshed, refresh_body)) =
        tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(issuance, rotation)
        })
        .await
        .expect("no answer within a minute");
    let waited = started.elapsed();
    assert_eq!(refreshed, StatusCode::SERVICE_UNAVAILABLE, "{refresh_body}");
    assert_eq!(refresh_body["error"], "temporarily_unavailable");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body["error_description"].is_string(), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["cache-control"], "no-store");
    // Each waited for the lock (5 s, one write after the other), then gave up rather than
    // waiting for as long as the lock lasts.
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );
    // Reading is not writing: introspection still answers from the locked database.
    assert_eq!(app.introspect(&before).await["active"], true);

    lock.release().await.unwrap();
    let after = app.client_credentials(None).await;
    assert_eq!(
        app.introspect(s(&after["access_token"])).await["active"],
        true
    );
    // The refused refresh, sent again, succeeds, and its successor works in turn.
    let (status, again) = refresh(&app, s(&alice["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        app.introspect(s(&again["access_token"])).await["active"],
        true
    );
    let (status, next) = refresh(&app, s(&again["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(
        app.introspect(s(&alice["access_token"])).await["active"],
        true
    );
    // One event for each token issued since (a client-credentials token and two refreshes);
    // none for the refused requests.
    assert_eq!(audit_head(&app).await, head + 3);
    app.stop().await;
}
