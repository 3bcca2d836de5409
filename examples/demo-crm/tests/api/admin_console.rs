//! The admin console in a real browser (headless Chromium, see [`crate::browser`]): alice,
//! acme's tenant admin, signs in from a console address, walks every page through the
//! navigation, creates an API key (shown once) and revokes bob's grant, and "globex" (the
//! other tenant, its people, grants and keys) appears on none of the pages. Also makes the
//! console's screenshots with `MANDATE_SCREENSHOTS=<dir>`.

use crate::a11y::{check_page, tab_walk};
use crate::browser::{DESKTOP, PHONE, click, launch, screenshot, sign_in_as_alice, type_into};
use crate::helpers::{SVC_SECRET, spawn_demo};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ADMIN_CLI_SECRET: &str = "demo-admin-cli-secret-0123456789abcdef";

/// Waits until the page's `<h1>` says `heading` (a click's navigation may still be under
/// way: the old page's heading goes stale) and returns the page source.
async fn loaded(browser: &Client, heading: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(h1) = browser.find(Locator::Css("main h1")).await
            && let Ok(text) = h1.text().await
        {
            if text == heading {
                return browser.source().await.unwrap();
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected the page `{heading}`, still on `{last}`");
}

/// Fails if anything of globex is on the page: its id or name, its person, her grant, its key.
fn assert_no_globex(page: &str, source: &str, globex: &[String]) {
    let lower = source.to_lowercase();
    for foreign in globex {
        assert!(
            !lower.contains(&foreign.to_lowercase()),
            "{page} shows `{foreign}`:\n{source}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_tenant_admin_walks_the_console_and_never_sees_globex() {
    let Some(chromium) = launch("admin console").await else {
        return;
    };
    let browser = &chromium.browser;
    let demo = spawn_demo().await;

    // Both tenants have people with grants, and API keys.
    let carol = demo
        .user_token("cli-agent", "carol", "contacts.read", &["contacts.read"])
        .await;
    let carol_gid = grant_of(&demo.database_url, "carol").await;
    let bob = demo
        .user_token(
            "cli-agent",
            "bob",
            "contacts.read tickets.read",
            &["contacts.read", "tickets.read"],
        )
        .await;
    let bob_gid = grant_of(&demo.database_url, "bob").await;
    demo.user_token(
        "mcp-assistant",
        "alice",
        "contacts.read tickets.read",
        &["tickets.read"],
    )
    .await;
    let service = demo
        .http
        .post(format!("{}/token", demo.issuer))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tickets.read"),
        ])
        .send()
        .await
        .unwrap();
    assert!(service.status().is_success());
    let globex_key = operator_creates_key(&demo.issuer, "globex", "Globex nightly export").await;
    let globex = vec![
        "globex".to_owned(),
        "carol".to_owned(),
        carol_gid,
        globex_key,
        "Globex nightly export".to_owned(),
    ];

    // A console address while signed out: sign in, and land on that page.
    browser
        .goto(&format!("{}/admin/console/grants", demo.issuer))
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("login"))
        .await
        .unwrap();
    check_page(browser, "console sign-in").await;
    sign_in_as_alice(browser).await;
    let grants = loaded(browser, "Grants").await;
    assert!(grants.contains("Tenant admin: Acme Corp"), "{grants}");
    assert!(grants.contains(&bob_gid), "bob's grant is listed");
    assert_no_globex("grants", &grants, &globex);
    screenshot(browser, "admin-console-grants", DESKTOP).await;
    screenshot(browser, "admin-console-grants-phone", PHONE).await;

    // Every page, through the navigation (keyboard-reachable links, no script).
    let links = browser
        .find_all(Locator::Css("nav.console-nav a"))
        .await
        .unwrap();
    let mut pages = Vec::new();
    for a in links {
        pages.push((
            a.text().await.unwrap(),
            a.attr("href").await.unwrap().unwrap(),
        ));
    }
    assert_eq!(pages.len(), 9, "{pages:?}");
    for (label, href) in &pages {
        browser
            .find(Locator::Css(&format!("nav.console-nav a[href='{href}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let heading = match label.as_str() {
            "Alerts" => "Anomaly alerts",
            other => other,
        };
        let source = loaded(browser, heading).await;
        assert!(
            source.contains("aria-current=\"page\""),
            "{label}: the navigation marks the page"
        );
        assert_no_globex(label, &source, &globex);
        check_page(browser, label).await;
        if label == "API keys" {
            // The create-key form (name, scopes, expiry, button) and the revoke buttons.
            tab_walk(browser, label).await;
        }
        match label.as_str() {
            "Overview" => {
                screenshot(browser, "admin-console", DESKTOP).await;
                screenshot(browser, "admin-console-phone", PHONE).await;
            }
            "Audit log" => screenshot(browser, "admin-console-audit", DESKTOP).await,
            _ => {}
        }
    }

    // Create an API key: shown once, then never again.
    click(browser, Locator::Css("nav.console-nav a[href='api-keys']")).await;
    loaded(browser, "API keys").await;
    type_into(browser, Locator::Id("k-name"), "Acme CRM sync").await;
    click(
        browser,
        Locator::Css("input[name=scope][value='contacts.read']"),
    )
    .await;
    click(
        browser,
        Locator::Css("form[action='create-key'] button[type=submit]"),
    )
    .await;
    let created = loaded(browser, "API key created").await;
    check_page(browser, "API key created").await;
    assert_no_globex("new key", &created, &globex);
    let key = browser
        .find(Locator::Id("new-key"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(key.starts_with("mk_"), "{key}");
    browser.back().await.unwrap();
    browser.refresh().await.unwrap();
    let list = loaded(browser, "API keys").await;
    assert!(list.contains("Acme CRM sync"), "{list}");
    assert!(!list.contains(&key), "the key is never shown again");

    // Revoke bob's grant from the grants page.
    click(browser, Locator::Css("nav.console-nav a[href='grants']")).await;
    loaded(browser, "Grants").await;
    browser
        .find(Locator::Css(&format!(
            "form[action='revoke-grant'] input[value='{bob_gid}'] ~ button"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(notice.text().await.unwrap().contains("Grant revoked"));
    let (status, _, _) = demo.get("/contacts", &bob.access_token).await;
    assert_eq!(
        status,
        reqwest::StatusCode::UNAUTHORIZED,
        "the CRM hears of it"
    );
    let (status, _, _) = demo.get("/contacts", &carol.access_token).await;
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "carol's grant is untouched"
    );
    browser.clone().close().await.unwrap();
}

/// The id of `login`'s only grant, from the server's database.
async fn grant_of(database_url: &str, login: &str) -> String {
    let store = mandate_store::connect(database_url).await.unwrap();
    let user = store.user_by_login(login).await.unwrap().unwrap();
    let grants = store
        .grants(
            &mandate_store::GrantFilter {
                user_id: Some(user.id),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(grants.len(), 1, "{grants:?}");
    grants[0].id.clone()
}

/// The operator's CLI creates an API key in `tenant` through the admin API; its id.
async fn operator_creates_key(issuer: &str, tenant: &str, name: &str) -> String {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{issuer}/token"))
        .basic_auth("admin-cli", Some(ADMIN_CLI_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mandate.admin"),
            ("resource", &format!("{issuer}/admin/v1")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created: Value = http
        .post(format!("{issuer}/admin/v1/api-keys"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({
            "tenant_id": tenant,
            "name": name,
            "scopes": ["contacts.read"],
            "expires_in": 86_400,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["api_key"]["id"].as_str().unwrap().to_owned()
}
