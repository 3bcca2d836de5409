//! Cases for state changes that ride a group-commit batch with their event
//! (`mandate_store::batch`): rotations race to exactly one winner, declined changes write
//! nothing, a batch is atomic, and through the writer one bad change fails only itself.

use super::fixtures::*;
use mandate_core::event::{Action, NewEvent};
use mandate_store::batch::{Change, Entry, Outcome, Retiring, Written};
use mandate_store::group_commit::EventWriter;
use mandate_store::{CodeConsumption, EventFilter, Store, StoreError};
use std::sync::Arc;

/// Rotates family `f_1`'s live token `old`, of generation `generation`, to `new`.
fn rotation(generation: u64, old: &str, new: &str) -> Change {
    Change::RotateRefresh {
        family_id: "f_1".into(),
        retiring: Retiring::Live {
            generation,
            token_hash: old.into(),
        },
        successor: live(generation + 1, new, 1100),
        now: t(1100),
    }
}

/// The live token of family `id`.
async fn live_token(store: &Arc<dyn Store>, id: &str) -> Option<mandate_core::refresh::LiveToken> {
    store
        .refresh_family(id)
        .await
        .unwrap()
        .and_then(|f| f.family.live)
}

/// Redeems `code_hash`, creating family `(id, first token)` when given.
fn redemption(code_hash: &str, family_and_first: Option<(&str, &str)>) -> Change {
    Change::RedeemCode {
        code_hash: code_hash.into(),
        now: t(1100),
        family: family_and_first
            .map(|(id, first)| Box::new(live_family(id, "g_1", 0, first, 1100))),
    }
}

fn entry(change: Option<Change>, reason: &str) -> Entry {
    Entry {
        change,
        event: Some(tagged(reason)),
    }
}

fn tagged(reason: &str) -> NewEvent {
    NewEvent {
        reason: Some(reason.into()),
        ..event(1100, Action::TokenRefreshed, Some("acme"), Some("g_1"))
    }
}

async fn stored_reasons(store: &Arc<dyn Store>) -> Vec<String> {
    store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.event.reason)
        .collect()
}

async fn chain_is_intact(store: &Arc<dyn Store>) {
    let v = mandate_store::audit::verify(store.as_ref(), &[], |_, _| {})
        .await
        .unwrap();
    assert_eq!(v.broken, None, "the chain verifies");
}

pub(crate) async fn batched_rotations_have_one_winner_and_losers_write_nothing(
    store: Arc<dyn Store>,
) {
    let first = live_family("f_1", "g_1", 0, "r_live", 1000);
    store.create_family(&first).await.unwrap();
    let (writer, task) = EventWriter::spawn(store.clone());
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let change = rotation(0, "r_live", &format!("r_next_{i}"));
                (
                    i,
                    writer
                        .append_with(change, tagged(&format!("rotation {i}")))
                        .await,
                )
            })
        })
        .collect();
    let plain: Vec<_> = (0..5)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(tagged(&format!("plain {i}"))).await })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (i, written) = racer.await.unwrap();
        match written.unwrap() {
            Written::Durable(_) => winners.push(i),
            Written::Declined => {}
        }
    }
    for p in plain {
        p.await.unwrap().unwrap();
    }
    drop(writer);
    task.await.unwrap();

    assert_eq!(
        winners.len(),
        1,
        "exactly one rotation applies: {winners:?}"
    );
    let winner = winners[0];
    assert_eq!(
        live_token(&store, "f_1").await,
        Some(live(1, &format!("r_next_{winner}"), 1100)),
        "only the winner's successor is live"
    );
    let mut reasons = stored_reasons(&store).await;
    reasons.sort();
    let mut expected: Vec<String> = (0..5).map(|i| format!("plain {i}")).collect();
    expected.push(format!("rotation {winner}"));
    expected.sort();
    assert_eq!(reasons, expected, "declined rotations left no event");
    chain_is_intact(&store).await;
}

