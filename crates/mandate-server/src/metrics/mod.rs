//! Prometheus metrics: what the server counts, and `GET /metrics` ([`endpoint`]).
//!
//! # Why `prometheus-client`
//! It is the Prometheus project's own Rust client (OpenMetrics text, escaping and `# EOF`
//! handled), and its registry is a value, not a process-wide global. Every
//! [`crate::Application`] owns one [`Metrics`], so two servers in one process (the integration
//! tests run dozens) never mix their numbers. The `metrics` facade with
//! `metrics-exporter-prometheus` is built around one global recorder, which would have made
//! exact per-server values untestable, and its exporter brings an HTTP server we do not need.
//!
//! # The hot path
//! `prometheus-client` looks a labelled series up under a read lock, and its histogram takes a
//! mutex per observation. The two per-request metrics avoid both: handles for each label set
//! are kept in copy-on-write maps ([`ArcSwap`]) read without locking, and latencies go to
//! [`DurationHistogram`], which is plain atomics. A lock is taken only the first time a label
//! set appears. Errors, revocations and anomalies are rare and use the registry directly.
//!
//! # Cardinality
//! Labels are bounded: the route *template* (never the raw path), the method (unusual ones
//! become `other`), the status class, fixed error codes and kinds, and at most
//! `[metrics] max_agent_labels` distinct agents; agents seen after that are counted as
//! `other`, because dynamic registration lets anyone create client ids.
//!
//! # Secrets
//! Nothing secret is a label: agents appear by `client_id`, which is public.

pub mod endpoint;
pub mod histogram;

use arc_swap::ArcSwap;
use histogram::DurationHistogram;
use mandate_core::event::Action;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The label value for agents beyond the cap.
pub const OTHER: &str = "other";
/// Default for `[metrics] max_agent_labels`.
pub const DEFAULT_MAX_AGENT_LABELS: usize = 500;

/// The grant types tokens are issued under, as labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedBy {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// RFC 8693, including an API key exchanged for a token (labelled with the key's public
    /// id, which is that token's `client_id`).
    TokenExchange,
}

impl IssuedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
        }
    }

    /// Its slot in [`AgentCounters::by_grant`].
    fn index(self) -> usize {
        self as usize
    }
}

/// What a revocation ended, as labelled (`kind`).
pub fn revocation_kind(action: Action) -> Option<&'static str> {
    Some(match action {
        Action::TokenRevoked => "token",
        Action::GrantRevoked => "grant",
        Action::RefreshReuseDetected => "refresh_reuse",
        Action::CodeReplayDetected => "code_replay",
        Action::UserGrantsRevoked => "user",
        Action::UserDisabled => "user_disabled",
        Action::TenantGrantsRevoked => "tenant",
        Action::AgentGrantsRevoked => "agent",
        Action::AgentTenantGrantsRevoked => "agent_in_tenant",
        Action::AgentDisabled => "agent_disabled",
        Action::ApiKeyRevoked => "api_key",
        Action::ClientDeleted => "client_deleted",
        Action::SigningKeyRetired => "signing_key",
        _ => return None,
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    grant_type: &'static str,
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    endpoint: String,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnomalyLabels {
    rule: String,
    action: String,
}

/// One labelled agent's token counters, created per grant type on first use.
#[derive(Debug)]
struct AgentCounters {
    label: String,
    /// One per [`IssuedBy`] variant.
    by_grant: [OnceLock<Counter>; 4],
}

impl AgentCounters {
    fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            by_grant: Default::default(),
        }
    }
}

type HttpKey = (&'static str, &'static str);
type HttpHandles = HashMap<Box<str>, HashMap<HttpKey, DurationHistogram>>;

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    tokens_issued: Family<TokenLabels, Counter>,
    /// Labelled agents' counters, read without a lock; holds at most `max_agent_labels`.
    agents: ArcSwap<HashMap<Box<str>, Arc<AgentCounters>>>,
    other_agents: AgentCounters,
    max_agent_labels: usize,
    errors: Family<ErrorLabels, Counter>,
    http_latency: Family<HttpLabels, DurationHistogram>,
    /// Latency histograms by route, then (method, status class), read without a lock.
    http_handles: ArcSwap<HttpHandles>,
    revocations: Family<KindLabels, Counter>,
    feed_subscribers: Gauge,
    audit_lag: DurationHistogram,
    audit_pending: Gauge,
    audit_head: Gauge,
    export_lag: Family<SinkLabels, Gauge>,
    export_failures: Family<SinkLabels, Gauge>,
    anomalies: Family<AnomalyLabels, Counter>,
    /// Serializes the rare copy-on-write updates of `agents` and `http_handles`.
    grow: Mutex<()>,
}

