//! The admin console (`/admin/console/`) over real HTTP: who gets in (sign-in and back, 403
//! for people without a role), tenant isolation on every page and form, CSRF on every form,
//! API keys shown once, grant revocation reaching introspection and the feed, and the audit
//! log's filters and pages.

use crate::api_keys::exchange_key;
use crate::helpers::*;
use crate::revocation_feed::{entries, open_feed};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_store::EventFilter;
use reqwest::StatusCode;
use std::time::Duration;

crate::backend_tests!(
    signed_out_visitors_sign_in_and_come_back_to_the_page,
    people_without_an_admin_role_get_403_on_every_page_and_form,
    tenant_admin_sees_only_their_tenant_on_every_page,
    tenant_admin_gets_not_found_for_another_tenants_ids_in_pages_and_forms,
    operator_sees_every_tenant,
    forms_without_this_sessions_csrf_token_are_refused,
    an_api_key_is_shown_once_then_rotated_and_revoked,
    revoking_a_grant_ends_its_tokens_and_is_audited_and_fed,
    audit_log_filters_and_pages,
    alerts_and_signing_keys_are_shown_without_secrets,
    long_lists_come_in_pages_and_the_overview_counts_without_listing,
);

/// Every console page, as linked from the navigation.
const PAGES: [&str; 9] = [
    "overview",
    "tenants",
    "users",
    "agents",
    "grants",
    "api-keys",
    "audit",
    "alerts",
    "signing-keys",
];

fn console(page: &str) -> String {
    format!("/admin/console/{page}")
}

async fn get(browser: &Browser, app: &TestApp, path: &str) -> Page {
    Page::from_response(browser.http.get(app.url(path)).send().await.unwrap()).await
}

fn location(page: &Page) -> &str {
    page.headers["location"].to_str().unwrap()
}

/// A browser signed in as `login` at `/account/login`.
async fn signed_in(app: &TestApp, login: &str) -> Browser {
    let browser = Browser::default();
    let form_page = get(&browser, app, "/account/login").await;
    let body = form(&[
        ("csrf", &hidden(&form_page.html, "csrf")),
        ("login", login),
        ("password", &format!("{login}-demo-password")),
    ]);
    let done = browser.post(app, "/account/login", body).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    browser
}

/// A console page that must answer 200.
async fn page(browser: &Browser, app: &TestApp, page: &str) -> Page {
    let p = get(browser, app, &console(page)).await;
    assert_eq!(p.status, StatusCode::OK, "{page}: {}", p.html);
    p
}

/// Posts a console form with this page's CSRF token and `pairs`.
async fn post(
    browser: &Browser,
    app: &TestApp,
    csrf: &str,
    action: &str,
    pairs: &[(&str, &str)],
) -> Page {
    let mut all = vec![("csrf", csrf)];
    all.extend_from_slice(pairs);
    browser.post(app, &console(action), form(&all)).await
}

/// The console's CSRF token for this browser's session.
async fn csrf(browser: &Browser, app: &TestApp) -> String {
    hidden(&page(browser, app, "overview").await.html, "csrf")
}