/// A change applied alone (as PostgreSQL's writer applies them): a live-token rotation
/// applies once, and the same rotation again (a racer that read the same token) is declined
/// and changes nothing.
pub(crate) async fn a_rotation_applied_alone_applies_once(store: Arc<dyn Store>) {
    store
        .create_family(&live_family("f_1", "g_1", 0, "r_live", 1000))
        .await
        .unwrap();
    let first = store
        .apply_change_alone(&rotation(0, "r_live", "r_a"))
        .await
        .unwrap();
    assert!(!first.declined);
    let again = store
        .apply_change_alone(&rotation(0, "r_live", "r_b"))
        .await
        .unwrap();
    assert!(again.declined, "the token was rotated already");
    assert_eq!(live_token(&store, "f_1").await, Some(live(1, "r_a", 1100)));
    let next = store
        .apply_change_alone(&rotation(1, "r_a", "r_c"))
        .await
        .unwrap();
    assert!(!next.declined);
    assert_eq!(live_token(&store, "f_1").await, Some(live(2, "r_c", 1100)));
}

/// A redemption applied alone (as PostgreSQL's writer applies them): the first consumes the
/// code, creates its family and records the family on the code; a replay is declined and
/// creates nothing; one whose family cannot be written (its id is taken) consumes nothing.
pub(crate) async fn a_redemption_applied_alone_is_all_or_nothing(store: Arc<dyn Store>) {
    store.insert_code(&code("h_1")).await.unwrap();
    store
        .create_family(&live_family("f_1", "g_1", 0, "r_1", 1000))
        .await
        .unwrap();
    let failed = store
        .apply_change_alone(&redemption("h_1", Some(("f_1", "r_other"))))
        .await;
    assert!(failed.is_err(), "family f_1 exists already");
    assert_eq!(live_token(&store, "f_1").await, Some(live(0, "r_1", 1000)));

    let first = store
        .apply_change_alone(&redemption("h_1", Some(("f_2", "r_f2"))))
        .await
        .unwrap();
    assert!(
        !first.declined,
        "the failed attempt left the code unconsumed"
    );
    assert!(matches!(first.consumed, Some(CodeConsumption::Fresh(_))));
    assert_eq!(live_token(&store, "f_2").await, Some(live(0, "r_f2", 1100)));

    let replay = store
        .apply_change_alone(&redemption("h_1", Some(("f_3", "r_f3"))))
        .await
        .unwrap();
    assert!(replay.declined);
    match replay.consumed {
        Some(CodeConsumption::Replayed(c)) => assert_eq!(c.family_id.as_deref(), Some("f_2")),
        other => panic!("a replay, not {other:?}"),
    }
    assert!(store.refresh_family("f_3").await.unwrap().is_none());

    let unknown = store
        .apply_change_alone(&redemption("h_unknown", Some(("f_4", "r_f4"))))
        .await
        .unwrap();
    assert!(unknown.declined);
    assert_eq!(unknown.consumed, Some(CodeConsumption::Unknown));
    assert!(store.refresh_family("f_4").await.unwrap().is_none());
}

