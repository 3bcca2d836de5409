//! The storage conformance suite: written once against `Arc<dyn Store>`, run for every backend.
//!
//! Each case below is a plain async function taking a fresh, migrated store. The
//! `conformance!` macro at the bottom turns every case into one test per backend: `sqlite::*`
//! on a new file in a temporary directory, `postgres::*` on a new database created through
//! `MANDATE_TEST_POSTGRES_URL` (dropped again afterwards, pass or fail). Without that variable the
//! PostgreSQL tests print `SKIPPED` and pass, so the absence is visible in the output.

use mandate_core::authorize::AuthorizationRequest;
use mandate_core::client::{Agent, ClientKind, GrantType};
use mandate_core::code::AuthorizationCode;
use mandate_core::directory::{Tenant, User};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::grant::{Grant, Prompt};
use mandate_core::pkce::CodeChallenge;
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::refresh::{RefreshFamily, RefreshTokenRecord};
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;
use mandate_store::group_commit::EventWriter;
use mandate_store::{
    CodeConsumption, EventFilter, GrantFilter, PendingAuthorization, ScopeDef, Session, Store,
    StoreError, StoredSigningKey,
};
use std::sync::Arc;

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Concurrent callers racing for one code or one refresh token.
const RACERS: usize = 16;

fn t(unix: i64) -> Timestamp {
    Timestamp::from_unix(unix)
}

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("Tenant {id}"),
    }
}

fn user(id: &str, tenant_id: &str, login: &str) -> User {
    User {
        id: id.into(),
        tenant_id: tenant_id.into(),
        login: login.into(),
        display_name: format!("User {id}"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        disabled: false,
    }
}

fn full_agent(client_id: &str) -> Agent {
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

fn bare_agent(client_id: &str) -> Agent {
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

fn grant(id: &str, user_id: Option<&str>, created_at: i64) -> Grant {
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

fn code(hash: &str) -> AuthorizationCode {
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

fn family(id: &str, grant_id: &str) -> RefreshFamily {
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
    }
}

fn token(hash: &str, family_id: &str, issued_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.into(),
        family_id: family_id.into(),
        issued_at: t(issued_at),
        expires_at: t(issued_at + 3600),
        used_at: None,
    }
}

fn event(at: i64, action: Action, tenant_id: Option<&str>, grant_id: Option<&str>) -> NewEvent {
    NewEvent {
        tenant_id: tenant_id.map(Into::into),
        grant_id: grant_id.map(Into::into),
        ..NewEvent::new(t(at), action, ActorKind::Agent)
    }
}

async fn backend_answers_ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&store.backend()));
}

async fn tenants_upsert_and_list_in_id_order(store: Arc<dyn Store>) {
    assert_eq!(store.tenant("acme").await.unwrap(), None);
    store.upsert_tenant(&tenant("zeta")).await.unwrap();
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    store.upsert_tenant(&tenant("Beta")).await.unwrap();
    let renamed = Tenant {
        id: "acme".into(),
        name: "Acme Corp".into(),
    };
    store.upsert_tenant(&renamed).await.unwrap();
    assert_eq!(store.tenant("acme").await.unwrap(), Some(renamed));
    let ids: Vec<_> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        ids,
        ["Beta", "acme", "zeta"],
        "bytewise order on both backends"
    );
}

