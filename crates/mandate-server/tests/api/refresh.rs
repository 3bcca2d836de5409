use crate::helpers::*;
use mandate_store::EventFilter;
use reqwest::StatusCode;

crate::backend_tests!(
    refresh_rotates_and_reuse_revokes_family_and_grant,
    concurrent_refresh_within_grace_gets_the_same_successor,
    refresh_may_narrow_but_never_widen,
    refresh_token_is_bound_to_its_client_and_expires,
    the_server_purges_refresh_tokens_past_their_retention_on_its_own,
    tokens_name_their_family_and_forgeries_revoke_nothing,
    tokens_minted_before_families_held_their_live_token_keep_working,
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

/// Housekeeping on a server's own database: a refresh token stored as a row of its own (minted
/// before families held their live token; used, so still reuse if presented)
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
            live: None,
        };
        let token = RefreshTokenRecord {
            token_hash: format!("r_{name}"),
            family_id: family.id.clone(),
            issued_at: family.created_at,
            expires_at,
            used_at: Some(family.created_at),
        };
        store.create_family(&family).await.unwrap();
        store
            .insert_legacy_refresh_token(&token, None)
            .await
            .unwrap();
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

/// A refresh token names its family and generation; one with the right name and a wrong
/// secret, or a generation the family has not reached, is refused as unknown without touching
/// the family, so knowing a family's id is not enough to log its user out.
async fn tokens_name_their_family_and_forgeries_revoke_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read").await;
    let rt1 = s(&first["refresh_token"]).to_owned();
    let parts: Vec<&str> = rt1.split('.').collect();
    assert_eq!(parts.len(), 3, "{rt1}");
    assert!(parts[0].starts_with("rf_") && parts[1] == "0" && parts[2].len() == 43);
    let family = parts[0].to_owned();
    let introspected = app.introspect(&rt1).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["token_type"], "refresh_token");

    let forgeries = [
        format!("{family}.0.{}", "A".repeat(43)),
        format!("{family}.1.{}", parts[2]),
        format!("{family}.7.{}", "B".repeat(43)),
        format!("rf_0000000000000000000000000000000.0.{}", parts[2]),
        "a.b.c".to_owned(),
    ];
    for forged in &forgeries {
        let (status, body) = refresh(&app, forged).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{forged}"
        );
        assert_eq!(app.introspect(forged).await["active"], false, "{forged}");
        let (status, _, _) = app
            .post_form(
                "/revoke",
                None,
                &[("client_id", "cli-agent"), ("token", forged)],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "RFC 7009: an unknown token is no error"
        );
    }
    let (status, second) = refresh(&app, &rt1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the family survived the forgeries: {second}"
    );
    let rt2 = s(&second["refresh_token"]).to_owned();
    assert!(rt2.starts_with(&format!("{family}.1.")), "{rt2}");
    assert_eq!(app.introspect(&rt1).await["active"], false, "retired");
    assert_eq!(app.introspect(&rt2).await["active"], true);
    let claims = app.verify(s(&second["access_token"])).await;
    let grant_revoked = async || {
        let grant = app.store.grant(&claims.gid).await.unwrap().unwrap();
        grant.revoked_at.is_some()
    };
    assert!(!grant_revoked().await);

    // Revoking the live token by its name revokes the family and its grant.
    let (status, _, _) = app
        .post_form(
            "/revoke",
            None,
            &[("client_id", "cli-agent"), ("token", &rt2)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.introspect(&rt2).await["active"], false);
    let (status, _) = refresh(&app, &rt2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(grant_revoked().await);
}

/// Refresh tokens stored as rows of their own, as servers before families held their live
/// token minted them: they refresh, their first rotation moves the family to a named token,
/// a retry inside the grace window gets that same token, and a replay later is reuse. A row
/// rotated by such a server is answered, inside its window, with the successor it was given.
async fn tokens_minted_before_families_held_their_live_token_keep_working(backend: Backend) {
    use mandate_core::refresh::{self, RefreshFamily, RefreshTokenRecord};
    use mandate_core::secret::hash_secret;
    let app = spawn_app(backend).await;
    let first = user_tokens(&app, "alice", "contacts.read tickets.read").await;
    let claims = app.verify(s(&first["access_token"])).await;
    let entropy = mandate_server::system::OsEntropy::default();
    let kek =
        mandate_server::keys::Kek::load_or_create(&app.data_dir.join("kek"), &entropy).unwrap();
    let now = app.now();
    let family = |id: &str| RefreshFamily {
        id: id.into(),
        grant_id: claims.gid.clone(),
        client_id: "cli-agent".into(),
        tenant_id: claims.tenant.clone(),
        user_id: Some(claims.sub.clone()),
        scopes: claims.scope.clone(),
        resource: claims.aud.clone(),
        created_at: now,
        revoked_at: None,
        live: None,
    };
    let row = |token: &str, family_id: &str, used: bool| RefreshTokenRecord {
        token_hash: hash_secret(token),
        family_id: family_id.into(),
        issued_at: now,
        expires_at: now.plus_seconds(3600),
        used_at: used.then_some(now),
    };
    // A row rotated by an older server, with the successor row it was given.
    let rotated_old = "b".repeat(43);
    let given = refresh::legacy_successor(kek.refresh_key(), &rotated_old);
    app.store.create_family(&family("rf_older")).await.unwrap();
    let used = row(&rotated_old, "rf_older", true);
    app.store
        .insert_legacy_refresh_token(&used, Some(&hash_secret(&given)))
        .await
        .unwrap();
    app.store
        .insert_legacy_refresh_token(&row(&given, "rf_older", false), None)
        .await
        .unwrap();
    let (status, retry) = refresh(&app, &rotated_old).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(
        s(&retry["refresh_token"]),
        given,
        "the successor it was given"
    );
    let (status, moved) = refresh(&app, &given).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert!(s(&moved["refresh_token"]).starts_with("rf_older.1."));

    // A live row: its rotation names the family.
    let legacy = "a".repeat(43);
    app.store.create_family(&family("rf_legacy")).await.unwrap();
    app.store
        .insert_legacy_refresh_token(&row(&legacy, "rf_legacy", false), None)
        .await
        .unwrap();
    assert_eq!(app.introspect(&legacy).await["active"], true);
    let (status, second) = refresh(&app, &legacy).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let named = s(&second["refresh_token"]).to_owned();
    assert!(named.starts_with("rf_legacy.1."), "{named}");
    assert_eq!(second["scope"], "contacts.read tickets.read");
    app.advance(2);
    let (status, again) = refresh(&app, &legacy).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a retry in the grace window: {again}"
    );
    assert_eq!(s(&again["refresh_token"]), named);
    assert_eq!(app.introspect(&legacy).await["active"], false);
    assert_eq!(app.introspect(&named).await["active"], true);
    let (status, third) = refresh(&app, &named).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    let latest = s(&third["refresh_token"]).to_owned();
    assert!(latest.starts_with("rf_legacy.2."), "{latest}");

    app.advance(30);
    let (status, body) = refresh(&app, &legacy).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "replayed long after: reuse"
    );
    let (status, _) = refresh(&app, &latest).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the family and its grant are revoked"
    );
    let grant = app.store.grant(&claims.gid).await.unwrap().unwrap();
    assert_eq!(
        grant.revoked_reason.as_deref(),
        Some("refresh token reuse detected")
    );
}
