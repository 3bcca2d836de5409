//! The account pages: signing in without an authorization request, the connected agents page,
//! revoking from it (one grant or all), signing out, and the CSRF and ownership checks.

use crate::helpers::*;
use crate::revocation_feed::{entries, open_feed};
use mandate_store::EventFilter;
use reqwest::StatusCode;
use std::time::Duration;

crate::backend_tests!(
    signed_out_visitors_are_sent_to_the_sign_in_form,
    the_page_lists_own_grants_with_scopes_use_and_activity,
    revoking_from_the_page_ends_the_tokens_and_is_audited_and_fed,
    revoke_all_ends_every_own_grant_and_nobody_elses,
    nobody_revokes_another_persons_grant,
    forms_without_this_sessions_csrf_token_are_refused,
    sign_out_deletes_the_session_and_its_cookie,
);

async fn get(browser: &Browser, app: &TestApp, path: &str) -> Page {
    Page::from_response(browser.http.get(app.url(path)).send().await.unwrap()).await
}

fn location(page: &Page) -> &str {
    page.headers["location"].to_str().unwrap()
}

/// The `mandate_session` cookie a response sets, whole (`name=value; attributes`).
fn session_cookie(page: &Page) -> Option<String> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mandate_session="))
}

/// A browser signed in as `login` through `/account/login`, and its `Set-Cookie` for the
/// session.
async fn signed_in(app: &TestApp, login: &str) -> (Browser, String) {
    let browser = Browser::default();
    let form_page = get(&browser, app, "/account/login").await;
    assert_eq!(form_page.status, StatusCode::OK);
    assert!(form_page.is_login(), "{}", form_page.html);
    assert!(!form_page.html.contains("request_id"), "no pending request");
    let body = form(&[
        ("csrf", &hidden(&form_page.html, "csrf")),
        ("login", login),
        ("password", &format!("{login}-demo-password")),
    ]);
    let done = browser.post(app, "/account/login", body).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(location(&done), "/account/agents");
    let cookie = session_cookie(&done).expect("a session cookie");
    (browser, cookie)
}

async fn agents_page(browser: &Browser, app: &TestApp) -> Page {
    let page = get(browser, app, "/account/agents").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    page
}

async fn post_revoke(browser: &Browser, app: &TestApp, csrf: &str, grant_id: &str) -> Page {
    let body = form(&[("csrf", csrf), ("grant_id", grant_id)]);
    browser.post(app, "/account/revoke", body).await
}

async fn signed_out_visitors_are_sent_to_the_sign_in_form(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let page = get(&browser, &app, "/account/agents").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/account/login");

    // Wrong password: the form again, saying so, and nobody signed in.
    let form_page = get(&browser, &app, "/account/login").await;
    let body = form(&[
        ("csrf", &hidden(&form_page.html, "csrf")),
        ("login", "alice"),
        ("password", "not-her-password"),
    ]);
    let refused = browser.post(&app, "/account/login", body).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.html.contains("not correct"), "{}", refused.html);
    assert!(session_cookie(&refused).is_none());

    // The stylesheet the account pages link relatively is there.
    let css = app
        .http
        .get(app.url("/account/static/mandate.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);

    // Signing in while signed in goes straight on.
    let (browser, _) = signed_in(&app, "alice").await;
    let again = get(&browser, &app, "/account/login").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&again), "/account/agents");
}

async fn the_page_lists_own_grants_with_scopes_use_and_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let (browser, _) = signed_in(&app, "alice").await;
    let empty = agents_page(&browser, &app).await;
    assert!(empty.html.contains("No agent has access"), "{}", empty.html);
    let csp = empty.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(empty.headers["cache-control"], "no-store");

    // Signed in already: authorize goes straight to consent on the same browser.
    let code = authorize_code(
        &app,
        &browser,
        "alice",
        "contacts.read contacts.write",
        &["contacts.read"],
    )
    .await;
    let (status, tokens) = redeem(&app, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    // Bob's grant is never on alice's page.
    user_tokens(&app, "bob", "tickets.read").await;

    let page = agents_page(&browser, &app).await;
    for text in [
        "CRM assistant (CLI)",
        "Alice Anders",
        "Acme Corp",
        "Verified",
        "Read your contacts",
        "You allowed access",
        "Received an access token",
        "When you revoke it",
    ] {
        assert!(
            page.html.contains(text),
            "the page shows {text}:\n{}",
            page.html
        );
    }
    assert!(
        !page.html.contains("Create and change your contacts"),
        "not approved"
    );
    assert!(!page.html.contains("Read support tickets"), "bob's grant");
    assert!(!page.html.contains("Not yet"), "the token was used");
    assert_eq!(page.html.matches("name=\"grant_id\"").count(), 1);
    let access_token = s(&tokens["access_token"]);
    let refresh_token = s(&tokens["refresh_token"]);
    assert!(
        !page.html.contains(access_token) && !page.html.contains(refresh_token),
        "no token is ever rendered"
    );
}

