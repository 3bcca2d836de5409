//! `POST /guard/reports`: denial reports from resource servers become `access.denied` events.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

crate::backend_tests!(
    reports_are_for_resource_servers_only,
    malformed_batches_get_a_json_400_and_record_nothing,
    each_report_is_durable_before_the_answer_and_names_the_authenticated_resource,
);

const CRM_ID: &str = "demo-crm";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";

fn report(path: &str) -> Value {
    json!({
        "at": 1_700_000_000,
        "error": "insufficient_scope",
        "method": "POST",
        "path": path,
        "client_ip": "192.0.2.7",
        "user_agent": "agent/1.0",
        "credential": "access_token",
        "subject": "u_alice",
        "tenant": "acme",
        "client_id": "cli-agent",
        "grant_id": "g_1",
        "scopes": "contacts.read",
        "required_scopes": "contacts.write",
    })
}

async fn post(app: &TestApp, creds: Option<(&str, &str)>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = app
        .http
        .post(app.url("/guard/reports"))
        .header("content-type", "application/json")
        .body(body);
    if let Some((id, secret)) = creds {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("not a JSON body ({status}): {text:?}"));
    (status, body)
}

async fn denials(app: &TestApp) -> Vec<mandate_core::event::Event> {
    app.events_of("access.denied").await
}

async fn reports_are_for_resource_servers_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let batch = serde_json::to_vec(&json!({ "reports": [report("/contacts")] })).unwrap();
    let cases = [
        (None, "no credential"),
        (Some(("svc-agent", SVC_SECRET)), "an agent's credential"),
        (
            Some((CRM_ID, "wrong-secret-wrong-secret-wrong-secret")),
            "wrong secret",
        ),
        (Some(("nobody", "whatever-whatever-whatever")), "unknown id"),
    ];
    for (creds, reason) in cases {
        let (status, body) = post(&app, creds, batch.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_eq!(body["error"], "invalid_client", "{reason}");
    }
    assert!(denials(&app).await.is_empty());
}

async fn malformed_batches_get_a_json_400_and_record_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_many = json!({ "reports": vec![report("/contacts"); 501] });
    let mut with_query = report("/contacts");
    with_query["path"] = json!("/contacts?access_token=x");
    let mut nul = report("/contacts");
    nul["user_agent"] = json!("a\u{0}b");
    let mut bad_error = report("/contacts");
    bad_error["error"] = json!("teapot");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed JSON"),
        (b"[]".to_vec(), "not an object"),
        (
            serde_json::to_vec(&too_many).unwrap(),
            "more than 500 reports",
        ),
        (
            serde_json::to_vec(&json!({ "reports": [with_query] })).unwrap(),
            "a query string",
        ),
        (
            serde_json::to_vec(&json!({ "reports": [nul] })).unwrap(),
            "an escaped NUL",
        ),
        (
            serde_json::to_vec(&json!({ "reports": [bad_error] })).unwrap(),
            "an unknown error code",
        ),
        (
            serde_json::to_vec(&json!({ "reports": [report("/ok")], "dropped": -1 })).unwrap(),
            "a negative drop count",
        ),
    ];
    for (body, reason) in cases {
        let (status, json) = post(&app, Some((CRM_ID, CRM_SECRET)), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {json}");
        assert_eq!(json["error"], "invalid_request", "{reason}");
    }
    // Larger than 256 KiB: refused before parsing.
    let huge = vec![b' '; 256 * 1024 + 1];
    let (status, json) = post(&app, Some((CRM_ID, CRM_SECRET)), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["error"], "invalid_request");
    // Not JSON at all.
    let resp = app
        .http
        .post(app.url("/guard/reports"))
        .basic_auth(CRM_ID, Some(CRM_SECRET))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(denials(&app).await.is_empty(), "nothing of a refused batch");
}

async fn each_report_is_durable_before_the_answer_and_names_the_authenticated_resource(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let mut anonymous = report("/billing");
    for field in [
        "subject",
        "tenant",
        "client_id",
        "grant_id",
        "scopes",
        "required_scopes",
    ] {
        anonymous.as_object_mut().unwrap().remove(field);
    }
    anonymous["error"] = json!("invalid_token");
    anonymous["reason"] = json!("the token signature is invalid");
    // A resource named in the body (at the top and in a report) is not believed.
    let mut claims_other = report("/contacts");
    claims_other["resource"] = json!("https://other.example");
    let batch = json!({
        "resource": "https://other.example",
        "reports": [claims_other, anonymous],
        "dropped": 4,
    });
    let (status, body) = post(
        &app,
        Some((CRM_ID, CRM_SECRET)),
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "accepted": 2 }));
    // Durable before the answer: readable at once through another connection.
    let events = denials(&app).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let (scoped, tampered) = (&events[0].event, &events[1].event);
    assert_eq!(scoped.user_id.as_deref(), Some("u_alice"));
    assert_eq!(scoped.tenant_id.as_deref(), Some("acme"));
    assert_eq!(scoped.client_id.as_deref(), Some("cli-agent"));
    assert_eq!(scoped.grant_id.as_deref(), Some("g_1"));
    assert_eq!(scoped.scopes.as_deref(), Some("contacts.read"));
    assert_eq!(scoped.ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(scoped.user_agent.as_deref(), Some("agent/1.0"));
    assert_eq!(scoped.detail["resource"], CRM);
    assert_eq!(scoped.detail["reported_by"], CRM_ID);
    assert_eq!(scoped.detail["error"], "insufficient_scope");
    assert_eq!(scoped.detail["required_scopes"], "contacts.write");
    assert_eq!(scoped.detail["method"], "POST");
    assert_eq!(scoped.detail["path"], "/contacts");
    assert_eq!(scoped.detail["seen_at"], 1_700_000_000);
    assert_eq!(scoped.detail["dropped"], 4, "the drop count is recorded");
    assert_eq!(tampered.user_id, None);
    assert_eq!(tampered.client_id, None);
    assert_eq!(tampered.detail["resource"], CRM);
    assert_eq!(
        tampered.reason.as_deref(),
        Some("the token signature is invalid")
    );
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("other.example"), "{all}");

    // A batch that only carries a drop count is recorded too; an empty one records nothing.
    let (status, body) = post(
        &app,
        Some((CRM_ID, CRM_SECRET)),
        br#"{"reports":[],"dropped":9}"#.to_vec(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "accepted": 1 })));
    let (status, body) = post(
        &app,
        Some((CRM_ID, CRM_SECRET)),
        br#"{"reports":[]}"#.to_vec(),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "accepted": 0 })));
    let events = denials(&app).await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].event.detail["dropped"], 9);
}
