//! Anomaly rules: patterns in the audit log that mean an agent has gone wrong, and what to do
//! about them.
//!
//! Detection reads committed events, not requests: every signal a rule needs (a token issued,
//! a failed client authentication, an out-of-scope call a guard reported, a refresh token
//! replayed, an API key used after rotation) is already an audit event, with its time, agent,
//! grant and address. So one [`Detector`] sees what every node and every path wrote, in
//! sequence order, and its decisions are a pure function of that sequence: the same events
//! give the same firings, whatever the wall clock says. Windows are measured in event time.
//!
//! A rule counts hits per subject (an agent, a grant, a client ID, an address or an API key)
//! and fires when `threshold` hits fall within `window_seconds`; it then stays quiet for that
//! subject for one window, so a flood yields one firing per window rather than one per
//! request. The "new address" and "new user agent" rules remember the first few origins each
//! grant was used from and fire when a use comes from one not seen before (the first use sets
//! the baseline). Memory is bounded: each rule tracks at most [`MAX_SUBJECTS`] subjects.

use crate::event::{Action, Event};
use crate::time::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::fmt;

/// Subjects one rule tracks at most; beyond that, subjects idle for a whole window are
/// forgotten first, and if none is, the rule starts over (failing open for a moment rather
/// than growing without bound).
pub const MAX_SUBJECTS: usize = 100_000;
/// Origins remembered per grant by the new-address and new-user-agent rules.
pub const MAX_ORIGINS_PER_GRANT: usize = 16;
/// The longest window a rule may have.
pub const MAX_WINDOW_SECONDS: u64 = 7 * 24 * 3600;

/// What a rule looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// Tokens issued, refreshed or exchanged.
    IssuanceSpike,
    /// Failed client authentications.
    ClientAuthFailures,
    /// Calls a guard refused for lack of scope (`access.denied`, `insufficient_scope`).
    OutOfScope,
    /// Refresh tokens presented again after rotation.
    RefreshReuse,
    /// A grant used from an address it was not used from before.
    NewAddress,
    /// A grant used with a user agent it was not used with before.
    NewUserAgent,
    /// An API key used after it was rotated (during its overlap).
    RotatedApiKeyUse,
}

impl RuleKind {
    pub const ALL: [Self; 7] = [
        Self::IssuanceSpike,
        Self::ClientAuthFailures,
        Self::OutOfScope,
        Self::RefreshReuse,
        Self::NewAddress,
        Self::NewUserAgent,
        Self::RotatedApiKeyUse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::IssuanceSpike => "issuance_spike",
            Self::ClientAuthFailures => "client_auth_failures",
            Self::OutOfScope => "out_of_scope",
            Self::RefreshReuse => "refresh_reuse",
            Self::NewAddress => "new_address",
            Self::NewUserAgent => "new_user_agent",
            Self::RotatedApiKeyUse => "rotated_api_key_use",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// What the rule may count per, the first being the default.
    pub fn subjects(self) -> &'static [Per] {
        match self {
            Self::IssuanceSpike | Self::RefreshReuse => &[Per::Grant, Per::Agent],
            Self::ClientAuthFailures => &[Per::Client, Per::Address],
            Self::OutOfScope => &[Per::Grant, Per::Agent],
            Self::NewAddress | Self::NewUserAgent => &[Per::Grant],
            Self::RotatedApiKeyUse => &[Per::ApiKey],
        }
    }

    /// Whether this rule counts the event.
    fn matches(self, e: &Event) -> bool {
        let action = e.event.action;
        match self {
            Self::IssuanceSpike | Self::NewAddress | Self::NewUserAgent => matches!(
                action,
                Action::TokenIssued | Action::TokenRefreshed | Action::TokenExchanged
            ),
            Self::ClientAuthFailures => action == Action::ClientAuthFailed,
            Self::OutOfScope => {
                action == Action::AccessDenied
                    && e.event.detail.get("error").and_then(|v| v.as_str())
                        == Some("insufficient_scope")
            }
            Self::RefreshReuse => action == Action::RefreshReuseDetected,
            Self::RotatedApiKeyUse => {
                matches!(action, Action::ApiKeyUsed | Action::TokenExchanged)
                    && e.event
                        .detail
                        .get("replaced_by")
                        .is_some_and(|v| v.is_string())
            }
        }
    }
}

