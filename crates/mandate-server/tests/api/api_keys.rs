//! Scoped API keys exchanged for short-lived access tokens (RFC 8693 with the Mandate key
//! token type), without client authentication: the claims, narrowing, refusals, revocation at
//! introspection, rotation with its overlap window, expiry, last use, and no key in events.
//! Also migration mode: a resource server introspecting a raw key.

use crate::helpers::*;
use mandate_core::api_key::{self, ApiKey, ApiKeyPolicy, NewApiKey};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::scope::ScopeSet;
use mandate_store::EventFilter;
use reqwest::StatusCode;
use serde_json::Value;

crate::backend_tests!(
    a_key_is_exchanged_for_a_narrow_token_without_client_authentication,
    bad_keys_and_wide_scopes_are_refused,
    revoking_a_key_refuses_it_and_ends_its_tokens,
    a_rotated_key_works_only_within_the_overlap,
    an_expired_key_is_refused,
    a_resource_server_introspects_a_raw_key,
    only_usable_keys_are_active_at_introspection,
);

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const KEY_TYPE: &str = "urn:mandate:params:oauth:token-type:api_key";

/// Creates a key in acme through the store, as the CLI does.
pub(crate) async fn create_key(
    app: &TestApp,
    user: Option<&str>,
    scopes: &str,
    lifetime: u64,
) -> ApiKey {
    let user_id = match user {
        Some(login) => Some(app.store.user_by_login(login).await.unwrap().unwrap().id),
        None => None,
    };
    let created = api_key::create(
        NewApiKey {
            tenant_id: "acme".into(),
            user_id,
            name: "sync job".into(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            expires_at: app.now().plus_seconds(lifetime),
        },
        &ApiKeyPolicy::default(),
        app.now(),
        &mandate_server::system::OsEntropy::default(),
    )
    .unwrap();
    let mut event = NewEvent::new(app.now(), Action::ApiKeyCreated, ActorKind::Admin);
    event.actor_id = Some("test".into());
    app.store
        .insert_api_key(&created.record, event)
        .await
        .unwrap();
    created.key
}

/// Rotates `old` through the store, as the CLI does, with the default policy; the successor
/// and when `old` stops working.
pub(crate) async fn rotate(app: &TestApp, old: &ApiKey) -> (ApiKey, mandate_core::time::Timestamp) {
    let stored = app.store.api_key(&old.id(), None).await.unwrap().unwrap();
    let rotation = api_key::rotate(
        &stored.record,
        app.now().plus_seconds(30 * 86_400),
        &ApiKeyPolicy::default(),
        app.now(),
        &mandate_server::system::OsEntropy::default(),
    )
    .unwrap();
    let mut event = NewEvent::new(app.now(), Action::ApiKeyRotated, ActorKind::Admin);
    event.actor_id = Some("test".into());
    let outcome = app
        .store
        .rotate_api_key(
            &old.id(),
            &rotation.successor.record,
            rotation.predecessor_expires_at,
            event,
        )
        .await
        .unwrap();
    assert_eq!(outcome, mandate_store::ApiKeyRotation::Rotated);
    (rotation.successor.key, rotation.predecessor_expires_at)
}

pub(crate) async fn exchange_key(
    app: &TestApp,
    key: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut pairs = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", key),
        ("subject_token_type", KEY_TYPE),
    ];
    pairs.extend_from_slice(extra);
    let (status, headers, body) = app.post_form("/token", None, &pairs).await;
    if status == StatusCode::OK {
        assert_eq!(headers["cache-control"], "no-store");
    }
    (status, body)
}

