//! Cases for bulk revocation: each target revokes exactly its grants (and with them their
//! refresh families) and (for users and tenants) API keys, in one transaction with one feed
//! event, and nobody else's.

use super::fixtures::*;
use mandate_core::api_key::ApiKeyRecord;
use mandate_core::event::Action;
use mandate_core::grant::Grant;
use mandate_core::revocation::Revoked;
use mandate_store::{BulkTarget, GrantFilter, Store};
use std::collections::BTreeSet;
use std::sync::Arc;

const GRANTS: [(&str, &str, Option<&str>, &str); 7] = [
    ("g_bob_cli", "acme", Some("u_bob"), "cli"),
    ("g_bob_crm", "acme", Some("u_bob"), "crm"),
    ("g_alice_cli", "acme", Some("u_alice"), "cli"),
    ("g_alice_crm", "acme", Some("u_alice"), "crm"),
    ("g_svc_cli", "acme", None, "cli"),
    ("g_carol_cli", "other", Some("u_carol"), "cli"),
    ("g_carol_crm", "other", Some("u_carol"), "crm"),
];
/// Revoked before the bulk revocation, with a family created after (by a request that raced
/// that revocation): revoked with its grant from the start, whatever the bulk revocation does.
const OLD_GRANT: &str = "g_bob_old";

struct World {
    keys: Vec<(&'static str, ApiKeyRecord)>,
}

/// Two tenants, three users, two agents, a service grant, a family per grant, and API keys of
/// users and of tenants.
async fn world(store: &dyn Store) -> World {
    people(store).await;
    let mut all: Vec<(&str, &str, Option<&str>, &str)> =
        vec![(OLD_GRANT, "acme", Some("u_bob"), "cli")];
    all.extend(GRANTS);
    for &(id, tenant_id, user_id, client_id) in &all {
        let g = Grant {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            ..grant(id, user_id, 100)
        };
        store.create_grant(&g).await.unwrap();
        if id == OLD_GRANT {
            // Revoked before g_bob_cli, the one live grant of bob to cli, was created.
            store
                .revoke_grant(OLD_GRANT, t(500), "earlier")
                .await
                .unwrap();
        }
    }
    for (id, tenant_id, user_id, client_id) in all {
        let family_id = format!("f_{id}");
        let f = mandate_core::refresh::RefreshFamily {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            user_id: user_id.map(Into::into),
            ..family(&family_id, id)
        };
        legacy_family(store, &f, &token(&format!("r_{id}"), &family_id, 1000)).await;
    }
    let keys = vec![
        ("k_bob", api_key(1, "acme", Some("u_bob"), 1000)),
        ("k_alice", api_key(2, "acme", Some("u_alice"), 1000)),
        ("k_acme", api_key(3, "acme", None, 1000)),
        ("k_carol", api_key(4, "other", Some("u_carol"), 1000)),
        ("k_other", api_key(5, "other", None, 1000)),
    ];
    for (_, k) in &keys {
        store.insert_api_key(k, admin_event(1000)).await.unwrap();
    }
    World { keys }
}

/// Names of every revoked grant (`g_...`), family (`f_...`) and key (`k_...`), excluding the
/// grant revoked before the case started and its family.
async fn revoked(store: &dyn Store, world: &World) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (id, ..) in GRANTS {
        if store.grant(id).await.unwrap().unwrap().revoked_at.is_some() {
            out.insert(id.to_owned());
        }
    }
    for id in GRANTS.iter().map(|g| g.0) {
        let lookup = store
            .refresh_token(&format!("r_{id}"))
            .await
            .unwrap()
            .unwrap();
        if lookup.found.revoked_at().is_some() {
            out.insert(format!("f_{id}"));
        }
    }
    for (name, k) in &world.keys {
        let stored = store.api_key(&k.id, None).await.unwrap().unwrap();
        if stored.record.revoked_at.is_some() {
            out.insert((*name).to_owned());
        }
    }
    out
}

