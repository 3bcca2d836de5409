//! `spawn_app`: a real server on 127.0.0.1:0 with the demo configuration, a fresh database and
//! a clock the test controls; plus typed helpers for the flows.

use mandate_core::jwt::{self, AccessTokenClaims, Jwks, VerifyingKey};
use mandate_core::time::{Clock, ManualClock, Timestamp};
use mandate_server::config::{self, Overrides};
use mandate_server::system::{OsEntropy, SystemClock};
use mandate_server::{Application, Config, Dependencies};
use mandate_store::Store;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

pub const SVC_SECRET: &str = "demo-svc-agent-secret-0123456789abcdef";
pub const CRM: &str = "http://127.0.0.1:8081";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Instantiates each `async fn name(Backend)` in the current module for both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if mandate_store::testing::postgres_test_url().is_none() {
                        eprintln!("SKIPPED: MANDATE_TEST_POSTGRES_URL is not set; PostgreSQL run of {} skipped", stringify!($name));
                        return;
                    }
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

pub struct TestApp {
    pub address: String,
    pub issuer: String,
    pub clock: Arc<ManualClock>,
    /// A direct connection to the server's database, to inspect what it persisted.
    pub store: Arc<dyn Store>,
    /// HTTP without redirects or cookies, like an OAuth client.
    pub http: reqwest::Client,
    pub database_url: String,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(&mut self) {
        drop(self.shutdown.take());
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    /// Drops this test's PostgreSQL database (the server's connections are forced closed).
    fn drop(&mut self) {
        let Some(admin) = mandate_store::testing::postgres_test_url() else {
            return;
        };
        if !self.database_url.starts_with("postgres") {
            return;
        }
        let url = self.database_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            if let Err(e) =
                rt.block_on(mandate_store::testing::drop_postgres_database(&admin, &url))
            {
                eprintln!("could not drop test database {url}: {e}");
            }
        })
        .join();
    }
}

pub fn demo_toml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_with(backend, |_| {}).await
}

/// Spawns the server after letting the test adjust its configuration.
pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(backend, &dir.path().join("mandate.db")).await;
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
        database_url: Some(database_url.clone()),
        ..Overrides::default()
    };
    let mut config = config::load(Some(&demo_toml()), &overrides).unwrap();
    adjust(&mut config);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let deps = Dependencies {
        clock: clock.clone(),
        entropy: Arc::new(OsEntropy::default()),
    };
    let app = Application::build_with(config, deps).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let issuer = app.issuer().to_owned();
    // The server's own store, so that a test's direct write is the server's write (not
    // another node's, which PostgreSQL's kept introspection answers hear moments later).
    let store = app.store();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        issuer,
        clock,
        store,
        http: no_redirects(false),
        database_url,
        data_dir: dir.path().to_path_buf(),
        _dir: dir,
        shutdown: Some(tx),
        server: Some(server),
    }
}

/// A new, empty database of `backend`: a SQLite file at `sqlite_file`, or a fresh PostgreSQL
/// test database.
pub async fn fresh_database_url(backend: Backend, sqlite_file: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", sqlite_file.display()),
        Backend::Postgres => {
            let admin = mandate_store::testing::postgres_test_url().unwrap();
            mandate_store::testing::fresh_postgres_database(&admin)
                .await
                .unwrap()
        }
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=warn,hyper=warn")
            .with_test_writer()
            .try_init();
    }
}

pub fn no_redirects(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()
        .unwrap()
}

impl TestApp {
    /// The events recorded with `action`, oldest first (up to 1,000).
    pub async fn events_of(&self, action: &str) -> Vec<mandate_core::event::Event> {
        let filter = mandate_store::EventFilter {
            action: Some(action.into()),
            limit: 1000,
            ..mandate_store::EventFilter::default()
        };
        self.store.events(&filter).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GETs a path and parses the body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POSTs a form (as raw `k=v&...` pairs) with optional Basic credentials.
    pub async fn post_form(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        pairs: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let body = form(pairs);
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, json)
    }

