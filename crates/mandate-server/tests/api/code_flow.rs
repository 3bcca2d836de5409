use crate::helpers::*;
use mandate_store::EventFilter;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::StatusCode;

crate::backend_tests!(
    oauth2_crate_runs_code_and_pkce_and_user_approves_a_subset,
    consent_is_remembered_until_new_scopes_or_prompt_consent,
    prompt_none_never_shows_a_page,
    denial_returns_access_denied_with_state_and_iss,
    replayed_code_fails_and_revokes_the_first_redemption,
    racing_redemptions_of_one_code_issue_once_and_count_as_replay,
    code_expires_after_sixty_seconds,
    code_is_bound_to_verifier_and_redirect_uri,
    users_of_another_tenant_get_their_own_tenant,
    wrong_password_shows_the_form_again,
    forms_without_a_valid_csrf_token_are_refused,
    pages_forbid_framing_and_caching,
    flow_is_recorded_as_events,
    a_stated_purpose_is_shown_kept_on_the_grant_and_recorded,
    consent_groups_scopes_into_read_and_change_and_marks_sensitive_ones,
    allow_all_approves_every_requested_scope_whatever_is_ticked,
    consents_in_four_tabs_at_once_keep_one_grant_with_every_answer,
);

async fn oauth2_crate_runs_code_and_pkce_and_user_approves_a_subset(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = BasicClient::new(ClientId::new("cli-agent".into()))
        .set_auth_uri(AuthUrl::new(app.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(CLI_REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("contacts.read".into()))
        .add_scope(Scope::new("tickets.write".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = Browser::default();
    let login = Page::from_response(browser.http.get(url).send().await.unwrap()).await;
    assert!(login.is_login(), "{}", login.html);
    let consent = browser
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    assert!(consent.is_consent(), "{}", consent.html);
    for text in [
        "CRM assistant (CLI)",
        "Acme Corp",
        "Alice Anders",
        "Read your contacts",
        "Open and update support tickets",
        "Demo CRM",
    ] {
        assert!(consent.html.contains(text), "consent page names {text}");
    }
    let done = browser
        .consent(&app, &consent, Some(&["contacts.read"]))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let (base, params) = location_params(&done.headers);
    assert_eq!(base, CLI_REDIRECT);
    assert_eq!(param(&params, "state"), Some(csrf.secret().as_str()));
    assert_eq!(param(&params, "iss"), Some(app.issuer.as_str()), "RFC 9207");

    let token = client
        .exchange_code(AuthorizationCode::new(
            param(&params, "code").unwrap().into(),
        ))
        .set_pkce_verifier(verifier)
        .request_async(&app.http)
        .await
        .unwrap();
    let scopes: Vec<String> = token
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["contacts.read"], "only what the user approved");
    assert!(token.refresh_token().is_some());
    let claims = app.verify(token.access_token().secret()).await;
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    assert_eq!(claims.sub, alice.id);
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.client_id, "cli-agent");
    assert_eq!(claims.scope.to_string(), "contacts.read");
    let grant = app.store.grant(&claims.gid).await.unwrap().unwrap();
    assert_eq!(
        grant.scopes.to_string(),
        "contacts.read",
        "the grant holds exactly the approval"
    );
}

async fn consent_is_remembered_until_new_scopes_or_prompt_consent(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;

    let (_, challenge) = pkce();
    let again = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    assert_eq!(
        again.status,
        StatusCode::SEE_OTHER,
        "same scopes: straight back with a code"
    );
    assert!(param(&location_params(&again.headers).1, "code").is_some());

    let more = browser
        .authorize(
            &app,
            &authorize_query("contacts.read tickets.read", &challenge, &[]),
        )
        .await;
    assert!(more.is_consent(), "a new scope asks again");
    let forced = browser
        .authorize(
            &app,
            &authorize_query("contacts.read", &challenge, &[("prompt", "consent")]),
        )
        .await;
    assert!(forced.is_consent(), "prompt=consent asks again");
    let relogin = browser
        .authorize(
            &app,
            &authorize_query("contacts.read", &challenge, &[("prompt", "login")]),
        )
        .await;
    assert!(
        relogin.is_login(),
        "prompt=login asks for the password again"
    );

    // Narrowing at re-consent removes what was unticked.
    let narrowed = browser.consent(&app, &more, Some(&["tickets.read"])).await;
    assert_eq!(narrowed.status, StatusCode::SEE_OTHER);
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let grant = app
        .store
        .active_grant("acme", Some(&alice.id), "cli-agent", app.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.scopes.to_string(), "tickets.read");
}

/// Four tabs each ask for one scope and are approved at the same instant. Each decision lands
/// in the user's one grant: nobody creates a second (the store's one-live-grant index) and no
/// answer overwrites another (the scopes change by compare and set).
async fn consents_in_four_tabs_at_once_keep_one_grant_with_every_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let all = [
        "contacts.read",
        "contacts.write",
        "tickets.read",
        "tickets.write",
    ];
    let first = browser.consent_page(&app, "alice", all[0]).await;
    assert!(first.is_consent(), "{}", first.html);
    let mut tabs = vec![first];
    for scope in &all[1..] {
        let (_, challenge) = pkce();
        let tab = browser
            .authorize(&app, &authorize_query(scope, &challenge, &[]))
            .await;
        assert!(tab.is_consent(), "{}", tab.html);
        tabs.push(tab);
    }
    let decisions = tabs
        .iter()
        .zip(all.chunks(1))
        .map(|(tab, scope)| browser.consent(&app, tab, Some(scope)));
    for done in futures_util::future::join_all(decisions).await {
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    }

    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let live = app
        .store
        .grants(
            &mandate_store::GrantFilter {
                user_id: Some(alice.id.clone()),
                client_id: Some("cli-agent".into()),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "one grant, not one per tab: {live:?}");
    assert_eq!(live[0].scopes.to_string(), all.join(" "));
}

async fn prompt_none_never_shows_a_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let page = browser
        .authorize(
            &app,
            &authorize_query("contacts.read", &challenge, &[("prompt", "none")]),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        param(&location_params(&page.headers).1, "error"),
        Some("login_required")
    );

    authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    let page = browser
        .authorize(
            &app,
            &authorize_query("contacts.write", &challenge, &[("prompt", "none")]),
        )
        .await;
    assert_eq!(
        param(&location_params(&page.headers).1, "error"),
        Some("consent_required")
    );
    let page = browser
        .authorize(
            &app,
            &authorize_query("contacts.read", &challenge, &[("prompt", "none")]),
        )
        .await;
    assert!(param(&location_params(&page.headers).1, "code").is_some());
}

async fn denial_returns_access_denied_with_state_and_iss(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let login = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    let consent = browser
        .login(&app, &login, "bob", "bob-demo-password")
        .await;
    let denied = browser.consent(&app, &consent, None).await;
    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    let (base, params) = location_params(&denied.headers);
    assert_eq!(base, CLI_REDIRECT);
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert_eq!(param(&params, "state"), Some("st-123"));
    assert_eq!(param(&params, "iss"), Some(app.issuer.as_str()));
    let bob = app.store.user_by_login("bob").await.unwrap().unwrap();
    assert!(
        app.store
            .active_grant("acme", Some(&bob.id), "cli-agent", app.now())
            .await
            .unwrap()
            .is_none()
    );
    // The request is over: submitting the form again does nothing.
    let again = browser
        .consent(&app, &consent, Some(&["contacts.read"]))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
}

async fn replayed_code_fails_and_revokes_the_first_redemption(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let code = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    let (status, first) = redeem(&app, &code).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.introspect(s(&first["access_token"])).await["active"],
        true
    );
    let (status, second) = redeem(&app, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(second["error"], "invalid_grant");
    assert_eq!(
        app.introspect(s(&first["access_token"])).await["active"],
        false,
        "access token revoked"
    );
    assert_eq!(
        app.introspect(s(&first["refresh_token"])).await["active"],
        false,
        "refresh family revoked"
    );
    let (status, body) = refresh(&app, s(&first["refresh_token"])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

async fn racing_redemptions_of_one_code_issue_once_and_count_as_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let code = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    let results = futures_util::future::join_all((0..8).map(|_| redeem(&app, &code))).await;
    let issued: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .collect();
    assert_eq!(issued.len(), 1, "exactly one redemption wins: {results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
    // The losers presented a used code: the winner's tokens are revoked with the grant.
    let winner = &issued[0].1;
    assert_eq!(
        app.introspect(s(&winner["refresh_token"])).await["active"],
        false
    );
    assert_eq!(
        app.introspect(s(&winner["access_token"])).await["active"],
        false
    );
}

async fn code_expires_after_sixty_seconds(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let code = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    app.advance(60);
    let (status, body) = redeem(&app, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let fresh = authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
    app.advance(59);
    assert_eq!(
        redeem(&app, &fresh).await.0,
        StatusCode::OK,
        "still valid at 59 s"
    );
}

async fn code_is_bound_to_verifier_and_redirect_uri(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let wrong_verifier = "x".repeat(43);
    let cases: Vec<(Vec<(&str, &str)>, &str, &str)> = vec![
        (
            vec![("code_verifier", &wrong_verifier)],
            "invalid_grant",
            "wrong verifier",
        ),
        (
            vec![("redirect_uri", "http://127.0.0.1:9/callback")],
            "invalid_grant",
            "other redirect port",
        ),
        (
            vec![("redirect_uri", "")],
            "invalid_request",
            "redirect_uri omitted though it was sent",
        ),
        (
            vec![("resource", "http://other.example")],
            "invalid_target",
            "other resource",
        ),
    ];
    for (overrides, error, reason) in cases {
        let code =
            authorize_code(&app, &browser, "alice", "contacts.read", &["contacts.read"]).await;
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "cli-agent"),
            ("code", code.code.as_str()),
            ("redirect_uri", CLI_REDIRECT),
            ("code_verifier", code.verifier.as_str()),
        ];
        for (k, v) in &overrides {
            match pairs.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k, v)),
            }
        }
        let (status, _, body) = app.post_form("/token", None, &pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reason}: {body}");
        assert_eq!(body["error"], error, "{reason}");
        let (status, _) = redeem(&app, &code).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{reason}: a failed redemption burns the code"
        );
    }
}

