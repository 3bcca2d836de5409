//! A person in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, through `fantoccini`).
//!
//! The agent asks for `contacts.read contacts.write`; alice signs in, unticks everything but
//! `contacts.read` and allows; the agent's token carries only that scope and the CRM serves it
//! contacts. Then alice revokes the agent on "Connected agents" and the CRM refuses the token
//! within a second (the revocation feed).
//!
//! The browser is found through `MANDATE_CHROMEDRIVER` / `MANDATE_CHROMIUM` or on `PATH`.
//! Without it the test says `SKIPPED` and passes, unless `MANDATE_REQUIRE_BROWSER=1` (CI),
//! where it fails. With `MANDATE_SCREENSHOTS=<dir>` it also saves the pages as PNG files there
//! (that is how `docs/screenshots/` is made).

use crate::a11y::{check_page, focused_is, press, tab_walk};
use crate::helpers::{CRM, spawn_demo};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const DESKTOP: (u32, u32) = (1200, 900);
pub(crate) const PHONE: (u32, u32) = (390, 1100);

/// A program from an environment variable, else the first of `names` on `PATH`.
fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Chromedriver, ended when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a port it picks itself, read from its first line of output.
fn start_driver(program: &Path) -> Driver {
    let mut child = Command::new(program)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "Starting ChromeDriver ... on port 0" comes first; this line has the real one.
            if !sent && let Some(rest) = line.split("started successfully on port ").nth(1) {
                let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let _ = tx.send(port);
                sent = true;
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("chromedriver did not say which port it listens on");
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn open_browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
    ])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Saves a screenshot at `width` × `height` when `MANDATE_SCREENSHOTS` names a directory.
