//! Several `mandate serve` processes sharing one PostgreSQL database, as behind a load
//! balancer (issue 7): nothing a node keeps in memory is authoritative, so any node may serve
//! any step of a flow, a revocation made on one reaches a guard following another within a
//! second, signing-key rotation reaches every node, and killing a node under load loses and
//! duplicates nothing. A node whose database is unreachable or stops answering (through a
//! link the test controls) answers 503 in bounded time and serves again when it is back.
//!
//! The nodes share the issuer (the first node's address stands in for the balancer's), the
//! database and the key-encryption key file, and nothing else. The OAuth steps are driven with
//! the `oauth2` crate, each against another node's token endpoint.
//!
//! PostgreSQL only: `MANDATE_TEST_POSTGRES_URL` must be set, or every test here says SKIPPED.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use base64::Engine;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, RefreshToken,
    Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SVC_SECRET: &str = "demo-svc-agent-secret-0123456789abcdef";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";
const ADMIN_CLI_SECRET: &str = "demo-admin-cli-secret-0123456789abcdef";
const CLI_REDIRECT: &str = "http://127.0.0.1/callback";
/// The demo's resource server, the audience of the demo agents' tokens.
const CRM: &str = "http://127.0.0.1:8081";

/// Re-read keys every second, so a rotation crosses nodes quickly in these tests.
const CLUSTER_SETTINGS: &str = "\n[signing_keys]\nreload_seconds = 1\n";

struct Cluster {
    dir: tempfile::TempDir,
    admin_url: String,
    url: String,
    /// The database URL the nodes are given: `url`, or a way to it through a [`DatabaseLink`].
    node_url: String,
    issuer: String,
    config: PathBuf,
    nodes: Vec<Option<Child>>,
    bases: Vec<String>,
    http: reqwest::Client,
    /// Whether the database was dropped already.
    dropped: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// Starts `n` nodes at the same moment on a fresh database (so they race to create the
    /// key-encryption key, the first signing key and the configuration), or `None` when
    /// PostgreSQL is not configured.
    async fn start(n: usize) -> Option<Self> {
        Self::start_via(n, None).await
    }

    /// [`Cluster::start`], with the nodes reaching the database through `link` if given.
    async fn start_via(n: usize, link: Option<&DatabaseLink>) -> Option<Self> {
        let Some(admin_url) = mandate_store::testing::postgres_test_url() else {
            eprintln!(
                "SKIPPED: set {} to run the multi-node tests",
                mandate_store::testing::POSTGRES_TEST_URL_VAR
            );
            return None;
        };
        let url = mandate_store::testing::fresh_postgres_database(&admin_url)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cluster.toml");
        let demo = std::fs::read_to_string(common::DEMO).unwrap();
        std::fs::write(&config, format!("{demo}{CLUSTER_SETTINGS}")).unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let bases: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let node_url = link.map_or_else(|| url.clone(), |link| link.rewrite(&url));
        let mut cluster = Self {
            issuer: bases[0].clone(),
            dir,
            admin_url,
            url,
            node_url,
            config,
            nodes: Vec::new(),
            bases,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dropped: false,
        };
        let spawned: Vec<Child> = (0..n).map(|i| cluster.spawn(i)).collect();
        for (i, child) in spawned.into_iter().enumerate() {
            let log = common::stderr_log(&cluster.dir.path().join(format!("node{i}")));
            let (child, issuer) = common::wait_for_issuer(child, &log);
            assert_eq!(issuer, cluster.issuer);
            cluster.nodes.push(Some(child));
        }
        Some(cluster)
    }

    fn spawn(&self, i: usize) -> Child {
        let data = self.dir.path().join(format!("node{i}"));
        let kek = self.dir.path().join("shared-kek");
        let listen = self.bases[i].trim_start_matches("http://").to_owned();
        common::spawn_serve(
            &data,
            &[
                "--database-url",
                &self.node_url,
                "--config",
                self.config.to_str().unwrap(),
            ],
            &["--listen", &listen, "--issuer", &self.issuer],
            &[("MANDATE_KEY_ENCRYPTION_KEY_FILE", kek.to_str().unwrap())],
        )
    }

    fn base(&self, i: usize) -> &str {
        &self.bases[i]
    }

