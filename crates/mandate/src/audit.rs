//! `mandate audit`: the tamper-evident audit log.
//!
//! `search` and `tail` read the log locally or, with `--server`, through the admin API, like
//! the other administrative commands. Verification only runs where the database is reachable:
//! a check that asks the server whether the server's log is intact proves little. Export
//! writes the same lines the server's `[[audit_export]]` sinks deliver, from the database.
//! `checkpoint` and `purge` sign with the server's key, so they run where the database and
//! the key-encryption key are, like the server itself.

use crate::admin::{Backend, either, open_local};
use crate::cli::{AuditCmd, EventFilterArgs, Global};
use crate::output;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mandate_core::event::{Action, ActorKind, NewEvent};
use mandate_core::time::{Clock, Timestamp};
use mandate_server::admin::audit::{MAX_LIMIT, search_events};
use mandate_server::admin::context::Ctx;
use mandate_server::admin::model::{EventPage, EventQuery, EventView};
use mandate_server::audit_retention::Signer;
use mandate_server::keys::{Kek, KeyRing};
use mandate_server::system::SystemClock;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

#[derive(Serialize)]
struct Report {
    intact: bool,
    /// Events checked, from the first chained one.
    checked: u64,
    /// The last chained event and the hash the walk reached.
    head_seq: i64,
    last_hash: String,
    /// Events written before the chain existed (not covered).
    unchained_before: i64,
    /// Events up to this one were deleted by retention; the chain starts at its checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_through: Option<i64>,
    /// The signed checkpoint the chain starts from, after a purge.
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<AnchorReport>,
    /// Where the keys checkpoints were checked against came from: `kek` (stored keys whose
    /// private part the key-encryption key opens) or `database` (every stored public key).
    keys: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<mandate_core::audit::Break>,
}

#[derive(Serialize)]
struct AnchorReport {
    seq: i64,
    hash: String,
    /// When it was signed: Unix seconds and RFC 3339.
    iat: i64,
    signed_at: String,
    kid: String,
    iss: String,
}

#[derive(Serialize)]
struct CheckpointReport {
    seq: i64,
    hash: String,
    created_at: i64,
    kid: String,
    jws: String,
}

impl CheckpointReport {
    fn new(cp: mandate_store::AuditCheckpoint) -> Self {
        let kid = mandate_core::audit_checkpoint::kid(&cp.jws).unwrap_or_default();
        Self {
            seq: cp.seq,
            hash: cp.hash,
            created_at: cp.created_at,
            kid,
            jws: cp.jws,
        }
    }
}

#[derive(Serialize)]
struct PurgeReport {
    purged: u64,
    /// Events `from_seq + 1 ..= to_seq` were deleted.
    from_seq: i64,
    to_seq: i64,
    /// The `audit.purged` event recording it.
    event_seq: i64,
    checkpoint: CheckpointReport,
}

pub async fn run(global: &Global, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify => {
            anyhow::ensure!(
                global.server.is_none(),
                "`audit verify` reads the database itself; run it where the database is \
                 reachable (--data-dir or --database-url), not through --server"
            );
            verify(global).await
        }
        AuditCmd::Checkpoint => {
            anyhow::ensure!(
                global.server.is_none(),
                "`audit checkpoint` signs with the server's key; run it where the database \
                 and the key-encryption key are, not through --server"
            );
            checkpoint(global).await
        }
        AuditCmd::Purge { before } => {
            anyhow::ensure!(
                global.server.is_none(),
                "`audit purge` signs with the server's key; run it where the database and the \
                 key-encryption key are, not through --server"
            );
            purge(global, &before).await
        }
        AuditCmd::Export { after, output } => {
            anyhow::ensure!(
                global.server.is_none(),
                "`audit export` reads the database itself; run it where the database is \
                 reachable (--data-dir or --database-url), not through --server"
            );
            export(global, after, output.as_deref()).await
        }
        AuditCmd::Search {
            filter,
            after,
            before,
            newest_first,
            limit,
        } => {
            let backend = Backend::open(global).await?;
            let q = EventQuery {
                after,
                before,
                order: newest_first.then(|| "desc".to_owned()),
                limit: Some(limit),
                ..query(filter)
            };
            let page = search(&backend, q).await?;
            if global.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            if page.events.is_empty() {
                println!("(no events)");
            }
            for e in &page.events {
                println!("{}", line(e));
            }
            if let (true, Some(last)) = (page.has_more, page.last_seq) {
                let flag = if newest_first { "--before" } else { "--after" };
                eprintln!("(more events: run again with {flag} {last})");
            }
            Ok(())
        }
        AuditCmd::Tail {
            filter,
            lines,
            follow,
            interval_ms,
        } => tail(global, query(filter), lines, follow, interval_ms).await,
    }
}

