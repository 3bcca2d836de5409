//! `mandate audit`: the tamper-evident audit log, read from the database itself.
//!
//! Verification runs where the database is reachable rather than through the admin API: a
//! check that asks the server whether the server's log is intact proves little. Export writes
//! the same lines the server's `[[audit_export]]` sinks deliver.

use crate::admin::open_local;
use crate::cli::{AuditCmd, Global};
use crate::output;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::Path;

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
    anyhow::ensure!(
        global.server.is_none(),
        "`audit` reads the database itself; run it where the database is reachable \
         (--data-dir or --database-url), not through --server"
    );
    match cmd {
        AuditCmd::Verify => verify(global).await,
        AuditCmd::Export { after, output } => export(global, after, output.as_deref()).await,
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
