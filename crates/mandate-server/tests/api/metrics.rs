//! `GET /metrics`: exact counts after real traffic, access control, the agent label cap, the
//! feed subscriber gauge, and no secret in the exposition.

use crate::helpers::*;
use mandate_server::config::{AgentConfig, Secret};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

crate::backend_tests!(
    metrics_count_tokens_errors_latency_revocations_and_audit,
    metrics_require_the_configured_token,
    metrics_without_a_token_serve_direct_loopback_callers_only,
    metrics_disabled_is_not_found,
    agents_beyond_the_label_cap_are_counted_as_other,
    feed_subscriber_gauge_follows_connections,
    grant_types_revocation_kinds_and_admin_errors_are_labelled,
);

const SCRAPE_TOKEN: &str = "scrape-token-0123456789abcdef-never-shown";

/// One sample of the exposition: metric name, labels in order, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses OpenMetrics text samples (comments skipped, label values unescaped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().expect(line),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), vec![]),
            Some((name, rest)) => (
                name.to_owned(),
                parse_labels(rest.strip_suffix('}').expect(line)),
            ),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().unwrap() {
                (i, '"') => break i,
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_owned(), value));
        s = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the one sample with this name and exactly these labels (in any order).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} appears twice");
    found.first().copied()
}

fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:#?}"))
}

