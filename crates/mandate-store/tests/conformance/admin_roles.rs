//! Admin roles: one per principal, replaced by a new grant, removed once, each change with its
//! event in the same transaction, and a tenant admin's tenant must exist.

use super::fixtures::{t, tenant};
use mandate_core::admin::{Principal, Role, RoleAssignment};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_store::{EventFilter, Store, StoreError};
use std::sync::Arc;

fn event(action: Action) -> NewEvent {
    let mut e = NewEvent::new(t(1_000), action, ActorKind::Admin);
    e.actor_id = Some("cli".into());
    e
}

pub(crate) async fn admin_roles_replace_remove_and_record_events(store: Arc<dyn Store>) {
    store.upsert_tenant(&tenant("acme")).await.unwrap();
    let alice = Principal::User("u-alice".into());
    let bot = Principal::Agent("ops-bot".into());
    assert_eq!(store.admin_role(&alice).await.unwrap(), None);

    let acme_admin = Role::TenantAdmin {
        tenant_id: "acme".into(),
    };
    let grant = |principal: &Principal, role: &Role| RoleAssignment {
        principal: principal.clone(),
        role: role.clone(),
    };
    store
        .set_admin_role(&grant(&alice, &acme_admin), event(Action::AdminRoleGranted))
        .await
        .unwrap();
    store
        .set_admin_role(
            &grant(&bot, &Role::Operator),
            event(Action::AdminRoleGranted),
        )
        .await
        .unwrap();
    assert_eq!(store.admin_role(&alice).await.unwrap(), Some(acme_admin));
    // A user id equal to an agent's client id is a different principal.
    assert_eq!(
        store
            .admin_role(&Principal::User("ops-bot".into()))
            .await
            .unwrap(),
        None
    );

    // A second grant replaces the first.
    store
        .set_admin_role(
            &grant(&alice, &Role::Operator),
            event(Action::AdminRoleGranted),
        )
        .await
        .unwrap();
    assert_eq!(
        store.admin_role(&alice).await.unwrap(),
        Some(Role::Operator)
    );
    let all = store.admin_roles().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].principal, bot, "agents sort before users");

    // An unknown tenant is refused, and nothing (not even the event) is written.
    let ghost = Role::TenantAdmin {
        tenant_id: "ghost".into(),
    };
    let err = store
        .set_admin_role(&grant(&bot, &ghost), event(Action::AdminRoleGranted))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound("tenant")), "{err:?}");
    assert_eq!(store.admin_role(&bot).await.unwrap(), Some(Role::Operator));

    assert!(
        store
            .remove_admin_role(&alice, event(Action::AdminRoleRemoved))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_admin_role(&alice, event(Action::AdminRoleRemoved))
            .await
            .unwrap()
    );
    assert_eq!(store.admin_role(&alice).await.unwrap(), None);

    let events = store.events(&EventFilter::default()).await.unwrap();
    let count = |a: Action| events.iter().filter(|e| e.event.action == a).count();
    assert_eq!(count(Action::AdminRoleGranted), 3);
    assert_eq!(count(Action::AdminRoleRemoved), 1);
}
