//! Cases for the administrators' listings: pages by keyset (every row once, in order, ties in
//! the same second broken by id) and counts that stop at their cap.

use super::fixtures::*;
use mandate_core::directory::User;
use mandate_core::grant::Grant;
use mandate_store::{GrantCursor, GrantFilter, Store};
use std::sync::Arc;

/// Every page of `filter`'s grants, `size` at a time, concatenated.
async fn walk_grants(store: &dyn Store, filter: &GrantFilter, size: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<GrantCursor> = None;
    loop {
        let page = store.grants(filter, after.as_ref(), size).await.unwrap();
        assert!(
            page.len() <= size as usize,
            "a page never exceeds its limit"
        );
        let Some(last) = page.last() else { break };
        after = Some(GrantCursor::after(last));
        seen.extend(page.into_iter().map(|g| g.id));
    }
    seen
}

/// Every page of `tenant`'s users, `size` at a time, concatenated.
async fn walk_users(store: &dyn Store, tenant: Option<&str>, size: u32) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.users(tenant, after.as_deref(), size).await.unwrap();
        assert!(
            page.len() <= size as usize,
            "a page never exceeds its limit"
        );
        let Some(last) = page.last() else { break };
        after = Some(last.login.clone());
        seen.extend(page.into_iter().map(|u| u.login));
    }
    seen
}

/// The ids of `grants` newest first, ties by id descending: the order every listing keeps.
fn newest_first<'a>(grants: impl Iterator<Item = &'a Grant>) -> Vec<String> {
    let mut sorted: Vec<&Grant> = grants.collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    sorted.into_iter().map(|g| g.id.clone()).collect()
}

