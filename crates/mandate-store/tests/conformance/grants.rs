//! Cases for grants and authorization codes, including the code-redemption race.

use super::fixtures::*;
use mandate_core::code::AuthorizationCode;
use mandate_core::grant::Grant;
use mandate_core::refresh::RefreshFamily;
use mandate_store::{CodeConsumption, GrantFilter, Store, StoreError};
use std::sync::Arc;

pub(crate) async fn grants_round_trip_update_and_filter(store: Arc<dyn Store>) {
    let g1 = Grant {
        expires_at: Some(t(5000)),
        ..grant("g_1", Some("u_1"), 100)
    };
    let g2 = Grant {
        purpose: None,
        ..grant("g_2", None, 200)
    };
    let g3 = Grant {
        tenant_id: "other".into(),
        client_id: "cli2".into(),
        ..grant("g_3", Some("u_2"), 300)
    };
    for g in [&g1, &g2, &g3] {
        store.create_grant(g).await.unwrap();
    }
    let dup = store.create_grant(&g1).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.grant("g_1").await.unwrap(), Some(g1.clone()));
    assert_eq!(store.grant("g_2").await.unwrap(), Some(g2.clone()));
    assert_eq!(store.grant("nope").await.unwrap(), None);

    // Compare and set: the scopes change only from what the caller read.
    let wider = scopes("contacts.read contacts.write");
    let stale = store
        .update_grant_scopes("g_1", &scopes("contacts.write"), &wider)
        .await
        .unwrap();
    assert!(
        !stale,
        "scopes that changed since they were read are not replaced"
    );
    assert_eq!(
        store.grant("g_1").await.unwrap().unwrap().scopes,
        scopes("contacts.read")
    );
    assert!(
        store
            .update_grant_scopes("g_1", &scopes("contacts.read"), &wider)
            .await
            .unwrap()
    );
    assert_eq!(
        store.grant("g_1").await.unwrap().unwrap().scopes,
        scopes("contacts.write contacts.read")
    );
    let missing = store
        .update_grant_scopes("nope", &scopes("a"), &scopes("b"))
        .await;
    assert!(matches!(missing, Ok(false)), "{missing:?}");
    assert!(store.revoke_grant("g_2", t(250), "user").await.unwrap());
    let revoked = store
        .update_grant_scopes("g_2", &scopes("contacts.read"), &scopes("a"))
        .await;
    assert!(matches!(revoked, Ok(false)), "{revoked:?}");

    let ids = |gs: Vec<Grant>| gs.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let all = GrantFilter {
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store.grants(&all, None, 1000).await.unwrap()),
        ["g_3", "g_2", "g_1"]
    );
    assert_eq!(
        ids(store
            .grants(&GrantFilter::default(), None, 1000)
            .await
            .unwrap()),
        ["g_3", "g_1"]
    );
    let acme = GrantFilter {
        tenant_id: Some("acme".into()),
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store.grants(&acme, None, 1000).await.unwrap()),
        ["g_2", "g_1"]
    );
    let by_user = GrantFilter {
        user_id: Some("u_2".into()),
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store.grants(&by_user, None, 1000).await.unwrap()),
        ["g_3"]
    );
    let by_client = GrantFilter {
        tenant_id: Some("acme".into()),
        client_id: Some("cli".into()),
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store.grants(&by_client, None, 1000).await.unwrap()),
        ["g_1"]
    );
}

