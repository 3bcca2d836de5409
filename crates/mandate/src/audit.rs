//! `mandate audit`: the tamper-evident audit log.
//!
//! `search` and `tail` read the log locally or, with `--server`, through the admin API, like
//! the other administrative commands. Verification only runs where the database is reachable:
//! a check that asks the server whether the server's log is intact proves little. Export
//! writes the same lines the server's `[[audit_export]]` sinks deliver, from the database.

use crate::admin::{Backend, either, open_local};
use crate::cli::{AuditCmd, EventFilterArgs, Global};
use crate::output;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mandate_core::time::Clock;
use mandate_server::admin::audit::{MAX_LIMIT, search_events};
use mandate_server::admin::context::Ctx;
use mandate_server::admin::model::{EventPage, EventQuery, EventView};
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
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<mandate_core::audit::Break>,
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

async fn verify(global: &Global) -> anyhow::Result<()> {
    let (_, store) = open_local(global).await?;
    // Drawn on standard error, and only on a terminal, so `--json` output stays clean.
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = mandate_store::audit::verify(store.as_ref(), |checked, total| {
        bar.set_length(u64::try_from(total).unwrap_or_default());
        bar.set_position(checked);
    })
    .await;
    bar.finish_and_clear();
    let v = result?;
    let report = Report {
        intact: v.broken.is_none(),
        checked: v.checked,
        head_seq: v.head.seq,
        last_hash: v.last_hash.clone(),
        unchained_before: v.head.start_seq,
        broken: v.broken.clone(),
    };
    let text = match &v.broken {
        None => format!(
            "audit chain intact: {} events checked, head {} ({})",
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