async fn revoking_from_the_page_ends_the_tokens_and_is_audited_and_fed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (browser, _) = signed_in(&app, "alice").await;
    let code = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    let (_, tokens) = redeem(&app, &code).await;
    let gid = app.verify(s(&tokens["access_token"])).await.gid;

    let page = agents_page(&browser, &app).await;
    assert_eq!(hidden(&page.html, "grant_id"), gid);
    let mut feed = open_feed(&app, None).await;
    let done = post_revoke(&browser, &app, &hidden(&page.html, "csrf"), &gid).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(location(&done), "/account/agents?done=revoked");

    let mut buf = String::new();
    let fed = entries(&mut feed, &mut buf, 1, Duration::from_secs(5)).await;
    assert_eq!(fed[0].1["kind"], "grant");
    assert_eq!(fed[0].1["grant_id"], gid.as_str());
    let grant = app.store.grant(&gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_some());
    let (status, body) = refresh(&app, s(&tokens["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    let events = app
        .store
        .events(&EventFilter {
            grant_id: Some(gid.clone()),
            action: Some("grant.revoked".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let event = &events[0].event;
    assert_eq!(event.actor_kind.as_str(), "user");
    assert_eq!(event.actor_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(event.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(event.client_id.as_deref(), Some("cli-agent"));
    assert_eq!(event.reason.as_deref(), Some("revoked by the user"));

    let after = get(&browser, &app, location(&done)).await;
    assert!(after.html.contains("Access revoked."), "{}", after.html);
    assert!(after.html.contains("No agent has access"), "{}", after.html);
}

async fn revoke_all_ends_every_own_grant_and_nobody_elses(backend: Backend) {
    let app = spawn_app(backend).await;
    let (browser, _) = signed_in(&app, "alice").await;
    let code = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    let (_, alice_cli) = redeem(&app, &code).await;
    // A second agent for alice: mcp-assistant, on a loopback redirect.
    let (_, challenge) = pkce();
    let mut query = authorize_query("tickets.read", &challenge, &[]);
    query[1] = ("client_id", "mcp-assistant");
    let consent = browser.authorize(&app, &query).await;
    assert!(consent.is_consent(), "{}", consent.html);
    let done = browser
        .consent(&app, &consent, Some(&["tickets.read"]))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let bob = user_tokens(&app, "bob", "contacts.read").await;
    let bob_gid = app.verify(s(&bob["access_token"])).await.gid;

    let page = agents_page(&browser, &app).await;
    assert_eq!(
        page.html.matches("name=\"grant_id\"").count(),
        2,
        "{}",
        page.html
    );
    assert!(page.html.contains("CRM assistant (MCP)"));
    let body = form(&[("csrf", &hidden(&page.html, "csrf"))]);
    let done = browser.post(&app, "/account/revoke-all", body).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(location(&done), "/account/agents?done=revoked-all");

    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let grants = app
        .store
        .grants(
            &mandate_store::GrantFilter {
                user_id: Some(alice.id.clone()),
                include_revoked: true,
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(grants.len(), 2);
    assert!(grants.iter().all(|g| g.revoked_at.is_some()), "{grants:?}");
    let (status, _) = refresh(&app, s(&alice_cli["refresh_token"])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bobs = app.store.grant(&bob_gid).await.unwrap().unwrap();
    assert!(bobs.revoked_at.is_none(), "bob's grant is untouched");
    let after = agents_page(&browser, &app).await;
    assert!(after.html.contains("No agent has access"), "{}", after.html);
}

async fn nobody_revokes_another_persons_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let bob = user_tokens(&app, "bob", "contacts.read").await;
    let bob_gid = app.verify(s(&bob["access_token"])).await.gid;
    let carol = user_tokens(&app, "carol", "contacts.read").await;
    let carol_gid = app.verify(s(&carol["access_token"])).await.gid;
    let svc = app.client_credentials(None).await;
    let svc_gid = app.verify(s(&svc["access_token"])).await.gid;

    let (browser, _) = signed_in(&app, "alice").await;
    let page = agents_page(&browser, &app).await;
    let csrf = hidden(&page.html, "csrf");
    for (gid, whose) in [
        (bob_gid.as_str(), "bob's, same tenant"),
        (carol_gid.as_str(), "carol's, another tenant"),
        (svc_gid.as_str(), "a service identity's own grant"),
        ("g_does_not_exist", "no grant"),
    ] {
        let refused = post_revoke(&browser, &app, &csrf, gid).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{whose}");
        assert!(refused.html.contains("No such connection"), "{whose}");
        if let Some(g) = app.store.grant(gid).await.unwrap() {
            assert!(g.revoked_at.is_none(), "{whose} is still active");
        }
    }
    let revoked = app
        .store
        .events(&EventFilter {
            action: Some("grant.revoked".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert!(revoked.is_empty(), "{revoked:?}");
}

async fn forms_without_this_sessions_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice_browser, _) = signed_in(&app, "alice").await;
    let code = authorize_code(
        &app,
        &alice_browser,
        "alice",
        "contacts.read",
        &["contacts.read"],
    )
    .await;
    let (_, tokens) = redeem(&app, &code).await;
    let gid = app.verify(s(&tokens["access_token"])).await.gid;
    let (bob_browser, _) = signed_in(&app, "bob").await;
    let bobs_csrf = hidden(&agents_page(&bob_browser, &app).await.html, "csrf");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "/account/revoke",
            form(&[("grant_id", &gid)]),
            "revoke without a token",
        ),
        (
            "/account/revoke",
            form(&[("csrf", &bobs_csrf), ("grant_id", &gid)]),
            "revoke with another session's token",
        ),
        (
            "/account/revoke",
            form(&[("csrf", "forged"), ("grant_id", &gid)]),
            "revoke with a made-up token",
        ),
        (
            "/account/revoke-all",
            String::new(),
            "revoke all without a token",
        ),
        ("/account/logout", String::new(), "sign out without a token"),
        (
            "/account/login",
            form(&[("login", "alice"), ("password", "alice-demo-password")]),
            "sign in without a token",
        ),
    ];
    for (path, body, why) in cases {
        let refused = alice_browser.post(&app, path, body).await;
        refused.assert_form_refused(why);
    }
    let grant = app.store.grant(&gid).await.unwrap().unwrap();
    assert!(grant.revoked_at.is_none(), "nothing was revoked");
    agents_page(&alice_browser, &app).await;
}

async fn sign_out_deletes_the_session_and_its_cookie(backend: Backend) {
    let app = spawn_with(backend, |c| c.session_ttl_seconds = 1200).await;

    // The cookie lives exactly as long as the session on the server.
    let (browser, cookie) = signed_in(&app, "alice").await;
    assert!(cookie.contains("Max-Age=1200"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    app.advance(1201);
    let expired = get(&browser, &app, "/account/agents").await;
    assert_eq!(
        expired.status,
        StatusCode::SEE_OTHER,
        "the server ends it too"
    );

    let (browser, cookie) = signed_in(&app, "alice").await;
    let page = agents_page(&browser, &app).await;
    let body = form(&[("csrf", &hidden(&page.html, "csrf"))]);
    let out = browser.post(&app, "/account/logout", body).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.html);
    assert!(out.html.contains("You are signed out"));
    let cleared = session_cookie(&out).expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let again = get(&browser, &app, "/account/agents").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);

    // The old cookie, replayed by hand, opens nothing: the session is gone on the server.
    let value = cookie.split(';').next().unwrap();
    let replayed = app
        .http
        .get(app.url("/account/agents"))
        .header("cookie", value)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::SEE_OTHER);
    // Signing out again (no session) is harmless and needs no token.
    let twice = browser.post(&app, "/account/logout", String::new()).await;
    assert_eq!(twice.status, StatusCode::OK);
}
