//! A Mandate server and the CRM in front of it, plus the person's browser for code + PKCE.

use demo_crm::{Crm, app, guard_builder};
use mandate_guard::{FeedCredential, FeedHandle, Guard, ReportHandle, ReportSettings};
use mandate_server::Application;
use mandate_server::config::{self, Overrides};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The CRM's resource identifier in `examples/demo.toml` (the tokens' audience).
pub const CRM: &str = "http://127.0.0.1:8081";
pub const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";
pub const SVC_SECRET: &str = "demo-svc-agent-secret-0123456789abcdef";
const REDIRECT: &str = "http://127.0.0.1:47123/callback";

pub struct Demo {
    pub issuer: String,
    /// Where the CRM actually listens.
    pub crm: String,
    pub http: reqwest::Client,
    pub feed: FeedHandle,
    /// The CRM reports its refusals to the server's audit log, as `demo-crm` does.
    pub reports: ReportHandle,
    pub guard: Guard,
    pub database_url: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Starts Mandate with the demo configuration and the CRM following its revocation feed.
pub async fn spawn_demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../demo.toml");
    let database_url = format!("sqlite://{}", dir.path().join("mandate.db").display());
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
        database_url: Some(database_url.clone()),
        ..Overrides::default()
    };
    let config = config::load(Some(&demo), &overrides).unwrap();
    let server = Application::build(config).await.unwrap();
    let issuer = server.issuer().to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = rx.await;
    }));

    let guard = guard_builder(&issuer, CRM).build().await.unwrap();
    let credential = FeedCredential {
        client_id: "demo-crm".into(),
        secret: CRM_SECRET.into(),
    };
    let reports = guard
        .report_denials_with(
            credential.clone(),
            ReportSettings {
                interval: Duration::from_millis(50),
                ..ReportSettings::default()
            },
        )
        .unwrap();
    let feed = guard.follow_revocations(credential).unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let crm = format!("http://{}", listener.local_addr().unwrap());
    let router = app(guard.clone(), Arc::new(Crm::seeded()));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Demo {
        issuer,
        crm,
        http: reqwest::Client::new(),
        feed,
        reports,
        guard,
        database_url,
        _dir: dir,
        _shutdown: tx,
    }
}

/// An agent's tokens for a person, from the `oauth2` crate's code + PKCE flow.
pub struct UserTokens {
    pub access_token: String,
    pub scope: String,
}

impl Demo {
    pub fn crm_url(&self, path: &str) -> String {
        format!("{}{path}", self.crm)
    }

    /// Runs authorize → login → consent → token for `agent` acting for `login`, asking for
    /// `scope` and approving only `approve`.
    pub async fn user_token(
        &self,
        agent: &str,
        login: &str,
        scope: &str,
        approve: &[&str],
    ) -> UserTokens {
        let client = BasicClient::new(ClientId::new(agent.into()))
            .set_auth_uri(AuthUrl::new(format!("{}/authorize", self.issuer)).unwrap())
            .set_token_uri(TokenUrl::new(format!("{}/token", self.issuer)).unwrap())
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", CRM);
        for s in scope.split(' ') {
            request = request.add_scope(Scope::new(s.into()));
        }
        let (url, _state) = request.url();

        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login_page = browser.get(url).send().await.unwrap().text().await.unwrap();
        let consent_page = self
            .submit(
                &browser,
                "/login",
                &login_page,
                &[
                    ("login", login),
                    ("password", &format!("{login}-demo-password")),
                ],
            )
            .await
            .text()
            .await
            .unwrap();
        let mut fields: Vec<(&str, &str)> = approve.iter().map(|s| ("scope", *s)).collect();
        fields.push(("decision", "approve"));
        let done = self
            .submit(&browser, "/consent", &consent_page, &fields)
            .await;
        assert_eq!(
            done.status(),
            StatusCode::SEE_OTHER,
            "consent should redirect"
        );
        let location = url::Url::parse(done.headers()["location"].to_str().unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"));

        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&oauth2::reqwest::Client::new())
            .await
            .unwrap();
        UserTokens {
            access_token: token.access_token().secret().clone(),
            scope: token
                .scopes()
                .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
        }
    }

    /// Posts a login or consent form, carrying the page's hidden `request_id` and `csrf`.
    async fn submit(
        &self,
        browser: &reqwest::Client,
        path: &str,
        page: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let request_id = hidden(page, "request_id");
        let csrf = hidden(page, "csrf");
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("request_id", &request_id)
            .append_pair("csrf", &csrf);
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        browser
            .post(format!("{}{path}", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap()
    }

    /// A service token for `svc-agent` (acme) at the CRM.
    pub async fn service_token(&self, scope: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("resource", CRM),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let json: Value = resp.json().await.unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }

    /// Revokes `token` at RFC 7009 as the public client `agent` that holds it.
    pub async fn revoke(&self, agent: &str, token: &str) {
        let resp = self
            .http
            .post(format!("{}/revoke", self.issuer))
            .form(&[("token", token), ("client_id", agent)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// GET on the CRM with `token`: status, body and the `WWW-Authenticate` challenge.
    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value, String) {
        let resp = self
            .http
            .get(self.crm_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &str) -> (StatusCode, Value, String) {
        let resp = self
            .http
            .post(self.crm_url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        read(resp).await
    }
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value, String) {
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, challenge)
}

/// The `value` of the hidden input named `name` in an HTML page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}
