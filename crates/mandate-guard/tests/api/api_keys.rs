//! Migration mode: raw Mandate API keys presented as bearer tokens, checked by introspection at
//! the real server, cached briefly, refused once revoked on the feed even while cached.

use crate::helpers::*;
use axum::Json;
use axum::extract::Request;
use mandate_core::api_key::{self, ApiKey, ApiKeyPolicy, NewApiKey};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::scope::ScopeSet;
use mandate_core::time::Clock;
use mandate_guard::proxy::{ProxyConfig, proxy_router};
use mandate_guard::{BearerError, Guard, GuardError};
use mandate_server::system::{OsEntropy, SystemClock};
use mandate_store::{EventFilter, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Creates a key in acme (for alice, or a tenant key) directly in the issuer's database, as
/// the CLI does.
async fn create_key(issuer: &Issuer, user: Option<&str>, scopes: &str) -> (ApiKey, Arc<dyn Store>) {
    let store = mandate_store::connect(&issuer.database_url).await.unwrap();
    let user_id = match user {
        Some(login) => Some(store.user_by_login(login).await.unwrap().unwrap().id),
        None => None,
    };
    let now = SystemClock.now();
    let created = api_key::create(
        NewApiKey {
            tenant_id: "acme".into(),
            user_id,
            name: "legacy sync".into(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            expires_at: now.plus_seconds(86_400),
        },
        &ApiKeyPolicy::default(),
        now,
        &OsEntropy::default(),
    )
    .unwrap();
    let mut event = NewEvent::new(now, Action::ApiKeyCreated, ActorKind::Admin);
    event.actor_id = Some("test".into());
    store.insert_api_key(&created.record, event).await.unwrap();
    (created.key, store)
}

/// A guard for the demo CRM in migration mode with the CRM's credential.
async fn key_guard(issuer: &Issuer, active_ttl: Duration) -> Guard {
    Guard::builder(&issuer.issuer, CRM)
        .clock(clock_now())
        .accept_api_keys(crm_credential(CRM_SECRET))
        .api_key_cache_ttl(active_ttl, Duration::from_secs(2))
        .build()
        .await
        .unwrap()
}

async fn key_uses(store: &Arc<dyn Store>) -> Vec<mandate_core::event::Event> {
    store
        .events(&EventFilter {
            action: Some("api_key.used".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_refused_unless_migration_mode_is_on() {
    let issuer = spawn_issuer().await;
    let (key, store) = create_key(&issuer, Some("alice"), "tickets.read").await;
    let guard = issuer.guard(clock_now()).await;
    let app = spawn_protected(&guard).await;
    for path in ["/me", "/tickets"] {
        let (status, challenge, body) = get_bearer(&format!("{app}{path}"), key.expose()).await;
        assert_eq!(status, 401, "{body}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert_eq!(body["error"], "invalid_token");
        assert!(!challenge.contains(key.expose()) && !body.to_string().contains(key.expose()));
    }
    assert!(
        key_uses(&store).await.is_empty(),
        "the issuer was never asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_mode_maps_a_key_to_a_principal_and_enforces_scopes() {
    let issuer = spawn_issuer().await;
    let (key, store) = create_key(&issuer, Some("alice"), "tickets.read contacts.read").await;
    let alice = store.user_by_login("alice").await.unwrap().unwrap();
    let id = key.id();
    let guard = key_guard(&issuer, Duration::from_secs(5)).await;

    let principal = guard.validate_token(key.expose()).await.unwrap();
    assert_eq!(principal.api_key_id.as_deref(), Some(id.as_str()));
    assert_eq!(principal.grant_id, id.as_str());
    assert_eq!(principal.client_id, id.as_str());
    assert_eq!(principal.subject, alice.id);
    assert_eq!(principal.tenant, "acme");
    assert_eq!(principal.scopes.to_string(), "contacts.read tickets.read");
    assert!(principal.act.is_none());

    // The use was recorded at the issuer, by key id.
    let stored = store.api_key(&id, None).await.unwrap().unwrap();
    assert!(stored.record.last_used_at.is_some());
    let uses = key_uses(&store).await;
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].event.grant_id.as_deref(), Some(id.as_str()));
    assert_eq!(uses[0].event.detail["aud"], CRM);

    // Over HTTP: the scope requirement applies as for tokens.
    let app = spawn_protected(&guard).await;
    let (status, _, body) = get_bearer(&format!("{app}/tickets"), key.expose()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["grant_id"], id.as_str());
    assert_eq!(body["scopes"], "contacts.read tickets.read");
    let (status, challenge, body) = get_bearer(&format!("{app}/billing"), key.expose()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(body["error"], "insufficient_scope");

    // Cached: repeated uses within the cache time do not ask again.
    assert_eq!(key_uses(&store).await.len(), 1, "answers are cached");

    // A typo is refused locally; an unknown key by the issuer.
    let mut typo = key.expose().to_owned().into_bytes();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = ApiKey::generate(&OsEntropy::default());
    for bad in [typo.as_str(), unknown.expose(), "mk_garbage"] {
        let (status, challenge, _) = get_bearer(&format!("{app}/me"), bad).await;
        assert_eq!(status, 401);
        assert!(challenge.contains("invalid_token") && !challenge.contains(bad));
    }

    // A tenant key: the key is its own subject.
    let (tenant_key, _) = create_key(&issuer, None, "tickets.read").await;
    let p = guard.validate_token(tenant_key.expose()).await.unwrap();
    assert_eq!(p.subject, tenant_key.id().as_str());
    assert_eq!(p.api_key_id.as_deref(), Some(tenant_key.id().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_within_a_second_although_cached() {
    let issuer = spawn_issuer().await;
    let (key, store) = create_key(&issuer, Some("alice"), "tickets.read").await;
    let (other, _) = create_key(&issuer, Some("alice"), "tickets.read").await;
    // An answer cached for a minute: only the feed can end it in time.
    let guard = key_guard(&issuer, Duration::from_secs(60)).await;
    let feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    assert!(feed.wait_connected(Duration::from_secs(5)).await);
    guard.validate_token(key.expose()).await.unwrap();
    guard.validate_token(other.expose()).await.unwrap();

    let mut event = NewEvent::new(SystemClock.now(), Action::ApiKeyRevoked, ActorKind::Admin);
    event.actor_id = Some("test".into());
    assert!(
        store
            .revoke_api_key(&key.id(), None, "leaked", event)
            .await
            .unwrap()
    );
    let started = Instant::now();
    loop {
        match guard.validate_token(key.expose()).await {
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "still accepted after 5 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                assert!(matches!(e, BearerError::InvalidToken(_)), "{e:?}");
                break;
            }
        }
    }
    let took = started.elapsed();
    eprintln!("API key revocation refused at the guard after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "key revocation took {took:?}"
    );
    assert!(
        guard.validate_token(other.expose()).await.is_ok(),
        "only that key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_refuses_keys_fail_closed() {
    let issuer = spawn_issuer().await;
    let (key, _) = create_key(&issuer, None, "tickets.read").await;
    // Nothing cached: every use asks.
    let guard = key_guard(&issuer, Duration::ZERO).await;
    guard.validate_token(key.expose()).await.unwrap();
    drop(issuer);
    let started = Instant::now();
    let refusal = loop {
        match guard.validate_token(key.expose()).await {
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "still accepted"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        refusal,
        BearerError::InvalidToken("the API key cannot be checked right now")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_mode_needs_an_introspection_endpoint() {
    let fake = spawn_fake_issuer(None).await;
    fake.publish(&new_key("k1"));
    let err = Guard::builder(&fake.issuer, CRM)
        .accept_api_keys(crm_credential(CRM_SECRET))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, GuardError::NoIntrospectionEndpoint(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_forwards_the_key_id_never_the_key() {
    let issuer = spawn_issuer().await;
    let (key, _) = create_key(&issuer, Some("alice"), "tickets.read").await;
    let upstream = {
        let app = axum::Router::new().fallback(|req: Request| async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                .collect();
            Json(json!({ "headers": headers }))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    };
    let routes = "[[routes]]\npath = \"/tickets\"\nscopes = [\"tickets.read\"]\n\n[[routes]]\npath = \"/billing\"\nscopes = [\"billing.read\"]\n";
    let guard = key_guard(&issuer, Duration::from_secs(5)).await;
    let router = proxy_router(guard, &upstream, ProxyConfig::from_toml(routes).unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{proxy}/tickets"))
        .bearer_auth(key.expose())
        .header("x-mandate-api-key-id", "mkid_spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-mandate-api-key-id"], key.id().as_str());
    assert_eq!(h["x-mandate-tenant"], "acme");
    assert!(h.get("authorization").is_none(), "the key is not forwarded");
    assert!(!seen.to_string().contains(key.expose()));

    let resp = http
        .get(format!("{proxy}/billing"))
        .bearer_auth(key.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_feed_is_down_cached_keys_are_asked_about_again() {
    let issuer = spawn_issuer().await;
    let (key, store) = create_key(&issuer, Some("alice"), "tickets.read").await;
    let clock = clock_now();
    // A feed that never connects, and a long cache: only the fallback can catch a revocation.
    let guard = Guard::builder(&issuer.issuer, CRM)
        .clock(clock.clone())
        .revocation_feed_endpoint("http://127.0.0.1:1/revocations")
        .feed_grace(Duration::from_secs(1))
        .accept_api_keys(crm_credential(CRM_SECRET))
        .api_key_cache_ttl(Duration::from_secs(60), Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let _feed = guard
        .follow_revocations(crm_credential(CRM_SECRET))
        .unwrap();
    guard.validate_token(key.expose()).await.unwrap();
    guard.validate_token(key.expose()).await.unwrap();
    assert_eq!(key_uses(&store).await.len(), 1, "within the grace: cached");

    clock.advance(2);
    guard.validate_token(key.expose()).await.unwrap();
    assert_eq!(
        key_uses(&store).await.len(),
        2,
        "past the grace: asked again"
    );
    let mut event = NewEvent::new(SystemClock.now(), Action::ApiKeyRevoked, ActorKind::Admin);
    event.actor_id = Some("test".into());
    store
        .revoke_api_key(&key.id(), None, "leaked", event)
        .await
        .unwrap();
    assert_eq!(
        guard.validate_token(key.expose()).await.unwrap_err(),
        BearerError::InvalidToken("the API key is not active"),
        "refused at once although the feed never told"
    );
}
