//! Anomaly rules at work: one background task per node follows the committed audit log,
//! feeds every event to the rules ([`mandate_core::anomaly::Detector`]) and responds to what
//! fires ([`respond`]): it records an `anomaly.detected` event, throttles the subject at the
//! token endpoint ([`throttle`]), revokes its grant, agent or key, and the `[anomaly.webhook]`
//! sink delivers the firings of rules that ask for it.
//!
//! Following the log instead of hooking request handlers means a rule sees every signal,
//! whichever node or path wrote it: guards' denial reports, the CLI, other nodes. Each node
//! feeds every event to its own detector, so every node has the same windows and learns every
//! throttle from the `anomaly.detected` events; but only one node responds to each range of
//! events. Before responding, a node moves the shared `mandate:anomaly` cursor past the range
//! by compare-and-set, and responds only to firings beyond where the cursor was: a range is
//! claimed by exactly one node, so a firing is recorded and acted on once in the cluster.
//!
//! Where the rules start: at the persisted cursor, so events written while no node was
//! running are still judged after a restart; on first start, at the newest event (history
//! before rules existed is not judged). Windows live in memory: a restart forgets hits counted
//! before it. A crash after claiming a range and before responding loses those responses (the
//! events stay in the log, and `mandate audit search` finds them).

pub mod respond;
pub mod throttle;

use crate::audit_export::{ExportContext, sleep_unless_shutdown, wait_for_events};
use crate::cache::HotPathCache;
use crate::metrics::Metrics;
use anyhow::Context as _;
use mandate_core::anomaly::{Detector, Per, Rule};
use mandate_core::api_key::ApiKeyPolicy;
use mandate_core::event::{Action, Event};
use mandate_core::random::Entropy;
use mandate_core::time::{Clock, Timestamp};
use mandate_store::{ChainRow, EventFilter, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use throttle::Throttles;
use tokio::task::JoinHandle;

/// The shared cursor: the last event whose firings some node has responded to.
pub const CURSOR: &str = "mandate:anomaly";
/// The `[anomaly.webhook]` sink's cursor.
pub const WEBHOOK_CURSOR: &str = "mandate:anomaly-webhook";
/// Events read per pass.
const PAGE: u32 = 500;
/// Wait before retrying after a database failure.
const RETRY: Duration = Duration::from_secs(1);
/// How often the cursor is moved when nothing fired, so a restart resumes near the head.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Checks `[[anomaly.rules]]`.
pub fn rules_from_config(config: &crate::config::AnomalyConfig) -> anyhow::Result<Vec<Rule>> {
    let mut rules: Vec<Rule> = Vec::with_capacity(config.rules.len());
    for c in &config.rules {
        let rule = Rule::new(&c.spec())?;
        if rules.iter().any(|r| r.name == rule.name) {
            anyhow::bail!("anomaly: two rules are named `{}`", rule.name);
        }
        rules.push(rule);
    }
    let webhook = rules.iter().find(|r| {
        r.responses
            .contains(&mandate_core::anomaly::Response::Webhook)
    });
    if let (Some(r), None) = (webhook, &config.webhook) {
        anyhow::bail!(
            "anomaly rule `{}` has the webhook action, but [anomaly.webhook] is not configured",
            r.name
        );
    }
    if config.poll_interval_ms == 0 {
        anyhow::bail!("anomaly: poll_interval_ms must be positive");
    }
    Ok(rules)
}

/// Whether an exported row is a firing for the anomaly webhook.
pub fn is_webhook_firing(row: &ChainRow) -> bool {
    row.action == Action::AnomalyDetected.as_str()
        && serde_json::from_str::<serde_json::Value>(&row.detail)
            .is_ok_and(|d| d.get("webhook") == Some(&serde_json::Value::Bool(true)))
}

/// What the rules task needs from the server (not the event writer: the task must not keep
/// it open at shutdown; responses are written directly, like admin changes).
pub struct Context {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    pub api_keys: ApiKeyPolicy,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<HotPathCache>,
    pub throttles: Arc<Throttles>,
    pub poll_interval: Duration,
}

/// Starts the rules task (none without rules). Called before the server answers its first
/// request: where the rules start is read here, so that on a first start every event a
/// request writes comes after it and is judged. (Read by the task instead, it raced the first
/// requests: under load a burst of failed authentications could be written before the head
/// was read, and never counted.) If the database cannot say yet, the task keeps asking.
pub async fn spawn(rules: Vec<Rule>, ctx: Context, wake: ExportContext) -> Option<JoinHandle<()>> {
    if rules.is_empty() {
        return None;
    }
    let position = start(&ctx)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "anomaly rules cannot start yet; retrying"))
        .ok();
    Some(tokio::spawn(run(Detector::new(rules), ctx, wake, position)))
}