async fn users_of_another_tenant_get_their_own_tenant(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = user_tokens(&app, "carol", "contacts.read").await;
    let claims = app.verify(s(&tokens["access_token"])).await;
    assert_eq!(claims.tenant, "globex");
    // svc-agent belongs to acme: it may not introspect globex tokens.
    assert_eq!(
        app.introspect(s(&tokens["access_token"])).await,
        serde_json::json!({"active": false})
    );
}

async fn wrong_password_shows_the_form_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let login = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    for (user, password) in [("alice", "wrong"), ("nobody", "whatever")] {
        let again = browser.login(&app, &login, user, password).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
        assert!(again.is_login());
        assert!(again.html.contains("not correct"));
        assert!(
            !again.html.contains(&format!("value=\"{password}\"")),
            "the password is never echoed"
        );
    }
    let ok = browser
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    assert!(ok.is_consent());
}

async fn forms_without_a_valid_csrf_token_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let login = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    let request_id = hidden(&login.html, "request_id");
    let attempts = [
        form(&[
            ("request_id", &request_id),
            ("login", "alice"),
            ("password", "alice-demo-password"),
        ]),
        form(&[
            ("request_id", &request_id),
            ("csrf", "forged"),
            ("login", "alice"),
            ("password", "alice-demo-password"),
        ]),
    ];
    for body in attempts {
        assert_eq!(
            browser.post(&app, "/login", body).await.status,
            StatusCode::FORBIDDEN
        );
    }
    // A valid token from another browser does not work either.
    let attacker = Browser::default();
    let page = attacker
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

