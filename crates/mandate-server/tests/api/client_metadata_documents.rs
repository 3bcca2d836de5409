//! MCP client ID metadata documents: a `client_id` that is an https URL, resolved by fetching
//! the document it names.
//!
//! The documents are served over real TLS by [`DocServer`] on 127.0.0.1 with a self-signed
//! certificate (for `localhost` and `127.0.0.1`) made by rcgen; the server under test trusts
//! it through `extra_root_certificates` and may reach loopback only because these tests set
//! `allow_private_addresses` (the SSRF tests check what happens without it). No test sends
//! traffic anywhere but loopback: private and link-local literals are refused before any
//! connection is attempted.

use crate::helpers::*;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use mandate_server::Config;
use mandate_store::RegistrationOrigin;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

crate::backend_tests!(
    full_code_flow_with_a_url_client_id,
    unusable_documents_are_refused_without_redirecting,
    oversized_slow_and_redirecting_hosts_are_refused,
    private_and_loopback_addresses_are_refused,
    cache_control_decides_when_to_fetch_again,
    disabled_means_url_client_ids_are_unknown,
    private_key_jwt_with_keys_from_the_document,
);

/// Where the person is sent back to in these tests; its host is what consent must show.
const REDIRECT: &str = "https://mcp-client.example.com/oauth/callback";

/// One canned answer of the document server.
#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    cache_control: Option<&'static str>,
    location: Option<String>,
    body: Vec<u8>,
    /// Send the body in chunks without a `Content-Length`.
    chunked: bool,
    delay: Duration,
}

impl Reply {
    fn json(v: &Value) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            cache_control: None,
            location: None,
            body: v.to_string().into_bytes(),
            chunked: false,
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Served {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// An https server for metadata documents on 127.0.0.1, counting requests per path.
struct DocServer {
    port: u16,
    ca_file: PathBuf,
    served: Arc<Mutex<Served>>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl DocServer {
    async fn start() -> Self {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("doc-server.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        let served = Arc::new(Mutex::new(Served::default()));
        let router = Router::new().fallback(serve).with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            port,
            ca_file,
            served,
            _dir: dir,
            task,
        }
    }

    /// The URL of `path` on `localhost` (resolved through DNS by the server under test).
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn put(&self, path: &str, reply: Reply) {
        self.served
            .lock()
            .unwrap()
            .replies
            .insert(path.to_owned(), reply);
    }

    /// A valid document for `path` whose client id is its own URL.
    fn document(&self, path: &str) -> Value {
        json!({
            "client_id": self.url(path),
            "client_name": "Friendly MCP Client",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        })
    }

    fn hits(&self, path: &str) -> usize {
        self.served
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve(State(served): State<Arc<Mutex<Served>>>, uri: Uri) -> Response {
    let reply = {
        let mut s = served.lock().unwrap();
        *s.hits.entry(uri.path().to_owned()).or_default() += 1;
        s.replies.get(uri.path()).cloned()
    };
    let Some(reply) = reply else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tokio::time::sleep(reply.delay).await;
    let body = if reply.chunked {
        let chunks: Vec<Result<Bytes, std::convert::Infallible>> = reply
            .body
            .chunks(1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    if let Some(cc) = reply.cache_control {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    }
    if let Some(loc) = reply.location {
        h.insert(header::LOCATION, HeaderValue::from_str(&loc).unwrap());
    }
    response
}

/// The server under test, trusting the document server and allowed to reach loopback.
async fn spawn_trusting(
    backend: Backend,
    docs: &DocServer,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let ca = docs.ca_file.clone();
    spawn_with(backend, move |c| {
        c.registration.max_scopes = vec!["contacts.read".into(), "tickets.read".into()];
        let d = &mut c.client_metadata_documents;
        d.allow_private_addresses = true;
        d.extra_root_certificates = vec![ca];
        d.timeout_ms = 4000;
        adjust(c);
    })
    .await
}

fn query<'a>(
    client_id: &'a str,
    redirect_uri: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", "contacts.read"),
        ("state", "st-doc"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("resource", CRM),
    ]
}

/// Starts an authorization for `client_id` and returns the page the browser gets.
async fn start(app: &TestApp, client_id: &str, redirect_uri: &str) -> Page {
    let (_, challenge) = pkce();
    Browser::default()
        .authorize(app, &query(client_id, redirect_uri, &challenge))
        .await
}

/// The request was refused with a page, and the browser was sent nowhere.
fn assert_refused_page(page: &Page, expect: &str, reason: &str) {
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "{reason}: {}",
        page.html
    );
    assert!(
        page.headers.get("location").is_none(),
        "{reason}: never redirect to an unverified client"
    );
    assert!(
        page.html.contains(expect),
        "{reason}: expected `{expect}` in:\n{}",
        page.html
    );
}

async fn full_code_flow_with_a_url_client_id(backend: Backend) {
    let docs = DocServer::start().await;
    let app = spawn_trusting(backend, &docs, |_| {}).await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["client_id_metadata_document_supported"], true);

    let path = "/oauth/client.json";
    let client_id = docs.url(path);
    docs.put(path, Reply::json(&docs.document(path)));

    let browser = Browser::default();
    let (verifier, challenge) = pkce();
    let page = browser
        .authorize(&app, &query(&client_id, REDIRECT, &challenge))
        .await;
    assert!(page.is_login(), "{}", page.html);
    let page = browser
        .login(&app, &page, "alice", "alice-demo-password")
        .await;
    assert!(page.is_consent(), "{}", page.html);
    assert!(page.html.contains("Friendly MCP Client"), "{}", page.html);
    assert!(page.html.contains("Unverified"), "{}", page.html);
    assert!(
        page.html
            .contains("you will be sent to <strong>mcp-client.example.com</strong>"),
        "the redirect host is shown: {}",
        page.html
    );
    assert!(page.html.contains("self-asserted"), "{}", page.html);

    let done = browser.consent(&app, &page, Some(&["contacts.read"])).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (base, params) = location_params(&done.headers);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&params, "state"), Some("st-doc"));
    let code = param(&params, "code").unwrap().to_owned();

    let (status, _, tokens) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &client_id),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
                ("resource", CRM),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = app.verify(s(&tokens["access_token"])).await;
    assert_eq!(claims.client_id, client_id);
    assert_eq!(claims.scope.to_string(), "contacts.read");
    let info = app.introspect(s(&tokens["access_token"])).await;
    assert_eq!(info["active"], true, "{info}");

    let (status, _, refreshed) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", s(&tokens["refresh_token"])),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");

