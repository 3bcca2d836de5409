//! Cases for API keys: storage and lookup, tenant scoping, paging, use tracking, revocation
//! with its feed event, and rotation (including its race).

use super::fixtures::*;
use mandate_core::api_key::{ApiKeyRecord, KeyId};
use mandate_core::event::{Action, ActorKind};
use mandate_core::revocation::Revoked;
use mandate_store::{ApiKeyRotation, Store, StoreError, StoredApiKey};
use std::sync::Arc;

pub(crate) async fn api_keys_round_trip_by_hash_id_and_tenant(store: Arc<dyn Store>) {
    people(&*store).await;
    let k = api_key(1, "acme", Some("u_alice"), 1000);
    store.insert_api_key(&k, admin_event(1000)).await.unwrap();

    let stored = store.api_key_by_hash(&k.hash).await.unwrap().unwrap();
    assert_eq!(stored.record, k);
    assert_eq!(stored.created_by.as_deref(), Some("admin_1"));
    assert_eq!(stored.revoked_reason, None);
    assert_eq!(stored.replaced_by, None);
    assert_eq!(store.api_key_by_hash("sha256:nope").await.unwrap(), None);
    assert_eq!(
        store.api_key(&k.id, None).await.unwrap().as_ref(),
        Some(&stored)
    );
    assert_eq!(
        store.api_key(&k.id, Some("acme")).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        store.api_key(&k.id, Some("other")).await.unwrap(),
        None,
        "another tenant's key is not found"
    );

    // The creation event, described by the store whatever the caller's action said.
    let events = all_events(&*store).await;
    assert_eq!(events.len(), 1);
    let e = &events[0].event;
    assert_eq!(e.action, Action::ApiKeyCreated);
    assert_eq!(e.actor_kind, ActorKind::Admin);
    assert_eq!(e.actor_id.as_deref(), Some("admin_1"));
    assert_eq!(e.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(e.grant_id.as_deref(), Some(k.id.as_str()));
    assert_eq!(e.tenant_id.as_deref(), Some("acme"));
    assert_eq!(e.user_id.as_deref(), Some("u_alice"));
    assert_eq!(e.scopes.as_deref(), Some("billing.read contacts.read"));
    let serialized = serde_json::to_string(&events).unwrap();
    assert!(
        !serialized.contains(&k.hash),
        "the hash never enters the log"
    );

    // Failures store nothing, not even the event.
    let dup_id = ApiKeyRecord {
        hash: "sha256:other".into(),
        ..k.clone()
    };
    let err = store.insert_api_key(&dup_id, admin_event(1001)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    let dup_hash = ApiKeyRecord {
        id: api_key(2, "acme", None, 0).id,
        ..k.clone()
    };
    let err = store.insert_api_key(&dup_hash, admin_event(1001)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    let err = store
        .insert_api_key(&api_key(3, "nowhere", None, 1000), admin_event(1001))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    let err = store
        .insert_api_key(
            &api_key(4, "acme", Some("u_ghost"), 1000),
            admin_event(1001),
        )
        .await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    assert_eq!(
        all_events(&*store).await.len(),
        1,
        "no event for a failed insert"
    );
    assert_eq!(store.api_key(&dup_hash.id, None).await.unwrap(), None);

    // Uses move `last_used_at` forward only.
    store.record_api_key_use(&k.id, t(1500)).await.unwrap();
    store.record_api_key_use(&k.id, t(1400)).await.unwrap();
    let used = store.api_key(&k.id, None).await.unwrap().unwrap();
    assert_eq!(used.record.last_used_at, Some(t(1500)));
    store.record_api_key_use(&k.id, t(1600)).await.unwrap();
    let used = store.api_key_by_hash(&k.hash).await.unwrap().unwrap();
    assert_eq!(used.record.last_used_at, Some(t(1600)));
    let unknown = api_key(9, "acme", None, 0).id;
    store.record_api_key_use(&unknown, t(1600)).await.unwrap();
}

pub(crate) async fn api_key_listing_pages_newest_first_within_a_tenant(store: Arc<dyn Store>) {
    people(&*store).await;
    // Seven acme keys, three of them created in the same second, and one of another tenant.
    let mut acme: Vec<ApiKeyRecord> = (0..7)
        .map(|i| api_key(100 + i, "acme", None, 1000 + (i.min(4) as i64) * 10))
        .collect();
    for k in &acme {
        store.insert_api_key(k, admin_event(1000)).await.unwrap();
    }
    store
        .insert_api_key(&api_key(200, "other", None, 5000), admin_event(1000))
        .await
        .unwrap();
    acme.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.as_str().cmp(a.id.as_str()))
    });
    let expected: Vec<KeyId> = acme.iter().map(|k| k.id.clone()).collect();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page: Vec<StoredApiKey> = store
            .api_keys(Some("acme"), after.as_ref(), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        seen.extend(page.iter().map(|k| k.record.id.clone()));
    }
    assert_eq!(seen, expected, "every key once, newest first, ties by id");
    assert_eq!(
        store.api_keys(Some("other"), None, 10).await.unwrap().len(),
        1
    );
    assert!(
        store
            .api_keys(Some("nobody"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn api_key_revocation_writes_one_feed_event(store: Arc<dyn Store>) {
    people(&*store).await;
    let k = api_key(1, "acme", Some("u_bob"), 1000);
    let other = api_key(2, "acme", None, 1000);
    store.insert_api_key(&k, admin_event(1000)).await.unwrap();
    store
        .insert_api_key(&other, admin_event(1000))
        .await
        .unwrap();
    let before = all_events(&*store).await.last().unwrap().seq;
    let mut notified = store.event_notifications().await.unwrap();
    if let Some(rx) = &mut notified {
        rx.borrow_and_update();
    }

    assert!(
        !store
            .revoke_api_key(&k.id, Some("other"), "wrong tenant", admin_event(1100))
            .await
            .unwrap(),
        "another tenant cannot revoke it"
    );
    assert_eq!(
        store
            .api_key(&k.id, None)
            .await
            .unwrap()
            .unwrap()
            .record
            .revoked_at,
        None
    );
    assert!(feed(&*store, before).await.is_empty());

    assert!(
        store
            .revoke_api_key(&k.id, Some("acme"), "leaked in a log", admin_event(1200))
            .await
            .unwrap()
    );
    let revoked = store.api_key_by_hash(&k.hash).await.unwrap().unwrap();
    assert_eq!(revoked.record.revoked_at, Some(t(1200)));
    assert_eq!(revoked.revoked_reason.as_deref(), Some("leaked in a log"));
    assert_eq!(revoked.revoked_by.as_deref(), Some("admin_1"));
    assert!(revoked.record.check_usable(t(1201)).is_err());

    let entries = feed(&*store, before).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].revoked,
        Revoked::Grant {
            grant_id: k.id.as_str().to_owned()
        },
        "tokens obtained with the key carry its id as gid"
    );
    assert_eq!(entries[0].tenant.as_deref(), Some("acme"));
    assert_eq!(entries[0].at, 1200);
    let last = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(last.action, Action::ApiKeyRevoked);
    assert_eq!(last.user_id.as_deref(), Some("u_bob"));
    assert_eq!(last.reason.as_deref(), Some("leaked in a log"));
    if let Some(mut rx) = notified {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("the revocation's commit is announced")
            .unwrap();
    }

    // Twice: the first time and reason stay, and there is no second event.
    assert!(
        !store
            .revoke_api_key(&k.id, None, "again", admin_event(1300))
            .await
            .unwrap()
    );
    let again = store.api_key(&k.id, None).await.unwrap().unwrap();
    assert_eq!(again.record.revoked_at, Some(t(1200)));
    assert_eq!(again.revoked_reason.as_deref(), Some("leaked in a log"));
    assert_eq!(feed(&*store, before).await.len(), 1);
    assert!(
        !store
            .revoke_api_key(
                &api_key(9, "acme", None, 0).id,
                None,
                "x",
                admin_event(1300)
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .api_key(&other.id, None)
            .await
            .unwrap()
            .unwrap()
            .record
            .revoked_at,
        None,
        "the other key is untouched"
    );
}

pub(crate) async fn api_key_rotation_links_shortens_and_refuses_dead_keys(store: Arc<dyn Store>) {
    people(&*store).await;
    let old = api_key(1, "acme", Some("u_alice"), 1000); // expires 11000
    store.insert_api_key(&old, admin_event(1000)).await.unwrap();
    let successor = |seed: u64, of: &ApiKeyRecord| ApiKeyRecord {
        replaces: Some(of.id.clone()),
        ..api_key(seed, &of.tenant_id, of.user_id.as_deref(), 2000)
    };
    let new = successor(2, &old);

    // The overlap can only shorten the old key: asking for a later expiry keeps 11000.
    assert_eq!(
        store
            .rotate_api_key(&old.id, &new, t(50_000), admin_event(2000))
            .await
            .unwrap(),
        ApiKeyRotation::Rotated
    );
    let old_now = store.api_key(&old.id, None).await.unwrap().unwrap();
    assert_eq!(old_now.record.expires_at, t(11_000), "never extended");
    assert_eq!(old_now.replaced_by.as_ref(), Some(&new.id));
    let new_now = store.api_key_by_hash(&new.hash).await.unwrap().unwrap();
    assert_eq!(new_now.record.replaces.as_ref(), Some(&old.id));
    assert_eq!(new_now.record, new);
    assert_eq!(new_now.created_by.as_deref(), Some("admin_1"));
    let e = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(e.action, Action::ApiKeyRotated);
    assert_eq!(e.grant_id.as_deref(), Some(old.id.as_str()));
    assert_eq!(e.detail["successor"], new.id.as_str());
    assert_eq!(e.detail["predecessor_expires_at"], 11_000);

    // Rotating the successor with a real overlap shortens it.
    let newer = successor(3, &new);
    assert_eq!(
        store
            .rotate_api_key(&new.id, &newer, t(2100), admin_event(2050))
            .await
            .unwrap(),
        ApiKeyRotation::Rotated
    );
    assert_eq!(
        store
            .api_key(&new.id, None)
            .await
            .unwrap()
            .unwrap()
            .record
            .expires_at,
        t(2100)
    );

    let events_before = all_events(&*store).await.len();
    let cases = [
        (
            old.id.clone(),
            successor(10, &old),
            2060,
            ApiKeyRotation::AlreadyRotated,
        ),
        (
            api_key(11, "acme", None, 0).id,
            api_key(12, "acme", None, 2000),
            2060,
            ApiKeyRotation::Unknown,
        ),
        // `newer` belongs to acme and u_alice: another tenant or user does not find it.
        (
            newer.id.clone(),
            ApiKeyRecord {
                tenant_id: "other".into(),
                user_id: Some("u_carol".into()),
                ..successor(13, &newer)
            },
            2060,
            ApiKeyRotation::Unknown,
        ),
        (
            newer.id.clone(),
            ApiKeyRecord {
                user_id: Some("u_bob".into()),
                ..successor(14, &newer)
            },
            2060,
            ApiKeyRotation::Unknown,
        ),
        (
            newer.id.clone(),
            successor(15, &newer),
            12_000,
            ApiKeyRotation::Expired,
        ),
    ];
    for (id, succ, at, expected) in cases {
        assert_eq!(
            store
                .rotate_api_key(&id, &succ, t(at + 10), admin_event(at))
                .await
                .unwrap(),
            expected,
            "{expected:?}"
        );
        assert_eq!(
            store.api_key(&succ.id, None).await.unwrap(),
            None,
            "{expected:?}: no successor stored"
        );
    }
    store
        .revoke_api_key(&newer.id, None, "gone", admin_event(2070))
        .await
        .unwrap();
    let after_revoke = all_events(&*store).await.len();
    assert_eq!(
        after_revoke,
        events_before + 1,
        "refused rotations write no event"
    );
    assert_eq!(
        store
            .rotate_api_key(
                &newer.id,
                &successor(16, &newer),
                t(2090),
                admin_event(2080)
            )
            .await
            .unwrap(),
        ApiKeyRotation::Revoked
    );

    // A successor whose hash is taken fails cleanly: the old key is unchanged.
    let fresh = api_key(20, "acme", None, 3000);
    store
        .insert_api_key(&fresh, admin_event(3000))
        .await
        .unwrap();
    let clash = ApiKeyRecord {
        hash: old.hash.clone(),
        ..successor(21, &fresh)
    };
    let err = store
        .rotate_api_key(&fresh.id, &clash, t(3100), admin_event(3000))
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    let fresh_now = store.api_key(&fresh.id, None).await.unwrap().unwrap();
    assert_eq!(fresh_now.record, fresh);
    assert_eq!(fresh_now.replaced_by, None);
    assert_eq!(
        store
            .rotate_api_key(
                &fresh.id,
                &successor(22, &fresh),
                t(3100),
                admin_event(3000)
            )
            .await
            .unwrap(),
        ApiKeyRotation::Rotated,
        "and can still be rotated"
    );
}

pub(crate) async fn concurrent_rotations_of_a_key_yield_one_successor(store: Arc<dyn Store>) {
    people(&*store).await;
    let old = api_key(1, "acme", None, 1000);
    store.insert_api_key(&old, admin_event(1000)).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            let old = old.clone();
            tokio::spawn(async move {
                let succ = ApiKeyRecord {
                    replaces: Some(old.id.clone()),
                    ..api_key(100 + i as u64, "acme", None, 2000)
                };
                let outcome = store
                    .rotate_api_key(&old.id, &succ, t(2100), admin_event(2000))
                    .await
                    .unwrap();
                (outcome, succ.id)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (outcome, id) = task.await.unwrap();
        match outcome {
            ApiKeyRotation::Rotated => winners.push(id),
            ApiKeyRotation::AlreadyRotated => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let keys = store.api_keys(Some("acme"), None, 100).await.unwrap();
    assert_eq!(keys.len(), 2, "the old key and exactly one successor");
    let old_now = store.api_key(&old.id, None).await.unwrap().unwrap();
    assert_eq!(old_now.replaced_by.as_ref(), Some(&winners[0]));
    let rotated = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.event.action == Action::ApiKeyRotated)
        .count();
    assert_eq!(rotated, 1);
}
