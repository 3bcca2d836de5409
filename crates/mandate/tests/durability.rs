//! Crash durability (issue 5): `mandate serve` is killed with SIGKILL in the middle of a load
//! of token requests. Every token a client received must have its `token.issued` event in the
//! log after the crash, and the hash chain must verify: a token is answered only after its
//! event is durable, and the chain is written in the same transaction as the events.
//!
//! Runs on SQLite, and on PostgreSQL when `MANDATE_TEST_POSTGRES_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine;
use mandate_store::EventFilter;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SVC_SECRET: &str = "demo-svc-agent-secret-0123456789abcdef";
/// Concurrent clients hammering the token endpoint.
const CLIENTS: usize = 16;

fn serve(data: &Path, database_url: Option<&str>) -> (Child, String) {
    match database_url {
        Some(url) => common::serve(data, &["--database-url", url, "--config", common::DEMO]),
        None => common::serve(data, &["--config", common::DEMO]),
    }
}

/// The `jti` of a JWT access token (its signature was checked by the server that issued it;
/// here only the identifier matters).
fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Requests tokens until the server stops answering; returns the `jti`s received.
async fn hammer(http: reqwest::Client, issuer: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut received = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(resp) = http
            .post(format!("{issuer}/token"))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
        else {
            break;
        };
        if !resp.status().is_success() {
            break;
        }
        // A body cut off by the crash is not a token the client received.
        let Ok(body) = resp.json::<Value>().await else {
            break;
        };
        received.push(jti(body["access_token"].as_str().unwrap()));
    }
    received
}

async fn tokens_survive_a_crash(data: &Path, database_url: &str, flag: Option<&str>) {
    let (mut server, issuer) = serve(data, flag);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(hammer(http.clone(), issuer.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // `Child::kill` is SIGKILL on Unix: no shutdown hook, no flush, no graceful drain.
    server.kill().unwrap();
    server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut received = Vec::new();
    for c in clients {
        received.extend(c.await.unwrap());
    }
    assert!(
        received.len() >= 50,
        "the load issued too few tokens to mean anything: {}",
        received.len()
    );

    let store = mandate_store::connect(database_url).await.unwrap();
    let mut recorded = HashSet::new();
    let mut after = 0;
    loop {
        let page = store
            .events(&EventFilter {
                action: Some("token.issued".into()),
                client_id: Some("svc-agent".into()),
                after_seq: after,
                limit: 1000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        recorded.extend(
            page.iter()
                .filter_map(|e| e.event.detail["jti"].as_str().map(str::to_owned)),
        );
    }
    let lost: Vec<_> = received.iter().filter(|j| !recorded.contains(*j)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} tokens received have no audit event: {:?}",
        lost.len(),
        received.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    eprintln!(
        "SIGKILL under load: {} tokens received, every one recorded ({} token events)",
        received.len(),
        recorded.len()
    );
    drop(store);

    let mut verify = Command::new(env!("CARGO_BIN_EXE_mandate"));
    verify.arg("--data-dir").arg(data);
    if let Some(url) = flag {
        verify.args(["--database-url", url]);
    }
    let out = verify
        .args(["audit", "verify", "--json"])
        .env_remove("MANDATE_DATABASE_URL")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["intact"], true, "{report}");

    // The server starts again on the crashed database and keeps chaining.
    let (mut server, issuer) = serve(data, flag);
    let again = http
        .post(format!("{issuer}/token"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(again.status().is_success());
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn sqlite_loses_no_acknowledged_event_when_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("mandate.db").display());
    tokens_survive_a_crash(&data, &url, None).await;
}

#[tokio::test]
async fn postgres_loses_no_acknowledged_event_when_killed() {
    let Some(admin) = mandate_store::testing::postgres_test_url() else {
        eprintln!(
            "SKIPPED: set {} to run the PostgreSQL crash test",
            mandate_store::testing::POSTGRES_TEST_URL_VAR
        );
        return;
    };
    let url = mandate_store::testing::fresh_postgres_database(&admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    tokens_survive_a_crash(&dir.path().join("data"), &url, Some(&url)).await;
    mandate_store::testing::drop_postgres_database(&admin, &url)
        .await
        .unwrap();
}