async fn pages_forbid_framing_and_caching(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let login = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    assert_eq!(login.headers["x-frame-options"], "DENY");
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    assert_eq!(login.headers["cache-control"], "no-store");
    let cookie = login.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let consent = browser
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    let session = consent
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("mandate_session="))
        .expect("session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Max-Age")
    );
    assert!(
        !session.contains("Secure"),
        "plain http issuer: no Secure attribute"
    );
}

async fn flow_is_recorded_as_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let login = browser
        .authorize(
            &app,
            &authorize_query("contacts.read contacts.write", &challenge, &[]),
        )
        .await;
    browser.login(&app, &login, "alice", "wrong-password").await;
    let consent = browser
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    let done = browser
        .consent(&app, &consent, Some(&["contacts.read"]))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let events = app
        .store
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    for a in ["login.failed", "login.succeeded", "consent.granted"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let consent = events
        .iter()
        .find(|e| e.event.action.as_str() == "consent.granted")
        .unwrap();
    assert_eq!(consent.event.scopes.as_deref(), Some("contacts.read"));
    assert_eq!(consent.event.detail["narrowed"], true);
    assert_eq!(consent.event.tenant_id.as_deref(), Some("acme"));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("alice-demo-password") && !text.contains("wrong-password"));
}

impl Page {
    pub async fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let html = resp.text().await.unwrap();
        Self {
            status,
            headers,
            html,
        }
    }
}

