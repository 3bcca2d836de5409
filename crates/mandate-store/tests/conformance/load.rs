//! Cases for bulk loading: rows loaded in batches read back exactly as rows stored one by one.

use super::fixtures::*;
use mandate_store::{CodeConsumption, LoadBatch, Store, StoreError};
use std::sync::Arc;

/// More rows than one SQLite statement takes (500), so full and partial statements both run.
const ROWS: usize = 1_234;

/// `rows` users, each with one grant, its family and first token; and three codes.
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
        let f = family(&format!("{prefix}f_{i}"), &g.id);
        b.families.push((
            f,
            token(&format!("{prefix}r_{i}"), &format!("{prefix}f_{i}"), 1000),
        ));
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
        let (f, first) = &b.families[i];
        let look = store
            .refresh_token(&first.token_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&look.family, f);
        assert_eq!(&look.token, first);
        assert!(!look.successor_live);
    }
    // A loaded token rotates like any other.
    let (_, first) = &b.families[7];
    assert!(
        store
            .rotate_refresh_token(&first.token_hash, &token("r_next", "f_7", 1100), t(1100))
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
    // The last family's first token collides with one already loaded.
    if let Some((_, t)) = second.families.last_mut() {
        t.token_hash = "ar_3".into();
    }
    let err = store.load_batch(&second).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.grant("bg_0").await.unwrap(), None, "rolled back");
    assert_eq!(store.refresh_token("br_0").await.unwrap(), None);
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
