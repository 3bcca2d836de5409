//! Tenants, users, agents and the scope/resource catalog: who exists and what may be asked for.
//!
//! Agents keep their list-valued registration fields (redirect URIs, grant types, allowed
//! resources) as JSON text arrays, and scope sets as their canonical space-separated string,
//! so one row holds one registration and the same columns work on both backends.

use super::{from_bigint, scopes, to_bigint};
use crate::model::ScopeDef;
use crate::{StoreError, StoreResult};
use mandate_core::client::{Agent, ClientKind, GrantType};
use mandate_core::directory::{Tenant, User};
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::resource::ResourceServer;
use serde_json::Value;

pub(crate) const UPSERT_TENANT: &str = "INSERT INTO tenants (id, name) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name";
pub(crate) const TENANT: &str = "SELECT id, name FROM tenants WHERE id = $1";
pub(crate) const TENANTS: &str = "SELECT id, name FROM tenants ORDER BY id";

macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, tenant_id, login, display_name, password_hash, disabled FROM users ",
            $rest
        )
    };
}
pub(crate) const USER_BY_ID: &str = select_users!("WHERE id = $1");
pub(crate) const USER_BY_LOGIN: &str = select_users!("WHERE login = $1");

/// The users with these ids (`$1 ... $n`).
pub(crate) fn users_by_ids_query(ids: &[String]) -> (String, Vec<super::Bind<'_>>) {
    let mut c = super::Conditions::new(1);
    c.any_of("id", ids);
    let (clause, binds) = c.finish();
    (format!("{}{clause}", select_users!("")), binds)
}
pub(crate) const INSERT_USER: &str = "INSERT INTO users \
     (id, tenant_id, login, display_name, password_hash, disabled) \
     VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const UPDATE_USER: &str = "UPDATE users \
     SET tenant_id = $2, display_name = $3, password_hash = $4, disabled = $5 WHERE id = $1";

macro_rules! select_agents {
    ($rest:literal) => {
        concat!(
            "SELECT client_id, name, kind, secret_hash, redirect_uris, grant_types, max_scopes, \
             tenant_id, access_token_ttl, refresh_token_ttl, default_resource, \
             allowed_resources, disabled FROM agents ",
            $rest
        )
    };
}
pub(crate) const AGENT: &str = select_agents!("WHERE client_id = $1");

/// A listing of one of the directory's tables, of one tenant or all, ordered by a unique key:
/// users by login (the unique login index, or `users_tenant (tenant_id, login)`), agents by
/// client id (the primary key, or `agents_tenant (tenant_id, client_id)`).
pub(crate) struct Listing {
    select: &'static str,
    table: &'static str,
    key: &'static str,
}

pub(crate) const USER_LISTING: Listing = Listing {
    select: select_users!(""),
    table: "users",
    key: "login",
};

pub(crate) const AGENT_LISTING: Listing = Listing {
    select: select_agents!(""),
    table: "agents",
    key: "client_id",
};

impl Listing {
    /// One page, read from the cursor (the previous page's last key) on.
    pub(crate) fn page<'a>(
        &self,
        tenant_id: Option<&'a str>,
        after: Option<&'a str>,
        limit: u32,
    ) -> (String, Vec<super::Bind<'a>>) {
        let mut c = super::Conditions::new(1);
        c.eq("tenant_id", tenant_id);
        c.after(self.key, after);
        c.page(self.select, self.key, limit)
    }

    /// How many rows there are, counting no further than `cap`.
    pub(crate) fn count<'a>(
        &self,
        tenant_id: Option<&'a str>,
        cap: u32,
    ) -> (String, Vec<super::Bind<'a>>) {
        let mut c = super::Conditions::new(1);
        c.eq("tenant_id", tenant_id);
        c.capped_count(self.table, cap)
    }
}