async fn run(mut detector: Detector, ctx: Context, mut wake: ExportContext, position: Option<i64>) {
    let mut saved = std::time::Instant::now();
    let mut position = match position {
        Some(p) => p,
        None => loop {
            if !sleep_unless_shutdown(&mut wake.shutdown, RETRY).await {
                return;
            }
            match start(&ctx).await {
                Ok(p) => break p,
                Err(e) => tracing::warn!(error = %e, "anomaly rules cannot start yet; retrying"),
            }
        },
    };
    while !*wake.shutdown.borrow() {
        match step(&mut detector, &ctx, position, &mut wake, &mut saved).await {
            Ok(Some(next)) => position = next,
            Ok(None) => {
                if !wait_for_events(&mut wake, ctx.poll_interval).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "anomaly rules: database failure; retrying");
                if !sleep_unless_shutdown(&mut wake.shutdown, RETRY).await {
                    break;
                }
            }
        }
    }
    tracing::debug!("anomaly rules stopped");
}

/// Where to start reading: the shared cursor, or the head on the very first start.
async fn start(ctx: &Context) -> Result<i64, StoreError> {
    let cursor = ctx.store.export_cursor(CURSOR).await?;
    if cursor > 0 {
        return Ok(cursor);
    }
    let head = ctx.store.chain_head().await?.seq;
    ctx.store
        .advance_export_cursor(CURSOR, cursor, head, ctx.clock.now())
        .await?;
    Ok(ctx.store.export_cursor(CURSOR).await?.max(head))
}

/// Reads the events after `position`, feeds them to the rules, and responds to what fired in
/// the range this node claims. `None`: nothing new.
async fn step(
    detector: &mut Detector,
    ctx: &Context,
    position: i64,
    wake: &mut ExportContext,
    saved: &mut std::time::Instant,
) -> Result<Option<i64>, StoreError> {
    let events = ctx
        .store
        .events(&EventFilter {
            after_seq: position,
            limit: PAGE,
            ..EventFilter::default()
        })
        .await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(None);
    };
    let mut fired = Vec::new();
    for e in &events {
        learn_throttle(&ctx.throttles, e);
        fired.extend(detector.observe(e));
    }
    if fired.is_empty() && saved.elapsed() < SAVE_EVERY {
        // Nothing to respond to: a later claim covers this range.
        return Ok(Some(last));
    }
    *saved = std::time::Instant::now();
    // The range is read and judged: from here on, failures retry the claim, never the judging
    // (which would count the same events twice).
    let claimed_after = loop {
        match claim(ctx, last).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "anomaly rules: cannot claim events; retrying");
                if !sleep_unless_shutdown(&mut wake.shutdown, RETRY).await {
                    return Ok(Some(last));
                }
            }
        }
    };
    if let Some(after) = claimed_after {
        for f in fired.iter().filter(|f| f.last_seq > after) {
            tracing::warn!(rule = %f.rule.name, subject = %f.subject, "anomaly rule fired");
            if let Err(e) = respond::respond(ctx, f).await {
                tracing::error!(rule = %f.rule.name, error = %e, "anomaly response failed");
            }
        }
    }
    Ok(Some(last))
}

/// Moves the shared cursor to `last` if it is behind; `Some(where it was)` if this node moved
/// it, `None` if another node already had.
async fn claim(ctx: &Context, last: i64) -> Result<Option<i64>, StoreError> {
    loop {
        let cursor = ctx.store.export_cursor(CURSOR).await?;
        if cursor >= last {
            return Ok(None);
        }
        if ctx
            .store
            .advance_export_cursor(CURSOR, cursor, last, ctx.clock.now())
            .await?
        {
            return Ok(Some(cursor));
        }
    }
}

/// Installs the throttle an `anomaly.detected` event records (whichever node wrote it).
fn learn_throttle(throttles: &Throttles, e: &Event) {
    if e.event.action != Action::AnomalyDetected {
        return;
    }
    let d = &e.event.detail;
    let until = d.get("throttle_until").and_then(serde_json::Value::as_i64);
    let per = d
        .pointer("/subject/kind")
        .and_then(|v| v.as_str())
        .and_then(Per::parse);
    let id = d.pointer("/subject/id").and_then(|v| v.as_str());
    if let (Some(until), Some(per), Some(id)) = (until, per, id) {
        throttles.install(per, id, Timestamp::from_unix(until));
    }
}

/// Checks the configured rules and webhook, for the server's start.
pub fn checked(
    config: &crate::config::AnomalyConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(Vec<Rule>, Option<crate::audit_export::Sink>)> {
    let rules = rules_from_config(config)?;
    let webhook = config
        .webhook
        .as_ref()
        .map(|w| crate::audit_export::anomaly_webhook(w, env))
        .transpose()
        .context("[anomaly.webhook]")?;
    Ok((rules, webhook))
}
