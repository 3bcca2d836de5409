//! Cases for the event log and the group-commit writer on top of it.

use super::fixtures::*;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::revocation::REVOCATION_ACTIONS;
use mandate_store::group_commit::EventWriter;
use mandate_store::{EventFilter, Store};
use std::sync::Arc;

/// The sequence numbers of the events `filter` selects, in the order read.
async fn seqs_matching(store: &Arc<dyn Store>, filter: EventFilter) -> Vec<i64> {
    store
        .events(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect()
}

pub(crate) async fn events_append_in_order_and_filter(store: Arc<dyn Store>) {
    assert_eq!(store.append_events(&[]).await.unwrap(), Vec::<i64>::new());
    let full = NewEvent {
        actor_id: Some("u_1".into()),
        user_id: Some("u_1".into()),
        client_id: Some("cli".into()),
        scopes: Some("contacts.read".into()),
        reason: Some("because".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("curl/8".into()),
        detail: serde_json::json!({"grant_type": "authorization_code", "n": [1, 2]}),
        actor_kind: ActorKind::User,
        ..event(100, Action::ConsentGranted, Some("acme"), Some("g_1"))
    };
    let batch = vec![
        full.clone(),
        event(101, Action::TokenIssued, Some("acme"), Some("g_1")),
        event(102, Action::TokenIssued, Some("other"), Some("g_2")),
        event(103, Action::LoginFailed, None, None),
        event(104, Action::GrantRevoked, Some("acme"), Some("g_1")),
    ];
    let seqs = store.append_events(&batch).await.unwrap();
    assert_eq!(seqs.len(), batch.len());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let more = store
        .append_events(&[event(105, Action::ConfigApplied, None, None)])
        .await
        .unwrap();
    assert!(more[0] > seqs[4]);

    let all = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].seq, seqs[0]);
    assert_eq!(all[0].event, full);
    let got: Vec<_> = all.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got[..5], batch[..]);

    let seqs_of = |filter: EventFilter| seqs_matching(&store, filter);
    let acme = EventFilter {
        tenant_id: Some("acme".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(acme.clone()).await, [seqs[0], seqs[1], seqs[4]]);
    let issued = EventFilter {
        action: Some("token.issued".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(issued).await, [seqs[1], seqs[2]]);
    let g1_issued = EventFilter {
        grant_id: Some("g_1".into()),
        action: Some("token.issued".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(g1_issued).await, [seqs[1]]);
    let any_of = EventFilter {
        actions: vec!["grant.revoked".into(), "login.failed".into()],
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(any_of).await, [seqs[3], seqs[4]]);
    let any_of_in_acme = EventFilter {
        tenant_id: Some("acme".into()),
        actions: vec!["grant.revoked".into(), "login.failed".into()],
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(any_of_in_acme).await, [seqs[4]]);
    let page = EventFilter {
        after_seq: seqs[0],
        limit: 2,
        ..acme
    };
    assert_eq!(seqs_of(page).await, [seqs[1], seqs[4]]);
    let tail = EventFilter {
        after_seq: seqs[4],
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(tail).await, [more[0]]);
}

pub(crate) async fn events_filter_by_user_agent_and_time_both_ways(store: Arc<dyn Store>) {
    let by = |at: i64, user: &str, agent: &str| NewEvent {
        user_id: Some(user.into()),
        client_id: Some(agent.into()),
        ..event(at, Action::TokenIssued, Some("acme"), None)
    };
    let seqs = store
        .append_events(&[
            by(100, "alice", "crm-agent"),
            by(110, "bob", "crm-agent"),
            by(120, "alice", "billing-bot"),
            by(130, "alice", "crm-agent"),
            by(140, "alice", "crm-agent"),
        ])
        .await
        .unwrap();
    let seqs_of = |filter: EventFilter| seqs_matching(&store, filter);
    let alice_via_crm = EventFilter {
        user_id: Some("alice".into()),
        client_id: Some("crm-agent".into()),
        ..EventFilter::default()
    };
    assert_eq!(
        seqs_of(alice_via_crm.clone()).await,
        [seqs[0], seqs[3], seqs[4]]
    );
    let window = EventFilter {
        since: Some(t(110)),
        until: Some(t(140)),
        ..alice_via_crm.clone()
    };
    assert_eq!(
        seqs_of(window).await,
        [seqs[3]],
        "since inclusive, until exclusive"
    );
    let newest = EventFilter {
        newest_first: true,
        limit: 2,
        ..alice_via_crm.clone()
    };
    assert_eq!(seqs_of(newest.clone()).await, [seqs[4], seqs[3]]);
    let older = EventFilter {
        before_seq: Some(seqs[3]),
        ..newest
    };
    assert_eq!(seqs_of(older).await, [seqs[0]]);
    let between = EventFilter {
        after_seq: seqs[0],
        before_seq: Some(seqs[4]),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(between).await, [seqs[1], seqs[2], seqs[3]]);
    let nobody = EventFilter {
        user_id: Some("mallory".into()),
        ..EventFilter::default()
    };
    assert!(seqs_of(nobody).await.is_empty());
}

pub(crate) async fn large_event_batches_keep_input_order(store: Arc<dyn Store>) {
    let batch: Vec<_> = (0..300)
        .map(|i| NewEvent {
            reason: Some(format!("n{i}")),
            ..event(i, Action::TokenIssued, Some("acme"), None)
        })
        .collect();
    let seqs = store.append_events(&batch).await.unwrap();
    assert_eq!(seqs.len(), 300);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let stored = store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 300);
    for (i, (e, seq)) in stored.iter().zip(&seqs).enumerate() {
        assert_eq!(e.seq, *seq);
        assert_eq!(e.event.reason.as_deref(), Some(format!("n{i}").as_str()));
    }
}

pub(crate) async fn group_commit_writer_acknowledges_every_event(store: Arc<dyn Store>) {
    let (writer, task) = EventWriter::spawn(store.clone());
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let e = NewEvent {
                    reason: Some(format!("n{i}")),
                    ..event(i, Action::TokenIssued, None, None)
                };
                (i, writer.append(e).await.unwrap())
            })
        })
        .collect();
    let mut acked = Vec::new();
    for a in appends {
        acked.push(a.await.unwrap());
    }
    drop(writer);
    task.await.unwrap();
    let stored = store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 200);
    for (i, seq) in acked {
        let e = stored.iter().find(|e| e.seq == seq).unwrap();
        assert_eq!(
            e.event.reason,
            Some(format!("n{i}")),
            "seq {seq} is event {i}"
        );
    }
}