/// Events read per round trip.
const EXPORT_PAGE: u32 = 2_000;

async fn export(global: &Global, after: i64, output: Option<&Path>) -> anyhow::Result<()> {
    let (_, store) = open_local(global).await?;
    match output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = BufWriter::new(file);
            write_lines(store.as_ref(), after, &mut out).await?;
            out.into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut out = BufWriter::new(std::io::stdout().lock());
            write_lines(store.as_ref(), after, &mut out).await?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Every event after `after`, in order, one line each, page by page.
async fn write_lines(
    store: &dyn mandate_store::Store,
    after: i64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut cursor = after;
    loop {
        let rows = store.chain_rows(cursor, EXPORT_PAGE).await?;
        for row in &rows {
            let line = mandate_core::audit_export::line(&row.fields(), row.hash.as_deref());
            out.write_all(line.as_bytes())?;
        }
        match rows.last() {
            Some(last) if rows.len() == EXPORT_PAGE as usize => cursor = last.seq,
            _ => return Ok(()),
        }
    }
}

fn query(f: EventFilterArgs) -> EventQuery {
    EventQuery {
        tenant_id: f.tenant,
        user_id: f.user,
        client_id: f.agent,
        grant_id: f.grant,
        action: f.action,
        since: f.since,
        until: f.until,
        ..EventQuery::default()
    }
}

async fn search(backend: &Backend, q: EventQuery) -> anyhow::Result<EventPage> {
    Ok(either!(backend, |ctx| search_events(&ctx, q), |r| r
        .get_query("/events", &q)))
}

/// Prints the latest `lines` events, oldest of them first, then (with `follow`) every new
/// event as it is committed, page by page, until interrupted. With `--json`, one event per
/// line (JSON Lines).
async fn tail(
    global: &Global,
    filter: EventQuery,
    lines: u32,
    follow: bool,
    interval_ms: u64,
) -> anyhow::Result<()> {
    let backend = Backend::open(global).await?;
    let print = |e: &EventView| -> anyhow::Result<()> {
        if global.json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            println!("{}", line(e));
        }
        Ok(())
    };
    let latest = search(
        &backend,
        EventQuery {
            order: Some("desc".into()),
            limit: Some(lines.clamp(1, MAX_LIMIT)),
            ..filter.clone()
        },
    )
    .await?;
    let mut after = latest.events.first().map_or(0, |e| e.seq);
    if lines > 0 {
        for e in latest.events.iter().rev() {
            print(e)?;
        }
    }
    if !follow {
        return Ok(());
    }
    if after == 0 {
        // Nothing matched yet: start from the head, not from the beginning of time.
        after = head(&backend).await?;
    }
    let interval = Duration::from_millis(interval_ms.max(50));
    loop {
        let page = search(
            &backend,
            EventQuery {
                after: Some(after),
                limit: Some(MAX_LIMIT),
                ..filter.clone()
            },
        )
        .await?;
        for e in &page.events {
            print(e)?;
        }
        if let Some(last) = page.last_seq {
            after = last;
        }
        if !page.has_more {
            tokio::time::sleep(interval).await;
        }
    }
}

/// The newest event's sequence number (0 for an empty log).
async fn head(backend: &Backend) -> anyhow::Result<i64> {
    let newest = search(
        backend,
        EventQuery {
            order: Some("desc".into()),
            limit: Some(1),
            ..EventQuery::default()
        },
    )
    .await?;
    Ok(newest.last_seq.unwrap_or(0))
}

