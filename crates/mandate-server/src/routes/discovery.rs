//! Discovery (RFC 8414), JWKS, health and the stylesheet: the read-only documents.

use crate::config::RegistrationMode;
use crate::errors::ServerError;
use crate::pages;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::metadata::AuthorizationServerMetadata;

pub async fn metadata_get(State(app): State<AppState>) -> Result<Response, ServerError> {
    let scopes = app
        .store
        .scopes()
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut doc = AuthorizationServerMetadata::new(&app.settings.issuer, scopes);
    if app.settings.registration.mode != RegistrationMode::Closed {
        doc = doc.with_registration_endpoint();
    }
    if app.client_documents.enabled() {
        doc = doc.with_client_id_metadata_documents();
    }
    let mut r = Json(doc).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(r)
}

pub async fn jwks_get(State(app): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        app.keys.current().jwks_json().to_owned(),
    )
        .into_response()
}

pub async fn healthz_get(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "database": app.store.backend()}))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable", "database": app.store.backend()})),
            )
                .into_response()
        }
    }
}

pub async fn stylesheet_get() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLESHEET,
    )
        .into_response()
}
