//! Administrative commands, run against the server's own database or, with `--server`, a
//! remote server through its admin API (`/admin/v1`).
//!
//! Both paths run the same operations: locally the CLI calls `mandate_server::admin`'s
//! operation functions with an operator context (recorded as `cli`), remotely the server runs
//! those same functions behind the API, under the caller's role. `--json` prints exactly the
//! admin API's bodies, so scripts work the same either way.

use crate::cli::{
    AdminRoleCmd, AgentCmd, ApiKeyCmd, Global, GrantCmd, ResourceCmd, ScopeCmd, TenantCmd, UserCmd,
};
use crate::output;
use crate::remote::Remote;
use anyhow::Context;
use mandate_core::api_key::ApiKeyPolicy;
use mandate_core::time::Clock;
use mandate_server::admin::context::Ctx;
use mandate_server::admin::model::{
    AgentKind, AgentQuery, AgentView, ApiKeyQuery, ApiKeyView, BulkRevocationRequest,
    BulkRevocationResult, CreatedAgent, CreatedApiKey, CreatedResource, GrantQuery, GrantView,
    NewAgent, NewApiKey, NewResource, NewScope, NewTenant, NewUser, PrincipalKind, Removed,
    ResourceView, RevokeRequest, Revoked, RoleName, RoleView, RotateRequest, RotatedApiKey,
    ScopeView, SetRole, TenantView, UserQuery, UserView,
};
use mandate_server::admin::page::Page;
use mandate_server::admin::{api_keys, directory, grants, roles};
use mandate_server::config::{self, Overrides};
use mandate_server::system::{OsEntropy, SystemClock};
use mandate_store::Store;
use std::io::BufRead;
use std::sync::Arc;

/// Where administrative commands run.
pub enum Backend {
    Local {
        store: Arc<dyn Store>,
        policy: ApiKeyPolicy,
        entropy: OsEntropy,
    },
    Remote(Remote),
}

impl Backend {
    pub async fn open(global: &Global) -> anyhow::Result<Self> {
        if let Some(server) = &global.server {
            return Ok(Self::Remote(Remote::connect(server).await?));
        }
        let (config, store) = open_local(global).await?;
        Ok(Self::Local {
            store,
            policy: config.api_keys.policy(),
            entropy: OsEntropy::default(),
        })
    }
}

/// The configuration and the configured database, opened (and migrated) directly.
pub async fn open_local(global: &Global) -> anyhow::Result<(config::Config, Arc<dyn Store>)> {
    let overrides = Overrides {
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
        ..Overrides::default()
    };
    let config = config::load(global.config.as_deref(), &overrides)?;
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
    }
    let store = mandate_store::connect(&config.database_url())
        .await
        .context("opening the database")?;
    Ok((config, store))
}

/// Runs `$local` with an operator context on the local database, or `$remote_call` with the
/// admin API client, and yields the answer (returning early on an error).
macro_rules! either {
    ($backend:expr, |$ctx:ident| $local:expr, |$remote:ident| $remote_call:expr) => {
        match &$backend {
            Backend::Remote($remote) => $remote_call.await?,
            Backend::Local {
                store,
                policy,
                entropy,
            } => {
                let $ctx = Ctx::local(store.as_ref(), entropy, SystemClock.now(), *policy);
                $local.await.map_err(anyhow::Error::from)?
            }
        }
    };
}
pub(crate) use either;

/// A user's id from their login.
async fn user_id(backend: &Backend, login: &str) -> anyhow::Result<String> {
    let q = UserQuery {
        login: Some(login.to_owned()),
        ..UserQuery::default()
    };
    let found: Page<UserView> = either!(backend, |ctx| directory::list_users(&ctx, q), |r| r
        .list("/users", &q));
    found
        .items
        .into_iter()
        .next()
        .map(|u| u.id)
        .with_context(|| format!("no user `{login}`"))
}

pub async fn tenant(global: &Global, cmd: TenantCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        TenantCmd::Create { id, name } => {
            let new = NewTenant { id, name };
            let t: TenantView = either!(b, |ctx| directory::create_tenant(&ctx, new), |r| r
                .post("/tenants", &new));
            output::created(global.json, &t, &format!("tenant {} ({})", t.id, t.name))
        }
        TenantCmd::List => {
            let items: Vec<TenantView> = either!(b, |ctx| directory::list_tenants(&ctx), |r| r
                .get("/tenants"));
            let rows = items
                .iter()
                .map(|t| vec![t.id.clone(), t.name.clone()])
                .collect();
            output::print(global.json, &items, &["id", "name"], rows)
        }
    }
}