    let stored = app
        .store
        .registered_client(&client_id)
        .await
        .unwrap()
        .expect("kept as a registration");
    assert_eq!(
        stored.registration.origin,
        RegistrationOrigin::MetadataDocument
    );
    assert!(stored.registration.registration_token_hash.is_none());
    assert!(stored.registration.first_used_at.is_some(), "used");
    assert!(stored.agent.tenant_id.is_none(), "any tenant may consent");
    assert_eq!(stored.agent.name, "Friendly MCP Client");
    assert_eq!(
        docs.hits(path),
        1,
        "fetched once: the default cache lifetime covers the whole flow"
    );

    // The same client authenticating with a secret it does not have is refused.
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("client_secret", "guess-0123456789abcdef0123456789abcdef"),
                ("refresh_token", "x"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

async fn unusable_documents_are_refused_without_redirecting(backend: Backend) {
    let docs = DocServer::start().await;
    let app = spawn_trusting(backend, &docs, |_| {}).await;

    let mismatch = "/mismatch.json";
    let mut doc = docs.document(mismatch);
    doc["client_id"] = json!(docs.url("/someone-else.json"));
    docs.put(mismatch, Reply::json(&doc));

    let secret = "/secret.json";
    let mut doc = docs.document(secret);
    doc["client_secret"] = json!("shh-0123456789abcdef0123456789abcdef");
    docs.put(secret, Reply::json(&doc));

    let html = "/html.json";
    let mut reply = Reply::json(&docs.document(html));
    reply.content_type = "text/html";
    docs.put(html, reply);

    let garbage = "/garbage.json";
    let mut reply = Reply::json(&json!({}));
    reply.body = b"{not json".to_vec();
    docs.put(garbage, reply);

    let bad_redirect = "/bad-redirect.json";
    let mut doc = docs.document(bad_redirect);
    doc["redirect_uris"] = json!(["javascript:alert(1)"]);
    docs.put(bad_redirect, Reply::json(&doc));

    let missing = "/missing.json";

    let cases: &[(&str, &str, &str)] = &[
        (
            mismatch,
            "not its own URL",
            "document client_id differs from its URL",
        ),
        (
            secret,
            "must not contain a client secret",
            "document carries a secret",
        ),
        (html, "not a JSON object", "served as text/html"),
        (garbage, "not a JSON object", "body is not JSON"),
        (
            bad_redirect,
            "redirect",
            "hostile redirect URI in the document",
        ),
        (missing, "did not answer 200 OK", "404"),
    ];
    for (path, expect, reason) in cases {
        let page = start(&app, &docs.url(path), REDIRECT).await;
        assert_refused_page(&page, expect, reason);
    }

    // A valid document, but the request names a redirect URI it does not list.
    let good = "/good.json";
    docs.put(good, Reply::json(&docs.document(good)));
    let page = start(&app, &docs.url(good), "https://attacker.example.net/cb").await;
    assert_refused_page(
        &page,
        "redirect_uri is not registered",
        "unlisted redirect_uri",
    );

    // Malformed URL client ids are refused before any fetch.
    for bad in [
        format!("https://localhost:{}/c.json?x=1", docs.port),
        format!("https://localhost:{}/", docs.port),
        format!("https://LOCALHOST:{}/c.json", docs.port),
    ] {
        let page = start(&app, &bad, REDIRECT).await;
        assert_refused_page(&page, "client_id URL", &bad);
    }

    // At the token endpoint an unusable document is `invalid_client`.
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &docs.url(mismatch)),
                ("code", "x"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &"v".repeat(43)),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        s(&body["error_description"]).contains("not its own URL"),
        "{body}"
    );
    assert!(
        app.store
            .registered_client(&docs.url(mismatch))
            .await
            .unwrap()
            .is_none(),
        "nothing stored for a refused document"
    );
}