/// The `mk_...` key on a key page (the read-only field's value).
fn shown_key(html: &str) -> String {
    let marker = "id=\"new-key\" class=\"secret\" type=\"text\" readonly value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no key in:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Rows of the page's table.
fn rows(html: &str) -> usize {
    html.matches("<td data-label=\"#\">").count()
}

async fn user_id(app: &TestApp, login: &str) -> String {
    app.store.user_by_login(login).await.unwrap().unwrap().id
}

/// A grant for `login` through the code flow; its tokens and grant id.
async fn grant_of(app: &TestApp, login: &str) -> (serde_json::Value, String) {
    let tokens = user_tokens(app, login, "contacts.read").await;
    let gid = app.verify(s(&tokens["access_token"])).await.gid;
    (tokens, gid)
}

/// Creates a key in `tenant` as olivia (operator) in the console; its id and the key.
async fn key_in(app: &TestApp, olivia: &Browser, tenant: &str, name: &str) -> (String, String) {
    let token = csrf(olivia, app).await;
    let created = post(
        olivia,
        app,
        &token,
        "create-key",
        &[
            ("tenant_id", tenant),
            ("user", ""),
            ("name", name),
            ("scope", "contacts.read"),
            ("expires_in", "86400"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    let key = shown_key(&created.html);
    let id = created
        .html
        .split("<dt>Key id</dt><dd><code>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    (id, key)
}

/// An `anomaly.detected` event as the rules task records it.
fn alert(app: &TestApp, tenant: &str, client_id: &str) -> NewEvent {
    let mut e = NewEvent::new(app.now(), Action::AnomalyDetected, ActorKind::System);
    e.actor_id = Some("anomaly:spike".into());
    e.tenant_id = Some(tenant.into());
    e.client_id = Some(client_id.into());
    e.reason = Some(format!("5 token.issued for agent {client_id} within 60 s"));
    e.detail = serde_json::json!({
        "rule": "spike", "kind": "issuance_spike",
        "subject": { "kind": "agent", "id": client_id },
        "count": 5, "threshold": 5, "window_seconds": 60, "actions": ["alert", "throttle"],
    });
    e
}

async fn signed_out_visitors_sign_in_and_come_back_to_the_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let bare = get(&browser, &app, "/admin/console").await;
    assert_eq!(bare.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&bare), "/admin/console/overview");

    let asked = get(
        &browser,
        &app,
        "/admin/console/grants?tenant=acme&revoked=on",
    )
    .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER);
    let to_login = location(&asked).to_owned();
    assert_eq!(
        to_login,
        "/account/login?next=grants%3Ftenant%3Dacme%26revoked%3Don"
    );
    let login = get(&browser, &app, &to_login).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.html.contains("Sign in to the admin console"),
        "{}",
        login.html
    );
    let next = hidden(&login.html, "next");
    assert_eq!(
        next, "grants?tenant=acme&#38;revoked=on",
        "escaped in the page"
    );
    let body = form(&[
        ("csrf", &hidden(&login.html, "csrf")),
        ("next", "grants?tenant=acme&revoked=on"),
        ("login", "alice"),
        ("password", "alice-demo-password"),
    ]);
    let done = browser.post(&app, "/account/login", body).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(
        location(&done),
        "/admin/console/grants?tenant=acme&revoked=on"
    );
    let grants = get(&browser, &app, location(&done)).await;
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.html);
    assert!(grants.html.contains("<h1>Grants</h1>"));
    let csp = grants.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(grants.headers["cache-control"], "no-store");
    let css = get(&browser, &app, "/admin/console/static/mandate.css").await;
    assert_eq!(css.status, StatusCode::OK);

    // Signed in already: the sign-in page goes straight back to the console page.
    let again = get(&browser, &app, "/account/login?next=audit").await;
    assert_eq!(location(&again), "/admin/console/audit");

    // `next` never leads anywhere but a console page.
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "../agents",
        "grants/../../x",
        "grants?x=//evil",
    ] {
        let fresh = Browser::default();
        let asked = format!("/account/login?{}", form(&[("next", evil)]));
        let login = get(&fresh, &app, &asked).await;
        assert!(!login.html.contains("name=\"next\""), "{evil}");
        let body = form(&[
            ("csrf", &hidden(&login.html, "csrf")),
            ("next", evil),
            ("login", "alice"),
            ("password", "alice-demo-password"),
        ]);
        let done = fresh.post(&app, "/account/login", body).await;
        assert_eq!(location(&done), "/account/agents", "{evil}");
        let again = get(&fresh, &app, &asked).await;
        assert_eq!(location(&again), "/account/agents", "{evil}");
    }
}

