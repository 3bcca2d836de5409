//! The REST API: scopes per route, the caller in every answer, tenant isolation, bad input,
//! and revocation reaching the CRM through the feed.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_users_token_reads_its_tenants_contacts_and_names_the_caller() {
    let demo = spawn_demo().await;
    let alice = demo
        .user_token(
            "cli-agent",
            "alice",
            "contacts.read tickets.write",
            &["contacts.read", "tickets.write"],
        )
        .await;
    let (status, body, _) = demo.get("/contacts", &alice.access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["caller"]["tenant"], "acme");
    assert_eq!(body["caller"]["client_id"], "cli-agent");
    assert!(
        body["caller"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("u_"),
        "{body}"
    );
    let emails: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["ada@acme.example", "grace@acme.example"]);

    // tickets.write implies tickets.read through the CRM's scope hierarchy.
    let (status, _, _) = demo.get("/tickets", &alice.access_token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = demo
        .post(
            "/tickets",
            &alice.access_token,
            r#"{"subject":"Call Ada back"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["opened_by"], body["caller"]["subject"]);

    // contacts.read does not allow writing contacts.
    let (status, _, challenge) = demo
        .post(
            "/contacts",
            &alice.access_token,
            r#"{"name":"X","email":"x@y.z"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"contacts.write\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn missing_scope_and_missing_token_get_standard_challenges() {
    let demo = spawn_demo().await;
    let svc = demo.service_token("tickets.read").await;
    let (status, _, challenge) = demo.get("/billing", &svc).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"billing.read\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(
            "resource_metadata=\"http://127.0.0.1:8081/.well-known/oauth-protected-resource\""
        ),
        "{challenge}"
    );

    let resp = demo
        .http
        .get(demo.crm_url("/contacts"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer resource_metadata=")
    );

    // The RFC 9728 document and the index are public.
    let meta: Value = demo
        .http
        .get(demo.crm_url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["resource"], CRM);
    assert_eq!(meta["authorization_servers"][0], demo.issuer.as_str());
    let index: Value = demo
        .http
        .get(demo.crm_url("/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["mcp"], "/mcp");
}

#[tokio::test]
async fn carol_never_sees_acme_data_whatever_the_path_or_parameters() {
    let demo = spawn_demo().await;
    let all = "contacts.read contacts.write tickets.read tickets.write";
    let scopes: Vec<&str> = all.split(' ').collect();
    let alice = demo.user_token("cli-agent", "alice", all, &scopes).await;
    let carol = demo.user_token("cli-agent", "carol", all, &scopes).await;

    let (_, acme, _) = demo.get("/contacts", &alice.access_token).await;
    let acme_ids = ids(&acme);
    let (_, globex, _) = demo.get("/contacts", &carol.access_token).await;
    assert_eq!(globex["caller"]["tenant"], "globex");
    assert!(ids(&globex).iter().all(|id| !acme_ids.contains(id)));

    // Every way of naming acme that a request could carry.
    let id = &acme_ids[0];
    let probes = [
        format!("/contacts/{id}"),
        format!("/contacts/{id}?tenant=acme"),
        "/contacts?tenant=acme".to_owned(),
        "/contacts?tenant_id=acme&tenant=acme".to_owned(),
        format!("/contacts/..%2F{id}"),
        format!("/contacts/%2E%2E/contacts/{id}"),
        "/tickets?tenant=acme".to_owned(),
    ];
    for path in &probes {
        let resp = demo
            .http
            .get(demo.crm_url(path))
            .bearer_auth(&carol.access_token)
            .header("x-tenant", "acme")
            .header("x-mandate-tenant", "acme")
            .send()
            .await
            .unwrap();
        let (status, body, _) = read(resp).await;
        let text = body.to_string();
        assert!(
            !text.contains("acme.example") && !text.contains("Printer on fire"),
            "{path} leaked: {text}"
        );
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        if status == StatusCode::OK {
            assert_eq!(body["caller"]["tenant"], "globex", "{path}");
        }
    }

    // A write naming another tenant is refused; a plain write lands in carol's tenant only.
    let (status, body, _) = demo
        .post(
            "/contacts",
            &carol.access_token,
            r#"{"name":"Mallory","email":"m@globex.example","tenant":"acme"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body, _) = demo
        .post(
            "/tickets",
            &carol.access_token,
            r#"{"subject":"Globex only"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, tickets, _) = demo.get("/tickets", &alice.access_token).await;
    assert!(!tickets.to_string().contains("Globex only"), "{tickets}");
    assert_eq!(tickets["caller"]["tenant"], "acme");
}

#[tokio::test]
async fn bad_bodies_get_clear_json_errors() {
    let demo = spawn_demo().await;
    let svc = demo.service_token("tickets.write").await;
    let long = format!(r#"{{"subject":"{}"}}"#, "x".repeat(500));
    for body in [
        "",
        "not json",
        "[]",
        r#"{"subject":1}"#,
        r#"{"subject":""}"#,
        long.as_str(),
    ] {
        let (status, answer, _) = demo.post("/tickets", &svc, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {answer}");
        assert_eq!(answer["error"], "invalid_request", "{body:?}");
    }
    let resp = demo
        .http
        .post(demo.crm_url("/tickets"))
        .bearer_auth(&svc)
        .header("content-type", "application/json")
        .body(vec![b'{'; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
}

#[tokio::test]
async fn a_revoked_grant_is_refused_at_the_crm_within_a_second() {
    let demo = spawn_demo().await;
    let alice = demo
        .user_token("cli-agent", "alice", "contacts.read", &["contacts.read"])
        .await;
    assert_eq!(alice.scope, "contacts.read");
    let (status, _, _) = demo.get("/contacts", &alice.access_token).await;
    assert_eq!(status, StatusCode::OK);

    let revoked_at = Instant::now();
    demo.revoke("cli-agent", &alice.access_token).await;
    loop {
        let (status, _, challenge) = demo.get("/contacts", &alice.access_token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(demo.feed.is_connected());
}

/// The issue's end-to-end delegation story: an orchestrator agent exchanges alice's token
/// (RFC 8693) for a down-scoped one for the CRM; the CRM sees alice as the subject and the
/// orchestrator in the chain; offboarding alice through the admin API ends the exchanged
/// token at the CRM within a second, through the revocation feed.
#[tokio::test]
async fn an_orchestrator_acts_for_alice_through_an_exchanged_token_until_she_is_offboarded() {
    let demo = spawn_demo().await;
    let alice = demo
        .user_token(
            "cli-agent",
            "alice",
            "contacts.read tickets.read",
            &["contacts.read", "tickets.read"],
        )
        .await;
    let exchanged: Value = demo
        .http
        .post(format!("{}/token", demo.issuer))
        .basic_auth(
            "orchestrator",
            Some("demo-orchestrator-secret-0123456789abcdef"),
        )
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", alice.access_token.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("scope", "tickets.read"),
            ("resource", CRM),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = exchanged["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{exchanged}"))
        .to_owned();
    assert_eq!(exchanged["scope"], "tickets.read");

    let (status, body, _) = demo.get("/tickets", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, direct, _) = demo.get("/tickets", &alice.access_token).await;
    let caller = &body["caller"];
    assert_eq!(
        caller["subject"], direct["caller"]["subject"],
        "still alice"
    );
    assert_eq!(caller["tenant"], "acme");
    assert_eq!(caller["client_id"], "orchestrator");
    assert_eq!(
        caller["acting_through"],
        serde_json::json!(["orchestrator"])
    );
    assert!(direct["caller"].get("acting_through").is_none());
    // Down-scoped: alice's token reads contacts, the exchanged one may not.
    let (status, _, challenge) = demo.get("/contacts", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    // Offboard alice through the admin API, as the operator's CLI would.
    let admin = format!("{}/admin/v1", demo.issuer);
    let op: Value = demo
        .http
        .post(format!("{}/token", demo.issuer))
        .basic_auth("admin-cli", Some("demo-admin-cli-secret-0123456789abcdef"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mandate.admin"),
            ("resource", admin.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offboarded = demo
        .http
        .post(format!("{admin}/revocations"))
        .bearer_auth(op["access_token"].as_str().unwrap())
        .json(&serde_json::json!({ "user_id": caller["subject"], "reason": "left" }))
        .send()
        .await
        .unwrap();
    assert_eq!(offboarded.status(), StatusCode::OK);
    let revoked_at = Instant::now();
    loop {
        let (status, _, challenge) = demo.get("/tickets", &token).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the exchanged token still works after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _, _) = demo.get("/tickets", &alice.access_token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "alice's own token is gone too"
    );
}

#[tokio::test]
async fn an_out_of_scope_call_shows_up_in_the_audit_log() {
    let demo = spawn_demo().await;
    let alice = demo
        .user_token("cli-agent", "alice", "contacts.read", &["contacts.read"])
        .await;
    let resp = demo
        .http
        .post(demo.crm_url("/contacts?from=test"))
        .bearer_auth(&alice.access_token)
        .json(&serde_json::json!({ "name": "Mallory" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let store = mandate_store::connect(&demo.database_url).await.unwrap();
    let started = Instant::now();
    let event = loop {
        let events = store
            .events(&mandate_store::EventFilter {
                action: Some("access.denied".into()),
                ..mandate_store::EventFilter::default()
            })
            .await
            .unwrap();
        if let Some(e) = events.into_iter().next() {
            break e.event;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no access.denied event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event.tenant_id.as_deref(), Some("acme"));
    assert_eq!(event.client_id.as_deref(), Some("cli-agent"));
    assert!(event.user_id.is_some() && event.grant_id.is_some());
    assert_eq!(event.scopes.as_deref(), Some("contacts.read"));
    assert_eq!(event.detail["required_scopes"], "contacts.write");
    assert_eq!(event.detail["path"], "/contacts");
    assert_eq!(event.detail["method"], "POST");
    assert_eq!(event.detail["resource"], CRM);
    assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));
    let text = serde_json::to_string(&event).unwrap();
    assert!(!text.contains(&alice.access_token));
    assert_eq!(demo.reports.dropped(), 0);
}