pub async fn user(global: &Global, cmd: UserCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        UserCmd::Create {
            login,
            tenant,
            name,
        } => {
            eprintln!("password for {login} (read from standard input):");
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let new = NewUser {
                login,
                tenant_id: tenant,
                display_name: name,
                password,
            };
            let u: UserView = either!(b, |ctx| directory::create_user(&ctx, new), |r| r
                .post("/users", &new));
            output::created(
                global.json,
                &u,
                &format!("user {} ({}) in tenant {}", u.login, u.id, u.tenant_id),
            )
        }
        UserCmd::List { tenant, page } => {
            let q = UserQuery {
                tenant_id: tenant,
                limit: Some(page.limit),
                after: page.after,
                ..UserQuery::default()
            };
            let found: Page<UserView> = either!(b, |ctx| directory::list_users(&ctx, q), |r| r
                .list("/users", &q));
            output::print_page(
                global.json,
                &found,
                &["login", "id", "tenant", "name", "disabled"],
                |u| {
                    vec![
                        u.login.clone(),
                        u.id.clone(),
                        u.tenant_id.clone(),
                        u.display_name.clone(),
                        yes_no(u.disabled),
                    ]
                },
            )
        }
        UserCmd::Disable { login } => {
            let id = user_id(&b, &login).await?;
            let u: UserView = either!(b, |ctx| directory::disable_user(&ctx, &id), |r| r.post(
                &format!("/users/{}/disable", crate::remote::encode(&id)),
                &()
            ));
            output::created(global.json, &u, &format!("user {login} disabled"))
        }
    }
}

pub async fn scope(global: &Global, cmd: ScopeCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        ScopeCmd::Create {
            name,
            description,
            sensitive,
        } => {
            let new = NewScope {
                name,
                description,
                sensitive,
            };
            let s: ScopeView = either!(b, |ctx| directory::create_scope(&ctx, new), |r| r
                .post("/scopes", &new));
            output::created(global.json, &s, &format!("scope {}", s.name))
        }
        ScopeCmd::List => {
            let items: Vec<ScopeView> =
                either!(b, |ctx| directory::list_scopes(&ctx), |r| r.get("/scopes"));
            let rows = items
                .iter()
                .map(|s| vec![s.name.clone(), s.description.clone(), yes_no(s.sensitive)])
                .collect();
            output::print(
                global.json,
                &items,
                &["name", "description", "sensitive"],
                rows,
            )
        }
    }
}

pub async fn resource(global: &Global, cmd: ResourceCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        ResourceCmd::Create {
            identifier,
            name,
            scopes,
            client_id,
        } => {
            let new = NewResource {
                identifier,
                name: Some(name),
                scopes,
                client_id,
            };
            let c: CreatedResource = either!(b, |ctx| directory::create_resource(&ctx, new), |r| r
                .post("/resources", &new));
            let mut text = format!("resource {} ({})", c.resource.identifier, c.resource.name);
            if let (Some(id), Some(s)) = (&c.resource.client_id, &c.client_secret) {
                text.push_str(&format!(
                    "\ncredential {id}, secret (shown once, store it now): {s}"
                ));
            }
            output::created(global.json, &c, &text)
        }
        ResourceCmd::List => {
            let items: Vec<ResourceView> = either!(b, |ctx| directory::list_resources(&ctx), |r| r
                .get("/resources"));
            let rows = items
                .iter()
                .map(|r| vec![r.identifier.clone(), r.name.clone(), r.scopes.join(" ")])
                .collect();
            output::print(global.json, &items, &["identifier", "name", "scopes"], rows)
        }
    }
}

pub async fn agent(global: &Global, cmd: AgentCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        AgentCmd::Create {
            client_id,
            name,
            kind,
            grant_types,
            max_scopes,
            redirect_uris,
            tenant,
            default_resource,
        } => {
            let kind = match kind.as_str() {
                "public" => AgentKind::Public,
                "confidential" => AgentKind::Confidential,
                other => anyhow::bail!("--kind: `{other}` is neither public nor confidential"),
            };
            let new = NewAgent {
                client_id,
                name,
                kind,
                grant_types,
                max_scopes,
                redirect_uris,
                tenant_id: tenant,
                default_resource,
                allowed_resources: vec![],
            };
            let c: CreatedAgent = either!(b, |ctx| directory::create_agent(&ctx, new), |r| r
                .post("/agents", &new));
            let mut text = format!("agent {} ({})", c.agent.client_id, c.agent.kind);
            if let Some(s) = &c.client_secret {
                text.push_str(&format!("\nclient secret (shown once, store it now): {s}"));
            }
            output::created(global.json, &c, &text)
        }
        AgentCmd::List { tenant, page } => {
            let q = AgentQuery {
                tenant_id: tenant,
                limit: Some(page.limit),
                after: page.after,
            };
            let found: Page<AgentView> = either!(b, |ctx| directory::list_agents(&ctx, q), |r| r
                .list("/agents", &q));
            output::print_page(
                global.json,
                &found,
                &[
                    "client_id",
                    "kind",
                    "grant types",
                    "max scopes",
                    "tenant",
                    "disabled",
                ],
                |a| {
                    vec![
                        a.client_id.clone(),
                        a.kind.clone(),
                        a.grant_types.join(" "),
                        a.max_scopes.join(" "),
                        a.tenant_id.clone().unwrap_or_else(|| "(any)".into()),
                        yes_no(a.disabled),
                    ]
                },
            )
        }
        AgentCmd::Disable { client_id } => {
            let a: AgentView = either!(b, |ctx| directory::disable_agent(&ctx, &client_id), |r| r
                .post(
                    &format!("/agents/{}/disable", crate::remote::encode(&client_id)),
                    &()
                ));
            output::created(global.json, &a, &format!("agent {client_id} disabled"))
        }
    }
}

