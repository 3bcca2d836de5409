//! What every admin operation needs: the store, a clock reading, entropy, the API key policy,
//! and the caller's authority. Built from the HTTP request by the handlers, and directly by
//! the CLI when it works on a local database, so both run the same operations.

use crate::errors::{AdminError, ServerError};
use mandate_core::admin::{Authority, Principal, Role};
use mandate_core::api_key::ApiKeyPolicy;
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::grant::Grant;
use mandate_core::random::Entropy;
use mandate_core::time::Timestamp;
use mandate_store::{Store, StoreError};

pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub entropy: &'a dyn Entropy,
    pub now: Timestamp,
    pub api_keys: ApiKeyPolicy,
    pub authority: Authority,
    /// The grant behind the caller's token (none for the local CLI): changes that would end
    /// it are refused, so an administrator cannot lock themselves out by accident.
    pub own_grant: Option<Grant>,
    /// Recorded as the actor of every event the operation writes.
    pub actor: String,
    /// What kind of actor: an administrator, or the server itself (anomaly responses).
    pub actor_kind: ActorKind,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The server's metrics, told about revocations (none for the local CLI: it runs in
    /// another process, whose counts no scraper would see).
    pub metrics: Option<&'a crate::metrics::Metrics>,
}

impl<'a> Ctx<'a> {
    /// The CLI on the server's own database: an operator, recorded as `cli`.
    pub fn local(
        store: &'a dyn Store,
        entropy: &'a dyn Entropy,
        now: Timestamp,
        api_keys: ApiKeyPolicy,
    ) -> Self {
        Self {
            store,
            entropy,
            now,
            api_keys,
            authority: Authority {
                principal: Principal::Agent("cli".into()),
                role: Role::Operator,
            },
            own_grant: None,
            actor: "cli".into(),
            actor_kind: ActorKind::Admin,
            ip: None,
            user_agent: None,
            metrics: None,
        }
    }

    /// The server acting on its own (an anomaly rule's response), recorded as a system actor
    /// named `actor`, with an operator's reach.
    pub fn system(
        store: &'a dyn Store,
        entropy: &'a dyn Entropy,
        now: Timestamp,
        api_keys: ApiKeyPolicy,
        metrics: &'a crate::metrics::Metrics,
        actor: String,
    ) -> Self {
        Self {
            metrics: Some(metrics),
            actor_kind: ActorKind::System,
            authority: Authority {
                principal: Principal::Agent(actor.clone()),
                role: Role::Operator,
            },
            actor,
            ..Self::local(store, entropy, now, api_keys)
        }
    }

    /// Refuses a change aimed at the caller's own principal (disabling themselves, changing
    /// or removing their own role).
    pub fn spare_self(&self, target: &Principal) -> Result<(), ServerError> {
        if self.own_grant.is_some() && *target == self.authority.principal {
            return Err(lockout());
        }
        Ok(())
    }

    /// Refuses a revocation that would include the grant behind the caller's own token.
    pub fn spare_own_grant(&self, revokes: impl Fn(&Grant) -> bool) -> Result<(), ServerError> {
        if self.own_grant.as_ref().is_some_and(revokes) {
            return Err(lockout());
        }
        Ok(())
    }

    /// The tenant a listing or search covers: the one asked for, else a tenant admin's own
    /// (`None`: every tenant, for an operator who names none). `Err` when a tenant admin asks
    /// for another tenant: the answer is empty, as if it held nothing.
    pub fn listed_tenant<'s>(
        &'s self,
        asked: Option<&'s str>,
    ) -> Result<Option<&'s str>, OtherTenant> {
        match (asked, self.authority.tenant_filter()) {
            (Some(asked), Some(own)) if asked != own => Err(OtherTenant),
            (asked, own) => Ok(asked.or(own)),
        }
    }

    /// Counts a revocation this operation recorded.
    pub fn revoked(&self, action: Action) {
        if let Some(m) = self.metrics {
            m.revoked(action);
        }
    }

    /// An admin event with this caller as the actor.
    pub fn event(&self, action: Action) -> NewEvent {
        let mut event = NewEvent::new(self.now, action, self.actor_kind);
        event.actor_id = Some(self.actor.clone());
        event.ip.clone_from(&self.ip);
        event.user_agent.clone_from(&self.user_agent);
        event
    }
}

/// A tenant admin asked to list another tenant ([`Ctx::listed_tenant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtherTenant;

/// Maps a failure of the declarative apply (used for creation, so the API and `--config`
/// validate identically): storage failures stay internal, everything else is the caller's.
pub fn apply_error(e: anyhow::Error) -> ServerError {
    if e.chain().any(|c| c.is::<StoreError>()) {
        ServerError::Internal(e)
    } else {
        let message = e
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        AdminError::Invalid(message).into()
    }
}

fn lockout() -> ServerError {
    AdminError::Conflict(
        "this would end your own admin access; another administrator must do it".into(),
    )
    .into()
}

pub fn not_found(what: &str, id: &str) -> ServerError {
    AdminError::NotFound(format!("no {what} `{id}`")).into()
}
