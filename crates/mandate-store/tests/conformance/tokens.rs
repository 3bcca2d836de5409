//! Cases for refresh rotation (including its race), revoked jtis, sessions, pending requests
//! and signing keys.

use super::fixtures::*;
use mandate_core::authorize::AuthorizationRequest;
use mandate_core::client::Agent;
use mandate_core::grant::{Grant, Prompt};
use mandate_core::pkce::CodeChallenge;
use mandate_core::refresh::{LiveToken, RefreshTokenRecord};
use mandate_store::batch::Retiring;
use mandate_store::{PendingAuthorization, Session, Store, StoreError, StoredSigningKey};
use std::sync::Arc;

/// Rotation of a family's live token: only from the generation and hash it holds, once.
pub(crate) async fn refresh_families_hold_their_live_token(store: Arc<dyn Store>) {
    let f = live_family("f_1", "g_1", 0, "h_0", 1000);
    store.create_family(&f).await.unwrap();
    let dup = store
        .create_family(&live_family("f_1", "g_1", 0, "h_other", 1000))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let look = store.refresh_family("f_1").await.unwrap().unwrap();
    assert_eq!(look.family, f, "the first stays");
    assert!(!look.user_active, "its user u_1 does not exist");
    // The lookup also says whether the family's agent exists and is enabled.
    let agent_active = async || {
        store
            .refresh_family("f_1")
            .await
            .unwrap()
            .unwrap()
            .agent_active
    };
    assert!(!agent_active().await, "agent cli does not exist yet");
    let mut agent = bare_agent("cli");
    store.upsert_agent(&agent).await.unwrap();
    assert!(agent_active().await);
    agent.disabled = true;
    store.upsert_agent(&agent).await.unwrap();
    assert!(!agent_active().await, "disabled");
    assert_eq!(store.refresh_family("f_missing").await.unwrap(), None);

    let from = |generation: u64, hash: &str| Retiring::Live {
        generation,
        token_hash: hash.into(),
    };
    let live_now = async || {
        store
            .refresh_family("f_1")
            .await
            .unwrap()
            .unwrap()
            .family
            .live
    };
    let rotate = async |retiring: Retiring, next: LiveToken| {
        store
            .rotate_refresh_token("f_1", &retiring, &next, next.issued_at)
            .await
            .unwrap()
    };
    assert!(rotate(from(0, "h_0"), live(1, "h_1", 1100)).await);
    assert_eq!(live_now().await, Some(live(1, "h_1", 1100)));
    for (stale, why) in [
        (from(0, "h_0"), "the generation moved on"),
        (from(1, "h_0"), "the right generation with another hash"),
        (from(2, "h_1"), "a generation not reached"),
    ] {
        assert!(!rotate(stale, live(9, "h_9", 1101)).await, "{why}");
        assert_eq!(
            live_now().await,
            Some(live(1, "h_1", 1100)),
            "{why}: unchanged"
        );
    }
    assert!(rotate(from(1, "h_1"), live(2, "h_2", 1200)).await);
    assert_eq!(live_now().await, Some(live(2, "h_2", 1200)));
    let missing = store
        .rotate_refresh_token("f_missing", &from(0, "h_0"), &live(1, "h_x", 1200), t(1200))
        .await
        .unwrap();
    assert!(!missing);

    assert!(store.revoke_family("f_1", t(1300)).await.unwrap());
    let revoked = store.refresh_family("f_1").await.unwrap().unwrap().family;
    assert_eq!(revoked.revoked_at, Some(t(1300)));
}