async fn users_round_trip_and_logins_are_unique(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    store.upsert_tenant(&tenant("other")).await.unwrap();
    let bob = user("u_2", "acme", "bob@acme.example");
    let alice = user("u_1", "acme", "alice@acme.example");
    let carol = user("u_3", "other", "carol");
    for u in [&bob, &alice, &carol] {
        store.create_user(u).await.unwrap();
    }
    assert_eq!(store.user("u_1").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user("nobody").await.unwrap(), None);
    assert_eq!(
        store.user_by_login("bob@acme.example").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(store.user_by_login("BOB@acme.example").await.unwrap(), None);

    let taken = store
        .create_user(&user("u_9", "other", "alice@acme.example"))
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let orphan = store.create_user(&user("u_8", "nope", "dave")).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    let logins = |users: Vec<User>| users.into_iter().map(|u| u.login).collect::<Vec<_>>();
    assert_eq!(
        logins(store.users(None).await.unwrap()),
        ["alice@acme.example", "bob@acme.example", "carol"]
    );
    assert_eq!(
        logins(store.users(Some("acme")).await.unwrap()),
        ["alice@acme.example", "bob@acme.example"]
    );

    let updated = User {
        tenant_id: "other".into(),
        display_name: "Alice B.".into(),
        password_hash: "$argon2id$new".into(),
        disabled: true,
        login: "ignored-login".into(),
        ..alice.clone()
    };
    store.update_user(&updated).await.unwrap();
    let stored = store.user("u_1").await.unwrap().unwrap();
    assert_eq!(stored.tenant_id, "other");
    assert_eq!(stored.display_name, "Alice B.");
    assert_eq!(stored.password_hash, "$argon2id$new");
    assert!(stored.disabled);
    assert_eq!(
        stored.login, "alice@acme.example",
        "update_user keeps the login"
    );
    let missing = store.update_user(&user("u_404", "acme", "x")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

async fn agents_round_trip_every_field(store: Arc<dyn Store>) {
    let full = full_agent("z-full");
    let bare = bare_agent("a-bare");
    store.upsert_agent(&full).await.unwrap();
    store.upsert_agent(&bare).await.unwrap();
    let back = store.agent("z-full").await.unwrap().unwrap();
    assert!(back == full, "full agent differs: {back:?}");
    assert_eq!(back.secret_hash, full.secret_hash);
    assert_eq!(back.redirect_uris, full.redirect_uris);
    assert_eq!(back.allowed_resources, full.allowed_resources);
    let back = store.agent("a-bare").await.unwrap().unwrap();
    assert!(back == bare, "bare agent differs: {back:?}");
    assert_eq!(store.agent("missing").await.unwrap(), None);

    let replaced = Agent {
        name: "Replaced".into(),
        secret_hash: None,
        tenant_id: None,
        default_resource: None,
        redirect_uris: vec![RedirectUri::parse("https://new.example/cb").unwrap()],
        grant_types: vec![GrantType::ClientCredentials],
        disabled: false,
        ..full.clone()
    };
    store.upsert_agent(&replaced).await.unwrap();
    assert!(store.agent("z-full").await.unwrap().unwrap() == replaced);
    let ids: Vec<_> = store
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.client_id)
        .collect();
    assert_eq!(ids, ["a-bare", "z-full"]);
}

async fn catalog_upserts_and_lists_in_order(store: Arc<dyn Store>) {
    let read = ScopeDef {
        name: "contacts.read".into(),
        description: "Read contacts".into(),
        sensitive: false,
    };
    let billing = ScopeDef {
        name: "billing.read".into(),
        description: "Read invoices".into(),
        sensitive: true,
    };
    store.upsert_scope(&read).await.unwrap();
    store.upsert_scope(&billing).await.unwrap();
    let read2 = ScopeDef {
        description: "Read all contacts".into(),
        sensitive: true,
        ..read
    };
    store.upsert_scope(&read2).await.unwrap();
    assert_eq!(store.scopes().await.unwrap(), vec![billing, read2]);

    let crm = ResourceServer {
        identifier: "https://crm.example/api".into(),
        name: "CRM".into(),
        scopes: scopes("contacts.read billing.read"),
    };
    let mcp = ResourceServer {
        identifier: "https://crm.example/mcp".into(),
        name: "MCP".into(),
        scopes: ScopeSet::new(),
    };
    store.upsert_resource(&mcp).await.unwrap();
    store.upsert_resource(&crm).await.unwrap();
    let crm2 = ResourceServer {
        scopes: scopes("contacts.read"),
        ..crm
    };
    store.upsert_resource(&crm2).await.unwrap();
    assert_eq!(store.resources().await.unwrap(), vec![crm2, mcp]);
}

async fn grants_round_trip_update_and_filter(store: Arc<dyn Store>) {
    let g1 = Grant {
        expires_at: Some(t(5000)),
        ..grant("g_1", Some("u_1"), 100)
    };
    let g2 = Grant {
        purpose: None,
        ..grant("g_2", None, 200)
    };
    let g3 = Grant {
        tenant_id: "other".into(),
        client_id: "cli2".into(),
        ..grant("g_3", Some("u_2"), 300)
    };
    for g in [&g1, &g2, &g3] {
        store.create_grant(g).await.unwrap();
    }
    let dup = store.create_grant(&g1).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.grant("g_1").await.unwrap(), Some(g1.clone()));
    assert_eq!(store.grant("g_2").await.unwrap(), Some(g2.clone()));
    assert_eq!(store.grant("nope").await.unwrap(), None);

    store
        .update_grant_scopes("g_1", &scopes("contacts.read contacts.write"))
        .await
        .unwrap();
    assert_eq!(
        store.grant("g_1").await.unwrap().unwrap().scopes,
        scopes("contacts.write contacts.read")
    );
    let missing = store.update_grant_scopes("nope", &scopes("a")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(store.revoke_grant("g_2", t(250), "user").await.unwrap());
    let revoked = store.update_grant_scopes("g_2", &scopes("a")).await;
    assert!(
        matches!(revoked, Err(StoreError::NotFound(_))),
        "{revoked:?}"
    );

    let ids = |gs: Vec<Grant>| gs.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let all = GrantFilter {
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(
        ids(store.grants(&all).await.unwrap()),
        ["g_3", "g_2", "g_1"]
    );
    assert_eq!(
        ids(store.grants(&GrantFilter::default()).await.unwrap()),
        ["g_3", "g_1"]
    );
    let acme = GrantFilter {
        tenant_id: Some("acme".into()),
        include_revoked: true,
        ..GrantFilter::default()
    };
    assert_eq!(ids(store.grants(&acme).await.unwrap()), ["g_2", "g_1"]);
    let by_user = GrantFilter {
        user_id: Some("u_2".into()),
        ..GrantFilter::default()
    };
    assert_eq!(ids(store.grants(&by_user).await.unwrap()), ["g_3"]);
    let by_client = GrantFilter {
        tenant_id: Some("acme".into()),
        client_id: Some("cli".into()),
        ..GrantFilter::default()
    };
    assert_eq!(ids(store.grants(&by_client).await.unwrap()), ["g_1"]);
}

async fn active_grant_is_the_newest_live_one(store: Arc<dyn Store>) {
    let now = t(1000);
    let grants = [
        grant("g_old", Some("u_1"), 100),
        grant("g_new", Some("u_1"), 500),
        grant("g_revoked", Some("u_1"), 900),
        Grant {
            expires_at: Some(now),
            ..grant("g_expired_now", Some("u_1"), 950)
        },
        Grant {
            client_id: "cli2".into(),
            ..grant("g_other_client", Some("u_1"), 990)
        },
        Grant {
            tenant_id: "other".into(),
            ..grant("g_other_tenant", Some("u_1"), 990)
        },
        grant("g_other_user", Some("u_2"), 990),
        grant("g_service_old", None, 10),
        Grant {
            expires_at: Some(t(1001)),
            ..grant("g_service", None, 20)
        },
    ];
    for g in &grants {
        store.create_grant(g).await.unwrap();
    }
    store
        .revoke_grant("g_revoked", t(901), "test")
        .await
        .unwrap();
    let active = |user: Option<&'static str>, client: &'static str| {
        let store = store.clone();
        async move {
            store
                .active_grant("acme", user, client, now)
                .await
                .unwrap()
                .map(|g| g.id)
        }
    };
    assert_eq!(active(Some("u_1"), "cli").await.as_deref(), Some("g_new"));
    assert_eq!(active(None, "cli").await.as_deref(), Some("g_service"));
    assert_eq!(active(Some("u_9"), "cli").await, None);
    assert_eq!(active(Some("u_1"), "cli9").await, None);
    let later = store
        .active_grant("acme", None, "cli", t(1001))
        .await
        .unwrap()
        .map(|g| g.id);
    assert_eq!(
        later.as_deref(),
        Some("g_service_old"),
        "expiry is exclusive"
    );
}

async fn revoke_grant_revokes_its_families_once(store: Arc<dyn Store>) {
    store
        .create_grant(&grant("g_1", Some("u_1"), 100))
        .await
        .unwrap();
    store
        .create_grant(&grant("g_2", Some("u_1"), 100))
        .await
        .unwrap();
    store
        .create_family(&family("f_1", "g_1"), &token("r_1", "f_1", 1000))
        .await
        .unwrap();
    store
        .create_family(&family("f_2", "g_1"), &token("r_2", "f_2", 1000))
        .await
        .unwrap();
    store
        .create_family(&family("f_3", "g_2"), &token("r_3", "f_3", 1000))
        .await
        .unwrap();
    assert!(store.revoke_family("f_2", t(1500)).await.unwrap());

    assert!(
        store
            .revoke_grant("g_1", t(2000), "user revoked")
            .await
            .unwrap()
    );
    let g = store.grant("g_1").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(t(2000)));
    assert_eq!(g.revoked_reason.as_deref(), Some("user revoked"));
    let family_revoked_at = |hash: &'static str| {
        let store = store.clone();
        async move {
            store
                .refresh_token(hash)
                .await
                .unwrap()
                .unwrap()
                .family
                .revoked_at
        }
    };
    assert_eq!(family_revoked_at("r_1").await, Some(t(2000)));
    assert_eq!(
        family_revoked_at("r_2").await,
        Some(t(1500)),
        "first revocation kept"
    );
    assert_eq!(
        family_revoked_at("r_3").await,
        None,
        "other grant untouched"
    );

    assert!(!store.revoke_grant("g_1", t(3000), "again").await.unwrap());
    let g = store.grant("g_1").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(t(2000)));
    assert_eq!(g.revoked_reason.as_deref(), Some("user revoked"));
    assert!(!store.revoke_grant("missing", t(3000), "x").await.unwrap());
    assert!(!store.revoke_family("f_1", t(3000)).await.unwrap());
    assert!(!store.revoke_family("missing", t(3000)).await.unwrap());
}

