//! Records for the cases: valid, fully populated, and easy to vary with `..fixture(...)`.

use mandate_core::api_key::{ApiKey, ApiKeyRecord};
use mandate_core::client::{Agent, ClientKind, GrantType};
use mandate_core::code::AuthorizationCode;
use mandate_core::directory::{Tenant, User};
use mandate_core::event::{Action, ActorKind, Event, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::pkce::CodeChallenge;
use mandate_core::random::SeededEntropy;
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::refresh::{LiveToken, RefreshFamily, RefreshTokenRecord};
use mandate_core::revocation::FeedEntry;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use mandate_store::Store;

pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Concurrent callers racing for one code or one refresh token.
pub(crate) const RACERS: usize = 16;

pub(crate) fn t(unix: i64) -> Timestamp {
    Timestamp::from_unix(unix)
}

pub(crate) fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

pub(crate) fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("Tenant {id}"),
    }
}

pub(crate) fn user(id: &str, tenant_id: &str, login: &str) -> User {
    User {
        id: id.into(),
        tenant_id: tenant_id.into(),
        login: login.into(),
        display_name: format!("User {id}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        disabled: false,
    }
}

pub(crate) fn full_agent(client_id: &str) -> Agent {
    Agent {
        client_id: client_id.into(),
        name: "Full Agent".into(),
        kind: ClientKind::Confidential,
        secret_hash: Some("sha256:abcdef".into()),
        redirect_uris: vec![
            RedirectUri::parse("https://app.example/cb?x=1").unwrap(),
            RedirectUri::parse("http://127.0.0.1/callback").unwrap(),
            RedirectUri::parse("com.example.app:/oauth").unwrap(),
        ],
        grant_types: vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ],
        max_scopes: scopes("contacts.read contacts.write billing.read"),
        tenant_id: Some("acme".into()),
        access_token_ttl: 900,
        refresh_token_ttl: 604_800,
        default_resource: Some("https://crm.example/api".into()),
        allowed_resources: vec![
            "https://crm.example/api".into(),
            "urn:example:mcp \"quoted\"".into(),
        ],
        disabled: true,
    }
}

pub(crate) fn bare_agent(client_id: &str) -> Agent {
    Agent {
        client_id: client_id.into(),
        name: "Bare".into(),
        kind: ClientKind::Public,
        secret_hash: None,
        redirect_uris: vec![],
        grant_types: vec![],
        max_scopes: ScopeSet::new(),
        tenant_id: None,
        access_token_ttl: 60,
        refresh_token_ttl: 0,
        default_resource: None,
        allowed_resources: vec![],
        disabled: false,
    }
}

pub(crate) fn grant(id: &str, user_id: Option<&str>, created_at: i64) -> Grant {
    Grant {
        id: id.into(),
        tenant_id: "acme".into(),
        user_id: user_id.map(Into::into),
        client_id: "cli".into(),
        scopes: scopes("contacts.read"),
        purpose: Some("sync contacts".into()),
        created_at: t(created_at),
        expires_at: None,
        revoked_at: None,
        revoked_reason: None,
    }
}

pub(crate) fn code(hash: &str) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.into(),
        client_id: "cli".into(),
        grant_id: "g_1".into(),
        user_id: "u_1".into(),
        tenant_id: "acme".into(),
        redirect_uri: "http://127.0.0.1:5000/cb".into(),
        redirect_uri_explicit: true,
        code_challenge: CodeChallenge::from_stored(CHALLENGE).unwrap(),
        resource: "https://crm.example/api".into(),
        scopes: scopes("contacts.read contacts.write"),
        created_at: t(1000),
        expires_at: t(1060),
        family_id: None,
    }
}

pub(crate) fn family(id: &str, grant_id: &str) -> RefreshFamily {
    RefreshFamily {
        id: id.into(),
        grant_id: grant_id.into(),
        client_id: "cli".into(),
        tenant_id: "acme".into(),
        user_id: Some("u_1".into()),
        scopes: scopes("contacts.read"),
        resource: "https://crm.example/api".into(),
        created_at: t(1000),
        revoked_at: None,
        live: None,
    }
}