/// Tokens stored as rows of their own (minted before families held their live token): found by
/// hash, and their first rotation gives the family its live token, after which the old row's
/// successor is live exactly while that live token is.
pub(crate) async fn legacy_tokens_rotate_into_a_live_token(store: Arc<dyn Store>) {
    let first = token("r_1", "f_1", 1000);
    legacy_family(&*store, &family("f_1", "g_1"), &first).await;
    let look = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(
        (&look.token, &look.found.family),
        (&first, &family("f_1", "g_1"))
    );
    assert!(!look.successor_live);
    assert_eq!(store.refresh_token("r_missing").await.unwrap(), None);

    let legacy = |hash: &str| Retiring::Legacy {
        token_hash: hash.into(),
    };
    assert!(
        store
            .rotate_refresh_token("f_1", &legacy("r_1"), &live(1, "h_1", 1100), t(1100))
            .await
            .unwrap()
    );
    let old = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(old.token.used_at, Some(t(1100)));
    assert_eq!(old.found.family.live, Some(live(1, "h_1", 1100)));
    assert!(old.successor_live, "its successor is the live token");
    assert!(
        !store
            .rotate_refresh_token("f_1", &legacy("r_1"), &live(1, "h_other", 1101), t(1101))
            .await
            .unwrap(),
        "used"
    );
    let unchanged = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(unchanged, old, "the loser changes nothing");

    let next = Retiring::Live {
        generation: 1,
        token_hash: "h_1".into(),
    };
    assert!(
        store
            .rotate_refresh_token("f_1", &next, &live(2, "h_2", 1200), t(1200))
            .await
            .unwrap()
    );
    assert!(
        !store
            .refresh_token("r_1")
            .await
            .unwrap()
            .unwrap()
            .successor_live
    );

    // A pair of rows as a rotation by a server from before left them: the successor row
    // decides while it is unused.
    legacy_family(&*store, &family("f_2", "g_1"), &token("r_a", "f_2", 1000)).await;
    let used = RefreshTokenRecord {
        used_at: Some(t(1050)),
        ..token("r_old", "f_2", 1000)
    };
    store
        .insert_legacy_refresh_token(&used, Some("r_a"))
        .await
        .unwrap();
    assert!(
        store
            .refresh_token("r_old")
            .await
            .unwrap()
            .unwrap()
            .successor_live
    );
    assert!(
        store
            .rotate_refresh_token("f_2", &legacy("r_a"), &live(1, "h_b", 1100), t(1100))
            .await
            .unwrap()
    );
    assert!(
        !store
            .refresh_token("r_old")
            .await
            .unwrap()
            .unwrap()
            .successor_live
    );
}

