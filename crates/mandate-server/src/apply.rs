//! Applying the declarative configuration: tenants, users, scopes, resources and agents.
//!
//! Idempotent: applying the same file twice changes nothing the second time (passwords are
//! re-hashed only when they no longer verify). Everything is validated before anything is
//! written, and every problem is reported with the key that holds it (`agents[1].max_scopes`).

use crate::config::{AdminRoleConfig, AgentConfig, Config, Secret, UserConfig};
use crate::password;
use anyhow::{Context, bail};
use mandate_core::client::{
    Agent, ClientKind, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_REFRESH_TOKEN_TTL, GrantType,
    is_valid_client_id,
};
use mandate_core::directory::{Tenant, User, is_valid_login, is_valid_slug};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::exchange::MAX_CHAIN_LEN;
use mandate_core::random::{self, Entropy};
use mandate_core::redirect_uri::RedirectUri;
use mandate_core::resource::{ResourceServer, is_valid_identifier};
use mandate_core::scope::{ScopeSet, is_valid_token};
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_store::{ScopeDef, Store, StoreError};
use std::collections::BTreeSet;

/// Shortest client secret accepted: secrets are stored as one SHA-256, which is only safe for
/// high-entropy values.
pub const MIN_SECRET_LEN: usize = 32;

/// What applying changed, for the start-up message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub tenants: usize,
    pub users: usize,
    pub scopes: usize,
    pub resources: usize,
    pub agents: usize,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A validated, ready-to-write model.
struct Plan {
    tenants: Vec<Tenant>,
    users: Vec<UserConfig>,
    scopes: Vec<ScopeDef>,
    resources: Vec<ResourceServer>,
    agents: Vec<Agent>,
}

pub async fn apply(
    config: &Config,
    store: &dyn Store,
    entropy: &dyn Entropy,
    now: Timestamp,
) -> anyhow::Result<Applied> {
    apply_as(config, store, entropy, now, None).await
}

/// [`apply`], recording `actor` (an administrator) on the event.
pub async fn apply_as(
    config: &Config,
    store: &dyn Store,
    entropy: &dyn Entropy,
    now: Timestamp,
    actor: Option<&str>,
) -> anyhow::Result<Applied> {
    let plan = validate(config, store).await?;
    for t in &plan.tenants {
        store.upsert_tenant(t).await?;
    }
    for s in &plan.scopes {
        store.upsert_scope(s).await?;
    }
    for r in &plan.resources {
        store.upsert_resource(r).await?;
    }
    for a in &plan.agents {
        store.upsert_agent(a).await?;
    }
    for (i, u) in plan.users.iter().enumerate() {
        apply_user(store, u, entropy, now)
            .await
            .with_context(|| format!("users[{i}] ({})", u.login))?;
    }
    for (i, r) in config.admin_roles.iter().enumerate() {
        apply_admin_role(store, r, now, actor)
            .await
            .with_context(|| format!("admin_roles[{i}]"))?;
    }
    let applied = Applied {
        tenants: plan.tenants.len(),
        users: plan.users.len(),
        scopes: plan.scopes.len(),
        resources: plan.resources.len(),
        agents: plan.agents.len(),
    };
    if !applied.is_empty() {
        let mut event = NewEvent::new(now, Action::ConfigApplied, ActorKind::Admin);
        event.actor_id = actor.map(str::to_owned);
        event.detail = serde_json::json!({
            "tenants": applied.tenants, "users": applied.users, "scopes": applied.scopes,
            "resources": applied.resources, "agents": applied.agents,
        });
        store.append_events(&[event]).await?;
    }
    Ok(applied)
}