async fn codes_are_consumed_once_and_replays_are_recognised(store: Arc<dyn Store>) {
    let c = code("h_1");
    store.insert_code(&c).await.unwrap();
    let dup = store.insert_code(&c).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    assert_eq!(
        store.consume_code("h_1", t(1010)).await.unwrap(),
        CodeConsumption::Fresh(c.clone())
    );
    store.set_code_family("h_1", "f_1").await.unwrap();
    let replay = store.consume_code("h_1", t(1020)).await.unwrap();
    let with_family = AuthorizationCode {
        family_id: Some("f_1".into()),
        ..c.clone()
    };
    assert_eq!(replay, CodeConsumption::Replayed(with_family));
    assert_eq!(
        store.consume_code("h_unknown", t(1020)).await.unwrap(),
        CodeConsumption::Unknown
    );
    let missing = store.set_code_family("h_unknown", "f_1").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let late = AuthorizationCode {
        expires_at: t(2000),
        ..code("h_2")
    };
    store.insert_code(&late).await.unwrap();
    assert_eq!(
        store.purge_codes(t(1060)).await.unwrap(),
        0,
        "expiry is exclusive"
    );
    assert_eq!(store.purge_codes(t(1061)).await.unwrap(), 1);
    assert_eq!(
        store.consume_code("h_1", t(1100)).await.unwrap(),
        CodeConsumption::Unknown
    );
    assert!(matches!(
        store.consume_code("h_2", t(1100)).await.unwrap(),
        CodeConsumption::Fresh(_)
    ));
}

