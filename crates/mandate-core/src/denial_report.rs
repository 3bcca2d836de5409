//! Denial reports: what a resource server refused, sent to the authorization server for audit.
//!
//! The authorization server sees tokens issued and revoked, but the refusals happen at the
//! resource servers: a token without the scope a route needs, a tampered or revoked token, an
//! API key no longer active. The guard queues each refusal as a [`DenialReport`] and posts them
//! in batches ([`DenialBatch`]) to `POST {issuer}/guard/reports`, authenticated with the
//! resource server's own credential; each report becomes one `access.denied` event.
//!
//! The wire format is defined here so the guard and the server cannot disagree, and so is its
//! validation: a batch is untrusted input from the network, bounded in size
//! ([`MAX_BATCH_BYTES`], [`MAX_REPORTS_PER_BATCH`]) and in every field, and refused whole when
//! any part is malformed (no NUL anywhere, a path without query, known error codes).
//!
//! A report never carries a token, an API key or a secret: identity fields (`subject`,
//! `tenant`, `client_id`, `grant_id`, `scopes`) are filled only from a token whose signature
//! the guard verified (or an API key the issuer vouched for), and are absent otherwise. The
//! resource the refusal happened at is not part of the report: the server records the
//! authenticated resource server's own identifier, so one resource cannot report for another.

use crate::event::{Action, ActorKind, NewEvent};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The report endpoint's path under the issuer.
pub const ENDPOINT_PATH: &str = "/guard/reports";
/// Largest request body the report endpoint reads.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Most reports in one batch.
pub const MAX_REPORTS_PER_BATCH: usize = 500;
/// Longest identifier (subject, tenant, client id, grant id).
pub const MAX_ID_LEN: usize = 256;
/// Longest scope string (presented or required).
pub const MAX_SCOPES_LEN: usize = 1024;
/// Longest request path recorded (longer paths are cut by the guard before sending).
pub const MAX_PATH_LEN: usize = 1024;
/// Longest user agent recorded.
pub const MAX_USER_AGENT_LEN: usize = 256;
/// Longest reason (the refusal's `error_description`).
pub const MAX_REASON_LEN: usize = 256;
/// Longest HTTP method.
const MAX_METHOD_LEN: usize = 16;

/// The refusal, in RFC 6750 §3.1 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialError {
    /// No credential at all (RFC 6750 gives no error code; this names the case).
    MissingToken,
    /// The token or API key is malformed, expired, revoked, or not for this resource.
    InvalidToken,
    /// The request is malformed (e.g. two `Authorization` headers).
    InvalidRequest,
    /// The token is valid but lacks the scope the route requires.
    InsufficientScope,
}

impl DenialError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InvalidRequest => "invalid_request",
            Self::InsufficientScope => "insufficient_scope",
        }
    }
}

/// What the caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    AccessToken,
    ApiKey,
}

/// One refused request, as the guard saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialReport {
    /// When the guard refused the request (unix seconds, the guard's clock).
    pub at: i64,
    pub error: DenialError,
    /// The refusal's description (a fixed text from the guard, never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The request path, without query string or fragment.
    pub path: String,
    /// The end client's address as the resource server saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// What was presented, when it could be told (a bearer token or a raw API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialKind>,
    /// The token's `sub` (only from a verified token; likewise the next four fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The scopes the token carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// The scopes that would have satisfied the route (for `insufficient_scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scopes: Option<String>,
}

/// A batch of reports, as posted to the report endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialBatch {
    pub reports: Vec<DenialReport>,
    /// Reports the guard dropped (its queue was full) since its last delivered batch.
    #[serde(default)]
    pub dropped: u64,
}

/// The report endpoint's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAccepted {
    /// Events written (one per report, or one for a batch that only carries a drop count).
    pub accepted: usize,
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the batch is larger than {MAX_BATCH_BYTES} bytes")]
    TooLarge,
    #[error("the batch must not contain NUL characters")]
    Nul,
    #[error("the batch is not valid JSON: {0}")]
    Json(String),
    #[error("a batch holds at most {MAX_REPORTS_PER_BATCH} reports")]
    TooMany,
    #[error("report {index}: {why}")]
    Invalid { index: usize, why: &'static str },
}