    /// SIGKILL: no shutdown hook, no flush.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn client_credentials(&self, node: usize) -> reqwest::Result<Value> {
        self.http
            .post(format!("{}/token", self.base(node)))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    /// Introspection at `node`, as the demo CRM (the tokens' audience) does it.
    async fn introspect(&self, node: usize, token: &str) -> Value {
        self.http
            .post(format!("{}/introspect", self.base(node)))
            .basic_auth("demo-crm", Some(CRM_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn jwks_kids(&self, node: usize) -> HashSet<String> {
        let jwks: Value = self
            .http
            .get(format!("{}/jwks.json", self.base(node)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// An operator's admin API token (the demo's `admin-cli`), from `node`.
    async fn admin_token(&self, node: usize) -> String {
        let body: Value = self
            .http
            .post(format!("{}/token", self.base(node)))
            .basic_auth("admin-cli", Some(ADMIN_CLI_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "mandate.admin"),
                ("resource", &format!("{}/admin/v1", self.issuer)),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// Withdraws signing key `kid` through `node`'s admin API; the answer's status.
    async fn withdraw(&self, node: usize, admin: &str, kid: &str) -> u16 {
        let url = format!("{}/admin/v1/signing-keys/{kid}/withdraw", self.base(node));
        let resp = self.http.post(url).bearer_auth(admin).send().await.unwrap();
        resp.status().as_u16()
    }

    /// `mandate audit verify` on the shared database.
    fn verify_audit_chain(&self) -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
            .arg("--data-dir")
            .arg(self.dir.path().join("verify"))
            .args(["--database-url", &self.url, "audit", "verify", "--json"])
            .env_remove("MANDATE_DATABASE_URL")
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert!(out.status.success(), "{report}");
        assert_eq!(report["intact"], true, "{report}");
        report
    }

    async fn finish(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        mandate_store::testing::drop_postgres_database(&self.admin_url, &self.url)
            .await
            .unwrap();
        self.dropped = true;
    }
}

/// A failed test still stops its nodes and drops its database.
impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.dropped {
            let (admin, url) = (self.admin_url.clone(), self.url.clone());
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(mandate_store::testing::drop_postgres_database(&admin, &url))
            })
            .join();
        }
    }
}

/// A TCP path from the nodes to PostgreSQL that a test can cut and restore, as a stopped
/// database or a network partition does: while cut, its port refuses connections and every
/// connection that went through it has ended.
/// It can also stall: keep every connection open and forward nothing, as a partition that
/// drops packets does, until it flows again.
struct DatabaseLink {
    /// The database's `host:port`, as the test URL names it.
    database: String,
    address: std::net::SocketAddr,
    /// The acceptor and every forwarded connection: what cutting ends.
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Whether bytes go through (`false`: held until it is `true` again).
    flowing: tokio::sync::watch::Sender<bool>,
}

/// Copies `from` to `to` while the link flows, holding what it read while it does not.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if flowing.wait_for(|f| *f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl DatabaseLink {
    /// A link to the test PostgreSQL, or `None` when it is not configured.
    async fn open() -> Option<Self> {
        let admin = mandate_store::testing::postgres_test_url()?;
        let authority = admin.split_once("://").unwrap().1;
        let authority = authority.split('/').next().unwrap();
        let database = authority.rsplit('@').next().unwrap().to_owned();
        assert!(database.contains(':'), "no host:port in {admin}");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Self {
            database,
            address: listener.local_addr().unwrap(),
            tasks: Arc::default(),
            flowing: tokio::sync::watch::Sender::new(true),
        };
        link.serve(listener);
        Some(link)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (tasks, database) = (self.tasks.clone(), self.database.clone());
        let flowing = self.flowing.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (database, flowing) = (database.clone(), flowing.clone());
                let forward = tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&database).await {
                        let (from_node, to_node) = inbound.into_split();
                        let (from_database, to_database) = outbound.into_split();
                        tokio::join!(
                            pipe(from_node, to_database, flowing.subscribe()),
                            pipe(from_database, to_node, flowing.subscribe()),
                        );
                    }
                });
                tasks.lock().unwrap().push(forward.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(acceptor.abort_handle());
    }

    /// `url` with the database's address replaced by this link's.
    fn rewrite(&self, url: &str) -> String {
        assert!(url.contains(&self.database), "{url}");
        url.replacen(&self.database, &self.address.to_string(), 1)
    }

    /// Closes the port and ends every connection through it.
    async fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        // Aborted tasks drop their sockets when the runtime next gets to them.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tokio::net::TcpStream::connect(self.address).await.is_err(),
            "the link still accepts connections"
        );
    }

    /// Holds every byte from now on, in both directions, on every connection.
    fn stall(&self) {
        self.flowing.send_replace(false);
    }

    /// Lets bytes through again, those held first.
    fn flow(&self) {
        self.flowing.send_replace(true);
    }

    /// Opens the port again.
    async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }
}

/// A client-credentials token from node 0 once it serves again after its database came back
/// (until then it answers 503, or nothing within the client's timeout); at most 30 s.
async fn token_once_served_again(cluster: &Cluster) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster.client_credentials(0).await {
            Ok(body) => return body["access_token"].as_str().unwrap().to_owned(),
            Err(e) if Instant::now() < deadline => {
                let status = e.status().map(|s| s.as_u16());
                assert!(e.is_timeout() || status == Some(503), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the node did not serve again: {e}"),
        }
    }
}