pub(crate) async fn active_grant_is_the_newest_live_one(store: Arc<dyn Store>) {
    let now = t(1000);
    // At most one live grant without an expiry per user and agent, so the older live ones
    // here expire later.
    let grants = [
        Grant {
            expires_at: Some(t(2000)),
            ..grant("g_old", Some("u_1"), 100)
        },
        grant("g_new", Some("u_1"), 500),
        Grant {
            expires_at: Some(t(2000)),
            ..grant("g_revoked", Some("u_1"), 900)
        },
        Grant {
            expires_at: Some(now),
            ..grant("g_expired_now", Some("u_1"), 950)
        },
        Grant {
            client_id: "cli2".into(),
            ..grant("g_other_client", Some("u_1"), 990)
        },
        Grant {
            tenant_id: "other".into(),
            ..grant("g_other_tenant", Some("u_1"), 990)
        },
        grant("g_other_user", Some("u_2"), 990),
        Grant {
            expires_at: Some(t(1001)),
            ..grant("g_service", None, 20)
        },
    ];
    for g in &grants {
        store.create_grant(g).await.unwrap();
    }
    store
        .revoke_grant("g_revoked", t(901), "test")
        .await
        .unwrap();
    let active = |user: Option<&'static str>, client: &'static str| {
        let store = store.clone();
        async move {
            store
                .active_grant("acme", user, client, now)
                .await
                .unwrap()
                .map(|g| g.id)
        }
    };
    assert_eq!(active(Some("u_1"), "cli").await.as_deref(), Some("g_new"));
    assert_eq!(active(None, "cli").await.as_deref(), Some("g_service"));
    assert_eq!(active(Some("u_9"), "cli").await, None);
    assert_eq!(active(Some("u_1"), "cli9").await, None);
    let later = store
        .active_grant("acme", None, "cli", t(1001))
        .await
        .unwrap();
    assert_eq!(later, None, "expiry is exclusive");

    // One live service grant per agent and tenant: nodes racing to create it cannot both win.
    let second = store.create_grant(&grant("g_service_2", None, 30)).await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    store
        .create_grant(&Grant {
            tenant_id: "other".into(),
            ..grant("g_service_elsewhere", None, 30)
        })
        .await
        .unwrap();
    store
        .revoke_grant("g_service", t(40), "test")
        .await
        .unwrap();
    store
        .create_grant(&grant("g_service_3", None, 50))
        .await
        .unwrap();

    // One live user grant per user, agent and tenant without an expiry: two consents racing
    // to create it cannot both win; a revoked one no longer counts.
    let second = store
        .create_grant(&grant("g_new_2", Some("u_1"), 999))
        .await;
    assert!(matches!(second, Err(StoreError::Conflict(_))), "{second:?}");
    store.revoke_grant("g_new", t(1000), "test").await.unwrap();
    store
        .create_grant(&grant("g_new_3", Some("u_1"), 1000))
        .await
        .unwrap();
    assert_eq!(active(Some("u_1"), "cli").await.as_deref(), Some("g_new_3"));
}

pub(crate) async fn revoke_grant_revokes_its_families_once(store: Arc<dyn Store>) {
    store
        .create_grant(&grant("g_1", Some("u_1"), 100))
        .await
        .unwrap();
    store
        .create_grant(&grant("g_2", Some("u_2"), 100))
        .await
        .unwrap();
    legacy_family(&*store, &family("f_1", "g_1"), &token("r_1", "f_1", 1000)).await;
    legacy_family(&*store, &family("f_2", "g_1"), &token("r_2", "f_2", 1000)).await;
    legacy_family(&*store, &family("f_3", "g_2"), &token("r_3", "f_3", 1000)).await;
    assert!(store.revoke_family("f_2", t(1500)).await.unwrap());

    assert!(
        store
            .revoke_grant("g_1", t(2000), "user revoked")
            .await
            .unwrap()
    );
    let g = store.grant("g_1").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(t(2000)));
    assert_eq!(g.revoked_reason.as_deref(), Some("user revoked"));
    let family_revoked_at = |hash: &'static str| {
        let store = store.clone();
        async move {
            store
                .refresh_token(hash)
                .await
                .unwrap()
                .unwrap()
                .found
                .revoked_at()
        }
    };
    assert_eq!(family_revoked_at("r_1").await, Some(t(2000)));
    assert_eq!(
        family_revoked_at("r_2").await,
        Some(t(1500)),
        "first revocation kept"
    );
    assert_eq!(
        family_revoked_at("r_3").await,
        None,
        "other grant untouched"
    );

    assert!(!store.revoke_grant("g_1", t(3000), "again").await.unwrap());
    let g = store.grant("g_1").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(t(2000)));
    assert_eq!(g.revoked_reason.as_deref(), Some("user revoked"));
    assert!(!store.revoke_grant("missing", t(3000), "x").await.unwrap());
    // A family revoked with its grant has no revocation of its own to keep: revoking it
    // records one, and the earlier time still stands.
    assert!(store.revoke_family("f_1", t(3000)).await.unwrap());
    assert!(!store.revoke_family("f_1", t(3500)).await.unwrap());
    assert_eq!(family_revoked_at("r_1").await, Some(t(2000)));
    assert!(!store.revoke_family("missing", t(3000)).await.unwrap());
}

