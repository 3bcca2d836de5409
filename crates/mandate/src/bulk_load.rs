//! `mandate bulk-load`: millions of user grants, each with its user, a refresh family and its
//! first refresh token, in the configured database.
//!
//! Why: the design promises that a request costs the same with ten thousand grants as with ten
//! million. Showing that needs a database of that size in minutes, not the days the real consent
//! flow would take. The rows are the real thing: grants are built as the consent page builds
//! them, families and codes by the same [`mandate_server::issuance`] functions the token and
//! authorization endpoints use (same ids, same hashing, same lifetimes), so the running server
//! refreshes a loaded token and redeems a loaded code like any other. Only the writing differs:
//! batches of thousands of rows in one transaction ([`mandate_store::BulkLoad`]), generated on a
//! blocking thread while the previous batch is written. A user holds one live grant per agent
//! (the store refuses a second), so every loaded grant has a user of its own, who cannot log in.
//!
//! Plaintext appears in exactly two places, both benchmark fixtures the operator asks for: a
//! sample of first refresh tokens (`--refresh-tokens-out`) and fresh authorization codes with
//! their PKCE verifiers (`--codes-out`), written to files created with mode 0600. Neither is
//! ever logged, printed or audited. Loading is an operator action, recorded as ONE
//! `grants.bulk_loaded` event with the counts, not one event per grant.
//!
//! The fixtures come out in no particular order of the grants they belong to: the sampled
//! refresh tokens shuffled, and the codes issued (and written) for the kept grants in shuffled
//! order. Users come back for a refresh or a new code whenever they do, not in the order they
//! signed up, and a benchmark that used them in load order would find each next grant, user
//! and family on the index page the previous one left cached. A code is still redeemed in the
//! order it was issued, as a real code is, moments after.

