//! The admin API (`/admin/v1`) over real HTTP: authentication with Mandate's own tokens,
//! operator and tenant admin reach, tenant isolation on every kind of object, offboarding,
//! role removal taking effect at once, errors in the API's JSON format, audit attribution
//! and search, and the OpenAPI document and protected resource metadata.

use crate::helpers::*;
use mandate_store::EventFilter;
use reqwest::StatusCode;
use serde_json::{Value, json};

crate::backend_tests!(
    admin_api_refuses_missing_wrong_and_roleless_tokens,
    a_revoked_service_grant_is_not_used_for_the_next_token,
    operator_manages_every_tenant_and_is_attributed,
    tenant_admin_sees_and_changes_only_their_tenant,
    offboarding_through_the_api_touches_only_that_user,
    api_keys_are_managed_through_the_api,
    removing_a_role_or_revoking_the_grant_ends_admin_access_at_once,
    malformed_requests_get_json_errors_never_5xx,
    openapi_document_and_resource_metadata_are_served,
    audit_log_is_searched_by_every_filter_within_the_callers_reach,
    listings_come_a_page_at_a_time_with_a_link_to_the_next,
);

const ADMIN_CLI_SECRET: &str = "demo-admin-cli-secret-0123456789abcdef";

fn admin_resource(app: &TestApp) -> String {
    format!("{}/admin/v1", app.issuer)
}

/// The operator CLI's token: client credentials for the admin API.
pub(crate) async fn operator_token(app: &TestApp) -> String {
    let resource = admin_resource(app);
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("admin-cli", ADMIN_CLI_SECRET)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mandate.admin"),
                ("resource", &resource),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s(&body["access_token"]).to_owned()
}

/// Authorize at the admin console for the admin API and log in as `login`; the page after
/// login, the browser and the PKCE verifier.
async fn admin_console_login(
    app: &TestApp,
    login: &str,
    password: &str,
) -> (Browser, Page, String) {
    let browser = Browser::default();
    let (verifier, challenge) = pkce();
    let resource = admin_resource(app);
    let query = [
        ("response_type", "code"),
        ("client_id", "admin-console"),
        ("redirect_uri", CLI_REDIRECT),
        ("scope", "mandate.admin"),
        ("state", "st-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("resource", resource.as_str()),
    ];
    let page = browser.authorize(app, &query).await;
    let page = browser.login(app, &page, login, password).await;
    (browser, page, verifier)
}

/// A person's admin token through the admin console: code + PKCE for the admin API.
pub(crate) async fn person_token(app: &TestApp, login: &str) -> String {
    let (browser, page, verifier) =
        admin_console_login(app, login, &format!("{login}-demo-password")).await;
    let resource = admin_resource(app);
    let done = browser.consent(app, &page, Some(&["mandate.admin"])).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, params) = location_params(&done.headers);
    let code = param(&params, "code").unwrap().to_owned();
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "admin-console"),
                ("code", &code),
                ("redirect_uri", CLI_REDIRECT),
                ("code_verifier", &verifier),
                ("resource", &resource),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s(&body["access_token"]).to_owned()
}