/// Control characters escaped, so a value recorded from a request (a user agent, a reason)
/// can neither forge extra lines nor send escape sequences to the reader's terminal.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One event on one line, for people: number, time, action, then what is known.
fn line(e: &EventView) -> String {
    let mut out = format!("{:>8}  {}  {:<26}", e.seq, e.time, e.action);
    let fields = [
        ("tenant", &e.tenant_id),
        ("user", &e.user_id),
        ("agent", &e.client_id),
        ("grant", &e.grant_id),
        ("actor", &e.actor_id),
        ("ip", &e.ip),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            out.push_str(&format!(" {name}={}", clean(v)));
        }
    }
    if let Some(s) = &e.scopes {
        out.push_str(&format!(" scopes=\"{}\"", clean(s)));
    }
    if let Some(r) = &e.reason {
        out.push_str(&format!(" reason=\"{}\"", clean(r)));
    }
    if !e.detail.is_null() {
        // JSON text: serde_json already escapes every control character.
        out.push_str(&format!(" {}", e.detail));
    }
    out
}

/// What `checkpoint` and `purge` sign with: the local database, the server's key ring
/// (opened with the key-encryption key) and its issuer.
struct Signing {
    config: mandate_server::config::Config,
    store: std::sync::Arc<dyn mandate_store::Store>,
    keys: std::sync::Arc<mandate_server::keys::KeySet>,
    issuer: String,
}

impl Signing {
    async fn open(global: &Global) -> anyhow::Result<Self> {
        let (config, store) = open_local(global).await?;
        let entropy = mandate_server::system::OsEntropy::default();
        let kek = std::sync::Arc::new(Kek::load_or_create(&config.kek_path(), &entropy)?);
        let ring = KeyRing::load_or_create(
            store.clone(),
            kek,
            config.signing_keys.policy(config.signing_algorithm),
            &entropy,
            SystemClock.now(),
        )
        .await
        .context("loading signing keys")?;
        let keys = ring.current();
        let issuer = match &config.issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None => format!("http://{}", config.listen),
        };
        Ok(Self {
            config,
            store,
            keys,
            issuer,
        })
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            key: self.keys.signer(SystemClock.now()),
            verifiers: self.keys.checkpoint_verifiers(),
            issuer: &self.issuer,
        }
    }
}

/// The operator's event: the CLI, now.
fn cli_event() -> NewEvent {
    let mut event = NewEvent::new(SystemClock.now(), Action::AuditCheckpoint, ActorKind::Admin);
    event.actor_id = Some("cli".into());
    event
}

async fn checkpoint(global: &Global) -> anyhow::Result<()> {
    let s = Signing::open(global).await?;
    let head = s.store.chain_head().await?;
    anyhow::ensure!(
        head.seq > head.start_seq,
        "the audit log has no chained events to checkpoint yet"
    );
    let cp = mandate_server::audit_retention::checkpoint(
        s.store.as_ref(),
        &s.signer(),
        head.seq,
        cli_event(),
    )
    .await?;
    let report = CheckpointReport::new(cp);
    let text = format!(
        "checkpoint of event {} (hash {}), signed with key {}:\n{}",
        report.seq, report.hash, report.kid, report.jws
    );
    output::created(global.json, &report, &text)
}

async fn purge(global: &Global, before: &str) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let cutoff = match Timestamp::parse_user(before) {
        Some(t) => t,
        None => {
            let age = crate::cli::parse_duration(before).map_err(|e| {
                anyhow::anyhow!("--before: {e}; or give a time (RFC 3339 or Unix seconds)")
            })?;
            now.minus_seconds(age)
        }
    };
    let s = Signing::open(global).await?;
    let sinks = mandate_server::audit_retention::followers(&s.config);
    // In steps (each with its own checkpoint) until nothing is left before the cutoff.
    let mut report: Option<PurgeReport> = None;
    loop {
        let mut event = cli_event();
        event.action = Action::AuditPurged;
        let Some(done) = mandate_server::audit_retention::purge(
            s.store.as_ref(),
            &s.signer(),
            cutoff,
            &sinks,
            event,
        )
        .await?
        else {
            break;
        };
        let more = !done.reached_cutoff();
        let step = PurgeReport {
            purged: done.purged.purged,
            from_seq: done.purged.from_seq,
            to_seq: done.purged.to_seq,
            event_seq: done.purged.event_seq,
            checkpoint: CheckpointReport::new(done.checkpoint),
        };
        report = Some(match report {
            None => step,
            Some(before) => PurgeReport {
                purged: before.purged + step.purged,
                from_seq: before.from_seq,
                ..step
            },
        });
        if !more {
            break;
        }
    }
    let Some(report) = report else {
        if global.json {
            println!("null");
        } else {
            println!(
                "nothing to purge before {} (the newest event, and events an export sink has \
                 not delivered, are kept)",
                cutoff.to_rfc3339()
            );
        }
        return Ok(());
    };
    let text = format!(
        "purged {} events ({} to {}); the chain now starts at the checkpoint of event {} \
         (key {}), recorded as event {}",
        report.purged,
        report.from_seq + 1,
        report.to_seq,
        report.to_seq,
        report.checkpoint.kid,
        report.event_seq
    );
    output::created(global.json, &report, &text)
}

