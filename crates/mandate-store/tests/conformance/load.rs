//! Cases for bulk loading: rows loaded in batches read back exactly as rows stored one by one.

use super::fixtures::*;
use mandate_store::batch::Retiring;
use mandate_store::{CodeConsumption, LoadBatch, Store, StoreError};
use std::sync::Arc;

/// More rows than one SQLite statement takes (500), so full and partial statements both run.
const ROWS: usize = 1_234;

/// `rows` users, each with one grant and its family (holding its first token); and three codes.
fn batch(prefix: &str, rows: usize) -> LoadBatch {
    let mut b = LoadBatch::default();
    for i in 0..rows {
        let u = user(
            &format!("{prefix}u_{i}"),
            "acme",
            &format!("{prefix}load-{i}"),
        );
        let g = grant(&format!("{prefix}g_{i}"), Some(&u.id), 1000 + i as i64);
        b.users.push(u);
        let f = live_family(
            &format!("{prefix}f_{i}"),
            &g.id,
            0,
            &format!("{prefix}r_{i}"),
            1000,
        );
        b.families.push(f);
        b.grants.push(g);
    }
    b.codes = (0..3)
        .map(|i| mandate_core::code::AuthorizationCode {
            grant_id: format!("{prefix}g_{i}"),
            ..code(&format!("{prefix}c_{i}"))
        })
        .collect();
    b
}

pub(crate) async fn bulk_loaded_rows_read_back_like_single_inserts(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    let b = batch("", ROWS);
    store.load_batch(&b).await.unwrap();

    for i in [0, 499, 500, 1000, ROWS - 1] {
        let u = &b.users[i];
        assert_eq!(store.user(&u.id).await.unwrap().as_ref(), Some(u));
        let g = &b.grants[i];
        assert_eq!(store.grant(&g.id).await.unwrap().as_ref(), Some(g));
        let f = &b.families[i];
        let look = store.refresh_family(&f.id).await.unwrap().unwrap();
        assert_eq!(&look.family, f);
        assert!(look.grant.is_some() && look.user_active);
    }
    // A loaded token rotates like any other.
    let first = Retiring::Live {
        generation: 0,
        token_hash: "r_7".into(),
    };
    assert!(
        store
            .rotate_refresh_token("f_7", &first, &live(1, "r_next", 1100), t(1100))
            .await
            .unwrap()
    );
    match store.consume_code("c_2", t(1010)).await.unwrap() {
        CodeConsumption::Fresh(c) => assert_eq!(c, b.codes[2]),
        other => panic!("{other:?}"),
    }
    let listed = store
        .grants(
            &mandate_store::GrantFilter {
                tenant_id: Some("acme".into()),
                ..Default::default()
            },
            None,
            ROWS as u32 + 1,
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), ROWS);
}

pub(crate) async fn a_bulk_load_with_a_duplicate_stores_nothing(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    store.load_batch(&batch("a", 10)).await.unwrap();
    let mut second = batch("b", 600);
    // The last family's id collides with one already loaded.
    if let Some(f) = second.families.last_mut() {
        f.id = "af_3".into();
    }
    let err = store.load_batch(&second).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.grant("bg_0").await.unwrap(), None, "rolled back");
    assert_eq!(store.refresh_family("bf_0").await.unwrap(), None);
    // Nor does a load that gives a user a second live grant to the same agent.
    let mut again = batch("c", 3);
    again.users.pop();
    if let Some(g) = again.grants.last_mut() {
        g.user_id = Some("au_1".into());
    }
    let err = store.load_batch(&again).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.user("cu_0").await.unwrap(), None, "rolled back");
    // An empty batch is fine.
    store.load_batch(&LoadBatch::default()).await.unwrap();
}
