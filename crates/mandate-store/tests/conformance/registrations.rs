//! Cases for registered clients (RFC 7591/7592 and metadata documents) and for client
//! assertion replay protection (including its race).

use super::fixtures::*;
use mandate_core::client::Agent;
use mandate_core::event::Action;
use mandate_core::grant::Grant;
use mandate_core::registration::{self, ClientMetadata, RegistrationPolicy};
use mandate_core::revocation::Revoked;
use mandate_core::time::Timestamp;
use mandate_store::{
    ClientRegistration, GrantFilter, RegisteredClient, RegistrationOrigin, Store, StoreError,
};
use serde_json::json;
use std::sync::Arc;

fn metadata(body: serde_json::Value) -> ClientMetadata {
    let policy = RegistrationPolicy {
        default_max_scopes: scopes("contacts.read tickets.read"),
    };
    registration::validate(body.to_string().as_bytes(), &policy).unwrap()
}

fn dynamic_metadata(name: &str) -> ClientMetadata {
    metadata(json!({
        "client_name": name,
        "redirect_uris": ["https://app.example/cb", "http://127.0.0.1/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "contacts.read tickets.read billing.write",
        "contacts": ["ops@app.example"],
        "software_id": "app-1",
    }))
}

/// A dynamic registration of `client_id`, registered at 1000 and abandoned after 2000.
fn dynamic(client_id: &str, token_hash: &str) -> (Agent, ClientRegistration) {
    let meta = dynamic_metadata(&format!("Client {client_id}"));
    let agent = meta.to_agent(client_id.into(), Some(format!("sha256:secret-{client_id}")));
    let reg = ClientRegistration {
        client_id: client_id.into(),
        origin: RegistrationOrigin::Dynamic,
        metadata: meta,
        registration_token_hash: Some(token_hash.into()),
        registered_at: t(1000),
        first_used_at: None,
        expires_at: Some(t(2000)),
    };
    (agent, reg)
}

async fn register(store: &dyn Store, client_id: &str, token_hash: &str) -> RegisteredClient {
    let (agent, registration) = dynamic(client_id, token_hash);
    store
        .register_client(&agent, &registration, admin_event(1000))
        .await
        .unwrap();
    RegisteredClient {
        agent,
        registration,
    }
}

fn grant_of(id: &str, client_id: &str, tenant_id: &str, user_id: Option<&str>) -> Grant {
    Grant {
        client_id: client_id.into(),
        tenant_id: tenant_id.into(),
        ..grant(id, user_id, 100)
    }
}

async fn revoked_at(store: &dyn Store, grant_id: &str) -> Option<Timestamp> {
    store.grant(grant_id).await.unwrap().unwrap().revoked_at
}

async fn family_revoked_at(store: &dyn Store, token_hash: &str) -> Option<Timestamp> {
    store
        .refresh_token(token_hash)
        .await
        .unwrap()
        .unwrap()
        .found
        .revoked_at()
}

pub(crate) async fn registrations_round_trip_and_are_found_by_token_hash(store: Arc<dyn Store>) {
    let dyn_1 = register(&*store, "dyn_1", "sha256:rat-1").await;
    assert_eq!(
        store.registered_client("dyn_1").await.unwrap().as_ref(),
        Some(&dyn_1)
    );
    assert_eq!(
        store
            .registered_client_by_token_hash("sha256:rat-1")
            .await
            .unwrap(),
        Some(dyn_1.clone())
    );
    assert_eq!(
        store.agent("dyn_1").await.unwrap().as_ref(),
        Some(&dyn_1.agent),
        "an ordinary agent row"
    );
    assert_eq!(
        store
            .registered_client_by_token_hash("sha256:nope")
            .await
            .unwrap(),
        None
    );
    let e = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(e.action, Action::ClientRegistered);
    assert_eq!(e.client_id.as_deref(), Some("dyn_1"));
    assert_eq!(e.detail["origin"], "dynamic");
    assert_eq!(e.actor_id.as_deref(), Some("admin_1"));

    // A metadata document client: URL id, no registration token, no expiry.
    let url = "https://agent.example/client.json";
    let doc_meta = metadata(json!({
        "redirect_uris": ["https://agent.example/cb"],
        "token_endpoint_auth_method": "none",
    }));
    let doc = ClientRegistration {
        client_id: url.into(),
        origin: RegistrationOrigin::MetadataDocument,
        metadata: doc_meta.clone(),
        registration_token_hash: None,
        registered_at: t(1100),
        first_used_at: Some(t(1101)),
        expires_at: None,
    };
    let doc_agent = doc_meta.to_agent(url.into(), None);
    store
        .register_client(&doc_agent, &doc, admin_event(1100))
        .await
        .unwrap();
    let second_doc = ClientRegistration {
        client_id: "https://agent.example/other.json".into(),
        ..doc.clone()
    };
    store
        .register_client(
            &doc_meta.to_agent(second_doc.client_id.clone(), None),
            &second_doc,
            admin_event(1100),
        )
        .await
        .expect("registrations without a token do not collide");
    let found = store.registered_client(url).await.unwrap().unwrap();
    assert_eq!(found.registration, doc);
    assert_eq!(found.agent, doc_agent);

    // Conflicts store nothing at all, not even the agent or the event.
    let events = all_events(&*store).await.len();
    let (agent, reg) = dynamic("dyn_2", "sha256:rat-1");
    let err = store.register_client(&agent, &reg, admin_event(1200)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.agent("dyn_2").await.unwrap(), None, "rolled back");
    let (agent, reg) = dynamic("dyn_1", "sha256:rat-other");
    let err = store.register_client(&agent, &reg, admin_event(1200)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    store.upsert_agent(&full_agent("cli_config")).await.unwrap();
    let (agent, reg) = dynamic("cli_config", "sha256:rat-3");
    let err = store.register_client(&agent, &reg, admin_event(1200)).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(
        store.agent("cli_config").await.unwrap(),
        Some(full_agent("cli_config")),
        "a configured agent is never taken over"
    );
    assert_eq!(store.registered_client("cli_config").await.unwrap(), None);
    assert_eq!(all_events(&*store).await.len(), events);
}

pub(crate) async fn registration_updates_keep_operator_owned_fields(store: Arc<dyn Store>) {
    let before = register(&*store, "dyn_1", "sha256:rat-1").await;
    // An operator disables the client and narrows its lifetimes.
    let operated = Agent {
        disabled: true,
        access_token_ttl: 120,
        allowed_resources: vec!["https://crm.example/api".into()],
        ..before.agent.clone()
    };
    store.upsert_agent(&operated).await.unwrap();

    let new_meta = metadata(json!({
        "client_name": "Renamed",
        "redirect_uris": ["https://app.example/new-cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": "https://app.example/jwks.json",
        "scope": "tickets.read",
    }));
    let proposed = new_meta.to_agent("dyn_1".into(), None);
    store
        .update_registration(&proposed, &new_meta, admin_event(1500))
        .await
        .unwrap();
    let after = store.registered_client("dyn_1").await.unwrap().unwrap();
    assert_eq!(after.registration.metadata, new_meta);
    assert_eq!(
        after.registration.registration_token_hash.as_deref(),
        Some("sha256:rat-1")
    );
    assert_eq!(after.registration.registered_at, t(1000));
    assert_eq!(after.agent.name, "Renamed");
    assert_eq!(after.agent.kind, proposed.kind);
    assert_eq!(after.agent.secret_hash, None);
    assert_eq!(after.agent.redirect_uris, proposed.redirect_uris);
    assert_eq!(after.agent.max_scopes, scopes("tickets.read"));
    assert!(after.agent.disabled, "a client cannot re-enable itself");
    assert_eq!(after.agent.access_token_ttl, 120);
    assert_eq!(after.agent.allowed_resources, operated.allowed_resources);
    let e = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(e.action, Action::ClientUpdated);
    assert_eq!(e.client_id.as_deref(), Some("dyn_1"));

    let events = all_events(&*store).await.len();
    store.upsert_agent(&full_agent("cli_config")).await.unwrap();
    for id in ["cli_config", "dyn_missing"] {
        let err = store
            .update_registration(
                &new_meta.to_agent(id.into(), None),
                &new_meta,
                admin_event(1600),
            )
            .await;
        assert!(matches!(err, Err(StoreError::NotFound(_))), "{id}: {err:?}");
    }
    assert_eq!(
        store.agent("cli_config").await.unwrap(),
        Some(full_agent("cli_config"))
    );
    assert_eq!(all_events(&*store).await.len(), events);
}

pub(crate) async fn deleting_a_registration_revokes_only_its_grants(store: Arc<dyn Store>) {
    register(&*store, "dyn_1", "sha256:rat-1").await;
    register(&*store, "dyn_2", "sha256:rat-2").await;
    store.upsert_agent(&full_agent("cli_config")).await.unwrap();
    for g in [
        grant_of("g_dyn1_acme", "dyn_1", "acme", Some("u_1")),
        grant_of("g_dyn1_other", "dyn_1", "other", Some("u_2")),
        grant_of("g_dyn2", "dyn_2", "acme", Some("u_1")),
        grant_of("g_config", "cli_config", "acme", Some("u_1")),
    ] {
        store.create_grant(&g).await.unwrap();
    }
    legacy_family(
        &*store,
        &family("f_1", "g_dyn1_acme"),
        &token("r_1", "f_1", 1000),
    )
    .await;
    legacy_family(
        &*store,
        &family("f_2", "g_dyn2"),
        &token("r_2", "f_2", 1000),
    )
    .await;
    let before = all_events(&*store).await.last().unwrap().seq;

    assert!(
        store
            .delete_registration("dyn_1", "client deleted itself", admin_event(3000))
            .await
            .unwrap()
    );
    assert_eq!(store.agent("dyn_1").await.unwrap(), None);
    assert_eq!(store.registered_client("dyn_1").await.unwrap(), None);
    assert_eq!(
        store
            .registered_client_by_token_hash("sha256:rat-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(revoked_at(&*store, "g_dyn1_acme").await, Some(t(3000)));
    assert_eq!(revoked_at(&*store, "g_dyn1_other").await, Some(t(3000)));
    assert_eq!(
        store
            .grant("g_dyn1_acme")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("client deleted itself")
    );
    assert_eq!(family_revoked_at(&*store, "r_1").await, Some(t(3000)));
    assert_eq!(revoked_at(&*store, "g_dyn2").await, None, "other client");
    assert_eq!(
        revoked_at(&*store, "g_config").await,
        None,
        "configured agent"
    );
    assert_eq!(family_revoked_at(&*store, "r_2").await, None);
    assert!(store.registered_client("dyn_2").await.unwrap().is_some());

    let entries = feed(&*store, before).await;
    assert_eq!(entries.len(), 1, "one entry for the whole deletion");
    assert_eq!(
        entries[0].revoked,
        Revoked::Agent {
            client_id: "dyn_1".into()
        }
    );
    let e = all_events(&*store).await.pop().unwrap().event;
    assert_eq!(e.action, Action::ClientDeleted);
    assert_eq!(e.detail["grants"], 2);

    assert!(
        !store
            .delete_registration("dyn_1", "again", admin_event(3100))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_registration("cli_config", "not registered", admin_event(3100))
            .await
            .unwrap(),
        "configured agents are not deleted through registration"
    );
    assert!(store.agent("cli_config").await.unwrap().is_some());
    assert_eq!(feed(&*store, before).await.len(), 1);
}

pub(crate) async fn abandoned_registrations_are_purged_with_their_agents(store: Arc<dyn Store>) {
    // All registered at 1000 and abandoned after 2000 unless used.
    register(&*store, "dyn_unused", "sha256:rat-1").await;
    register(&*store, "dyn_used", "sha256:rat-2").await;
    register(&*store, "dyn_unused_2", "sha256:rat-3").await;
    let (agent, keep_forever) = dynamic("dyn_no_expiry", "sha256:rat-4");
    let keep_forever = ClientRegistration {
        expires_at: None,
        ..keep_forever
    };
    store
        .register_client(&agent, &keep_forever, admin_event(1000))
        .await
        .unwrap();
    let (agent, later) = dynamic("dyn_later", "sha256:rat-5");
    let later = ClientRegistration {
        expires_at: Some(t(9000)),
        ..later
    };
    store
        .register_client(&agent, &later, admin_event(1000))
        .await
        .unwrap();
    store.upsert_agent(&bare_agent("cli_config")).await.unwrap();
    // A consent that never turned into a token.
    store
        .create_grant(&grant_of("g_unused", "dyn_unused", "acme", Some("u_1")))
        .await
        .unwrap();

    assert!(
        store
            .mark_client_first_use("dyn_used", t(1500))
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_client_first_use("dyn_used", t(1600))
            .await
            .unwrap(),
        "idempotent"
    );
    assert!(
        !store
            .mark_client_first_use("cli_config", t(1600))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .registered_client("dyn_used")
            .await
            .unwrap()
            .unwrap()
            .registration
            .first_used_at,
        Some(t(1500)),
        "the first use is kept"
    );

    assert_eq!(
        store.purge_abandoned_registrations(t(2000)).await.unwrap(),
        0,
        "expiry is exclusive"
    );
    assert_eq!(
        store.purge_abandoned_registrations(t(2001)).await.unwrap(),
        2
    );
    for gone in ["dyn_unused", "dyn_unused_2"] {
        assert_eq!(store.agent(gone).await.unwrap(), None, "{gone}");
        assert_eq!(store.registered_client(gone).await.unwrap(), None, "{gone}");
    }
    for kept in ["dyn_used", "dyn_no_expiry", "dyn_later"] {
        assert!(
            store.registered_client(kept).await.unwrap().is_some(),
            "{kept}"
        );
    }
    assert!(store.agent("cli_config").await.unwrap().is_some());
    let g = store.grant("g_unused").await.unwrap().unwrap();
    assert_eq!(g.revoked_at, Some(t(2001)));
    assert_eq!(
        g.revoked_reason.as_deref(),
        Some("client registration abandoned")
    );
    assert!(
        !store
            .mark_client_first_use("dyn_unused", t(2002))
            .await
            .unwrap(),
        "a purged client cannot come back by being used"
    );

    // Housekeeping does the same.
    assert_eq!(store.purge_expired(t(9000)).await.unwrap(), 0);
    assert_eq!(store.purge_expired(t(9001)).await.unwrap(), 1);
    assert_eq!(store.agent("dyn_later").await.unwrap(), None);
    assert!(store.agent("dyn_used").await.unwrap().is_some());
    assert!(store.agent("dyn_no_expiry").await.unwrap().is_some());
    let active = store
        .grants(&GrantFilter::default(), None, 1000)
        .await
        .unwrap();
    assert!(active.is_empty(), "{active:?}");
}

pub(crate) async fn assertion_jtis_are_remembered_once_per_client(store: Arc<dyn Store>) {
    assert!(store.remember_jti("agent-1", "j-1", t(1300)).await.unwrap());
    assert!(
        !store.remember_jti("agent-1", "j-1", t(1300)).await.unwrap(),
        "a replay"
    );
    assert!(
        !store.remember_jti("agent-1", "j-1", t(9999)).await.unwrap(),
        "a replay with another expiry"
    );
    assert!(
        store.remember_jti("agent-2", "j-1", t(1300)).await.unwrap(),
        "jtis are per client"
    );
    assert!(store.remember_jti("agent-1", "j-2", t(1400)).await.unwrap());

    assert_eq!(store.purge_expired(t(1300)).await.unwrap(), 0, "exclusive");
    assert_eq!(store.purge_expired(t(1301)).await.unwrap(), 2);
    assert!(
        !store.remember_jti("agent-1", "j-2", t(1400)).await.unwrap(),
        "still remembered until its own expiry"
    );
    assert!(
        store.remember_jti("agent-1", "j-1", t(2000)).await.unwrap(),
        "forgotten after its expiry"
    );
}

pub(crate) async fn concurrent_jti_inserts_yield_exactly_one_first(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..RACERS * 2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.remember_jti("agent-1", "j-race", t(1300)).await })
        })
        .collect();
    let mut first = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() {
            first += 1;
        }
    }
    assert_eq!(first, 1);
}
