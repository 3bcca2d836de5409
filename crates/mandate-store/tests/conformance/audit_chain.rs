//! The audit chain: every append, batched, single or inside another write, numbered without
//! gaps in commit order and chained, also under concurrent writers.

use super::fixtures::{t, tenant};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_store::Store;
use std::sync::Arc;

fn event(i: usize) -> NewEvent {
    let mut e = NewEvent::new(t(1_000 + i as i64), Action::TokenIssued, ActorKind::Agent);
    e.client_id = Some(format!("agent-{i}"));
    e.detail = serde_json::json!({ "n": i, "text": "ünïcode \u{1F512}" });
    e
}

pub(crate) async fn audit_chain_is_gapless_and_verifies_under_concurrent_writers(
    store: Arc<dyn Store>,
) {
    let empty = mandate_store::audit::verify(store.as_ref(), &[], |_, _| {})
        .await
        .unwrap();
    assert_eq!((empty.checked, empty.broken), (0, None));
    assert_eq!(
        empty.head.start_seq, 0,
        "a new database is chained from the start"
    );

    store.upsert_tenant(&tenant("acme")).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..6 {
                let size = 1 + (w * 7 + round * 3) % 40;
                let batch: Vec<_> = (0..size)
                    .map(|i| event(w * 1000 + round * 100 + i))
                    .collect();
                let seqs = store.append_events(&batch).await.unwrap();
                assert!(
                    seqs.windows(2).all(|p| p[1] == p[0] + 1),
                    "a batch is contiguous"
                );
            }
            // A write that appends its event inside its own transaction.
            let role = mandate_core::admin::RoleAssignment {
                principal: mandate_core::admin::Principal::Agent(format!("bot-{w}")),
                role: mandate_core::admin::Role::Operator,
            };
            store.set_admin_role(&role, event(w)).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut progress_calls = 0;
    let v = mandate_store::audit::verify(store.as_ref(), &[], |checked, total| {
        progress_calls += 1;
        assert!(checked <= total as u64);
    })
    .await
    .unwrap();
    assert_eq!(v.broken, None);
    assert!(progress_calls >= 1);
    let rows = store.chain_rows(0, 100_000).await.unwrap();
    assert_eq!(v.checked, rows.len() as u64);
    assert_eq!(v.head.seq, rows.len() as i64, "gapless from 1");
    assert!(rows.iter().enumerate().all(|(i, r)| r.seq == i as i64 + 1));
    assert_eq!(
        rows.last().unwrap().hash.as_deref(),
        Some(v.last_hash.as_str())
    );
}

/// The group-commit path chains a batch onto the last link this process wrote, and must notice
/// when another writer moved the head in between: the batch then still lands after that
/// writer's event, contiguous and chained, and nothing is written twice.
pub(crate) async fn batches_after_another_writer_chain_onto_its_event(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    let batch = |from: usize, n: usize| (from..from + n).map(event).collect::<Vec<_>>();
    assert_eq!(store.append_events(&batch(0, 3)).await.unwrap(), [1, 2, 3]);
    assert_eq!(store.append_events(&batch(3, 2)).await.unwrap(), [4, 5]);
    let role = mandate_core::admin::RoleAssignment {
        principal: mandate_core::admin::Principal::Agent("bot".into()),
        role: mandate_core::admin::Role::Operator,
    };
    store.set_admin_role(&role, event(99)).await.unwrap();
    assert_eq!(
        store.append_events(&batch(5, 4)).await.unwrap(),
        [7, 8, 9, 10]
    );
    assert_eq!(store.append_events(&batch(9, 1)).await.unwrap(), [11]);
    let v = mandate_store::audit::verify(store.as_ref(), &[], |_, _| {})
        .await
        .unwrap();
    assert_eq!((v.broken, v.checked, v.head.seq), (None, 11, 11));
    let rows = store.chain_rows(0, 100).await.unwrap();
    assert_eq!(rows.len(), 11);
    let agent = |seq: usize| rows[seq - 1].client_id.clone();
    assert_eq!(
        agent(6),
        Some("agent-99".into()),
        "the other writer's event"
    );
    assert_eq!(agent(7), Some("agent-5".into()));
}