pub(crate) async fn a_batch_applies_its_changes_and_events_atomically(store: Arc<dyn Store>) {
    for (id, first) in [("f_1", "r_1"), ("f_x", "r_x")] {
        store
            .create_family(&live_family(id, "g_1", 0, first, 1000))
            .await
            .unwrap();
    }
    store.insert_code(&code("h_1")).await.unwrap();
    store.insert_code(&code("h_2")).await.unwrap();

    // A change that cannot apply (a new family whose id is taken) fails the whole batch:
    // nothing is written, not even the changes applied before it.
    let failed = store
        .commit_batch(&[
            entry(Some(rotation(0, "r_1", "r_2")), "rotation"),
            entry(Some(redemption("h_1", Some(("f_2", "r_f2")))), "redeemed"),
            entry(
                Some(redemption("h_2", Some(("f_x", "r_x2")))),
                "bad redemption",
            ),
            entry(None, "plain"),
        ])
        .await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    assert_eq!(
        live_token(&store, "f_1").await,
        Some(live(0, "r_1", 1000)),
        "rolled back"
    );
    assert_eq!(live_token(&store, "f_x").await, Some(live(0, "r_x", 1000)));
    assert_eq!(store.refresh_family("f_2").await.unwrap(), None);
    for code in ["h_1", "h_2"] {
        let unused = store.authorization_code(code).await.unwrap().unwrap();
        assert!(!unused.consumed, "{code}: the redemption was rolled back");
    }
    assert!(stored_reasons(&store).await.is_empty());

    // The same batch without the bad change: everything lands, in input order.
    let outcomes = store
        .commit_batch(&[
            entry(Some(rotation(0, "r_1", "r_2")), "rotation"),
            entry(Some(redemption("h_1", Some(("f_2", "r_f2")))), "redeemed"),
            entry(None, "plain"),
        ])
        .await
        .unwrap();
    let seqs: Vec<_> = outcomes.iter().map(|o| o.seq).collect();
    assert!(seqs.iter().all(Option::is_some), "{outcomes:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(outcomes.iter().all(|o| !o.declined), "{outcomes:?}");
    assert!(matches!(
        outcomes[1].consumed,
        Some(CodeConsumption::Fresh(_))
    ));
    assert_eq!(live_token(&store, "f_1").await, Some(live(1, "r_2", 1100)));
    assert_eq!(
        store.refresh_family("f_2").await.unwrap().unwrap().family,
        live_family("f_2", "g_1", 0, "r_f2", 1100)
    );
    let used = store.authorization_code("h_1").await.unwrap().unwrap();
    assert!(used.consumed);
    assert_eq!(used.code.family_id.as_deref(), Some("f_2"));
    assert_eq!(
        stored_reasons(&store).await,
        ["rotation", "redeemed", "plain"]
    );

    // Redeeming a used or an unknown code is declined: no family, no event, and the outcome
    // says what was found.
    let outcomes = store
        .commit_batch(&[
            entry(Some(redemption("h_1", Some(("f_3", "r_f3")))), "replayed"),
            entry(Some(redemption("h_unknown", None)), "unknown"),
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| o.declined && o.seq.is_none()));
    match &outcomes[0].consumed {
        Some(CodeConsumption::Replayed(c)) => assert_eq!(c.family_id.as_deref(), Some("f_2")),
        other => panic!("a used code is a replay: {other:?}"),
    }
    assert_eq!(outcomes[1].consumed, Some(CodeConsumption::Unknown));
    assert_eq!(store.refresh_family("f_3").await.unwrap(), None);

    // Rotating the same token again is declined; the batch's other event still lands.
    let outcomes = store
        .commit_batch(&[
            entry(Some(rotation(0, "r_1", "r_3")), "again"),
            entry(None, "after"),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes[0],
        Outcome {
            seq: None,
            declined: true,
            consumed: None
        }
    );
    assert!(outcomes[1].seq.is_some());
    assert_eq!(live_token(&store, "f_1").await, Some(live(1, "r_2", 1100)));
    assert!(!stored_reasons(&store).await.contains(&"again".to_owned()));
    chain_is_intact(&store).await;
}

pub(crate) async fn the_writer_fails_only_the_change_that_cannot_apply(store: Arc<dyn Store>) {
    for (id, first) in [("f_1", "r_1"), ("f_x", "r_x")] {
        store
            .create_family(&live_family(id, "g_1", 0, first, 1000))
            .await
            .unwrap();
    }
    let (writer, task) = EventWriter::spawn(store.clone());
    // Many rounds, so at least some batches mix the bad change with good entries.
    for round in 0..10u64 {
        let code_hash = format!("h_bad_{round}");
        store.insert_code(&code(&code_hash)).await.unwrap();
        let bad = {
            let writer = writer.clone();
            tokio::spawn(async move {
                // f_x exists: a redemption cannot create it again.
                let change = redemption(&code_hash, Some(("f_x", "r_x2")));
                writer.append_with(change, tagged("bad")).await
            })
        };
        let good: Vec<_> = (0..8)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(
                    async move { writer.append(tagged(&format!("good {round}.{i}"))).await },
                )
            })
            .collect();
        let rotate = {
            let writer = writer.clone();
            tokio::spawn(async move {
                let (old, new) = (format!("r_{}", round + 1), format!("r_{}", round + 2));
                writer
                    .append_with(rotation(round, &old, &new), tagged("rotated"))
                    .await
            })
        };
        assert!(bad.await.unwrap().is_err(), "round {round}");
        for g in good {
            g.await.unwrap().unwrap();
        }
        let rotated = rotate.await.unwrap().unwrap();
        assert!(
            matches!(rotated, Written::Durable(_)),
            "round {round}: {rotated:?}"
        );
    }
    drop(writer);
    task.await.unwrap();
    let reasons = stored_reasons(&store).await;
    assert_eq!(reasons.iter().filter(|r| r.starts_with("good")).count(), 80);
    assert_eq!(reasons.iter().filter(|r| *r == "rotated").count(), 10);
    assert!(!reasons.iter().any(|r| r == "bad"));
    assert_eq!(
        live_token(&store, "f_1").await.map(|l| l.token_hash),
        Some("r_11".into())
    );
    assert_eq!(
        live_token(&store, "f_x").await,
        Some(live(0, "r_x", 1000)),
        "the failed redemption left nothing"
    );
    let unused = store.authorization_code("h_bad_0").await.unwrap().unwrap();
    assert!(!unused.consumed, "nor consumed its code");
    chain_is_intact(&store).await;
}