/// When the family of [`OLD_GRANT`] counts as revoked.
async fn old_family_revoked_at(store: &dyn Store) -> Option<mandate_core::time::Timestamp> {
    let token = format!("r_{OLD_GRANT}");
    let lookup = store.refresh_token(&token).await.unwrap().unwrap();
    lookup.found.revoked_at()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Runs one bulk revocation on a fresh world and checks everything it must and must not do.
async fn check_target(
    store: Arc<dyn Store>,
    target: BulkTarget,
    revokes: &[&str],
    entry: Revoked,
    entry_tenant: Option<&str>,
    action: Action,
) {
    let world = world(&*store).await;
    assert!(revoked(&*store, &world).await.is_empty());
    assert_eq!(old_family_revoked_at(&*store).await, Some(t(500)));
    let before = all_events(&*store).await.last().unwrap().seq;

    let done = store
        .revoke_in_bulk(&target, "offboarding", admin_event(5000))
        .await
        .unwrap();
    let expected = set(revokes);
    assert_eq!(revoked(&*store, &world).await, expected, "{target:?}");
    let count = |prefix: &str| {
        u64::try_from(expected.iter().filter(|n| n.starts_with(prefix)).count()).unwrap()
    };
    assert_eq!(done.grants, count("g_"), "{target:?}");
    assert_eq!(done.api_keys, count("k_"), "{target:?}");

    // Each revoked row carries the time and reason; the earlier revocation keeps its own.
    for name in &expected {
        if name.starts_with("g_") {
            let g = store.grant(name).await.unwrap().unwrap();
            assert_eq!(g.revoked_at, Some(t(5000)));
            assert_eq!(g.revoked_reason.as_deref(), Some("offboarding"));
            assert!(!g.is_active(t(5000)), "inactive at introspection");
        }
    }
    for (name, k) in &world.keys {
        if expected.contains(*name) {
            let stored = store.api_key_by_hash(&k.hash).await.unwrap().unwrap();
            assert_eq!(stored.revoked_reason.as_deref(), Some("offboarding"));
            assert_eq!(stored.revoked_by.as_deref(), Some("admin_1"));
            assert!(stored.record.check_usable(t(5000)).is_err());
        }
    }
    let old = store.grant(OLD_GRANT).await.unwrap().unwrap();
    assert_eq!(old.revoked_at, Some(t(500)));
    assert_eq!(old.revoked_reason.as_deref(), Some("earlier"));
    assert_eq!(old_family_revoked_at(&*store).await, Some(t(500)));

    // ONE event, and it is ONE feed entry naming the target.
    let events: Vec<_> = all_events(&*store)
        .await
        .into_iter()
        .filter(|e| e.seq > before)
        .collect();
    assert_eq!(events.len(), 1, "{target:?}");
    assert_eq!(events[0].seq, done.event_seq);
    let e = &events[0].event;
    assert_eq!(e.action, action);
    assert_eq!(e.reason.as_deref(), Some("offboarding"));
    assert_eq!(e.actor_id.as_deref(), Some("admin_1"));
    assert_eq!(e.detail["grants"], done.grants);
    assert_eq!(e.detail["api_keys"], done.api_keys);
    let entries = feed(&*store, before).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].revoked, entry);
    assert_eq!(entries[0].tenant.as_deref(), entry_tenant);
    assert_eq!(entries[0].at, 5000);

    // Again: nothing more to revoke, first times kept, and the request is still recorded.
    let again = store
        .revoke_in_bulk(&target, "twice", admin_event(6000))
        .await
        .unwrap();
    assert_eq!((again.grants, again.api_keys), (0, 0));
    assert!(again.event_seq > done.event_seq);
    assert_eq!(revoked(&*store, &world).await, expected);
    for name in &expected {
        if name.starts_with("g_") {
            let g = store.grant(name).await.unwrap().unwrap();
            assert_eq!(g.revoked_at, Some(t(5000)), "{name}");
        }
    }
}