async fn concurrent_code_redemptions_yield_exactly_one_fresh(store: Arc<dyn Store>) {
    store.insert_code(&code("h_race")).await.unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_code("h_race", t(1010 + i as i64)).await })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            CodeConsumption::Fresh(_) => fresh += 1,
            CodeConsumption::Replayed(_) => {}
            CodeConsumption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(fresh, 1);
}

async fn refresh_rotation_and_successor_liveness(store: Arc<dyn Store>) {
    let f = family("f_1", "g_1");
    let first = token("r_1", "f_1", 1000);
    store.create_family(&f, &first).await.unwrap();
    let dup = store
        .create_family(&f, &token("r_other", "f_1", 1000))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.refresh_token("r_other").await.unwrap(),
        None,
        "rolled back"
    );

    let look = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(look.token, first);
    assert_eq!(look.family, f);
    assert!(!look.successor_live);
    assert_eq!(store.refresh_token("r_missing").await.unwrap(), None);

    assert!(
        store
            .rotate_refresh_token("r_1", &token("r_2", "f_1", 1100), t(1100))
            .await
            .unwrap()
    );
    let old = store.refresh_token("r_1").await.unwrap().unwrap();
    assert_eq!(old.token.used_at, Some(t(1100)));
    assert!(old.successor_live, "r_2 is unused");
    let new = store.refresh_token("r_2").await.unwrap().unwrap();
    assert_eq!(new.token, token("r_2", "f_1", 1100));
    assert!(!new.successor_live);

    assert!(
        !store
            .rotate_refresh_token("r_1", &token("r_2b", "f_1", 1101), t(1101))
            .await
            .unwrap()
    );
    assert_eq!(
        store.refresh_token("r_2b").await.unwrap(),
        None,
        "loser inserts nothing"
    );
    assert_eq!(
        store
            .refresh_token("r_1")
            .await
            .unwrap()
            .unwrap()
            .token
            .used_at,
        Some(t(1100)),
        "loser changes nothing"
    );

    assert!(
        store
            .rotate_refresh_token("r_2", &token("r_3", "f_1", 1200), t(1200))
            .await
            .unwrap()
    );
    assert!(
        !store
            .refresh_token("r_1")
            .await
            .unwrap()
            .unwrap()
            .successor_live
    );
    assert!(
        store
            .refresh_token("r_2")
            .await
            .unwrap()
            .unwrap()
            .successor_live
    );

    let clash = store
        .rotate_refresh_token("r_3", &token("r_1", "f_1", 1300), t(1300))
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert_eq!(
        store
            .refresh_token("r_3")
            .await
            .unwrap()
            .unwrap()
            .token
            .used_at,
        None,
        "a failed rotation rolls back the retirement"
    );
}