impl DenialBatch {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<Self, ReportError> {
        if body.len() > MAX_BATCH_BYTES {
            return Err(ReportError::TooLarge);
        }
        if crate::params::contains_nul(body) {
            return Err(ReportError::Nul);
        }
        // Only the kind and position of a JSON error: serde's message can quote the input.
        let batch: Self = serde_json::from_slice(body).map_err(|e| {
            let kind = match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "syntax error",
                serde_json::error::Category::Data => "unexpected field or value",
                serde_json::error::Category::Eof => "unexpected end",
            };
            ReportError::Json(format!("{kind} at line {} column {}", e.line(), e.column()))
        })?;
        batch.validate()?;
        Ok(batch)
    }

    /// Checks the bounds a parsed batch must respect.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.reports.len() > MAX_REPORTS_PER_BATCH {
            return Err(ReportError::TooMany);
        }
        for (index, report) in self.reports.iter().enumerate() {
            report
                .validate()
                .map_err(|why| ReportError::Invalid { index, why })?;
        }
        Ok(())
    }

    /// The events this batch records, for the resource server `resource` (its identifier, from
    /// its authenticated credential) that reported it at `now`. A batch without reports but
    /// with a drop count records one event saying so; the drop count otherwise goes into the
    /// first event's detail.
    pub fn to_events(&self, resource: &str, reporter: &str, now: Timestamp) -> Vec<NewEvent> {
        let mut events: Vec<NewEvent> = self
            .reports
            .iter()
            .map(|r| r.to_event(resource, reporter, now))
            .collect();
        if self.dropped > 0 {
            match events.first_mut() {
                Some(first) => {
                    if let serde_json::Value::Object(map) = &mut first.detail {
                        map.insert("dropped".into(), self.dropped.into());
                    }
                }
                None => {
                    let mut e = NewEvent::new(now, Action::AccessDenied, ActorKind::System);
                    e.actor_id = Some(reporter.to_owned());
                    e.reason = Some("the guard dropped denial reports (queue full)".into());
                    e.detail = serde_json::json!({
                        "resource": resource,
                        "reported_by": reporter,
                        "dropped": self.dropped,
                    });
                    events.push(e);
                }
            }
        }
        events
    }
}

impl DenialReport {
    /// A report with no identity, for a refusal at `method path`.
    pub fn new(at: Timestamp, error: DenialError, method: &str, path: &str) -> Self {
        Self {
            at: at.unix(),
            error,
            reason: None,
            method: method.chars().take(MAX_METHOD_LEN).collect(),
            path: clean_path(path),
            client_ip: None,
            user_agent: None,
            credential: None,
            subject: None,
            tenant: None,
            client_id: None,
            grant_id: None,
            scopes: None,
            required_scopes: None,
        }
    }

    /// Every field within its bounds and shape.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.method.is_empty()
            || self.method.len() > MAX_METHOD_LEN
            || !self
                .method
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'-')
        {
            return Err("method must be an HTTP method");
        }
        if !self.path.starts_with('/')
            || self.path.len() > MAX_PATH_LEN
            || self.path.contains(['?', '#'])
            || self.path.chars().any(char::is_control)
        {
            return Err("path must be an absolute path without query, fragment or controls");
        }
        if let Some(ip) = &self.client_ip
            && ip.parse::<IpAddr>().is_err()
        {
            return Err("client_ip must be an IP address");
        }
        let bounded = |v: &Option<String>, max: usize| {
            v.as_deref()
                .is_none_or(|s| s.len() <= max && !s.chars().any(char::is_control))
        };
        if !bounded(&self.user_agent, MAX_USER_AGENT_LEN) {
            return Err("user_agent is too long or holds control characters");
        }
        if !bounded(&self.reason, MAX_REASON_LEN) {
            return Err("reason is too long or holds control characters");
        }
        for id in [&self.subject, &self.tenant, &self.client_id, &self.grant_id] {
            if !bounded(id, MAX_ID_LEN) || id.as_deref().is_some_and(str::is_empty) {
                return Err("identifiers must be 1 to 256 characters without controls");
            }
        }
        for scopes in [&self.scopes, &self.required_scopes] {
            if let Some(s) = scopes
                && (s.len() > MAX_SCOPES_LEN || crate::scope::ScopeSet::parse(s).is_err())
            {
                return Err("scopes must be a space-separated list of scope tokens");
            }
        }
        Ok(())
    }

    /// The `access.denied` event for this report.
    pub fn to_event(&self, resource: &str, reporter: &str, now: Timestamp) -> NewEvent {
        let actor = if self.client_id.is_some() {
            ActorKind::Agent
        } else {
            ActorKind::System
        };
        let mut e = NewEvent::new(now, Action::AccessDenied, actor);
        e.actor_id.clone_from(&self.client_id);
        e.tenant_id.clone_from(&self.tenant);
        e.user_id.clone_from(&self.subject);
        e.client_id.clone_from(&self.client_id);
        e.grant_id.clone_from(&self.grant_id);
        e.scopes.clone_from(&self.scopes);
        e.reason.clone_from(&self.reason);
        e.ip.clone_from(&self.client_ip);
        e.user_agent.clone_from(&self.user_agent);
        let mut detail = serde_json::json!({
            "resource": resource,
            "reported_by": reporter,
            "error": self.error.as_str(),
            "method": self.method,
            "path": self.path,
            "seen_at": self.at,
        });
        if let serde_json::Value::Object(map) = &mut detail {
            if let Some(required) = &self.required_scopes {
                map.insert("required_scopes".into(), required.clone().into());
            }
            if let Some(kind) = self.credential {
                let kind = match kind {
                    CredentialKind::AccessToken => "access_token",
                    CredentialKind::ApiKey => "api_key",
                };
                map.insert("credential".into(), kind.into());
            }
        }
        e.detail = detail;
        e
    }
}