/// The keys a checkpoint in the database is checked against: those the key-encryption key
/// vouches for where it is available, else every public key stored in the database.
async fn checkpoint_keys(
    config: &mandate_server::config::Config,
    store: &dyn mandate_store::Store,
) -> anyhow::Result<(Vec<mandate_core::jwt::VerifyingKey>, &'static str)> {
    let path = config.kek_path();
    if path.exists() {
        let kek = Kek::load_or_create(&path, &mandate_server::system::OsEntropy::default())?;
        return Ok((KeyRing::sealed_verifiers(store, &kek).await?, "kek"));
    }
    Ok((
        mandate_store::audit::stored_public_keys(store).await?,
        "database",
    ))
}

async fn verify(global: &Global) -> anyhow::Result<()> {
    let (config, store) = open_local(global).await?;
    let (keys, key_source) = checkpoint_keys(&config, store.as_ref()).await?;
    // Drawn on standard error, and only on a terminal, so `--json` output stays clean.
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = mandate_store::audit::verify(store.as_ref(), &keys, |checked, total| {
        bar.set_length(u64::try_from(total).unwrap_or_default());
        bar.set_position(checked);
    })
    .await;
    bar.finish_and_clear();
    let v = result?;
    let purged = v.head.start_hash.is_some();
    let anchor = v.anchor.as_ref().map(|a| AnchorReport {
        seq: a.seq,
        hash: a.hash.clone(),
        iat: a.iat,
        signed_at: Timestamp::from_unix(a.iat).to_rfc3339(),
        kid: a.kid.clone(),
        iss: a.iss.clone(),
    });
    let from = match &anchor {
        Some(a) => format!(
            " from the checkpoint of event {} (signed {} with key {})",
            a.seq, a.signed_at, a.kid
        ),
        None => String::new(),
    };
    let report = Report {
        intact: v.broken.is_none(),
        checked: v.checked,
        head_seq: v.head.seq,
        last_hash: v.last_hash.clone(),
        unchained_before: if purged { 0 } else { v.head.start_seq },
        purged_through: purged.then_some(v.head.start_seq),
        anchor,
        keys: key_source,
        broken: v.broken.clone(),
    };
    let text = match &v.broken {
        None => format!(
            "audit chain intact: {} events checked{from}, head {} ({})",
            v.checked, v.head.seq, v.last_hash
        ),
        Some(b) => format!(
            "audit chain BROKEN: {b}\n({} events verified before it)",
            v.checked
        ),
    };
    output::created(global.json, &report, &text)?;
    if let Some(b) = v.broken {
        anyhow::bail!("the audit log was tampered with: {b}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cannot_be_split_or_carry_escape_sequences() {
        let e = EventView {
            seq: 7,
            at: 0,
            time: "1970-01-01T00:00:00Z".into(),
            action: "login.failed".into(),
            actor_kind: "user".into(),
            actor_id: Some("mallory\n       8  forged".into()),
            tenant_id: Some("acme".into()),
            user_id: None,
            client_id: None,
            grant_id: None,
            scopes: None,
            reason: Some("bad\u{1b}[31m password".into()),
            ip: None,
            user_agent: None,
            detail: serde_json::json!({"note": "a\nb"}),
        };
        let text = line(&e);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(text.contains("actor=mallory\\n"), "{text}");
        assert!(text.contains("tenant=acme"), "{text}");
    }
}