impl Metrics {
    pub fn new(max_agent_labels: usize) -> Self {
        let mut registry = Registry::with_prefix("mandate");
        let tokens_issued = Family::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued, by grant type and agent (client_id; `other` beyond the \
             configured number of distinct agents)",
            tokens_issued.clone(),
        );
        let errors = Family::default();
        registry.register(
            "errors",
            "Error responses, by endpoint (route template) and error code (the RFC 6749 \
             `error` value, or the admin API's error kind)",
            errors.clone(),
        );
        let http_latency = Family::default();
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving a request to its response head, by route template, method \
             and status class",
            http_latency.clone(),
        );
        let revocations = Family::default();
        registry.register(
            "revocations",
            "Revocations recorded by this node, by what they ended",
            revocations.clone(),
        );
        let feed_subscribers = Gauge::default();
        registry.register(
            "revocation_feed_subscribers",
            "Resource servers connected to this node's revocation feed",
            feed_subscribers.clone(),
        );
        let audit_lag = DurationHistogram::default();
        registry.register(
            "audit_commit_lag_seconds",
            "Time from handing an audit event to the group-commit writer to its durable commit",
            audit_lag.clone(),
        );
        let audit_pending = Gauge::default();
        registry.register(
            "audit_pending_events",
            "Audit events handed to the group-commit writer and not yet durable",
            audit_pending.clone(),
        );
        let audit_head = Gauge::default();
        registry.register(
            "audit_chain_head_sequence",
            "Sequence number of the newest event in the audit hash chain (all nodes)",
            audit_head.clone(),
        );
        let export_lag = Family::default();
        registry.register(
            "audit_export_lag_events",
            "Audit events committed but not yet delivered by each [[audit_export]] sink",
            export_lag.clone(),
        );
        let export_failures = Family::default();
        registry.register(
            "audit_export_consecutive_failures",
            "Failed delivery attempts of each [[audit_export]] sink since its last success",
            export_failures.clone(),
        );
        let anomalies = Family::default();
        registry.register(
            "anomaly_rule_firings",
            "Anomaly rule firings, by rule and the action taken",
            anomalies.clone(),
        );
        Self {
            registry,
            tokens_issued,
            agents: ArcSwap::default(),
            other_agents: AgentCounters::new(OTHER),
            max_agent_labels,
            errors,
            http_latency,
            http_handles: ArcSwap::default(),
            revocations,
            feed_subscribers,
            audit_lag,
            audit_pending,
            audit_head,
            export_lag,
            export_failures,
            anomalies,
            grow: Mutex::new(()),
        }
    }

    /// A token was issued (after its event is durable).
    pub fn token_issued(&self, grant: IssuedBy, client_id: &str) {
        let agents = self.agents.load();
        if let Some(counters) = agents.get(client_id) {
            return self.count_token(counters, grant);
        }
        if agents.len() >= self.max_agent_labels {
            return self.count_token(&self.other_agents, grant);
        }
        drop(agents);
        let counters = self.label_agent(client_id);
        match &counters {
            Some(c) => self.count_token(c, grant),
            None => self.count_token(&self.other_agents, grant),
        }
    }

    fn count_token(&self, agent: &AgentCounters, grant: IssuedBy) {
        let Some(slot) = agent.by_grant.get(grant.index()) else {
            return;
        };
        slot.get_or_init(|| {
            self.tokens_issued.get_or_create_owned(&TokenLabels {
                grant_type: grant.as_str(),
                agent: agent.label.clone(),
            })
        })
        .inc();
    }

    /// Gives `client_id` a label of its own if the cap allows; `None` means `other`.
    fn label_agent(&self, client_id: &str) -> Option<Arc<AgentCounters>> {
        let _grow = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.agents.load();
        if let Some(c) = current.get(client_id) {
            return Some(c.clone());
        }
        if current.len() >= self.max_agent_labels {
            return None;
        }
        let counters = Arc::new(AgentCounters::new(client_id));
        let mut next = HashMap::clone(&current);
        next.insert(client_id.into(), counters.clone());
        self.agents.store(Arc::new(next));
        Some(counters)
    }

    /// A request finished: `route` is the matched template (or `unmatched`), `status` its
    /// class (`2xx`).
    pub fn request_finished(
        &self,
        route: &str,
        method: &'static str,
        status: &'static str,
        took: Duration,
    ) {
        let handles = self.http_handles.load();
        if let Some(h) = handles.get(route).and_then(|m| m.get(&(method, status))) {
            return h.observe(took);
        }
        drop(handles);
        let _grow = self.grow.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.http_handles.load();
        let mut next = HashMap::clone(&current);
        let histogram = self.http_latency.get_or_create_owned(&HttpLabels {
            route: route.to_owned(),
            method,
            status,
        });
        next.entry(route.into())
            .or_default()
            .insert((method, status), histogram.clone());
        self.http_handles.store(Arc::new(next));
        histogram.observe(took);
    }

    /// An error response left `endpoint` (a route template) with this code.
    pub fn error_answered(&self, endpoint: &str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                endpoint: endpoint.to_owned(),
                error,
            })
            .inc();
    }

    /// A revocation was recorded (its event action says what it ended).
    pub fn revoked(&self, action: Action) {
        if let Some(kind) = revocation_kind(action) {
            self.revocations.get_or_create(&KindLabels { kind }).inc();
        }
    }

    /// A revocation feed subscriber connected; it counts until the guard is dropped.
    pub fn feed_subscriber(&self) -> FeedSubscriber {
        self.feed_subscribers.inc();
        FeedSubscriber(self.feed_subscribers.clone())
    }

    /// An anomaly rule fired and `action` (alert, webhook, throttle, revoke) was taken.
    /// `rule` and `action` come from a fixed set (rule names from configuration), never from
    /// request input.
    pub fn anomaly_fired(&self, rule: &str, action: &str) {
        self.anomalies
            .get_or_create(&AnomalyLabels {
                rule: rule.to_owned(),
                action: action.to_owned(),
            })
            .inc();
    }

    /// Sets the gauges read at scrape time.
    pub fn set_audit_state(&self, pending: usize, head_seq: Option<i64>) {
        self.audit_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        if let Some(seq) = head_seq {
            self.audit_head.set(seq);
        }
    }

    /// Where an export sink stands, as read at scrape time: `lag` events behind the chain's
    /// head, after `failures` failed attempts in a row.
    pub fn set_export_state(&self, sink: &str, lag: i64, failures: u64) {
        let labels = SinkLabels { sink: sink.into() };
        self.export_lag.get_or_create(&labels).set(lag.max(0));
        self.export_failures
            .get_or_create(&labels)
            .set(i64::try_from(failures).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl mandate_store::group_commit::WriterObserver for Metrics {
    fn committed(&self, waited: Duration) {
        self.audit_lag.observe(waited);
    }
}

/// One connected revocation feed subscriber: dropping it (the client went away, the stream
/// ended, the server stopped) takes it off the gauge, so the count cannot leak.
#[must_use]
pub struct FeedSubscriber(Gauge);

impl Drop for FeedSubscriber {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        m.render().unwrap()
    }

    #[test]
    fn agents_beyond_the_cap_are_other() {
        let m = Metrics::new(2);
        for agent in ["a", "b", "c", "d", "a"] {
            m.token_issued(IssuedBy::ClientCredentials, agent);
        }
        let t = text(&m);
        assert!(
            t.contains("grant_type=\"client_credentials\",agent=\"a\"} 2"),
            "{t}"
        );
        assert!(t.contains("agent=\"b\"} 1"), "{t}");
        assert!(t.contains("agent=\"other\"} 2"), "{t}");
        assert!(!t.contains("agent=\"c\""), "{t}");
    }

    #[test]
    fn feed_subscriber_guard_decrements_on_drop() {
        let m = Metrics::new(1);
        let a = m.feed_subscriber();
        let b = m.feed_subscriber();
        assert_eq!(m.feed_subscribers.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.feed_subscribers.get(), 0);
    }

    #[test]
    fn every_revocation_action_has_a_kind() {
        for action in mandate_core::revocation::REVOCATION_ACTIONS {
            assert!(revocation_kind(action).is_some(), "{action:?}");
        }
    }
}
