//! Who may administer what: the roles behind the admin API and the rule that confines a
//! tenant admin to their own tenant.
//!
//! Administration is not a separate login system: an administrator presents an ordinary
//! Mandate access token whose audience is the admin API ([`resource_identifier`]) and which
//! carries [`ADMIN_SCOPE`]. The token says who is calling; the role, looked up at every
//! request, says what they may do, so removing a role takes effect at once even for tokens
//! already issued. Two roles exist:
//!
//! - [`Role::Operator`]: runs the deployment. Every tenant, the scope catalog, resources and
//!   agents shared between tenants.
//! - [`Role::TenantAdmin`]: runs one tenant. Sees and changes only that tenant's users,
//!   agents, grants and API keys; reads the shared catalog but cannot change it. Anything
//!   in another tenant is reported as not found, so its existence does not leak.
//!
//! Roles are held by a [`Principal`]: a user (the person behind a code-flow token) or an agent
//! (a service identity using client credentials). Tokens obtained by exchange (they carry an
//! `act` chain) or from an API key never administer: administration is not delegable.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The scope an admin API token must carry.
pub const ADMIN_SCOPE: &str = "mandate.admin";

/// Path of the admin API below the issuer.
pub const ADMIN_PATH: &str = "/admin/v1";

/// The admin API's resource indicator (token audience): the issuer URL plus [`ADMIN_PATH`].
pub fn resource_identifier(issuer: &str) -> String {
    format!("{}{ADMIN_PATH}", issuer.trim_end_matches('/'))
}

/// Who holds a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Principal {
    /// A user, by id.
    User(String),
    /// An agent acting as itself (client credentials), by client id.
    Agent(String),
}

impl Principal {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Agent(_) => "agent",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::User(id) | Self::Agent(id) => id,
        }
    }

    /// Rebuilds a principal from its stored kind and id.
    pub fn from_parts(kind: &str, id: &str) -> Option<Self> {
        match kind {
            "user" => Some(Self::User(id.to_owned())),
            "agent" => Some(Self::Agent(id.to_owned())),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    /// `user:<id>` or `agent:<client id>`: the actor id recorded on admin events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// What a principal may administer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    Operator,
    TenantAdmin { tenant_id: String },
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::TenantAdmin { .. } => "tenant_admin",
        }
    }

    /// The tenant a tenant admin is confined to; `None` for an operator.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Operator => None,
            Self::TenantAdmin { tenant_id } => Some(tenant_id),
        }
    }

    /// Rebuilds a role from its stored name and tenant.
    pub fn from_parts(name: &str, tenant_id: Option<&str>) -> Option<Self> {
        match (name, tenant_id) {
            ("operator", None) => Some(Self::Operator),
            ("tenant_admin", Some(t)) => Some(Self::TenantAdmin {
                tenant_id: t.to_owned(),
            }),
            _ => None,
        }
    }
}

/// A role held by a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    pub principal: Principal,
    pub role: Role,
}

/// Why an assignment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("this principal can only be tenant admin of its own tenant `{0}`")]
    ForeignTenant(String),
}

/// Checks an assignment against the principal's own tenant (a user's tenant; an agent's owner
/// tenant, `None` for a multi-tenant agent). A user, or an agent owned by a tenant, may only
/// administer that tenant; a multi-tenant service agent may be tenant admin of any one tenant
/// (an integration the operator runs for that tenant).
pub fn check_assignment(
    assignment: &RoleAssignment,
    principal_tenant: Option<&str>,
) -> Result<(), AssignmentError> {
    let Role::TenantAdmin { tenant_id } = &assignment.role else {
        return Ok(());
    };
    let confined = match assignment.principal {
        Principal::User(_) => true,
        Principal::Agent(_) => principal_tenant.is_some(),
    };
    if confined && principal_tenant != Some(tenant_id.as_str()) {
        return Err(AssignmentError::ForeignTenant(
            principal_tenant.unwrap_or_default().to_owned(),
        ));
    }
    Ok(())
}

/// The authority of one admin request: its principal and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub principal: Principal,
    pub role: Role,
}

