//! Audit retention: purging up to a signed checkpoint keeps later events and a chain that
//! verifies from the checkpoint; purging is idempotent, capped by export cursors, ordered with
//! concurrent writers; the triggers still refuse editing and deleting kept events; and every
//! kind of tampering with the moved start is found.
//!
//! Cases named `*_raw` also get the database URL, to act as someone with direct write access.

use super::fixtures::t;
use mandate_core::audit::Break;
use mandate_core::audit_checkpoint;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::jwt::{Algorithm, SigningKey};
use mandate_store::audit::Verification;
use mandate_store::{AuditCheckpoint, PurgedEvents, Store, StoreError, StoredSigningKey};
use sqlx::Connection;
use std::sync::Arc;

/// Event `i`, dated `1000 + i`.
fn event(i: i64) -> NewEvent {
    let mut e = NewEvent::new(t(1_000 + i), Action::TokenIssued, ActorKind::Agent);
    e.client_id = Some(format!("agent-{i}"));
    e.detail = serde_json::json!({ "n": i });
    e
}

/// A signing key whose public part is stored as the server's would be.
async fn server_key(store: &dyn Store) -> SigningKey {
    let (key, _) = SigningKey::generate(Algorithm::EdDSA, "k_test".into()).unwrap();
    store
        .insert_signing_key(&StoredSigningKey {
            kid: "k_test".into(),
            alg: "EdDSA".into(),
            private_sealed: vec![0; 12],
            public_jwk: serde_json::to_value(key.public_jwk()).unwrap(),
            created_at: t(1),
            activates_at: t(1),
            retired_at: None,
        })
        .await
        .unwrap();
    key
}

/// Signs and records a checkpoint for event `seq` (as the server does); `false` if one was
/// there already.
async fn checkpoint(store: &dyn Store, key: &SigningKey, seq: i64) -> StoreResult<bool> {
    let hash = store
        .event_hash(seq)
        .await?
        .ok_or(StoreError::NotFound("event"))?;
    let jws = audit_checkpoint::sign(key, "https://as.example", seq, &hash, t(5_000)).unwrap();
    let cp = AuditCheckpoint {
        seq,
        hash,
        created_at: 5_000,
        jws,
    };
    let e = NewEvent::new(t(5_000), Action::AuditCheckpoint, ActorKind::System);
    store.record_checkpoint(&cp, e).await
}

type StoreResult<T> = Result<T, StoreError>;

async fn purge_through(store: &dyn Store, key: &SigningKey, seq: i64) -> Option<PurgedEvents> {
    checkpoint(store, key, seq).await.unwrap();
    let e = NewEvent::new(t(5_000), Action::AuditPurged, ActorKind::System);
    store.purge_events(seq, e).await.unwrap()
}

async fn verify(store: &dyn Store) -> Verification {
    let keys = mandate_store::audit::stored_public_keys(store)
        .await
        .unwrap();
    mandate_store::audit::verify(store, &keys, |_, _| {})
        .await
        .unwrap()
}

async fn append(store: &dyn Store, range: std::ops::RangeInclusive<i64>) {
    let batch: Vec<_> = range.map(event).collect();
    store.append_events(&batch).await.unwrap();
}

/// 20 events (1..=20, dated 1000..=1019), purged through event 10.
async fn purged_store(store: &dyn Store) -> SigningKey {
    let key = server_key(store).await;
    append(store, 0..=19).await;
    let cutoff = store.purge_cutoff(t(1_010), &[]).await.unwrap();
    assert_eq!(cutoff, 10, "events dated before 1010 are 1..=10");
    let purged = purge_through(store, &key, cutoff).await.unwrap();
    assert_eq!(
        purged,
        PurgedEvents {
            purged: 10,
            from_seq: 0,
            to_seq: 10,
            // 21 is the checkpoint's event, 22 the purge's.
            event_seq: 22,
        }
    );
    key
}