pub(crate) async fn concurrent_rotations_yield_exactly_one_winner(store: Arc<dyn Store>) {
    store
        .create_family(&live_family("f_1", "g_1", 0, "h_0", 1000))
        .await
        .unwrap();
    legacy_family(
        &*store,
        &family("f_2", "g_1"),
        &token("r_live", "f_2", 1000),
    )
    .await;
    let cases = [
        (
            "f_1",
            Retiring::Live {
                generation: 0,
                token_hash: "h_0".into(),
            },
        ),
        (
            "f_2",
            Retiring::Legacy {
                token_hash: "r_live".into(),
            },
        ),
    ];
    for (family_id, retiring) in cases {
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (store, retiring) = (store.clone(), retiring.clone());
                tokio::spawn(async move {
                    let successor = live(1, &format!("h_next_{i}"), 1100);
                    let won = store
                        .rotate_refresh_token(family_id, &retiring, &successor, t(1100))
                        .await
                        .unwrap();
                    won.then_some(successor)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "{family_id}");
        let live_now = store
            .refresh_family(family_id)
            .await
            .unwrap()
            .unwrap()
            .family
            .live;
        assert_eq!(
            live_now.as_ref(),
            winners.first(),
            "only the winner's successor is live"
        );
    }
}

pub(crate) async fn revoked_jtis_are_remembered(store: Arc<dyn Store>) {
    assert!(!store.is_jti_revoked("jti_1").await.unwrap());
    store.revoke_jti("jti_1", t(2000)).await.unwrap();
    store.revoke_jti("jti_1", t(1500)).await.unwrap();
    assert!(store.is_jti_revoked("jti_1").await.unwrap());
    assert!(!store.is_jti_revoked("jti_2").await.unwrap());
}

pub(crate) async fn sessions_expire_and_can_be_deleted(store: Arc<dyn Store>) {
    let s = Session {
        id_hash: "s_hash".into(),
        user_id: "u_1".into(),
        tenant_id: "acme".into(),
        created_at: t(1000),
        expires_at: t(2000),
    };
    store.create_session(&s).await.unwrap();
    let dup = store.create_session(&s).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.session("s_hash", t(1999)).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.session("s_hash", t(2000)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.session("other", t(1500)).await.unwrap(), None);
    store.delete_session("s_hash").await.unwrap();
    assert_eq!(store.session("s_hash", t(1500)).await.unwrap(), None);
    store.delete_session("s_hash").await.unwrap();
}

pub(crate) async fn pending_requests_expire_and_are_taken_once(store: Arc<dyn Store>) {
    let p = PendingAuthorization {
        id: "p_1".into(),
        request: AuthorizationRequest {
            client_id: "cli".into(),
            redirect_uri: "http://127.0.0.1:5000/cb".into(),
            redirect_uri_explicit: true,
            scopes: scopes("contacts.read billing.read"),
            state: Some("xyz <&> \"é\"".into()),
            code_challenge: CodeChallenge::from_stored(CHALLENGE).unwrap(),
            resource: "https://crm.example/api".into(),
            prompt: Prompt {
                none: false,
                login: true,
                consent: false,
            },
            purpose: Some("Sync contacts <nightly>".into()),
        },
        created_at: t(1000),
        expires_at: t(1600),
    };
    store.create_pending(&p).await.unwrap();
    assert_eq!(
        store.pending("p_1", t(1599)).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.pending("p_1", t(1600)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.pending("p_2", t(1000)).await.unwrap(), None);
    assert!(store.take_pending("p_1").await.unwrap());
    assert!(!store.take_pending("p_1").await.unwrap());
    assert_eq!(store.pending("p_1", t(1100)).await.unwrap(), None);
}

pub(crate) async fn housekeeping_purges_only_expired_short_lived_records(store: Arc<dyn Store>) {
    let session = |id: &str, expires: i64| Session {
        id_hash: id.into(),
        user_id: "u_1".into(),
        tenant_id: "acme".into(),
        created_at: t(1000),
        expires_at: t(expires),
    };
    store.create_session(&session("s_old", 1500)).await.unwrap();
    store.create_session(&session("s_new", 3000)).await.unwrap();
    store.revoke_jti("jti_old", t(1500)).await.unwrap();
    store.revoke_jti("jti_new", t(3000)).await.unwrap();
    let f = family("f_1", "g_1");
    legacy_family(&*store, &f, &token("r_1", "f_1", 1000)).await;

    assert_eq!(
        store.purge_expired(t(1500)).await.unwrap(),
        0,
        "expiry is exclusive"
    );
    assert_eq!(store.purge_expired(t(2000)).await.unwrap(), 2);
    assert_eq!(
        store.session("s_new", t(1000)).await.unwrap(),
        Some(session("s_new", 3000))
    );
    assert!(store.is_jti_revoked("jti_new").await.unwrap());
    assert!(!store.is_jti_revoked("jti_old").await.unwrap());
    assert!(
        store.refresh_token("r_1").await.unwrap().is_some(),
        "refresh tokens are kept for reuse detection"
    );
    assert_eq!(store.purge_refresh_tokens(t(4600)).await.unwrap(), 0);
    assert_eq!(store.purge_refresh_tokens(t(4601)).await.unwrap(), 1);
    assert_eq!(store.refresh_token("r_1").await.unwrap(), None);
}

pub(crate) async fn signing_keys_keep_their_bytes_newest_first(store: Arc<dyn Store>) {
    let all_bytes: Vec<u8> = (0..=255).chain([0, 0, 255]).collect();
    let old = StoredSigningKey {
        kid: "k_old".into(),
        alg: "EdDSA".into(),
        private_sealed: all_bytes,
        public_jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "abc"}),
        created_at: t(1000),
        activates_at: t(1000),
        retired_at: Some(t(5000)),
    };
    let new = StoredSigningKey {
        kid: "k_new".into(),
        alg: "ES256".into(),
        private_sealed: vec![],
        public_jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "1", "y": "2"}),
        created_at: t(2000),
        activates_at: t(2600),
        retired_at: None,
    };
    store.insert_signing_key(&old).await.unwrap();
    store.insert_signing_key(&new).await.unwrap();
    let dup = store.insert_signing_key(&old).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.signing_keys().await.unwrap(),
        vec![new.clone(), old.clone()]
    );
    // Withdrawal happens once: the first time is kept, and a second call reports nothing done.
    assert!(store.retire_signing_key("k_new", t(3000)).await.unwrap());
    assert!(!store.retire_signing_key("k_new", t(4000)).await.unwrap());
    assert!(!store.retire_signing_key("k_old", t(4000)).await.unwrap());
    assert!(
        !store
            .retire_signing_key("k_missing", t(4000))
            .await
            .unwrap()
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys[0].retired_at, Some(t(3000)));
    assert_eq!(keys[1], old);
}

