use crate::helpers::*;
use mandate_store::EventFilter;
use reqwest::StatusCode;

crate::backend_tests!(
    refresh_rotates_and_reuse_revokes_family_and_grant,
    concurrent_refresh_within_grace_gets_the_same_successor,
    refresh_may_narrow_but_never_widen,
    refresh_token_is_bound_to_its_client_and_expires,
    the_server_purges_refresh_tokens_past_their_retention_on_its_own,
);

async fn refresh_rotates_and_reuse_revokes_family_and_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read tickets.read").await;
    let rt1 = s(&first["refresh_token"]).to_owned();
    let (status, second) = refresh(&app, &rt1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let rt2 = s(&second["refresh_token"]).to_owned();
    assert_ne!(rt1, rt2, "rotated on every use");
    assert_eq!(second["scope"], "contacts.read tickets.read");
    let claims = app.verify(s(&second["access_token"])).await;

    app.advance(30);
    let (status, third) = refresh(&app, &rt2).await;
    assert_eq!(status, StatusCode::OK);
    let rt3 = s(&third["refresh_token"]).to_owned();

    // An attacker replays rt1 long after it was rotated.
    app.advance(30);
    let (status, body) = refresh(&app, &rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    // The whole family and its grant are gone, including the honest client's latest tokens.
    let (status, _) = refresh(&app, &rt3).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.introspect(s(&third["access_token"])).await["active"],
        false
    );
    let grant = app.store.grant(&claims.gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_some());
    assert_eq!(
        grant.revoked_reason.as_deref(),
        Some("refresh token reuse detected")
    );
    let incidents = app
        .store
        .events(&EventFilter {
            action: Some("refresh.reuse_detected".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].event.grant_id.as_deref(),
        Some(claims.gid.as_str())
    );
}

async fn concurrent_refresh_within_grace_gets_the_same_successor(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read").await;
    let rt1 = s(&first["refresh_token"]).to_owned();
    let (a, b) = tokio::join!(refresh(&app, &rt1), refresh(&app, &rt1));
    assert_eq!(a.0, StatusCode::OK, "{}", a.1);
    assert_eq!(b.0, StatusCode::OK, "{}", b.1);
    assert_eq!(
        a.1["refresh_token"], b.1["refresh_token"],
        "one successor for both"
    );
    app.advance(2);
    let (status, c) = refresh(&app, &rt1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry inside the grace window is not theft"
    );
    assert_eq!(c["refresh_token"], a.1["refresh_token"]);
    // The successor keeps working, and moves the family on.
    let (status, d) = refresh(&app, s(&a.1["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK);
    // After the successor has moved on, rt1 is reuse even inside the window.
    let (status, _) = refresh(&app, &rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refresh(&app, s(&d["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "family revoked");
}

async fn refresh_may_narrow_but_never_widen(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read tickets.read").await;
    let rt = s(&first["refresh_token"]);
    let (status, _, narrowed) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "cli-agent"),
                ("refresh_token", rt),
                ("scope", "tickets.read"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{narrowed}");
    assert_eq!(narrowed["scope"], "tickets.read");
    let rt2 = s(&narrowed["refresh_token"]);
    let (status, _, wider) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "cli-agent"),
                ("refresh_token", rt2),
                ("scope", "tickets.read contacts.write"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(wider["error"], "invalid_scope");
    // The family keeps its original scope: a later refresh without `scope` gets it all back.
    let (status, _, full) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "cli-agent"),
                ("refresh_token", rt2),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(full["scope"], "contacts.read tickets.read");
}

async fn refresh_token_is_bound_to_its_client_and_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read").await;
    let rt = s(&first["refresh_token"]).to_owned();
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", SVC_SECRET)),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"], "unauthorized_client",
        "svc-agent may not refresh at all"
    );
    let (status, body) = refresh(&app, "not-a-real-token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    app.advance(7 * 24 * 3600);
    let (status, body) = refresh(&app, &rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "expired after 7 days"
    );
}

/// Housekeeping on a server's own database: a refresh token (used, so still reuse if presented)
/// whose expiry lies further back than `refresh_token_retention_seconds` is deleted at start;
/// one expired more recently stays, so presenting it still counts as reuse.
async fn the_server_purges_refresh_tokens_past_their_retention_on_its_own(backend: Backend) {
    use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
    use mandate_core::time::{Clock, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, &dir.path().join("old.db")).await;
    let now = mandate_server::system::SystemClock.now().unix();
    let store = mandate_store::connect(&url).await.unwrap();
    for (name, expired_ago) in [("old", 3 * 24 * 3600), ("recent", 3600)] {
        let expires_at = Timestamp::from_unix(now - expired_ago);
        let family = RefreshFamily {
            id: format!("f_{name}"),
            grant_id: format!("g_{name}"),
            client_id: "cli-agent".into(),
            tenant_id: "acme".into(),
            user_id: None,
            scopes: mandate_core::scope::ScopeSet::parse("contacts.read").unwrap(),
            resource: "https://crm.example/api".into(),
            created_at: Timestamp::from_unix(now - expired_ago - 7200),
            revoked_at: None,
        };
        let token = RefreshTokenRecord {
            token_hash: format!("r_{name}"),
            family_id: family.id.clone(),
            issued_at: family.created_at,
            expires_at,
            used_at: Some(family.created_at),
        };
        store.create_family(&family, &token).await.unwrap();
    }

    let server_url = url.clone();
    let _app = spawn_with(backend, move |c| {
        c.database_url = Some(mandate_server::config::Secret::new(server_url));
        c.refresh_token_retention_seconds = 24 * 3600;
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.refresh_token("r_old").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for housekeeping"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kept = store.refresh_token("r_recent").await.unwrap();
    assert!(
        kept.is_some_and(|k| k.token.used_at.is_some()),
        "kept within the retention"
    );
}
