//! The console's templates (`templates/console/`) and what they show.
//!
//! Rows are built from the admin operations' views, never from store records, so a field the
//! API does not expose (a secret's hash, a sealed key) has no way onto a page. Every page
//! extends `console/layout.html`, which draws the navigation from [`Nav`].

use super::{ConsoleError, directory};
use crate::admin::context::Ctx;
use crate::admin::model::{AgentView, EventView, TenantView, UserView};
use crate::pages::When;
use askama::Template;
use mandate_core::directory::User;
use mandate_core::time::Timestamp;

/// The console's pages, in navigation order: (address, label).
const PAGES: [(&str, &str); 9] = [
    ("overview", "Overview"),
    ("tenants", "Tenants"),
    ("users", "Users"),
    ("agents", "Agents"),
    ("grants", "Grants"),
    ("api-keys", "API keys"),
    ("audit", "Audit log"),
    ("alerts", "Alerts"),
    ("signing-keys", "Signing keys"),
];

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The navigation and the signed-in administrator, on every page.
pub struct Nav {
    pub user_name: String,
    /// "Operator: every tenant" or "Tenant admin: Acme Corp".
    pub role: String,
    /// For the sign-out form (and the page's other forms).
    pub csrf: String,
    pub items: Vec<NavItem>,
    /// The current page's name, for the window title.
    pub title: &'static str,
}

