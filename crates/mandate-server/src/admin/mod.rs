//! The admin API, `/admin/v1`: tenants, users, agents, scopes, resources, grants, API keys,
//! revocations, admin roles and the audit log, described by an OpenAPI document generated from
//! this code (`/admin/v1/openapi.json`, by `utoipa`), so the document cannot drift from the
//! handlers.
//!
//! The API is a protected resource of Mandate itself: callers present a Mandate access token
//! for the admin API's audience with the `mandate.admin` scope, and their role decides what
//! they reach ([`mandate_core::admin`]; [`auth`]). An operator gets the admin resource and
//! scope installed at start ([`install`]); granting an agent or a user a role is done with the
//! CLI on the server's database, with `[[admin_roles]]` in the configuration, or by another
//! operator through this API.
//!
//! # Layout
//! - [`auth`]: the bearer token to [`mandate_core::admin::Authority`] extractor, and body,
//!   query and path extractors that answer malformed input in the API's error format.
//! - [`context`]: what operations run with; shared with the CLI's local mode.
//! - [`model`]: request and response bodies (the public contract).
//! - [`directory`], [`grants`], [`api_keys`], [`roles`], [`audit`]: the operations and their
//!   handlers.
//! - [`signing_keys`]: the signing keys' states, rotation and withdrawal (`/jwks.json`
//!   publishes the keys themselves).
//!
//! The operations are plain async functions taking a [`context::Ctx`], so the admin console
//! ([`crate::console`]) and the CLI run exactly these, with the same role and tenant checks.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod context;
pub mod directory;
pub mod grants;
pub mod model;
pub mod page;
pub mod roles;
pub mod signing_keys;

use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use mandate_core::admin::{ADMIN_PATH, ADMIN_SCOPE, resource_identifier};
use mandate_core::resource::ResourceServer;
use mandate_core::scope::ScopeSet;
use mandate_store::{ScopeDef, Store, StoreResult};
use model::ErrorBody;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, Server};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The error answers every operation can give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Failures {
    /// Malformed request: body, query or path.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or a token that is invalid, expired, revoked or not for this API.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token lacks `mandate.admin`, its holder has no role, or the role does not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Absent, or in a tenant the caller cannot see.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Already exists, or not in a state that allows this.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is too large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The server could not complete the request (storage failure); nothing was changed.
    #[response(status = 500)]
    ServerError(ErrorBody),
    /// The database is unavailable for now (`temporarily_unavailable`): unreachable, or a lock
    /// held elsewhere past the server's wait. Send the request again after `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Mandate admin API",
        version = "1",
        description = "Govern tenants, users, agents, scopes, resources, grants, API keys and \
                       revocations. Authenticate with a Mandate access token for this API's \
                       audience (the issuer + /admin/v1) carrying the `mandate.admin` scope; \
                       a tenant admin sees and changes only their own tenant."
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants"), (name = "users"), (name = "agents"), (name = "catalog"),
        (name = "grants"), (name = "api-keys"), (name = "roles"), (name = "audit"),
        (name = "signing-keys")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(roles::me_get))
        .routes(routes!(directory::tenants_get, directory::tenants_post))
        .routes(routes!(directory::tenant_get))
        .routes(routes!(directory::users_get, directory::users_post))
        .routes(routes!(directory::user_get))
        .routes(routes!(directory::user_disable_post))
        .routes(routes!(directory::agents_get, directory::agents_post))
        .routes(routes!(directory::agent_get))
        .routes(routes!(directory::agent_disable_post))
        .routes(routes!(directory::scopes_get, directory::scopes_post))
        .routes(routes!(directory::resources_get, directory::resources_post))
        .routes(routes!(grants::grants_get))
        .routes(routes!(grants::grant_get))
        .routes(routes!(grants::grant_revoke_post))
        .routes(routes!(grants::revocations_post))
        .routes(routes!(api_keys::api_keys_get, api_keys::api_keys_post))
        .routes(routes!(api_keys::api_key_get))
        .routes(routes!(api_keys::api_key_rotate_post))
        .routes(routes!(api_keys::api_key_revoke_post))
        .routes(routes!(roles::roles_get, roles::roles_post))
        .routes(routes!(roles::role_delete))
        .routes(routes!(audit::events_get))
        .routes(routes!(
            signing_keys::signing_keys_get,
            signing_keys::signing_keys_post
        ))
        .routes(routes!(signing_keys::signing_key_withdraw_post))
}

