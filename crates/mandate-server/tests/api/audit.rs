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
    retention_purges_old_events_behind_a_checkpoint_the_published_jwks_verifies,
    the_server_purges_events_past_its_retention_on_its_own,
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
    mandate_store::audit::verify(app.store.as_ref(), &[], |_, _| {})
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

/// The server's purge on its own database and keys: events older than the retention go, the
/// checkpoint it signed verifies against the `/jwks.json` resource servers use, and so does
/// the chain, starting from it.
async fn retention_purges_old_events_behind_a_checkpoint_the_published_jwks_verifies(
    backend: Backend,
) {
    use mandate_core::event::{Action, ActorKind, NewEvent};
    use mandate_server::audit_retention::{Signer, purge};
    use mandate_server::keys::{Kek, KeyRing};

    let mut app = app_with_history(backend).await;
    let old_head = verify(&app).await.head.seq;
    app.advance(3 * 24 * 60 * 60);
    for _ in 0..2 {
        app.client_credentials(Some("tickets.read")).await;
    }
    // The server's own key ring, as a node sharing its data directory loads it.
    let entropy = mandate_server::system::OsEntropy::default();
    let kek = Kek::load_or_create(&app.data_dir.join("kek"), &entropy).unwrap();
    let ring = KeyRing::load_or_create(
        app.store.clone(),
        std::sync::Arc::new(kek),
        mandate_server::keys::KeyPolicy::new(mandate_core::jwt::Algorithm::EdDSA),
        &entropy,
        app.now(),
    )
    .await
    .unwrap();
    let keys = ring.current();
    let signer = Signer {
        key: keys.signer(app.now()),
        verifiers: keys.checkpoint_verifiers(),
        issuer: &app.issuer,
    };
    let before = mandate_core::time::Timestamp::from_unix(app.now().unix() - 24 * 60 * 60);
    let event = || NewEvent::new(app.now(), Action::AuditPurged, ActorKind::System);
    // A configured sink that never delivered anything holds the purge back.
    let held = purge(
        app.store.as_ref(),
        &signer,
        before,
        &["siem".into()],
        event(),
    )
    .await
    .unwrap();
    assert!(held.is_none());
    let done = purge(app.store.as_ref(), &signer, before, &[], event())
        .await
        .unwrap()
        .expect("old events purged");
    assert_eq!(
        done.purged.to_seq, old_head,
        "exactly the events of 3 days ago"
    );
    assert_eq!(done.purged.purged as i64, old_head);
    assert!(
        purge(app.store.as_ref(), &signer, before, &[], event())
            .await
            .unwrap()
            .is_none(),
        "idempotent"
    );

    let published = app.jwks().await;
    let (claims, kid) =
        mandate_core::audit_checkpoint::verify(&done.checkpoint.jws, &published).unwrap();
    assert_eq!(
        (claims.seq, claims.iss.as_str()),
        (old_head, app.issuer.as_str())
    );
    assert_eq!(kid, keys.signer(app.now()).kid());
    let v = mandate_store::audit::verify(app.store.as_ref(), &published, |_, _| {})
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.anchor.map(|a| a.seq), Some(old_head));
    // The server keeps writing onto the purged chain.
    app.client_credentials(None).await;
    assert_eq!(verify_with(&app, &published).await.broken, None);
    app.stop().await;
}

async fn verify_with(
    app: &TestApp,
    keys: &[mandate_core::jwt::VerifyingKey],
) -> mandate_store::audit::Verification {
    mandate_store::audit::verify(app.store.as_ref(), keys, |_, _| {})
        .await
        .unwrap()
}

/// `[audit] retention_days` on a database holding events from three days ago (a server that
/// ran then): the server's retention job purges them at start, behind a checkpoint its
/// published keys verify, and keeps today's events.
async fn the_server_purges_events_past_its_retention_on_its_own(backend: Backend) {
    use mandate_core::event::{Action, ActorKind, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, &dir.path().join("old.db")).await;
    let three_days_ago = mandate_core::time::Timestamp::from_unix(
        mandate_core::time::Clock::now(&mandate_server::system::SystemClock).unix()
            - 3 * 24 * 60 * 60,
    );
    let store = mandate_store::connect(&url).await.unwrap();
    // More old events than one purge deletes, so the job works in steps.
    const OLD: i64 = mandate_server::audit_retention::MAX_EVENTS_PER_PURGE + 5;
    let history: Vec<_> = (0..OLD)
        .map(|_| NewEvent::new(three_days_ago, Action::TokenIssued, ActorKind::Agent))
        .collect();
    for batch in history.chunks(1024) {
        store.append_events(batch).await.unwrap();
    }
    // And one from today, so the newest old event is not the head (which is never purged).
    let today = NewEvent::new(
        three_days_ago.plus_seconds(3 * 24 * 60 * 60),
        Action::TokenIssued,
        ActorKind::Agent,
    );
    store.append_events(&[today]).await.unwrap();

    let server_url = url.clone();
    let mut app = spawn_with(backend, move |c| {
        c.database_url = Some(mandate_server::config::Secret::new(server_url));
        c.audit.retention_days = std::num::NonZeroU32::new(1);
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.chain_head().await.unwrap().start_seq < OLD {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the retention job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let published = app.jwks().await;
    let v = mandate_store::audit::verify(store.as_ref(), &published, |_, _| {})
        .await
        .unwrap();
    assert_eq!(v.broken, None);
    assert_eq!(v.anchor.map(|a| a.seq), Some(OLD), "exactly the old events");
    let purged = store
        .events(&mandate_store::EventFilter {
            action: Some("audit.purged".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(purged.len(), 2, "in two steps");
    assert!(
        purged
            .iter()
            .all(|p| p.event.actor_id.as_deref() == Some("retention"))
    );
    assert_eq!(purged[0].event.detail["purged"], 10_000);
    assert_eq!(purged[1].event.detail["purged"], 5);
    app.stop().await;
    drop(store);
    if let Backend::Postgres = backend {
        let admin = mandate_store::testing::postgres_test_url().unwrap();
        mandate_store::testing::drop_postgres_database(&admin, &url)
            .await
            .unwrap();
    }
}
