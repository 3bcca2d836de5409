//! Command-line grammar.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mandate",
    version,
    about = "OAuth 2.1 authorization for AI agents"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Declarative configuration file (TOML), applied idempotently at start.
    #[arg(long, global = true, env = "MANDATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and the key-encryption key.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://path or postgres://... (env MANDATE_DATABASE_URL).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Administer a remote server through its admin API (its issuer URL) instead of the local
    /// database. Credentials: MANDATE_ADMIN_TOKEN, or MANDATE_CLIENT_ID and
    /// MANDATE_CLIENT_SECRET of an agent with an admin role.
    #[arg(long, global = true, env = "MANDATE_SERVER")]
    pub server: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the authorization server.
    Serve(ServeArgs),
    /// Run the server with the demo tenants, users and agents, and the demo CRM beside it.
    Demo(DemoArgs),
    /// Put the guard in front of an HTTP API as a reverse proxy.
    Guard(GuardArgs),
    /// Tenants (organisations).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Users (people in a tenant).
    #[command(subcommand)]
    User(UserCmd),
    /// The scope catalog.
    #[command(subcommand)]
    Scope(ScopeCmd),
    /// Resource servers (token audiences).
    #[command(subcommand)]
    Resource(ResourceCmd),
    /// Agents (OAuth clients).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Grants (a user's consent to an agent).
    #[command(subcommand)]
    Grant(GrantCmd),
    /// Scoped API keys (`mk_...`), exchangeable for short-lived access tokens.
    #[command(subcommand)]
    ApiKey(ApiKeyCmd),
    /// Who may use the admin API: operators (every tenant) and tenant admins (one tenant).
    #[command(subcommand)]
    AdminRole(AdminRoleCmd),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// The keys that sign access tokens: list, rotate, withdraw.
    #[command(subcommand)]
    SigningKey(SigningKeyCmd),
    /// Create many user grants, each with a refresh family, directly in the database: fixtures
    /// for benchmarks (BENCHMARKS.md, "Growth"). Records one `grants.bulk_loaded` event.
    BulkLoad(BulkLoadArgs),
}

#[derive(Subcommand)]
pub enum SigningKeyCmd {
    /// Every signing key with its state (pending, active, superseded, expired, standby,
    /// withdrawn) and dates.
    List,
    /// Create a key, published at once and signing after `--activate-in` seconds (default: the
    /// server's `[signing_keys] publish_before_signing_seconds`). Every node follows.
    Rotate {
        #[arg(long)]
        activate_in: Option<u64>,
    },
    /// Withdraw a key after a compromise: tokens it signed stop verifying. Rotate first (with
    /// `--activate-in 0`) if it is the key that signs.
    Withdraw { kid: String },
}

