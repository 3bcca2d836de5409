//! Administrative commands, run directly against the configured database.
//!
//! Creation goes through the same validation as the declarative configuration (by applying a
//! one-item configuration), so the CLI and `--config` can never disagree about what is valid.

use crate::cli::{
    AgentCmd, ApiKeyCmd, Global, GrantCmd, ResourceCmd, ScopeCmd, TenantCmd, UserCmd,
};
use crate::output;
use anyhow::Context;
use mandate_core::api_key::{self, ApiKeyError, ApiKeyRecord, KeyId, NewApiKey};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::random;
use mandate_core::scope::ScopeSet;
use mandate_core::time::{Clock, Timestamp};
use mandate_server::apply;
use mandate_server::config::{
    self, AgentConfig, Config, Overrides, ResourceConfig, ScopeConfig, Secret, TenantConfig,
    UserConfig,
};
use mandate_server::system::{OsEntropy, SystemClock};
use mandate_store::{ApiKeyRotation, BulkTarget, GrantFilter, Store};
use serde::Serialize;
use std::io::BufRead;
use std::sync::Arc;

async fn open(global: &Global) -> anyhow::Result<(Config, Arc<dyn Store>)> {
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

/// Applies a configuration holding only `part`, with the full validation of `--config`.
async fn apply_part(store: &dyn Store, part: Config) -> anyhow::Result<()> {
    apply::apply(&part, store, &OsEntropy::default(), SystemClock.now()).await?;
    Ok(())
}

pub async fn tenant(global: &Global, cmd: TenantCmd) -> anyhow::Result<()> {
    let (_, store) = open(global).await?;
    match cmd {
        TenantCmd::Create { id, name } => {
            let name = name.unwrap_or_else(|| id.clone());
            let part = Config {
                tenants: vec![TenantConfig {
                    id: id.clone(),
                    name,
                }],
                ..Config::default()
            };
            apply_part(store.as_ref(), part).await?;
            let t = store.tenant(&id).await?.context("tenant vanished")?;
            output::created(global.json, &t, &format!("tenant {} ({})", t.id, t.name))
        }
        TenantCmd::List => {
            let items = store.tenants().await?;
            let rows = items
                .iter()
                .map(|t| vec![t.id.clone(), t.name.clone()])
                .collect();
            output::print(global.json, &items, &["id", "name"], rows)
        }
    }
}

pub async fn user(global: &Global, cmd: UserCmd) -> anyhow::Result<()> {
    let (_, store) = open(global).await?;
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
            anyhow::ensure!(
                password.len() >= 8,
                "the password must have at least 8 characters"
            );
            let part = Config {
                users: vec![UserConfig {
                    login: login.clone(),
                    tenant,
                    display_name: name,
                    password: Some(Secret::new(password)),
                    password_hash: None,
                }],
                ..Config::default()
            };
            apply_part(store.as_ref(), part).await?;
            let u = store
                .user_by_login(&login)
                .await?
                .context("user vanished")?;
            output::created(
                global.json,
                &u,
                &format!("user {} ({}) in tenant {}", u.login, u.id, u.tenant_id),
            )
        }
        UserCmd::List { tenant } => {
            let items = store.users(tenant.as_deref()).await?;
            let rows = items
                .iter()
                .map(|u| {
                    vec![
                        u.login.clone(),
                        u.id.clone(),
                        u.tenant_id.clone(),
                        u.display_name.clone(),
                        yes_no(u.disabled),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &items,
                &["login", "id", "tenant", "name", "disabled"],
                rows,
            )
        }
        UserCmd::Disable { login } => {
            let mut u = store
                .user_by_login(&login)
                .await?
                .with_context(|| format!("no user `{login}`"))?;
            u.disabled = true;
            store.update_user(&u).await?;
            output::created(global.json, &u, &format!("user {login} disabled"))
        }
    }
}

#[derive(Serialize)]
struct ScopeRow {
    name: String,
    description: String,
    sensitive: bool,
}

pub async fn scope(global: &Global, cmd: ScopeCmd) -> anyhow::Result<()> {
    let (_, store) = open(global).await?;
    match cmd {
        ScopeCmd::Create {
            name,
            description,
            sensitive,
        } => {
            let part = Config {
                scopes: vec![ScopeConfig {
                    name: name.clone(),
                    description: description.clone(),
                    sensitive,
                }],
                ..Config::default()
            };
            apply_part(store.as_ref(), part).await?;
            let row = ScopeRow {
                name,
                description,
                sensitive,
            };
            output::created(global.json, &row, &format!("scope {}", row.name))
        }
        ScopeCmd::List => {
            let items: Vec<ScopeRow> = store
                .scopes()
                .await?
                .into_iter()
                .map(|s| ScopeRow {
                    name: s.name,
                    description: s.description,
                    sensitive: s.sensitive,
                })
                .collect();
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
    let (_, store) = open(global).await?;
    match cmd {
        ResourceCmd::Create {
            identifier,
            name,
            scopes,
            client_id,
        } => {
            let secret = client_id
                .as_ref()
                .map(|_| random::opaque_secret(&OsEntropy::default()));
            let part = Config {
                resources: vec![ResourceConfig {
                    identifier: identifier.clone(),
                    name,
                    scopes,
                    client_id,
                    secret: secret.clone().map(Secret::new),
                    secret_hash: None,
                }],
                ..Config::default()
            };
            apply_part(store.as_ref(), part).await?;
            let r = store
                .resources()
                .await?
                .into_iter()
                .find(|r| r.identifier == identifier)
                .context("resource vanished")?;
            let mut text = format!("resource {} ({})", r.identifier, r.name);
            if let (Some(id), Some(s)) = (&r.client_id, &secret) {
                text.push_str(&format!(
                    "\ncredential {id}, secret (shown once, store it now): {s}"
                ));
            }
            let shown = serde_json::json!({ "resource": r, "client_secret": secret });
            output::created(global.json, &shown, &text)
        }
        ResourceCmd::List => {
            let items = store.resources().await?;
            let rows = items
                .iter()
                .map(|r| vec![r.identifier.clone(), r.name.clone(), r.scopes.to_string()])
                .collect();
            output::print(global.json, &items, &["identifier", "name", "scopes"], rows)
        }
    }
}

#[derive(Serialize)]
struct CreatedAgent<'a> {
    #[serde(flatten)]
    agent: &'a mandate_core::client::Agent,
    /// Shown once; only its hash is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<&'a str>,
}

pub async fn agent(global: &Global, cmd: AgentCmd) -> anyhow::Result<()> {
    let (_, store) = open(global).await?;
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
            let secret =
                (kind == "confidential").then(|| random::opaque_secret(&OsEntropy::default()));
            let part = Config {
                agents: vec![AgentConfig {
                    client_id: client_id.clone(),
                    name,
                    kind,
                    secret: secret.clone().map(Secret::new),
                    secret_hash: None,
                    redirect_uris,
                    grant_types,
                    max_scopes,
                    tenant,
                    access_token_ttl_seconds: None,
                    refresh_token_ttl_seconds: None,
                    default_resource,
                    allowed_resources: vec![],
                }],
                ..Config::default()
            };
            apply_part(store.as_ref(), part).await?;
            let a = store.agent(&client_id).await?.context("agent vanished")?;
            let mut text = format!("agent {} ({})", a.client_id, a.kind.as_str());
            if let Some(s) = &secret {
                text.push_str(&format!("\nclient secret (shown once, store it now): {s}"));
            }
            output::created(
                global.json,
                &CreatedAgent {
                    agent: &a,
                    client_secret: secret.as_deref(),
                },
                &text,
            )
        }
        AgentCmd::List => {
            let items = store.agents().await?;
            let rows = items
                .iter()
                .map(|a| {
                    vec![
                        a.client_id.clone(),
                        a.kind.as_str().to_owned(),
                        a.grant_types
                            .iter()
                            .map(|g| g.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                        a.max_scopes.to_string(),
                        a.tenant_id.clone().unwrap_or_else(|| "(any)".into()),
                        yes_no(a.disabled),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &items,
                &[
                    "client_id",
                    "kind",
                    "grant types",
                    "max scopes",
                    "tenant",
                    "disabled",
                ],
                rows,
            )
        }
        AgentCmd::Disable { client_id } => {
            let mut a = store
                .agent(&client_id)
                .await?
                .with_context(|| format!("no agent `{client_id}`"))?;
            a.disabled = true;
            store.upsert_agent(&a).await?;
            output::created(global.json, &a, &format!("agent {client_id} disabled"))
        }
    }
}

pub async fn grant(global: &Global, cmd: GrantCmd) -> anyhow::Result<()> {
    let (_, store) = open(global).await?;
    match cmd {
        GrantCmd::List {
            tenant,
            user,
            agent,
            all,
        } => {
            let user_id = match user {
                Some(login) => Some(
                    store
                        .user_by_login(&login)
                        .await?
                        .with_context(|| format!("no user `{login}`"))?
                        .id,
                ),
                None => None,
            };
            let filter = GrantFilter {
                tenant_id: tenant,
                user_id,
                client_id: agent,
                include_revoked: all,
            };
            let items = store.grants(&filter).await?;
            let rows = items
                .iter()
                .map(|g| {
                    vec![
                        g.id.clone(),
                        g.tenant_id.clone(),
                        g.user_id.clone().unwrap_or_else(|| "(service)".into()),
                        g.client_id.clone(),
                        g.scopes.to_string(),
                        output::time(Some(g.created_at)),
                        output::time(g.revoked_at),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &items,
                &[
                    "id", "tenant", "user", "agent", "scopes", "created", "revoked",
                ],
                rows,
            )
        }
        GrantCmd::Revoke { id, reason } => {
            let now = SystemClock.now();
            let grant = store
                .grant(&id)
                .await?
                .with_context(|| format!("no grant `{id}`"))?;
            let was_active = store.revoke_grant(&id, now, &reason).await?;
            let mut event = NewEvent::new(now, Action::GrantRevoked, ActorKind::Admin);
            event.actor_id = Some("cli".into());
            event.grant_id = Some(id.clone());
            event.tenant_id = Some(grant.tenant_id);
            event.user_id = grant.user_id;
            event.client_id = Some(grant.client_id);
            event.reason = Some(reason);
            store.append_events(&[event]).await?;
            let text = if was_active {
                format!("grant {id} revoked")
            } else {
                format!("grant {id} was already revoked")
            };
            output::created(
                global.json,
                &serde_json::json!({ "id": id, "revoked": true, "was_active": was_active }),
                &text,
            )
        }
        GrantCmd::RevokeAll {
            user,
            tenant,
            agent,
            reason,
        } => {
            let target = match (user, tenant, agent) {
                (Some(login), None, None) => BulkTarget::User {
                    user_id: store
                        .user_by_login(&login)
                        .await?
                        .with_context(|| format!("no user `{login}`"))?
                        .id,
                },
                (None, Some(tenant_id), None) => BulkTarget::Tenant { tenant_id },
                (None, None, Some(client_id)) => BulkTarget::Agent { client_id },
                (None, Some(tenant_id), Some(client_id)) => BulkTarget::AgentInTenant {
                    client_id,
                    tenant_id,
                },
                _ => anyhow::bail!("give --user, --tenant, --agent, or --agent with --tenant"),
            };
            let mut event =
                NewEvent::new(SystemClock.now(), Action::GrantRevoked, ActorKind::Admin);
            event.actor_id = Some("cli".into());
            let done = store.revoke_in_bulk(&target, &reason, event).await?;
            let text = format!(
                "revoked {} grants, {} refresh token families and {} API keys",
                done.grants, done.refresh_families, done.api_keys
            );
            output::created(
                global.json,
                &serde_json::json!({
                    "grants": done.grants,
                    "refresh_families": done.refresh_families,
                    "api_keys": done.api_keys,
                    "event_seq": done.event_seq,
                }),
                &text,
            )
        }
    }
}

#[derive(Serialize)]
struct ShownApiKey<'a> {
    #[serde(flatten)]
    record: &'a ApiKeyRecord,
    /// Shown once; only its hash is stored.
    key: &'a str,
}

#[derive(Serialize)]
struct ListedApiKey {
    #[serde(flatten)]
    record: ApiKeyRecord,
    created_by: Option<String>,
    revoked_reason: Option<String>,
    revoked_by: Option<String>,
    replaced_by: Option<KeyId>,
}

fn key_id(id: &str) -> anyhow::Result<KeyId> {
    KeyId::parse(id).with_context(|| format!("`{id}` is not an API key id (mkid_ + 32 hex digits)"))
}

fn key_error(e: ApiKeyError) -> anyhow::Error {
    match e {
        ApiKeyError::ExpiryTooFar { max_seconds } => anyhow::anyhow!(
            "--expires-in is too long: an API key may live at most {max_seconds} seconds \
             ({} days; api_keys.max_lifetime_seconds)",
            max_seconds / 86_400
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

fn key_event(now: Timestamp, action: Action) -> NewEvent {
    let mut event = NewEvent::new(now, action, ActorKind::Admin);
    event.actor_id = Some("cli".into());
    event
}

pub async fn api_key(global: &Global, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    let (config, store) = open(global).await?;
    let policy = config.api_keys.policy();
    let entropy = OsEntropy::default();
    let now = SystemClock.now();
    match cmd {
        ApiKeyCmd::Create {
            tenant,
            user,
            scopes,
            expires_in,
            name,
        } => {
            store
                .tenant(&tenant)
                .await?
                .with_context(|| format!("no tenant `{tenant}`"))?;
            let user_id = match user {
                Some(login) => {
                    let u = store
                        .user_by_login(&login)
                        .await?
                        .with_context(|| format!("no user `{login}`"))?;
                    anyhow::ensure!(
                        u.tenant_id == tenant,
                        "user `{login}` is not in tenant `{tenant}`"
                    );
                    Some(u.id)
                }
                None => None,
            };
            let scopes = ScopeSet::parse(&scopes.replace(',', " "))
                .map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            let catalog = store.scopes().await?;
            if let Some(unknown) = scopes
                .iter()
                .find(|s| !catalog.iter().any(|c| c.name == *s))
            {
                anyhow::bail!("--scopes: `{unknown}` is not in the scope catalog");
            }
            let created = api_key::create(
                NewApiKey {
                    tenant_id: tenant,
                    user_id,
                    name,
                    scopes,
                    expires_at: now.plus_seconds(expires_in),
                },
                &policy,
                now,
                &entropy,
            )
            .map_err(key_error)?;
            store
                .insert_api_key(&created.record, key_event(now, Action::ApiKeyCreated))
                .await?;
            let r = &created.record;
            let text = format!(
                "API key {} ({}) in tenant {}, scopes {}, expires {}\n\
                 key (shown once, store it now): {}",
                r.id,
                r.name,
                r.tenant_id,
                r.scopes,
                r.expires_at.unix(),
                created.key.expose()
            );
            output::created(
                global.json,
                &ShownApiKey {
                    record: r,
                    key: created.key.expose(),
                },
                &text,
            )
        }
        ApiKeyCmd::List { tenant } => {
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = store.api_keys(&tenant, after.as_ref(), 200).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.cursor());
                let full = page.len() == 200;
                items.extend(page.into_iter().map(|k| ListedApiKey {
                    record: k.record,
                    created_by: k.created_by,
                    revoked_reason: k.revoked_reason,
                    revoked_by: k.revoked_by,
                    replaced_by: k.replaced_by,
                }));
                if !full {
                    break;
                }
            }
            let rows = items
                .iter()
                .map(|k| {
                    let r = &k.record;
                    vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.user_id.clone().unwrap_or_else(|| "(tenant)".into()),
                        r.scopes.to_string(),
                        output::time(Some(r.created_at)),
                        output::time(Some(r.expires_at)),
                        output::time(r.last_used_at),
                        output::time(r.revoked_at),
                        k.replaced_by
                            .as_ref()
                            .map_or_else(|| "-".into(), ToString::to_string),
                    ]
                })
                .collect();
            output::print(
                global.json,
                &items,
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
                rows,
            )
        }
        ApiKeyCmd::Rotate { id, expires_in } => {
            let id = key_id(&id)?;
            let old = store
                .api_key(&id, None)
                .await?
                .with_context(|| format!("no API key `{id}`"))?;
            anyhow::ensure!(
                old.replaced_by.is_none(),
                "API key {id} was rotated before; rotate its successor instead"
            );
            let rotation = api_key::rotate(
                &old.record,
                now.plus_seconds(expires_in),
                &policy,
                now,
                &entropy,
            )
            .map_err(key_error)?;
            let successor = &rotation.successor;
            let outcome = store
                .rotate_api_key(
                    &id,
                    &successor.record,
                    rotation.predecessor_expires_at,
                    key_event(now, Action::ApiKeyRotated),
                )
                .await?;
            match outcome {
                ApiKeyRotation::Rotated => {}
                ApiKeyRotation::Unknown => anyhow::bail!("no API key `{id}`"),
                ApiKeyRotation::Revoked => anyhow::bail!("API key {id} is revoked"),
                ApiKeyRotation::Expired => anyhow::bail!("API key {id} has expired"),
                ApiKeyRotation::AlreadyRotated => {
                    anyhow::bail!("API key {id} was rotated before; rotate its successor instead")
                }
            }
            let r = &successor.record;
            let text = format!(
                "API key {} replaces {id}, which keeps working until {}; new key expires {}\n\
                 key (shown once, store it now): {}",
                r.id,
                rotation.predecessor_expires_at.unix(),
                r.expires_at.unix(),
                successor.key.expose()
            );
            let shown = serde_json::json!({
                "api_key": ShownApiKey { record: r, key: successor.key.expose() },
                "replaces": id,
                "predecessor_expires_at": rotation.predecessor_expires_at,
            });
            output::created(global.json, &shown, &text)
        }
        ApiKeyCmd::Revoke { id, reason } => {
            let id = key_id(&id)?;
            store
                .api_key(&id, None)
                .await?
                .with_context(|| format!("no API key `{id}`"))?;
            let was_active = store
                .revoke_api_key(&id, None, &reason, key_event(now, Action::ApiKeyRevoked))
                .await?;
            let text = if was_active {
                format!("API key {id} revoked")
            } else {
                format!("API key {id} was already revoked")
            };
            output::created(
                global.json,
                &serde_json::json!({ "id": id, "revoked": true, "was_active": was_active }),
                &text,
            )
        }
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}