/// What a rule counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Per {
    /// The agent (client ID) the event names.
    Agent,
    /// The grant the event names.
    Grant,
    /// The client ID presented (for failed authentication: it may name no real agent).
    Client,
    /// The client's IP address.
    Address,
    /// The API key the event names.
    ApiKey,
}

impl Per {
    pub const ALL: [Self; 5] = [
        Self::Agent,
        Self::Grant,
        Self::Client,
        Self::Address,
        Self::ApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Grant => "grant",
            Self::Client => "client",
            Self::Address => "address",
            Self::ApiKey => "api_key",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The subject an event names, if it names one.
    fn of(self, e: &Event) -> Option<&str> {
        let e = &e.event;
        let id = match self {
            Self::Agent | Self::Client => e.client_id.as_deref(),
            Self::Grant => e.grant_id.as_deref(),
            Self::Address => e.ip.as_deref(),
            Self::ApiKey => e.detail.get("api_key_id").and_then(|v| v.as_str()),
        };
        id.filter(|s| !s.is_empty())
    }

    /// Whether revoking this kind of subject means anything (an address cannot be revoked).
    pub fn revocable(self) -> bool {
        self != Self::Address
    }
}

/// What to do when a rule fires. Every firing is recorded as an `anomaly.detected` event
/// whatever its responses; `Alert` asks for nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Response {
    /// Record the anomaly (always done).
    Alert,
    /// Deliver the anomaly event to the configured anomaly webhook.
    Webhook,
    /// Answer the subject's token requests with `429` and `Retry-After` for a while.
    Throttle,
    /// Revoke the grant, disable the agent (and revoke its grants) or revoke the API key.
    Revoke,
}

impl Response {
    pub const ALL: [Self; 4] = [Self::Alert, Self::Webhook, Self::Throttle, Self::Revoke];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Webhook => "webhook",
            Self::Throttle => "throttle",
            Self::Revoke => "revoke",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A rule's settings, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub kind: String,
    pub per: Option<String>,
    pub threshold: u32,
    pub window_seconds: u64,
    pub actions: Vec<String>,
    pub throttle_seconds: Option<u64>,
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub per: Per,
    pub threshold: u32,
    pub window_seconds: u64,
    /// Sorted, without duplicates.
    pub responses: Vec<Response>,
    /// How long a throttle lasts (set exactly when `responses` has `Throttle`).
    pub throttle_seconds: Option<u64>,
}

/// Why a rule's settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("anomaly rule `{rule}`: {why}")]
pub struct RuleError {
    pub rule: String,
    pub why: String,
}

impl Rule {
    pub fn new(spec: &RuleSpec) -> Result<Self, RuleError> {
        let fail = |why: String| RuleError {
            rule: spec.name.clone(),
            why,
        };
        let name_ok = !spec.name.is_empty()
            && spec.name.len() <= 64
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(fail(
                "name must be 1 to 64 letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        let kind = RuleKind::parse(&spec.kind).ok_or_else(|| {
            let known: Vec<_> = RuleKind::ALL.iter().map(|k| k.as_str()).collect();
            fail(format!(
                "unknown kind `{}` (one of: {})",
                spec.kind,
                known.join(", ")
            ))
        })?;
        let allowed = kind.subjects();
        let per = match &spec.per {
            None => allowed.first().copied().unwrap_or(Per::Grant),
            Some(p) => Per::parse(p)
                .filter(|p| allowed.contains(p))
                .ok_or_else(|| {
                    let names: Vec<_> = allowed.iter().map(|p| p.as_str()).collect();
                    fail(format!(
                        "a {} rule counts per {}, not `{p}`",
                        kind.as_str(),
                        names.join(" or ")
                    ))
                })?,
        };
        if spec.threshold == 0 {
            return Err(fail("threshold must be at least 1".into()));
        }
        if matches!(kind, RuleKind::NewAddress | RuleKind::NewUserAgent) && spec.threshold != 1 {
            return Err(fail(format!(
                "a {} rule fires on the first new origin: leave threshold at 1",
                kind.as_str()
            )));
        }
        if spec.window_seconds == 0 || spec.window_seconds > MAX_WINDOW_SECONDS {
            return Err(fail(format!(
                "window_seconds must be between 1 and {MAX_WINDOW_SECONDS}"
            )));
        }
        let mut responses = Vec::new();
        for a in &spec.actions {
            let r = Response::parse(a).ok_or_else(|| {
                fail(format!(
                    "unknown action `{a}` (one of: alert, webhook, throttle, revoke)"
                ))
            })?;
            if r == Response::Revoke && !per.revocable() {
                return Err(fail(format!(
                    "an {} cannot be revoked; throttle it instead",
                    per.as_str()
                )));
            }
            responses.push(r);
        }
        responses.sort_unstable();
        responses.dedup();
        if responses.is_empty() {
            responses.push(Response::Alert);
        }
        let throttles = responses.contains(&Response::Throttle);
        let throttle_seconds = match (throttles, spec.throttle_seconds) {
            (true, Some(s)) if s > 0 && s <= MAX_WINDOW_SECONDS => Some(s),
            (true, None) => Some(spec.window_seconds),
            (true, Some(_)) => {
                return Err(fail(format!(
                    "throttle_seconds must be between 1 and {MAX_WINDOW_SECONDS}"
                )));
            }
            (false, Some(_)) => {
                return Err(fail("throttle_seconds needs the throttle action".into()));
            }
            (false, None) => None,
        };
        Ok(Self {
            name: spec.name.clone(),
            kind,
            per,
            threshold: spec.threshold,
            window_seconds: spec.window_seconds,
            responses,
            throttle_seconds,
        })
    }

