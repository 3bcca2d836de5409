//! Cases for tenants, users, agents and the catalog.

use super::fixtures::*;
use mandate_core::client::{Agent, GrantType};
use mandate_core::directory::{Tenant, User};
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_store::{ScopeDef, Store, StoreError};
use std::sync::Arc;

pub(crate) async fn backend_answers_ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert!(["sqlite", "postgres"].contains(&store.backend()));
}

pub(crate) async fn tenants_upsert_and_list_in_id_order(store: Arc<dyn Store>) {
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

pub(crate) async fn users_round_trip_and_logins_are_unique(store: Arc<dyn Store>) {
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
        logins(store.users(None, None, 1000).await.unwrap()),
        ["alice@acme.example", "bob@acme.example", "carol"]
    );
    assert_eq!(
        logins(store.users(Some("acme"), None, 1000).await.unwrap()),
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

pub(crate) async fn agents_round_trip_every_field(store: Arc<dyn Store>) {
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
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    let owned = Agent {
        tenant_id: Some("acme".into()),
        ..bare_agent("m-acme")
    };
    store.upsert_agent(&owned).await.unwrap();
    let ids = |agents: Vec<Agent>| agents.into_iter().map(|a| a.client_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.agents(None, None, 2).await.unwrap()),
        ["a-bare", "m-acme"]
    );
    assert_eq!(
        ids(store.agents(None, Some("m-acme"), 2).await.unwrap()),
        ["z-full"],
        "the next page starts after the cursor"
    );
    assert_eq!(
        ids(store.agents(Some("acme"), None, 10).await.unwrap()),
        ["m-acme"]
    );
    assert_eq!(store.count_agents(None, 10).await.unwrap(), 3);
    assert_eq!(store.count_agents(None, 2).await.unwrap(), 2);
    assert_eq!(store.count_agents(Some("acme"), 10).await.unwrap(), 1);
}

pub(crate) async fn catalog_upserts_and_lists_in_order(store: Arc<dyn Store>) {
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
        client_id: Some("crm-rs".into()),
        secret_hash: Some("sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
    };
    let mcp = ResourceServer {
        identifier: "https://crm.example/mcp".into(),
        name: "MCP".into(),
        scopes: ScopeSet::new(),
        client_id: None,
        secret_hash: None,
    };
    store.upsert_resource(&mcp).await.unwrap();
    store.upsert_resource(&crm).await.unwrap();
    let crm2 = ResourceServer {
        scopes: scopes("contacts.read"),
        ..crm
    };
    store.upsert_resource(&crm2).await.unwrap();
    assert_eq!(store.resources().await.unwrap(), vec![crm2, mcp.clone()]);
    let clash = ResourceServer {
        identifier: "https://other.example".into(),
        client_id: Some("crm-rs".into()),
        ..mcp
    };
    let err = store.upsert_resource(&clash).await;
    assert!(
        matches!(err, Err(StoreError::Conflict(_))),
        "resource client ids are unique: {err:?}"
    );
}