pub async fn grant(global: &Global, cmd: GrantCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        GrantCmd::List {
            tenant,
            user,
            agent,
            all,
            page,
        } => {
            let user_id = match user {
                Some(login) => Some(user_id(&b, &login).await?),
                None => None,
            };
            let q = GrantQuery {
                tenant_id: tenant,
                user_id,
                client_id: agent,
                include_revoked: all,
                limit: Some(page.limit),
                after: page.after,
            };
            let found: Page<GrantView> = either!(b, |ctx| grants::list_grants(&ctx, q), |r| r
                .list("/grants", &q));
            output::print_page(
                global.json,
                &found,
                &[
                    "id", "tenant", "user", "agent", "scopes", "created", "revoked",
                ],
                |g| {
                    vec![
                        g.id.clone(),
                        g.tenant_id.clone(),
                        g.user_id.clone().unwrap_or_else(|| "(service)".into()),
                        g.client_id.clone(),
                        g.scopes.join(" "),
                        output::time(Some(g.created_at)),
                        output::time(g.revoked_at),
                    ]
                },
            )
        }
        GrantCmd::Revoke { id, reason } => {
            let req = RevokeRequest {
                reason: Some(reason),
            };
            let path = format!("/grants/{}/revoke", crate::remote::encode(&id));
            let r: Revoked = either!(b, |ctx| grants::revoke_grant(&ctx, &id, req), |remote| {
                remote.post(&path, &req)
            });
            print_revoked(global, "grant", &r)
        }
        GrantCmd::RevokeAll {
            user,
            tenant,
            agent,
            reason,
        } => {
            let user_id = match user {
                Some(login) => Some(user_id(&b, &login).await?),
                None => None,
            };
            anyhow::ensure!(
                user_id.is_some() || tenant.is_some() || agent.is_some(),
                "give --user, --tenant, --agent, or --agent with --tenant"
            );
            let req = BulkRevocationRequest {
                user_id,
                tenant_id: tenant,
                client_id: agent,
                reason: Some(reason),
            };
            let done: BulkRevocationResult =
                either!(b, |ctx| grants::revoke_in_bulk(&ctx, req), |r| r
                    .post("/revocations", &req));
            let text = format!(
                "revoked {} grants (with their refresh tokens) and {} API keys",
                done.grants, done.api_keys
            );
            output::created(global.json, &done, &text)
        }
    }
}