#[derive(Args)]
pub struct BulkLoadArgs {
    /// How many grants to create, each for a user of its own (`load-<tenant>-<id>`, who cannot
    /// log in), with a refresh family and its first refresh token.
    #[arg(long)]
    pub grants: u64,
    /// The tenant the grants and users belong to.
    #[arg(long, default_value = "acme")]
    pub tenant: String,
    /// The agent (client id) the grants are to; it must allow refresh tokens.
    #[arg(long, default_value = "cli-agent")]
    pub agent: String,
    /// Grants per transaction.
    #[arg(long, default_value_t = 10_000)]
    pub batch: u64,
    /// Write a sample of first refresh tokens, in plaintext, one per line, to this file
    /// (created with mode 0600). Benchmark fixtures only: anyone holding them can refresh.
    #[arg(long)]
    pub refresh_tokens_out: Option<PathBuf>,
    /// How many refresh tokens to sample, spread evenly over the load.
    #[arg(long, default_value_t = 1000)]
    pub sample: u64,
    /// Also issue `--codes` authorization codes (valid 60 s) for loaded grants and write
    /// `code<TAB>verifier<TAB>redirect_uri` lines to this file (mode 0600). Fixtures only.
    #[arg(long)]
    pub codes_out: Option<PathBuf>,
    /// How many authorization codes to issue (needs --codes-out).
    #[arg(long, default_value_t = 0)]
    pub codes: u64,
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Walk the hash chain of every event in the database and report the first event that was
    /// modified, inserted or deleted. After a retention purge the chain starts at a signed
    /// checkpoint, which must verify with one of the server's keys. Exits 1 if the chain is
    /// broken.
    Verify,
    /// Sign a checkpoint of the chain's head with the server's signing key, record it (as an
    /// `audit.checkpoint` event) and print it: a JWS anyone can verify against the server's
    /// /jwks.json. Keep it somewhere the database's writers cannot reach.
    Checkpoint,
    /// Delete events older than `--before`, after verifying the chain up to them and signing a
    /// checkpoint of the last one, so the chain stays verifiable. Never deletes the newest event
    /// nor what a configured `[[audit_export]]` sink has not delivered yet.
    Purge {
        /// Events before this time: RFC 3339 or Unix seconds, or an age such as `90d`, `12h`.
        #[arg(long)]
        before: String,
    },
    /// Search the audit log (oldest first; `--newest-first` to page backwards). Works on the
    /// local database or, with `--server`, through the admin API (a tenant admin sees only
    /// their tenant).
    Search {
        #[command(flatten)]
        filter: EventFilterArgs,
        /// Events after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Events before this sequence number.
        #[arg(long)]
        before: Option<i64>,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
        /// At most this many events (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the latest events, and with `-f` keep printing new ones as they are written.
    Tail {
        #[command(flatten)]
        filter: EventFilterArgs,
        /// How many of the latest events to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Follow: wait for new events and print them until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How often to look for new events when following, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Write events as JSON Lines in the SIEM export format (docs/audit-export.md), in
    /// sequence order, once: for backfills and ad-hoc use. Continuous delivery is done by
    /// `[[audit_export]]` sinks in the server.
    Export {
        /// Only events with a sequence number greater than this.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Write to this file (created or replaced) instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

/// Which events: every filter given must match.
#[derive(Args, Clone, Default)]
pub struct EventFilterArgs {
    #[arg(long)]
    pub tenant: Option<String>,
    /// User id.
    #[arg(long)]
    pub user: Option<String>,
    /// Agent (client id).
    #[arg(long)]
    pub agent: Option<String>,
    /// Grant id (for API keys: the key id).
    #[arg(long)]
    pub grant: Option<String>,
    /// Action, e.g. `token.issued`, `grant.revoked`, `access.denied`.
    #[arg(long)]
    pub action: Option<String>,
    /// At or after this time (Unix seconds or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (Unix seconds or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Public issuer URL [default: http://<listen>].
    #[arg(long)]
    pub issuer: Option<String>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Address of the authorization server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the demo CRM. Its resource identifier (the tokens' audience) stays
    /// http://127.0.0.1:8081 whatever the address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub crm_listen: SocketAddr,
}

#[derive(Args)]
pub struct GuardArgs {
    /// The Mandate issuer URL whose tokens are accepted.
    #[arg(long)]
    pub issuer: String,
    /// This resource's identifier (the tokens' audience).
    #[arg(long)]
    pub resource: String,
    /// The API to forward authorised requests to.
    #[arg(long)]
    pub upstream: String,
    /// Route rules (TOML): `[[routes]]` with path, methods, scopes, any_scopes, public.
    #[arg(long)]
    pub routes: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// The resource's credential id for the revocation feed; its secret is read from
    /// MANDATE_GUARD_FEED_SECRET (never from the command line).
    #[arg(long)]
    pub feed_client_id: Option<String>,
    /// Migration mode: also accept raw Mandate API keys (`mk_...`) as bearer tokens, checked
    /// at the issuer's introspection endpoint with the feed credential (needs
    /// --feed-client-id); answers are cached for a few seconds, revocations apply at once.
    #[arg(long, requires = "feed_client_id")]
    pub accept_api_keys: bool,
    /// Report every refused request (401/403) to the issuer's audit log as an `access.denied`
    /// event, in batches, with the feed credential (needs --feed-client-id).
    #[arg(long, requires = "feed_client_id")]
    pub report_denials: bool,
}

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Create a tenant (or rename an existing one).
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user; the password is read from standard input.
    Create {
        login: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Users by login, a page at a time.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Disable a user: logins fail and their tokens stop introspecting as active.
    Disable { login: String },
}

/// Which page of a listing to print. When another page follows, the command says on standard
/// error how to ask for it (`--after <cursor>`); standard output holds only this page.
#[derive(Args, Debug, Clone)]
pub struct PageArgs {
    /// At most this many items (1-1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Continue after this cursor, from the previous page's hint.
    #[arg(long)]
    pub after: Option<String>,
}

#[derive(Subcommand)]
pub enum ScopeCmd {
    Create {
        name: String,
        #[arg(long)]
        description: String,
        #[arg(long)]
        sensitive: bool,
    },
    List,
}

#[derive(Subcommand)]
pub enum ResourceCmd {
    Create {
        /// Resource indicator (absolute URI), used as the token audience.
        identifier: String,
        #[arg(long)]
        name: String,
        /// Scopes the resource accepts.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Give the resource server a credential with this id (for introspection and the
        /// revocation feed); its secret is generated and printed once.
        #[arg(long)]
        client_id: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Register an agent. A confidential agent's secret is generated and printed once.
    Create {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        /// public or confidential.
        #[arg(long)]
        kind: String,
        #[arg(long, value_delimiter = ',', required = true)]
        grant_types: Vec<String>,
        #[arg(long, value_delimiter = ',', required = true)]
        max_scopes: Vec<String>,
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        default_resource: Option<String>,
    },
    /// Agents by client id, a page at a time.
    List {
        /// Only agents this tenant owns.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Disable an agent: it can no longer authenticate and its tokens become inactive.
    Disable { client_id: String },
}

#[derive(Subcommand)]
pub enum GrantCmd {
    /// Grants, newest first, a page at a time.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Login name of the user.
        #[arg(long)]
        user: Option<String>,
        /// Client id of the agent.
        #[arg(long)]
        agent: Option<String>,
        /// Include revoked grants.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a grant and every token issued under it.
    Revoke {
        id: String,
        #[arg(long, default_value = "revoked by administrator")]
        reason: String,
    },
    /// Revoke every grant of a user (offboarding), of a tenant (integration disabled), of an
    /// agent (compromised), or of an agent within one tenant (--agent with --tenant). Users
    /// and tenants also lose their API keys. Takes effect at once at introspection and on the
    /// revocation feed; nobody else is touched.
    RevokeAll {
        /// Login name of the user.
        #[arg(long, conflicts_with_all = ["tenant", "agent"])]
        user: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Client id of the agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value = "revoked by administrator")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key; it is printed once (only its hash is stored).
    Create {
        #[arg(long)]
        tenant: String,
        /// Login name of the user the key acts for (default: a tenant-level key).
        #[arg(long)]
        user: Option<String>,
        /// Space- or comma-separated scopes from the catalog.
        #[arg(long)]
        scopes: String,
        /// Lifetime, e.g. `3600s`, `90m`, `12h`, `30d` (at most `api_keys.max_lifetime_seconds`).
        #[arg(long, value_parser = parse_duration)]
        expires_in: u64,
        #[arg(long)]
        name: String,
    },
    /// List keys, newest first, a page at a time (never the key or its hash).
    List {
        /// Only this tenant's keys (an operator without it sees every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Rotate a key: prints its successor once; the old key keeps working for the overlap
    /// window (`api_keys.rotation_overlap_seconds`) or until its own expiry, if sooner.
    Rotate {
        id: String,
        /// The successor's lifetime, e.g. `30d`.
        #[arg(long, value_parser = parse_duration)]
        expires_in: u64,
    },
    /// Revoke a key; tokens obtained with it stop working at once.
    Revoke {
        id: String,
        #[arg(long, default_value = "revoked by administrator")]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum AdminRoleCmd {
    /// Give a user (by login) or an agent (by client id) a role, replacing any previous one.
    Set {
        #[arg(long, conflicts_with = "agent")]
        user: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// operator or tenant-admin.
        #[arg(long)]
        role: String,
        /// The tenant a tenant admin administers (a user's own tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    List,
    /// Take a role away; it takes effect at the principal's next request.
    Remove {
        #[arg(long, conflicts_with = "agent")]
        user: Option<String>,
        #[arg(long)]
        agent: Option<String>,
    },
}

/// `30d`, `12h`, `90m`, `3600s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30d, 12h, 90m or 3600s"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "w" => 7 * 24 * 60 * 60,
        _ => return Err(format!("`{s}`: unit must be s, m, h, d or w")),
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a positive duration"))
}