    fn is_origin_rule(&self) -> bool {
        matches!(self.kind, RuleKind::NewAddress | RuleKind::NewUserAgent)
    }
}

/// Who a firing is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub per: Per,
    pub id: String,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.per.as_str(), self.id)
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub rule: Rule,
    pub subject: Subject,
    /// Hits within the window (the threshold, or 1 for a new origin).
    pub count: u32,
    /// The first and last events counted.
    pub first_seq: i64,
    pub last_seq: i64,
    /// The last counted event's time: when the rule fired, in event time.
    pub at: Timestamp,
    /// What the last counted event named, for the record.
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub grant_id: Option<String>,
    /// The new address or user agent, for the origin rules.
    pub origin: Option<String>,
}

impl Firing {
    /// Until when the subject is throttled, if the rule throttles.
    pub fn throttle_until(&self) -> Option<Timestamp> {
        self.rule.throttle_seconds.map(|s| self.at.plus_seconds(s))
    }

    /// One line for people: what happened, and the threshold.
    pub fn describe(&self) -> String {
        let what = match self.rule.kind {
            RuleKind::IssuanceSpike => "tokens issued",
            RuleKind::ClientAuthFailures => "failed client authentications",
            RuleKind::OutOfScope => "out-of-scope calls",
            RuleKind::RefreshReuse => "refresh token replays",
            RuleKind::RotatedApiKeyUse => "uses of a rotated API key",
            RuleKind::NewAddress => "uses from a new address",
            RuleKind::NewUserAgent => "uses with a new user agent",
        };
        if self.rule.is_origin_rule() {
            return format!(
                "anomaly rule `{}`: {} used from an origin not seen before",
                self.rule.name, self.subject
            );
        }
        format!(
            "anomaly rule `{}`: {} {what} for {} within {} s (threshold {})",
            self.rule.name, self.count, self.subject, self.rule.window_seconds, self.rule.threshold
        )
    }
}

/// One subject's recent hits under one rule.
#[derive(Debug, Default)]
struct Window {
    /// The most recent hits, at most `threshold` of them: (time, seq).
    hits: VecDeque<(i64, i64)>,
    /// After a firing, hits before this time are not counted again.
    quiet_until: i64,
}

/// Origins one grant was used from.
#[derive(Debug, Default)]
struct Origins {
    seen: Vec<String>,
    /// After a firing, new origins before this time only join the baseline.
    quiet_until: i64,
}

/// Per rule state.
#[derive(Debug)]
enum State {
    Counting(HashMap<String, Window>),
    Origins(HashMap<String, Origins>),
}

/// Evaluates rules over events in sequence order.
#[derive(Debug)]
pub struct Detector {
    rules: Vec<(Rule, State)>,
}