pub(crate) async fn codes_are_consumed_once_and_replays_are_recognised(store: Arc<dyn Store>) {
    let c = code("h_1");
    store.insert_code(&c).await.unwrap();
    let dup = store.insert_code(&c).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    assert_eq!(
        store.consume_code("h_1", t(1010)).await.unwrap(),
        CodeConsumption::Fresh(c.clone())
    );
    store.set_code_family("h_1", "f_1").await.unwrap();
    let replay = store.consume_code("h_1", t(1020)).await.unwrap();
    let with_family = AuthorizationCode {
        family_id: Some("f_1".into()),
        ..c.clone()
    };
    assert_eq!(replay, CodeConsumption::Replayed(with_family));
    assert_eq!(
        store.consume_code("h_unknown", t(1020)).await.unwrap(),
        CodeConsumption::Unknown
    );
    let missing = store.set_code_family("h_unknown", "f_1").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let late = AuthorizationCode {
        expires_at: t(2000),
        ..code("h_2")
    };
    store.insert_code(&late).await.unwrap();
    assert_eq!(
        store.purge_expired(t(1060)).await.unwrap(),
        0,
        "expiry is exclusive"
    );
    assert_eq!(store.purge_expired(t(1061)).await.unwrap(), 1);
    assert_eq!(
        store.consume_code("h_1", t(1100)).await.unwrap(),
        CodeConsumption::Unknown
    );
    assert!(matches!(
        store.consume_code("h_2", t(1100)).await.unwrap(),
        CodeConsumption::Fresh(_)
    ));
}

pub(crate) async fn concurrent_code_redemptions_yield_exactly_one_fresh(store: Arc<dyn Store>) {
    store.insert_code(&code("h_race")).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_code("h_race", t(1010 + i as i64)).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            CodeConsumption::Fresh(_) => fresh += 1,
            CodeConsumption::Replayed(_) => {}
            CodeConsumption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1);
}

pub(crate) async fn redemption_lookups_carry_the_grant_and_the_users_standing(
    store: Arc<dyn Store>,
) {
    people(store.as_ref()).await;
    let alice = |g: Grant| Grant {
        user_id: Some("u_alice".into()),
        ..g
    };
    store
        .create_grant(&alice(grant("g_1", None, 100)))
        .await
        .unwrap();
    let c = AuthorizationCode {
        user_id: "u_alice".into(),
        ..code("h_1")
    };
    store.insert_code(&c).await.unwrap();
    let orphan = AuthorizationCode {
        grant_id: "g_missing".into(),
        ..code("h_orphan")
    };
    store.insert_code(&orphan).await.unwrap();
    let alices = RefreshFamily {
        user_id: Some("u_alice".into()),
        ..family("f_1", "g_1")
    };
    legacy_family(&*store, &alices, &token("r_1", "f_1", 1000)).await;
    let service = RefreshFamily {
        user_id: None,
        ..family("f_service", "g_missing")
    };
    legacy_family(&*store, &service, &token("r_service", "f_service", 1000)).await;

    let found = store.authorization_code("h_1").await.unwrap().unwrap();
    assert_eq!(found.code, c);
    assert!(!found.consumed);
    assert_eq!(found.grant, Some(alice(grant("g_1", None, 100))));
    assert!(found.user_active);
    let orphaned = store.authorization_code("h_orphan").await.unwrap().unwrap();
    assert_eq!(orphaned.grant, None, "a missing grant reads as none");
    assert!(!orphaned.user_active, "u_1 does not exist");
    assert_eq!(store.authorization_code("h_unknown").await.unwrap(), None);

    let refresh = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(refresh.found.grant, Some(alice(grant("g_1", None, 100))));
    assert!(refresh.found.user_active);
    let service = store.refresh_token("r_service").await.unwrap().unwrap();
    assert_eq!(service.found.grant, None);
    assert!(
        service.found.user_active,
        "a family without a user needs none"
    );

    // Consuming, revoking and disabling show through.
    assert!(matches!(
        store.consume_code("h_1", t(1010)).await.unwrap(),
        CodeConsumption::Fresh(_)
    ));
    store.revoke_grant("g_1", t(1020), "test").await.unwrap();
    let mut disabled = user("u_alice", "acme", "alice");
    disabled.disabled = true;
    store.update_user(&disabled).await.unwrap();
    let found = store.authorization_code("h_1").await.unwrap().unwrap();
    assert!(found.consumed);
    assert_eq!(found.grant.unwrap().revoked_at, Some(t(1020)));
    assert!(!found.user_active);
    let refresh = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(refresh.found.revoked_at(), Some(t(1020)), "with its grant");
    assert_eq!(
        refresh.found.family.revoked_at, None,
        "no write to the family"
    );
    assert_eq!(refresh.found.grant.unwrap().revoked_at, Some(t(1020)));
    assert!(!refresh.found.user_active);
}