async fn people_without_an_admin_role_get_403_on_every_page_and_form(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, alice_gid) = grant_of(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    for p in PAGES {
        let refused = get(&bob, &app, &console(p)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{p}");
        assert!(refused.html.contains("Not an administrator"), "{p}");
        assert!(!refused.html.contains("Acme Corp"), "{p}: no data");
    }
    // A form with bob's own valid token: still no role.
    let agents = get(&bob, &app, "/account/agents").await;
    let token = hidden(&agents.html, "csrf");
    for (action, pairs) in [
        ("revoke-grant", vec![("grant_id", alice_gid.as_str())]),
        (
            "create-key",
            vec![
                ("tenant_id", "acme"),
                ("name", "x"),
                ("scope", "contacts.read"),
                ("expires_in", "86400"),
            ],
        ),
    ] {
        let refused = post(&bob, &app, &token, action, &pairs).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{action}");
        assert!(refused.html.contains("Not an administrator"), "{action}");
    }
    let grant = app.store.grant(&alice_gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_none());
    assert!(
        app.store
            .api_keys(Some("acme"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A form from nobody signed in goes to the sign-in page.
    let nobody = Browser::default();
    let out = post(
        &nobody,
        &app,
        "x",
        "revoke-grant",
        &[("grant_id", &alice_gid)],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/account/login?next=overview");
}

/// Globex data that must never reach acme's tenant admin: carol's grant and a globex key.
struct Globex {
    carol_id: String,
    carol_gid: String,
    key_id: String,
}

async fn two_tenants(app: &TestApp) -> (Globex, String, String) {
    let (_, carol_gid) = grant_of(app, "carol").await;
    let (_, bob_gid) = grant_of(app, "bob").await;
    app.client_credentials(None).await;
    let olivia = signed_in(app, "olivia").await;
    let (key_id, _) = key_in(app, &olivia, "globex", "globex export").await;
    let (acme_key, _) = key_in(app, &olivia, "acme", "acme sync").await;
    app.store
        .append_events(&[
            alert(app, "globex", "cli-agent"),
            alert(app, "acme", "svc-agent"),
        ])
        .await
        .unwrap();
    let globex = Globex {
        carol_id: user_id(app, "carol").await,
        carol_gid,
        key_id,
    };
    (globex, bob_gid, acme_key)
}

async fn tenant_admin_sees_only_their_tenant_on_every_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let (globex, bob_gid, acme_key) = two_tenants(&app).await;
    let alice = signed_in(&app, "alice").await;
    let mut seen = String::new();
    for p in PAGES.iter().chain(&["grants?revoked=on"]) {
        let shown = page(&alice, &app, p).await;
        assert!(shown.html.contains("Tenant admin: Acme Corp"), "{p}");
        let lower = shown.html.to_lowercase();
        for foreign in [
            "globex",
            "carol",
            globex.carol_id.as_str(),
            globex.carol_gid.as_str(),
            globex.key_id.as_str(),
            "operations",
            "olivia",
            "admin-cli",
        ] {
            assert!(
                !lower.contains(&foreign.to_lowercase()),
                "{p} shows `{foreign}`:\n{}",
                shown.html
            );
        }
        seen.push_str(&shown.html);
    }
    // What acme's admin does see: acme's people, agents, grants, keys, events and alerts.
    for expected in [
        "Alice Anders",
        "Bob Brown",
        "svc-agent",
        "orchestrator",
        bob_gid.as_str(),
        acme_key.as_str(),
        "acme sync",
        "consent.granted",
        "5 token.issued for agent svc-agent within 60 s",
        "EdDSA",
    ] {
        assert!(seen.contains(expected), "the console shows {expected}");
    }
    // Agents of every tenant are the operator's; tenant admins see their own.
    let agents = page(&alice, &app, "agents").await;
    assert!(
        !agents.html.contains("<code>cli-agent</code><"),
        "{}",
        agents.html
    );
    assert!(agents.html.contains("tickets.write"), "maximum scopes");
}

async fn tenant_admin_gets_not_found_for_another_tenants_ids_in_pages_and_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    let (globex, _, _) = two_tenants(&app).await;
    let alice = signed_in(&app, "alice").await;
    for p in [
        "users?tenant=globex".to_owned(),
        "grants?tenant=globex".to_owned(),
        "grants?user=carol".to_owned(),
        format!("grants?user={}", globex.carol_id),
        "api-keys?tenant=globex".to_owned(),
        "audit?tenant=globex".to_owned(),
        "audit?user=carol".to_owned(),
        format!("audit?grant={}", globex.carol_gid),
        "users?tenant=ops".to_owned(),
    ] {
        let refused = get(&alice, &app, &console(&p)).await;
        assert_eq!(
            refused.status,
            StatusCode::NOT_FOUND,
            "{p}: {}",
            refused.html
        );
        assert!(
            refused.html.contains("<h1>Not found</h1>"),
            "{p}: a page, not JSON"
        );
        assert!(!refused.html.contains("Carol Chen") && !refused.html.contains("Globex Inc"));
    }
    let token = csrf(&alice, &app).await;
    for (action, pairs) in [
        (
            "revoke-grant",
            vec![("grant_id", globex.carol_gid.as_str())],
        ),
        ("revoke-key", vec![("key_id", globex.key_id.as_str())]),
        (
            "rotate-key",
            vec![("key_id", globex.key_id.as_str()), ("expires_in", "86400")],
        ),
        (
            "create-key",
            vec![
                ("tenant_id", "globex"),
                ("user", ""),
                ("name", "sneaky"),
                ("scope", "contacts.read"),
                ("expires_in", "86400"),
            ],
        ),
        (
            "create-key",
            vec![
                ("tenant_id", "acme"),
                ("user", globex.carol_id.as_str()),
                ("name", "sneaky"),
                ("scope", "contacts.read"),
                ("expires_in", "86400"),
            ],
        ),
    ] {
        let refused = post(&alice, &app, &token, action, &pairs).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{action} {pairs:?}");
        assert!(!refused.html.contains("mk_"), "{action}: no key made");
    }
    let grant = app.store.grant(&globex.carol_gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_none(), "carol's grant is untouched");
    let globex_keys = app.store.api_keys(Some("globex"), None, 10).await.unwrap();
    assert_eq!(globex_keys.len(), 1, "nothing created or rotated");
    assert!(globex_keys[0].record.revoked_at.is_none());
    assert!(globex_keys[0].replaced_by.is_none());
    let acme_keys = app.store.api_keys(Some("acme"), None, 10).await.unwrap();
    assert_eq!(acme_keys.len(), 1, "no key for carol in acme");
}

async fn operator_sees_every_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (globex, bob_gid, acme_key) = two_tenants(&app).await;
    let olivia = signed_in(&app, "olivia").await;
    let tenants = page(&olivia, &app, "tenants").await;
    for t in ["Acme Corp", "Globex Inc", "Operations"] {
        assert!(tenants.html.contains(t), "{t}");
    }
    let users = page(&olivia, &app, "users").await;
    assert!(users.html.contains("Carol Chen") && users.html.contains("Alice Anders"));
    let only_globex = page(&olivia, &app, "users?tenant=globex").await;
    assert!(only_globex.html.contains("Carol Chen"));
    assert!(!only_globex.html.contains("Alice Anders"));
    let grants = page(&olivia, &app, "grants").await;
    assert!(grants.html.contains(&globex.carol_gid) && grants.html.contains(&bob_gid));
    let keys = page(&olivia, &app, "api-keys").await;
    assert!(keys.html.contains(&globex.key_id) && keys.html.contains(&acme_key));
    let agents = page(&olivia, &app, "agents").await;
    assert!(agents.html.contains("<code>cli-agent</code>") && agents.html.contains("Every tenant"));
    let audit = page(&olivia, &app, "audit?tenant=globex").await;
    assert!(
        audit.html.contains("carol"),
        "globex's events: {}",
        audit.html
    );
    assert!(!audit.html.contains("<td data-label=\"Tenant\">acme</td>"));
    let alerts = page(&olivia, &app, "alerts").await;
    assert_eq!(rows(&alerts.html), 2, "{}", alerts.html);
    assert!(
        page(&olivia, &app, "overview")
            .await
            .html
            .contains("Operator: every tenant")
    );
}

async fn forms_without_this_sessions_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bob_gid) = grant_of(&app, "bob").await;
    let alice = signed_in(&app, "alice").await;
    let olivia = signed_in(&app, "olivia").await;
    let olivias = csrf(&olivia, &app).await;
    let create = [
        ("tenant_id", "acme"),
        ("name", "x"),
        ("scope", "contacts.read"),
        ("expires_in", "86400"),
    ];
    for (token, action, pairs, why) in [
        (
            None,
            "revoke-grant",
            vec![("grant_id", bob_gid.as_str())],
            "no token",
        ),
        (
            Some("forged"),
            "revoke-grant",
            vec![("grant_id", bob_gid.as_str())],
            "a made-up token",
        ),
        (
            Some(olivias.as_str()),
            "revoke-grant",
            vec![("grant_id", bob_gid.as_str())],
            "another session's token",
        ),
        (
            None,
            "create-key",
            create.to_vec(),
            "create without a token",
        ),
        (
            None,
            "rotate-key",
            vec![("key_id", "mkid_x")],
            "rotate without a token",
        ),
        (
            None,
            "revoke-key",
            vec![("key_id", "mkid_x")],
            "revoke without a token",
        ),
    ] {
        let mut all: Vec<(&str, &str)> = token.map(|t| ("csrf", t)).into_iter().collect();
        all.extend_from_slice(&pairs);
        let refused = alice.post(&app, &console(action), form(&all)).await;
        refused.assert_form_refused(why);
    }
    let grant = app.store.grant(&bob_gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_none(), "nothing was revoked");
    assert!(
        app.store
            .api_keys(Some("acme"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_api_key_is_shown_once_then_rotated_and_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = signed_in(&app, "alice").await;
    let alice_id = user_id(&app, "alice").await;
    let form_page = page(&alice, &app, "api-keys").await;
    assert!(form_page.html.contains("No API key."));
    let token = hidden(&form_page.html, "csrf");
    let created = post(
        &alice,
        &app,
        &token,
        "create-key",
        &[
            ("tenant_id", "acme"),
            ("user", &alice_id),
            ("name", "nightly sync"),
            ("scope", "contacts.read"),
            ("scope", "tickets.read"),
            ("expires_in", &(30 * 86_400).to_string()),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.html);
    assert_eq!(created.headers["cache-control"], "no-store");
    let key = shown_key(&created.html);
    assert!(key.starts_with("mk_"), "{key}");
    assert_eq!(created.html.matches(&key).count(), 1, "shown exactly once");
    // The key works: it is exchanged for a token carrying its scopes.
    let (status, body) = exchange_key(&app, &key, &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "contacts.read tickets.read");

    // Never again: not on the list, not in the store, not in the audit log.
    let list = page(&alice, &app, "api-keys").await;
    assert!(list.html.contains("nightly sync"));
    assert!(!list.html.contains(&key) && !list.html.contains("id=\"new-key\""));
    let stored = app.store.api_keys(Some("acme"), None, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    let old_id = stored[0].record.id.to_string();
    assert!(list.html.contains(&old_id));
    let events = app
        .store
        .events(&EventFilter {
            limit: 10_000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert!(!serde_json::to_string(&events).unwrap().contains(&key));
    let made = events
        .iter()
        .find(|e| e.event.action == Action::ApiKeyCreated)
        .unwrap();
    assert_eq!(made.event.actor_id, Some(format!("user:{alice_id}")));
    assert_eq!(made.event.actor_kind, ActorKind::Admin);

    // Rotate: a new key, shown once; the old one keeps working for the overlap.
    let rotated = post(
        &alice,
        &app,
        &token,
        "rotate-key",
        &[("key_id", &old_id), ("expires_in", "604800")],
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.html);
    let successor = shown_key(&rotated.html);
    assert!(successor.starts_with("mk_") && successor != key);
    assert!(rotated.html.contains(&old_id), "names the key it replaces");
    assert!(
        !rotated.html.contains(&key),
        "the old key is not shown again"
    );
    let list = page(&alice, &app, "api-keys").await;
    assert!(!list.html.contains(&successor));
    assert!(list.html.contains("rotated") && list.html.contains("active"));
    let again = post(
        &alice,
        &app,
        &token,
        "rotate-key",
        &[("key_id", &old_id), ("expires_in", "604800")],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "rotated before");
    assert!(!again.html.contains("mk_"));

    // Revoke the successor: its exchange stops at once.
    let new_id = app
        .store
        .api_keys(Some("acme"), None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.record.id.to_string() != old_id)
        .unwrap()
        .record
        .id
        .to_string();
    let revoked = post(&alice, &app, &token, "revoke-key", &[("key_id", &new_id)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.html);
    assert_eq!(
        location(&revoked),
        "/admin/console/api-keys?done=key-revoked"
    );
    let (status, _) = exchange_key(&app, &successor, &[("resource", CRM)]).await;
    assert_ne!(status, StatusCode::OK);
    let list = page(&alice, &app, "api-keys?done=key-revoked").await;
    assert!(list.html.contains("API key revoked."));
    assert!(list.html.contains("revoked"));

    // A lifetime beyond the configured maximum is refused as a page, not JSON.
    let too_long = post(
        &alice,
        &app,
        &token,
        "create-key",
        &[
            ("tenant_id", "acme"),
            ("name", "forever"),
            ("scope", "contacts.read"),
            ("expires_in", &(3650 * 86_400).to_string()),
        ],
    )
    .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert!(
        too_long.html.contains("<h1>Invalid request</h1>"),
        "{}",
        too_long.html
    );
}

async fn revoking_a_grant_ends_its_tokens_and_is_audited_and_fed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tokens, bob_gid) = grant_of(&app, "bob").await;
    let access_token = s(&tokens["access_token"]).to_owned();
    assert_eq!(app.introspect(&access_token).await["active"], true);
    let alice = signed_in(&app, "alice").await;
    let grants = page(&alice, &app, "grants?user=bob").await;
    assert_eq!(hidden(&grants.html, "grant_id"), bob_gid);
    let mut feed = open_feed(&app, None).await;
    let done = post(
        &alice,
        &app,
        &hidden(&grants.html, "csrf"),
        "revoke-grant",
        &[("grant_id", &bob_gid)],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(location(&done), "/admin/console/grants?done=revoked");

    assert_eq!(app.introspect(&access_token).await["active"], false);
    let (status, _) = refresh(&app, s(&tokens["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut buf = String::new();
    let fed = entries(&mut feed, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(fed[0].1["kind"], "grant");
    assert_eq!(fed[0].1["grant_id"], bob_gid.as_str());
    let events = app
        .store
        .events(&EventFilter {
            grant_id: Some(bob_gid.clone()),
            action: Some("grant.revoked".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let alice_id = user_id(&app, "alice").await;
    assert_eq!(events[0].event.actor_kind, ActorKind::Admin);
    assert_eq!(events[0].event.actor_id, Some(format!("user:{alice_id}")));
    assert_eq!(
        events[0].event.reason.as_deref(),
        Some("revoked by administrator")
    );

    let after = page(&alice, &app, "grants?done=revoked").await;
    assert!(after.html.contains("Grant revoked."));
    assert!(
        !after.html.contains(&bob_gid),
        "revoked grants are hidden by default"
    );
    let with_revoked = page(&alice, &app, "grants?revoked=on").await;
    assert!(with_revoked.html.contains(&bob_gid));
    assert!(
        !with_revoked.html.contains("name=\"grant_id\""),
        "no revoke button left"
    );
}

async fn audit_log_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, bob_gid) = grant_of(&app, "bob").await;
    for _ in 0..60 {
        app.client_credentials(Some("tickets.read")).await;
    }
    let alice = signed_in(&app, "alice").await;

    let bobs = page(&alice, &app, "audit?user=bob").await;
    assert!(
        rows(&bobs.html) >= 3,
        "login, consent, token: {}",
        bobs.html
    );
    assert!(!bobs.html.contains("svc-agent"), "only bob's events");
    let by_grant = page(&alice, &app, &format!("audit?grant={bob_gid}")).await;
    assert!(rows(&by_grant.html) >= 2);
    assert!(!by_grant.html.contains("svc-agent"));
    let consents = page(&alice, &app, "audit?action=consent.granted").await;
    assert_eq!(rows(&consents.html), 1, "{}", consents.html);
    assert!(
        consents
            .html
            .contains("<option value=\"consent.granted\" selected>")
    );
    let future = app.now().plus_seconds(3600).to_rfc3339();
    let since = page(&alice, &app, &format!("audit?since={}", &future[..16])).await;
    assert_eq!(rows(&since.html), 0, "{}", since.html);
    assert!(since.html.contains("No event matches."));
    let until = page(
        &alice,
        &app,
        &format!("audit?until={}&agent=svc-agent", &future[..16]),
    )
    .await;
    assert_eq!(rows(&until.html), 50, "a full first page");

    // Pages of 50, newest first, with links that keep the filters.
    let first = page(&alice, &app, "audit?agent=svc-agent&action=token.issued").await;
    assert_eq!(rows(&first.html), 50);
    let older = first
        .html
        .split("<a href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("before="))
        .expect("an older page")
        .replace("&#38;", "&");
    assert!(
        older.starts_with("audit?agent=svc-agent&action=token.issued&before="),
        "{older}"
    );
    let second = page(&alice, &app, &older).await;
    assert_eq!(rows(&second.html), 10, "{}", second.html);
    assert!(second.html.contains("Newest events"));
    assert!(!second.html.contains("before="), "no page after the last");

    // Filters that cannot be read are a 400 page.
    for bad in [
        "audit?action=no.such",
        "audit?since=yesterday",
        "audit?before=x",
        "audit?user=bob&user=alice",
    ] {
        let refused = get(&alice, &app, &console(bad)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(refused.html.contains("<h1>"), "{bad}: a page");
    }
}

async fn alerts_and_signing_keys_are_shown_without_secrets(backend: Backend) {
    let app = spawn_app(backend).await;
    app.store
        .append_events(&[alert(&app, "acme", "svc-agent")])
        .await
        .unwrap();
    let alice = signed_in(&app, "alice").await;
    let alerts = page(&alice, &app, "alerts").await;
    assert_eq!(rows(&alerts.html), 1);
    for text in [
        "spike",
        "agent svc-agent",
        "alert, throttle",
        "5 token.issued",
    ] {
        assert!(alerts.html.contains(text), "{text}: {}", alerts.html);
    }
    let overview = page(&alice, &app, "overview").await;
    assert!(overview.html.contains("agent svc-agent"), "recent alerts");

    let keys = page(&alice, &app, "signing-keys").await;
    let jwks = app.jwks().await;
    assert_eq!(jwks.len(), 1);
    assert!(keys.html.contains(jwks[0].kid()), "{}", keys.html);
    assert!(keys.html.contains("EdDSA") && keys.html.contains("active"));
    let stored = app.store.signing_keys().await.unwrap();
    let sealed = hex(&stored[0].private_sealed);
    assert!(!keys.html.contains(&sealed[..16]), "no private material");
    assert!(!keys.html.contains("\"d\""));
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The `href` of a page's "Next page" link, if it has one.
fn next_link(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\"")?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// How many people a users page lists.
fn user_rows(html: &str) -> usize {
    html.matches("<td data-label=\"Login\">").count()
}

async fn long_lists_come_in_pages_and_the_overview_counts_without_listing(backend: Backend) {
    let app = spawn_app(backend).await;
    // 120 more people in acme: more than one page of users (100 a page).
    for i in 0..120 {
        let user = mandate_core::directory::User {
            id: format!("u_many_{i:03}"),
            tenant_id: "acme".into(),
            login: format!("many-{i:03}"),
            display_name: format!("Many {i}"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            disabled: false,
        };
        app.store.create_user(&user).await.unwrap();
    }
    let alice = signed_in(&app, "alice").await;
    let first = page(&alice, &app, "users").await;
    let next = next_link(&first.html).expect("a next page link");
    assert!(next.starts_with("users?after="), "{next}");
    let second = page(&alice, &app, &next).await;
    assert_eq!(next_link(&second.html), None, "two pages in all");
    let acme = app.store.count_users(Some("acme"), 10_000).await.unwrap();
    assert_eq!(
        user_rows(&first.html) + user_rows(&second.html),
        acme as usize,
        "every acme user once"
    );
    assert_eq!(user_rows(&first.html), 100);
    for login in ["many-000", "many-119", "alice"] {
        let on_first = first.html.contains(&format!("<code>{login}</code>"));
        let on_second = second.html.contains(&format!("<code>{login}</code>"));
        assert!(on_first != on_second, "{login} on exactly one page");
    }
    let overview = page(&alice, &app, "overview").await;
    assert!(
        overview
            .html
            .contains(&format!("<span class=\"count\">{acme}</span> Users")),
        "{}",
        overview.html
    );
    // A garbled cursor is a page saying so, not a server error.
    let garbled = get(&alice, &app, &console("users?after=%25%25")).await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
}
