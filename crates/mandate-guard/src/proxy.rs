//! Reverse-proxy mode: the guard in front of an HTTP API that knows nothing about OAuth.
//!
//! Each request is matched against route rules (HTTP method and path prefix → required scopes);
//! a request no rule matches is refused, so a forgotten route is closed rather than open. An
//! authorised request is forwarded to the upstream with the caller's identity in `x-mandate-*`
//! headers. The same headers arriving from outside are always stripped, so a caller cannot
//! claim another identity, and the bearer token is not forwarded unless the configuration asks
//! for it (the upstream never needs it, and every copy of a token is a place it can leak).
//! With the guard in migration mode ([`crate::GuardBuilder::accept_api_keys`], `mandate guard
//! --accept-api-keys`), a caller may also present a raw API key; the upstream then also gets
//! `x-mandate-api-key-id` (the key's id, never the key).
//!
//! Refusals are reported to the issuer when the guard reports denials
//! ([`Guard::report_denials`], `mandate guard --report-denials`); serve the router with
//! `into_make_service_with_connect_info::<SocketAddr>()` so reports carry the client's address.

use crate::error::GuardError;
use crate::guard::Guard;
use crate::principal::Principal;
use crate::report::RefusedRequest;
use crate::scope::Requirement;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Headers the proxy sets for the upstream; anything starting with this prefix is stripped
/// from incoming requests first.
pub const IDENTITY_PREFIX: &str = "x-mandate-";
/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 10 * 1024 * 1024;
/// Connection-level headers that are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The proxy's route rules, usually read from a TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Forward the caller's `Authorization` header to the upstream (default: no).
    #[serde(default)]
    pub forward_token: bool,
    pub routes: Vec<RouteRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Path prefix, matched on whole segments (`/contacts` matches `/contacts/7`, not
    /// `/contactsx`). The longest matching prefix wins.
    pub path: String,
    /// Methods this rule covers (empty: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Scopes all required.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes of which any one suffices (checked in addition to `scopes`).
    #[serde(default)]
    pub any_scopes: Vec<String>,
    /// Forward without a token (health checks, public documents). Identity headers are still
    /// stripped.
    #[serde(default)]
    pub public: bool,
}

impl ProxyConfig {
    pub fn from_toml(text: &str) -> Result<Self, GuardError> {
        let config: Self = toml::from_str(text).map_err(|e| GuardError::InvalidDocument {
            url: "proxy routes".into(),
            reason: e.to_string(),
        })?;
        for (i, r) in config.routes.iter().enumerate() {
            if !r.path.starts_with('/') {
                return Err(GuardError::InvalidDocument {
                    url: "proxy routes".into(),
                    reason: format!("routes[{i}].path must start with /"),
                });
            }
            if let Some(m) = r
                .methods
                .iter()
                .find(|m| Method::from_bytes(m.as_bytes()).is_err())
            {
                return Err(GuardError::InvalidDocument {
                    url: "proxy routes".into(),
                    reason: format!("routes[{i}].methods: `{m}` is not an HTTP method"),
                });
            }
        }
        Ok(config)
    }

    /// The rule for a request: the longest path prefix whose methods include `method`.
    fn rule(&self, method: &Method, path: &str) -> Option<&RouteRule> {
        self.routes
            .iter()
            .filter(|r| {
                let prefix = r.path.trim_end_matches('/');
                let under = path == prefix
                    || prefix.is_empty()
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'));
                under
                    && (r.methods.is_empty()
                        || r.methods
                            .iter()
                            .any(|m| m.eq_ignore_ascii_case(method.as_str())))
            })
            .max_by_key(|r| r.path.len())
    }
}

struct Proxy {
    guard: Guard,
    config: ProxyConfig,
    upstream: String,
    http: reqwest::Client,
}

/// A router that serves the resource's RFC 9728 metadata and forwards everything else to
/// `upstream` under the route rules.
pub fn proxy_router(
    guard: Guard,
    upstream: &str,
    config: ProxyConfig,
) -> Result<Router, GuardError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|source| GuardError::Fetch {
            url: upstream.to_owned(),
            source,
        })?;
    let metadata = guard.metadata_router();
    let state = Arc::new(Proxy {
        guard,
        config,
        upstream: upstream.trim_end_matches('/').to_owned(),
        http,
    });
    Ok(Router::new()
        .fallback(forward)
        .with_state(state)
        .merge(metadata))
}

async fn forward(State(proxy): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(rule) = proxy.config.rule(&parts.method, parts.uri.path()) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "not_found",
            "no route rule allows this request",
        );
    };
    let principal = if rule.public {
        None
    } else {
        let principal = match proxy.guard.authenticate_attributed(&parts.headers).await {
            Ok(p) => p,
            Err(refusal) => {
                return proxy
                    .guard
                    .refuse_with(&refusal, RefusedRequest::from(&parts));
            }
        };
        for requirement in requirements(rule) {
            if let Err(e) = proxy.guard.check(&principal, &requirement) {
                return proxy
                    .guard
                    .refuse(&e, RefusedRequest::from(&parts), Some(&principal));
            }
        }
        Some(principal)
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", proxy.upstream, path);
    let headers = upstream_headers(
        &parts.headers,
        principal.as_ref(),
        proxy.config.forward_token,
    );
    let sent = proxy
        .http
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let mut headers = resp.headers().clone();
            strip_hop_by_hop(&mut headers);
            match resp.bytes().await {
                Ok(bytes) => {
                    let mut out = Response::new(Body::from(bytes));
                    *out.status_mut() = status;
                    *out.headers_mut() = headers;
                    out
                }
                Err(_) => refuse(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "the upstream response broke off",
                ),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            refuse(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream is unavailable",
            )
        }
    }
}