pub(crate) const UPSERT_AGENT: &str = "INSERT INTO agents (client_id, name, kind, secret_hash, \
     redirect_uris, grant_types, max_scopes, tenant_id, access_token_ttl, refresh_token_ttl, \
     default_resource, allowed_resources, disabled) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
     secret_hash = excluded.secret_hash, redirect_uris = excluded.redirect_uris, \
     grant_types = excluded.grant_types, max_scopes = excluded.max_scopes, \
     tenant_id = excluded.tenant_id, access_token_ttl = excluded.access_token_ttl, \
     refresh_token_ttl = excluded.refresh_token_ttl, \
     default_resource = excluded.default_resource, \
     allowed_resources = excluded.allowed_resources, disabled = excluded.disabled";

pub(crate) const UPSERT_SCOPE: &str = "INSERT INTO scopes (name, description, sensitive) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
     SET description = excluded.description, sensitive = excluded.sensitive";
pub(crate) const SCOPES: &str = "SELECT name, description, sensitive FROM scopes ORDER BY name";
pub(crate) const UPSERT_RESOURCE: &str = "INSERT INTO resources \
     (identifier, name, scopes, client_id, secret_hash) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (identifier) DO UPDATE SET name = excluded.name, scopes = excluded.scopes, \
     client_id = excluded.client_id, secret_hash = excluded.secret_hash";
pub(crate) const RESOURCES: &str = "SELECT identifier, name, scopes, client_id, secret_hash \
     FROM resources ORDER BY identifier";

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    name: String,
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        Tenant {
            id: r.id,
            name: r.name,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    tenant_id: String,
    login: String,
    display_name: String,
    password_hash: String,
    disabled: bool,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            tenant_id: r.tenant_id,
            login: r.login,
            display_name: r.display_name,
            password_hash: r.password_hash,
            disabled: r.disabled,
        }
    }
}

/// Binds an agent's thirteen columns, in `UPSERT_AGENT` order (the order every agent write
/// uses), to a query.
macro_rules! bind_agent {
    ($query:expr, $agent:expr) => {{
        let c = $crate::sql::directory::AgentColumns::of($agent);
        $query
            .bind(&$agent.client_id)
            .bind(&$agent.name)
            .bind($agent.kind.as_str())
            .bind(&$agent.secret_hash)
            .bind(c.redirect_uris)
            .bind(c.grant_types)
            .bind(c.max_scopes)
            .bind(&$agent.tenant_id)
            .bind(c.access_token_ttl)
            .bind(c.refresh_token_ttl)
            .bind(&$agent.default_resource)
            .bind(c.allowed_resources)
            .bind($agent.disabled)
    }};
}
pub(crate) use bind_agent;

/// An agent's columns in their stored form, ready to bind in `UPSERT_AGENT` order.
pub(crate) struct AgentColumns {
    pub(crate) redirect_uris: String,
    pub(crate) grant_types: String,
    pub(crate) max_scopes: String,
    pub(crate) access_token_ttl: i64,
    pub(crate) refresh_token_ttl: i64,
    pub(crate) allowed_resources: String,
}

impl AgentColumns {
    pub(crate) fn of(agent: &Agent) -> Self {
        Self {
            redirect_uris: json_strings(agent.redirect_uris.iter().map(RedirectUri::as_str)),
            grant_types: json_strings(agent.grant_types.iter().map(|g| g.as_str())),
            max_scopes: agent.max_scopes.to_string(),
            access_token_ttl: to_bigint(agent.access_token_ttl),
            refresh_token_ttl: to_bigint(agent.refresh_token_ttl),
            allowed_resources: json_strings(agent.allowed_resources.iter().map(String::as_str)),
        }
    }
}

fn json_strings<'a>(items: impl Iterator<Item = &'a str>) -> String {
    Value::Array(items.map(|s| Value::String(s.to_owned())).collect()).to_string()
}

fn parse_json_strings(stored: &str, what: &'static str) -> StoreResult<Vec<String>> {
    serde_json::from_str(stored).map_err(|_| StoreError::Corrupt(what))
}