/// Types `text` into the element `locator` finds.
pub(crate) async fn type_into(browser: &Client, locator: Locator<'_>, text: &str) {
    browser
        .find(locator)
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element `locator` finds.
pub(crate) async fn click(browser: &Client, locator: Locator<'_>) {
    browser.find(locator).await.unwrap().click().await.unwrap();
}

/// Fills the sign-in form on screen with alice's demo credentials and submits it.
pub(crate) async fn sign_in_as_alice(browser: &Client) {
    type_into(browser, Locator::Id("login"), "alice").await;
    type_into(browser, Locator::Id("password"), "alice-demo-password").await;
    click(browser, Locator::Css("form button[type=submit]")).await;
}

pub(crate) async fn screenshot(browser: &Client, name: &str, (width, height): (u32, u32)) {
    let Some(dir) = std::env::var_os("MANDATE_SCREENSHOTS") else {
        return;
    };
    browser.set_window_size(width, height).await.unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    browser.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
}

/// Presses Tab (Shift+Tab when `back`) until the element matching `css` has focus.
async fn tab_to(browser: &Client, css: &str, back: bool) {
    for _ in 0..20 {
        if focused_is(browser, css).await {
            return;
        }
        press(browser, Key::Tab, back).await;
    }
    panic!("Tab never reaches {css}");
}

/// A loopback redirect URI that remembers the query of the request it receives.
async fn callback_listener() -> (String, Arc<Mutex<Option<String>>>) {
    let received = Arc::new(Mutex::new(None));
    let store = received.clone();
    let router = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
            let store = store.clone();
            async move {
                *store.lock().unwrap() = q;
                "The agent received your decision. You can close this window."
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (uri, received)
}

/// Headless Chromium under WebDriver, with its profile directory; ended when dropped (the
/// WebDriver session should be closed first).
pub(crate) struct Chromium {
    pub browser: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// Starts headless Chromium, or `None` (the test prints `SKIPPED` and passes) when it is not
/// installed, unless `MANDATE_REQUIRE_BROWSER=1`, where that fails the test.
pub(crate) async fn launch(test: &str) -> Option<Chromium> {
    let required = std::env::var("MANDATE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let driver_program = find_program("MANDATE_CHROMEDRIVER", &["chromedriver"]);
    let chromium = find_program(
        "MANDATE_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let (Some(driver_program), Some(chromium)) = (driver_program, chromium) else {
        assert!(
            !required,
            "MANDATE_REQUIRE_BROWSER=1 but chromium/chromedriver is not installed"
        );
        eprintln!("SKIPPED: chromium/chromedriver not installed (browser test {test})");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let driver = start_driver(&driver_program);
    let browser = open_browser(&driver, &chromium, profile.path()).await;
    Some(Chromium {
        browser,
        _driver: driver,
        _profile: profile,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_one_scope_in_chromium_and_revokes_it_from_connected_agents() {
    let Some(chromium) = launch("consent and connected agents").await else {
        return;
    };
    let browser = &chromium.browser;
    let demo = spawn_demo().await;
    let (redirect_uri, received) = callback_listener().await;

    // The agent starts an authorization request for two scopes.
    let client = BasicClient::new(ClientId::new("cli-agent".into()))
        .set_auth_uri(AuthUrl::new(format!("{}/authorize", demo.issuer)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/token", demo.issuer)).unwrap())
        .set_redirect_uri(RedirectUrl::new(redirect_uri).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("resource", CRM)
        .add_extra_param("purpose", "Keep your contact list tidy")
        .add_scope(Scope::new("contacts.read".into()))
        .add_scope(Scope::new("contacts.write".into()))
        .url();

    // alice signs in and sees both scopes, grouped, with the agent verified.
    browser.goto(url.as_str()).await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("login"))
        .await
        .expect("the sign-in page");
    check_page(browser, "sign-in").await;
    sign_in_as_alice(browser).await;
    let consent = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action=consent]"))
        .await
        .expect("the consent page");
    let text = consent.text().await.unwrap();
    for expected in ["Read your contacts", "Create and change your contacts"] {
        assert!(text.contains(expected), "consent shows {expected}: {text}");
    }
    let page = browser.source().await.unwrap();
    assert!(page.contains("Verified"), "the agent is verified: {page}");
    screenshot(browser, "consent", DESKTOP).await;
    screenshot(browser, "consent-phone", PHONE).await;

    check_page(browser, "consent").await;
    // Tab reaches both checkboxes, the three buttons and the link, in that order.
    tab_walk(browser, "consent").await;

    // With the keyboard only, she unticks contacts.write (Space) and allows the rest (Enter on
    // "Allow selected").
    let write = browser
        .find(Locator::Css("input[value='contacts.write']"))
        .await
        .unwrap();
    assert!(write.is_selected().await.unwrap());
    tab_to(browser, "input[value='contacts.write']", true).await;
    press(browser, Key::Space, false).await;
    assert!(!write.is_selected().await.unwrap());
    let read = browser
        .find(Locator::Css("input[value='contacts.read']"))
        .await
        .unwrap();
    assert!(read.is_selected().await.unwrap());
    tab_to(browser, "button[value=approve]", false).await;
    press(browser, Key::Enter, false).await;

    // The agent receives the code at its loopback redirect and redeems it with PKCE.
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = loop {
        if let Some(q) = received.lock().unwrap().clone() {
            break q;
        }
        assert!(Instant::now() < deadline, "no redirect reached the agent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {query}"))
    };
    assert_eq!(param("state"), *state.secret());
    let token = client
        .exchange_code(AuthorizationCode::new(param("code")))
        .set_pkce_verifier(verifier)
        .request_async(&oauth2::reqwest::Client::new())
        .await
        .unwrap();
    let scopes: Vec<String> = token
        .scopes()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scopes, ["contacts.read"], "only what alice approved");
    let access_token = token.access_token().secret().clone();

    // The CRM serves contacts for it, and nothing more.
    let (status, body, _) = demo.get("/contacts", &access_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, challenge) = demo
        .post(
            "/contacts",
            &access_token,
            r#"{"name":"Eve","email":"eve@example.com","company":"X"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(challenge.contains("insufficient_scope"), "{challenge}");

    // alice opens Connected agents and revokes the agent.
    browser
        .goto(&format!("{}/account/agents", demo.issuer))
        .await
        .unwrap();
    let section = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("section.connection"))
        .await
        .expect("the connected agents page");
    let shown = section.text().await.unwrap();
    assert!(shown.contains("CRM assistant (CLI)"), "{shown}");
    assert!(shown.contains("Read your contacts"), "{shown}");
    assert!(
        !shown.contains("Create and change your contacts"),
        "{shown}"
    );
    screenshot(browser, "connected-agents", DESKTOP).await;
    screenshot(browser, "connected-agents-phone", PHONE).await;
    check_page(browser, "connected agents").await;
    tab_walk(browser, "connected agents").await;
    let revoked_at = {
        let button = section
            .find(Locator::Css("form[action=revoke] button"))
            .await
            .unwrap();
        let at = Instant::now();
        button.click().await.unwrap();
        at
    };
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.notice"))
        .await
        .expect("the page confirms the revocation");
    check_page(browser, "connected agents, after revoking").await;

    // The CRM refuses the token within a second of the click.
    loop {
        let (status, _, _) = demo.get("/contacts", &access_token).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the CRM still accepts a revoked token after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser.clone().close().await.unwrap();
}
