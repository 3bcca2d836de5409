//! Who is calling: peer address and user agent, recorded on every event.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::SocketAddr;

/// Longest user agent recorded; the rest is cut.
const MAX_USER_AGENT: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(MAX_USER_AGENT).collect());
        Ok(Self { ip, user_agent })
    }
}

impl RequestMeta {
    /// Stamps the caller onto an event.
    pub fn stamp(&self, mut event: mandate_core::event::NewEvent) -> mandate_core::event::NewEvent {
        event.ip.clone_from(&self.ip);
        event.user_agent.clone_from(&self.user_agent);
        event
    }
}