impl Detector {
    pub fn new(rules: Vec<Rule>) -> Self {
        let rules = rules
            .into_iter()
            .map(|r| {
                let state = if r.is_origin_rule() {
                    State::Origins(HashMap::new())
                } else {
                    State::Counting(HashMap::new())
                };
                (r, state)
            })
            .collect();
        Self { rules }
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// Feeds one event (in sequence order); returns the rules it made fire.
    pub fn observe(&mut self, e: &Event) -> Vec<Firing> {
        let mut fired = Vec::new();
        for (rule, state) in &mut self.rules {
            if !rule.kind.matches(e) {
                continue;
            }
            let Some(id) = rule.per.of(e) else {
                continue;
            };
            let at = e.event.at.unix();
            let hit = match state {
                State::Counting(windows) => count(rule, windows, id, at, e.seq),
                State::Origins(grants) => new_origin(rule, grants, id, at, e),
            };
            if let Some((count, first_seq, origin)) = hit {
                fired.push(Firing {
                    rule: rule.clone(),
                    subject: Subject {
                        per: rule.per,
                        id: id.to_owned(),
                    },
                    count,
                    first_seq,
                    last_seq: e.seq,
                    at: e.event.at,
                    tenant_id: e.event.tenant_id.clone(),
                    client_id: e.event.client_id.clone(),
                    grant_id: e.event.grant_id.clone(),
                    origin,
                });
            }
        }
        fired
    }
}

/// Makes room for one more subject in a rule's map.
fn bound<V>(map: &mut HashMap<String, V>, id: &str, idle: impl Fn(&V) -> bool) {
    if map.len() >= MAX_SUBJECTS && !map.contains_key(id) {
        map.retain(|_, v| !idle(v));
        if map.len() >= MAX_SUBJECTS {
            map.clear();
        }
    }
}

/// Counts one hit; `Some((count, first_seq, None))` when the rule fires.
fn count(
    rule: &Rule,
    windows: &mut HashMap<String, Window>,
    id: &str,
    at: i64,
    seq: i64,
) -> Option<(u32, i64, Option<String>)> {
    let window = i64::try_from(rule.window_seconds).unwrap_or(i64::MAX);
    bound(windows, id, |w| {
        w.hits.back().is_none_or(|&(t, _)| at - t >= window) && w.quiet_until <= at
    });
    let w = windows.entry(id.to_owned()).or_default();
    if at < w.quiet_until {
        return None;
    }
    w.hits.push_back((at, seq));
    while w.hits.len() > rule.threshold as usize {
        w.hits.pop_front();
    }
    let &(oldest, first_seq) = w.hits.front()?;
    if w.hits.len() < rule.threshold as usize || at - oldest >= window {
        return None;
    }
    w.hits.clear();
    w.quiet_until = at.saturating_add(window);
    Some((rule.threshold, first_seq, None))
}

/// Notes one use of a grant; `Some((1, seq, Some(origin)))` when it came from a new origin.
fn new_origin(
    rule: &Rule,
    grants: &mut HashMap<String, Origins>,
    grant: &str,
    at: i64,
    e: &Event,
) -> Option<(u32, i64, Option<String>)> {
    let origin = match rule.kind {
        RuleKind::NewAddress => e.event.ip.as_deref(),
        _ => e.event.user_agent.as_deref(),
    }
    .filter(|o| !o.is_empty())?;
    let window = i64::try_from(rule.window_seconds).unwrap_or(i64::MAX);
    bound(grants, grant, |o| o.quiet_until <= at);
    let baseline = !grants.contains_key(grant);
    let o = grants.entry(grant.to_owned()).or_default();
    if o.seen.iter().any(|s| s == origin) {
        return None;
    }
    if o.seen.len() >= MAX_ORIGINS_PER_GRANT {
        o.seen.remove(0);
    }
    o.seen.push(origin.to_owned());
    if baseline || at < o.quiet_until {
        return None;
    }
    o.quiet_until = at.saturating_add(window);
    Some((1, e.seq, Some(origin.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ActorKind, NewEvent};

    fn spec(kind: &str, per: Option<&str>, threshold: u32, window: u64) -> RuleSpec {
        RuleSpec {
            name: format!("r-{kind}"),
            kind: kind.into(),
            per: per.map(Into::into),
            threshold,
            window_seconds: window,
            actions: vec!["alert".into()],
            throttle_seconds: None,
        }
    }

    fn rule(kind: &str, per: Option<&str>, threshold: u32, window: u64) -> Rule {
        Rule::new(&spec(kind, per, threshold, window)).unwrap()
    }

    fn event(seq: i64, at: i64, action: Action, f: impl FnOnce(&mut NewEvent)) -> Event {
        let mut e = NewEvent::new(Timestamp::from_unix(at), action, ActorKind::Agent);
        e.client_id = Some("agent-1".into());
        e.grant_id = Some("g1".into());
        e.tenant_id = Some("acme".into());
        f(&mut e);
        Event { seq, event: e }
    }

    fn issued(seq: i64, at: i64) -> Event {
        event(seq, at, Action::TokenIssued, |_| {})
    }

    #[test]
    fn a_spike_fires_once_per_window_at_the_threshold() {
        let mut d = Detector::new(vec![rule("issuance_spike", None, 3, 10)]);
        assert!(d.observe(&issued(1, 100)).is_empty());
        assert!(d.observe(&issued(2, 101)).is_empty());
        let fired = d.observe(&issued(3, 109));
        assert_eq!(fired.len(), 1);
        let f = &fired[0];
        assert_eq!(
            f.subject,
            Subject {
                per: Per::Grant,
                id: "g1".into()
            }
        );
        assert_eq!((f.count, f.first_seq, f.last_seq), (3, 1, 3));
        // Quiet for one window after firing, then counting starts over.
        for (seq, at) in [(4, 110), (5, 111), (6, 118)] {
            assert!(d.observe(&issued(seq, at)).is_empty(), "seq {seq}");
        }
        assert!(d.observe(&issued(7, 119)).is_empty());
        assert!(d.observe(&issued(8, 120)).is_empty());
        assert_eq!(d.observe(&issued(9, 121)).len(), 1);
    }

    #[test]
    fn hits_spread_wider_than_the_window_do_not_fire() {
        let mut d = Detector::new(vec![rule("issuance_spike", Some("agent"), 3, 10)]);
        for (seq, at) in [(1, 100), (2, 105), (3, 110), (4, 115), (5, 120)] {
            assert!(d.observe(&issued(seq, at)).is_empty(), "seq {seq}");
        }
    }

    #[test]
    fn subjects_are_counted_apart() {
        let mut d = Detector::new(vec![rule("issuance_spike", None, 2, 60)]);
        assert!(d.observe(&issued(1, 100)).is_empty());
        let other = event(2, 100, Action::TokenIssued, |e| {
            e.grant_id = Some("g2".into())
        });
        assert!(d.observe(&other).is_empty());
        assert_eq!(d.observe(&issued(3, 101)).len(), 1);
    }

    #[test]
    fn failed_client_authentication_per_address() {
        let mut d = Detector::new(vec![rule("client_auth_failures", Some("address"), 2, 60)]);
        let fail = |seq, ip: &str| {
            event(seq, 100, Action::ClientAuthFailed, |e| {
                e.ip = Some(ip.into());
                e.client_id = Some(format!("guess-{seq}"));
            })
        };
        assert!(d.observe(&fail(1, "10.0.0.1")).is_empty());
        assert!(d.observe(&fail(2, "10.0.0.2")).is_empty());
        let fired = d.observe(&fail(3, "10.0.0.1"));
        assert_eq!(fired[0].subject.id, "10.0.0.1");
        // Issuance is not a failure.
        let mut d = Detector::new(vec![rule("client_auth_failures", None, 1, 60)]);
        assert!(d.observe(&issued(1, 100)).is_empty());
    }

    #[test]
    fn only_insufficient_scope_denials_are_out_of_scope() {
        let mut d = Detector::new(vec![rule("out_of_scope", None, 2, 60)]);
        let denied = |seq, error: &str| {
            let error = error.to_owned();
            event(seq, 100, Action::AccessDenied, move |e| {
                e.detail = serde_json::json!({ "error": error });
            })
        };
        assert!(d.observe(&denied(1, "invalid_token")).is_empty());
        assert!(d.observe(&denied(2, "invalid_token")).is_empty());
        assert!(d.observe(&denied(3, "insufficient_scope")).is_empty());
        assert_eq!(d.observe(&denied(4, "insufficient_scope")).len(), 1);
    }

    #[test]
    fn refresh_replays_per_agent_across_grants() {
        let mut d = Detector::new(vec![rule("refresh_reuse", Some("agent"), 2, 3600)]);
        let replay = |seq, grant: &str| {
            let grant = grant.to_owned();
            event(seq, 100 + seq, Action::RefreshReuseDetected, move |e| {
                e.grant_id = Some(grant);
            })
        };
        assert!(d.observe(&replay(1, "g1")).is_empty());
        assert!(d.observe(&issued(2, 101)).is_empty(), "not a replay");
        let fired = d.observe(&replay(3, "g2"));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].subject.id, "agent-1");
        assert_eq!((fired[0].first_seq, fired[0].last_seq), (1, 3));
    }

    #[test]
    fn a_new_address_fires_after_the_baseline() {
        let mut d = Detector::new(vec![rule("new_address", None, 1, 60)]);
        let from = |seq, at, ip: &str| {
            let ip = ip.to_owned();
            event(seq, at, Action::TokenRefreshed, move |e| e.ip = Some(ip))
        };
        assert!(d.observe(&from(1, 100, "10.0.0.1")).is_empty(), "baseline");
        assert!(d.observe(&from(2, 101, "10.0.0.1")).is_empty(), "seen");
        let fired = d.observe(&from(3, 102, "192.0.2.9"));
        assert_eq!(fired[0].origin.as_deref(), Some("192.0.2.9"));
        assert!(fired[0].describe().contains("grant g1"));
        // Within the quiet window a third address joins the baseline silently...
        assert!(d.observe(&from(4, 103, "192.0.2.10")).is_empty());
        assert!(
            d.observe(&from(5, 170, "192.0.2.10")).is_empty(),
            "now seen"
        );
        // ...and after it, a new one fires again.
        assert_eq!(d.observe(&from(6, 171, "198.51.100.1")).len(), 1);
    }

    #[test]
    fn a_rotated_key_fires_only_when_the_event_says_it_was_replaced() {
        let mut d = Detector::new(vec![rule("rotated_api_key_use", None, 1, 60)]);
        let used = |seq, replaced: bool| {
            event(seq, 100, Action::ApiKeyUsed, move |e| {
                e.detail = if replaced {
                    serde_json::json!({"api_key_id": "key_1", "replaced_by": "key_2"})
                } else {
                    serde_json::json!({"api_key_id": "key_2"})
                };
            })
        };
        assert!(d.observe(&used(1, false)).is_empty());
        let fired = d.observe(&used(2, true));
        assert_eq!(fired[0].subject.id, "key_1");
        assert_eq!(fired[0].subject.per, Per::ApiKey);
    }

    #[test]
    fn the_same_events_give_the_same_firings() {
        let events: Vec<Event> = (0..200).map(|i| issued(i, 1000 + i / 7)).collect();
        let run = || {
            let mut d = Detector::new(vec![rule("issuance_spike", None, 5, 3)]);
            events.iter().flat_map(|e| d.observe(e)).collect::<Vec<_>>()
        };
        let first = run();
        assert!(!first.is_empty());
        assert_eq!(first, run());
    }

    #[test]
    fn settings_are_checked() {
        let bad = |f: &dyn Fn(&mut RuleSpec)| {
            let mut s = spec("issuance_spike", None, 3, 10);
            f(&mut s);
            Rule::new(&s).unwrap_err().why
        };
        assert!(bad(&|s| s.kind = "spikes".into()).contains("unknown kind"));
        assert!(bad(&|s| s.per = Some("address".into())).contains("per grant or agent"));
        assert!(bad(&|s| s.threshold = 0).contains("threshold"));
        assert!(bad(&|s| s.window_seconds = 0).contains("window_seconds"));
        assert!(bad(&|s| s.actions = vec!["page".into()]).contains("unknown action"));
        assert!(bad(&|s| s.throttle_seconds = Some(5)).contains("needs the throttle"));
        assert!(bad(&|s| s.name = "a b".into()).contains("name"));
        let mut s = spec("new_address", None, 2, 10);
        assert!(
            Rule::new(&s)
                .unwrap_err()
                .why
                .contains("leave threshold at 1")
        );
        s = spec("client_auth_failures", Some("address"), 3, 10);
        s.actions = vec!["revoke".into()];
        assert!(Rule::new(&s).unwrap_err().why.contains("cannot be revoked"));
        s.actions = vec!["throttle".into(), "alert".into(), "throttle".into()];
        let r = Rule::new(&s).unwrap();
        assert_eq!(r.responses, vec![Response::Alert, Response::Throttle]);
        assert_eq!(r.throttle_seconds, Some(10), "defaults to the window");
    }

    #[test]
    fn memory_stays_bounded() {
        let mut d = Detector::new(vec![rule("issuance_spike", None, 2, 10)]);
        for i in 0..(MAX_SUBJECTS as i64 + 10) {
            let e = event(i, 100, Action::TokenIssued, |e| {
                e.grant_id = Some(format!("g{i}"));
            });
            d.observe(&e);
        }
        let State::Counting(map) = &d.rules[0].1 else {
            unreachable!()
        };
        assert!(map.len() <= MAX_SUBJECTS);
    }
}