async fn validate(config: &Config, store: &dyn Store) -> anyhow::Result<Plan> {
    let mut tenant_ids: BTreeSet<String> =
        store.tenants().await?.into_iter().map(|t| t.id).collect();
    let mut tenants = Vec::new();
    for (i, t) in config.tenants.iter().enumerate() {
        if !is_valid_slug(&t.id) {
            bail!(
                "tenants[{i}].id: `{}` must be 1-63 lowercase letters, digits, - or _",
                t.id
            );
        }
        tenant_ids.insert(t.id.clone());
        tenants.push(Tenant {
            id: t.id.clone(),
            name: t.name.clone(),
        });
    }
    let mut scope_names: BTreeSet<String> =
        store.scopes().await?.into_iter().map(|s| s.name).collect();
    let mut scopes = Vec::new();
    for (i, s) in config.scopes.iter().enumerate() {
        if !is_valid_token(&s.name) {
            bail!(
                "scopes[{i}].name: `{}` is not a valid scope token (RFC 6749 §3.3)",
                s.name
            );
        }
        scope_names.insert(s.name.clone());
        scopes.push(ScopeDef {
            name: s.name.clone(),
            description: s.description.clone(),
            sensitive: s.sensitive,
        });
    }
    let scope_set = |key: String, names: &[String]| -> anyhow::Result<ScopeSet> {
        if let Some(unknown) = names.iter().find(|n| !scope_names.contains(*n)) {
            bail!("{key}: scope `{unknown}` is not in the scope catalog");
        }
        ScopeSet::from_tokens(names).map_err(|e| anyhow::anyhow!("{key}: {e}"))
    };
    let mut resource_ids: BTreeSet<String> = store
        .resources()
        .await?
        .into_iter()
        .map(|r| r.identifier)
        .collect();
    // The client ids the configuration names that are agents: its own, and those stored,
    // looked up one by one (the table may hold millions of self-registered clients).
    let mut agent_ids: BTreeSet<String> =
        config.agents.iter().map(|a| a.client_id.clone()).collect();
    let named = config
        .resources
        .iter()
        .filter_map(|r| r.client_id.as_ref())
        .chain(config.exchange.rules.iter().map(|r| &r.agent));
    for id in named {
        if !agent_ids.contains(id) && store.agent(id).await?.is_some() {
            agent_ids.insert(id.clone());
        }
    }
    let mut resources = Vec::new();
    for (i, r) in config.resources.iter().enumerate() {
        let key = |field: &str| format!("resources[{i}].{field}");
        if !is_valid_identifier(&r.identifier) {
            bail!(
                "{}: `{}` must be an absolute URI without a fragment",
                key("identifier"),
                r.identifier
            );
        }
        let secret_hash = credential_hash(
            &key("secret"),
            &key("secret_hash"),
            r.secret.as_ref(),
            r.secret_hash.as_deref(),
        )?;
        match (&r.client_id, &secret_hash) {
            (Some(id), Some(_)) => {
                if !is_valid_client_id(id) {
                    bail!(
                        "{}: `{id}` must be 1-128 printable characters without spaces or colons",
                        key("client_id")
                    );
                }
                if agent_ids.contains(id) {
                    bail!(
                        "{}: `{id}` is already an agent's client id",
                        key("client_id")
                    );
                }
            }
            (None, None) => {}
            _ => bail!(
                "{}: a resource credential needs both client_id and secret",
                key("client_id")
            ),
        }
        resource_ids.insert(r.identifier.clone());
        resources.push(ResourceServer {
            identifier: r.identifier.clone(),
            name: r.name.clone(),
            scopes: scope_set(key("scopes"), &r.scopes)?,
            client_id: r.client_id.clone(),
            secret_hash,
        });
    }
    let mut agents = Vec::new();
    for (i, a) in config.agents.iter().enumerate() {
        agents.push(agent(i, a, &tenant_ids, &resource_ids, &scope_set)?);
    }
    validate_exchange(config, &agent_ids, &resource_ids)?;
    for (i, u) in config.users.iter().enumerate() {
        if !is_valid_login(&u.login) {
            bail!(
                "users[{i}].login: `{}` must be 1-64 printable characters without spaces",
                u.login
            );
        }
        if !tenant_ids.contains(&u.tenant) {
            bail!("users[{i}].tenant: tenant `{}` is not defined", u.tenant);
        }
        match (&u.password, &u.password_hash) {
            (Some(_), Some(_)) => bail!("users[{i}]: give password or password_hash, not both"),
            (None, None) => bail!("users[{i}]: password or password_hash is required"),
            (None, Some(h)) if !password::is_argon2id(h.expose()) => {
                bail!("users[{i}].password_hash: must be a PHC-format argon2id hash")
            }
            _ => {}
        }
    }
    Ok(Plan {
        tenants,
        users: config.users.clone(),
        scopes,
        resources,
        agents,
    })
}

/// Every exchange rule names a known agent and registered audiences.
fn validate_exchange(
    config: &Config,
    agent_ids: &BTreeSet<String>,
    resource_ids: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let policy = &config.exchange;
    if policy.max_depth == 0 || policy.max_depth > MAX_CHAIN_LEN {
        bail!("exchange.max_depth: must be between 1 and {MAX_CHAIN_LEN}");
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        if !agent_ids.contains(&rule.agent) {
            bail!(
                "exchange.rules[{i}].agent: agent `{}` is not defined",
                rule.agent
            );
        }
        if let Some(unknown) = rule.audiences.iter().find(|a| !resource_ids.contains(*a)) {
            bail!("exchange.rules[{i}].audiences: resource `{unknown}` is not registered");
        }
    }
    Ok(())
}