/// A path as recorded: the query and fragment removed, control characters dropped, cut to
/// [`MAX_PATH_LEN`] bytes on a character boundary.
pub fn clean_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len().min(MAX_PATH_LEN));
    if !path.starts_with('/') {
        out.push('/');
    }
    for c in path.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_PATH_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// A free-text value as recorded: control characters dropped, cut to `max` bytes.
pub fn clean_text(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DenialReport {
        let mut r = DenialReport::new(
            Timestamp::from_unix(100),
            DenialError::InsufficientScope,
            "GET",
            "/billing",
        );
        r.subject = Some("u_alice".into());
        r.client_id = Some("cli-agent".into());
        r.scopes = Some("contacts.read".into());
        r.required_scopes = Some("billing.read".into());
        r.client_ip = Some("127.0.0.1".into());
        r
    }

    #[test]
    fn batches_round_trip_and_become_events() {
        let batch = DenialBatch {
            reports: vec![report()],
            dropped: 3,
        };
        let body = serde_json::to_vec(&batch).unwrap();
        assert_eq!(DenialBatch::parse(&body).unwrap(), batch);
        let events = batch.to_events("http://crm", "demo-crm", Timestamp::from_unix(200));
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.action, Action::AccessDenied);
        assert_eq!(e.at, Timestamp::from_unix(200));
        assert_eq!(e.user_id.as_deref(), Some("u_alice"));
        assert_eq!(e.detail["resource"], "http://crm");
        assert_eq!(e.detail["error"], "insufficient_scope");
        assert_eq!(e.detail["required_scopes"], "billing.read");
        assert_eq!(e.detail["seen_at"], 100);
        assert_eq!(e.detail["dropped"], 3);
        let only_drops = DenialBatch {
            reports: vec![],
            dropped: 7,
        };
        let events = only_drops.to_events("http://crm", "demo-crm", Timestamp::from_unix(1));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].detail["dropped"], 7);
    }

    #[test]
    fn malformed_batches_are_refused() {
        let with = |f: fn(&mut DenialReport)| {
            let mut r = report();
            f(&mut r);
            serde_json::to_vec(&DenialBatch {
                reports: vec![r],
                dropped: 0,
            })
            .unwrap()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not JSON"),
            (b"{}".to_vec(), "no reports field"),
            (
                br#"{"reports":[{"at":1,"error":"teapot","method":"GET","path":"/"}]}"#.to_vec(),
                "unknown error code",
            ),
            (with(|r| r.path = "/a?token=x".into()), "query string"),
            (with(|r| r.path = "relative".into()), "relative path"),
            (with(|r| r.path = "/a\u{0}b".into()), "NUL"),
            (with(|r| r.method = "GE T".into()), "bad method"),
            (with(|r| r.client_ip = Some("nope".into())), "bad IP"),
            (with(|r| r.subject = Some("x".repeat(300))), "long id"),
            (with(|r| r.subject = Some(String::new())), "empty id"),
            (with(|r| r.scopes = Some("a\"b".into())), "bad scope"),
            (
                with(|r| r.user_agent = Some("a\nb".into())),
                "control in UA",
            ),
            (vec![b' '; MAX_BATCH_BYTES + 1], "too large"),
        ];
        for (body, reason) in cases {
            assert!(DenialBatch::parse(&body).is_err(), "{reason}");
        }
        let many = DenialBatch {
            reports: vec![report(); MAX_REPORTS_PER_BATCH + 1],
            dropped: 0,
        };
        assert_eq!(
            DenialBatch::parse(&serde_json::to_vec(&many).unwrap()),
            Err(ReportError::TooMany)
        );
    }

    #[test]
    fn paths_lose_their_query_and_stay_bounded() {
        assert_eq!(clean_path("/a/b?token=secret#x"), "/a/b");
        assert_eq!(clean_path("x"), "/x");
        assert_eq!(clean_path(&"é".repeat(2000)).len(), MAX_PATH_LEN - 1);
        assert_eq!(clean_text("a\r\nb", 10), "ab");
        assert_eq!(clean_text("abcdef", 3), "abc");
    }
}