async fn token_for(app: &TestApp, key: &str) -> String {
    let (status, body) = exchange_key(app, key, &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn all_events_json(app: &TestApp) -> String {
    let events = app
        .store
        .events(&EventFilter {
            limit: 10_000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    serde_json::to_string(&events).unwrap()
}

async fn a_key_is_exchanged_for_a_narrow_token_without_client_authentication(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let key = create_key(&app, Some("alice"), "contacts.read tickets.read", 86_400).await;
    let id = key.id();
    assert!(
        app.store
            .api_key(&id, None)
            .await
            .unwrap()
            .unwrap()
            .record
            .last_used_at
            .is_none()
    );

    app.advance(10);
    let (status, body) = exchange_key(
        &app,
        key.expose(),
        &[("resource", CRM), ("scope", "tickets.read")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "tickets.read");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();
    let claims = app.verify(token).await;
    assert_eq!(claims.sub, alice.id);
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.aud, CRM);
    assert_eq!(claims.client_id, id.as_str());
    assert_eq!(claims.gid, id.as_str());
    assert_eq!(claims.scope.to_string(), "tickets.read");
    assert!(claims.act.is_none());

    // Without a scope: everything the key has that the audience accepts.
    let (_, all) = exchange_key(&app, key.expose(), &[("resource", CRM)]).await;
    assert_eq!(all["scope"], "contacts.read tickets.read");

    // A tenant key's tokens have the key itself as subject.
    let tenant_key = create_key(&app, None, "billing.read", 3600).await;
    let claims = app
        .verify(&token_for(&app, tenant_key.expose()).await)
        .await;
    assert_eq!(claims.sub, tenant_key.id().as_str());
    assert_eq!(claims.scope.to_string(), "billing.read");
    let (_, capped) = exchange_key(&app, tenant_key.expose(), &[("resource", CRM)]).await;
    assert_eq!(capped["expires_in"], 900, "well within the key's hour");

    // Introspection: active, issued to the key.
    let intro = app.introspect(token).await;
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["client_id"], id.as_str());
    assert_eq!(intro["sub"], alice.id.as_str());
    assert_eq!(intro["gid"], id.as_str());

    // Last use recorded; the use recorded as an event with the key id; the key nowhere.
    let stored = app.store.api_key(&id, None).await.unwrap().unwrap();
    assert_eq!(stored.record.last_used_at, Some(app.now()));
    let events = app.events_of("token.exchanged").await;
    let used = events
        .iter()
        .find(|e| e.event.detail["api_key_id"] == id.as_str())
        .expect("an exchange event naming the key id");
    assert_eq!(used.event.grant_id.as_deref(), Some(id.as_str()));
    assert_eq!(used.event.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(used.event.detail["aud"], CRM);
    assert_eq!(used.event.detail["jti"], claims_jti(&app, token).await);
    let log = all_events_json(&app).await;
    assert!(log.contains(id.as_str()));
    assert!(!log.contains(key.expose()), "the key leaked into an event");
    assert!(!log.contains(tenant_key.expose()));
    let body_of_key = &key.expose()[3..46];
    assert!(
        !log.contains(body_of_key),
        "part of the key leaked into an event"
    );

    // A client that does authenticate may present a key too; the event names it.
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", SVC_SECRET)),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", key.expose()),
                ("subject_token_type", KEY_TYPE),
                ("resource", CRM),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = app.verify(body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims.client_id, id.as_str());
    // Wrong client credentials are still refused.
    let (status, _, body) = app
        .post_form(
            "/token",
            Some(("svc-agent", "wrong-secret-0123456789abcdef0123456789")),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", key.expose()),
                ("subject_token_type", KEY_TYPE),
                ("resource", CRM),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn claims_jti(app: &TestApp, token: &str) -> String {
    app.verify(token).await.jti
}

async fn bad_keys_and_wide_scopes_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = create_key(&app, Some("alice"), "contacts.read", 86_400).await;
    let k = key.expose();

    let (status, body) =
        exchange_key(&app, k, &[("resource", CRM), ("scope", "contacts.write")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope", "{body}");
    let (_, body) = exchange_key(
        &app,
        k,
        &[("resource", CRM), ("scope", "contacts.read billing.read")],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope", "{body}");

    // The audience must be given and registered.
    let (_, body) = exchange_key(&app, k, &[("resource", "https://unknown.example")]).await;
    assert_eq!(body["error"], "invalid_target", "{body}");
    let (_, body) = exchange_key(&app, k, &[]).await;
    assert_eq!(
        body["error"], "invalid_target",
        "resource is required: {body}"
    );

    // One character changed in the body: the checksum no longer matches.
    let mut typo = k.to_owned().into_bytes();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    // A well-formed key (valid checksum) that was never issued.
    let unknown = ApiKey::generate(&mandate_server::system::OsEntropy::default());
    for (bad, why) in [
        (typo.as_str(), "bad checksum"),
        ("mk_garbage", "garbage"),
        (&k[..k.len() - 1], "truncated"),
        (unknown.expose(), "unknown key"),
    ] {
        let (status, body) = exchange_key(&app, bad, &[("resource", CRM)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{why}: {body}");
    }
    // Still works after all that.
    token_for(&app, k).await;
}

async fn revoking_a_key_refuses_it_and_ends_its_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = create_key(&app, Some("alice"), "contacts.read", 86_400).await;
    let other = create_key(&app, Some("alice"), "contacts.read", 86_400).await;
    let token = token_for(&app, key.expose()).await;
    let other_token = token_for(&app, other.expose()).await;
    assert_eq!(app.introspect(&token).await["active"], true);

    let mut event = NewEvent::new(app.now(), Action::ApiKeyRevoked, ActorKind::Admin);
    event.actor_id = Some("test".into());
    assert!(
        app.store
            .revoke_api_key(&key.id(), None, "leaked", event)
            .await
            .unwrap()
    );

    let (status, body) = exchange_key(&app, key.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let intro = app.introspect(&token).await;
    assert_eq!(intro["active"], false, "{intro}");
    // Only that key: the other key and its token keep working.
    assert_eq!(app.introspect(&other_token).await["active"], true);
    token_for(&app, other.expose()).await;

    // The revocation feed's source event names the key id as the grant.
    let revoked = app.events_of("api_key.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].event.grant_id.as_deref(),
        Some(key.id().as_str())
    );
}

async fn a_rotated_key_works_only_within_the_overlap(backend: Backend) {
    let app = spawn_app(backend).await;
    let policy = ApiKeyPolicy::default();
    let old = create_key(&app, Some("alice"), "contacts.read", 30 * 86_400).await;
    let old_token = token_for(&app, old.expose()).await;
    assert_eq!(app.introspect(&old_token).await["active"], true);
    let (new, predecessor_expires_at) = rotate(&app, &old).await;

    // Within the overlap both work, and the new token is the new key's.
    app.advance(policy.rotation_overlap_seconds - 60);
    token_for(&app, old.expose()).await;
    let claims = app.verify(&token_for(&app, new.expose()).await).await;
    assert_eq!(claims.gid, new.id().as_str());

    // After it, only the new key does, and the old key's tokens are inactive.
    app.advance(60);
    let (status, body) = exchange_key(&app, old.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let fresh = token_for(&app, new.expose()).await;
    assert_eq!(app.introspect(&fresh).await["active"], true);
    let old_stored = app.store.api_key(&old.id(), None).await.unwrap().unwrap();
    assert_eq!(old_stored.record.expires_at, predecessor_expires_at);
    assert_eq!(old_stored.replaced_by, Some(new.id()));
}

async fn an_expired_key_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = create_key(&app, None, "tickets.read", 600).await;
    let (_, body) = exchange_key(&app, key.expose(), &[("resource", CRM)]).await;
    assert_eq!(
        body["expires_in"], 600,
        "capped at the key's expiry: {body}"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    app.advance(599);
    assert_eq!(app.introspect(&token).await["active"], true);
    app.advance(1);
    let (status, body) = exchange_key(&app, key.expose(), &[("resource", CRM)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

/// The demo CRM's own credential (a resource server, not an agent).
const CRM_ID: &str = "demo-crm";
const CRM_SECRET: &str = "demo-crm-resource-secret-0123456789abcdef";
/// A second resource that accepts only billing scopes.
const LEDGER: &str = "http://127.0.0.1:9090";
const LEDGER_ID: &str = "ledger-rs";
const LEDGER_SECRET: &str = "ledger-resource-secret-0123456789abcdef0";

/// Introspects `token` with the given credential; the answer must be a `200` with `no-store`.
async fn introspect_as(
    app: &TestApp,
    credential: (&str, &str),
    token: &str,
    hint: Option<&str>,
) -> Value {
    let mut pairs = vec![("token", token)];
    if let Some(hint) = hint {
        pairs.push(("token_type_hint", hint));
    }
    let (status, headers, body) = app.post_form("/introspect", Some(credential), &pairs).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    body
}

async fn key_uses(app: &TestApp) -> Vec<mandate_core::event::Event> {
    app.events_of("api_key.used").await
}

/// The demo configuration plus [`LEDGER`], so a key can meet a resource that accepts none of
/// its scopes.
async fn spawn_with_ledger(backend: Backend) -> TestApp {
    spawn_with(backend, |config| {
        config.resources.push(
            serde_json::from_value(serde_json::json!({
                "identifier": LEDGER,
                "name": "Ledger",
                "scopes": ["billing.read"],
                "client_id": LEDGER_ID,
                "secret": LEDGER_SECRET,
            }))
            .unwrap(),
        );
    })
    .await
}

async fn a_resource_server_introspects_a_raw_key(backend: Backend) {
    let app = spawn_with_ledger(backend).await;
    let alice = app.store.user_by_login("alice").await.unwrap().unwrap();
    let created_at = app.now();
    let key = create_key(&app, Some("alice"), "contacts.read tickets.read", 86_400).await;
    let id = key.id();
    app.advance(10);

    // A resource server: active, described like a token obtained by exchanging the key.
    let body = introspect_as(
        &app,
        (CRM_ID, CRM_SECRET),
        key.expose(),
        Some("mandate_api_key"),
    )
    .await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], "contacts.read tickets.read");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["sub"], alice.id.as_str());
    assert_eq!(body["client_id"], id.as_str());
    assert_eq!(body["gid"], id.as_str());
    assert_eq!(body["aud"], CRM);
    assert_eq!(body["iss"], app.issuer.as_str());
    assert_eq!(body["token_type"], "mandate_api_key");
    assert_eq!(body["iat"], created_at.unix());
    assert_eq!(body["exp"], created_at.plus_seconds(86_400).unix());
    assert!(body.get("act").is_none() && body.get("jti").is_none());

    // The use is recorded: last use, and an event naming key, resource and tenant.
    let stored = app.store.api_key(&id, None).await.unwrap().unwrap();
    assert_eq!(stored.record.last_used_at, Some(app.now()));
    let uses = key_uses(&app).await;
    assert_eq!(uses.len(), 1);
    let used = &uses[0].event;
    assert_eq!(used.grant_id.as_deref(), Some(id.as_str()));
    assert_eq!(used.tenant_id.as_deref(), Some("acme"));
    assert_eq!(used.user_id.as_deref(), Some(alice.id.as_str()));
    assert_eq!(used.scopes.as_deref(), Some("contacts.read tickets.read"));
    assert_eq!(used.detail["api_key_id"], id.as_str());
    assert_eq!(used.detail["aud"], CRM);
    assert_eq!(used.detail["resource_client_id"], CRM_ID);

    // The hint is optional.
    app.advance(5);
    let body = introspect_as(&app, (CRM_ID, CRM_SECRET), key.expose(), None).await;
    assert_eq!(body["active"], true, "{body}");
    let stored = app.store.api_key(&id, None).await.unwrap().unwrap();
    assert_eq!(stored.record.last_used_at, Some(app.now()));
    assert_eq!(key_uses(&app).await.len(), 2);

    // A tenant key has itself as subject, as its exchanged tokens do.
    let tenant_key = create_key(&app, None, "tickets.read", 3600).await;
    let body = introspect_as(&app, (CRM_ID, CRM_SECRET), tenant_key.expose(), None).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], tenant_key.id().as_str());
    assert_eq!(body["client_id"], tenant_key.id().as_str());

    // Only the scopes the calling resource accepts; none of them: inactive.
    let wide = create_key(&app, Some("alice"), "contacts.read billing.read", 3600).await;
    let body = introspect_as(&app, (LEDGER_ID, LEDGER_SECRET), wide.expose(), None).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["scope"], "billing.read");
    assert_eq!(body["aud"], LEDGER);
    let uses_before = key_uses(&app).await.len();
    let body = introspect_as(&app, (LEDGER_ID, LEDGER_SECRET), key.expose(), None).await;
    assert_eq!(
        body,
        serde_json::json!({"active": false}),
        "no billing scope"
    );

    // An agent may not introspect raw keys, even a confidential one of the key's tenant.
    let body = introspect_as(&app, ("svc-agent", SVC_SECRET), key.expose(), None).await;
    assert_eq!(body, serde_json::json!({"active": false}));

    // Typos, truncations and unknown keys are inactive.
    let mut typo = key.expose().to_owned().into_bytes();
    typo[10] = if typo[10] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = ApiKey::generate(&mandate_server::system::OsEntropy::default());
    let k = key.expose();
    for (bad, why) in [
        (typo.as_str(), "bad checksum"),
        (&k[..k.len() - 1], "truncated"),
        ("mk_garbage", "garbage"),
        (unknown.expose(), "unknown"),
    ] {
        let body = introspect_as(&app, (CRM_ID, CRM_SECRET), bad, Some("mandate_api_key")).await;
        assert_eq!(body, serde_json::json!({"active": false}), "{why}");
    }
    assert_eq!(
        key_uses(&app).await.len(),
        uses_before,
        "refusals are not uses"
    );

    // The key itself appears in no event.
    let log = all_events_json(&app).await;
    for k in [&key, &tenant_key, &wide] {
        assert!(!log.contains(k.expose()), "a key leaked into an event");
        assert!(!log.contains(&k.expose()[3..46]), "part of a key leaked");
    }
}

async fn only_usable_keys_are_active_at_introspection(backend: Backend) {
    let app = spawn_app(backend).await;
    let active = |body: &Value| body["active"] == true;
    let crm = (CRM_ID, CRM_SECRET);

    // Revoked.
    let revoked = create_key(&app, Some("alice"), "contacts.read", 86_400).await;
    assert!(active(
        &introspect_as(&app, crm, revoked.expose(), None).await
    ));
    let mut event = NewEvent::new(app.now(), Action::ApiKeyRevoked, ActorKind::Admin);
    event.actor_id = Some("test".into());
    assert!(
        app.store
            .revoke_api_key(&revoked.id(), None, "leaked", event)
            .await
            .unwrap()
    );
    let body = introspect_as(&app, crm, revoked.expose(), None).await;
    assert_eq!(body, serde_json::json!({"active": false}), "revoked");

    // A disabled user's key is inactive (the same rule as for the exchange).
    let bobs = create_key(&app, Some("bob"), "contacts.read", 86_400).await;
    assert!(active(&introspect_as(&app, crm, bobs.expose(), None).await));
    let mut bob = app.store.user_by_login("bob").await.unwrap().unwrap();
    bob.disabled = true;
    app.store.update_user(&bob).await.unwrap();
    let body = introspect_as(&app, crm, bobs.expose(), None).await;
    assert_eq!(body, serde_json::json!({"active": false}), "user disabled");

    // Expired.
    let short = create_key(&app, None, "tickets.read", 600).await;
    app.advance(599);
    let body = introspect_as(&app, crm, short.expose(), None).await;
    assert!(active(&body), "{body}");
    assert_eq!(body["exp"], app.now().plus_seconds(1).unix());
    app.advance(1);
    let body = introspect_as(&app, crm, short.expose(), None).await;
    assert_eq!(body, serde_json::json!({"active": false}), "expired");

    // Rotated: both keys during the overlap, only the successor after it.
    let policy = ApiKeyPolicy::default();
    let old = create_key(&app, Some("alice"), "contacts.read", 30 * 86_400).await;
    let (new, predecessor_expires_at) = rotate(&app, &old).await;
    app.advance(policy.rotation_overlap_seconds - 60);
    let body = introspect_as(&app, crm, old.expose(), None).await;
    assert!(active(&body), "old key within the overlap: {body}");
    assert_eq!(body["exp"], predecessor_expires_at.unix());
    let body = introspect_as(&app, crm, new.expose(), None).await;
    assert!(active(&body), "{body}");
    assert_eq!(body["gid"], new.id().as_str());
    app.advance(60);
    let body = introspect_as(&app, crm, old.expose(), None).await;
    assert_eq!(
        body,
        serde_json::json!({"active": false}),
        "after the overlap"
    );
    assert!(active(&introspect_as(&app, crm, new.expose(), None).await));
}
