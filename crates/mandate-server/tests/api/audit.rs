//! The audit chain against a real database: events written by real requests verify, and an
//! attacker with write access to the database (triggers out of the way) who edits, deletes or
//! inserts rows directly is found at the right event.

use crate::helpers::*;
use mandate_core::audit::Break;
use sqlx::Connection;

crate::backend_tests!(
    events_from_real_requests_form_a_verifiable_chain,
    editing_a_stored_event_is_found,
    deleting_stored_events_is_found,
    inserting_an_event_is_found,
);

/// A server with some history: tokens, a person's consent, a revocation.
async fn app_with_history(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    for _ in 0..3 {
        app.client_credentials(Some("tickets.read")).await;
    }
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    app.post_form(
        "/revoke",
        None,
        &[
            ("client_id", "cli-agent"),
            ("token", s(&alice["refresh_token"])),
        ],
    )
    .await;
    app
}

async fn verify(app: &TestApp) -> mandate_store::audit::Verification {
    mandate_store::audit::verify(app.store.as_ref(), |_, _| {})
        .await
        .unwrap()
}

/// Runs `sql` on the database directly, as someone with write access to it would, after
/// switching off the append-only triggers.
async fn tamper(app: &TestApp, sql: &str) {
    if app.database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .unwrap();
        for trigger in ["events_no_update", "events_no_delete"] {
            sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
}

async fn events_from_real_requests_form_a_verifiable_chain(backend: Backend) {
    let mut app = app_with_history(backend).await;
    let v = verify(&app).await;
    assert_eq!(v.broken, None);
    assert!(v.checked >= 8, "{} events", v.checked);
    assert_eq!(v.checked as i64, v.head.seq);
    // More requests extend the same chain.
    app.client_credentials(None).await;
    let again = verify(&app).await;
    assert_eq!(again.broken, None);
    assert!(again.head.seq > v.head.seq);
    app.stop().await;
}

async fn editing_a_stored_event_is_found(backend: Backend) {
    let mut app = app_with_history(backend).await;
    // Widen what the third token was issued with.
    tamper(
        &app,
        "UPDATE events SET scopes = 'billing.write' WHERE seq = 3",
    )
    .await;
    assert_eq!(verify(&app).await.broken, Some(Break::Modified { seq: 3 }));
    app.stop().await;
}

async fn deleting_stored_events_is_found(backend: Backend) {
    let mut app = app_with_history(backend).await;
    tamper(&app, "DELETE FROM events WHERE seq IN (4, 5)").await;
    assert_eq!(
        verify(&app).await.broken,
        Some(Break::Deleted { from: 4, to: 5 })
    );
    app.stop().await;

    // Cutting off the end is found too: the head remembers how far the chain went.
    let mut app = app_with_history(backend).await;
    let head = verify(&app).await.head;
    tamper(
        &app,
        &format!("DELETE FROM events WHERE seq >= {}", head.seq - 1),
    )
    .await;
    assert_eq!(
        verify(&app).await.broken,
        Some(Break::Deleted {
            from: head.seq - 1,
            to: head.seq
        })
    );
    app.stop().await;
}

async fn inserting_an_event_is_found(backend: Backend) {
    let mut app = app_with_history(backend).await;
    let intact = verify(&app).await;
    let head = intact.head;
    let forged = head.seq + 1;
    tamper(
        &app,
        &format!(
            "INSERT INTO events (seq, at, action, actor_kind, actor_id, detail, hash) \
             VALUES ({forged}, 1, 'grant.revoked', 'admin', 'cli', '{{}}', '{}')",
            intact.last_hash
        ),
    )
    .await;
    assert_eq!(
        verify(&app).await.broken,
        Some(Break::Inserted {
            seq: forged,
            head: head.seq
        })
    );
    app.stop().await;
}