use crate::admin::open_local;
use crate::cli::{BulkLoadArgs, Global};
use anyhow::{Context, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use mandate_core::client::{Agent, GrantType};
use mandate_core::directory::User;
use mandate_core::event::Action;
use mandate_core::grant::Grant;
use mandate_core::pkce::{CodeChallenge, CodeVerifier};
use mandate_core::random::{self, Entropy};
use mandate_core::scope::ScopeSet;
use mandate_core::time::Clock;
use mandate_server::admin::context::Ctx;
use mandate_server::issuance::{self, CodeBinding, TokenSubject};
use mandate_server::system::{OsEntropy, SystemClock};
use mandate_store::{LoadBatch, Store};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What the load did, printed as the final line (or as JSON with `--json`).
#[derive(Debug, Serialize)]
struct Loaded {
    grants: u64,
    refresh_families: u64,
    users_created: u64,
    codes: u64,
    refresh_tokens_written: u64,
    seconds: f64,
    grants_per_second: f64,
}

/// Who the grants are for and what they carry; fixed for the whole load.
struct Plan {
    agent: Agent,
    tenant_id: String,
    /// Shared by every loaded user: an argon2id hash of a random secret that is thrown away, so
    /// none of them can log in (and a login attempt costs what any other does).
    password_hash: String,
    scopes: ScopeSet,
    resource: String,
}

/// A grant whose code or refresh token the operator asked to keep.
struct Kept {
    grant_id: String,
    user_id: String,
}

pub async fn run(global: &Global, args: BulkLoadArgs) -> anyhow::Result<()> {
    ensure!(
        global.server.is_none(),
        "bulk-load writes to the local database; it does not work through --server"
    );
    ensure!(args.batch > 0, "--batch must be at least 1");
    ensure!(
        args.codes <= args.grants,
        "--codes cannot exceed --grants (each code belongs to a loaded grant)"
    );
    ensure!(
        args.codes == 0 || args.codes_out.is_some(),
        "--codes needs --codes-out FILE"
    );
    let (config, store) = open_local(global).await?;
    let entropy = OsEntropy::default();
    let started = Instant::now();

    let agent = store
        .agent(&args.agent)
        .await?
        .with_context(|| format!("no agent `{}`", args.agent))?;
    ensure!(
        agent.allows(GrantType::RefreshToken),
        "agent `{}` may not use refresh tokens, so it cannot hold loaded refresh families",
        agent.client_id
    );
    if let Some(own) = &agent.tenant_id {
        ensure!(
            *own == args.tenant,
            "agent `{}` belongs to tenant `{own}`, not `{}`",
            agent.client_id,
            args.tenant
        );
    }
    store
        .tenant(&args.tenant)
        .await?
        .with_context(|| format!("no tenant `{}`", args.tenant))?;
    let resource = agent
        .default_resource
        .clone()
        .with_context(|| format!("agent `{}` has no default resource", agent.client_id))?;
    let mut salt = [0u8; 16];
    entropy.fill(&mut salt);
    let password_hash = mandate_server::password::hash(&random::opaque_secret(&entropy), &salt)?;
    let plan = Arc::new(Plan {
        scopes: agent.max_scopes.clone(),
        agent,
        tenant_id: args.tenant.clone(),
        password_hash,
        resource,
    });

    let bar = progress_bar(args.grants);
    let (mut sample, mut kept) = load_grants(&store, &plan, &args, &bar).await?;
    bar.finish_and_clear();

    shuffle(&mut sample, &entropy);
    shuffle(&mut kept, &entropy);
    let mut tokens_written = 0;
    if let Some(path) = &args.refresh_tokens_out {
        write_fixture(path, sample.iter().map(String::as_str))?;
        tokens_written = sample.len() as u64;
    }
    let codes = if let Some(path) = &args.codes_out {
        load_codes(store.as_ref(), &entropy, &plan, &kept, path, args.batch).await?
    } else {
        0
    };

    store.refresh_statistics().await?;

    let seconds = started.elapsed().as_secs_f64();
    let loaded = Loaded {
        grants: args.grants,
        refresh_families: args.grants,
        users_created: args.grants,
        codes,
        refresh_tokens_written: tokens_written,
        seconds,
        grants_per_second: args.grants as f64 / seconds.max(1e-9),
    };
    let ctx = Ctx::local(
        store.as_ref(),
        &entropy,
        SystemClock.now(),
        config.api_keys.policy(),
    );
    let mut event = ctx.event(Action::GrantsBulkLoaded);
    event.tenant_id = Some(plan.tenant_id.clone());
    event.client_id = Some(plan.agent.client_id.clone());
    event.scopes = Some(plan.scopes.to_string());
    event.detail = serde_json::json!({
        "grants": loaded.grants,
        "refresh_families": loaded.refresh_families,
        "users_created": loaded.users_created,
        "codes": loaded.codes,
    });
    store
        .append_events(&[event])
        .await
        .context("recording the load in the audit log")?;

    if global.json {
        println!("{}", serde_json::to_string_pretty(&loaded)?);
    } else {
        println!(
            "created {} users in tenant {}",
            loaded.users_created, plan.tenant_id
        );
        if codes > 0 {
            println!("issued {codes} authorization codes (valid 60 s)");
        }
        println!(
            "loaded {} grants and {} refresh families in {:.1} s ({:.0}/s)",
            loaded.grants, loaded.refresh_families, loaded.seconds, loaded.grants_per_second
        );
    }
    Ok(())
}

fn progress_bar(len: u64) -> ProgressBar {
    // Drawn on standard error, and only on a terminal.
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} grants ({per_sec}, {elapsed} elapsed, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Every `stride`-th grant (from the middle of each stride) is sampled, so samples spread over
/// the whole load rather than its first rows.
fn stride(total: u64, wanted: u64) -> u64 {
    total.checked_div(wanted).map_or(u64::MAX, |s| s.max(1))
}

/// Generates the grants on a blocking thread, a batch ahead, and writes each batch in one
/// transaction. Returns the sampled refresh tokens and the grants kept for codes.
async fn load_grants(
    store: &Arc<dyn Store>,
    plan: &Arc<Plan>,
    args: &BulkLoadArgs,
    bar: &ProgressBar,
) -> anyhow::Result<(Vec<String>, Vec<Kept>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<LoadBatch>(2);
    let total = args.grants;
    let batch_size = args.batch;
    let token_stride = stride(total, args.sample);
    let code_stride = stride(total, args.codes);
    let (sample_max, codes_max) = (args.sample, args.codes);
    let plan_for_thread = Arc::clone(plan);
    let producer = tokio::task::spawn_blocking(move || {
        let plan = plan_for_thread;
        let entropy = OsEntropy::default();
        let mut sample = Vec::new();
        let mut kept = Vec::new();
        let mut n = 0u64;
        while n < total {
            let size = batch_size.min(total - n);
            // Each batch is made at the time it is made, not when the load started: ids begin
            // with their creation time, so rows made later sort after earlier ones and land at
            // the right edge of their indexes (`random::identifier`), as real sign-ups do.
            let made = SystemClock.now();
            let mut batch = LoadBatch {
                users: Vec::with_capacity(size as usize),
                grants: Vec::with_capacity(size as usize),
                families: Vec::with_capacity(size as usize),
                codes: Vec::new(),
            };
            for _ in 0..size {
                let id = random::identifier(&entropy, made, "u_");
                let user = User {
                    login: format!("load-{}-{id}", plan.tenant_id),
                    id,
                    tenant_id: plan.tenant_id.clone(),
                    display_name: format!("Load user {n}"),
                    password_hash: plan.password_hash.clone(),
                    disabled: false,
                };
                let user_id = user.id.clone();
                let grant = Grant {
                    id: random::identifier(&entropy, made, "g_"),
                    tenant_id: plan.tenant_id.clone(),
                    user_id: Some(user_id.clone()),
                    client_id: plan.agent.client_id.clone(),
                    scopes: plan.scopes.clone(),
                    purpose: None,
                    created_at: made,
                    expires_at: None,
                    revoked_at: None,
                    revoked_reason: None,
                };
                let subject = TokenSubject {
                    agent: &plan.agent,
                    tenant_id: &plan.tenant_id,
                    user_id: Some(&user_id),
                    grant_id: &grant.id,
                    audience: &plan.resource,
                    scopes: &plan.scopes,
                };
                let (token, family) = issuance::refresh_family(&entropy, &subject, made);
                let middle = n % token_stride == token_stride / 2;
                if middle && (sample.len() as u64) < sample_max {
                    sample.push(token);
                }
                if n % code_stride == code_stride / 2 && (kept.len() as u64) < codes_max {
                    kept.push(Kept {
                        grant_id: grant.id.clone(),
                        user_id,
                    });
                }
                batch.users.push(user);
                batch.grants.push(grant);
                batch.families.push(family);
                n += 1;
            }
            if tx.blocking_send(batch).is_err() {
                break; // the writer failed; its error is reported
            }
        }
        (sample, kept)
    });
    while let Some(batch) = rx.recv().await {
        store
            .load_batch(&batch)
            .await
            .context("writing a batch of grants")?;
        bar.inc(batch.grants.len() as u64);
    }
    let (sample, kept) = producer.await.context("the grant generator failed")?;
    Ok((sample, kept))
}

/// Issues one fresh code per kept grant, bound as the authorization endpoint binds it (the
/// agent's first redirect URI, given explicitly; PKCE S256), stores them, and writes
/// `code<TAB>verifier<TAB>redirect_uri` lines to `path`.
async fn load_codes(
    store: &dyn Store,
    entropy: &OsEntropy,
    plan: &Plan,
    kept: &[Kept],
    path: &Path,
    batch_size: u64,
) -> anyhow::Result<u64> {
    let redirect_uri = plan
        .agent
        .redirect_uris
        .first()
        .map(|u| u.as_str().to_owned())
        .with_context(|| format!("agent `{}` has no redirect URI", plan.agent.client_id))?;
    ensure!(
        plan.agent.allows(GrantType::AuthorizationCode),
        "agent `{}` may not use authorization codes",
        plan.agent.client_id
    );
    // Codes live 60 s from now, not from when the load started.
    let now = SystemClock.now();
    let mut lines = Vec::with_capacity(kept.len());
    for chunk in kept.chunks(batch_size.max(1) as usize) {
        let mut batch = LoadBatch::default();
        for k in chunk {
            let verifier = random::opaque_secret(entropy);
            let challenge = CodeVerifier::parse(&verifier)
                .map(|v| v.challenge())
                .and_then(|c| CodeChallenge::parse(Some(&c), Some("S256")))
                .map_err(|_| anyhow::anyhow!("a generated PKCE verifier did not parse"))?;
            let (code, record) = issuance::authorization_code(
                entropy,
                CodeBinding {
                    client_id: &plan.agent.client_id,
                    grant_id: &k.grant_id,
                    user_id: &k.user_id,
                    tenant_id: &plan.tenant_id,
                    redirect_uri: &redirect_uri,
                    redirect_uri_explicit: true,
                    code_challenge: &challenge,
                    resource: &plan.resource,
                    scopes: plan.scopes.clone(),
                },
                now,
            );
            lines.push(format!("{code}\t{verifier}\t{redirect_uri}"));
            batch.codes.push(record);
        }
        store
            .load_batch(&batch)
            .await
            .context("writing a batch of authorization codes")?;
    }
    write_fixture(path, lines.iter().map(String::as_str))?;
    Ok(kept.len() as u64)
}

/// Puts `items` in a uniformly random order (Fisher-Yates), drawing from `entropy`.
fn shuffle<T>(items: &mut [T], entropy: &dyn Entropy) {
    for last in (1..items.len()).rev() {
        let mut bytes = [0u8; 8];
        entropy.fill(&mut bytes);
        // A 64-bit draw reduced modulo at most a few million: the bias is far below what a
        // benchmark's order could show.
        let pick = (u64::from_le_bytes(bytes) % (last as u64 + 1)) as usize;
        items.swap(last, pick);
    }
}

/// Writes benchmark fixtures (plaintext credentials), one per line, to a file only its owner
/// can read.
fn write_fixture<'a>(path: &Path, lines: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing file keeps its mode on open; narrow it before anything is written.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_whole_load() {
        assert_eq!(stride(1_000, 10), 100);
        assert_eq!(stride(5, 10), 1, "more wanted than loaded: every grant");
        assert_eq!(stride(5, 0), u64::MAX, "none wanted");
        let picked: Vec<u64> = (0..1_000).filter(|n| n % 100 == 50).collect();
        assert_eq!(picked.len(), 10);
        assert_eq!(picked.last(), Some(&950));
    }

    #[test]
    fn shuffling_keeps_every_item_and_moves_most() {
        let entropy = mandate_core::random::SeededEntropy::new(7);
        let mut items: Vec<u32> = (0..1_000).collect();
        shuffle(&mut items, &entropy);
        let in_place = items
            .iter()
            .enumerate()
            .filter(|(i, v)| *i as u32 == **v)
            .count();
        assert!(
            in_place < 20,
            "{in_place} of 1000 items stayed where they were"
        );
        items.sort_unstable();
        assert_eq!(items, (0..1_000).collect::<Vec<_>>());
        let mut none: Vec<u32> = Vec::new();
        shuffle(&mut none, &entropy);
        let mut one = vec![5];
        shuffle(&mut one, &entropy);
        assert_eq!(one, [5]);
    }
}