/// Why an admin request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The object exists in another tenant (or is deployment-wide): answer "not found".
    #[error("not found")]
    Hidden,
    /// The caller may see this but not change it (the shared catalog for a tenant admin).
    #[error("{0}")]
    Forbidden(&'static str),
}

impl Authority {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The tenant every list is narrowed to; `None` means all tenants.
    pub fn tenant_filter(&self) -> Option<&str> {
        self.role.tenant()
    }

    /// May see (and, through the per-object rules, change) things in `tenant_id`.
    pub fn can_reach_tenant(&self, tenant_id: &str) -> bool {
        self.role.tenant().is_none_or(|own| own == tenant_id)
    }

    /// Gate for an object that lives in `tenant_id`.
    pub fn reach(&self, tenant_id: &str) -> Result<(), Denied> {
        if self.can_reach_tenant(tenant_id) {
            Ok(())
        } else {
            Err(Denied::Hidden)
        }
    }

    /// Gate for an agent owned by `owner` (`None`: multi-tenant). A tenant admin reads and
    /// manages only agents their tenant owns; multi-tenant agents belong to the operator.
    pub fn reach_agent(&self, owner: Option<&str>) -> Result<(), Denied> {
        match (self.role.tenant(), owner) {
            (None, _) => Ok(()),
            (Some(own), Some(owner)) if own == owner => Ok(()),
            _ => Err(Denied::Hidden),
        }
    }

    /// Gate for deployment-wide changes: tenants, the scope catalog, resources, roles.
    pub fn operate(&self) -> Result<(), Denied> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Denied::Forbidden("only an operator may change this"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant_admin(t: &str) -> Authority {
        Authority {
            principal: Principal::User("u1".into()),
            role: Role::TenantAdmin {
                tenant_id: t.into(),
            },
        }
    }

    fn operator() -> Authority {
        Authority {
            principal: Principal::Agent("ops".into()),
            role: Role::Operator,
        }
    }

    #[test]
    fn tenant_admin_reaches_only_own_tenant() {
        let a = tenant_admin("acme");
        assert!(a.reach("acme").is_ok());
        assert_eq!(a.reach("globex"), Err(Denied::Hidden));
        assert_eq!(a.tenant_filter(), Some("acme"));
        assert!(a.reach_agent(Some("acme")).is_ok());
        assert_eq!(a.reach_agent(Some("globex")), Err(Denied::Hidden));
        assert_eq!(a.reach_agent(None), Err(Denied::Hidden));
        assert!(matches!(a.operate(), Err(Denied::Forbidden(_))));
    }

    #[test]
    fn operator_reaches_everything() {
        let o = operator();
        assert!(o.reach("acme").is_ok() && o.reach("globex").is_ok());
        assert!(o.reach_agent(None).is_ok());
        assert!(o.operate().is_ok());
        assert_eq!(o.tenant_filter(), None);
    }

    #[test]
    fn users_administer_only_their_own_tenant() {
        let bad = RoleAssignment {
            principal: Principal::User("bob".into()),
            role: Role::TenantAdmin {
                tenant_id: "globex".into(),
            },
        };
        assert!(check_assignment(&bad, Some("acme")).is_err());
        assert!(check_assignment(&bad, Some("globex")).is_ok());
        let agent = RoleAssignment {
            principal: Principal::Agent("bot".into()),
            role: Role::TenantAdmin {
                tenant_id: "globex".into(),
            },
        };
        assert!(check_assignment(&agent, None).is_ok());
        assert!(check_assignment(&agent, Some("acme")).is_err());
    }

    #[test]
    fn parts_round_trip() {
        for p in [Principal::User("a".into()), Principal::Agent("b".into())] {
            assert_eq!(Principal::from_parts(p.kind(), p.id()), Some(p.clone()));
        }
        for r in [
            Role::Operator,
            Role::TenantAdmin {
                tenant_id: "t".into(),
            },
        ] {
            assert_eq!(Role::from_parts(r.as_str(), r.tenant()), Some(r.clone()));
        }
        assert_eq!(Role::from_parts("operator", Some("t")), None);
        assert_eq!(Role::from_parts("tenant_admin", None), None);
        assert_eq!(Principal::from_parts("robot", "x"), None);
        assert_eq!(
            resource_identifier("https://a.example/"),
            "https://a.example/admin/v1"
        );
    }
}