/// A family holding its live token: generation `generation`, hash `hash`, issued at
/// `issued_at` and valid an hour.
pub(crate) fn live_family(
    id: &str,
    grant_id: &str,
    generation: u64,
    hash: &str,
    issued_at: i64,
) -> RefreshFamily {
    RefreshFamily {
        live: Some(live(generation, hash, issued_at)),
        ..family(id, grant_id)
    }
}

pub(crate) fn live(generation: u64, hash: &str, issued_at: i64) -> LiveToken {
    LiveToken {
        generation,
        token_hash: hash.into(),
        issued_at: t(issued_at),
        expires_at: t(issued_at + 3600),
    }
}

/// Stores `family` (as given: no live token, for the form before families held one) and
/// `first` as a row of its own.
pub(crate) async fn legacy_family(
    store: &dyn Store,
    family: &RefreshFamily,
    first: &RefreshTokenRecord,
) {
    store.create_family(family).await.unwrap();
    store
        .insert_legacy_refresh_token(first, None)
        .await
        .unwrap();
}

pub(crate) fn token(hash: &str, family_id: &str, issued_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.into(),
        family_id: family_id.into(),
        issued_at: t(issued_at),
        expires_at: t(issued_at + 3600),
        used_at: None,
    }
}

pub(crate) fn event(
    at: i64,
    action: Action,
    tenant_id: Option<&str>,
    grant_id: Option<&str>,
) -> NewEvent {
    NewEvent {
        tenant_id: tenant_id.map(Into::into),
        grant_id: grant_id.map(Into::into),
        ..NewEvent::new(t(at), action, ActorKind::Agent)
    }
}

/// Tenants `acme` and `other`; users `u_alice`, `u_bob` in acme and `u_carol` in other.
pub(crate) async fn people(store: &dyn mandate_store::Store) {
    for id in ["acme", "other"] {
        store.upsert_tenant(&tenant(id)).await.unwrap();
    }
    for (id, tenant_id) in [("u_alice", "acme"), ("u_bob", "acme"), ("u_carol", "other")] {
        store
            .create_user(&user(id, tenant_id, &id[2..]))
            .await
            .unwrap();
    }
}

/// Disables the user `id` through the store.
pub(crate) async fn disable_user(store: &dyn mandate_store::Store, id: &str) {
    let user = store.user(id).await.unwrap().unwrap();
    store
        .update_user(&User {
            disabled: true,
            ..user
        })
        .await
        .unwrap();
}

/// A valid key record (real id and hash from a seeded key) created at `created_at`, expiring
/// 10,000 s later.
pub(crate) fn api_key(
    seed: u64,
    tenant_id: &str,
    user_id: Option<&str>,
    created_at: i64,
) -> ApiKeyRecord {
    // SeededEntropy ignores the lowest bit of its seed: keep distinct seeds distinct.
    let key = ApiKey::generate(&SeededEntropy::new(seed * 2 + 1));
    ApiKeyRecord {
        id: key.id(),
        tenant_id: tenant_id.into(),
        user_id: user_id.map(Into::into),
        name: format!("key {seed}"),
        scopes: scopes("contacts.read billing.read"),
        hash: key.hash(),
        created_at: t(created_at),
        expires_at: t(created_at + 10_000),
        revoked_at: None,
        last_used_at: None,
        replaces: None,
    }
}

/// The event an administrator's request starts from. Its action is deliberately unrelated:
/// the store sets the fields that describe the change.
pub(crate) fn admin_event(at: i64) -> NewEvent {
    NewEvent {
        actor_id: Some("admin_1".into()),
        ip: Some("198.51.100.4".into()),
        user_agent: Some("mandate-cli".into()),
        ..NewEvent::new(t(at), Action::ConfigApplied, ActorKind::Admin)
    }
}

/// Every event in the log, oldest first.
pub(crate) async fn all_events(store: &dyn mandate_store::Store) -> Vec<Event> {
    store
        .events(&mandate_store::EventFilter {
            limit: 10_000,
            ..mandate_store::EventFilter::default()
        })
        .await
        .unwrap()
}

/// The revocation feed as a reader would see it after `after_seq`.
pub(crate) async fn feed(store: &dyn mandate_store::Store, after_seq: i64) -> Vec<FeedEntry> {
    let events = store
        .events(&mandate_store::EventFilter::revocations_after(
            after_seq, 10_000,
        ))
        .await
        .unwrap();
    events.iter().filter_map(FeedEntry::from_event).collect()
}
