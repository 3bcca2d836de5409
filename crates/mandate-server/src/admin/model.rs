//! The admin API's request and response bodies.
//!
//! These are the public contract, kept apart from the core and store types on purpose: the
//! core can change shape without breaking API clients, secrets (password and secret hashes)
//! have no field to leak through, and every type documents itself in the OpenAPI document.
//! Times are unix seconds.

use mandate_core::api_key::ApiKeyRecord;
use mandate_core::client::Agent;
use mandate_core::directory::{Tenant, User};
use mandate_core::grant::Grant;
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_store::{ScopeDef, StoredApiKey};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An error, in the same shape as RFC 6749 error responses.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `invalid_token`, `insufficient_scope`, `forbidden`, `not_found`,
    /// `conflict` or `server_error`.
    pub error: String,
    pub error_description: String,
}

/// Who is calling, and what they may administer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// `user` or `agent`.
    pub principal_kind: String,
    pub principal_id: String,
    /// `operator` or `tenant_admin`.
    pub role: String,
    /// The tenant a tenant admin is confined to.
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            name: t.name,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1-63 lowercase letters, digits, `-` or `_`, starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub tenant_id: String,
    pub login: String,
    pub display_name: String,
    pub disabled: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            tenant_id: u.tenant_id,
            login: u.login,
            display_name: u.display_name,
            disabled: u.disabled,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1-64 printable ASCII characters without spaces (an email address fits).
    #[schema(pattern = "^[!-~]{1,64}$")]
    pub login: String,
    pub tenant_id: String,
    pub display_name: Option<String>,
    /// At least 8 characters; stored as an argon2id hash, never returned.
    #[schema(min_length = 8, write_only)]
    pub password: String,
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentQuery {
    /// Only agents this tenant owns (a tenant admin sees only their tenant's anyway).
    pub tenant_id: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<u32>,
    /// Continue after this cursor: the `after` of the previous page's `Link: <...>;
    /// rel="next"` header.
    pub after: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Only users of this tenant.
    pub tenant_id: Option<String>,
    /// Only the user with this login.
    pub login: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<u32>,
    /// Continue after this cursor: the `after` of the previous page's `Link: <...>;
    /// rel="next"` header.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub client_id: String,
    pub name: String,
    /// `public` or `confidential`.
    pub kind: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub max_scopes: Vec<String>,
    /// Owner tenant; absent for a multi-tenant agent.
    pub tenant_id: Option<String>,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    pub default_resource: Option<String>,
    pub allowed_resources: Vec<String>,
    pub disabled: bool,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        Self {
            kind: a.kind.as_str().to_owned(),
            redirect_uris: a
                .redirect_uris
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            grant_types: a
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            max_scopes: scope_list(&a.max_scopes),
            client_id: a.client_id,
            name: a.name,
            tenant_id: a.tenant_id,
            access_token_ttl: a.access_token_ttl,
            refresh_token_ttl: a.refresh_token_ttl,
            default_resource: a.default_resource,
            allowed_resources: a.allowed_resources,
            disabled: a.disabled,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// 1-128 printable ASCII characters, no spaces and no `:`.
    #[schema(pattern = "^[!-9;-~]{1,128}$")]
    pub client_id: String,
    /// Display name; defaults to the client id.
    pub name: Option<String>,
    /// A confidential agent's secret is generated and shown once.
    pub kind: AgentKind,
    /// `authorization_code`, `refresh_token`, `client_credentials`. (Who may exchange tokens
    /// is the deployment's `[exchange]` policy, not a grant type.)
    pub grant_types: Vec<String>,
    pub max_scopes: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Owner tenant. A tenant admin's agents always belong to their tenant.
    pub tenant_id: Option<String>,
    pub default_resource: Option<String>,
    #[serde(default)]
    pub allowed_resources: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Public,
    Confidential,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Confidential => "confidential",
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedAgent {
    pub agent: AgentView,
    /// Shown once; only its hash is stored.
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScopeView {
    pub name: String,
    pub description: String,
    /// Sensitive scopes are highlighted on the consent page.
    pub sensitive: bool,
}

impl From<ScopeDef> for ScopeView {
    fn from(s: ScopeDef) -> Self {
        Self {
            name: s.name,
            description: s.description,
            sensitive: s.sensitive,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScope {
    /// An RFC 6749 §3.3 scope token.
    #[schema(pattern = "^[!#-\\[\\]-~]+$")]
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    /// The resource indicator (token audience).
    pub identifier: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// The resource server's own credential id (introspection, revocation feed).
    pub client_id: Option<String>,
}

impl From<ResourceServer> for ResourceView {
    fn from(r: ResourceServer) -> Self {
        Self {
            scopes: scope_list(&r.scopes),
            identifier: r.identifier,
            name: r.name,
            client_id: r.client_id,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewResource {
    pub identifier: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    /// Give the resource server a credential with this id; its secret is shown once.
    pub client_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedResource {
    pub resource: ResourceView,
    pub client_secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub tenant_id: String,
    /// Absent for a service identity's own grant.
    pub user_id: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub purpose: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
}

impl From<Grant> for GrantView {
    fn from(g: Grant) -> Self {
        Self {
            scopes: scope_list(&g.scopes),
            id: g.id,
            tenant_id: g.tenant_id,
            user_id: g.user_id,
            client_id: g.client_id,
            purpose: g.purpose,
            created_at: g.created_at.unix(),
            expires_at: g.expires_at.map(|t| t.unix()),
            revoked_at: g.revoked_at.map(|t| t.unix()),
            revoked_reason: g.revoked_reason,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantQuery {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// Include revoked grants.
    #[serde(default)]
    pub include_revoked: bool,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<u32>,
    /// Continue after this cursor: the `after` of the previous page's `Link: <...>;
    /// rel="next"` header.
    pub after: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Recorded on the grant or key and in the audit log.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub id: String,
    /// `false` if it was already revoked.
    pub was_active: bool,
}

/// Exactly one target: `user_id`, `tenant_id`, `client_id`, or `client_id` with `tenant_id`
/// (an agent within one tenant).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRevocationRequest {
    pub user_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkRevocationResult {
    /// Grants revoked by this request (not those revoked before). Every refresh token of a
    /// revoked grant stops working with it.
    pub grants: u64,
    pub api_keys: u64,
    /// Sequence number of the event (and revocation feed entry) recording it.
    pub event_seq: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    /// `mkid_...`: the key's public id.
    pub id: String,
    pub tenant_id: String,
    /// The user the key acts for; absent for a tenant-level integration key.
    pub user_id: Option<String>,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub created_by: Option<String>,
    pub revoked_by: Option<String>,
    pub replaces: Option<String>,
    pub replaced_by: Option<String>,
}

impl From<StoredApiKey> for ApiKeyView {
    fn from(k: StoredApiKey) -> Self {
        Self {
            created_by: k.created_by,
            revoked_reason: k.revoked_reason,
            revoked_by: k.revoked_by,
            replaced_by: k.replaced_by.map(|id| id.to_string()),
            ..Self::from(k.record)
        }
    }
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            id: r.id.to_string(),
            scopes: scope_list(&r.scopes),
            tenant_id: r.tenant_id,
            user_id: r.user_id,
            name: r.name,
            created_at: r.created_at.unix(),
            expires_at: r.expires_at.unix(),
            last_used_at: r.last_used_at.map(|t| t.unix()),
            revoked_at: r.revoked_at.map(|t| t.unix()),
            revoked_reason: None,
            created_by: None,
            revoked_by: None,
            replaces: r.replaces.map(|id| id.to_string()),
            replaced_by: None,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiKeyQuery {
    /// The tenant whose keys to list (a tenant admin's own tenant; every tenant's for an
    /// operator who names none).
    pub tenant_id: Option<String>,
    /// At most this many items (1-1000, default 100).
    pub limit: Option<u32>,
    /// Continue after this cursor: the `after` of the previous page's `Link: <...>;
    /// rel="next"` header.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub tenant_id: String,
    /// The user the key acts for (in the same tenant); absent for a tenant-level key.
    pub user_id: Option<String>,
    pub name: String,
    pub scopes: Vec<String>,
    /// Lifetime in seconds; required, at most the configured maximum.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKeyView,
    /// `mk_...`: shown once, only its hash is stored.
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Lifetime of the successor, in seconds.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedApiKey {
    pub api_key: ApiKeyView,
    /// The successor key, shown once.
    pub key: String,
    pub replaces: String,
    /// Until when the old key keeps working.
    pub predecessor_expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    /// `user` or `agent`.
    pub principal_kind: String,
    /// A user id or an agent's client id.
    pub principal_id: String,
    /// `operator` or `tenant_admin`.
    pub role: String,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub principal_kind: PrincipalKind,
    pub principal_id: String,
    pub role: RoleName,
    /// Required for `tenant_admin`; a user's must be their own tenant.
    pub tenant_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    Agent,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// Every tenant and the shared catalog (without `tenant_id`).
    Operator,
    /// One tenant (with `tenant_id`).
    TenantAdmin,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::TenantAdmin => "tenant_admin",
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Removed {
    /// `false` if there was nothing to remove.
    pub removed: bool,
}

fn scope_list(scopes: &ScopeSet) -> Vec<String> {
    scopes.iter().map(str::to_owned).collect()
}

/// Which audit events to list. Every filter that is set must match.
#[derive(Debug, Default, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    /// The agent (OAuth client id).
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    /// One action name, e.g. `token.issued` or `grant.revoked`.
    pub action: Option<String>,
    /// Events at or after this time: Unix seconds or RFC 3339.
    pub since: Option<String>,
    /// Events before this time: Unix seconds or RFC 3339.
    pub until: Option<String>,
    /// Events after this sequence number (paging oldest first, or following the log).
    pub after: Option<i64>,
    /// Events before this sequence number (paging newest first).
    pub before: Option<i64>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<String>,
    /// At most this many events (1-1000, default 100).
    pub limit: Option<u32>,
}

/// One audit event. No event ever carries a secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Position in the hash-chained log: gapless, in commit order.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// The same instant, RFC 3339 in UTC.
    pub time: String,
    pub action: String,
    /// `user`, `agent`, `admin` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    /// Space-separated scopes.
    pub scopes: Option<String>,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Action-specific details (grant type, audience, delegation chain, purpose...); `null`
    /// when the action has none.
    #[schema(value_type = Option<Object>)]
    pub detail: serde_json::Value,
}

impl From<mandate_core::event::Event> for EventView {
    fn from(e: mandate_core::event::Event) -> Self {
        let n = e.event;
        Self {
            seq: e.seq,
            at: n.at.unix(),
            time: n.at.to_rfc3339(),
            action: n.action.as_str().to_owned(),
            actor_kind: n.actor_kind.as_str().to_owned(),
            actor_id: n.actor_id,
            tenant_id: n.tenant_id,
            user_id: n.user_id,
            client_id: n.client_id,
            grant_id: n.grant_id,
            scopes: n.scopes,
            reason: n.reason,
            ip: n.ip,
            user_agent: n.user_agent,
            detail: n.detail,
        }
    }
}

/// A page of audit events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// The last event's sequence number: pass it as `after` (oldest first) or `before`
    /// (newest first) for the next page. Absent when the page is empty.
    pub last_seq: Option<i64>,
    /// Whether the page is full, so more events may match.
    pub has_more: bool,
}