pub async fn api_key(global: &Global, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        ApiKeyCmd::Create {
            tenant,
            user,
            scopes,
            expires_in,
            name,
        } => {
            let user_id = match user {
                Some(login) => Some(user_id(&b, &login).await?),
                None => None,
            };
            let new = NewApiKey {
                tenant_id: tenant,
                user_id,
                name,
                scopes: scopes
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                expires_in,
            };
            let c: CreatedApiKey = either!(b, |ctx| api_keys::create_key(&ctx, new), |r| r
                .post("/api-keys", &new));
            let k = &c.api_key;
            let text = format!(
                "API key {} ({}) in tenant {}, scopes {}, expires {}\n\
                 key (shown once, store it now): {}",
                k.id,
                k.name,
                k.tenant_id,
                k.scopes.join(" "),
                k.expires_at,
                c.key
            );
            output::created(global.json, &c, &text)
        }
        ApiKeyCmd::List { tenant, page } => {
            let q = ApiKeyQuery {
                tenant_id: tenant,
                limit: Some(page.limit),
                after: page.after,
            };
            let found: Page<ApiKeyView> = either!(b, |ctx| api_keys::list_keys(&ctx, q), |r| r
                .list("/api-keys", &q));
            output::print_page(
                global.json,
                &found,
                &[
                    "id",
                    "name",
                    "user",
                    "scopes",
                    "created",
                    "expires",
                    "last used",
                    "revoked",
                    "replaced by",
                ],
                |k| {
                    vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.user_id.clone().unwrap_or_else(|| "(tenant)".into()),
                        k.scopes.join(" "),
                        output::time(Some(k.created_at)),
                        output::time(Some(k.expires_at)),
                        output::time(k.last_used_at),
                        output::time(k.revoked_at),
                        k.replaced_by.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            )
        }
        ApiKeyCmd::Rotate { id, expires_in } => {
            let req = RotateRequest { expires_in };
            let path = format!("/api-keys/{}/rotate", crate::remote::encode(&id));
            let r: RotatedApiKey =
                either!(b, |ctx| api_keys::rotate_key(&ctx, &id, req), |remote| {
                    remote.post(&path, &req)
                });
            let text = format!(
                "API key {} replaces {id}, which keeps working until {}; new key expires {}\n\
                 key (shown once, store it now): {}",
                r.api_key.id, r.predecessor_expires_at, r.api_key.expires_at, r.key
            );
            output::created(global.json, &r, &text)
        }
        ApiKeyCmd::Revoke { id, reason } => {
            let req = RevokeRequest {
                reason: Some(reason),
            };
            let path = format!("/api-keys/{}/revoke", crate::remote::encode(&id));
            let r: Revoked = either!(b, |ctx| api_keys::revoke_key(&ctx, &id, req), |remote| {
                remote.post(&path, &req)
            });
            print_revoked(global, "API key", &r)
        }
    }
}

pub async fn admin_role(global: &Global, cmd: AdminRoleCmd) -> anyhow::Result<()> {
    let b = Backend::open(global).await?;
    match cmd {
        AdminRoleCmd::Set {
            user,
            agent,
            role,
            tenant,
        } => {
            let (principal_kind, principal_id) = principal(&b, user, agent).await?;
            let role = match role.as_str() {
                "operator" => RoleName::Operator,
                "tenant-admin" | "tenant_admin" => RoleName::TenantAdmin,
                other => anyhow::bail!("--role: `{other}` is neither operator nor tenant-admin"),
            };
            let req = SetRole {
                principal_kind,
                principal_id,
                role,
                tenant_id: tenant,
            };
            let v: RoleView = either!(b, |ctx| roles::set_role(&ctx, req), |r| r
                .post("/roles", &req));
            let text = format!(
                "{} {} is {}{}",
                v.principal_kind,
                v.principal_id,
                v.role,
                v.tenant_id
                    .as_ref()
                    .map(|t| format!(" of tenant {t}"))
                    .unwrap_or_default()
            );
            output::created(global.json, &v, &text)
        }
        AdminRoleCmd::List => {
            let items: Vec<RoleView> =
                either!(b, |ctx| roles::list_roles(&ctx), |r| r.get("/roles"));
            let rows = items
                .iter()
                .map(|v| {
                    vec![
                        v.principal_kind.clone(),
                        v.principal_id.clone(),
                        v.role.clone(),
                        v.tenant_id.clone().unwrap_or_else(|| "(all)".into()),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &items,
                &["kind", "principal", "role", "tenant"],
                rows,
            )
        }
        AdminRoleCmd::Remove { user, agent } => {
            let (kind, id) = principal(&b, user, agent).await?;
            let path = format!("/roles/{}/{}", kind.as_str(), crate::remote::encode(&id));
            let r: Removed = either!(
                b,
                |ctx| roles::remove_role(&ctx, kind.as_str(), &id),
                |remote| remote.delete(&path)
            );
            let text = if r.removed {
                format!("{} {id} no longer has an admin role", kind.as_str())
            } else {
                format!("{} {id} had no admin role", kind.as_str())
            };
            output::created(global.json, &r, &text)
        }
    }
}

async fn principal(
    b: &Backend,
    user: Option<String>,
    agent: Option<String>,
) -> anyhow::Result<(PrincipalKind, String)> {
    match (user, agent) {
        (Some(login), None) => Ok((PrincipalKind::User, user_id(b, &login).await?)),
        (None, Some(client_id)) => Ok((PrincipalKind::Agent, client_id)),
        _ => anyhow::bail!("give --user (a login) or --agent (a client id)"),
    }
}

fn print_revoked(global: &Global, what: &str, r: &Revoked) -> anyhow::Result<()> {
    let text = if r.was_active {
        format!("{what} {} revoked", r.id)
    } else {
        format!("{what} {} was already revoked", r.id)
    };
    output::created(global.json, r, &text)
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}
