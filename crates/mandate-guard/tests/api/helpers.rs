//! Spawners for the real issuer, a fake issuer whose keys the test controls, and a small axum
//! app protected by the guard; plus token-forging helpers for the attack table.

use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_core::jwt::{AccessTokenClaims, Jwk, Jwks, SigningKey};
use mandate_core::scope::ScopeSet;
use mandate_core::time::{Clock, ManualClock, Timestamp};
use mandate_guard::{Guard, Principal, Requirement};
use mandate_server::Application;
use mandate_server::config::{self, Overrides};
use mandate_server::system::SystemClock;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

pub const SVC_SECRET: &str = "demo-svc-agent-secret-0123456789abcdef";
pub const CRM: &str = "http://127.0.0.1:8081";
/// The demo CRM's own credential: it may follow the feed and introspect the CRM's tokens.
pub const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";

pub fn crm_credential(secret: &str) -> mandate_guard::FeedCredential {
    mandate_guard::FeedCredential {
        client_id: "demo-crm".into(),
        secret: secret.into(),
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

/// A real Mandate server with the demo configuration and a fresh SQLite database.
pub struct Issuer {
    pub issuer: String,
    pub database_url: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_issuer() -> Issuer {
    spawn_issuer_with(|_| {}).await
}

/// [`spawn_issuer`], with the demo configuration changed by `configure` first.
pub async fn spawn_issuer_with(configure: impl FnOnce(&mut config::Config)) -> Issuer {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("mandate.db").display());
    spawn_issuer_at(dir, database_url, configure).await
}

/// The issuer on a fresh PostgreSQL database, or `None` (said on stderr) when
/// `MANDATE_TEST_POSTGRES_URL` is not set. [`Issuer::finish`] drops the database.
pub async fn spawn_issuer_on_postgres(test: &str) -> Option<Issuer> {
    spawn_issuer_on_postgres_with(test, |_| {}).await
}

/// [`spawn_issuer_on_postgres`], with the demo configuration changed by `configure` first.
pub async fn spawn_issuer_on_postgres_with(
    test: &str,
    configure: impl FnOnce(&mut config::Config),
) -> Option<Issuer> {
    let Some(admin) = mandate_store::testing::postgres_test_url() else {
        eprintln!(
            "SKIPPED: MANDATE_TEST_POSTGRES_URL is not set; PostgreSQL run of {test} skipped"
        );
        return None;
    };
    let database_url = mandate_store::testing::fresh_postgres_database(&admin)
        .await
        .unwrap();
    Some(spawn_issuer_at(tempfile::tempdir().unwrap(), database_url, configure).await)
}

async fn spawn_issuer_at(
    dir: tempfile::TempDir,
    database_url: String,
    configure: impl FnOnce(&mut config::Config),
) -> Issuer {
    init_logs();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml");
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(dir.path().to_path_buf()),
        database_url: Some(database_url.clone()),
        ..Overrides::default()
    };
    let mut config = config::load(Some(&demo), &overrides).unwrap();
    configure(&mut config);
    let app = Application::build(config).await.unwrap();
    let issuer = app.issuer().to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    Issuer {
        issuer,
        database_url,
        http: reqwest::Client::new(),
        _dir: dir,
        _shutdown: tx,
    }
}

/// Server nodes sharing one fresh PostgreSQL database, key-encryption key and issuer URL (the
/// first node's address).
pub struct Cluster {
    pub issuer: String,
    /// Each node's base URL; the first is the issuer.
    pub nodes: Vec<String>,
    pub database_url: String,
    admin_url: String,
    _shutdowns: Vec<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// `count` nodes of the demo configuration changed by `configure`, or `None` (said on stderr)
/// when `MANDATE_TEST_POSTGRES_URL` is not set.
pub async fn spawn_postgres_cluster(
    test: &str,
    count: usize,
    configure: impl Fn(&mut config::Config),
) -> Option<Cluster> {
    let Some(admin_url) = mandate_store::testing::postgres_test_url() else {
        eprintln!("SKIPPED: MANDATE_TEST_POSTGRES_URL is not set; {test} did not run");
        return None;
    };
    let database_url = mandate_store::testing::fresh_postgres_database(&admin_url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo.toml");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = listener.local_addr().unwrap().port();
    drop(listener);
    let issuer = format!("http://127.0.0.1:{first}");
    let mut shutdowns = Vec::new();
    let mut nodes = Vec::new();
    for n in 0..count {
        let listen = if n == 0 {
            format!("127.0.0.1:{first}")
        } else {
            "127.0.0.1:0".to_owned()
        };
        let overrides = Overrides {
            listen: Some(listen.parse().unwrap()),
            issuer: Some(issuer.clone()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: Some(database_url.clone()),
        };
        let mut config = config::load(Some(&demo), &overrides).unwrap();
        configure(&mut config);
        let node = Application::build(config).await.unwrap();
        nodes.push(format!("http://127.0.0.1:{}", node.port()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(node.run_until(async {
            let _ = rx.await;
        }));
        shutdowns.push(tx);
    }
    Some(Cluster {
        issuer,
        nodes,
        database_url,
        admin_url,
        _shutdowns: shutdowns,
        _dir: dir,
    })
}

impl Cluster {
    /// Stops the nodes and drops the database.
    pub async fn finish(self) {
        let (admin, url) = (self.admin_url.clone(), self.database_url.clone());
        drop(self);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let _ = mandate_store::testing::drop_postgres_database(&admin, &url).await;
    }
}

impl Issuer {
    /// Stops the server and drops its PostgreSQL database, if it has one.
    pub async fn finish(self) {
        let url = self.database_url.clone();
        drop(self);
        if let Some(admin) = mandate_store::testing::postgres_test_url()
            && url.starts_with("postgres")
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let _ = mandate_store::testing::drop_postgres_database(&admin, &url).await;
        }
    }

    /// An access token for `svc-agent` (tenant acme) at the demo CRM, with `scope`.
    pub async fn token(&self, scope: &str) -> String {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("resource", CRM)
            .finish();
        let resp = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let json: Value = resp.json().await.unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }

    /// Revokes an access token at the server's RFC 7009 endpoint as its client, `svc-agent`.
    pub async fn revoke(&self, token: &str) {
        let resp = self
            .http
            .post(format!("{}/revoke", self.issuer))
            .basic_auth("svc-agent", Some(SVC_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    pub async fn jwks(&self) -> Vec<Jwk> {
        let jwks: Jwks = self
            .http
            .get(format!("{}/jwks.json", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks.keys
    }

    /// A guard for the demo CRM trusting this issuer, on a clock the test controls.
    pub async fn guard(&self, clock: Arc<ManualClock>) -> Guard {
        Guard::builder(&self.issuer, CRM)
            .clock(clock)
            .build()
            .await
            .unwrap()
    }
}

pub fn clock_now() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

/// An issuer the test controls: RFC 8414 metadata and a JWKS whose keys can change, counting
/// JWKS fetches.
pub struct FakeIssuer {
    pub issuer: String,
    pub keys: Arc<RwLock<Vec<Jwk>>>,
    pub jwks_fetches: Arc<AtomicUsize>,
}

pub async fn spawn_fake_issuer(claimed_issuer: Option<&str>) -> FakeIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let keys: Arc<RwLock<Vec<Jwk>>> = Arc::default();
    let jwks_fetches = Arc::new(AtomicUsize::new(0));
    let metadata = json!({
        "issuer": claimed_issuer.unwrap_or(&address),
        "jwks_uri": format!("{address}/jwks.json"),
    });
    let (k, n) = (keys.clone(), jwks_fetches.clone());
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { Json(metadata) }),
        )
        .route(
            "/jwks.json",
            get(move || async move {
                n.fetch_add(1, Ordering::SeqCst);
                let keys = k.read().unwrap().clone();
                Json(Jwks { keys })
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeIssuer {
        issuer: address,
        keys,
        jwks_fetches,
    }
}

impl FakeIssuer {
    pub fn publish(&self, key: &SigningKey) {
        self.keys.write().unwrap().push(key.public_jwk().clone());
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn claims(&self, now: Timestamp, scope: &str) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: "u_alice".into(),
            aud: CRM.into(),
            exp: now.unix() + 900,
            iat: now.unix(),
            jti: "jti-1".into(),
            client_id: "cli-agent".into(),
            scope: ScopeSet::parse(scope).unwrap(),
            tenant: "acme".into(),
            gid: "g_1".into(),
            act: None,
        }
    }
}

pub fn new_key(kid: &str) -> SigningKey {
    SigningKey::generate(mandate_core::jwt::Algorithm::EdDSA, kid.into())
        .unwrap()
        .0
}

pub fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

pub fn decode(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// A JWS over `header.payload` signed with a fresh Ed25519 key the guard does not know.
pub fn sign_with_stranger(header: &Value, payload: &str) -> (String, Value) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "attacker",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    });
    let mut header = header.clone();
    for field in ["jwk", "jku", "x5u"] {
        if header.get(field).is_some_and(|v| v.is_null()) {
            header[field] = match field {
                "jwk" => jwk.clone(),
                _ => json!("http://127.0.0.1:1/attacker-keys.json"),
            };
        }
    }
    let signing_input = format!("{}.{payload}", b64(&header));
    let sig = pair.sign(signing_input.as_bytes());
    (
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        jwk,
    )
}

/// HS256 over `header.payload` with `secret` as the HMAC key.
pub fn sign_hs256(header: &Value, payload: &str, secret: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let signing_input = format!("{}.{payload}", b64(header));
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

async fn whoami(p: Principal) -> Json<Value> {
    Json(json!({
        "subject": p.subject,
        "tenant": p.tenant,
        "client_id": p.client_id,
        "scopes": p.scopes.to_string(),
        "grant_id": p.grant_id,
    }))
}

/// A resource server protected by `guard`: `/tickets` needs `tickets.read`, `/billing` needs
/// `billing.read`, `/me` only a valid token; the RFC 9728 document is public.
pub async fn spawn_protected(guard: &Guard) -> String {
    let tickets = Router::new()
        .route("/tickets", get(whoami))
        .route_layer(guard.require(Requirement::scope("tickets.read")));
    let billing = Router::new()
        .route("/billing", get(whoami))
        .route_layer(guard.require(Requirement::scope("billing.read")));
    let app = Router::new()
        .route("/me", get(whoami))
        .merge(tickets)
        .merge(billing)
        .layer(guard.layer())
        .merge(guard.metadata_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// GETs `url` with the given Authorization header values.
pub async fn get_with(url: &str, authorization: &[&[u8]]) -> (u16, String, Value) {
    let mut req = reqwest::Client::new().get(url);
    for value in authorization {
        req = req.header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, challenge, body)
}

pub async fn get_bearer(url: &str, token: &str) -> (u16, String, Value) {
    get_with(url, &[format!("Bearer {token}").as_bytes()]).await
}

/// `GET /tickets` needs `tickets.read`, `POST /tickets` `tickets.write`, `GET /billing`
/// `billing.read`, `GET /item/{n}` any valid token; served with the peer address.
pub async fn spawn_tickets_app(guard: &Guard) -> String {
    async fn ok() -> &'static str {
        "ok"
    }
    let read = Router::new()
        .route("/tickets", get(ok))
        .route_layer(guard.require(Requirement::scope("tickets.read")));
    let write = Router::new()
        .route("/tickets", post(ok))
        .route_layer(guard.require(Requirement::scope("tickets.write")));
    let billing = Router::new()
        .route("/billing", get(ok))
        .route_layer(guard.require(Requirement::scope("billing.read")));
    let app = Router::new()
        .route("/item/{n}", get(ok))
        .merge(read)
        .merge(write)
        .merge(billing)
        .layer(guard.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    address
}

/// The issuer's audit events (of one action, if given), oldest first.
pub async fn logged_events(
    issuer: &Issuer,
    action: Option<&str>,
) -> Vec<mandate_core::event::Event> {
    let store = mandate_store::connect(&issuer.database_url).await.unwrap();
    store
        .events(&mandate_store::EventFilter {
            action: action.map(str::to_owned),
            limit: 10_000,
            ..mandate_store::EventFilter::default()
        })
        .await
        .unwrap()
}

/// Polls the event log until `done` holds for the events [`logged_events`] returns; fails
/// after 10 s, showing the actions it found.
pub async fn wait_for_events(
    issuer: &Issuer,
    action: Option<&str>,
    done: impl Fn(&[mandate_core::event::Event]) -> bool,
) -> Vec<mandate_core::event::Event> {
    let started = std::time::Instant::now();
    loop {
        let events = logged_events(issuer, action).await;
        if done(&events) {
            return events;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the expected events did not arrive: {:?}",
            events
                .iter()
                .map(|e| e.event.action.as_str())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
