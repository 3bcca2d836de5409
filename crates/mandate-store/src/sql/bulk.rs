//! Bulk revocation: every grant of a user (offboarding), a tenant (integration disabled), an
//! agent (compromised agent), or an agent within one tenant.
//!
//! One transaction per request, two statements and one event:
//!
//! 1. `UPDATE grants ... WHERE <target> AND revoked_at IS NULL`: the count of grants revoked.
//!    This is what introspection and refresh read (`grants.revoked_at`, with every family
//!    lookup: [`crate::model::FamilyLookup::revoked_at`]), so every token of those grants,
//!    access or refresh, is refused from the commit on. Their refresh families are not
//!    written: a tenant's revocation touches its grants, not its millions of families.
//! 2. For a user or tenant target, `UPDATE api_keys ...`: keys are tenant-bound and optionally
//!    user-bound, so offboarding a user revokes that user's keys and disabling a tenant revokes
//!    all of the tenant's keys. Keys belong to no agent, so agent targets leave them alone.
//! 3. ONE event (`user.grants_revoked`, `tenant.grants_revoked`, `agent.grants_revoked`,
//!    `agent.tenant_grants_revoked`) with the counts in `detail`, which the revocation feed
//!    turns into one entry matched against token claims (`sub`, `tenant`, `client_id`). That
//!    entry also covers tokens obtained with the revoked API keys: their `sub` is the key's
//!    user (or the key id) and their `tenant` the key's tenant. A per-grant event would flood
//!    the feed with thousands of entries for one offboarding.
//!
//! The target columns are indexed (`grants_user`, `grants_active` by tenant, `grants_client`,
//! `api_keys_user`, `api_keys_tenant`), so the work is proportional to the target's grants and
//! keys, never a scan of everyone's.

use super::events::add_detail;
use crate::model::BulkTarget;
use mandate_core::event::{Action, NewEvent};
use serde_json::json;

/// The statements for one kind of target. Placeholders: `grants` binds `$1` time, `$2` reason,
/// then the target; `api_keys` `$1` time, `$2` reason, `$3` revoked by, then the target.
pub(crate) struct Statements {
    pub(crate) grants: &'static str,
    pub(crate) api_keys: Option<&'static str>,
    pub(crate) action: Action,
}

const USER: Statements = Statements {
    grants: "UPDATE grants SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL",
    api_keys: Some(
        "UPDATE api_keys SET revoked_at = $1, revoked_reason = $2, revoked_by = $3 \
         WHERE user_id = $4 AND revoked_at IS NULL",
    ),
    action: Action::UserGrantsRevoked,
};

const TENANT: Statements = Statements {
    grants: "UPDATE grants SET revoked_at = $1, revoked_reason = $2 \
             WHERE tenant_id = $3 AND revoked_at IS NULL",
    api_keys: Some(
        "UPDATE api_keys SET revoked_at = $1, revoked_reason = $2, revoked_by = $3 \
         WHERE tenant_id = $4 AND revoked_at IS NULL",
    ),
    action: Action::TenantGrantsRevoked,
};

const AGENT: Statements = Statements {
    grants: "UPDATE grants SET revoked_at = $1, revoked_reason = $2 \
             WHERE client_id = $3 AND revoked_at IS NULL",
    api_keys: None,
    action: Action::AgentGrantsRevoked,
};

const AGENT_IN_TENANT: Statements = Statements {
    grants: "UPDATE grants SET revoked_at = $1, revoked_reason = $2 \
             WHERE client_id = $3 AND tenant_id = $4 AND revoked_at IS NULL",
    api_keys: None,
    action: Action::AgentTenantGrantsRevoked,
};

/// The tenant of a user, for the event of a user revocation.
pub(crate) const USER_TENANT: &str = "SELECT tenant_id FROM users WHERE id = $1";

