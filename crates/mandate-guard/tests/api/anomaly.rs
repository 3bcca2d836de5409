//! Anomaly rules end to end: an agent misbehaves against the real server and a guarded API,
//! the rule fires, the server revokes or throttles, the guard refuses the next call, and the
//! audit log tells the story in order.

use crate::helpers::*;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use mandate_core::event::{ActorKind, Event};
use mandate_guard::{Guard, ReportSettings};
use mandate_server::config::{AnomalyRuleConfig, AnomalyWebhookConfig, Config};
use mandate_store::EventFilter;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Webhook calls received: headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

fn rule(name: &str, kind: &str, per: &str, threshold: u32, actions: &[&str]) -> AnomalyRuleConfig {
    AnomalyRuleConfig::new(name, kind, per, threshold, actions)
}

fn with_rules(rules: Vec<AnomalyRuleConfig>) -> impl FnOnce(&mut Config) {
    move |c| c.anomaly.rules = rules
}

fn flood_rule() -> Vec<AnomalyRuleConfig> {
    vec![rule(
        "token-flood",
        "issuance_spike",
        "agent",
        20,
        &["revoke"],
    )]
}

fn probe_rule() -> Vec<AnomalyRuleConfig> {
    vec![rule("scope-probe", "out_of_scope", "grant", 3, &["revoke"])]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_token_flood_disables_the_agent_and_the_guard_refuses_it() {
    let issuer = spawn_issuer_with(with_rules(flood_rule())).await;
    a_token_flood_disables_the_agent_and_the_guard_refuses_it(issuer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_token_flood_disables_the_agent_and_the_guard_refuses_it() {
    if let Some(issuer) =
        spawn_issuer_on_postgres_with("a_token_flood", with_rules(flood_rule())).await
    {
        a_token_flood_disables_the_agent_and_the_guard_refuses_it(issuer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_out_of_scope_probes_revoke_the_grant() {
    let issuer = spawn_issuer_with(with_rules(probe_rule())).await;
    out_of_scope_probes_revoke_the_grant(issuer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_scope_probes_revoke_the_grant() {
    if let Some(issuer) =
        spawn_issuer_on_postgres_with("out_of_scope_probes", with_rules(probe_rule())).await
    {
        out_of_scope_probes_revoke_the_grant(issuer).await;
    }
}

/// A guard for the demo CRM that follows the feed and reports its refusals quickly.
async fn watching_guard(issuer: &Issuer) -> (Guard, String) {
    let guard = Guard::builder(&issuer.issuer, CRM).build().await.unwrap();
    let feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);
    std::mem::forget(feed);
    let reports = guard
        .report_denials_with(
            crm_credential(CRM_SECRET),
            ReportSettings {
                interval: Duration::from_millis(50),
                ..ReportSettings::default()
            },
        )
        .unwrap();
    std::mem::forget(reports);
    let app = spawn_tickets_app(&guard).await;
    (guard, app)
}

async fn token_request(issuer: &Issuer, secret: &str) -> reqwest::Response {
    issuer
        .http
        .post(format!("{}/token", issuer.issuer))
        .basic_auth("svc-agent", Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tickets.read"),
            ("resource", CRM),
        ])
        .send()
        .await
        .unwrap()
}

/// Calls `GET {app}/tickets` until it answers `status`; fails after 10 s.
async fn until_status(app: &str, token: &str, status: u16) -> Duration {
    let started = Instant::now();
    loop {
        let (got, _, _) = get_bearer(&format!("{app}/tickets"), token).await;
        if got == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the whole log until `done` holds; fails after 10 s.
async fn events_until(issuer: &Issuer, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    wait_for_events(issuer, None, done).await
}

/// The first event after `after` (by sequence number) that `is` accepts.
fn first_after(events: &[Event], after: i64, is: impl Fn(&Event) -> bool) -> &Event {
    events
        .iter()
        .find(|e| e.seq > after && is(e))
        .unwrap_or_else(|| panic!("no such event after {after}"))
}

async fn a_token_flood_disables_the_agent_and_the_guard_refuses_it(issuer: Issuer) {
    let (_guard, app) = watching_guard(&issuer).await;
    let early = issuer.token("tickets.read").await;
    until_status(&app, &early, 200).await;

    // The flood: token requests until the server stops answering them.
    let started = Instant::now();
    let mut issued = 1;
    let refused = loop {
        let resp = token_request(&issuer, SVC_SECRET).await;
        if resp.status() != 200 {
            break resp;
        }
        issued += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{issued} tokens issued and the agent is still served"
        );
    };
    assert!(issued >= 20, "refused after only {issued} tokens");
    assert_eq!(refused.status(), 401, "the agent is disabled");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // The guard learns of it through the feed and refuses the token issued before the flood.
    let took = until_status(&app, &early, 401).await;
    assert!(took < Duration::from_secs(1), "the guard took {took:?}");

    // The story, in order.
    let events = events_until(&issuer, |events| {
        events.iter().any(|e| {
            e.event.action.as_str() == "access.denied" && e.event.detail["error"] == "invalid_token"
        })
    })
    .await;
    let twentieth = events
        .iter()
        .filter(|e| e.event.action.as_str() == "token.issued")
        .nth(19)
        .expect("20 tokens issued");
    let fired = first_after(&events, twentieth.seq, |e| {
        e.event.action.as_str() == "anomaly.detected"
    });
    assert_eq!(fired.event.actor_kind, ActorKind::System);
    assert_eq!(fired.event.actor_id.as_deref(), Some("anomaly:token-flood"));
    assert_eq!(fired.event.client_id.as_deref(), Some("svc-agent"));
    assert_eq!(fired.event.tenant_id.as_deref(), Some("acme"));
    assert_eq!(fired.event.detail["count"], 20);
    assert_eq!(fired.event.detail["subject"]["kind"], "agent");
    assert_eq!(fired.event.detail["actions"], serde_json::json!(["revoke"]));
    assert!(
        fired.event.detail["last_seq"].as_i64().unwrap() <= fired.seq,
        "it names the events that made it fire"
    );
    let disabled = first_after(&events, fired.seq, |e| {
        e.event.action.as_str() == "agent.disabled"
    });
    assert_eq!(
        disabled.event.actor_id.as_deref(),
        Some("anomaly:token-flood")
    );
    assert_eq!(disabled.event.client_id.as_deref(), Some("svc-agent"));
    let revoked = first_after(&events, fired.seq, |e| {
        e.event.action.as_str() == "agent.grants_revoked"
    });
    assert!(
        revoked
            .event
            .reason
            .as_deref()
            .unwrap()
            .contains(&format!("event {}", fired.seq)),
        "the revocation names the firing: {:?}",
        revoked.event.reason
    );
    let denied = first_after(&events, disabled.seq, |e| {
        e.event.action.as_str() == "access.denied" && e.event.detail["error"] == "invalid_token"
    });
    assert_eq!(denied.event.client_id.as_deref(), Some("svc-agent"));
    eprintln!(
        "flood: {issued} tokens issued before the agent was refused; its earlier token \
         refused at the guard {took:?} after that"
    );

    // Counted in the metrics, by rule and action.
    let metrics = issuer
        .http
        .get(format!("{}/metrics", issuer.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "mandate_anomaly_rule_firings_total{rule=\"token-flood\",action=\"revoke\"} 1\n"
        ),
        "{metrics}"
    );
    issuer.finish().await;
}

async fn out_of_scope_probes_revoke_the_grant(issuer: Issuer) {
    let (guard, app) = watching_guard(&issuer).await;
    let token = issuer.token("tickets.read").await;
    let grant = guard.validate_token(&token).await.unwrap().grant_id;
    until_status(&app, &token, 200).await;

    // Three writes the token has no scope for.
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let resp = http
            .post(format!("{app}/tickets"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);
    }
    // The guard reports them, the rule fires, the grant is revoked, the feed says so.
    let took = until_status(&app, &token, 401).await;
    eprintln!("probed grant refused after {took:?}");

    let events = events_until(&issuer, |events| {
        events.iter().any(|e| {
            e.event.action.as_str() == "access.denied" && e.event.detail["error"] == "invalid_token"
        })
    })
    .await;
    let probes: Vec<&Event> = events
        .iter()
        .filter(|e| e.event.detail["error"] == "insufficient_scope")
        .collect();
    assert_eq!(probes.len(), 3);
    assert!(
        probes
            .iter()
            .all(|e| e.event.grant_id.as_deref() == Some(&grant))
    );
    let fired = first_after(&events, probes[2].seq, |e| {
        e.event.action.as_str() == "anomaly.detected"
    });
    assert_eq!(fired.event.grant_id.as_deref(), Some(grant.as_str()));
    assert_eq!(fired.event.detail["rule"], "scope-probe");
    assert_eq!(fired.event.detail["first_seq"], probes[0].seq);
    assert_eq!(fired.event.detail["last_seq"], probes[2].seq);
    let revoked = first_after(&events, fired.seq, |e| {
        e.event.action.as_str() == "grant.revoked"
    });
    assert_eq!(revoked.event.grant_id.as_deref(), Some(grant.as_str()));
    assert_eq!(
        revoked.event.actor_id.as_deref(),
        Some("anomaly:scope-probe")
    );
    assert_eq!(revoked.event.actor_kind, ActorKind::System);
    let refused = first_after(&events, revoked.seq, |e| {
        e.event.action.as_str() == "access.denied" && e.event.detail["error"] == "invalid_token"
    });
    assert_eq!(refused.event.grant_id.as_deref(), Some(grant.as_str()));
    // Only that grant: the agent itself is still served.
    assert_eq!(token_request(&issuer, SVC_SECRET).await.status(), 200);
    issuer.finish().await;
}

/// Failed client authentication from one address throttles it, even with the right secret
/// afterwards, and the firing is delivered to the anomaly webhook, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_throttles_the_address_and_calls_the_webhook() {
    let received: Received = Arc::default();
    let hook = spawn_receiver(received.clone()).await;
    let secret = "anomaly-webhook-secret-0123456789abcdef";
    let issuer = spawn_issuer_with(move |c| {
        let mut r = rule(
            "guessing",
            "client_auth_failures",
            "address",
            5,
            &["throttle", "webhook"],
        );
        r.throttle_seconds = Some(30);
        c.anomaly.rules = vec![r];
        c.anomaly.webhook = Some(AnomalyWebhookConfig {
            url: hook,
            secret: Some(mandate_server::config::Secret::new(secret.to_owned())),
            secret_env: None,
            timeout_ms: 5_000,
            retry_initial_ms: 100,
            retry_max_ms: 1_000,
        });
    })
    .await;
    assert_eq!(token_request(&issuer, SVC_SECRET).await.status(), 200);
    for _ in 0..5 {
        let resp = token_request(&issuer, "not-the-secret").await;
        assert_eq!(resp.status(), 401);
    }
    // The rule fires shortly after the fifth failure; then even the right secret waits.
    let started = Instant::now();
    let throttled = loop {
        let resp = token_request(&issuer, SVC_SECRET).await;
        if resp.status() == 429 {
            break resp;
        }
        assert_eq!(resp.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never throttled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After: {retry}");
    let body: serde_json::Value = throttled.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");

    // The webhook gets the firing, signed over its timestamp and body.
    let started = Instant::now();
    let (headers, body) = loop {
        if let Some(first) = received.lock().unwrap().first().cloned() {
            break first;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no webhook call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let timestamp = headers["x-mandate-timestamp"].to_str().unwrap();
    assert_eq!(
        headers["x-mandate-signature"].to_str().unwrap(),
        mandate_server::audit_export::signature(secret.as_bytes(), timestamp, body.as_bytes())
    );
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "only the firing: {body}");
    assert_eq!(lines[0]["class_uid"], 2004);
    assert_eq!(lines[0]["unmapped"]["action"], "anomaly.detected");
    issuer.finish().await;
}

async fn spawn_receiver(received: Received) -> String {
    async fn receive(
        State(received): State<Received>,
        headers: HeaderMap,
        body: String,
    ) -> &'static str {
        received.lock().unwrap().push((headers, body));
        "ok"
    }
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Two nodes on one database see the same flood and the same firing; exactly one of them
/// records it (the shared cursor's compare-and-set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_record_one_firing_once() {
    let Some(cluster) = spawn_postgres_cluster("the two-node anomaly test", 2, |c| {
        c.anomaly.rules = vec![rule("spike", "issuance_spike", "agent", 10, &["alert"])];
    })
    .await
    else {
        return;
    };
    let http = reqwest::Client::new();
    for i in 0..12 {
        let node = &cluster.nodes[i % 2];
        let resp = http
            .post(format!("{node}/token"))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let store = mandate_store::connect(&cluster.database_url).await.unwrap();
    let fired = || async {
        store
            .events(&EventFilter {
                action: Some("anomaly.detected".into()),
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .unwrap()
    };
    let started = Instant::now();
    while fired().await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both nodes poll at least every 250 ms: by now each has judged the flood.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let events = fired().await;
    assert_eq!(events.len(), 1, "recorded once: {events:#?}");
    assert_eq!(events[0].event.detail["count"], 10);
    cluster.finish().await;
}