struct Call {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Call {
    let url = app.url(&format!("/admin/v1{path}"));
    let mut req = app.http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
    Call {
        status,
        headers,
        body,
    }
}

async fn get(app: &TestApp, token: &str, path: &str) -> Call {
    call(app, Some(token), "GET", path, None).await
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> Call {
    call(app, Some(token), "POST", path, Some(body)).await
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| s(&x[field]).to_owned())
        .collect()
}

async fn user_id(app: &TestApp, login: &str) -> String {
    app.store.user_by_login(login).await.unwrap().unwrap().id
}

async fn admin_api_refuses_missing_wrong_and_roleless_tokens(backend: Backend) {
    let mut app = spawn_app(backend).await;

    let none = call(&app, None, "GET", "/tenants", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.headers["www-authenticate"],
        "Bearer realm=\"mandate-admin\""
    );
    assert_eq!(none.body["error"], "invalid_token");

    let garbage = call(&app, Some("not.a.token"), "GET", "/tenants", None).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let challenge = garbage.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A perfectly good token for another audience (the CRM) is not an admin token.
    let crm = app.client_credentials(Some("tickets.read")).await;
    let wrong_aud = call(&app, Some(s(&crm["access_token"])), "GET", "/tenants", None).await;
    assert_eq!(wrong_aud.status, StatusCode::UNAUTHORIZED);
    assert!(
        s(&wrong_aud.body["error_description"]).contains("not for the admin API"),
        "{}",
        wrong_aud.body
    );

    // Bob (no role) can get an admin-audience token, but it administers nothing.
    let bob = person_token(&app, "bob").await;
    let roleless = get(&app, &bob, "/me").await;
    assert_eq!(roleless.status, StatusCode::FORBIDDEN);
    assert_eq!(roleless.body["error"], "forbidden");
    app.stop().await;
}

async fn operator_manages_every_tenant_and_is_attributed(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let op = operator_token(&app).await;

    let me = get(&app, &op, "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        me.body,
        json!({"principal_kind": "agent", "principal_id": "admin-cli",
               "role": "operator", "tenant_id": null})
    );
    let tenants = get(&app, &op, "/tenants").await;
    let mut all = ids(&tenants.body, "id");
    all.sort();
    assert_eq!(all, ["acme", "globex", "ops"]);

    let created = post(
        &app,
        &op,
        "/tenants",
        json!({"id": "initech", "name": "Initech"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body, json!({"id": "initech", "name": "Initech"}));
    let again = post(&app, &op, "/tenants", json!({"id": "initech"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let bad = post(&app, &op, "/tenants", json!({"id": "Not A Slug"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["error"], "invalid_request");

    let user = post(
        &app,
        &op,
        "/users",
        json!({"login": "peter", "tenant_id": "initech", "password": "peter-password-1"}),
    )
    .await;
    assert_eq!(user.status, StatusCode::CREATED, "{}", user.body);
    assert_eq!(user.body["tenant_id"], "initech");
    assert!(user.body.get("password").is_none() && user.body.get("password_hash").is_none());
    // The password works: peter can log in through the real login page.
    let (_, page, _) = admin_console_login(&app, "peter", "peter-password-1").await;
    assert!(page.is_consent(), "peter logged in: {}", page.html);

    let taken = post(
        &app,
        &op,
        "/users",
        json!({"login": "alice", "tenant_id": "initech", "password": "whatever-password"}),
    )
    .await;
    assert_eq!(
        taken.status,
        StatusCode::CONFLICT,
        "a login cannot be moved"
    );
    assert_eq!(
        app.store
            .user_by_login("alice")
            .await
            .unwrap()
            .unwrap()
            .tenant_id,
        "acme"
    );

    let scope = post(
        &app,
        &op,
        "/scopes",
        json!({"name": "reports.read", "description": "Read reports"}),
    )
    .await;
    assert_eq!(scope.status, StatusCode::CREATED, "{}", scope.body);
    let agent = post(
        &app,
        &op,
        "/agents",
        json!({"client_id": "initech-sync", "kind": "confidential", "tenant_id": "initech",
               "grant_types": ["client_credentials"], "max_scopes": ["reports.read"]}),
    )
    .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{}", agent.body);
    assert!(s(&agent.body["client_secret"]).len() >= 32);
    let bad_agent = post(
        &app,
        &op,
        "/agents",
        json!({"client_id": "x", "kind": "public", "grant_types": ["authorization_code"],
               "max_scopes": ["no.such.scope"], "redirect_uris": ["javascript:alert(1)"]}),
    )
    .await;
    assert_eq!(
        bad_agent.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_agent.body
    );

    // Every change names the operator's principal in the audit log.
    let events = app.store.events(&EventFilter::default()).await.unwrap();
    let by_op = events
        .iter()
        .filter(|e| e.event.actor_id.as_deref() == Some("agent:admin-cli"))
        .count();
    assert!(by_op >= 4, "{by_op} events attributed to the operator");
    app.stop().await;
}

async fn tenant_admin_sees_and_changes_only_their_tenant(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let alice = person_token(&app, "alice").await;
    let carol_id = user_id(&app, "carol").await;
    // Carol (globex) has a grant; alice must not see it.
    user_tokens(&app, "carol", "contacts.read").await;
    user_tokens(&app, "bob", "contacts.read").await;

    let me = get(&app, &alice, "/me").await;
    assert_eq!(me.body["role"], "tenant_admin");
    assert_eq!(me.body["tenant_id"], "acme");

    assert_eq!(
        ids(&get(&app, &alice, "/tenants").await.body, "id"),
        ["acme"]
    );
    let users = get(&app, &alice, "/users").await;
    let mut logins = ids(&users.body, "login");
    logins.sort();
    assert_eq!(logins, ["alice", "bob"]);
    assert_eq!(
        get(&app, &alice, "/users?tenant_id=globex").await.body,
        json!([])
    );
    assert_eq!(
        get(&app, &alice, &format!("/users/{carol_id}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &alice, "/tenants/globex").await.status,
        StatusCode::NOT_FOUND
    );
    let grants = get(&app, &alice, "/grants").await;
    assert!(!grants.body.as_array().unwrap().is_empty());
    assert!(
        grants
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["tenant_id"] == "acme"),
        "{}",
        grants.body
    );
    let carol_grant = app
        .store
        .grants(
            &mandate_store::GrantFilter {
                user_id: Some(carol_id.clone()),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap()
        .remove(0);
    let hidden = post(
        &app,
        &alice,
        &format!("/grants/{}/revoke", carol_grant.id),
        json!({}),
    )
    .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert!(
        app.store
            .grant(&carol_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // Agents: only those acme owns, not multi-tenant ones, not ops' admin-cli.
    let mut owned = ids(&get(&app, &alice, "/agents").await.body, "client_id");
    owned.sort();
    assert_eq!(owned, ["orchestrator", "svc-agent"]);
    assert_eq!(
        get(&app, &alice, "/agents/admin-cli").await.status,
        StatusCode::NOT_FOUND
    );

    // Writes outside the tenant, or to the shared catalog, are refused.
    for (path, body, expected) in [
        ("/tenants", json!({"id": "mine"}), StatusCode::FORBIDDEN),
        (
            "/users",
            json!({"login": "eve", "tenant_id": "globex", "password": "eve-password-1"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/scopes",
            json!({"name": "x.y", "description": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/agents",
            json!({"client_id": "globex-bot", "kind": "confidential", "tenant_id": "globex",
                   "grant_types": ["client_credentials"], "max_scopes": ["tickets.read"]}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/revocations",
            json!({"user_id": carol_id}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/revocations",
            json!({"tenant_id": "globex"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/revocations",
            json!({"client_id": "cli-agent"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api-keys",
            json!({"tenant_id": "globex", "name": "k", "scopes": ["contacts.read"],
                   "expires_in": 3600}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/roles",
            json!({"principal_kind": "user", "principal_id": carol_id, "role": "operator"}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let r = post(&app, &alice, path, body.clone()).await;
        assert_eq!(r.status, expected, "POST {path} {body}: {}", r.body);
    }
    assert_eq!(
        get(&app, &alice, "/roles").await.status,
        StatusCode::FORBIDDEN
    );
    assert!(app.store.user_by_login("eve").await.unwrap().is_none());
    assert!(app.store.tenant("mine").await.unwrap().is_none());

    // Within acme she may act: an acme agent (owner forced to acme) and a user.
    let agent = post(
        &app,
        &alice,
        "/agents",
        json!({"client_id": "acme-sync", "kind": "confidential",
               "grant_types": ["client_credentials"], "max_scopes": ["tickets.read"]}),
    )
    .await;
    assert_eq!(agent.status, StatusCode::CREATED, "{}", agent.body);
    assert_eq!(agent.body["agent"]["tenant_id"], "acme");
    let dave = post(
        &app,
        &alice,
        "/users",
        json!({"login": "dave", "tenant_id": "acme", "password": "dave-password-1"}),
    )
    .await;
    assert_eq!(dave.status, StatusCode::CREATED, "{}", dave.body);
    // Carol's globex-wide agent revocation within acme touches nothing of globex.
    let scoped = post(
        &app,
        &alice,
        "/revocations",
        json!({"client_id": "cli-agent", "tenant_id": "acme"}),
    )
    .await;
    assert_eq!(scoped.status, StatusCode::OK, "{}", scoped.body);
    assert!(
        app.store
            .grant(&carol_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    app.stop().await;
}

async fn offboarding_through_the_api_touches_only_that_user(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let alice_admin = person_token(&app, "alice").await;
    let first = user_tokens(&app, "bob", "contacts.read").await;
    // Bob's first refresh token is retired by a rotation before he leaves.
    let (status, bob) = refresh(&app, s(&first["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK, "{bob}");
    let alice = user_tokens(&app, "alice", "contacts.read").await;
    let bob_id = user_id(&app, "bob").await;

    let r = post(
        &app,
        &alice_admin,
        "/revocations",
        json!({"user_id": bob_id, "reason": "left the company"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["grants"], 1);
    assert_eq!(
        r.body.get("refresh_families"),
        None,
        "not counted: {}",
        r.body
    );
    assert_eq!(
        app.introspect(s(&bob["access_token"])).await["active"],
        false
    );
    // The family row is not written: it is revoked through its grant, which every refresh
    // and every introspection of its tokens reads.
    let family_id = s(&bob["refresh_token"]).split('.').next().unwrap();
    let found = app.store.refresh_family(family_id).await.unwrap().unwrap();
    assert_eq!(found.family.revoked_at, None);
    assert!(found.revoked_at().is_some());
    assert_eq!(
        app.introspect(s(&bob["refresh_token"])).await["active"],
        false
    );
    // Bob's retired token, presented after he left, is refused as revoked: not a reuse,
    // which would record an incident against a grant already ended.
    let (status, body) = refresh(&app, s(&first["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error_description"],
        "the refresh token has been revoked"
    );
    let reuse = app.events_of("refresh.reuse_detected").await;
    assert!(reuse.is_empty(), "{reuse:?}");
    assert_eq!(
        app.introspect(s(&alice["access_token"])).await["active"],
        true
    );
    // Bob's refresh token died with his grant; alice's still works.
    assert_eq!(
        refresh(&app, s(&bob["refresh_token"])).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        refresh(&app, s(&alice["refresh_token"])).await.0,
        StatusCode::OK
    );
    // The grant list shows why.
    let revoked = get(
        &app,
        &alice_admin,
        &format!("/grants?user_id={bob_id}&include_revoked=true"),
    )
    .await;
    assert_eq!(revoked.body[0]["revoked_reason"], "left the company");
    app.stop().await;
}

async fn api_keys_are_managed_through_the_api(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let alice = person_token(&app, "alice").await;
    let created = post(
        &app,
        &alice,
        "/api-keys",
        json!({"tenant_id": "acme", "name": "nightly sync", "scopes": ["contacts.read"],
               "expires_in": 3600}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = s(&created.body["key"]).to_owned();
    let id = s(&created.body["api_key"]["id"]).to_owned();
    assert!(key.starts_with("mk_") && id.starts_with("mkid_"));

    let listed = get(&app, &alice, "/api-keys").await;
    assert_eq!(ids(&listed.body, "id"), vec![id.clone()]);
    assert!(
        !listed.body.to_string().contains(&key),
        "a listing never shows the key"
    );
    assert_eq!(
        listed.body[0]["created_by"],
        format!("user:{}", user_id(&app, "alice").await)
    );

    let too_long = post(
        &app,
        &alice,
        "/api-keys",
        json!({"tenant_id": "acme", "name": "forever", "scopes": ["contacts.read"],
               "expires_in": 10_u64.pow(10)}),
    )
    .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);

    let rotated = post(
        &app,
        &alice,
        &format!("/api-keys/{id}/rotate"),
        json!({"expires_in": 7200}),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.body["replaces"], id);
    let successor = s(&rotated.body["api_key"]["id"]).to_owned();
    let twice = post(
        &app,
        &alice,
        &format!("/api-keys/{id}/rotate"),
        json!({"expires_in": 7200}),
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);

    let revoked = post(
        &app,
        &alice,
        &format!("/api-keys/{successor}/revoke"),
        json!({"reason": "leaked"}),
    )
    .await;
    assert_eq!(revoked.body, json!({"id": successor, "was_active": true}));
    let shown = get(&app, &alice, &format!("/api-keys/{successor}")).await;
    assert_eq!(shown.body["revoked_reason"], "leaked");

    // The operator sees acme's keys too; a globex key is hidden from alice.
    let op = operator_token(&app).await;
    let globex = post(
        &app,
        &op,
        "/api-keys",
        json!({"tenant_id": "globex", "name": "g", "scopes": ["contacts.read"], "expires_in": 60}),
    )
    .await;
    assert_eq!(globex.status, StatusCode::CREATED);
    let gid = s(&globex.body["api_key"]["id"]).to_owned();
    assert_eq!(
        get(&app, &alice, &format!("/api-keys/{gid}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&app, &alice, &format!("/api-keys/{gid}/revoke"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &alice, "/api-keys?tenant_id=globex").await.body,
        json!([])
    );
    app.stop().await;
}

async fn removing_a_role_or_revoking_the_grant_ends_admin_access_at_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let op = operator_token(&app).await;
    let alice = person_token(&app, "alice").await;
    let alice_id = user_id(&app, "alice").await;
    assert_eq!(get(&app, &alice, "/me").await.status, StatusCode::OK);

    let removed = call(
        &app,
        Some(&op),
        "DELETE",
        &format!("/roles/user/{alice_id}"),
        None,
    )
    .await;
    assert_eq!(removed.body, json!({"removed": true}));
    assert_eq!(get(&app, &alice, "/me").await.status, StatusCode::FORBIDDEN);

    // Given back, then her admin grant is revoked: the token is dead even with the role.
    let given = post(
        &app,
        &op,
        "/roles",
        json!({"principal_kind": "user", "principal_id": alice_id, "role": "tenant_admin",
               "tenant_id": "acme"}),
    )
    .await;
    assert_eq!(given.status, StatusCode::OK, "{}", given.body);
    assert_eq!(get(&app, &alice, "/me").await.status, StatusCode::OK);
    let foreign = post(
        &app,
        &op,
        "/roles",
        json!({"principal_kind": "user", "principal_id": alice_id, "role": "tenant_admin",
               "tenant_id": "globex"}),
    )
    .await;
    assert_eq!(
        foreign.status,
        StatusCode::BAD_REQUEST,
        "a user administers only their tenant"
    );

    let grants = get(
        &app,
        &op,
        &format!("/grants?user_id={alice_id}&client_id=admin-console"),
    )
    .await;
    let gid = s(&grants.body[0]["id"]).to_owned();
    let r = post(&app, &op, &format!("/grants/{gid}/revoke"), json!({})).await;
    assert_eq!(r.body["was_active"], true);
    let after = get(&app, &alice, "/me").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    // A tenant admin cannot lock out an operator living in their tenant.
    let bob_id = user_id(&app, "bob").await;
    post(
        &app,
        &op,
        "/roles",
        json!({"principal_kind": "user", "principal_id": bob_id, "role": "operator"}),
    )
    .await;
    let alice2 = person_token(&app, "alice").await;
    let lockout = post(
        &app,
        &alice2,
        &format!("/users/{bob_id}/disable"),
        json!({}),
    )
    .await;
    assert_eq!(lockout.status, StatusCode::FORBIDDEN, "{}", lockout.body);
    app.stop().await;
}

async fn malformed_requests_get_json_errors_never_5xx(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let op = operator_token(&app).await;
    let url = app.url("/admin/v1/tenants");
    for (content_type, body) in [
        ("application/json", "{"),
        ("application/json", "[]"),
        ("application/json", "[\"acme2\", \"Acme 2\"]"),
        ("application/json", "{\"id\": 5}"),
        ("application/json", "{\"id\": \"a\", \"extra\": true}"),
        ("text/plain", "{\"id\": \"a\"}"),
    ] {
        let resp = app
            .http
            .post(&url)
            .bearer_auth(&op)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "invalid_request", "{body}: {v}");
    }
    // serde reads a struct from an array too; the API takes objects only (schemathesis found a
    // revocation accepting `[null]`).
    let revoke = app
        .http
        .post(app.url("/admin/v1/grants/g_0/revoke"))
        .bearer_auth(&op)
        .header("content-type", "application/json")
        .body("[null]")
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::BAD_REQUEST);
    for path in [
        "/nope",
        "/users/no-such-user",
        "/api-keys/not-a-key-id",
        "/grants/nope",
    ] {
        let r = get(&app, &op, path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert_eq!(r.body["error"], "not_found");
    }
    let bad_query = get(&app, &op, "/grants?include_revoked=perhaps").await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    let two = app
        .http
        .get(app.url("/admin/v1/me"))
        .header("authorization", format!("Bearer {op}"))
        .header("authorization", format!("Bearer {op}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two.status(), StatusCode::UNAUTHORIZED);
    let none_of = post(&app, &op, "/revocations", json!({})).await;
    assert_eq!(none_of.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

async fn openapi_document_and_resource_metadata_are_served(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let doc = app.get_json("/admin/v1/openapi.json").await;
    assert!(s(&doc["openapi"]).starts_with("3."));
    assert_eq!(doc["servers"][0]["url"], admin_resource(&app));
    assert!(doc["paths"]["/revocations"]["post"].is_object());
    // Every operation says what a database unavailable for now answers.
    assert!(doc["paths"]["/revocations"]["post"]["responses"]["503"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let meta = app
        .get_json("/.well-known/oauth-protected-resource/admin/v1")
        .await;
    assert_eq!(meta["resource"], admin_resource(&app));
    assert_eq!(meta["authorization_servers"][0], app.issuer);
    assert_eq!(meta["scopes_supported"], json!(["mandate.admin"]));
    app.stop().await;
}

/// Sequence numbers of a page of events.
fn seqs(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

fn all_have(page: &Value, field: &str, value: &str) -> bool {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e[field] == value)
}

async fn audit_log_is_searched_by_every_filter_within_the_callers_reach(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let operator = operator_token(&app).await;
    let bob = user_id(&app, "bob").await;
    let carol = user_id(&app, "carol").await;
    user_tokens(&app, "bob", "contacts.read").await;
    user_tokens(&app, "carol", "contacts.read").await;
    app.advance(100);
    let later = mandate_core::time::Clock::now(app.clock.as_ref()).unix();
    app.client_credentials(Some("tickets.read")).await;
    user_tokens(&app, "bob", "contacts.read").await;

    // By user: only bob's events, with his consent and his tokens among them.
    let by_bob = get(&app, &operator, &format!("/events?user_id={bob}")).await;
    assert_eq!(by_bob.status, StatusCode::OK, "{}", by_bob.body);
    assert!(all_have(&by_bob.body, "user_id", &bob), "{}", by_bob.body);
    let actions: Vec<&str> = by_bob.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["action"]))
        .collect();
    assert!(actions.contains(&"consent.granted"), "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "token.issued").count(), 2);
    let all_bob = seqs(&by_bob.body);
    assert!(all_bob.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert_eq!(by_bob.body["has_more"], false);
    assert_eq!(by_bob.body["last_seq"], *all_bob.last().unwrap());
    let first = &by_bob.body["events"][0];
    assert!(s(&first["time"]).ends_with('Z'), "{first}");

    // By action, agent and grant, combined.
    let issued = get(
        &app,
        &operator,
        &format!("/events?user_id={bob}&action=token.issued&client_id=cli-agent"),
    )
    .await;
    assert_eq!(seqs(&issued.body).len(), 2, "{}", issued.body);
    assert!(all_have(&issued.body, "client_id", "cli-agent"));
    let grant = s(&issued.body["events"][0]["grant_id"]).to_owned();
    let by_grant = get(&app, &operator, &format!("/events?grant_id={grant}")).await;
    assert!(all_have(&by_grant.body, "grant_id", &grant));
    assert!(!seqs(&by_grant.body).is_empty());
    let svc = get(
        &app,
        &operator,
        "/events?client_id=svc-agent&action=token.issued",
    )
    .await;
    assert_eq!(seqs(&svc.body).len(), 1, "{}", svc.body);

    // By time: `since` is inclusive, `until` exclusive; RFC 3339 and Unix seconds both work.
    let since = get(
        &app,
        &operator,
        &format!("/events?user_id={bob}&since={later}"),
    )
    .await;
    let recent = seqs(&since.body);
    assert!(!recent.is_empty() && recent.len() < all_bob.len());
    assert!(
        since.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["at"].as_i64().unwrap() >= later)
    );
    let stamp = mandate_core::time::Timestamp::from_unix(later).to_rfc3339();
    let until = get(
        &app,
        &operator,
        &format!("/events?user_id={bob}&until={stamp}"),
    )
    .await;
    let older = seqs(&until.body);
    assert_eq!(
        older.len() + recent.len(),
        all_bob.len(),
        "the two windows split the log"
    );

    // Pages of two, forwards and backwards, cover exactly the same events.
    let mut forward = Vec::new();
    let mut after = 0;
    loop {
        let page = get(
            &app,
            &operator,
            &format!("/events?user_id={bob}&limit=2&after={after}"),
        )
        .await;
        forward.extend(seqs(&page.body));
        if page.body["has_more"] == false {
            break;
        }
        after = page.body["last_seq"].as_i64().unwrap();
    }
    assert_eq!(forward, all_bob);
    let mut backward = Vec::new();
    let mut before = String::new();
    loop {
        let page = get(
            &app,
            &operator,
            &format!("/events?user_id={bob}&limit=2&order=desc{before}"),
        )
        .await;
        backward.extend(seqs(&page.body));
        if page.body["has_more"] == false {
            break;
        }
        before = format!("&before={}", page.body["last_seq"]);
    }
    backward.reverse();
    assert_eq!(backward, all_bob);

    // A tenant admin (alice, acme) sees acme's events only, whatever they ask for.
    let alice = person_token(&app, "alice").await;
    let theirs = get(&app, &alice, "/events?limit=1000").await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!seqs(&theirs.body).is_empty());
    assert!(
        all_have(&theirs.body, "tenant_id", "acme"),
        "{}",
        theirs.body
    );
    let text = theirs.body.to_string();
    assert!(
        !text.contains(&carol) && !text.contains("globex"),
        "globex leaked: {text}"
    );
    for probe in [
        "/events?tenant_id=globex".to_owned(),
        format!("/events?user_id={carol}"),
        "/events?tenant_id=globex&action=token.issued".to_owned(),
    ] {
        let page = get(&app, &alice, &probe).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(seqs(&page.body).is_empty(), "{probe}: {}", page.body);
    }
    let everyone = get(&app, &operator, &format!("/events?user_id={carol}")).await;
    assert!(
        !seqs(&everyone.body).is_empty(),
        "the operator does see globex"
    );

    // Bad queries are 400s in the API's format, naming the problem.
    for (query, needle) in [
        ("action=token.issuedd", "unknown action"),
        ("since=yesterday", "since must be"),
        ("until=2026-13-01T00:00:00Z", "until must be"),
        ("limit=0", "limit must be"),
        ("limit=1001", "limit must be"),
        ("order=sideways", "order must be"),
        ("after=-1", "sequence numbers"),
        ("after=abc", ""),
    ] {
        let bad = get(&app, &operator, &format!("/events?{query}")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}: {}", bad.body);
        assert_eq!(bad.body["error"], "invalid_request", "{query}");
        assert!(
            s(&bad.body["error_description"]).contains(needle),
            "{query}: {}",
            bad.body
        );
    }
    assert!(
        app.store
            .events(&EventFilter {
                limit: 10_000,
                ..EventFilter::default()
            })
            .await
            .unwrap()
            .iter()
            .all(|e| !format!("{:?}", e.event).contains(ADMIN_CLI_SECRET)),
        "no secret in any event"
    );
    app.stop().await;
}

/// The token endpoint caches the agent's service grant (`cache_ttl_ms`, 1 s here); revoking
/// it reaches the cache through the log's revocation events well before the TTL runs out.
async fn a_revoked_service_grant_is_not_used_for_the_next_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = operator_token(&app).await;
    let first = app.client_credentials(None).await;
    let gid = app.verify(s(&first["access_token"])).await.gid;
    let again = app.client_credentials(None).await;
    assert_eq!(
        app.verify(s(&again["access_token"])).await.gid,
        gid,
        "cached"
    );
    let r = post(&app, &op, &format!("/grants/{gid}/revoke"), json!({})).await;
    assert_eq!(r.body["was_active"], true, "{}", r.body);
    let revoked = std::time::Instant::now();
    loop {
        let next = app.client_credentials(None).await;
        let claims = app.verify(s(&next["access_token"])).await;
        if claims.gid != gid {
            break;
        }
        assert!(
            revoked.elapsed() < std::time::Duration::from_millis(500),
            "tokens were still issued under the revoked service grant after {:?}",
            revoked.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Follows `rel="next"` from `path` (under `/admin/v1`) to the last page; the values of `field`
/// in order, and how many pages there were.
async fn walk(app: &TestApp, token: &str, path: &str, field: &str) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut url = app.url(&format!("/admin/v1{path}"));
    loop {
        let resp = app.http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let link = resp
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        seen.extend(ids(&body, field));
        pages += 1;
        let Some(link) = link else { break };
        let target = link
            .strip_prefix('<')
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap_or_else(|| panic!("not a next link: {link}"));
        assert!(
            target.starts_with(&format!("{}/", admin_resource(app))),
            "the next page at the API's public address: {target}"
        );
        url = target.to_owned();
    }
    (seen, pages)
}

async fn listings_come_a_page_at_a_time_with_a_link_to_the_next(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let op = operator_token(&app).await;
    let alice = person_token(&app, "alice").await;
    // Seven more people in acme, each with a grant; three of the grants in one second.
    for i in 0..7 {
        let id = format!("u_page_{i}");
        let user = mandate_core::directory::User {
            id: id.clone(),
            tenant_id: "acme".into(),
            login: format!("page-{i}"),
            display_name: format!("Page {i}"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            disabled: false,
        };
        app.store.create_user(&user).await.unwrap();
        let grant = mandate_core::grant::Grant {
            id: format!("g_page_{i}"),
            tenant_id: "acme".into(),
            user_id: Some(id),
            client_id: "demo-crm".into(),
            scopes: mandate_core::scope::ScopeSet::parse("contacts.read").unwrap(),
            purpose: None,
            created_at: mandate_core::time::Timestamp::from_unix(1_000 + i64::from(i.min(3))),
            expires_at: None,
            revoked_at: None,
            revoked_reason: None,
        };
        app.store.create_grant(&grant).await.unwrap();
    }
    for name in ["first", "second", "third"] {
        let made = post(
            &app,
            &op,
            "/api-keys",
            json!({"tenant_id": "acme", "name": name, "scopes": ["contacts.read"],
                   "expires_in": 3600}),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    }

    let every_acme: Vec<String> = app
        .store
        .users(Some("acme"), None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.login)
        .collect();
    assert_eq!(every_acme.len(), 9, "alice, bob and seven more");
    let (logins, pages) = walk(&app, &op, "/users?tenant_id=acme&limit=4", "login").await;
    assert_eq!((logins, pages), (every_acme.clone(), 3));
    // A tenant admin pages through their own tenant only, whatever the filter says.
    let (logins, _) = walk(&app, &alice, "/users?limit=2", "login").await;
    assert_eq!(logins, every_acme);
    assert_eq!(
        get(&app, &op, "/users?tenant_id=acme&limit=9")
            .await
            .headers
            .get("link"),
        None,
        "no link after the last page"
    );

    let filter = mandate_store::GrantFilter {
        tenant_id: Some("acme".into()),
        include_revoked: true,
        ..mandate_store::GrantFilter::default()
    };
    let every_grant: Vec<String> = app
        .store
        .grants(&filter, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    let (grants, pages) = walk(&app, &alice, "/grants?include_revoked=true&limit=2", "id").await;
    assert_eq!(grants, every_grant);
    assert_eq!(pages, every_grant.len().div_ceil(2));

    for (token, tenant) in [(&op, None), (&alice, Some("acme"))] {
        let every_agent: Vec<String> = app
            .store
            .agents(tenant, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.client_id)
            .collect();
        assert!(!every_agent.is_empty());
        let (agents, pages) = walk(&app, token, "/agents?limit=2", "client_id").await;
        assert_eq!(agents, every_agent, "{tenant:?}");
        assert_eq!(pages, every_agent.len().div_ceil(2), "no empty last page");
    }

    // Created in the same second or not: newest first, then by id, as the store keeps them.
    let every_key: Vec<String> = app
        .store
        .api_keys(None, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.record.name)
        .collect();
    assert_eq!(every_key.len(), 3);
    let (keys, pages) = walk(&app, &op, "/api-keys?limit=1", "name").await;
    assert_eq!((keys, pages), (every_key, 3));

    for path in [
        "/users?limit=0",
        "/grants?limit=1001",
        "/users?after=%25%25%25",
        "/grants?after=bm90IGEgY3Vyc29y",
        "/api-keys?after=MTAwLm5vdC1hLWtleQ",
    ] {
        let refused = get(&app, &op, path).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(refused.body["error"], "invalid_request", "{path}");
    }
    app.stop().await;
}