/// The statements for `target` and its values, in placeholder order.
pub(crate) fn statements(target: &BulkTarget) -> (&'static Statements, Vec<&str>) {
    match target {
        BulkTarget::User { user_id } => (&USER, vec![user_id.as_str()]),
        BulkTarget::Tenant { tenant_id } => (&TENANT, vec![tenant_id.as_str()]),
        BulkTarget::Agent { client_id } => (&AGENT, vec![client_id.as_str()]),
        BulkTarget::AgentInTenant {
            client_id,
            tenant_id,
        } => (
            &AGENT_IN_TENANT,
            vec![client_id.as_str(), tenant_id.as_str()],
        ),
    }
}

/// Rows a revocation changed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) grants: u64,
    pub(crate) api_keys: u64,
}

/// Fills in the fields of the bulk event that describe the revocation. `user_tenant` is the
/// tenant of a user target (if the user exists).
pub(crate) fn describe(
    event: &mut NewEvent,
    action: Action,
    target: &BulkTarget,
    user_tenant: Option<String>,
    reason: &str,
    counts: Counts,
) {
    event.action = action;
    event.grant_id = None;
    event.reason = Some(reason.to_owned());
    let (tenant, user, client) = match target {
        BulkTarget::User { user_id } => (user_tenant, Some(user_id.clone()), None),
        BulkTarget::Tenant { tenant_id } => (Some(tenant_id.clone()), None, None),
        BulkTarget::Agent { client_id } => (None, None, Some(client_id.clone())),
        BulkTarget::AgentInTenant {
            client_id,
            tenant_id,
        } => (Some(tenant_id.clone()), None, Some(client_id.clone())),
    };
    event.tenant_id = tenant;
    event.user_id = user;
    event.client_id = client;
    add_detail(
        event,
        [
            ("grants", json!(counts.grants)),
            ("api_keys", json!(counts.api_keys)),
        ],
    );
}

macro_rules! impl_bulk {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Runs the revocation statements for `target` inside `tx` (see the module docs).
            pub(crate) async fn revoke_target_in(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                target: &$crate::model::BulkTarget,
                at: ::mandate_core::time::Timestamp,
                reason: &str,
                by: Option<&str>,
            ) -> $crate::StoreResult<$crate::sql::bulk::Counts> {
                let (sql, values) = $crate::sql::bulk::statements(target);
                let mut query = ::sqlx::query(sql.grants).bind(at.unix()).bind(reason);
                for value in &values {
                    query = query.bind(*value);
                }
                let grants = query.execute(&mut **tx).await?.rows_affected();
                let mut api_keys = 0;
                if let Some(keys) = sql.api_keys {
                    let mut query = ::sqlx::query(keys).bind(at.unix()).bind(reason).bind(by);
                    for value in &values {
                        query = query.bind(*value);
                    }
                    api_keys = query.execute(&mut **tx).await?.rows_affected();
                }
                Ok($crate::sql::bulk::Counts { grants, api_keys })
            }
        }

        #[::async_trait::async_trait]
        impl $crate::BulkRevocation for $store {
            async fn revoke_in_bulk(
                &self,
                target: &$crate::model::BulkTarget,
                reason: &str,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<$crate::model::BulkRevoked> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                let mut tx = self.pool.begin().await?;
                let counts = Self::revoke_target_in(
                    &mut tx,
                    target,
                    event.at,
                    reason,
                    event.actor_id.as_deref(),
                )
                .await?;
                let user_tenant = match target {
                    $crate::model::BulkTarget::User { user_id } => {
                        ::sqlx::query_scalar::<_, String>($crate::sql::bulk::USER_TENANT)
                            .bind(user_id)
                            .fetch_optional(&mut *tx)
                            .await?
                    }
                    _ => None,
                };
                let (sql, _) = $crate::sql::bulk::statements(target);
                $crate::sql::bulk::describe(
                    &mut event,
                    sql.action,
                    target,
                    user_tenant,
                    reason,
                    counts,
                );
                let event_seq = Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok($crate::model::BulkRevoked {
                    grants: counts.grants,
                    api_keys: counts.api_keys,
                    event_seq,
                })
            }
        }
    };
}
pub(crate) use impl_bulk;
