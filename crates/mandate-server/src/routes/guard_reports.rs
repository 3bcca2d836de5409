//! `POST /guard/reports`: requests refused at resource servers, reported by their guards.
//!
//! The caller authenticates exactly as at the revocation feed, with a registered resource
//! server's own credential (HTTP Basic); anyone else gets `401 invalid_client`. The body is a
//! [`DenialBatch`] (JSON, at most [`MAX_BATCH_BYTES`] and [`MAX_REPORTS_PER_BATCH`] reports),
//! validated whole by core: a malformed batch is a `400`, and nothing of it is recorded.
//!
//! Each report becomes one `access.denied` event. The resource named in the events is the
//! authenticated resource server's identifier, never anything the body says, so a resource
//! server can only speak for itself. The batch is appended in one transaction and the answer
//! (`200 {"accepted": n}`) is sent only once it is durable; a guard that gets no answer sends
//! the batch again, so a report may be recorded twice but never acknowledged and lost.

use crate::client_auth;
use crate::errors::{ServerError, no_store};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use mandate_core::OAuthError;
use mandate_core::denial_report::{
    BatchAccepted, DenialBatch, MAX_BATCH_BYTES, MAX_REPORTS_PER_BATCH, ReportError,
};

pub async fn guard_reports_post(
    State(app): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ServerError> {
    let now = app.clock.now();
    let resource = client_auth::authenticate_resource_server(
        &app,
        &headers,
        &meta,
        now,
        "denial reports are for resource servers",
    )
    .await?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request("Content-Type must be application/json").into());
    }
    let body = axum::body::to_bytes(body, MAX_BATCH_BYTES)
        .await
        .map_err(|_| ReportError::TooLarge)?;
    let batch = DenialBatch::parse(&body)?;
    let reporter = resource
        .client_id
        .as_deref()
        .unwrap_or(resource.identifier.as_str());
    let events = batch.to_events(&resource.identifier, reporter, now);
    debug_assert!(events.len() <= MAX_REPORTS_PER_BATCH + 1);
    if !events.is_empty() {
        app.store.append_events(&events).await?;
    }
    let mut response = Json(BatchAccepted {
        accepted: events.len(),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}