fn agent(
    i: usize,
    a: &AgentConfig,
    tenants: &BTreeSet<String>,
    resources: &BTreeSet<String>,
    scope_set: &dyn Fn(String, &[String]) -> anyhow::Result<ScopeSet>,
) -> anyhow::Result<Agent> {
    let key = |field: &str| format!("agents[{i}].{field}");
    if !is_valid_client_id(&a.client_id) {
        bail!(
            "{}: `{}` must be 1-128 printable characters without spaces or colons",
            key("client_id"),
            a.client_id
        );
    }
    let kind: ClientKind = a
        .kind
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", key("kind")))?;
    let secret_hash = credential_hash(
        &key("secret"),
        &key("secret_hash"),
        a.secret.as_ref(),
        a.secret_hash.as_deref(),
    )?;
    match (kind, &secret_hash) {
        (ClientKind::Public, Some(_)) => bail!("{}: a public agent has no secret", key("secret")),
        (ClientKind::Confidential, None) => {
            bail!(
                "{}: a confidential agent needs secret or secret_hash",
                key("secret")
            )
        }
        _ => {}
    }
    let mut grant_types = Vec::new();
    for g in &a.grant_types {
        grant_types.push(
            g.parse::<GrantType>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", key("grant_types")))?,
        );
    }
    if grant_types.contains(&GrantType::ClientCredentials) && kind == ClientKind::Public {
        bail!(
            "{}: client_credentials needs a confidential agent",
            key("grant_types")
        );
    }
    if grant_types.contains(&GrantType::ClientCredentials) && a.tenant.is_none() {
        bail!(
            "{}: client_credentials needs an owner tenant",
            key("tenant")
        );
    }
    let mut redirect_uris = Vec::new();
    for r in &a.redirect_uris {
        redirect_uris.push(
            RedirectUri::parse(r)
                .map_err(|e| anyhow::anyhow!("{}: `{r}`: {e}", key("redirect_uris")))?,
        );
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        bail!(
            "{}: authorization_code needs at least one redirect URI",
            key("redirect_uris")
        );
    }
    if let Some(t) = &a.tenant
        && !tenants.contains(t)
    {
        bail!("{}: tenant `{t}` is not defined", key("tenant"));
    }
    for r in a.default_resource.iter().chain(&a.allowed_resources) {
        if !resources.contains(r) {
            bail!(
                "{}: resource `{r}` is not registered",
                key(if a.allowed_resources.contains(r) {
                    "allowed_resources"
                } else {
                    "default_resource"
                })
            );
        }
    }
    let ttl = |v: Option<u64>, default: u64, field: &str| -> anyhow::Result<u64> {
        match v {
            Some(0) => bail!("{}: must be positive", key(field)),
            Some(n) => Ok(n),
            None => Ok(default),
        }
    };
    Ok(Agent {
        client_id: a.client_id.clone(),
        name: a.name.clone().unwrap_or_else(|| a.client_id.clone()),
        kind,
        secret_hash,
        redirect_uris,
        grant_types,
        max_scopes: scope_set(key("max_scopes"), &a.max_scopes)?,
        tenant_id: a.tenant.clone(),
        access_token_ttl: ttl(
            a.access_token_ttl_seconds,
            DEFAULT_ACCESS_TOKEN_TTL,
            "access_token_ttl_seconds",
        )?,
        refresh_token_ttl: ttl(
            a.refresh_token_ttl_seconds,
            DEFAULT_REFRESH_TOKEN_TTL,
            "refresh_token_ttl_seconds",
        )?,
        default_resource: a.default_resource.clone(),
        allowed_resources: a.allowed_resources.clone(),
        disabled: false,
    })
}

/// The stored hash of a credential given as `secret` (hashed here) or `secret_hash`.
fn credential_hash(
    secret_key: &str,
    hash_key: &str,
    secret: Option<&Secret>,
    hash: Option<&str>,
) -> anyhow::Result<Option<String>> {
    match (secret, hash) {
        (Some(_), Some(_)) => bail!("{secret_key}: give secret or secret_hash, not both"),
        (None, None) => Ok(None),
        (Some(s), None) => {
            if s.expose().len() < MIN_SECRET_LEN {
                bail!(
                    "{secret_key}: must be at least {MIN_SECRET_LEN} characters of random data (it is stored as a fast hash)"
                );
            }
            Ok(Some(secret::hash_secret(s.expose())))
        }
        (None, Some(h)) => {
            if !secret::is_secret_hash(h) {
                bail!("{hash_key}: must look like sha256:<43 base64url characters>");
            }
            Ok(Some(h.to_owned()))
        }
    }
}

