//! Audit export cursors: start at 0, advance only by compare-and-set, never backwards, and of
//! concurrent advances from one value exactly one wins.

use super::fixtures::t;
use mandate_store::Store;
use std::sync::Arc;

pub(crate) async fn export_cursors_advance_by_compare_and_set(store: Arc<dyn Store>) {
    assert_eq!(store.export_cursor("siem").await.unwrap(), 0, "never ran");
    assert!(
        !store
            .advance_export_cursor("siem", 5, 9, t(1))
            .await
            .unwrap(),
        "not at 5"
    );
    assert_eq!(store.export_cursor("siem").await.unwrap(), 0);

    assert!(
        store
            .advance_export_cursor("siem", 0, 10, t(2))
            .await
            .unwrap()
    );
    assert_eq!(store.export_cursor("siem").await.unwrap(), 10);
    assert!(
        !store
            .advance_export_cursor("siem", 0, 3, t(3))
            .await
            .unwrap(),
        "a stale start does not move it back"
    );
    assert!(
        !store
            .advance_export_cursor("siem", 10, 10, t(3))
            .await
            .unwrap(),
        "not forward"
    );
    assert!(
        !store
            .advance_export_cursor("siem", 10, 4, t(3))
            .await
            .unwrap(),
        "backwards"
    );
    assert!(
        !store
            .advance_export_cursor("siem", 7, 20, t(3))
            .await
            .unwrap(),
        "stale read"
    );
    assert_eq!(store.export_cursor("siem").await.unwrap(), 10);
    assert!(
        store
            .advance_export_cursor("siem", 10, 25, t(4))
            .await
            .unwrap()
    );
    assert_eq!(store.export_cursor("siem").await.unwrap(), 25);
    assert_eq!(
        store.export_cursor("other").await.unwrap(),
        0,
        "sinks are separate"
    );

    // Nodes that read the same value race to advance: one wins, from the start and after.
    for from in [0, 25] {
        let sink = if from == 0 { "race" } else { "siem" };
        let mut tasks = Vec::new();
        for node in 0..8i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .advance_export_cursor(sink, from, from + 10 + node, t(5))
                    .await
                    .unwrap()
            }));
        }
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1, "{sink}: exactly one advance from {from}");
        let now = store.export_cursor(sink).await.unwrap();
        assert!((from + 10..from + 18).contains(&now), "{sink} at {now}");
    }
}
