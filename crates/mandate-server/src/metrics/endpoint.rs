//! `GET /metrics` and the layer that times every request.
//!
//! [`TrackLayer`] is a plain tower layer rather than `axum::middleware::from_fn`, which boxes
//! the inner service and its future on every request: on the token endpoint the timing costs
//! two clock reads and a few atomic additions, and nothing is allocated.
//!
//! Agent ids and request rates are not public, so the exposition is served only to a scraper
//! that presents `Authorization: Bearer <[metrics] token>` (compared in constant time), or,
//! when no token is configured, to a direct loopback peer. A request that came through a proxy
//! (it carries `Forwarded`, `X-Forwarded-For` or `X-Real-IP`) is not direct, even from
//! 127.0.0.1: a reverse proxy on the same host would otherwise make every caller look local.

use super::Metrics;
use crate::errors::{ErrorCode, MetricsDenied, ServerError};
use crate::state::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

/// The route label of a request no route matched (the 404 page).
pub const UNMATCHED: &str = "unmatched";

/// OpenMetrics text format, which Prometheus negotiates and parses.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Headers a forwarding proxy adds: their presence means the TCP peer is not the caller.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Times every request and counts its error, labelled by the matched route template. Apply it
/// with `Router::layer`, which runs it after routing, where the template is known.
#[derive(Clone)]
pub struct TrackLayer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        TrackFuture {
            inner: self.inner.call(req),
            metrics: self.metrics.clone(),
            started,
            method,
            route,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response future, timed.
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        started: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            this.metrics.request_finished(
                route,
                this.method,
                status_class(response.status()),
                this.started.elapsed(),
            );
            if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
                this.metrics.error_answered(route, code);
            }
        }
        Poll::Ready(result)
    }
}

pub async fn metrics_get(
    State(app): State<AppState>,
    req: Request,
) -> Result<Response, ServerError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    check_access(
        app.settings.metrics_token_hash.as_deref(),
        peer,
        req.headers(),
    )?;
    let head = match app.store.chain_head().await {
        Ok(head) => Some(head.seq),
        Err(e) => {
            tracing::warn!(error = %e, "reading the audit chain head for metrics failed");
            None
        }
    };
    app.metrics.set_audit_state(app.events.pending(), head);
    for sink in app.audit_export.iter() {
        let behind = head.map_or(sink.lag(), |h| {
            u64::try_from(h - sink.cursor()).unwrap_or(0)
        });
        app.metrics.set_export_state(
            &sink.name,
            i64::try_from(behind).unwrap_or(i64::MAX),
            sink.consecutive_failures(),
        );
    }
    let text = app
        .metrics
        .render()
        .map_err(|_| anyhow::anyhow!("encoding metrics failed"))?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    crate::errors::no_store(&mut response);
    Ok(response)
}

/// Whether this caller may read the metrics.
fn check_access(
    token_hash: Option<&str>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), MetricsDenied> {
    if let Some(hash) = token_hash {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        return match presented {
            None => Err(MetricsDenied::NoToken),
            Some(token) if mandate_core::secret::verify_secret(token, hash) => Ok(()),
            Some(_) => Err(MetricsDenied::WrongToken),
        };
    }
    let direct = !FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h));
    match peer {
        Some(addr) if direct && addr.ip().is_loopback() => Ok(()),
        _ => Err(MetricsDenied::NotLoopback),
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1; the scheme is
/// case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => super::OTHER,
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    macro_rules! access {
        ($($name:ident: $token:expr, $peer:expr, $headers:expr => $expected:expr;)*) => {$(
            #[test]
            fn $name() {
                let hash = $token.map(mandate_core::secret::hash_secret);
                let peer: Option<SocketAddr> = $peer.map(|p: &str| p.parse().unwrap());
                assert_eq!(check_access(hash.as_deref(), peer, &headers($headers)), $expected);
            }
        )*};
    }

    access! {
        loopback_without_token_configured: None::<&str>, Some("127.0.0.1:5000"), &[] => Ok(());
        ipv6_loopback_without_token_configured: None::<&str>, Some("[::1]:5000"), &[] => Ok(());
        remote_without_token_configured: None::<&str>, Some("192.0.2.1:5000"), &[]
            => Err(MetricsDenied::NotLoopback);
        proxied_loopback_is_not_direct: None::<&str>, Some("127.0.0.1:5000"),
            &[("x-forwarded-for", "192.0.2.1")] => Err(MetricsDenied::NotLoopback);
        unknown_peer_is_refused: None::<&str>, None::<&str>, &[] => Err(MetricsDenied::NotLoopback);
        token_required_even_on_loopback: Some("s3cret-scrape-token"), Some("127.0.0.1:5000"), &[]
            => Err(MetricsDenied::NoToken);
        right_token_from_anywhere: Some("s3cret-scrape-token"), Some("192.0.2.1:5000"),
            &[("authorization", "Bearer s3cret-scrape-token")] => Ok(());
        scheme_is_case_insensitive: Some("s3cret-scrape-token"), Some("192.0.2.1:5000"),
            &[("authorization", "bearer s3cret-scrape-token")] => Ok(());
        wrong_token: Some("s3cret-scrape-token"), Some("127.0.0.1:5000"),
            &[("authorization", "Bearer nope")] => Err(MetricsDenied::WrongToken);
        basic_is_not_bearer: Some("s3cret-scrape-token"), Some("127.0.0.1:5000"),
            &[("authorization", "Basic czNjcmV0LXNjcmFwZS10b2tlbg==")] => Err(MetricsDenied::NoToken);
    }
}
