//! Admin roles: who may use the admin API, and over which tenant.
//!
//! One row per principal (primary key `(principal_kind, principal_id)`), so giving a new role
//! replaces the old one in a single upsert; the change and its event commit together. The
//! admin API reads a caller's role by primary key on every request, which is what makes
//! removing a role take effect at once.

use crate::{StoreError, StoreResult};
use mandate_core::admin::{Principal, Role, RoleAssignment};

pub(crate) const UPSERT: &str = "INSERT INTO admin_roles \
     (principal_kind, principal_id, role, tenant_id, granted_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (principal_kind, principal_id) \
     DO UPDATE SET role = $3, tenant_id = $4, granted_at = $5";
pub(crate) const DELETE: &str =
    "DELETE FROM admin_roles WHERE principal_kind = $1 AND principal_id = $2";
pub(crate) const ONE: &str = "SELECT principal_kind, principal_id, role, tenant_id \
     FROM admin_roles WHERE principal_kind = $1 AND principal_id = $2";
pub(crate) const ALL: &str = "SELECT principal_kind, principal_id, role, tenant_id \
     FROM admin_roles ORDER BY principal_kind, principal_id";

#[derive(sqlx::FromRow)]
pub(crate) struct RoleRow {
    principal_kind: String,
    principal_id: String,
    role: String,
    tenant_id: Option<String>,
}

impl TryFrom<RoleRow> for RoleAssignment {
    type Error = StoreError;

    fn try_from(r: RoleRow) -> StoreResult<Self> {
        let principal = Principal::from_parts(&r.principal_kind, &r.principal_id)
            .ok_or(StoreError::Corrupt("admin role principal"))?;
        let role = Role::from_parts(&r.role, r.tenant_id.as_deref())
            .ok_or(StoreError::Corrupt("admin role"))?;
        Ok(RoleAssignment { principal, role })
    }
}

macro_rules! impl_admin_roles {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::AdminRoles for $store {
            async fn set_admin_role(
                &self,
                assignment: &::mandate_core::admin::RoleAssignment,
                event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                ::sqlx::query($crate::sql::admin_roles::UPSERT)
                    .bind(assignment.principal.kind())
                    .bind(assignment.principal.id())
                    .bind(assignment.role.as_str())
                    .bind(assignment.role.tenant())
                    .bind(event.at.unix())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::sql::write_error("admin role", "tenant"))?;
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(())
            }

            async fn remove_admin_role(
                &self,
                principal: &::mandate_core::admin::Principal,
                event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = ::sqlx::query($crate::sql::admin_roles::DELETE)
                    .bind(principal.kind())
                    .bind(principal.id())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(true)
            }

            async fn admin_role(
                &self,
                principal: &::mandate_core::admin::Principal,
            ) -> $crate::StoreResult<Option<::mandate_core::admin::Role>> {
                let row = ::sqlx::query_as::<_, $crate::sql::admin_roles::RoleRow>(
                    $crate::sql::admin_roles::ONE,
                )
                .bind(principal.kind())
                .bind(principal.id())
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| ::mandate_core::admin::RoleAssignment::try_from(r).map(|a| a.role))
                    .transpose()
            }

            async fn admin_roles(
                &self,
            ) -> $crate::StoreResult<Vec<::mandate_core::admin::RoleAssignment>> {
                ::sqlx::query_as::<_, $crate::sql::admin_roles::RoleRow>(
                    $crate::sql::admin_roles::ALL,
                )
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }
        }
    };
}
pub(crate) use impl_admin_roles;