async fn concurrent_rotations_yield_exactly_one_winner(store: Arc<dyn Store>) {
    store
        .create_family(&family("f_1", "g_1"), &token("r_live", "f_1", 1000))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let successor = token(&format!("r_next_{i}"), "f_1", 1100);
                store
                    .rotate_refresh_token("r_live", &successor, t(1100))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let mut successors = 0;
    for i in 0..RACERS {
        if store
            .refresh_token(&format!("r_next_{i}"))
            .await
            .unwrap()
            .is_some()
        {
            successors += 1;
        }
    }
    assert_eq!(successors, 1, "only the winner's successor exists");
}

async fn revoked_jtis_are_remembered(store: Arc<dyn Store>) {
    assert!(!store.is_jti_revoked("jti_1").await.unwrap());
    store.revoke_jti("jti_1", t(2000)).await.unwrap();
    store.revoke_jti("jti_1", t(1500)).await.unwrap();
    assert!(store.is_jti_revoked("jti_1").await.unwrap());
    assert!(!store.is_jti_revoked("jti_2").await.unwrap());
}

async fn sessions_expire_and_can_be_deleted(store: Arc<dyn Store>) {
    let s = Session {
        id_hash: "s_hash".into(),
        user_id: "u_1".into(),
        tenant_id: "acme".into(),
        created_at: t(1000),
        expires_at: t(2000),
    };
    store.create_session(&s).await.unwrap();
    let dup = store.create_session(&s).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(
        store.session("s_hash", t(1999)).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.session("s_hash", t(2000)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.session("other", t(1500)).await.unwrap(), None);
    store.delete_session("s_hash").await.unwrap();
    assert_eq!(store.session("s_hash", t(1500)).await.unwrap(), None);
    store.delete_session("s_hash").await.unwrap();
}

async fn pending_requests_expire_and_are_taken_once(store: Arc<dyn Store>) {
    let p = PendingAuthorization {
        id: "p_1".into(),
        request: AuthorizationRequest {
            client_id: "cli".into(),
            redirect_uri: "http://127.0.0.1:5000/cb".into(),
            redirect_uri_explicit: true,
            scopes: scopes("contacts.read billing.read"),
            state: Some("xyz <&> \"é\"".into()),
            code_challenge: CodeChallenge::from_stored(CHALLENGE).unwrap(),
            resource: "https://crm.example/api".into(),
            prompt: Prompt {
                none: false,
                login: true,
                consent: false,
            },
        },
        created_at: t(1000),
        expires_at: t(1600),
    };
    store.create_pending(&p).await.unwrap();
    assert_eq!(
        store.pending("p_1", t(1599)).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        store.pending("p_1", t(1600)).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.pending("p_2", t(1000)).await.unwrap(), None);
    assert!(store.take_pending("p_1").await.unwrap());
    assert!(!store.take_pending("p_1").await.unwrap());
    assert_eq!(store.pending("p_1", t(1100)).await.unwrap(), None);
}

async fn signing_keys_keep_their_bytes_newest_first(store: Arc<dyn Store>) {
    let all_bytes: Vec<u8> = (0..=255).chain([0, 0, 255]).collect();
    let old = StoredSigningKey {
        kid: "k_old".into(),
        alg: "EdDSA".into(),
        private_sealed: all_bytes,
        public_jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "abc"}),
        created_at: t(1000),
        retired_at: Some(t(5000)),
    };
    let new = StoredSigningKey {
        kid: "k_new".into(),
        alg: "ES256".into(),
        private_sealed: vec![],
        public_jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "x": "1", "y": "2"}),
        created_at: t(2000),
        retired_at: None,
    };
    store.insert_signing_key(&old).await.unwrap();
    store.insert_signing_key(&new).await.unwrap();
    let dup = store.insert_signing_key(&old).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.signing_keys().await.unwrap(), vec![new, old]);
}