pub(crate) async fn codes_consumed_through_the_writer_have_one_owner(store: Arc<dyn Store>) {
    store.insert_code(&code("h_1")).await.unwrap();
    let (writer, task) = EventWriter::spawn(store.clone());
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.consume_code("h_1", t(1010)).await })
        })
        .collect();
    let mut fresh = 0;
    for racer in racers {
        match racer.await.unwrap().unwrap() {
            CodeConsumption::Fresh(c) => {
                assert_eq!(c.code_hash, "h_1");
                fresh += 1;
            }
            CodeConsumption::Replayed(c) => assert_eq!(c.code_hash, "h_1"),
            CodeConsumption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1, "exactly one consumer owns the redemption");
    assert_eq!(
        writer.consume_code("h_unknown", t(1010)).await.unwrap(),
        CodeConsumption::Unknown
    );
    drop(writer);
    task.await.unwrap();
    assert!(
        stored_reasons(&store).await.is_empty(),
        "consuming writes no event"
    );
}

/// `append_under_grant`: in the same batches as plain appends, the events of grants that are
/// revoked, expired or unknown when the writer takes the batch up are declined and written
/// nowhere; the others and the plain ones are durable, and the chain stays whole.
pub(crate) async fn the_writer_declines_events_whose_grant_is_no_longer_in_force(
    store: Arc<dyn Store>,
) {
    let now = t(1100);
    store
        .create_grant(&grant("g_live", None, 1000))
        .await
        .unwrap();
    store
        .create_grant(&grant("g_revoked", Some("u_1"), 1000))
        .await
        .unwrap();
    let expiring = mandate_core::grant::Grant {
        expires_at: Some(now),
        ..grant("g_expired", Some("u_2"), 1000)
    };
    store.create_grant(&expiring).await.unwrap();
    store
        .revoke_grant("g_revoked", t(1050), "test")
        .await
        .unwrap();
    let (writer, task) = EventWriter::spawn(store.clone());
    let cases = [
        ("g_live", true),
        ("g_revoked", false),
        ("g_expired", false),
        ("g_unknown", false),
    ];
    for round in 0..5 {
        let checked: Vec<_> = cases
            .iter()
            .map(|&(grant_id, in_force)| {
                let writer = writer.clone();
                let event = tagged(&format!("{grant_id} {round}"));
                let task =
                    tokio::spawn(
                        async move { writer.append_under_grant(grant_id, now, event).await },
                    );
                (grant_id, in_force, task)
            })
            .collect();
        let plain: Vec<_> = (0..4)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(
                    async move { writer.append(tagged(&format!("plain {round}.{i}"))).await },
                )
            })
            .collect();
        for (grant_id, in_force, task) in checked {
            let written = task.await.unwrap().unwrap();
            assert_eq!(
                matches!(written, Written::Durable(_)),
                in_force,
                "round {round}, {grant_id}: {written:?}"
            );
        }
        for p in plain {
            p.await.unwrap().unwrap();
        }
    }
    // Revoked after it was used: the next event under it is declined.
    store.revoke_grant("g_live", t(1090), "test").await.unwrap();
    let after = writer
        .append_under_grant("g_live", now, tagged("g_live after"))
        .await
        .unwrap();
    assert_eq!(after, Written::Declined);
    drop(writer);
    task.await.unwrap();
    let reasons = stored_reasons(&store).await;
    assert_eq!(
        reasons.iter().filter(|r| r.starts_with("plain")).count(),
        20
    );
    assert_eq!(
        reasons.iter().filter(|r| r.starts_with("g_live ")).count(),
        5
    );
    for declined in ["g_revoked", "g_expired", "g_unknown", "g_live after"] {
        assert!(
            !reasons.iter().any(|r| r.starts_with(declined)),
            "{declined}: {reasons:?}"
        );
    }
    chain_is_intact(&store).await;
}