    pub async fn client_credentials(&self, scope: Option<&str>) -> Value {
        let mut pairs = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        let (status, _, body) = self
            .post_form("/token", Some(("svc-agent", SVC_SECRET)), &pairs)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Introspects as the confidential `svc-agent` (tenant acme).
    pub async fn introspect(&self, token: &str) -> Value {
        let (status, headers, body) = self
            .post_form(
                "/introspect",
                Some(("svc-agent", SVC_SECRET)),
                &[("token", token)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        body
    }

    pub async fn jwks(&self) -> Vec<VerifyingKey> {
        let jwks: Jwks = self
            .http
            .get(self.url("/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks.keys
            .iter()
            .map(|k| VerifyingKey::from_jwk(k).unwrap())
            .collect()
    }

    /// Verifies an access token against the published JWKS, as a resource server would.
    pub async fn verify(&self, token: &str) -> AccessTokenClaims {
        let claims = jwt::verify(token, &self.jwks().await).unwrap();
        jwt::Expectations {
            issuer: &self.issuer,
            audience: Some(CRM),
            now: self.clock.now(),
            leeway_seconds: 0,
        }
        .check(&claims)
        .unwrap();
        claims
    }

    pub fn advance(&self, seconds: u64) {
        self.clock.advance(seconds);
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The `value` of the hidden input named `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Query parameters of a redirect `Location`.
pub fn location_params(headers: &reqwest::header::HeaderMap) -> (String, Vec<(String, String)>) {
    let loc = headers["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&loc).unwrap();
    let params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let base = url[..url::Position::AfterPath].to_owned();
    (base, params)
}

pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub const CLI_REDIRECT: &str = "http://127.0.0.1:43210/callback";

/// A PKCE pair from the `oauth2` crate, an independent implementation of RFC 7636.
pub fn pkce() -> (String, String) {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    (verifier.secret().clone(), challenge.as_str().to_owned())
}

/// A person's browser: keeps cookies, does not follow redirects.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            http: no_redirects(true),
        }
    }
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    /// Asserts the page is the 403 a form without this session's CSRF token gets.
    pub fn assert_form_refused(&self, why: &str) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "{why}: {}", self.html);
        assert!(self.html.contains("This form has expired"), "{why}");
    }

    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let html = resp.text().await.unwrap();
        Self {
            status,
            headers,
            html,
        }
    }

    pub fn is_login(&self) -> bool {
        self.html.contains("action=\"login\"")
    }

    pub fn is_consent(&self) -> bool {
        self.html.contains("action=\"consent\"")
    }
}

/// Query for a cli-agent authorization request with the given scope and challenge.
pub fn authorize_query<'a>(
    scope: &'a str,
    challenge: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", "cli-agent"),
        ("redirect_uri", CLI_REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    q
}

impl Browser {
    pub async fn authorize(&self, app: &TestApp, query: &[(&str, &str)]) -> Page {
        let url = format!("{}?{}", app.url("/authorize"), form(query));
        Page::from(self.http.get(url).send().await.unwrap()).await
    }

    pub async fn login(&self, app: &TestApp, page: &Page, login: &str, password: &str) -> Page {
        let body = form(&[
            ("request_id", &hidden(&page.html, "request_id")),
            ("csrf", &hidden(&page.html, "csrf")),
            ("login", login),
            ("password", password),
        ]);
        self.post(app, "/login", body).await
    }

    /// Submits the consent form approving `approve` (or denying when `approve` is `None`).
    pub async fn consent(&self, app: &TestApp, page: &Page, approve: Option<&[&str]>) -> Page {
        match approve {
            Some(scopes) => self.decide(app, page, scopes, "approve").await,
            None => self.decide(app, page, &[], "deny").await,
        }
    }

    /// Submits the consent form with `ticked` boxes and the button named `decision`.
    pub async fn decide(
        &self,
        app: &TestApp,
        page: &Page,
        ticked: &[&str],
        decision: &str,
    ) -> Page {
        let request_id = hidden(&page.html, "request_id");
        let csrf = hidden(&page.html, "csrf");
        let mut pairs = vec![("request_id", request_id.as_str()), ("csrf", csrf.as_str())];
        pairs.extend(ticked.iter().map(|s| ("scope", *s)));
        pairs.push(("decision", decision));
        self.post(app, "/consent", form(&pairs)).await
    }

    /// Starts an authorization request for `scope` and signs `login` in if asked: the page
    /// that follows (consent, or the redirect when consent is remembered).
    pub async fn consent_page(&self, app: &TestApp, login: &str, scope: &str) -> Page {
        let (_, challenge) = pkce();
        let page = self
            .authorize(app, &authorize_query(scope, &challenge, &[]))
            .await;
        if page.is_login() {
            let password = format!("{login}-demo-password");
            self.login(app, &page, login, &password).await
        } else {
            page
        }
    }

    pub async fn post(&self, app: &TestApp, path: &str, body: String) -> Page {
        let resp = self
            .http
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Page::from(resp).await
    }
}

/// An authorization code fresh from the redirect, with what is needed to redeem it.
pub struct IssuedCode {
    pub code: String,
    pub verifier: String,
}

/// Runs authorize → login → consent for `login`, approving `approve` of `scope`.
pub async fn authorize_code(
    app: &TestApp,
    browser: &Browser,
    login: &str,
    scope: &str,
    approve: &[&str],
) -> IssuedCode {
    let (verifier, challenge) = pkce();
    let page = browser
        .authorize(app, &authorize_query(scope, &challenge, &[]))
        .await;
    let page = if page.is_login() {
        let password = format!("{login}-demo-password");
        browser.login(app, &page, login, &password).await
    } else {
        page
    };
    let done = if page.is_consent() {
        browser.consent(app, &page, Some(approve)).await
    } else {
        page
    };
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "expected a redirect, got:\n{}",
        done.html
    );
    let (base, params) = location_params(&done.headers);
    assert_eq!(base, CLI_REDIRECT);
    let code = param(&params, "code")
        .unwrap_or_else(|| panic!("no code in {params:?}"))
        .to_owned();
    assert_eq!(param(&params, "state"), Some("st-123"));
    IssuedCode { code, verifier }
}

/// Redeems a code for cli-agent with a raw form POST.
pub async fn redeem(app: &TestApp, code: &IssuedCode) -> (StatusCode, Value) {
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "cli-agent"),
                ("code", &code.code),
                ("redirect_uri", CLI_REDIRECT),
                ("code_verifier", &code.verifier),
            ],
        )
        .await;
    (status, body)
}

/// A user's tokens from the full code flow.
pub async fn user_tokens(app: &TestApp, login: &str, scope: &str) -> Value {
    let browser = Browser::default();
    let scopes: Vec<&str> = scope.split(' ').collect();
    let code = authorize_code(app, &browser, login, scope, &scopes).await;
    let (status, body) = redeem(app, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

pub async fn refresh(app: &TestApp, refresh_token: &str) -> (StatusCode, Value) {
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "cli-agent"),
                ("refresh_token", refresh_token),
            ],
        )
        .await;
    (status, body)
}

pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}