/// The OpenAPI document for a server whose issuer is `issuer`.
pub fn openapi(issuer: &str) -> OpenApiDoc {
    let (_, mut doc) = api().split_for_parts();
    doc.servers = Some(vec![Server::new(resource_identifier(issuer))]);
    doc
}

/// The admin API's public address: its resource identifier, the issuer's URL and
/// [`ADMIN_PATH`].
pub fn api_address(app: &AppState) -> String {
    resource_identifier(&app.settings.issuer)
}

/// The routes, to be mounted at [`ADMIN_PATH`] below the issuer's path.
pub fn router(issuer: &str) -> Router<AppState> {
    let (router, _) = api().split_for_parts();
    let doc = openapi(issuer);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || std::future::ready(Json(doc.clone()))),
        )
        .fallback(unknown_route)
}

async fn unknown_route() -> Response {
    crate::errors::ServerError::from(crate::errors::AdminError::NotFound(
        "no such admin API route".into(),
    ))
    .into_response()
}

/// RFC 9728 protected resource metadata for the admin API, so an administrator's client can
/// discover where to get a token for it.
pub async fn protected_resource_metadata(State(app): State<AppState>) -> Response {
    let issuer = &app.settings.issuer;
    Json(serde_json::json!({
        "resource": resource_identifier(issuer),
        "authorization_servers": [issuer],
        "scopes_supported": [ADMIN_SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "Mandate admin API",
    }))
    .into_response()
}

/// The path (below the origin) of [`protected_resource_metadata`]: RFC 9728 §3.1 inserts the
/// well-known segment before the resource's path.
pub fn metadata_path(issuer_path: &str) -> String {
    format!("/.well-known/oauth-protected-resource{issuer_path}{ADMIN_PATH}")
}

/// Installs the admin API's scope and resource (its token audience), idempotently, before
/// the configuration is applied so agents may list them.
pub async fn install(store: &dyn Store, issuer: &str) -> StoreResult<()> {
    let scope = ScopeDef {
        name: ADMIN_SCOPE.into(),
        description: "Administer Mandate: tenants, users, agents, grants and API keys, as far \
                      as your admin role allows"
            .into(),
        sensitive: true,
    };
    if !store.scopes().await?.contains(&scope) {
        store.upsert_scope(&scope).await?;
    }
    let identifier = resource_identifier(issuer);
    let existing = store.resources().await?;
    if !existing.iter().any(|r| r.identifier == identifier) {
        let scopes = ScopeSet::parse(ADMIN_SCOPE)
            .map_err(|_| mandate_store::StoreError::Corrupt("admin scope"))?;
        store
            .upsert_resource(&ResourceServer {
                identifier,
                name: "Mandate admin API".into(),
                scopes,
                client_id: None,
                secret_hash: None,
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_lists_every_route_with_failures() {
        let doc = openapi("http://127.0.0.1:8080");
        let json = serde_json::to_value(&doc).unwrap_or_default();
        let paths = json["paths"].as_object().cloned().unwrap_or_default();
        for p in [
            "/me",
            "/tenants",
            "/users/{user_id}/disable",
            "/grants/{grant_id}/revoke",
            "/revocations",
            "/api-keys/{key_id}/rotate",
            "/roles/{principal_kind}/{principal_id}",
            "/signing-keys",
            "/signing-keys/{kid}/withdraw",
        ] {
            assert!(paths.contains_key(p), "missing {p}");
        }
        assert_eq!(json["servers"][0]["url"], "http://127.0.0.1:8080/admin/v1");
        assert!(json["paths"]["/tenants"]["post"]["responses"]["409"].is_object());
    }
}