pub(crate) async fn retention_purges_through_a_checkpoint_and_the_chain_verifies_from_it(
    store: Arc<dyn Store>,
) {
    let key = purged_store(store.as_ref()).await;
    let rows = store.chain_rows(0, 1_000).await.unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (11..=22).collect::<Vec<_>>(), "only events after 10");
    assert_eq!(rows[10].action, "audit.checkpoint");
    assert_eq!(rows[11].action, "audit.purged");
    let detail: serde_json::Value = serde_json::from_str(&rows[11].detail).unwrap();
    assert_eq!(detail["purged"], 10);
    assert_eq!(detail["from"], 1);
    assert_eq!(detail["to"], 10);
    assert_eq!(detail["checkpoint_seq"], 10);

    let head = store.chain_head().await.unwrap();
    assert_eq!((head.start_seq, head.seq), (10, 22));
    let v = verify(store.as_ref()).await;
    assert_eq!(v.broken, None);
    assert_eq!(v.checked, 12);
    let anchor = v.anchor.expect("anchored at the checkpoint");
    assert_eq!((anchor.seq, anchor.kid.as_str()), (10, "k_test"));
    assert_eq!(Some(anchor.hash), head.start_hash);

    // New events chain on after the purge, singly and through a transaction's own event.
    append(store.as_ref(), 100..=104).await;
    let role = mandate_core::admin::RoleAssignment {
        principal: mandate_core::admin::Principal::Agent("bot".into()),
        role: mandate_core::admin::Role::Operator,
    };
    store.set_admin_role(&role, event(105)).await.unwrap();
    assert_eq!(verify(store.as_ref()).await.broken, None);

    // Purging again through the same event changes nothing and writes no event.
    let e = NewEvent::new(t(5_000), Action::AuditPurged, ActorKind::System);
    assert_eq!(store.purge_events(10, e.clone()).await.unwrap(), None);
    assert_eq!(store.purge_events(3, e.clone()).await.unwrap(), None);
    assert!(
        checkpoint(store.as_ref(), &key, 12).await.unwrap(),
        "a checkpoint without a purge"
    );
    assert_eq!(store.chain_head().await.unwrap().seq, 29);
    assert_eq!(store.purge_cutoff(t(1_010), &[]).await.unwrap(), 10);

    // A second checkpoint for the same event keeps the first.
    let first = store.audit_checkpoint(12).await.unwrap().unwrap();
    assert!(!checkpoint(store.as_ref(), &key, 12).await.unwrap());
    assert_eq!(store.audit_checkpoint(12).await.unwrap().unwrap(), first);

    // Refused: purging without a checkpoint, through the head, or a checkpoint whose hash is
    // not the event's.
    assert!(matches!(
        store.purge_events(14, e.clone()).await,
        Err(StoreError::NotFound(_))
    ));
    let head = store.chain_head().await.unwrap().seq;
    assert!(store.purge_events(head, e.clone()).await.is_err());
    let forged = AuditCheckpoint {
        seq: 15,
        hash: "00".repeat(32),
        created_at: 1,
        jws: "x.y.z".into(),
    };
    let c = NewEvent::new(t(5_000), Action::AuditCheckpoint, ActorKind::System);
    assert!(matches!(
        store.record_checkpoint(&forged, c).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(store.audit_checkpoint(15).await.unwrap(), None);
    assert_eq!(store.chain_head().await.unwrap().seq, head, "no event");
    assert_eq!(verify(store.as_ref()).await.broken, None);
}

pub(crate) async fn retention_never_purges_what_an_export_sink_has_not_delivered(
    store: Arc<dyn Store>,
) {
    let key = server_key(store.as_ref()).await;
    append(store.as_ref(), 0..=19).await;
    let sinks = vec!["siem".to_owned(), "archive".to_owned()];
    assert_eq!(
        store.purge_cutoff(t(9_999), &[]).await.unwrap(),
        19,
        "all old, but never the head"
    );
    assert_eq!(
        store.purge_cutoff(t(9_999), &sinks).await.unwrap(),
        0,
        "sinks that never delivered hold everything back"
    );
    assert!(
        store
            .advance_export_cursor("siem", 0, 15, t(2))
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_export_cursor("archive", 0, 7, t(2))
            .await
            .unwrap()
    );
    assert_eq!(store.purge_cutoff(t(9_999), &sinks).await.unwrap(), 7);
    assert_eq!(store.purge_cutoff(t(1_004), &sinks).await.unwrap(), 4);
    purge_through(store.as_ref(), &key, 7).await.unwrap();
    // A sink's cursor behind the start (it was removed from the configuration and added
    // back) cannot move the cutoff backwards.
    assert_eq!(
        store
            .purge_cutoff(t(9_999), &["new-sink".to_owned()])
            .await
            .unwrap(),
        7
    );
    assert_eq!(verify(store.as_ref()).await.broken, None);
}

pub(crate) async fn concurrent_appends_and_purges_leave_a_gapless_verifiable_chain(
    store: Arc<dyn Store>,
) {
    let key = Arc::new(server_key(store.as_ref()).await);
    append(store.as_ref(), 0..=9).await;
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..15 {
                let first = w * 1_000 + round * 10;
                append(store.as_ref(), first..=first + (w + round) % 7).await;
            }
        }));
    }
    // Two "nodes" purging everything but the head, over and over, while the writers write.
    let mut purgers = Vec::new();
    for _ in 0..2 {
        let store = store.clone();
        let key = key.clone();
        purgers.push(tokio::spawn(async move {
            let mut purged = 0;
            for _ in 0..10 {
                let cutoff = store.purge_cutoff(t(1_000_000), &[]).await.unwrap();
                if cutoff <= store.chain_head().await.unwrap().start_seq {
                    continue;
                }
                // The other node may purge past `cutoff` in between; then this one has
                // nothing left to do.
                if let Err(e) = checkpoint(store.as_ref(), &key, cutoff).await {
                    let start = store.chain_head().await.unwrap().start_seq;
                    assert!(start >= cutoff, "{e}: start {start}, cutoff {cutoff}");
                    continue;
                }
                let e = NewEvent::new(t(5_000), Action::AuditPurged, ActorKind::System);
                if store.purge_events(cutoff, e).await.unwrap().is_some() {
                    purged += 1;
                }
            }
            purged
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut purges = 0;
    for p in purgers {
        purges += p.await.unwrap();
    }
    assert!(purges >= 1, "something was purged");
    let head = store.chain_head().await.unwrap();
    assert!(head.start_seq > 0);
    let rows = store.chain_rows(0, 100_000).await.unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (head.start_seq + 1..=head.seq).collect::<Vec<_>>(),
        "gapless from the start to the head"
    );
    let v = verify(store.as_ref()).await;
    assert_eq!(v.broken, None);
    assert_eq!(v.anchor.map(|a| a.seq), Some(head.start_seq));
}

/// Runs `sql` on the database directly (with the event triggers in place unless `bypass`).
pub(crate) async fn raw(url: &str, sql: &str, bypass: bool) -> Result<(), String> {
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        if bypass {
            sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
                .execute(&mut c)
                .await
                .unwrap();
        }
        let done = sqlx::query(sql).execute(&mut c).await;
        if bypass {
            sqlx::query("ALTER TABLE events ENABLE TRIGGER USER")
                .execute(&mut c)
                .await
                .unwrap();
        }
        done.map(|_| ()).map_err(|e| e.to_string())
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        if bypass {
            for trigger in ["events_no_update", "events_no_delete"] {
                sqlx::query(&format!("DROP TRIGGER IF EXISTS {trigger}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
        sqlx::query(sql)
            .execute(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

pub(crate) async fn after_a_purge_kept_events_still_cannot_be_edited_or_deleted_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    purged_store(store.as_ref()).await;
    for sql in [
        "DELETE FROM events WHERE seq = 11",
        "DELETE FROM events WHERE seq <= 12",
        "DELETE FROM events",
        "UPDATE events SET reason = 'edited' WHERE seq = 15",
        "UPDATE events SET reason = 'edited'",
    ] {
        let err = raw(&url, sql, false).await.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.chain_rows(0, 100).await.unwrap().len(), 12);
    assert_eq!(verify(store.as_ref()).await.broken, None);
}

pub(crate) async fn tampering_with_the_start_hash_is_found_raw(store: Arc<dyn Store>, url: String) {
    purged_store(store.as_ref()).await;
    let real = store.chain_head().await.unwrap().start_hash.unwrap();
    let other = "ab".repeat(32);
    raw(
        &url,
        &format!("UPDATE event_chain SET start_hash = '{other}'"),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        verify(store.as_ref()).await.broken,
        Some(Break::CheckpointMismatch {
            seq: 10,
            start_hash: other.clone(),
            attested_seq: 10,
            attested_hash: real,
        })
    );
    // Rewriting the stored checkpoint's hash column too does not change what it attests.
    raw(
        &url,
        &format!("UPDATE audit_checkpoints SET hash = '{other}'"),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(
        verify(store.as_ref()).await.broken,
        Some(Break::CheckpointMismatch { seq: 10, .. })
    ));
}

pub(crate) async fn deleting_the_checkpoint_is_found_raw(store: Arc<dyn Store>, url: String) {
    purged_store(store.as_ref()).await;
    raw(&url, "DELETE FROM audit_checkpoints WHERE seq = 10", false)
        .await
        .unwrap();
    assert_eq!(
        verify(store.as_ref()).await.broken,
        Some(Break::CheckpointMissing { seq: 10 })
    );
}

pub(crate) async fn altering_the_checkpoint_signature_is_found_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    purged_store(store.as_ref()).await;
    let jws = store.audit_checkpoint(10).await.unwrap().unwrap().jws;
    let (signed, sig) = jws.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &sig[1..]);
    raw(
        &url,
        &format!("UPDATE audit_checkpoints SET jws = '{forged}' WHERE seq = 10"),
        false,
    )
    .await
    .unwrap();
    match verify(store.as_ref()).await.broken {
        Some(Break::CheckpointInvalid { seq: 10, reason }) => {
            assert!(reason.contains("signature"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A checkpoint signed by a key that is not the server's is refused too.
    let (stranger, _) = SigningKey::generate(Algorithm::EdDSA, "k_test".into()).unwrap();
    let hash = store.chain_head().await.unwrap().start_hash.unwrap();
    let foreign = audit_checkpoint::sign(&stranger, "https://as.example", 10, &hash, t(1)).unwrap();
    raw(
        &url,
        &format!("UPDATE audit_checkpoints SET jws = '{foreign}' WHERE seq = 10"),
        false,
    )
    .await
    .unwrap();
    assert!(matches!(
        verify(store.as_ref()).await.broken,
        Some(Break::CheckpointInvalid { seq: 10, .. })
    ));
}

pub(crate) async fn moving_the_start_forward_over_deleted_events_is_found_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    purged_store(store.as_ref()).await;
    // Move the start past 13 (with its true hash) and delete 11..=13: the delete trigger
    // allows it now, and the chain from 13 on is intact, but nothing signed says it may
    // start there.
    let hash13 = store.event_hash(13).await.unwrap().unwrap();
    raw(
        &url,
        &format!("UPDATE event_chain SET start_seq = 13, start_hash = '{hash13}'"),
        false,
    )
    .await
    .unwrap();
    raw(&url, "DELETE FROM events WHERE seq <= 13", false)
        .await
        .unwrap();
    assert_eq!(
        verify(store.as_ref()).await.broken,
        Some(Break::CheckpointMissing { seq: 13 })
    );
    // Moving only the number (keeping event 10's hash and checkpoint) is found as well.
    raw(&url, "UPDATE event_chain SET start_hash = NULL", false)
        .await
        .unwrap();
    assert_eq!(
        verify(store.as_ref()).await.broken,
        Some(Break::Modified { seq: 14 }),
        "without a start hash the first event does not chain onto genesis"
    );
}

pub(crate) async fn deleting_kept_events_behind_the_triggers_is_found_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    purged_store(store.as_ref()).await;
    raw(&url, "DELETE FROM events WHERE seq IN (15, 16)", true)
        .await
        .unwrap();
    assert_eq!(
        verify(store.as_ref()).await.broken,
        Some(Break::Deleted { from: 15, to: 16 })
    );
}
