//! Signing-key rotation and withdrawal through the admin API (issue 7): a rotated-in key is
//! published before it signs, takes over at its time without a restart, the old key keeps
//! verifying until the tokens it signed are gone, a withdrawn key stops verifying at once,
//! only operators may change keys, and every change is audited. (Across several nodes:
//! `crates/mandate/tests/multinode.rs`.)

use crate::admin::{operator_token, person_token};
use crate::helpers::*;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

crate::backend_tests!(
    a_rotated_key_is_published_first_signs_at_its_time_and_the_old_one_still_verifies,
    a_withdrawn_key_stops_verifying_and_only_operators_change_keys,
);

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    s(&header["kid"]).to_owned()
}

async fn admin_call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, app.url(&format!("/admin/v1{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn status_of(list: &Value, kid: &str) -> String {
    let key = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} not listed: {list}"));
    s(&key["status"]).to_owned()
}

async fn withdraw(app: &TestApp, token: &str, kid: &str) -> (StatusCode, Value) {
    let path = format!("/signing-keys/{kid}/withdraw");
    admin_call(app, token, reqwest::Method::POST, &path, None).await
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    app.jwks()
        .await
        .iter()
        .map(|k| k.kid().to_owned())
        .collect()
}

async fn a_rotated_key_is_published_first_signs_at_its_time_and_the_old_one_still_verifies(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let operator = operator_token(&app).await;
    let before = app.client_credentials(None).await;
    let before = s(&before["access_token"]).to_owned();
    let old = kid_of(&before);

    let (status, new) = admin_call(
        &app,
        &operator,
        reqwest::Method::POST,
        "/signing-keys",
        Some(json!({"activate_in_seconds": 600})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    assert_eq!(new["status"], "pending");
    assert_eq!(new["alg"], "EdDSA");
    assert_eq!(new["activates_at"], app.now().unix() + 600);
    assert!(new.get("private_sealed").is_none() && !new.to_string().contains("\"d\""));
    let new_kid = s(&new["kid"]).to_owned();

    // Published now, but not signing yet.
    let kids = jwks_kids(&app).await;
    assert!(kids.contains(&new_kid) && kids.contains(&old), "{kids:?}");
    let token = app.client_credentials(None).await;
    assert_eq!(kid_of(s(&token["access_token"])), old);

    // At its time it signs (no restart, no reload needed); the old key still verifies.
    app.advance(600);
    let operator = operator_token(&app).await;
    let token = app.client_credentials(None).await;
    let after = s(&token["access_token"]).to_owned();
    assert_eq!(kid_of(&after), new_kid);
    app.verify(&after).await;
    let (_, list) = admin_call(&app, &operator, reqwest::Method::GET, "/signing-keys", None).await;
    assert_eq!(status_of(&list, &new_kid), "active");
    assert_eq!(status_of(&list, &old), "superseded", "{list}");
    // A token the old key signed before the switch is still active, and verifiable.
    assert_eq!(app.introspect(&before).await["active"], true);
    app.verify(&before).await;

    // A day later (`trust_after_superseded_seconds`) the old key has expired; nodes drop it
    // from the JWKS at their next reload (ring.rs's unit tests check that part).
    app.advance(24 * 60 * 60);
    let operator = operator_token(&app).await;
    let (_, list) = admin_call(&app, &operator, reqwest::Method::GET, "/signing-keys", None).await;
    assert_eq!(status_of(&list, &old), "expired", "{list}");

    let events = app.events_of("signing_key.created").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail["kid"], new_kid.as_str());
    assert_eq!(events[0].event.actor_id.as_deref(), Some("agent:admin-cli"));
}

async fn a_withdrawn_key_stops_verifying_and_only_operators_change_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let operator = operator_token(&app).await;
    let tenant_admin = person_token(&app, "alice").await;
    let before = app.client_credentials(None).await;
    let before = s(&before["access_token"]).to_owned();
    let old = kid_of(&before);

    // A tenant admin may look, not change.
    let (status, list) = admin_call(
        &app,
        &tenant_admin,
        reqwest::Method::GET,
        "/signing-keys",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status_of(&list, &old), "active");
    let (status, body) = admin_call(
        &app,
        &tenant_admin,
        reqwest::Method::POST,
        "/signing-keys",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = withdraw(&app, &tenant_admin, &old).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The only key that signs cannot be withdrawn; an unknown one is a 404.
    let (status, body) = withdraw(&app, &operator, &old).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("rotate first"), "{body}");
    let (status, _) = admin_call(
        &app,
        &operator,
        reqwest::Method::POST,
        "/signing-keys/k_nope/withdraw",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = admin_call(
        &app,
        &operator,
        reqwest::Method::POST,
        "/signing-keys",
        Some(json!({"activate_in_seconds": "soon"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin_call(
        &app,
        &operator,
        reqwest::Method::POST,
        "/signing-keys",
        Some(json!({"activate_in_seconds": 40 * 24 * 60 * 60})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("at most"), "{body}");

    // After a compromise: rotate with no delay, then withdraw the old key.
    let (status, new) = admin_call(
        &app,
        &operator,
        reqwest::Method::POST,
        "/signing-keys",
        Some(json!({"activate_in_seconds": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Not in the very second the old key started signing (whole seconds would tie).
    assert_eq!(new["status"], "pending");
    app.advance(1);
    let (_, list) = admin_call(&app, &operator, reqwest::Method::GET, "/signing-keys", None).await;
    assert_eq!(status_of(&list, s(&new["kid"])), "active");
    // Introspected (so its signature's verdict is cached) before the key is withdrawn.
    assert_eq!(app.introspect(&before).await["active"], true);
    assert_eq!(app.introspect(&before).await["active"], true);
    let (status, withdrawn) = withdraw(&app, &operator, &old).await;
    assert_eq!(status, StatusCode::OK, "{withdrawn}");
    assert_eq!(withdrawn["status"], "withdrawn");
    assert_eq!(app.introspect(&before).await["active"], false);
    assert!(!jwks_kids(&app).await.contains(&old));
    let after = app.client_credentials(None).await;
    assert_eq!(kid_of(s(&after["access_token"])), s(&new["kid"]));
    assert_eq!(
        app.introspect(s(&after["access_token"])).await["active"],
        true
    );
    // The operator's own token was signed by the withdrawn key too.
    let (status, _) =
        admin_call(&app, &operator, reqwest::Method::GET, "/signing-keys", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let operator = operator_token(&app).await;
    let (status, _) = withdraw(&app, &operator, &old).await;
    assert_eq!(status, StatusCode::CONFLICT, "withdrawn once only");

    let events = app.events_of("signing_key.retired").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.detail["kid"], old.as_str());
}