pub(crate) async fn bulk_revocation_by_user_touches_only_that_user(store: Arc<dyn Store>) {
    check_target(
        store.clone(),
        BulkTarget::User {
            user_id: "u_bob".into(),
        },
        &[
            "g_bob_cli",
            "g_bob_crm",
            "f_g_bob_cli",
            "f_g_bob_crm",
            "k_bob",
        ],
        Revoked::User {
            user_id: "u_bob".into(),
        },
        Some("acme"),
        Action::UserGrantsRevoked,
    )
    .await;
    // Alice's consent still stands; Bob would have to consent again.
    let active = |user: &'static str| {
        let store = store.clone();
        async move {
            store
                .active_grant("acme", Some(user), "cli", t(7000))
                .await
                .unwrap()
                .map(|g| g.id)
        }
    };
    assert_eq!(active("u_alice").await.as_deref(), Some("g_alice_cli"));
    assert_eq!(active("u_bob").await, None);
}

pub(crate) async fn bulk_revocation_by_tenant_touches_only_that_tenant(store: Arc<dyn Store>) {
    check_target(
        store.clone(),
        BulkTarget::Tenant {
            tenant_id: "acme".into(),
        },
        &[
            "g_bob_cli",
            "g_bob_crm",
            "g_alice_cli",
            "g_alice_crm",
            "g_svc_cli",
            "f_g_bob_cli",
            "f_g_bob_crm",
            "f_g_alice_cli",
            "f_g_alice_crm",
            "f_g_svc_cli",
            "k_bob",
            "k_alice",
            "k_acme",
        ],
        Revoked::Tenant {
            tenant_id: "acme".into(),
        },
        Some("acme"),
        Action::TenantGrantsRevoked,
    )
    .await;
    let other = GrantFilter {
        tenant_id: Some("other".into()),
        ..GrantFilter::default()
    };
    assert_eq!(store.grants(&other, None, 1000).await.unwrap().len(), 2);
}

pub(crate) async fn bulk_revocation_by_agent_spans_tenants_but_not_keys(store: Arc<dyn Store>) {
    check_target(
        store,
        BulkTarget::Agent {
            client_id: "cli".into(),
        },
        &[
            "g_bob_cli",
            "g_alice_cli",
            "g_svc_cli",
            "g_carol_cli",
            "f_g_bob_cli",
            "f_g_alice_cli",
            "f_g_svc_cli",
            "f_g_carol_cli",
        ],
        Revoked::Agent {
            client_id: "cli".into(),
        },
        None,
        Action::AgentGrantsRevoked,
    )
    .await;
}

pub(crate) async fn bulk_revocation_by_agent_in_tenant_stays_in_the_tenant(store: Arc<dyn Store>) {
    check_target(
        store,
        BulkTarget::AgentInTenant {
            client_id: "cli".into(),
            tenant_id: "acme".into(),
        },
        &[
            "g_bob_cli",
            "g_alice_cli",
            "g_svc_cli",
            "f_g_bob_cli",
            "f_g_alice_cli",
            "f_g_svc_cli",
        ],
        Revoked::AgentInTenant {
            client_id: "cli".into(),
            tenant_id: "acme".into(),
        },
        Some("acme"),
        Action::AgentTenantGrantsRevoked,
    )
    .await;
}

pub(crate) async fn bulk_revocation_of_nobody_changes_nothing(store: Arc<dyn Store>) {
    let world = world(&*store).await;
    for target in [
        BulkTarget::User {
            user_id: "u_ghost".into(),
        },
        BulkTarget::Tenant {
            tenant_id: "ghost".into(),
        },
        BulkTarget::Agent {
            client_id: "ghost".into(),
        },
        BulkTarget::AgentInTenant {
            client_id: "crm".into(),
            tenant_id: "ghost".into(),
        },
    ] {
        let done = store
            .revoke_in_bulk(&target, "nothing", admin_event(5000))
            .await
            .unwrap();
        assert_eq!((done.grants, done.api_keys), (0, 0), "{target:?}");
    }
    assert!(revoked(&*store, &world).await.is_empty());
    let ghost = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(ghost.action, Action::AgentTenantGrantsRevoked);
}