/// Creates or updates one `[[users]]` entry. Nodes starting together on one database apply
/// the same file at once: a node that loses the race to create a user updates it instead.
async fn apply_user(
    store: &dyn Store,
    u: &UserConfig,
    entropy: &dyn Entropy,
    now: Timestamp,
) -> anyhow::Result<()> {
    match apply_user_once(store, u, entropy, now).await {
        Err(e) if matches!(e.downcast_ref(), Some(StoreError::Conflict(_))) => {
            apply_user_once(store, u, entropy, now).await
        }
        other => other,
    }
}

async fn apply_user_once(
    store: &dyn Store,
    u: &UserConfig,
    entropy: &dyn Entropy,
    now: Timestamp,
) -> anyhow::Result<()> {
    let existing = store.user_by_login(&u.login).await?;
    let display_name = u.display_name.clone().unwrap_or_else(|| u.login.clone());
    let password_hash = match (&u.password, &u.password_hash, &existing) {
        (_, Some(h), _) => h.expose().to_owned(),
        (Some(p), None, Some(e)) if password::verify(p.expose(), &e.password_hash) => {
            e.password_hash.clone()
        }
        (Some(p), None, _) => {
            let mut salt = [0u8; 16];
            entropy.fill(&mut salt);
            let p = p.expose().to_owned();
            tokio::task::spawn_blocking(move || password::hash(&p, &salt)).await??
        }
        (None, None, _) => bail!("password or password_hash is required"),
    };
    match existing {
        Some(e) => {
            let updated = User {
                display_name,
                password_hash,
                tenant_id: u.tenant.clone(),
                ..e.clone()
            };
            if updated != e {
                store.update_user(&updated).await?;
            }
        }
        None => {
            store
                .create_user(&User {
                    id: random::identifier(entropy, now, "u_"),
                    tenant_id: u.tenant.clone(),
                    login: u.login.clone(),
                    display_name,
                    password_hash,
                    disabled: false,
                })
                .await?;
        }
    }
    Ok(())
}

/// Gives one `[[admin_roles]]` entry its role, unless it already holds exactly that role.
/// Runs after users and agents are written, so it can name principals from the same file.
async fn apply_admin_role(
    store: &dyn Store,
    r: &AdminRoleConfig,
    now: Timestamp,
    actor: Option<&str>,
) -> anyhow::Result<()> {
    use mandate_core::admin::{Principal, Role, RoleAssignment, check_assignment};
    let (principal, own_tenant) = match (&r.user, &r.agent) {
        (Some(login), None) => {
            let user = store
                .user_by_login(login)
                .await?
                .with_context(|| format!("user: no user `{login}`"))?;
            (Principal::User(user.id), Some(user.tenant_id))
        }
        (None, Some(client_id)) => {
            let agent = store
                .agent(client_id)
                .await?
                .with_context(|| format!("agent: no agent `{client_id}`"))?;
            (Principal::Agent(agent.client_id), agent.tenant_id)
        }
        _ => bail!("give exactly one of user (a login) or agent (a client id)"),
    };
    let tenant = match (r.role.as_str(), &r.tenant, &principal) {
        ("tenant_admin", None, Principal::User(_)) => own_tenant.clone(),
        (_, t, _) => t.clone(),
    };
    let role = Role::from_parts(&r.role, tenant.as_deref()).with_context(|| {
        "role: `operator` (without tenant) or `tenant_admin` (with a tenant)".to_owned()
    })?;
    if let Some(t) = role.tenant()
        && store.tenant(t).await?.is_none()
    {
        bail!("tenant: no tenant `{t}`");
    }
    let assignment = RoleAssignment { principal, role };
    check_assignment(&assignment, own_tenant.as_deref())?;
    if store.admin_role(&assignment.principal).await?.as_ref() == Some(&assignment.role) {
        return Ok(());
    }
    let mut event = NewEvent::new(now, Action::AdminRoleGranted, ActorKind::Admin);
    event.actor_id = actor.map(str::to_owned);
    event.tenant_id = assignment.role.tenant().map(str::to_owned);
    event.detail = serde_json::json!({
        "principal": assignment.principal.to_string(),
        "role": assignment.role.as_str(),
    });
    store.set_admin_role(&assignment, event).await?;
    Ok(())
}