pub(crate) async fn listings_page_by_keyset_and_counts_stop_at_their_cap(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    store.upsert_tenant(&tenant("other")).await.unwrap();
    let users: Vec<User> = (0..9)
        .map(|i| {
            let t = if i % 3 == 2 { "other" } else { "acme" };
            user(
                &format!("u_{i}"),
                t,
                &format!("login-{}", (b'i' - i) as char),
            )
        })
        .collect();
    for u in &users {
        store.create_user(u).await.unwrap();
    }
    let mut logins: Vec<String> = users.iter().map(|u| u.login.clone()).collect();
    logins.sort();
    assert_eq!(walk_users(&*store, None, 4).await, logins);
    let acme_logins: Vec<String> = logins
        .iter()
        .filter(|l| {
            users
                .iter()
                .any(|u| u.login == **l && u.tenant_id == "acme")
        })
        .cloned()
        .collect();
    assert_eq!(walk_users(&*store, Some("acme"), 2).await, acme_logins);
    assert_eq!(store.count_users(None, 100).await.unwrap(), 9);
    assert_eq!(store.count_users(Some("acme"), 100).await.unwrap(), 6);
    assert_eq!(
        store.count_users(None, 4).await.unwrap(),
        4,
        "stops at the cap"
    );
    let mut found: Vec<String> = store
        .users_by_ids(&["u_3".into(), "u_7".into(), "nobody".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    found.sort();
    assert_eq!(found, ["u_3", "u_7"]);
    assert!(store.users_by_ids(&[]).await.unwrap().is_empty());

    // Twelve grants: four created in the same second, two agents, two tenants, two revoked.
    let grants: Vec<Grant> = (0..12)
        .map(|i| Grant {
            tenant_id: if i % 4 == 3 { "other" } else { "acme" }.into(),
            client_id: if i % 2 == 0 { "cli" } else { "cli2" }.into(),
            ..grant(
                &format!("g_{i:02}"),
                Some(&format!("u_{i}")),
                100 + (i64::from(i).min(8) / 4) * 10 + i64::from(i == 11) * 50,
            )
        })
        .collect();
    for g in &grants {
        store.create_grant(g).await.unwrap();
    }
    for revoked in ["g_01", "g_06"] {
        assert!(store.revoke_grant(revoked, t(500), "test").await.unwrap());
    }
    let live = |g: &&Grant| g.id != "g_01" && g.id != "g_06";
    let all = GrantFilter {
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(
        walk_grants(&*store, &all, 5).await,
        newest_first(grants.iter())
    );
    assert_eq!(
        walk_grants(&*store, &GrantFilter::default(), 3).await,
        newest_first(grants.iter().filter(live))
    );
    let acme_cli = GrantFilter {
        tenant_id: Some("acme".into()),
        client_id: Some("cli".into()),
        ..GrantFilter::default()
    };
    assert_eq!(
        walk_grants(&*store, &acme_cli, 2).await,
        newest_first(
            grants
                .iter()
                .filter(live)
                .filter(|g| g.tenant_id == "acme" && g.client_id == "cli")
        )
    );
    let other = GrantFilter {
        tenant_id: Some("other".into()),
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(
        walk_grants(&*store, &other, 1).await,
        newest_first(grants.iter().filter(|g| g.tenant_id == "other"))
    );
    assert_eq!(store.count_grants(&all, 100).await.unwrap(), 12);
    assert_eq!(
        store
            .count_grants(&GrantFilter::default(), 100)
            .await
            .unwrap(),
        10
    );
    assert_eq!(store.count_grants(&other, 100).await.unwrap(), 3);
    assert_eq!(
        store.count_grants(&all, 5).await.unwrap(),
        5,
        "stops at the cap"
    );

    // API keys of every tenant, and the live ones counted at a time.
    let keys = [
        api_key(1, "acme", None, 100),
        api_key(2, "other", None, 200),
        api_key(3, "acme", Some("u_0"), 300),
    ];
    for k in &keys {
        store.insert_api_key(k, admin_event(100)).await.unwrap();
    }
    let every: Vec<String> = store
        .api_keys(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.record.name)
        .collect();
    assert_eq!(every, ["key 3", "key 2", "key 1"]);
    let first = store.api_keys(None, None, 1).await.unwrap();
    let rest = store
        .api_keys(None, Some(&first[0].cursor()), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    // Key 1 expires at 10,100, key 2 at 10,200, key 3 at 10,300.
    assert_eq!(
        store.count_live_api_keys(None, t(150), 100).await.unwrap(),
        3
    );
    assert_eq!(
        store
            .count_live_api_keys(None, t(10_150), 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_live_api_keys(Some("acme"), t(10_150), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count_live_api_keys(None, t(150), 2).await.unwrap(), 2);
}

/// Live-grant listings read the unrevoked grants' own indexes (migration 0019): with many
/// revoked grants newer than the live ones, a page of live grants does not read past them.
pub(crate) async fn live_grant_listings_read_through_the_live_indexes_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    let live: Vec<Grant> = (0..3)
        .map(|i| {
            grant(
                &format!("g_live_{i}"),
                Some(&format!("u_live_{i}")),
                100 + i,
            )
        })
        .collect();
    for g in &live {
        store.create_grant(g).await.unwrap();
    }
    for i in 0..300 {
        let revoked = grant(
            &format!("g_revoked_{i:03}"),
            Some(&format!("u_{i}")),
            200 + i,
        );
        store.create_grant(&revoked).await.unwrap();
        store
            .revoke_grant(&revoked.id, t(600), "test")
            .await
            .unwrap();
    }
    let by_tenant = GrantFilter {
        tenant_id: Some("acme".into()),
        ..GrantFilter::default()
    };
    let ids: Vec<String> = store
        .grants(&by_tenant, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(ids, ["g_live_2", "g_live_1", "g_live_0"]);
    assert_eq!(store.count_grants(&by_tenant, 10_000).await.unwrap(), 3);
    let with_revoked = GrantFilter {
        include_revoked: true,
        ..by_tenant.clone()
    };
    assert_eq!(
        store.count_grants(&with_revoked, 10_000).await.unwrap(),
        303
    );

    let by_agent = GrantFilter {
        client_id: Some("cli".into()),
        ..by_tenant.clone()
    };
    let cases = [
        (GrantFilter::default(), "grants_live_created"),
        (by_tenant, "grants_live_tenant_created"),
        (by_agent, "grants_live_client"),
    ];
    for (filter, index) in cases {
        let plan = mandate_store::testing::grant_query_plan(&url, &filter)
            .await
            .unwrap()
            .join("\n");
        assert!(plan.contains(index), "{index} not in:\n{plan}");
        for other_way in ["TEMP B-TREE", "Sort", "Seq Scan", "grants_tenant_created"] {
            assert!(!plan.contains(other_way), "{other_way} in:\n{plan}");
        }
    }
}