async fn events_append_in_order_and_filter(store: Arc<dyn Store>) {
    assert_eq!(store.append_events(&[]).await.unwrap(), Vec::<i64>::new());
    let full = NewEvent {
        actor_id: Some("u_1".into()),
        user_id: Some("u_1".into()),
        client_id: Some("cli".into()),
        scopes: Some("contacts.read".into()),
        reason: Some("because".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("curl/8".into()),
        detail: serde_json::json!({"grant_type": "authorization_code", "n": [1, 2]}),
        actor_kind: ActorKind::User,
        ..event(100, Action::ConsentGranted, Some("acme"), Some("g_1"))
    };
    let batch = vec![
        full.clone(),
        event(101, Action::TokenIssued, Some("acme"), Some("g_1")),
        event(102, Action::TokenIssued, Some("other"), Some("g_2")),
        event(103, Action::LoginFailed, None, None),
        event(104, Action::GrantRevoked, Some("acme"), Some("g_1")),
    ];
    let seqs = store.append_events(&batch).await.unwrap();
    assert_eq!(seqs.len(), batch.len());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let more = store
        .append_events(&[event(105, Action::ConfigApplied, None, None)])
        .await
        .unwrap();
    assert!(more[0] > seqs[4]);

    let all = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].seq, seqs[0]);
    assert_eq!(all[0].event, full);
    let got: Vec<_> = all.iter().map(|e| e.event.clone()).collect();
    assert_eq!(got[..5], batch[..]);

    let seqs_of = |filter: EventFilter| {
        let store = store.clone();
        async move {
            store
                .events(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    let acme = EventFilter {
        tenant_id: Some("acme".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(acme.clone()).await, [seqs[0], seqs[1], seqs[4]]);
    let issued = EventFilter {
        action: Some("token.issued".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(issued).await, [seqs[1], seqs[2]]);
    let g1_issued = EventFilter {
        grant_id: Some("g_1".into()),
        action: Some("token.issued".into()),
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(g1_issued).await, [seqs[1]]);
    let page = EventFilter {
        after_seq: seqs[0],
        limit: 2,
        ..acme
    };
    assert_eq!(seqs_of(page).await, [seqs[1], seqs[4]]);
    let tail = EventFilter {
        after_seq: seqs[4],
        ..EventFilter::default()
    };
    assert_eq!(seqs_of(tail).await, [more[0]]);
}

async fn large_event_batches_keep_input_order(store: Arc<dyn Store>) {
    let batch: Vec<_> = (0..300)
        .map(|i| NewEvent {
            reason: Some(format!("n{i}")),
            ..event(i, Action::TokenIssued, Some("acme"), None)
        })
        .collect();
    let seqs = store.append_events(&batch).await.unwrap();
    assert_eq!(seqs.len(), 300);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let stored = store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 300);
    for (i, (e, seq)) in stored.iter().zip(&seqs).enumerate() {
        assert_eq!(e.seq, *seq);
        assert_eq!(e.event.reason.as_deref(), Some(format!("n{i}").as_str()));
    }
}

async fn group_commit_writer_acknowledges_every_event(store: Arc<dyn Store>) {
    let (writer, task) = EventWriter::spawn(store.clone());
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let e = NewEvent {
                    reason: Some(format!("n{i}")),
                    ..event(i, Action::TokenIssued, None, None)
                };
                (i, writer.append(e).await.unwrap())
            })
        })
        .collect();
    let mut acked = Vec::new();
    for a in appends {
        acked.push(a.await.unwrap());
    }
    drop(writer);
    task.await.unwrap();
    let stored = store
        .events(&EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 200);
    for (i, seq) in acked {
        let e = stored.iter().find(|e| e.seq == seq).unwrap();
        assert_eq!(
            e.event.reason,
            Some(format!("n{i}")),
            "seq {seq} is event {i}"
        );
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("mandate.db").display());
    mandate_store::connect(&url).await.unwrap()
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::sqlite_store(&dir).await;
                    assert_eq!(store.backend(), "sqlite");
                    super::$name(store).await;
                }
            )*
        }

        mod postgres {
            use mandate_store::testing;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(admin) = testing::postgres_test_url() else {
                        eprintln!(
                            "SKIPPED: MANDATE_TEST_POSTGRES_URL not set; \
                             PostgreSQL conformance not run"
                        );
                        return;
                    };
                    let url = testing::fresh_postgres_database(&admin).await.unwrap();
                    let store = mandate_store::connect(&url).await.unwrap();
                    assert_eq!(store.backend(), "postgres");
                    // Run the case as a task so a failing assertion still drops the database.
                    let outcome = tokio::spawn(super::$name(store)).await;
                    testing::drop_postgres_database(&admin, &url).await.unwrap();
                    if let Err(failed) = outcome {
                        std::panic::resume_unwind(failed.into_panic());
                    }
                }
            )*
        }
    };
}

conformance!(
    backend_answers_ping,
    tenants_upsert_and_list_in_id_order,
    users_round_trip_and_logins_are_unique,
    agents_round_trip_every_field,
    catalog_upserts_and_lists_in_order,
    grants_round_trip_update_and_filter,
    active_grant_is_the_newest_live_one,
    revoke_grant_revokes_its_families_once,
    codes_are_consumed_once_and_replays_are_recognised,
    concurrent_code_redemptions_yield_exactly_one_fresh,
    refresh_rotation_and_successor_liveness,
    concurrent_rotations_yield_exactly_one_winner,
    revoked_jtis_are_remembered,
    sessions_expire_and_can_be_deleted,
    pending_requests_expire_and_are_taken_once,
    signing_keys_keep_their_bytes_newest_first,
    events_append_in_order_and_filter,
    large_event_batches_keep_input_order,
    group_commit_writer_acknowledges_every_event,
);