async fn scrape_with(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Scrapes as a loopback caller (no token configured) and returns the text.
async fn scrape(app: &TestApp) -> String {
    let resp = scrape_with(app, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    resp.text().await.unwrap()
}

async fn metrics_count_tokens_errors_latency_revocations_and_audit(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let body = app.client_credentials(Some("tickets.read")).await;
        tokens.push(s(&body["access_token"]).to_owned());
    }
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", "not-the-secret-of-svc-agent-000000000")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", SVC_SECRET)),
            &[("grant_type", "password")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unsupported_grant_type");
    let (status, _, _) = app
        .post_form(
            "/revoke",
            Some(("svc-agent", SVC_SECRET)),
            &[("token", &tokens[0])],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let text = scrape(&app).await;
    let m = parse(&text);
    let token = [("grant_type", "client_credentials"), ("agent", "svc-agent")];
    assert_eq!(must(&m, "mandate_tokens_issued_total", &token), 3.0);
    let error = |code| [("endpoint", "/token"), ("error", code)];
    assert_eq!(
        must(&m, "mandate_errors_total", &error("invalid_client")),
        1.0
    );
    assert_eq!(
        must(&m, "mandate_errors_total", &error("unsupported_grant_type")),
        1.0
    );
    assert_eq!(
        value(&m, "mandate_errors_total", &error("invalid_grant")),
        None
    );
    assert_eq!(
        must(&m, "mandate_revocations_total", &[("kind", "token")]),
        1.0
    );

    // Latency: three successes and two client errors at the route template, each histogram
    // consistent (+Inf bucket = count, sum > 0).
    for (class, n) in [("2xx", 3.0), ("4xx", 2.0)] {
        let labels = [("route", "/token"), ("method", "POST"), ("status", class)];
        let count = must(&m, "mandate_http_request_duration_seconds_count", &labels);
        assert_eq!(count, n, "{class}");
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        assert_eq!(
            must(&m, "mandate_http_request_duration_seconds_bucket", &inf),
            n
        );
        assert!(must(&m, "mandate_http_request_duration_seconds_sum", &labels) > 0.0);
    }
    assert!(
        !m.iter().any(|s| s
            .labels
            .iter()
            .any(|(k, v)| k == "route" && v.contains("token?"))),
        "routes are templates, never raw paths"
    );

    // Audit: every token's event went through the group-commit writer; nothing waits now; the
    // head gauge is the stored chain head.
    let lag = must(&m, "mandate_audit_commit_lag_seconds_count", &[]);
    assert!(lag >= 4.0, "3 issued + 1 revoked, at least: {lag}");
    assert_eq!(
        must(
            &m,
            "mandate_audit_commit_lag_seconds_bucket",
            &[("le", "+Inf")]
        ),
        lag
    );
    assert_eq!(must(&m, "mandate_audit_pending_events", &[]), 0.0);
    let head = app.store.chain_head().await.unwrap().seq;
    assert!(head >= 4);
    assert_eq!(
        must(&m, "mandate_audit_chain_head_sequence", &[]),
        head as f64
    );
    assert_eq!(must(&m, "mandate_revocation_feed_subscribers", &[]), 0.0);
    assert!(text.contains("# HELP mandate_tokens_issued "), "{text}");
    // No anomaly rules exist yet, so nothing fires (the family appears with its first firing).
    assert!(
        !text.contains("mandate_anomaly_rule_firings_total"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));

    for secret in [SVC_SECRET, "not-the-secret-of-svc-agent"]
        .into_iter()
        .chain(tokens.iter().map(String::as_str))
    {
        assert!(!text.contains(secret), "a secret is in the metrics");
    }
}

async fn metrics_require_the_configured_token(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.metrics.token = Some(Secret::new(SCRAPE_TOKEN));
    })
    .await;
    // Loopback is not enough once a token is configured.
    let resp = scrape_with(&app, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"mandate-metrics\""
    );
    let resp = scrape_with(&app, Some("scrape-token-guessed")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"mandate-metrics\", error=\"invalid_token\""
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    let resp = scrape_with(&app, Some(SCRAPE_TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(SCRAPE_TOKEN),
        "the scrape token is in the metrics"
    );
    assert!(!text.contains("scrape-token-guessed"));
    let m = parse(&text);
    assert_eq!(
        must(
            &m,
            "mandate_errors_total",
            &[("endpoint", "/metrics"), ("error", "invalid_token")]
        ),
        2.0
    );
}

async fn metrics_without_a_token_serve_direct_loopback_callers_only(backend: Backend) {
    let app = spawn_app(backend).await;
    scrape(&app).await;
    // Relayed by a proxy on this host: the TCP peer is loopback, the caller is not.
    let resp = app
        .http
        .get(app.url("/metrics"))
        .header("x-forwarded-for", "192.0.2.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    // A token is useless when none is configured.
    let resp = app
        .http
        .get(app.url("/metrics"))
        .header("forwarded", "for=192.0.2.7")
        .bearer_auth(SCRAPE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

async fn metrics_disabled_is_not_found(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.metrics.enabled = false;
        c.metrics.token = Some(Secret::new(SCRAPE_TOKEN));
    })
    .await;
    let resp = scrape_with(&app, Some(SCRAPE_TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The rest of the server is unaffected.
    app.client_credentials(Some("tickets.read")).await;
}

fn service_agent(client_id: &str) -> AgentConfig {
    AgentConfig {
        client_id: client_id.into(),
        name: None,
        kind: "confidential".into(),
        secret: Some(Secret::new(format!(
            "{client_id}-secret-0123456789abcdefghij"
        ))),
        secret_hash: None,
        redirect_uris: vec![],
        grant_types: vec!["client_credentials".into()],
        max_scopes: vec!["tickets.read".into()],
        tenant: Some("acme".into()),
        access_token_ttl_seconds: None,
        refresh_token_ttl_seconds: None,
        default_resource: Some(CRM.into()),
        allowed_resources: vec![],
    }
}

async fn agents_beyond_the_label_cap_are_counted_as_other(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.metrics.max_agent_labels = 2;
        c.agents.push(service_agent("svc-two"));
        c.agents.push(service_agent("svc-three"));
    })
    .await;
    for (agent, times) in [("svc-agent", 2), ("svc-two", 1), ("svc-three", 2)] {
        let secret = if agent == "svc-agent" {
            SVC_SECRET.to_owned()
        } else {
            format!("{agent}-secret-0123456789abcdefghij")
        };
        for _ in 0..times {
            let (status, _, body) = app
                .post_form(
                    "/token",
                    Some((agent, &secret)),
                    &[("grant_type", "client_credentials")],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{agent}: {body}");
        }
    }
    let text = scrape(&app).await;
    let m = parse(&text);
    let issued = |agent| {
        value(
            &m,
            "mandate_tokens_issued_total",
            &[("grant_type", "client_credentials"), ("agent", agent)],
        )
    };
    assert_eq!(issued("svc-agent"), Some(2.0));
    assert_eq!(issued("svc-two"), Some(1.0));
    assert_eq!(issued("other"), Some(2.0));
    assert_eq!(issued("svc-three"), None);
    assert!(!text.contains("svc-three"));
    assert!(!text.contains("svc-three-secret"));
}

const CRM_ID: &str = "demo-crm";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";

/// Polls the subscriber gauge until it equals `want`; fails after ten seconds.
async fn wait_for_subscribers(app: &TestApp, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = parse(&scrape(app).await);
        let now = must(&m, "mandate_revocation_feed_subscribers", &[]);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers stayed at {now}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn feed_subscriber_gauge_follows_connections(backend: Backend) {
    let app = spawn_app(backend).await;
    wait_for_subscribers(&app, 0.0).await;
    let feed = app
        .http
        .get(app.url("/revocations"))
        .basic_auth(CRM_ID, Some(CRM_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), StatusCode::OK);
    wait_for_subscribers(&app, 1.0).await;
    // A refused subscriber never counts.
    let refused = app
        .http
        .get(app.url("/revocations"))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    wait_for_subscribers(&app, 1.0).await;
    drop(feed);
    wait_for_subscribers(&app, 0.0).await;
    let text = scrape(&app).await;
    assert!(!text.contains(CRM_SECRET));
}

const ADMIN_CLI_SECRET: &str = "demo-admin-cli-secret-0123456789abcdef";

async fn grant_types_revocation_kinds_and_admin_errors_are_labelled(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = user_tokens(&app, "alice", "contacts.read").await;
    let refresh_token = s(&issued["refresh_token"]).to_owned();
    let (status, refreshed) = refresh(&app, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    // The operator CLI (tenant ops) revokes everything in tenant acme.
    let admin_api = format!("{}/admin/v1", app.issuer);
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("admin-cli", ADMIN_CLI_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mandate.admin"),
                ("resource", &admin_api),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin_token = s(&body["access_token"]).to_owned();
    let resp = app
        .http
        .post(app.url("/admin/v1/revocations"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"tenant_id": "acme", "reason": "metrics test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .http
        .get(app.url("/admin/v1/grants"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let text = scrape(&app).await;
    let m = parse(&text);
    let issued_by = |grant_type, agent| {
        value(
            &m,
            "mandate_tokens_issued_total",
            &[("grant_type", grant_type), ("agent", agent)],
        )
    };
    assert_eq!(issued_by("authorization_code", "cli-agent"), Some(1.0));
    assert_eq!(issued_by("refresh_token", "cli-agent"), Some(1.0));
    assert_eq!(issued_by("client_credentials", "admin-cli"), Some(1.0));
    assert_eq!(
        must(&m, "mandate_revocations_total", &[("kind", "tenant")]),
        1.0
    );
    assert_eq!(
        must(
            &m,
            "mandate_errors_total",
            &[("endpoint", "/admin/v1/grants"), ("error", "invalid_token")]
        ),
        1.0
    );
    for secret in [
        s(&issued["access_token"]),
        refresh_token.as_str(),
        s(&refreshed["access_token"]),
        s(&refreshed["refresh_token"]),
        admin_token.as_str(),
        ADMIN_CLI_SECRET,
        "alice-demo-password",
    ] {
        assert!(!text.contains(secret), "a secret is in the metrics");
    }
}
