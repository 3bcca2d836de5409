//! Audit export to SIEMs: real requests make events, the server's sinks deliver them as
//! JSON Lines, in order and without gaps, to a file across a restart and to a webhook that
//! fails before it accepts.

use crate::helpers::*;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use mandate_server::Application;
use mandate_server::config::{self, AuditExportConfig, Overrides, Secret};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

crate::backend_tests!(
    export_file_sink_writes_every_event_in_order_across_a_restart,
    export_webhook_sink_retries_until_every_event_is_delivered_in_order,
);

const WEBHOOK_SECRET: &str = "siem-webhook-signing-secret-0123456789";

/// The file's lines, parsed (every line must be JSON).
fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn seqs(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| l["metadata"]["sequence"].as_i64().unwrap())
        .collect()
}

async fn head(app: &TestApp) -> i64 {
    app.store.chain_head().await.unwrap().seq
}

/// Waits (up to 20 s) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn file_sink(path: PathBuf) -> AuditExportConfig {
    let mut c = AuditExportConfig::file("siem-file", path);
    c.poll_interval_ms = 100;
    c.retry_initial_ms = 20;
    c.retry_max_ms = 200;
    c.batch_size = 3;
    c
}

async fn token(http: &reqwest::Client, base: &str) {
    let resp = http
        .post(format!("{base}/token"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tickets.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
}

async fn export_file_sink_writes_every_event_in_order_across_a_restart(backend: Backend) {
    let mut path = PathBuf::new();
    let mut app = spawn_with(backend, |c| {
        path = c.data_dir.join("audit.jsonl");
        c.audit_export = vec![file_sink(path.clone())];
    })
    .await;
    for _ in 0..4 {
        app.client_credentials(Some("tickets.read")).await;
    }
    let first_head = head(&app).await;
    eventually("the file to reach the head", async || {
        seqs(&read_lines(&path)).last() == Some(&first_head)
    })
    .await;
    let lines = read_lines(&path);
    assert_eq!(seqs(&lines), (1..=first_head).collect::<Vec<_>>());
    let issued: Vec<&Value> = lines
        .iter()
        .filter(|l| l["unmapped"]["action"] == "token.issued")
        .collect();
    assert_eq!(issued.len(), 4);
    for l in &issued {
        assert_eq!(l["class_uid"], 3003, "{l}");
        assert_eq!(l["class_name"], "Authorize Session");
        assert_eq!(l["category_uid"], 3);
        assert_eq!(l["status"], "Success");
        assert_eq!(l["metadata"]["product"]["name"], "Mandate");
        assert_eq!(l["metadata"]["tenant_uid"], "acme");
        assert_eq!(l["metadata"]["uid"], l["metadata"]["sequence"].to_string());
        assert_eq!(l["actor"]["app_name"], "svc-agent");
        assert_eq!(l["privileges"], serde_json::json!(["tickets.read"]));
        assert_eq!(l["src_endpoint"]["ip"], "127.0.0.1");
        assert!(l["time"].as_i64().unwrap() > 1_600_000_000_000, "epoch ms");
        assert_eq!(l["unmapped"]["hash"].as_str().unwrap().len(), 64);
    }
    // The cursor moves just after the lines are durable: wait for it rather than race it.
    eventually("the cursor to reach the head", async || {
        app.store.export_cursor("siem-file").await.unwrap() == first_head
    })
    .await;
    app.stop().await;

    // A second start on the same database and data directory continues the same file.
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        issuer: Some(app.issuer.clone()),
        data_dir: Some(app.data_dir.clone()),
        database_url: Some(app.database_url.clone()),
    };
    let mut config = config::load(Some(&demo_toml()), &overrides).unwrap();
    config.audit_export = vec![file_sink(path.clone())];
    let second = Application::build(config).await.unwrap();
    let status = second.audit_export_status();
    let base = format!("http://127.0.0.1:{}", second.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(second.run_until(async {
        let _ = rx.await;
    }));
    for _ in 0..3 {
        token(&app.http, &base).await;
    }
    let second_head = head(&app).await;
    assert!(second_head >= first_head + 3);
    eventually("the file to reach the new head", async || {
        seqs(&read_lines(&path)).last() == Some(&second_head)
    })
    .await;
    assert_eq!(
        seqs(&read_lines(&path)),
        (1..=second_head).collect::<Vec<_>>(),
        "no gap and no duplicate across the restart"
    );
    eventually("the status to catch up", async || status[0].lag() == 0).await;
    assert_eq!(status[0].name, "siem-file");
    assert_eq!(status[0].cursor(), second_head);
    // The lag is on /metrics too, measured against the chain's head at scrape time.
    let metrics = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mandate_audit_export_lag_events{sink=\"siem-file\"} 0\n")
            && metrics
                .contains("mandate_audit_export_consecutive_failures{sink=\"siem-file\"} 0\n"),
        "{metrics}"
    );
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// What the receiver saw: every request (first and last sequence number, when) and the
/// lines it accepted.
#[derive(Default)]
struct Received {
    attempts: Vec<(i64, Instant)>,
    accepted: Vec<Value>,
    bad_signatures: usize,
}

async fn receive(
    State(seen): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    use aws_lc_rs::hmac;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut seen = seen.lock().unwrap();
    let timestamp = header("x-mandate-timestamp");
    let signature = header("x-mandate-signature");
    let tag = signature
        .strip_prefix("sha256=")
        .and_then(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    let signed = [timestamp.as_bytes(), b".", &body].concat();
    if hmac::verify(&key, &signed, &tag).is_err()
        || header("content-type") != "application/x-ndjson"
    {
        seen.bad_signatures += 1;
        return (AxumStatus::UNAUTHORIZED, HeaderMap::new());
    }
    let text = std::str::from_utf8(&body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines[0]["metadata"]["sequence"].as_i64().unwrap();
    seen.attempts.push((first, Instant::now()));
    let mut out = HeaderMap::new();
    match seen.attempts.len() {
        1 | 2 => (AxumStatus::INTERNAL_SERVER_ERROR, out),
        3 => {
            out.insert("retry-after", "1".parse().unwrap());
            (AxumStatus::TOO_MANY_REQUESTS, out)
        }
        _ => {
            seen.accepted.extend(lines);
            (AxumStatus::OK, out)
        }
    }
}

async fn export_webhook_sink_retries_until_every_event_is_delivered_in_order(backend: Backend) {
    let seen = Arc::new(Mutex::new(Received::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    let receiver = axum::Router::new()
        .route("/ingest", axum::routing::post(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut app = spawn_with(backend, |c| {
        let mut sink =
            AuditExportConfig::webhook("siem-hook", &url, Some(Secret::new(WEBHOOK_SECRET)));
        sink.poll_interval_ms = 100;
        sink.retry_initial_ms = 20;
        sink.retry_max_ms = 200;
        sink.batch_size = 4;
        c.audit_export = vec![sink];
    })
    .await;
    for _ in 0..5 {
        app.client_credentials(Some("tickets.read")).await;
    }
    let head = head(&app).await;
    eventually("every event to be delivered", async || {
        let delivered = seqs(&seen.lock().unwrap().accepted).last() == Some(&head);
        delivered && app.store.export_cursor("siem-hook").await.unwrap() == head
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.bad_signatures, 0);
        assert_eq!(
            seqs(&seen.accepted),
            (1..=head).collect::<Vec<_>>(),
            "in order, no gap, no duplicate"
        );
        // The refused batch was offered again, from the same place, until it was taken; the
        // retry after the 429 waited for its Retry-After.
        let firsts: Vec<i64> = seen.attempts.iter().map(|(f, _)| *f).collect();
        assert_eq!(&firsts[..4], &[1, 1, 1, 1], "{firsts:?}");
        let after_429 = seen.attempts[3].1 - seen.attempts[2].1;
        assert!(after_429 >= Duration::from_millis(950), "{after_429:?}");
        assert!(
            seen.accepted
                .iter()
                .any(|l| l["unmapped"]["action"] == "token.issued")
        );
    }
    app.stop().await;
}