/// Counts what the writer reports.
#[derive(Default)]
struct Commits(std::sync::atomic::AtomicUsize);

impl mandate_store::group_commit::WriterObserver for Commits {
    fn committed(&self, waited: std::time::Duration) {
        assert!(waited < std::time::Duration::from_secs(60), "{waited:?}");
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) async fn group_commit_writer_reports_every_commit_and_nothing_pending(
    store: Arc<dyn Store>,
) {
    let commits = Arc::new(Commits::default());
    let (writer, task) = EventWriter::spawn_observed(store.clone(), commits.clone());
    assert_eq!(writer.pending(), 0);
    let appends: Vec<_> = (0..50)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .append(event(i, Action::TokenIssued, None, None))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for a in appends {
        a.await.unwrap();
    }
    // Every append was acknowledged, so each was reported before its acknowledgement.
    assert_eq!(commits.0.load(std::sync::atomic::Ordering::Relaxed), 50);
    assert_eq!(writer.pending(), 0);
    drop(writer);
    task.await.unwrap();
}

pub(crate) async fn event_notifications_announce_commits(store: Arc<dyn Store>) {
    match store.event_notifications().await.unwrap() {
        None => assert_eq!(
            store.backend(),
            "sqlite",
            "only SQLite may lack notifications"
        ),
        Some(mut rx) => {
            rx.borrow_and_update();
            store
                .append_events(&[event(1, Action::TokenIssued, Some("acme"), None)])
                .await
                .unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
                .await
                .expect("a commit is announced")
                .unwrap();
        }
    }
}

/// Followers of the revocation feed read the revocation events only, in order, through an
/// index of their own: the thousands of token events around them are not read, and the plan
/// neither scans the log nor sorts (before migration 0017, PostgreSQL's generic plan walked
/// every event after the reader's position).
pub(crate) async fn revocations_are_read_through_their_own_index_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    let mut revocations = Vec::new();
    for (i, action) in REVOCATION_ACTIONS.iter().enumerate() {
        let tokens: Vec<_> = (0..200)
            .map(|_| event(100, Action::TokenIssued, Some("acme"), Some("g_1")))
            .collect();
        store.append_events(&tokens).await.unwrap();
        let seq = store
            .append_events(&[event(100 + i as i64, *action, Some("acme"), Some("g_1"))])
            .await
            .unwrap();
        revocations.push(seq[0]);
    }
    store
        .append_events(&[event(200, Action::AnomalyDetected, Some("acme"), None)])
        .await
        .unwrap();

