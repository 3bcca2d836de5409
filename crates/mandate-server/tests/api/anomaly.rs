//! Anomaly rules on the real server with an injected clock: windows measured in event time,
//! throttles that end when the clock says so, a rotated API key revoked on use, a grant used
//! with a new user agent, and rule settings refused at start. (The guard's side, floods and
//! probes ending at a guarded API, is in the guard's tests.)

use crate::api_keys::{create_key, exchange_key, rotate};
use crate::helpers::*;
use mandate_core::event::Event;
use mandate_server::config::AnomalyRuleConfig;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

crate::backend_tests!(
    windows_and_throttles_follow_the_injected_clock,
    a_rotated_key_used_in_its_overlap_is_revoked,
    a_grant_used_with_a_new_user_agent_is_throttled,
);

fn rule(name: &str, kind: &str, per: &str, threshold: u32, actions: &[&str]) -> AnomalyRuleConfig {
    AnomalyRuleConfig::new(name, kind, per, threshold, actions)
}

async fn anomalies(app: &TestApp) -> Vec<Event> {
    app.events_of("anomaly.detected").await
}

/// Waits until `n` anomalies are recorded; fails after 10 s.
async fn until_anomalies(app: &TestApp, n: usize) -> Vec<Event> {
    let started = Instant::now();
    loop {
        let found = anomalies(app).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} anomalies, expected {n}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn service_token(app: &TestApp) -> (StatusCode, reqwest::header::HeaderMap) {
    let (status, headers, _) = app
        .post_form(
            "/token",
            Some(("svc-agent", SVC_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "tickets.read"),
            ],
        )
        .await;
    (status, headers)
}

async fn windows_and_throttles_follow_the_injected_clock(backend: Backend) {
    let app = spawn_with(backend, |c| {
        let mut r = rule("spike", "issuance_spike", "grant", 5, &["throttle"]);
        r.throttle_seconds = Some(120);
        c.anomaly.rules = vec![r];
    })
    .await;
    // Eight tokens, but never five within 60 s of event time: nothing fires.
    for _ in 0..4 {
        assert_eq!(service_token(&app).await.0, StatusCode::OK);
    }
    app.advance(61);
    for _ in 0..4 {
        assert_eq!(service_token(&app).await.0, StatusCode::OK);
    }
    // The fifth within the window fires the rule.
    assert_eq!(service_token(&app).await.0, StatusCode::OK);
    let fired = until_anomalies(&app, 1).await;
    let detail = &fired[0].event.detail;
    let issued = app.events_of("token.issued").await;
    assert_eq!(issued.len(), 9);
    assert_eq!(
        (detail["first_seq"].as_i64(), detail["last_seq"].as_i64()),
        (Some(issued[4].seq), Some(issued[8].seq)),
        "the second burst's five, not the first's four"
    );
    let until = app.now().plus_seconds(120).unix();
    assert_eq!(detail["throttle_until"], until);

    // Throttled for exactly 120 s of the server's clock.
    let started = Instant::now();
    let headers = loop {
        let (status, headers) = service_token(&app).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            break headers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never throttled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(headers["retry-after"], "120");
    app.advance(100);
    let (status, headers) = service_token(&app).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "20");
    app.advance(20);
    assert_eq!(service_token(&app).await.0, StatusCode::OK);
    assert_eq!(anomalies(&app).await.len(), 1, "fired once");
}

async fn a_rotated_key_used_in_its_overlap_is_revoked(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.anomaly.rules = vec![rule(
            "old-key",
            "rotated_api_key_use",
            "api_key",
            1,
            &["revoke"],
        )];
    })
    .await;
    let old = create_key(&app, Some("alice"), "tickets.read", 86_400).await;
    let (new, _) = rotate(&app, &old).await;
    // The new key is used: nothing to say.
    let (status, body) = exchange_key(&app, new.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The old one still works during the overlap, but its use fires the rule.
    let (status, body) = exchange_key(&app, old.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fired = until_anomalies(&app, 1).await;
    assert_eq!(fired[0].event.detail["subject"]["id"], old.id().as_str());
    // ...and the old key is revoked.
    let started = Instant::now();
    loop {
        let (status, _) = exchange_key(&app, old.expose(), &[("resource", CRM)]).await;
        if status == StatusCode::BAD_REQUEST {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not revoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = app.store.api_key(&old.id(), None).await.unwrap().unwrap();
    assert!(stored.record.revoked_at.is_some());
    assert_eq!(stored.revoked_by.as_deref(), Some("anomaly:old-key"));
    let (status, body) = exchange_key(&app, new.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::OK, "the successor still works: {body}");
    assert_eq!(anomalies(&app).await.len(), 1);
}

async fn refresh_as(app: &TestApp, refresh_token: &str, user_agent: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/token"))
        .header("user-agent", user_agent)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "cli-agent"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

async fn a_grant_used_with_a_new_user_agent_is_throttled(backend: Backend) {
    let app = spawn_with(backend, |c| {
        let mut r = rule("new-ua", "new_user_agent", "grant", 1, &["throttle"]);
        r.throttle_seconds = Some(300);
        c.anomaly.rules = vec![r];
    })
    .await;
    let tokens = user_tokens(&app, "alice", "tickets.read").await;
    let mut refresh = s(&tokens["refresh_token"]).to_owned();
    // The same client software keeps refreshing: the baseline.
    for _ in 0..2 {
        let resp = refresh_as(&app, &refresh, "crm-assistant/1.0").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: serde_json::Value = resp.json().await.unwrap();
        refresh = s(&body["refresh_token"]).to_owned();
    }
    // Someone else presents it.
    let resp = refresh_as(&app, &refresh, "curl/8.0").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    refresh = s(&body["refresh_token"]).to_owned();
    let fired = until_anomalies(&app, 1).await;
    assert_eq!(fired[0].event.detail["origin"], "curl/8.0");
    assert_eq!(fired[0].event.detail["subject"]["kind"], "grant");
    let grant = fired[0].event.grant_id.clone().unwrap();
    // The grant's refreshes are throttled; its refresh token stays usable afterwards.
    let started = Instant::now();
    loop {
        let resp = refresh_as(&app, &refresh, "crm-assistant/1.0").await;
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        let body: serde_json::Value = resp.json().await.unwrap();
        refresh = s(&body["refresh_token"]).to_owned();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never throttled"
        );
    }
    app.advance(301);
    let resp = refresh_as(&app, &refresh, "crm-assistant/1.0").await;
    assert_eq!(resp.status(), StatusCode::OK, "the throttle ended");
    let g = app.store.grant(&grant).await.unwrap().unwrap();
    assert!(g.revoked_at.is_none(), "throttled, not revoked");
}