/// Ends the sessions on the cluster's database whose last statement contains `last_statement`
/// ("" for every one, as a database restart or a failover does); the number ended.
async fn end_database_sessions(cluster: &Cluster, last_statement: &str) -> i64 {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&cluster.admin_url)
        .await
        .unwrap();
    let name = cluster.url.rsplit('/').next().unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND strpos(query, $2) > 0",
    )
    .bind(name)
    .bind(last_statement)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    ended
}

/// Waits (up to 10 s) for `text` to appear in node `node`'s log.
async fn wait_for_log(cluster: &Cluster, node: usize, text: &str) {
    let log = common::stderr_log(&cluster.dir.path().join(format!("node{node}")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains(text) {
        assert!(
            Instant::now() < deadline,
            "node {node} never logged {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn jwt_header_kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn jwt_claim(token: &str, claim: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims[claim].clone()
}

/// The value of the hidden form field `name` in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// The public agent `cli-agent` as the `oauth2` crate sees it, with `node`'s token endpoint.
fn oauth_client(
    cluster: &Cluster,
    node: usize,
) -> oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    BasicClient::new(ClientId::new("cli-agent".into()))
        .set_auth_uri(AuthUrl::new(format!("{}/authorize", cluster.issuer)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/token", cluster.base(node))).unwrap())
        .set_redirect_uri(RedirectUrl::new(CLI_REDIRECT.into()).unwrap())
}

fn oauth_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `login` signs in and consents to `scope` for cli-agent on `authorize_node`; the code is
/// redeemed on `redeem_node`. Returns (access token, refresh token).
async fn user_tokens(
    cluster: &Cluster,
    login: &str,
    scope: &str,
    authorize_node: usize,
    redeem_node: usize,
) -> (String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = oauth_client(cluster, redeem_node);
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new(scope.into()))
        .set_pkce_challenge(challenge)
        .url();
    // The browser: the authorization request goes to `authorize_node`.
    let url = url
        .as_str()
        .replacen(&cluster.issuer, cluster.base(authorize_node), 1);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let at = |path: &str| format!("{}{path}", cluster.base(authorize_node));
    let page = browser.get(url).send().await.unwrap().text().await.unwrap();
    let login_form = [
        ("request_id", hidden(&page, "request_id")),
        ("csrf", hidden(&page, "csrf")),
        ("login", login.to_owned()),
        ("password", format!("{login}-demo-password")),
    ];
    let resp = browser
        .post(at("/login"))
        .form(&login_form)
        .send()
        .await
        .unwrap();
    let resp = if resp.status() == reqwest::StatusCode::SEE_OTHER {
        resp
    } else {
        let page = resp.text().await.unwrap();
        let consent = [
            ("request_id", hidden(&page, "request_id")),
            ("csrf", hidden(&page, "csrf")),
            ("scope", scope.to_owned()),
            ("decision", "approve".to_owned()),
        ];
        browser
            .post(at("/consent"))
            .form(&consent)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params.get("state"), Some(state.secret()));
    let token = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&oauth_http())
        .await
        .unwrap();
    (
        token.access_token().secret().clone(),
        token.refresh_token().unwrap().secret().clone(),
    )
}

async fn refresh_on(
    cluster: &Cluster,
    node: usize,
    refresh_token: &str,
) -> Result<(String, String), String> {
    let token = oauth_client(cluster, node)
        .exchange_refresh_token(&RefreshToken::new(refresh_token.into()))
        .request_async(&oauth_http())
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok((
        token.access_token().secret().clone(),
        token.refresh_token().unwrap().secret().clone(),
    ))
}

/// A minimal upstream API behind the guard: answers 200 to everything.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "upstream says hello" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// `mandate guard` in front of `upstream`, following `issuer_node`'s revocation feed.
fn start_guard(cluster: &Cluster, upstream: &str) -> (Child, String) {
    use std::io::{BufRead, BufReader};
    let routes = cluster.dir.path().join("routes.toml");
    std::fs::write(
        &routes,
        "[[routes]]\npath = \"/contacts\"\nscopes = [\"contacts.read\"]\n",
    )
    .unwrap();
    let mut guard = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["guard", "--issuer", &cluster.issuer, "--resource", CRM])
        .args(["--upstream", upstream, "--listen", "127.0.0.1:0"])
        .args(["--feed-client-id", "demo-crm"])
        .env("MANDATE_GUARD_FEED_SECRET", CRM_SECRET)
        .arg("--routes")
        .arg(&routes)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(guard.stdout.take().unwrap()).lines();
    let proxy = loop {
        let line = lines.next().expect("guard exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening") {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (guard, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_on_one_node_refresh_on_another_revoke_on_a_third_and_the_guard_rejects_in_time() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    // Three nodes raced to create the key-encryption key and a signing key: tokens from each
    // verify at every other.
    for from in 0..3 {
        let token = cluster.client_credentials(from).await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        for at in 0..3 {
            let answer = cluster.introspect(at, token).await;
            assert_eq!(
                answer["active"], true,
                "issued by node {from}, at node {at}"
            );
        }
    }
    // Within a reload they agree on one signer and publish the same keys.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut kids = HashSet::new();
    for node in 0..3 {
        let token = cluster.client_credentials(node).await.unwrap();
        kids.insert(jwt_header_kid(token["access_token"].as_str().unwrap()));
    }
    assert_eq!(
        kids.len(),
        1,
        "every node signs with the same key: {kids:?}"
    );
    let published = cluster.jwks_kids(0).await;
    assert_eq!(cluster.jwks_kids(1).await, published);
    assert_eq!(cluster.jwks_kids(2).await, published);

    // Every node now holds the agent's service grant in its cache. Revoked through node 3's
    // admin API, it has no further token issued under it by any node, at once: each node's
    // next token carries a new grant, active everywhere.
    let service = cluster.client_credentials(0).await.unwrap();
    let service_gid = jwt_claim(service["access_token"].as_str().unwrap(), "gid");
    let admin = cluster.admin_token(2).await;
    let status = cluster
        .http
        .post(format!(
            "{}/admin/v1/grants/{}/revoke",
            cluster.base(2),
            service_gid.as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"reason": "multinode test"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    for node in 0..3 {
        let token = cluster.client_credentials(node).await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        assert_ne!(
            jwt_claim(token, "gid"),
            service_gid,
            "issued by node {node}"
        );
        for at in 0..3 {
            let answer = cluster.introspect(at, token).await;
            assert_eq!(
                answer["active"], true,
                "issued by node {node}, at node {at}"
            );
        }
    }

    // Issue on node 1 (the code is redeemed there too), refresh on node 2.
    let (first_access, first_refresh) = user_tokens(&cluster, "alice", "contacts.read", 0, 0).await;
    let (access, refresh) = refresh_on(&cluster, 1, &first_refresh).await.unwrap();
    assert_eq!(
        jwt_claim(&access, "gid"),
        jwt_claim(&first_access, "gid"),
        "the refresh continues the same grant"
    );

    // A guard following node 1's revocation feed lets the refreshed token through.
    let upstream = upstream().await;
    let (mut guard, proxy) = start_guard(&cluster, &upstream);
    let call = |token: String| {
        let http = cluster.http.clone();
        let url = format!("{proxy}/contacts");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(call(access.clone()).await, 200);
    // Give the guard's feed subscription a moment to be in place before revoking.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(5) && call(access.clone()).await != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every node keeps its answer for the token (PostgreSQL, for `cache_ttl_ms`: 1 s).
    for _ in 0..2 {
        for node in 0..3 {
            assert_eq!(cluster.introspect(node, &access).await["active"], true);
        }
    }

    // Revoke on node 3 (RFC 7009, the refresh token: its whole grant ends).
    let revoked_at = Instant::now();
    let status = cluster
        .http
        .post(format!("{}/revoke", cluster.base(2)))
        .form(&[("token", refresh.as_str()), ("client_id", "cli-agent")])
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // The revoking node dropped its kept answer before answering; the others hear the change
    // from the database, long before their kept answers would lapse.
    assert_eq!(cluster.introspect(2, &access).await["active"], false);
    for node in 0..2 {
        while cluster.introspect(node, &access).await["active"] == true {
            assert!(
                revoked_at.elapsed() < Duration::from_millis(500),
                "node {node} still says active 500 ms after the revocation"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        eprintln!(
            "revoked on node 3, inactive at node {} after {:?}",
            node + 1,
            revoked_at.elapsed()
        );
    }
    let rejected_after = loop {
        if call(access.clone()).await == 401 {
            break revoked_at.elapsed();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "the guard still accepts a token revoked 3 s ago on another node"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("revoked on node 3, rejected by the guard fed by node 1 after {rejected_after:?}");
    assert!(
        rejected_after < Duration::from_secs(1),
        "rejection took {rejected_after:?}"
    );
    for node in 0..3 {
        assert_eq!(cluster.introspect(node, &access).await["active"], false);
        assert_eq!(
            cluster.introspect(node, &first_access).await["active"],
            false
        );
    }
    assert!(
        refresh_on(&cluster, 0, &refresh).await.is_err(),
        "the revoked grant cannot be refreshed on any node"
    );
    guard.kill().unwrap();
    guard.wait().unwrap();

    cluster.verify_audit_chain();
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_rotated_on_one_node_is_published_then_used_by_every_node() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = cluster.client_credentials(0).await.unwrap();
    let before = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = jwt_header_kid(&before);

    // Rotate through node 2's admin API; the new key signs 4 s from now.
    let admin = cluster.admin_token(1).await;
    let rotated: Value = cluster
        .http
        .post(format!("{}/admin/v1/signing-keys", cluster.base(1)))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"activate_in_seconds": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rotated["status"], "pending", "{rotated}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    let activates = Duration::from_secs(4);
    let rotated_at = Instant::now();

    // Published by every node within a reload, while every node still signs with the old key.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in 0..3 {
        let kids = cluster.jwks_kids(node).await;
        assert!(
            kids.contains(&new_kid) && kids.contains(&old_kid),
            "node {node}: {kids:?}"
        );
        let token = cluster.client_credentials(node).await.unwrap();
        assert_eq!(
            jwt_header_kid(token["access_token"].as_str().unwrap()),
            old_kid,
            "node {node} signs with the new key before its time"
        );
    }
    // After activation every node signs with the new key, and old tokens still verify.
    tokio::time::sleep(
        activates.saturating_sub(rotated_at.elapsed()) + Duration::from_millis(1100),
    )
    .await;
    let mut after = Vec::new();
    for node in 0..3 {
        let token = cluster.client_credentials(node).await.unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();
        assert_eq!(jwt_header_kid(&token), new_kid, "node {node}");
        after.push(token);
    }
    for node in 0..3 {
        assert_eq!(cluster.introspect(node, &before).await["active"], true);
        for token in &after {
            assert_eq!(cluster.introspect(node, token).await["active"], true);
        }
    }
    let listed: Value = cluster
        .http
        .get(format!("{}/admin/v1/signing-keys", cluster.base(2)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_of = |kid: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["status"].clone())
    };
    assert_eq!(status_of(&new_kid), Some("active".into()), "{listed}");
    assert_eq!(status_of(&old_kid), Some("superseded".into()), "{listed}");

    // Withdrawn on node 3 (a compromise): within a reload no node trusts the old key.
    assert_eq!(cluster.withdraw(2, &admin, &old_kid).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for node in 0..3 {
        assert_eq!(
            cluster.introspect(node, &before).await["active"],
            false,
            "node {node}"
        );
        assert!(!cluster.jwks_kids(node).await.contains(&old_kid));
        assert_eq!(cluster.introspect(node, &after[0]).await["active"], true);
    }
    // The last key that signs cannot be withdrawn (asked with a token the new key signed: the
    // operator's first token died with the old key).
    let admin = cluster.admin_token(0).await;
    assert_eq!(cluster.withdraw(0, &admin, &new_kid).await, 409);

    let report = cluster.verify_audit_chain();
    eprintln!("rotation across nodes: audit chain intact: {report}");
    cluster.finish().await;
}

/// What one load client saw: every token it was given, and any refusal it should not have had.
#[derive(Default)]
struct Seen {
    access_tokens: Vec<String>,
    refusals: Vec<String>,
    retries: usize,
}

/// What one request of a load client came to.
enum Outcome {
    /// An access token.
    Token(String),
    /// An OAuth error: the node answered, and refused.
    Refused(String),
    /// No answer (connection refused or cut): the node is gone.
    Unreachable,
}

type Step = Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send>;

/// Sends `step` to the nodes round-robin until `stop`, as a client behind a load balancer:
/// a node that does not answer is skipped and the next request goes to the next node; a node
/// marked `down` is no longer tried. Stops at the first refusal.
async fn round_robin(
    start: usize,
    down: Arc<std::sync::Mutex<HashSet<usize>>>,
    stop: Arc<AtomicBool>,
    mut step: Step,
) -> Seen {
    let mut seen = Seen::default();
    let mut node = start;
    while !stop.load(Ordering::Relaxed) {
        node = (node + 1) % 3;
        if down.lock().unwrap().contains(&node) {
            continue;
        }
        match step(node).await {
            Outcome::Token(token) => seen.access_tokens.push(token),
            Outcome::Refused(e) => {
                seen.refusals.push(e);
                break;
            }
            Outcome::Unreachable => seen.retries += 1,
        }
    }
    seen
}

/// Refreshes one family; after an unanswered request the same refresh token is presented
/// again on the next node (the killed node may have rotated it before dying).
fn refreshing(cluster: Arc<Cluster>, refresh: String) -> Step {
    let current = Arc::new(std::sync::Mutex::new(refresh));
    Box::new(move |node| {
        let (cluster, current) = (cluster.clone(), current.clone());
        Box::pin(async move {
            let token = current.lock().unwrap().clone();
            match refresh_on(&cluster, node, &token).await {
                Ok((access, next)) => {
                    *current.lock().unwrap() = next;
                    Outcome::Token(access)
                }
                Err(e) if e.contains("invalid_grant") => Outcome::Refused(e),
                Err(_) => Outcome::Unreachable,
            }
        })
    })
}

fn issuing(cluster: Arc<Cluster>) -> Step {
    Box::new(move |node| {
        let cluster = cluster.clone();
        Box::pin(async move {
            match cluster.client_credentials(node).await {
                Ok(body) => Outcome::Token(body["access_token"].as_str().unwrap().to_owned()),
                Err(e) if e.is_status() => Outcome::Refused(e.to_string()),
                Err(_) => Outcome::Unreachable,
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_three_nodes_under_load_loses_and_duplicates_nothing() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    // Four refresh families (alice, bob, carol, and alice again with another scope), each
    // started on a different node.
    let families = [
        ("alice", "contacts.read", 0),
        ("bob", "contacts.read", 1),
        ("carol", "contacts.read", 2),
        ("alice", "tickets.read", 1),
    ];
    let mut refresh_tokens = Vec::new();
    for (login, scope, node) in families {
        let (_, refresh) = user_tokens(&cluster, login, scope, node, (node + 1) % 3).await;
        refresh_tokens.push(refresh);
    }

    let killed = 1;
    let down = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(cluster);
    let mut tasks = Vec::new();
    let steps = refresh_tokens
        .into_iter()
        .map(|refresh| refreshing(shared.clone(), refresh))
        .chain((0..4).map(|_| issuing(shared.clone())));
    for (i, step) in steps.enumerate() {
        tasks.push(tokio::spawn(round_robin(
            i,
            down.clone(),
            stop.clone(),
            step,
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL node 2 mid-load. Clients keep going to it until a request fails, then retry on
    // another node; afterwards the balancer (here: the clients) skips it.
    let node_pid = shared.nodes[killed].as_ref().unwrap().id();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &node_pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    down.lock().unwrap().insert(killed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let mut cluster = Arc::try_unwrap(shared).unwrap_or_else(|_| panic!("tasks still hold it"));
    if let Some(mut child) = cluster.nodes[killed].take() {
        let _ = child.wait();
    }

    let refusals: Vec<&String> = seen.iter().flat_map(|s| &s.refusals).collect();
    assert!(
        refusals.is_empty(),
        "a client retrying on another node was refused: {refusals:?}"
    );
    let tokens: Vec<&String> = seen.iter().flat_map(|s| &s.access_tokens).collect();
    let retries: usize = seen.iter().map(|s| s.retries).sum();
    assert!(
        tokens.len() >= 100,
        "too little load to mean anything: {}",
        tokens.len()
    );
    // Every token ever returned introspects as active at a surviving node.
    let survivors = [0, 2];
    for (i, token) in tokens.iter().enumerate() {
        let node = survivors[i % 2];
        let answer = cluster.introspect(node, token).await;
        assert_eq!(answer["active"], true, "token {i} at node {node}: {answer}");
    }
    // No grant was lost or duplicated: one grant per person and scope set, one service grant.
    let store = mandate_store::connect(&cluster.url).await.unwrap();
    let grants = store
        .grants(
            &mandate_store::GrantFilter {
                include_revoked: true,
                ..mandate_store::GrantFilter::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    let revoked: Vec<_> = grants.iter().filter(|g| g.revoked_at.is_some()).collect();
    assert!(
        revoked.is_empty(),
        "a grant was lost (revoked): {revoked:?}"
    );
    let active: Vec<_> = grants.iter().filter(|g| g.revoked_at.is_none()).collect();
    let per_subject: HashSet<(Option<String>, String)> = active
        .iter()
        .map(|g| (g.user_id.clone(), g.client_id.clone()))
        .collect();
    assert_eq!(
        active.len(),
        per_subject.len(),
        "a user or agent has two active grants: {active:?}"
    );
    let families_left = seen
        .iter()
        .take(4)
        .filter(|s| !s.access_tokens.is_empty())
        .count();
    assert_eq!(families_left, 4, "every family kept refreshing");
    eprintln!(
        "killed node 2 under load: {} tokens returned, {} requests retried on another node, \
         all active afterwards; {} active grants, none duplicated",
        tokens.len(),
        retries,
        active.len()
    );
    drop(store);
    cluster.kill(0);
    cluster.kill(2);
    cluster.verify_audit_chain();
    cluster.finish().await;
}

/// The database ends a node's sessions under it, right after the node used them: no request
/// fails. First only the connections introspection read on: the read meets its ended
/// connection and runs again on another. Then every session at once, as a restart or a
/// failover of the database does: the node notices on its listening connection and tests
/// each connection used before ahead of its next statement, so issuance, rotation and the
/// code flow's writes do not meet an ended one either.
#[tokio::test]
async fn database_sessions_ended_under_a_node_fail_no_request() {
    let Some(cluster) = Cluster::start(1).await else {
        return;
    };
    let (access, mut refresh) = user_tokens(&cluster, "alice", "contacts.read", 0, 0).await;
    // Several pooled and held connections used a moment ago.
    for _ in 0..3 {
        let issued = cluster.client_credentials(0).await.unwrap();
        let issued = issued["access_token"].as_str().unwrap().to_owned();
        assert_eq!(cluster.introspect(0, &issued).await["active"], true);
        assert_eq!(cluster.introspect(0, &access).await["active"], true);
        (_, refresh) = refresh_on(&cluster, 0, &refresh).await.unwrap();
    }

    // Two tokens never introspected: the node keeps no answer for either, so each is read.
    let [first, second] = [(); 2].map(|()| cluster.client_credentials(0));
    let first = first.await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = second.await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cluster.introspect(0, &first).await["active"], true);
    let ended = end_database_sessions(&cluster, "FROM revoked_tokens WHERE jti").await;
    assert!(ended >= 1, "no session had introspected");
    let answer = cluster.introspect(0, &second).await;
    assert_eq!(answer["active"], true, "{answer}");

    let ended = end_database_sessions(&cluster, "").await;
    assert!(ended >= 3, "only {ended} sessions ended");
    wait_for_log(&cluster, 0, "database connection lost; reconnecting").await;
    // Read again: a node that lost its listening connection uses no kept answer.
    let answer = cluster.introspect(0, &access).await;
    assert_eq!(answer["active"], true, "{answer}");
    for _ in 0..5 {
        let issued = cluster.client_credentials(0).await.unwrap();
        let issued = issued["access_token"].as_str().unwrap().to_owned();
        assert_eq!(cluster.introspect(0, &issued).await["active"], true);
        (_, refresh) = refresh_on(&cluster, 0, &refresh).await.unwrap();
    }
    let (again, _) = user_tokens(&cluster, "alice", "contacts.read", 0, 0).await;
    assert_eq!(cluster.introspect(0, &again).await["active"], true);
    cluster.verify_audit_chain();
    cluster.finish().await;
}

/// A node whose database cannot be reached (its port closed and every connection ended, as a
/// stopped database or a partition does) answers what needs the database `503
/// temporarily_unavailable` with `Retry-After` within the store's wait, issues nothing and
/// answers introspection neither active nor inactive; `/healthz` says unavailable. When the
/// database is back, the node serves again without a restart, and every token it returned
/// before introspects as active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_its_database_answers_503_and_recovers() {
    let Some(link) = DatabaseLink::open().await else {
        eprintln!("SKIPPED: PostgreSQL is not configured");
        return;
    };
    let cluster = Cluster::start_via(1, Some(&link)).await.unwrap();
    let (access, refresh) = user_tokens(&cluster, "alice", "contacts.read", 0, 0).await;
    let issued = cluster.client_credentials(0).await.unwrap();
    let issued = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(cluster.introspect(0, &issued).await["active"], true);

    link.cut().await;
    let cut_at = Instant::now();
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let unavailable = |request: reqwest::RequestBuilder| async move {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        let waited = started.elapsed();
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert_eq!(retry_after.unwrap(), "1");
        assert!(
            waited < Duration::from_secs(15),
            "answered after {waited:?}"
        );
        body
    };
    let token = format!("{}/token", cluster.base(0));
    let form = [("grant_type", "client_credentials")];
    let svc = |r: reqwest::RequestBuilder| r.basic_auth("svc-agent", Some(SVC_SECRET));
    // The first request meets connections that ended; the second waits for a new one, which
    // the closed port refuses until the wait is over.
    for _ in 0..2 {
        let body = unavailable(svc(patient.post(&token)).form(&form)).await;
        assert!(body.get("access_token").is_none(), "{body}");
    }
    let introspect = format!("{}/introspect", cluster.base(0));
    for asked in [&issued, &access] {
        let body = unavailable(
            patient
                .post(&introspect)
                .basic_auth("demo-crm", Some(CRM_SECRET))
                .form(&[("token", asked.as_str())]),
        )
        .await;
        assert!(body.get("active").is_none(), "{body}");
    }
    let refreshed = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", "cli-agent"),
    ];
    unavailable(patient.post(&token).form(&refreshed)).await;
    // Every request fails alike: the node logs it about once a second, not once a request,
    // and not twice (tower-http's own line for a 5xx is not logged above DEBUG).
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let request = patient
            .post(&introspect)
            .basic_auth("demo-crm", Some(CRM_SECRET))
            .form(&[("token", issued.as_str())]);
        burst.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), 503);
    }
    let log =
        std::fs::read_to_string(common::stderr_log(&cluster.dir.path().join("node0"))).unwrap();
    let lines = log
        .matches("request failed: the database is unavailable")
        .count();
    let seconds = usize::try_from(cut_at.elapsed().as_secs()).unwrap();
    assert!(
        lines <= seconds + 2,
        "{lines} lines for 45 requests:\n{log}"
    );
    assert!(!log.contains("response failed"), "{log}");
    let health = patient
        .get(format!("{}/healthz", cluster.base(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);

    link.restore().await;
    let again = token_once_served_again(&cluster).await;
    for token in [&again, &issued, &access] {
        assert_eq!(cluster.introspect(0, token).await["active"], true);
    }
    // The refresh refused while the database was away changed nothing: the token still works.
    refresh_on(&cluster, 0, &refresh).await.unwrap();
    cluster.verify_audit_chain();
    cluster.finish().await;
}

/// A database that stops answering without closing its connections (a partition that drops
/// packets): the node's open connections wait for answers that do not come, and new ones for
/// a handshake. A token request answers `503` once its batch's deadline passes and an
/// introspection once its read's does, instead of waiting minutes for TCP to give up; when
/// the database answers again the node serves without a restart, every token it returned
/// introspects as active, and the audit chain is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_stops_answering_answers_503_within_its_deadlines() {
    let Some(link) = DatabaseLink::open().await else {
        eprintln!("SKIPPED: PostgreSQL is not configured");
        return;
    };
    let cluster = Cluster::start_via(1, Some(&link)).await.unwrap();
    let (access, _) = user_tokens(&cluster, "alice", "contacts.read", 0, 0).await;
    let issued = cluster.client_credentials(0).await.unwrap();
    let issued = issued["access_token"].as_str().unwrap().to_owned();
    // Never introspected, so the node keeps no answer for it: asking means reading.
    let unread = cluster.client_credentials(0).await.unwrap();
    let unread = unread["access_token"].as_str().unwrap().to_owned();
    assert_eq!(cluster.introspect(0, &issued).await["active"], true);
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // Tokens asked for without pause, so the stall also finds batches mid-commit.
    let loading = Arc::new(AtomicBool::new(true));
    let load_refused = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn({
        let (loading, http) = (loading.clone(), patient.clone());
        let refused = load_refused.clone();
        let url = format!("{}/token", cluster.base(0));
        async move {
            let mut answers = Vec::new();
            while loading.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = http
                    .post(&url)
                    .basic_auth("svc-agent", Some(SVC_SECRET))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap();
                if status == 503 {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                answers.push((status, started.elapsed(), body));
            }
            answers
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    link.stall();
    let started = Instant::now();
    let token = patient
        .post(format!("{}/token", cluster.base(0)))
        .basic_auth("svc-agent", Some(SVC_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send();
    let introspection = patient
        .post(format!("{}/introspect", cluster.base(0)))
        .basic_auth("demo-crm", Some(CRM_SECRET))
        .form(&[("token", unread.as_str())])
        .send();
    let (token, introspection) = tokio::join!(
        async {
            let answer = token.await.unwrap();
            (answer.status(), started.elapsed())
        },
        async {
            let answer = introspection.await.unwrap();
            (answer.status(), started.elapsed())
        },
    );
    assert_eq!(token.0, 503);
    assert!(
        token.1 < Duration::from_secs(40),
        "token answered after {:?}",
        token.1
    );
    assert_eq!(introspection.0, 503);
    assert!(
        introspection.1 < Duration::from_secs(20),
        "introspection answered after {:?}",
        introspection.1
    );
    // The load's request in flight when the stall began may have been answered just before
    // it, and its next one may wait in a batch begun after the first batch's deadline: keep
    // the database away until the load too has been refused (each of its batches has the
    // same deadline), so restoring the link cannot rescue every request of the load.
    let waiting = Instant::now();
    while load_refused.load(Ordering::Relaxed) == 0 && waiting.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    link.flow();
    let again = token_once_served_again(&cluster).await;
    for token in [&again, &issued, &unread, &access] {
        assert_eq!(cluster.introspect(0, token).await["active"], true);
    }
    loading.store(false, Ordering::Relaxed);
    let answers = load.await.unwrap();
    let refused = answers.iter().filter(|(status, ..)| *status == 503).count();
    assert!(refused >= 1, "the load met no stall");
    for (status, took, body) in &answers {
        assert!(*took < Duration::from_secs(40), "{status} after {took:?}");
        match status {
            200 => {
                let token = body["access_token"].as_str().unwrap();
                assert_eq!(cluster.introspect(0, token).await["active"], true);
            }
            503 => assert_eq!(body["error"], "temporarily_unavailable"),
            other => panic!("{other}: {body}"),
        }
    }
    cluster.verify_audit_chain();
    cluster.finish().await;
}
