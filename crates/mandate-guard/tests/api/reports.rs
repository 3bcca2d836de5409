//! Denial reports: refusals at the guard become `access.denied` events at the real server.

use crate::helpers::*;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use mandate_core::event::Event;
use mandate_guard::{Guard, ReportSettings};
use mandate_store::EventFilter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refusals_become_attributed_audit_events() {
    refusals_become_attributed_audit_events(spawn_issuer().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusals_become_attributed_audit_events() {
    if let Some(issuer) = spawn_issuer_on_postgres("refusals_become_attributed_audit_events").await
    {
        refusals_become_attributed_audit_events(issuer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_full_queue_drops_the_oldest_and_the_count_arrives_later() {
    a_full_queue_drops_the_oldest_and_the_count_arrives_later(spawn_issuer().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_full_queue_drops_the_oldest_and_the_count_arrives_later() {
    if let Some(issuer) =
        spawn_issuer_on_postgres("a_full_queue_drops_the_oldest_and_the_count_arrives_later").await
    {
        a_full_queue_drops_the_oldest_and_the_count_arrives_later(issuer).await;
    }
}

fn fast() -> ReportSettings {
    ReportSettings {
        interval: Duration::from_millis(50),
        ..ReportSettings::default()
    }
}

async fn denials(issuer: &Issuer) -> Vec<Event> {
    logged_events(issuer, Some("access.denied")).await
}

/// Polls the event log until `done` holds for the `access.denied` events; fails after 10 s.
async fn wait_for(issuer: &Issuer, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    wait_for_events(issuer, Some("access.denied"), done).await
}

fn tampered(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
    format!("{rest}.{}", String::from_utf8(sig).unwrap())
}

async fn refusals_become_attributed_audit_events(issuer: Issuer) {
    let guard = Guard::builder(&issuer.issuer, CRM).build().await.unwrap();
    let reports = guard
        .report_denials_with(crm_credential(CRM_SECRET), fast())
        .unwrap();
    let app = spawn_tickets_app(&guard).await;
    let token = issuer.token("tickets.read").await;
    let claims = decode(token.split('.').nth(1).unwrap());
    let bad = tampered(&token);
    let http = reqwest::Client::builder()
        .user_agent("report-test/1.0")
        .build()
        .unwrap();

    // In scope: served, not reported.
    let resp = http
        .get(format!("{app}/tickets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Out of scope (403), with a query string that must not be recorded.
    let resp = http
        .post(format!("{app}/tickets?note=secret-query-value"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A tampered signature (401).
    let resp = http
        .get(format!("{app}/billing"))
        .bearer_auth(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let events = wait_for(&issuer, |e| e.len() >= 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let scope = events
        .iter()
        .map(|e| &e.event)
        .find(|e| e.detail["error"] == "insufficient_scope")
        .expect("the 403 is reported");
    assert_eq!(scope.user_id.as_deref(), claims["sub"].as_str());
    assert_eq!(scope.tenant_id.as_deref(), Some("acme"));
    assert_eq!(scope.client_id.as_deref(), Some("svc-agent"));
    assert_eq!(scope.actor_id.as_deref(), Some("svc-agent"));
    assert_eq!(scope.grant_id.as_deref(), claims["gid"].as_str());
    assert_eq!(scope.scopes.as_deref(), Some("tickets.read"));
    assert_eq!(scope.detail["required_scopes"], "tickets.write");
    assert_eq!(scope.detail["method"], "POST");
    assert_eq!(scope.detail["path"], "/tickets");
    assert_eq!(scope.detail["resource"], CRM);
    assert_eq!(scope.detail["reported_by"], "demo-crm");
    assert_eq!(scope.detail["credential"], "access_token");
    assert_eq!(scope.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(scope.user_agent.as_deref(), Some("report-test/1.0"));

    let forged = events
        .iter()
        .map(|e| &e.event)
        .find(|e| e.detail["error"] == "invalid_token")
        .expect("the 401 is reported");
    assert_eq!(forged.detail["path"], "/billing");
    assert_eq!(
        forged.reason.as_deref(),
        Some("the token signature is invalid")
    );
    for (field, value) in [
        ("user", &forged.user_id),
        ("tenant", &forged.tenant_id),
        ("agent", &forged.client_id),
        ("grant", &forged.grant_id),
        ("scopes", &forged.scopes),
        ("actor", &forged.actor_id),
    ] {
        assert_eq!(value, &None, "an unverified token names no {field}");
    }

    // No token, signature or query value anywhere in the event log.
    let store = mandate_store::connect(&issuer.database_url).await.unwrap();
    let everything = store
        .events(&EventFilter {
            limit: 10_000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let text = serde_json::to_string(&everything).unwrap();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        token.as_str(),
        bad.as_str(),
        signature,
        "secret-query-value",
        CRM_SECRET,
    ] {
        assert!(!text.contains(secret), "the event log holds {secret}");
    }
    assert_eq!(reports.dropped(), 0);
    reports.shutdown().await;
    issuer.finish().await;
}

/// Between the guard and the issuer: answers 503 while `down`, forwards otherwise.
async fn spawn_gate(target: String, down: Arc<AtomicBool>) -> String {
    async fn gate(
        State((target, down)): State<(String, Arc<AtomicBool>)>,
        req: Request,
    ) -> Response {
        if down.load(Ordering::SeqCst) {
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let resp = reqwest::Client::new()
            .post(&target)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.bytes().await.unwrap()).into_response()
    }
    let app = Router::new()
        .route("/guard/reports", any(gate))
        .with_state((target, down));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}/guard/reports", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn a_full_queue_drops_the_oldest_and_the_count_arrives_later(issuer: Issuer) {
    let down = Arc::new(AtomicBool::new(true));
    let gate = spawn_gate(format!("{}/guard/reports", issuer.issuer), down.clone()).await;
    let guard = Guard::builder(&issuer.issuer, CRM)
        .denial_report_endpoint(&gate)
        .build()
        .await
        .unwrap();
    let reports = guard
        .report_denials_with(
            crm_credential(CRM_SECRET),
            ReportSettings {
                capacity: 5,
                ..fast()
            },
        )
        .unwrap();
    let app = spawn_tickets_app(&guard).await;
    let http = reqwest::Client::new();
    const SENT: usize = 12;
    for n in 0..SENT {
        let started = Instant::now();
        let resp = http
            .get(format!("{app}/item/{n}"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "request {n} waited on the reporter: {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reports.dropped() > 0, "the bound was reached");
    assert!(reports.queued() <= 5);
    assert!(denials(&issuer).await.is_empty(), "nothing got through yet");

    down.store(false, Ordering::SeqCst);
    let events = wait_for(&issuer, |events| {
        let dropped: u64 = events
            .iter()
            .filter_map(|e| e.event.detail["dropped"].as_u64())
            .sum();
        events.len() as u64 + dropped >= SENT as u64
    })
    .await;
    let dropped: u64 = events
        .iter()
        .filter_map(|e| e.event.detail["dropped"].as_u64())
        .sum();
    assert_eq!(events.len() as u64 + dropped, SENT as u64, "{events:#?}");
    assert_eq!(dropped, reports.dropped());
    assert!(
        events.len() <= 5 + 4,
        "at most the bound plus a batch in flight"
    );
    // The newest were kept.
    let paths: Vec<_> = events
        .iter()
        .map(|e| e.event.detail["path"].as_str().unwrap_or("").to_owned())
        .collect();
    for n in SENT - 5..SENT {
        assert!(paths.contains(&format!("/item/{n}")), "{paths:?}");
    }
    reports.shutdown().await;
    issuer.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_reporter_sends_what_is_queued() {
    let issuer = spawn_issuer().await;
    let guard = Guard::builder(&issuer.issuer, CRM).build().await.unwrap();
    let reports = guard
        .report_denials_with(
            crm_credential(CRM_SECRET),
            ReportSettings {
                interval: Duration::from_secs(3600),
                ..ReportSettings::default()
            },
        )
        .unwrap();
    let app = spawn_tickets_app(&guard).await;
    for n in 0..3 {
        let resp = reqwest::get(format!("{app}/item/{n}")).await.unwrap();
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(reports.queued(), 3, "nothing sent before the interval");
    reports.shutdown().await;
    let events = denials(&issuer).await;
    assert_eq!(events.len(), 3, "flushed on shutdown: {events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.event.detail["error"] == "missing_token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_reports_its_refusals() {
    let issuer = spawn_issuer().await;
    let guard = Guard::builder(&issuer.issuer, CRM).build().await.unwrap();
    let reports = guard
        .report_denials_with(crm_credential(CRM_SECRET), fast())
        .unwrap();
    let config = mandate_guard::proxy::ProxyConfig::from_toml(
        "[[routes]]\npath = \"/tickets\"\nmethods = [\"POST\"]\nscopes = [\"tickets.write\"]\n",
    )
    .unwrap();
    let router = mandate_guard::proxy::proxy_router(guard, "http://127.0.0.1:1", config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let token = issuer.token("tickets.read").await;
    let resp = reqwest::Client::new()
        .post(format!("{proxy}/tickets?x=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let events = wait_for(&issuer, |e| !e.is_empty()).await;
    let e = &events[0].event;
    assert_eq!(e.detail["error"], "insufficient_scope");
    assert_eq!(e.detail["path"], "/tickets");
    assert_eq!(e.detail["required_scopes"], "tickets.write");
    assert_eq!(e.client_id.as_deref(), Some("svc-agent"));
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
    reports.shutdown().await;
}