fn requirements(rule: &RouteRule) -> Vec<Requirement> {
    let mut out = Vec::new();
    if !rule.scopes.is_empty() {
        out.push(Requirement::all_of(rule.scopes.iter()));
    }
    if !rule.any_scopes.is_empty() {
        out.push(Requirement::any_of(rule.any_scopes.iter()));
    }
    out
}

/// The incoming headers minus hop-by-hop, `Host`, identity headers and (unless configured) the
/// token, plus the caller's identity.
fn upstream_headers(
    incoming: &HeaderMap,
    principal: Option<&Principal>,
    forward_token: bool,
) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(HOST);
    let spoofable: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(IDENTITY_PREFIX))
        .cloned()
        .collect();
    for k in spoofable {
        headers.remove(k);
    }
    if !forward_token {
        headers.remove(AUTHORIZATION);
    }
    if let Some(p) = principal {
        let scopes = p.scopes.to_string();
        let values = [
            ("x-mandate-subject", p.subject.as_str()),
            ("x-mandate-tenant", p.tenant.as_str()),
            ("x-mandate-client-id", p.client_id.as_str()),
            ("x-mandate-scopes", scopes.as_str()),
            ("x-mandate-grant-id", p.grant_id.as_str()),
        ];
        for (name, value) in values {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
        // Migration mode: the caller used a raw API key (its id, never the key).
        if let Some(id) = &p.api_key_id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            headers.insert(HeaderName::from_static("x-mandate-api-key-id"), v);
        }
    }
    headers
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProxyConfig {
        ProxyConfig::from_toml(
            r#"
[[routes]]
path = "/contacts"
methods = ["GET"]
scopes = ["contacts.read"]

[[routes]]
path = "/contacts"
methods = ["POST"]
scopes = ["contacts.write"]

[[routes]]
path = "/contacts/export"
scopes = ["contacts.read", "billing.read"]

[[routes]]
path = "/health"
public = true
"#,
        )
        .unwrap()
    }

    #[test]
    fn rules_match_whole_segments_longest_prefix_and_method() {
        let c = config();
        let scopes = |m: Method, p: &str| c.rule(&m, p).map(|r| (r.scopes.clone(), r.public));
        assert_eq!(
            scopes(Method::GET, "/contacts"),
            Some((vec!["contacts.read".into()], false))
        );
        assert_eq!(
            scopes(Method::GET, "/contacts/7"),
            Some((vec!["contacts.read".into()], false))
        );
        assert_eq!(
            scopes(Method::POST, "/contacts"),
            Some((vec!["contacts.write".into()], false))
        );
        assert_eq!(
            scopes(Method::GET, "/contacts/export/all").map(|s| s.0.len()),
            Some(2),
            "longest prefix"
        );
        assert_eq!(
            scopes(Method::DELETE, "/contacts/7"),
            None,
            "no rule for DELETE"
        );
        assert_eq!(
            scopes(Method::GET, "/contactsx"),
            None,
            "whole segments only"
        );
        assert_eq!(scopes(Method::GET, "/health"), Some((vec![], true)));
        assert_eq!(scopes(Method::GET, "/other"), None, "deny by default");
    }

    #[test]
    fn invalid_rules_are_refused_with_the_key() {
        let err = ProxyConfig::from_toml("[[routes]]\npath = \"contacts\"\n").unwrap_err();
        assert!(err.to_string().contains("routes[0].path"), "{err}");
        let err = ProxyConfig::from_toml("[[routes]]\npath = \"/x\"\nmethods = [\"GE T\"]\n")
            .unwrap_err();
        assert!(err.to_string().contains("routes[0].methods"), "{err}");
        assert!(
            ProxyConfig::from_toml("[[routes]]\npath = \"/x\"\nscope = \"a\"\n").is_err(),
            "unknown key"
        );
    }

    #[test]
    fn identity_headers_are_replaced_and_the_token_dropped() {
        let mut incoming = HeaderMap::new();
        incoming.insert("x-mandate-tenant", HeaderValue::from_static("globex"));
        incoming.insert("x-mandate-anything", HeaderValue::from_static("x"));
        incoming.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        incoming.insert("connection", HeaderValue::from_static("close"));
        incoming.insert("accept", HeaderValue::from_static("application/json"));
        let out = upstream_headers(&incoming, None, false);
        assert!(out.get("x-mandate-tenant").is_none() && out.get("x-mandate-anything").is_none());
        assert!(out.get(AUTHORIZATION).is_none() && out.get("connection").is_none());
        assert_eq!(out["accept"], "application/json");
        assert!(
            upstream_headers(&incoming, None, true)
                .get(AUTHORIZATION)
                .is_some()
        );
    }
}