/// `access_token_usable`: one statement, the same answer as the jti, grant, agent and user
/// reads it replaces.
pub(crate) async fn access_token_usability_checks_jti_grant_agent_and_user(store: Arc<dyn Store>) {
    people(store.as_ref()).await;
    store.upsert_agent(&bare_agent("cli")).await.unwrap();
    store
        .upsert_agent(&Agent {
            disabled: true,
            ..bare_agent("off")
        })
        .await
        .unwrap();
    let expiring = Grant {
        expires_at: Some(t(2000)),
        ..grant("g_expiring", Some("u_alice"), 1000)
    };
    for g in [
        grant("g_alice", Some("u_alice"), 1000),
        grant("g_service", None, 1000),
        grant("g_bob", Some("u_bob"), 1000),
        // Expiring, so it may live beside g_alice (one live grant without an expiry each).
        Grant {
            expires_at: Some(t(2000)),
            ..grant("g_revoked", Some("u_alice"), 1000)
        },
        grant("g_ghost", Some("u_nobody"), 1000),
        expiring,
    ] {
        store.create_grant(&g).await.unwrap();
    }
    let usable = |jti: &'static str, gid: &'static str, client: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .access_token_usable(jti, gid, client, t(now))
                .await
                .unwrap()
        }
    };

    // All good: a user's grant and a service grant.
    assert!(usable("j_1", "g_alice", "cli", 1500).await);
    assert!(usable("j_1", "g_service", "cli", 1500).await);

    // The jti revoked: only that token.
    store.revoke_jti("j_revoked", t(5000)).await.unwrap();
    assert!(!usable("j_revoked", "g_alice", "cli", 1500).await);
    assert!(usable("j_other", "g_alice", "cli", 1500).await);

    // The grant revoked.
    assert!(usable("j_1", "g_revoked", "cli", 1500).await);
    assert!(
        store
            .revoke_grant("g_revoked", t(1500), "test")
            .await
            .unwrap()
    );
    assert!(!usable("j_1", "g_revoked", "cli", 1500).await);

    // The grant expired: active strictly before its expiry, as `Grant::is_active`.
    assert!(usable("j_1", "g_expiring", "cli", 1999).await);
    assert!(!usable("j_1", "g_expiring", "cli", 2000).await);
    assert!(!usable("j_1", "g_expiring", "cli", 2001).await);

    // The agent disabled, or unknown.
    assert!(!usable("j_1", "g_alice", "off", 1500).await);
    assert!(!usable("j_1", "g_alice", "nobody", 1500).await);

    // The user disabled, or gone.
    assert!(usable("j_1", "g_bob", "cli", 1500).await);
    disable_user(store.as_ref(), "u_bob").await;
    assert!(!usable("j_1", "g_bob", "cli", 1500).await);
    assert!(
        usable("j_1", "g_alice", "cli", 1500).await,
        "other users unaffected"
    );
    assert!(!usable("j_1", "g_ghost", "cli", 1500).await);

    // An unknown grant, and an API key id (never a grant row).
    assert!(!usable("j_1", "g_missing", "cli", 1500).await);
    assert!(!usable("j_1", "mkid_0123456789abcdef", "cli", 1500).await);
    assert!(!usable("j_1", "", "cli", 1500).await);
}

/// Refresh tokens go once their expiry lies before the cutoff, used or live, a page at a time
/// (more than one page here); later ones and the families stay.
pub(crate) async fn expired_refresh_tokens_are_purged_in_pages(store: Arc<dyn Store>) {
    const FAMILIES: usize = 1_050;
    for i in 0..FAMILIES {
        let id = format!("f_{i}");
        legacy_family(
            &*store,
            &family(&id, "g_1"),
            &token(&format!("r_{i}"), &id, 1000),
        )
        .await;
    }
    // Ten families with a second row expiring an hour later, as a rotation by a server from
    // before families held their live token left them (the first row used, kept for reuse
    // detection until purged).
    for i in 0..10 {
        let successor = token(&format!("r_{i}_next"), &format!("f_{i}"), 2000);
        store
            .insert_legacy_refresh_token(&successor, None)
            .await
            .unwrap();
    }

    assert_eq!(
        store.purge_refresh_tokens(t(4600)).await.unwrap(),
        0,
        "exclusive"
    );
    assert_eq!(
        store.purge_refresh_tokens(t(4601)).await.unwrap(),
        FAMILIES as u64
    );
    assert_eq!(store.refresh_token("r_0").await.unwrap(), None, "expired");
    assert_eq!(store.refresh_token("r_1049").await.unwrap(), None);
    let kept = store.refresh_token("r_3_next").await.unwrap().unwrap();
    assert_eq!(kept.found.family, family("f_3", "g_1"), "the family stays");
    assert_eq!(store.purge_refresh_tokens(t(4601)).await.unwrap(), 0);
    assert_eq!(store.purge_refresh_tokens(t(5601)).await.unwrap(), 10);
    assert_eq!(store.refresh_token("r_3_next").await.unwrap(), None);
}