async fn oversized_slow_and_redirecting_hosts_are_refused(backend: Backend) {
    let docs = DocServer::start().await;
    let app = spawn_trusting(backend, &docs, |c| {
        c.client_metadata_documents.timeout_ms = 500;
    })
    .await;

    let big = "/big.json";
    let mut doc = docs.document(big);
    doc["padding"] = json!("x".repeat(6 * 1024));
    docs.put(big, Reply::json(&doc));
    let page = start(&app, &docs.url(big), REDIRECT).await;
    assert_refused_page(&page, "larger than", "Content-Length over the limit");

    let streamed = "/streamed.json";
    let mut doc = docs.document(streamed);
    doc["padding"] = json!("x".repeat(64 * 1024));
    let mut reply = Reply::json(&doc);
    reply.chunked = true;
    docs.put(streamed, reply);
    let page = start(&app, &docs.url(streamed), REDIRECT).await;
    assert_refused_page(&page, "larger than", "chunked body over the limit");

    let slow = "/slow.json";
    let mut reply = Reply::json(&docs.document(slow));
    reply.delay = Duration::from_secs(10);
    docs.put(slow, reply);
    let started = Instant::now();
    let page = start(&app, &docs.url(slow), REDIRECT).await;
    assert_refused_page(&page, "took too long", "slow host");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "gave up after the timeout, not after the host: {:?}",
        started.elapsed()
    );

    let target = "/target.json";
    docs.put(target, Reply::json(&docs.document(target)));
    let moved = "/moved.json";
    let mut reply = Reply::json(&json!({}));
    reply.status = 302;
    reply.location = Some(docs.url(target));
    docs.put(moved, reply);
    let page = start(&app, &docs.url(moved), REDIRECT).await;
    assert_refused_page(&page, "redirect", "3xx");
    assert_eq!(docs.hits(moved), 1);
    assert_eq!(docs.hits(target), 0, "the redirect was not followed");

    // Failures are remembered briefly: asking again does not fetch again.
    let page = start(&app, &docs.url(moved), REDIRECT).await;
    assert_refused_page(&page, "redirect", "3xx, cached");
    assert_eq!(docs.hits(moved), 1, "negative cache");
}