#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    client_id: String,
    name: String,
    kind: String,
    secret_hash: Option<String>,
    redirect_uris: String,
    grant_types: String,
    max_scopes: String,
    tenant_id: Option<String>,
    access_token_ttl: i64,
    refresh_token_ttl: i64,
    default_resource: Option<String>,
    allowed_resources: String,
    disabled: bool,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> StoreResult<Self> {
        let redirect_uris = parse_json_strings(&r.redirect_uris, "agent redirect URIs")?
            .iter()
            .map(|u| RedirectUri::parse(u).map_err(|_| StoreError::Corrupt("agent redirect URI")))
            .collect::<StoreResult<Vec<_>>>()?;
        let grant_types = parse_json_strings(&r.grant_types, "agent grant types")?
            .iter()
            .map(|g| {
                g.parse::<GrantType>()
                    .map_err(|_| StoreError::Corrupt("agent grant type"))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Agent {
            client_id: r.client_id,
            name: r.name,
            kind: r
                .kind
                .parse::<ClientKind>()
                .map_err(|_| StoreError::Corrupt("agent kind"))?,
            secret_hash: r.secret_hash,
            redirect_uris,
            grant_types,
            max_scopes: scopes(&r.max_scopes, "agent scopes")?,
            tenant_id: r.tenant_id,
            access_token_ttl: from_bigint(r.access_token_ttl, "agent access token lifetime")?,
            refresh_token_ttl: from_bigint(r.refresh_token_ttl, "agent refresh token lifetime")?,
            default_resource: r.default_resource,
            allowed_resources: parse_json_strings(&r.allowed_resources, "agent resources")?,
            disabled: r.disabled,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ScopeRow {
    name: String,
    description: String,
    sensitive: bool,
}

impl From<ScopeRow> for ScopeDef {
    fn from(r: ScopeRow) -> Self {
        ScopeDef {
            name: r.name,
            description: r.description,
            sensitive: r.sensitive,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ResourceRow {
    identifier: String,
    name: String,
    scopes: String,
    client_id: Option<String>,
    secret_hash: Option<String>,
}

impl TryFrom<ResourceRow> for ResourceServer {
    type Error = StoreError;
    fn try_from(r: ResourceRow) -> StoreResult<Self> {
        Ok(ResourceServer {
            identifier: r.identifier,
            name: r.name,
            scopes: scopes(&r.scopes, "resource scopes")?,
            client_id: r.client_id,
            secret_hash: r.secret_hash,
        })
    }
}

macro_rules! impl_directory {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::TenantStore for $store {
            async fn upsert_tenant(
                &self,
                tenant: &::mandate_core::directory::Tenant,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::directory::UPSERT_TENANT)
                    .bind(&tenant.id)
                    .bind(&tenant.name)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn tenant(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Option<::mandate_core::directory::Tenant>> {
                let row = ::sqlx::query_as::<_, $crate::sql::directory::TenantRow>(
                    $crate::sql::directory::TENANT,
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn tenants(&self) -> $crate::StoreResult<Vec<::mandate_core::directory::Tenant>> {
                let rows = ::sqlx::query_as::<_, $crate::sql::directory::TenantRow>(
                    $crate::sql::directory::TENANTS,
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::UserStore for $store {
            async fn create_user(
                &self,
                user: &::mandate_core::directory::User,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::directory::INSERT_USER)
                    .bind(&user.id)
                    .bind(&user.tenant_id)
                    .bind(&user.login)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(user.disabled)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("user", "tenant"))?;
                Ok(())
            }

            async fn update_user(
                &self,
                user: &::mandate_core::directory::User,
            ) -> $crate::StoreResult<()> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                let done = ::sqlx::query($crate::sql::directory::UPDATE_USER)
                    .bind(&user.id)
                    .bind(&user.tenant_id)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(user.disabled)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("user", "tenant"))?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound("user"));
                }
                Ok(())
            }

            async fn user(
                &self,
                id: &str,
            ) -> $crate::StoreResult<Option<::mandate_core::directory::User>> {
                let row = ::sqlx::query_as::<_, $crate::sql::directory::UserRow>(
                    $crate::sql::directory::USER_BY_ID,
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn user_by_login(
                &self,
                login: &str,
            ) -> $crate::StoreResult<Option<::mandate_core::directory::User>> {
                let row = ::sqlx::query_as::<_, $crate::sql::directory::UserRow>(
                    $crate::sql::directory::USER_BY_LOGIN,
                )
                .bind(login)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn users(
                &self,
                tenant_id: Option<&str>,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<::mandate_core::directory::User>> {
                let (sql, binds) =
                    $crate::sql::directory::USER_LISTING.page(tenant_id, after, limit);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::directory::UserRow>(&sql),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn users_by_ids(
                &self,
                ids: &[String],
            ) -> $crate::StoreResult<Vec<::mandate_core::directory::User>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let (sql, binds) = $crate::sql::directory::users_by_ids_query(ids);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::directory::UserRow>(&sql),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn count_users(
                &self,
                tenant_id: Option<&str>,
                cap: u32,
            ) -> $crate::StoreResult<u32> {
                let (sql, binds) = $crate::sql::directory::USER_LISTING.count(tenant_id, cap);
                $crate::sql::capped_count!(&self.pool, &sql, binds)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::AgentStore for $store {
            async fn upsert_agent(
                &self,
                agent: &::mandate_core::client::Agent,
            ) -> $crate::StoreResult<()> {
                // Drops introspection's kept answers once this write is done (PostgreSQL).
                let _change = self.token_state_change();
                $crate::sql::directory::bind_agent!(
                    ::sqlx::query($crate::sql::directory::UPSERT_AGENT),
                    agent
                )
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn agent(
                &self,
                client_id: &str,
            ) -> $crate::StoreResult<Option<::mandate_core::client::Agent>> {
                let row = ::sqlx::query_as::<_, $crate::sql::directory::AgentRow>(
                    $crate::sql::directory::AGENT,
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn agents(
                &self,
                tenant_id: Option<&str>,
                after: Option<&str>,
                limit: u32,
            ) -> $crate::StoreResult<Vec<::mandate_core::client::Agent>> {
                let (sql, binds) =
                    $crate::sql::directory::AGENT_LISTING.page(tenant_id, after, limit);
                let query = $crate::sql::bind_all!(
                    ::sqlx::query_as::<_, $crate::sql::directory::AgentRow>(&sql),
                    binds
                );
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn count_agents(
                &self,
                tenant_id: Option<&str>,
                cap: u32,
            ) -> $crate::StoreResult<u32> {
                let (sql, binds) = $crate::sql::directory::AGENT_LISTING.count(tenant_id, cap);
                $crate::sql::capped_count!(&self.pool, &sql, binds)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::CatalogStore for $store {
            async fn upsert_scope(
                &self,
                scope: &$crate::model::ScopeDef,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::directory::UPSERT_SCOPE)
                    .bind(&scope.name)
                    .bind(&scope.description)
                    .bind(scope.sensitive)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn scopes(&self) -> $crate::StoreResult<Vec<$crate::model::ScopeDef>> {
                let rows = ::sqlx::query_as::<_, $crate::sql::directory::ScopeRow>(
                    $crate::sql::directory::SCOPES,
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn upsert_resource(
                &self,
                resource: &::mandate_core::resource::ResourceServer,
            ) -> $crate::StoreResult<()> {
                ::sqlx::query($crate::sql::directory::UPSERT_RESOURCE)
                    .bind(&resource.identifier)
                    .bind(&resource.name)
                    .bind(resource.scopes.to_string())
                    .bind(&resource.client_id)
                    .bind(&resource.secret_hash)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::sql::write_error("resource client id", "resource"))?;
                Ok(())
            }

            async fn resources(
                &self,
            ) -> $crate::StoreResult<Vec<::mandate_core::resource::ResourceServer>> {
                let rows = ::sqlx::query_as::<_, $crate::sql::directory::ResourceRow>(
                    $crate::sql::directory::RESOURCES,
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }
        }
    };
}
pub(crate) use impl_directory;