    let read = |after, limit| seqs_matching(&store, EventFilter::revocations_after(after, limit));
    assert_eq!(read(0, 500).await, revocations);
    assert_eq!(read(revocations[3], 2).await, revocations[4..6]);
    assert_eq!(read(revocations[12], 500).await, Vec::<i64>::new());

    let plan = mandate_store::testing::event_query_plan(
        &url,
        &EventFilter::revocations_after(revocations[3], 500),
    )
    .await
    .unwrap()
    .join("\n");
    assert!(plan.contains("events_revocations"), "{plan}");
    for other_way in ["SCAN", "TEMP B-TREE", "Sort", "Seq Scan", "events_pkey"] {
        assert!(!plan.contains(other_way), "{other_way} in:\n{plan}");
    }
}

/// A user's token events are read through the user's grants (the user index leaves them out):
/// a read by user still finds exactly that user's events, every kind, in order both ways and a
/// page at a time, and each part of it is an index range scan, neither a scan nor a sort.
pub(crate) async fn events_of_a_user_include_the_tokens_of_their_grants_raw(
    store: Arc<dyn Store>,
    url: String,
) {
    for (id, user, agent) in [
        ("g_a1", Some("u_a"), "cli"),
        ("g_a2", Some("u_a"), "crm"),
        ("g_b", Some("u_b"), "cli"),
        ("g_svc", None, "cli"),
    ] {
        let g = mandate_core::grant::Grant {
            client_id: agent.into(),
            ..grant(id, user, 50)
        };
        store.create_grant(&g).await.unwrap();
    }
    let by = |at: i64, action: Action, user: Option<&str>, grant: Option<&str>| NewEvent {
        user_id: user.map(Into::into),
        client_id: Some("cli".into()),
        ..event(at, action, Some("acme"), grant)
    };
    let mut written = Vec::new();
    for round in 0..30 {
        let at = 100 + round;
        written.extend([
            by(at, Action::TokenIssued, Some("u_a"), Some("g_a1")),
            by(at, Action::TokenRefreshed, Some("u_b"), Some("g_b")),
            by(at, Action::TokenRefreshed, Some("u_a"), Some("g_a2")),
            by(at, Action::TokenIssued, None, Some("g_svc")),
        ]);
        if round % 7 == 0 {
            written.extend([
                by(at, Action::LoginSucceeded, Some("u_a"), None),
                by(at, Action::ConsentGranted, Some("u_a"), Some("g_a2")),
                by(at, Action::GrantRevoked, Some("u_b"), Some("g_b")),
                // A token event without a grant stays in the user index.
                by(at, Action::TokenIssued, Some("u_a"), None),
            ]);
        }
    }
    let seqs = store.append_events(&written).await.unwrap();
    let alices: Vec<i64> = seqs
        .iter()
        .zip(&written)
        .filter(|(_, e)| e.user_id.as_deref() == Some("u_a"))
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(alices.len(), 30 * 2 + 5 * 3);

    let alice = EventFilter {
        user_id: Some("u_a".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_matching(&store, alice.clone()).await, alices);
    // A page at a time, forwards and backwards, with another filter on top.
    let mut forwards = Vec::new();
    let mut after = 0;
    loop {
        let page = EventFilter {
            after_seq: after,
            limit: 7,
            ..alice.clone()
        };
        let got = seqs_matching(&store, page).await;
        let Some(last) = got.last() else { break };
        after = *last;
        forwards.extend(got);
    }
    assert_eq!(forwards, alices);
    let newest = EventFilter {
        newest_first: true,
        before_seq: Some(alices[40]),
        limit: 9,
        ..alice.clone()
    };
    let mut expected: Vec<i64> = alices[31..40].to_vec();
    expected.reverse();
    assert_eq!(seqs_matching(&store, newest).await, expected);
    let refreshed = EventFilter {
        action: Some("token.refreshed".into()),
        ..alice.clone()
    };
    assert_eq!(seqs_matching(&store, refreshed).await.len(), 30);
    let one_grant = EventFilter {
        grant_id: Some("g_a2".into()),
        ..alice.clone()
    };
    assert_eq!(seqs_matching(&store, one_grant).await.len(), 30 + 5);

    let plan = mandate_store::testing::event_query_plan(&url, &alice)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("events_user_beyond_tokens"), "{plan}");
    assert!(plan.contains("events_grant"), "{plan}");
    for other_way in ["SCAN", "TEMP B-TREE", "Sort", "Seq Scan", "events_pkey"] {
        assert!(!plan.contains(other_way), "{other_way} in:\n{plan}");
    }
}