impl Nav {
    /// The navigation for `user`, working with `ctx`'s authority, on the page `current`.
    pub async fn new(
        ctx: &Ctx<'_>,
        user: &User,
        csrf: &str,
        current: &str,
    ) -> Result<Self, ConsoleError> {
        let role = match ctx.authority.tenant_filter() {
            None => "Operator: every tenant".to_owned(),
            Some(tenant) => {
                let t = directory::tenant(ctx, tenant).await?;
                format!("Tenant admin: {}", t.name)
            }
        };
        Ok(Self {
            user_name: user.display_name.clone(),
            role,
            csrf: csrf.to_owned(),
            title: PAGES
                .iter()
                .find(|(href, _)| *href == current)
                .map_or("Admin console", |(_, label)| *label),
            items: PAGES
                .iter()
                .map(|&(href, label)| NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
        })
    }
}

/// A moment from a view's unix seconds.
pub fn when(unix: i64) -> When {
    When::new(Timestamp::from_unix(unix))
}

/// The operator's tenant selector on a filter form (absent for a tenant admin, who has one).
pub struct TenantChoice {
    pub tenants: Vec<TenantView>,
    pub selected: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct OverviewPage {
    pub nav: Nav,
    /// (label, number as shown, page)
    pub counts: Vec<(&'static str, String, &'static str)>,
    pub alerts: Vec<AlertRow>,
    pub events: Vec<EventRow>,
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
pub struct TenantsPage {
    pub nav: Nav,
    pub tenants: Vec<TenantView>,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub struct UsersPage {
    pub nav: Nav,
    pub tenant: Option<TenantChoice>,
    pub users: Vec<UserView>,
    /// The address of the next page, when one follows.
    pub next: Option<String>,
}

pub struct AgentRow {
    pub agent: AgentView,
    /// The owner tenant's name; `None` for an agent of every tenant.
    pub owner: Option<String>,
}

#[derive(Template)]
#[template(path = "console/agents.html")]
pub struct AgentsPage {
    pub nav: Nav,
    pub agents: Vec<AgentRow>,
    /// The address of the next page, when one follows.
    pub next: Option<String>,
}

pub struct GrantRow {
    pub id: String,
    pub tenant_id: String,
    /// The person's login, or `None` for a service identity's own grant.
    pub user: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub purpose: Option<String>,
    pub created: When,
    pub expires: Option<When>,
    /// When and why it was revoked.
    pub revoked: Option<(When, String)>,
}

#[derive(Template)]
#[template(path = "console/grants.html")]
pub struct GrantsPage {
    pub nav: Nav,
    pub notice: Option<&'static str>,
    pub tenant: Option<TenantChoice>,
    pub user: String,
    pub agent: String,
    pub include_revoked: bool,
    pub grants: Vec<GrantRow>,
    /// The address of the next page, when one follows.
    pub next: Option<String>,
}

pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub tenant_id: String,
    pub user: Option<String>,
    pub scopes: Vec<String>,
    pub created: When,
    pub expires: When,
    pub last_used: Option<When>,
    /// `active`, `rotated`, `revoked` or `expired`.
    pub status: &'static str,
    /// Whether it may still be revoked (not revoked, not expired).
    pub live: bool,
    /// Whether it may be rotated (live, and not rotated before).
    pub rotatable: bool,
}

/// A lifetime offered for a new or rotated key.
pub struct Lifetime {
    pub seconds: u64,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console/api_keys.html")]
pub struct ApiKeysPage {
    pub nav: Nav,
    pub notice: Option<&'static str>,
    pub tenant: Option<TenantChoice>,
    /// Tenants a key may be created in (one for a tenant admin).
    pub create_tenants: Vec<TenantView>,
    pub scopes: Vec<String>,
    pub lifetimes: Vec<Lifetime>,
    pub keys: Vec<KeyRow>,
    /// The address of the next page, when one follows.
    pub next: Option<String>,
}

/// The one page that shows an API key: the answer to creating or rotating it.
#[derive(Template)]
#[template(path = "console/new_key.html")]
pub struct NewKeyPage {
    pub nav: Nav,
    pub heading: &'static str,
    /// The key itself, `mk_...`: shown here once; only its hash is stored.
    pub key: String,
    pub row: KeyRow,
    /// For a rotation: until when the old key keeps working.
    pub old_key_until: Option<(String, When)>,
}

pub struct EventRow {
    pub seq: i64,
    pub at: When,
    pub action: String,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    pub scopes: Option<String>,
    pub reason: Option<String>,
}

/// The audit log's filters as submitted, to show them again.
pub struct AuditFilters {
    pub tenant: Option<TenantChoice>,
    pub user: String,
    pub agent: String,
    pub grant: String,
    pub action: String,
    pub since: String,
    pub until: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub filters: AuditFilters,
    /// Every action name, for the action selector.
    pub actions: Vec<&'static str>,
    pub events: Vec<EventRow>,
    /// The next (older) page's address, when there may be one.
    pub older: Option<String>,
    /// The first page's address, when this is not it.
    pub newest: Option<String>,
}

pub struct AlertRow {
    pub seq: i64,
    pub at: When,
    pub rule: String,
    /// What the rule counted, in its words (`5 token.issued for agent svc-agent in 60 s`).
    pub reason: Option<String>,
    /// `agent svc-agent`, `address 10.0.0.1`, ...
    pub subject: String,
    /// `alert`, `throttle`, `revoke`, `webhook`.
    pub actions: String,
    pub tenant_id: Option<String>,
}

#[derive(Template)]
#[template(path = "console/alerts.html")]
pub struct AlertsPage {
    pub nav: Nav,
    pub alerts: Vec<AlertRow>,
    pub older: Option<String>,
    pub newest: Option<String>,
}

pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    /// `pending`, `active`, `superseded`, `expired`, `standby` or `withdrawn`.
    pub status: String,
    pub created: When,
    /// When it signs (signed) from.
    pub activates: When,
    /// A superseded key: until when it verifies; a withdrawn one: since when it does not.
    pub until: Option<When>,
}

#[derive(Template)]
#[template(path = "console/signing_keys.html")]
pub struct SigningKeysPage {
    pub nav: Nav,
    pub keys: Vec<SigningKeyRow>,
}

impl EventRow {
    /// The ids of the people `e` names (as its user or its actor), whose logins
    /// [`EventRow::new`] shows.
    pub fn people(e: &EventView) -> impl Iterator<Item = &str> {
        let actor = e
            .actor_id
            .as_deref()
            .and_then(|id| match id.strip_prefix("user:") {
                Some(admin) => Some(admin),
                None => (e.actor_kind == "user").then_some(id),
            });
        e.user_id.as_deref().into_iter().chain(actor)
    }

    /// `users` maps user ids to logins, for the people the caller can see.
    pub fn new(e: EventView, users: &std::collections::HashMap<String, String>) -> Self {
        let login = |id: String| users.get(&id).cloned().unwrap_or(id);
        // A person is recorded by id (`<id>` as a user, `user:<id>` as an administrator):
        // shown by login when the caller can see them.
        let actor = match e.actor_id {
            Some(id) => match id.strip_prefix("user:") {
                Some(admin) => format!("{} {}", e.actor_kind, login(admin.to_owned())),
                None if e.actor_kind == "user" => format!("user {}", login(id)),
                None => format!("{} {id}", e.actor_kind),
            },
            None => e.actor_kind,
        };
        let user = e.user_id.map(login);
        Self {
            seq: e.seq,
            at: when(e.at),
            action: e.action,
            actor,
            tenant_id: e.tenant_id,
            user,
            client_id: e.client_id,
            grant_id: e.grant_id,
            scopes: e.scopes.filter(|s| !s.is_empty()),
            reason: e.reason,
        }
    }
}

impl AlertRow {
    pub fn new(e: EventView) -> Self {
        let d = &e.detail;
        let text = |pointer: &str| {
            d.pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let subject = format!("{} {}", text("/subject/kind"), text("/subject/id"));
        let actions = d
            .get("actions")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        Self {
            seq: e.seq,
            at: when(e.at),
            rule: text("/rule"),
            reason: e.reason,
            subject: subject.trim().to_owned(),
            actions,
            tenant_id: e.tenant_id,
        }
    }
}
