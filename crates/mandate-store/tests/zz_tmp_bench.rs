// TEMPORARY: measures per-row vs multi-row event inserts. Deleted after measuring.
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::Timestamp;
use std::time::Instant;

fn ev(i: i64) -> NewEvent {
    NewEvent {
        tenant_id: Some("acme".into()),
        client_id: Some("cli".into()),
        reason: Some(format!("n{i}")),
        detail: serde_json::json!({"aud":"https://crm"}),
        ..NewEvent::new(
            Timestamp::from_unix(i),
            Action::TokenIssued,
            ActorKind::Agent,
        )
    }
}

const PER_ROW: &str = "INSERT INTO events (at, action, actor_kind, actor_id, tenant_id, user_id, client_id, grant_id, scopes, reason, ip, user_agent, detail) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING seq";

macro_rules! per_row {
    ($pool:expr, $events:expr) => {{
        let mut tx = $pool.begin().await.unwrap();
        let mut seqs = Vec::new();
        for e in $events.iter() {
            let s: i64 = sqlx::query_scalar(PER_ROW)
                .bind(e.at.unix())
                .bind(e.action.as_str())
                .bind(e.actor_kind.as_str())
                .bind(&e.actor_id)
                .bind(&e.tenant_id)
                .bind(&e.user_id)
                .bind(&e.client_id)
                .bind(&e.grant_id)
                .bind(&e.scopes)
                .bind(&e.reason)
                .bind(&e.ip)
                .bind(&e.user_agent)
                .bind(e.detail.to_string())
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            seqs.push(s);
        }
        tx.commit().await.unwrap();
        seqs
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench() {
    for batch in [1usize, 64, 1024] {
        let events: Vec<_> = (0..batch as i64).map(ev).collect();
        let rounds = (8192 / batch).max(50);
        // postgres
        let admin = mandate_store::testing::postgres_test_url().unwrap();
        let url = mandate_store::testing::fresh_postgres_database(&admin)
            .await
            .unwrap();
        let store = mandate_store::connect(&url).await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let st = Instant::now();
        for _ in 0..rounds {
            store.append_events(&events).await.unwrap();
        }
        let multi = st.elapsed();
        let st = Instant::now();
        for _ in 0..rounds {
            per_row!(pool, events);
        }
        let single = st.elapsed();
        let n = (rounds * batch) as f64;
        println!(
            "postgres batch {batch}: multi-row {:.0} ev/s, per-row {:.0} ev/s",
            n / multi.as_secs_f64(),
            n / single.as_secs_f64()
        );
        pool.close().await;
        drop(store);
        mandate_store::testing::drop_postgres_database(&admin, &url)
            .await
            .unwrap();
        // sqlite
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let store = mandate_store::connect(&url).await.unwrap();
        let opts: sqlx::sqlite::SqliteConnectOptions = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let st = Instant::now();
        for _ in 0..rounds {
            store.append_events(&events).await.unwrap();
        }
        let multi = st.elapsed();
        let st = Instant::now();
        for _ in 0..rounds {
            per_row!(pool, events);
        }
        let single = st.elapsed();
        println!(
            "sqlite   batch {batch}: multi-row {:.0} ev/s, per-row {:.0} ev/s",
            n / multi.as_secs_f64(),
            n / single.as_secs_f64()
        );
    }
}