async fn a_stated_purpose_is_shown_kept_on_the_grant_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (verifier, challenge) = pkce();
    let purpose = "Triage <b>today's</b> tickets";
    let login = browser
        .authorize(
            &app,
            &authorize_query("contacts.read", &challenge, &[("purpose", purpose)]),
        )
        .await;
    let consent = browser
        .login(&app, &login, "bob", "bob-demo-password")
        .await;
    assert!(consent.is_consent(), "{}", consent.html);
    // Shown as the agent's words, escaped: no markup from the agent reaches the page.
    assert!(
        consent
            .html
            .contains("Triage &#60;b&#62;today&#39;s&#60;/b&#62; tickets")
            || consent
                .html
                .contains("Triage &lt;b&gt;today&#x27;s&lt;/b&gt; tickets"),
        "{}",
        consent.html
    );
    assert!(!consent.html.contains("<b>today"), "{}", consent.html);
    let done = browser
        .consent(&app, &consent, Some(&["contacts.read"]))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, params) = location_params(&done.headers);
    let code = IssuedCode {
        code: param(&params, "code").unwrap().to_owned(),
        verifier,
    };
    let (status, tokens) = redeem(&app, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, _) = refresh(&app, s(&tokens["refresh_token"])).await;
    assert_eq!(status, StatusCode::OK);

    let events = app
        .store
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    for action in ["consent.granted", "token.issued", "token.refreshed"] {
        let e = events
            .iter()
            .find(|e| e.event.action.as_str() == action)
            .unwrap_or_else(|| panic!("no {action}"));
        assert_eq!(
            e.event.detail["purpose"], purpose,
            "{action}: {:?}",
            e.event
        );
    }
    let grant_id = events
        .iter()
        .find_map(|e| e.event.grant_id.clone())
        .unwrap();
    let grant = app.store.grant(&grant_id).await.unwrap().unwrap();
    assert_eq!(grant.purpose.as_deref(), Some(purpose));

    // Too long or with a control character: refused at the client's redirect URI.
    for bad in ["x".repeat(201), "line\nbreak".to_owned()] {
        let page = browser
            .authorize(
                &app,
                &authorize_query("contacts.read", &challenge, &[("purpose", &bad)]),
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
        let (_, params) = location_params(&page.headers);
        assert_eq!(param(&params, "error"), Some("invalid_request"));
    }
}

async fn consent_groups_scopes_into_read_and_change_and_marks_sensitive_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let mut query = authorize_query("contacts.write billing.read contacts.read", &challenge, &[]);
    query[1] = ("client_id", "mcp-assistant");
    let login = browser.authorize(&app, &query).await;
    let consent = browser
        .login(&app, &login, "alice", "alice-demo-password")
        .await;
    assert!(consent.is_consent(), "{}", consent.html);
    let html = &consent.html;
    assert!(
        html.contains(">Verified<"),
        "configured agents are verified: {html}"
    );
    assert!(
        html.contains("href=\"account/agents\""),
        "where to revoke it later"
    );
    let read = html.find("<legend>Read").expect("a Read group");
    let change = html.find("<legend>Change").expect("a Change group");
    let at = |text: &str| {
        html.find(text)
            .unwrap_or_else(|| panic!("{text} in {html}"))
    };
    for scope in ["value=\"contacts.read\"", "value=\"billing.read\""] {
        assert!(
            read < at(scope) && at(scope) < change,
            "{scope} is under Read"
        );
    }
    assert!(
        at("value=\"contacts.write\"") > change,
        "contacts.write is under Change"
    );
    let sensitive = at("sensitive</span>");
    assert!(
        at("See invoices and payment details") < sensitive && sensitive < change,
        "billing.read is marked sensitive"
    );
    assert_eq!(html.matches("sensitive</span>").count(), 1);
    // Each checkbox keeps its own label.
    for id in ["scope-read-1", "scope-read-2", "scope-change-1"] {
        assert!(html.contains(&format!("id=\"{id}\"")) && html.contains(&format!("for=\"{id}\"")));
    }
}

async fn allow_all_approves_every_requested_scope_whatever_is_ticked(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let consent = browser
        .consent_page(&app, "alice", "contacts.read tickets.read")
        .await;
    assert!(consent.is_consent(), "{}", consent.html);
    assert!(
        consent
            .html
            .contains("name=\"decision\" value=\"approve_all\"")
    );
    assert!(consent.html.contains(">Allow all</button>"));
    let allowed = browser
        .decide(&app, &consent, &["contacts.read"], "approve_all")
        .await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER, "{}", allowed.html);
    assert!(param(&location_params(&allowed.headers).1, "code").is_some());
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let grant = app
        .store
        .active_grant("acme", Some(&alice.id), "cli-agent", app.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.scopes.to_string(), "contacts.read tickets.read");

    // An unknown decision is a denial, whatever is ticked.
    let again = browser
        .consent_page(&app, "alice", "contacts.read contacts.write")
        .await;
    assert!(again.is_consent(), "{}", again.html);
    let denied = browser
        .decide(&app, &again, &["contacts.write"], "maybe")
        .await;
    let (_, params) = location_params(&denied.headers);
    assert_eq!(param(&params, "error"), Some("access_denied"));
}