/// Migration 0014 on a database that already holds duplicate live grants of one user to one
/// agent (left by the race it closes): all but the newest are revoked with their refresh
/// families, then the index refuses new duplicates. The database is taken back to before 0014
/// by dropping its index and forgetting it was applied; reopening the store applies it again.
pub(crate) async fn migration_revokes_all_but_the_newest_duplicate_user_grant_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    super::retention::raw(&url, "DROP INDEX grants_one_user_grant", false)
        .await
        .unwrap();
    let expiring = Grant {
        expires_at: Some(t(9000)),
        ..grant("g_expiring", Some("u_1"), 50)
    };
    for g in [
        grant("g_a", Some("u_1"), 100),
        grant("g_b", Some("u_1"), 200),
        grant("g_c", Some("u_1"), 200), // same second as g_b: the larger id is kept
        grant("g_other_user", Some("u_2"), 100),
        expiring,
    ] {
        store.create_grant(&g).await.unwrap();
    }
    for (f, g, r) in [
        ("f_a", "g_a", "r_a"),
        ("f_b", "g_b", "r_b"),
        ("f_c", "g_c", "r_c"),
    ] {
        legacy_family(&*store, &family(f, g), &token(r, f, 1000)).await;
    }
    drop(store);
    super::retention::raw(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = 14",
        false,
    )
    .await
    .unwrap();

    let store = reopen(&url);
    for (id, revoked) in [
        ("g_a", Some(100)),
        ("g_b", Some(200)),
        ("g_c", None),
        ("g_other_user", None),
        ("g_expiring", None),
    ] {
        let g = store.grant(id).await.unwrap().unwrap();
        assert_eq!(g.revoked_at, revoked.map(t), "{id}");
        if revoked.is_some() {
            assert_eq!(g.revoked_reason.as_deref(), Some("duplicate user grant"));
        }
    }
    for (r, revoked) in [("r_a", true), ("r_b", true), ("r_c", false)] {
        let look = store.refresh_token(r).await.unwrap().unwrap();
        assert_eq!(look.found.family.revoked_at.is_some(), revoked, "{r}");
    }
    let again = store.create_grant(&grant("g_d", Some("u_1"), 300)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// Opens the store again, applying pending migrations. sqlx's migration future is not `Send`,
/// and the suite runs each case as a task, so this blocks the case's worker thread on it.
fn reopen(url: &str) -> Arc<dyn Store> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(mandate_store::connect(url))
            .unwrap()
    })
}

pub(crate) async fn grants_in_force_are_the_unrevoked_unexpired_ones(store: Arc<dyn Store>) {
    let now = t(1000);
    let grants = [
        grant("g_live", Some("u_1"), 10),
        grant("g_service", None, 20),
        Grant {
            expires_at: Some(t(1001)),
            ..grant("g_expires_later", Some("u_2"), 30)
        },
        Grant {
            expires_at: Some(now),
            ..grant("g_expires_now", Some("u_3"), 40)
        },
        grant("g_revoked", Some("u_4"), 50),
    ];
    for g in &grants {
        store.create_grant(g).await.unwrap();
    }
    store
        .revoke_grant("g_revoked", t(60), "test")
        .await
        .unwrap();
    let asked: Vec<String> = [
        "g_live",
        "g_service",
        "g_expires_later",
        "g_expires_now",
        "g_revoked",
        "g_unknown",
    ]
    .map(String::from)
    .to_vec();
    let mut in_force = store.grants_in_force(&asked, now).await.unwrap();
    in_force.sort();
    assert_eq!(in_force, ["g_expires_later", "g_live", "g_service"]);
    assert_eq!(
        store.grants_in_force(&asked[..1], t(5000)).await.unwrap(),
        ["g_live"],
        "a grant without an expiry stays in force"
    );
    assert!(store.grants_in_force(&[], now).await.unwrap().is_empty());
    // A whole batch's worth of ids in one statement.
    let many: Vec<String> = (0..1024).map(|i| format!("g_{i}")).chain(asked).collect();
    assert_eq!(store.grants_in_force(&many, now).await.unwrap().len(), 3);
}