/// `access_token_usable` with answers kept (`Store::cache_token_state`, a TTL far longer than
/// the test): every change that ends a token's use is answered at once on the node that made
/// it, and within moments on another node of the same database, whoever made it; a kept
/// answer never outlives its grant; and a node that stops hearing changes stops using what it
/// kept. PostgreSQL keeps answers; SQLite asks every time, and must answer the same.
pub(crate) async fn kept_introspection_answers_end_with_every_change_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    const KEEP: std::time::Duration = std::time::Duration::from_secs(600);
    store.cache_token_state(KEEP).await.unwrap();
    // A second node on the same database.
    let other = connect_another(url.clone()).await;
    other.cache_token_state(KEEP).await.unwrap();
    let postgres = store.backend() == "postgres";

    people(store.as_ref()).await;
    for id in ["cli", "bot"] {
        store.upsert_agent(&bare_agent(id)).await.unwrap();
    }
    for g in [
        grant("g_alice", Some("u_alice"), 1000),
        grant("g_bob", Some("u_bob"), 1000),
        grant("g_service", None, 1000),
        Grant {
            client_id: "bot".into(),
            ..grant("g_bot", Some("u_alice"), 1000)
        },
        Grant {
            tenant_id: "other".into(),
            ..grant("g_carol", Some("u_carol"), 1000)
        },
        Grant {
            expires_at: Some(t(2000)),
            ..grant("g_expiring", Some("u_alice"), 1000)
        },
    ] {
        store.create_grant(&g).await.unwrap();
    }
    // This node's own changes: answered at once, without waiting to hear them (unannounced
    // here, their triggers disabled).
    const OWN_CHANGES: [(&str, &str); 2] = [
        ("revoked_tokens", "revoked_tokens_notify"),
        ("users", "users_notify"),
    ];
    if postgres {
        switch_triggers(&url, false, &OWN_CHANGES).await;
    }
    assert!(kept(store.clone(), "j_revoked", "g_alice", "cli").await);
    store.revoke_jti("j_revoked", t(5000)).await.unwrap();
    assert!(!usable(store.clone(), "j_revoked", "g_alice", "cli", 1500).await);
    assert!(kept(store.clone(), "j_bob", "g_bob", "cli").await);
    disable_user(store.as_ref(), "u_bob").await;
    assert!(!usable(store.clone(), "j_bob", "g_bob", "cli", 1500).await);
    if postgres {
        switch_triggers(&url, true, &OWN_CHANGES).await;
    }

    // Another node's changes: heard.
    assert!(kept(store.clone(), "j_alice", "g_alice", "cli").await);
    assert!(kept(store.clone(), "j_bot", "g_bot", "bot").await);
    assert!(kept(store.clone(), "j_carol", "g_carol", "cli").await);
    assert!(
        other
            .revoke_grant("g_alice", t(1500), "test")
            .await
            .unwrap()
    );
    let heard = ends(store.clone(), "j_alice", "g_alice", "cli").await;
    eprintln!("a grant revoked on another node was heard after {heard:?}");
    other
        .upsert_agent(&Agent {
            disabled: true,
            ..bare_agent("bot")
        })
        .await
        .unwrap();
    ends(store.clone(), "j_bot", "g_bot", "bot").await;
    other
        .revoke_in_bulk(
            &mandate_store::BulkTarget::Tenant {
                tenant_id: "other".into(),
            },
            "offboarding",
            admin_event(1500),
        )
        .await
        .unwrap();
    ends(store.clone(), "j_carol", "g_carol", "cli").await;

    // A kept answer ends with its grant, with no change at all.
    assert!(usable(store.clone(), "j_expiring", "g_expiring", "cli", 1999).await);
    assert!(usable(store.clone(), "j_expiring", "g_expiring", "cli", 1999).await);
    assert!(!usable(store.clone(), "j_expiring", "g_expiring", "cli", 2000).await);

    if !postgres {
        return;
    }
    // An operator's SQL is heard like any node.
    assert!(kept(store.clone(), "j_2", "g_service", "cli").await);
    run(
        &url,
        "UPDATE agents SET disabled = true WHERE client_id = 'cli'",
    )
    .await;
    ends(store.clone(), "j_2", "g_service", "cli").await;
    run(
        &url,
        "UPDATE agents SET disabled = false WHERE client_id = 'cli'",
    )
    .await;
    // That change is announced too, and its notification must be heard before an answer is
    // kept below, or it drops that answer (heard in milliseconds above; nothing to poll for,
    // since it ends no token).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // The answer really is kept: a change nobody announces (the trigger disabled) is not seen.
    assert!(kept(store.clone(), "j_3", "g_service", "cli").await);
    switch_triggers(&url, false, &[("grants", "grants_notify")]).await;
    run(
        &url,
        "UPDATE grants SET revoked_at = 1500 WHERE id = 'g_service'",
    )
    .await;
    assert!(usable(store.clone(), "j_3", "g_service", "cli", 1500).await);
    assert!(
        !other
            .access_token_usable("j_3", "g_service", "cli", t(1500))
            .await
            .unwrap(),
        "a node that kept nothing reads the database"
    );
    // A node whose listening connection ends stops using what it kept: changes made while it
    // reconnects would go unheard.
    run(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await;
    ends(store.clone(), "j_3", "g_service", "cli").await;
    switch_triggers(&url, true, &[("grants", "grants_notify")]).await;
    // It listens again: answers are kept and changes heard as before.
    run(
        &url,
        "UPDATE grants SET revoked_at = NULL WHERE id = 'g_service'",
    )
    .await;
    let asked = std::time::Instant::now();
    while !usable(store.clone(), "j_4", "g_service", "cli", 1500).await {
        assert!(asked.elapsed() < std::time::Duration::from_secs(5));
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(kept(store.clone(), "j_4", "g_service", "cli").await);
    other
        .revoke_grant("g_service", t(1500), "test")
        .await
        .unwrap();
    ends(store.clone(), "j_4", "g_service", "cli").await;
}

/// [`Store::access_token_usable`] at `now`.
async fn usable(
    store: Arc<dyn Store>,
    jti: &'static str,
    gid: &'static str,
    client: &'static str,
    now: i64,
) -> bool {
    store
        .access_token_usable(jti, gid, client, t(now))
        .await
        .unwrap()
}

/// Usable at 1500, asked twice: the second answer is the kept one, where answers are kept.
async fn kept(
    store: Arc<dyn Store>,
    jti: &'static str,
    gid: &'static str,
    client: &'static str,
) -> bool {
    usable(store.clone(), jti, gid, client, 1500).await
        && usable(store, jti, gid, client, 1500).await
}

/// Waits (at most 5 s) until the token is no longer usable at 1500; how long that took.
async fn ends(
    store: Arc<dyn Store>,
    jti: &'static str,
    gid: &'static str,
    client: &'static str,
) -> std::time::Duration {
    let asked = std::time::Instant::now();
    while usable(store.clone(), jti, gid, client, 1500).await {
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(5),
            "{gid} still usable 5 s after the change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    asked.elapsed()
}

/// Turns each `(table, trigger)` on or off.
async fn switch_triggers(url: &str, on: bool, triggers: &[(&str, &str)]) {
    let verb = if on { "ENABLE" } else { "DISABLE" };
    for (table, trigger) in triggers {
        run(
            url,
            &format!("ALTER TABLE {table} {verb} TRIGGER {trigger}"),
        )
        .await;
    }
}

async fn run(url: &str, statement: &str) {
    mandate_store::testing::execute_postgres(url, statement)
        .await
        .unwrap();
}

/// Another store on the database at `url`. (Opened on a blocking thread: the migrator's
/// future is `Send` only for particular lifetimes, which a spawned test case cannot name.)
async fn connect_another(url: String) -> Arc<dyn Store> {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current().block_on(mandate_store::connect(&url))
    })
    .await
    .unwrap()
    .unwrap()
}