async fn private_and_loopback_addresses_are_refused(backend: Backend) {
    let docs = DocServer::start().await;
    let path = "/client.json";
    docs.put(path, Reply::json(&docs.document(path)));
    // The default: only public addresses may be fetched.
    let app = spawn_trusting(backend, &docs, |c| {
        c.client_metadata_documents.allow_private_addresses = false;
    })
    .await;
    let literal = format!("https://127.0.0.1:{}{path}", docs.port);
    for url in [docs.url(path), literal] {
        let page = start(&app, &url, REDIRECT).await;
        assert_refused_page(&page, "may not be fetched", &url);
    }
    assert_eq!(docs.hits(path), 0, "no request reached the loopback host");
    // Refused before any connection is attempted, whatever allow_private says for these.
    for url in [
        "https://10.0.0.1/client.json",
        "https://192.168.1.1/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:a9fe:a9fe]/client.json",
        "https://[fe80::1]/client.json",
        "https://0.0.0.0/client.json",
    ] {
        let page = start(&app, url, REDIRECT).await;
        assert_refused_page(&page, "may not be fetched", url);
    }
    let (status, _, body) = app
        .post_form(
            "/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "https://169.254.169.254/latest/meta-data"),
                ("refresh_token", "x"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    drop(app);

    // allow_private admits loopback and private ranges, never link-local.
    let app = spawn_trusting(backend, &docs, |_| {}).await;
    for url in [
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/client.json",
    ] {
        let page = start(&app, url, REDIRECT).await;
        assert_refused_page(&page, "may not be fetched", url);
    }
    let page = start(&app, &docs.url(path), REDIRECT).await;
    assert!(page.is_login(), "loopback allowed here: {}", page.html);
}

async fn cache_control_decides_when_to_fetch_again(backend: Backend) {
    let docs = DocServer::start().await;
    let app = spawn_trusting(backend, &docs, |_| {}).await;

    let cached = "/cached.json";
    let mut reply = Reply::json(&docs.document(cached));
    reply.cache_control = Some("public, max-age=300");
    docs.put(cached, reply);
    for _ in 0..3 {
        let page = start(&app, &docs.url(cached), REDIRECT).await;
        assert!(page.is_login(), "{}", page.html);
    }
    assert_eq!(docs.hits(cached), 1, "reused within max-age");

    let uncached = "/uncached.json";
    let mut reply = Reply::json(&docs.document(uncached));
    reply.cache_control = Some("no-store");
    docs.put(uncached, reply);
    for _ in 0..2 {
        let page = start(&app, &docs.url(uncached), REDIRECT).await;
        assert!(page.is_login(), "{}", page.html);
    }
    assert_eq!(docs.hits(uncached), 2, "no-store: fetched every time");

    // A changed document is followed on the next fetch.
    let mut doc = docs.document(uncached);
    doc["client_name"] = json!("Renamed Client");
    let mut reply = Reply::json(&doc);
    reply.cache_control = Some("no-store");
    docs.put(uncached, reply);
    let page = start(&app, &docs.url(uncached), REDIRECT).await;
    assert!(page.is_login(), "{}", page.html);
    let stored = app
        .store
        .registered_client(&docs.url(uncached))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.agent.name, "Renamed Client");
}

async fn disabled_means_url_client_ids_are_unknown(backend: Backend) {
    let docs = DocServer::start().await;
    let path = "/client.json";
    docs.put(path, Reply::json(&docs.document(path)));
    let app = spawn_trusting(backend, &docs, |c| {
        c.client_metadata_documents.enabled = false;
    })
    .await;
    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert!(
        meta.get("client_id_metadata_document_supported").is_none(),
        "{meta}"
    );
    let page = start(&app, &docs.url(path), REDIRECT).await;
    assert_refused_page(&page, "not registered", "feature off");
    assert_eq!(docs.hits(path), 0);
}

async fn private_key_jwt_with_keys_from_the_document(backend: Backend) {
    use crate::registration::{client_key, sign};
    let docs = DocServer::start().await;
    let app = spawn_trusting(backend, &docs, |_| {}).await;
    let (pair, jwk) = client_key();
    let path = "/keyed.json";
    let client_id = docs.url(path);
    let mut doc = docs.document(path);
    doc["token_endpoint_auth_method"] = json!("private_key_jwt");
    doc["jwks"] = json!({ "keys": [jwk] });
    docs.put(path, Reply::json(&doc));

    let now = app.now().unix();
    let assertion = |jti: &str| {
        sign(
            &pair,
            &json!({ "iss": client_id, "sub": client_id, "aud": app.issuer, "exp": now + 60, "iat": now, "jti": jti }),
        )
    };
    let revoke = |assertion: String| {
        let app = &app;
        async move {
            let (status, _, body) = app
                .post_form(
                    "/revoke",
                    None,
                    &[
                        ("token", "not-a-token"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &assertion),
                    ],
                )
                .await;
            (status, body)
        }
    };
    let good = assertion("jti-1");
    let (status, body) = revoke(good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = revoke(good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "replayed: {body}");
    let (other, _) = client_key();
    let forged = sign(
        &other,
        &json!({ "iss": client_id, "sub": client_id, "aud": app.issuer, "exp": now + 60, "jti": "jti-2" }),
    );
    let (status, _) = revoke(forged).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a key the document does not list"
    );
    // Without an assertion the client cannot authenticate at all.
    let (status, _, body) = app
        .post_form(
            "/revoke",
            None,
            &[("token", "x"), ("client_id", &client_id)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(docs.hits(path), 1);
}
