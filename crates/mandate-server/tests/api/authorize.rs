use crate::helpers::*;
use reqwest::StatusCode;

crate::backend_tests!(
    bad_authorization_requests_never_redirect_to_untrusted_uris,
    nul_characters_anywhere_get_400_never_5xx,
);

/// PostgreSQL cannot store NUL in text; before the edge refused it, `client_id=a%00b` at
/// /token or /authorize failed in the database with a 500 (found by schemathesis).
async fn nul_characters_anywhere_get_400_never_5xx(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let forms: [(&str, &str); 4] = [
        (
            "/token",
            "grant_type=client_credentials&client_id=a%00b&client_secret=x",
        ),
        (
            "/token",
            "grant_type=authorization_code&client_id=cli-agent&code=a%00",
        ),
        ("/introspect", "token=abc&client_id=svc%00"),
        ("/revoke", "token=a%00b&client_id=cli-agent"),
    ];
    for (path, body) in forms {
        let resp = app
            .http
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_client_error(), "{path} {body}: {status} {text}");
    }
    for query in [
        "/authorize?client_id=a%00b&response_type=code",
        "/admin/v1/users/a%00b",
        "/revocations?x=%00",
    ] {
        let resp = app.http.get(app.url(query)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let register = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(r#"{"redirect_uris":["http://127.0.0.1/cb"],"software_id":"a\u0000b"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::BAD_REQUEST);
    // A login form with a NUL in the login name.
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let page = browser
        .authorize(&app, &authorize_query("contacts.read", &challenge, &[]))
        .await;
    assert!(page.is_login());
    let body = format!(
        "request_id={}&csrf={}&login=al%00ice&password=x",
        hidden(&page.html, "request_id"),
        hidden(&page.html, "csrf")
    );
    let login = browser.post(&app, "/login", body).await;
    assert_eq!(login.status, StatusCode::BAD_REQUEST, "{}", login.html);
    app.stop().await;
}

/// Where an error must go: a page (the redirect URI cannot be trusted) or the client.
enum Expect {
    Page,
    Redirect(&'static str),
}

async fn bad_authorization_requests_never_redirect_to_untrusted_uris(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = Browser::default();
    let (_, challenge) = pkce();
    let base = authorize_query("contacts.read", &challenge, &[]);
    let with = |k: &'static str, v: &'static str| {
        let mut q: Vec<(&str, &str)> = base.iter().filter(|(bk, _)| *bk != k).cloned().collect();
        q.push((k, v));
        q
    };
    let without = |k: &'static str| {
        base.iter()
            .filter(|(bk, _)| *bk != k)
            .cloned()
            .collect::<Vec<_>>()
    };
    let long_state = Box::leak("s".repeat(2000).into_boxed_str());
    let cases: Vec<(Vec<(&str, &str)>, Expect, &str)> = vec![
        (
            with("client_id", "unknown-agent"),
            Expect::Page,
            "unknown client",
        ),
        (without("client_id"), Expect::Page, "missing client_id"),
        (
            with("redirect_uri", "https://evil.example/callback"),
            Expect::Page,
            "unregistered redirect URI",
        ),
        (
            with("redirect_uri", "http://127.0.0.1:43210/callback/../evil"),
            Expect::Page,
            "path trick",
        ),
        (
            with("redirect_uri", "http://127.0.0.1.evil.example/callback"),
            Expect::Page,
            "host suffix trick",
        ),
        (
            without("redirect_uri"),
            Expect::Page,
            "loopback registration needs redirect_uri",
        ),
        (
            [base.clone(), vec![("redirect_uri", CLI_REDIRECT)]].concat(),
            Expect::Page,
            "duplicated redirect_uri",
        ),
        (
            with("response_type", "token"),
            Expect::Redirect("unsupported_response_type"),
            "implicit flow",
        ),
        (
            without("response_type"),
            Expect::Redirect("invalid_request"),
            "missing response_type",
        ),
        (
            without("code_challenge"),
            Expect::Redirect("invalid_request"),
            "missing PKCE",
        ),
        (
            without("code_challenge_method"),
            Expect::Redirect("invalid_request"),
            "method defaults to plain",
        ),
        (
            with("code_challenge_method", "plain"),
            Expect::Redirect("invalid_request"),
            "plain PKCE",
        ),
        (
            with("code_challenge", "too-short"),
            Expect::Redirect("invalid_request"),
            "malformed challenge",
        ),
        (
            with("scope", "billing.read"),
            Expect::Redirect("invalid_scope"),
            "never billing",
        ),
        (
            with("scope", "bad\"scope"),
            Expect::Redirect("invalid_scope"),
            "malformed scope",
        ),
        (
            with("resource", "http://unknown.example"),
            Expect::Redirect("invalid_target"),
            "unknown resource",
        ),
        (
            with("prompt", "bogus"),
            Expect::Redirect("invalid_request"),
            "unknown prompt",
        ),
        (
            with("request_uri", "urn:x"),
            Expect::Redirect("invalid_request"),
            "request objects",
        ),
        (
            with("state", long_state),
            Expect::Redirect("invalid_request"),
            "oversized state",
        ),
    ];
    for (query, expect, reason) in cases {
        let page = browser.authorize(&app, &query).await;
        assert!(
            page.status.is_client_error() || page.status == StatusCode::SEE_OTHER,
            "{reason}: {}",
            page.status
        );
        match expect {
            Expect::Page => {
                assert_eq!(page.status, StatusCode::BAD_REQUEST, "{reason}");
                assert!(
                    page.headers.get("location").is_none(),
                    "{reason}: must not redirect"
                );
                assert!(page.html.contains("<h1>"), "{reason}: an error page");
            }
            Expect::Redirect(code) => {
                assert_eq!(
                    page.status,
                    StatusCode::SEE_OTHER,
                    "{reason}: {}",
                    page.html
                );
                let (target, params) = location_params(&page.headers);
                assert_eq!(target, CLI_REDIRECT, "{reason}");
                assert_eq!(param(&params, "error"), Some(code), "{reason}");
                assert_eq!(param(&params, "iss"), Some(app.issuer.as_str()), "{reason}");
                if reason != "oversized state" {
                    assert_eq!(param(&params, "state"), Some("st-123"), "{reason}");
                } else {
                    assert_eq!(param(&params, "state"), None, "{reason}");
                }
            }
        }
    }
}
