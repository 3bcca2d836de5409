//! Who is calling the admin API: an [`Admin`] extractor that turns a bearer token into an
//! [`Authority`], and the extractors that keep malformed input in the API's error format.
//!
//! The token must be one of ours and active right now (the same check introspection makes,
//! so a revoked grant, a disabled user or agent, or a revoked `jti` ends admin access at
//! once), addressed to the admin API (`aud`), carry [`ADMIN_SCOPE`], and belong to a
//! principal that holds a role, read from the store on every request. Exchanged tokens
//! (`act`) and API-key tokens are refused: administration is never delegated.

use super::context::Ctx;
use crate::errors::{AdminError, ServerError};
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use crate::token_state;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use mandate_core::admin::{ADMIN_SCOPE, Authority, Principal};
use mandate_core::api_key::KEY_ID_PREFIX;
use mandate_core::grant::Grant;
use mandate_core::params::contains_nul;
use serde::de::DeserializeOwned;

/// An authenticated administrator, with the request's origin for the audit log.
pub struct Admin {
    pub authority: Authority,
    /// The grant the caller's token hangs off.
    pub grant: Grant,
    pub meta: RequestMeta,
}

impl Admin {
    /// The operation context for this caller: recorded on events as `user:<id>` or
    /// `agent:<client id>`, with the request's origin.
    pub fn ctx<'a>(&self, app: &'a AppState) -> Ctx<'a> {
        Ctx {
            store: app.store.as_ref(),
            entropy: app.entropy.as_ref(),
            now: app.clock.now(),
            api_keys: app.settings.api_keys,
            authority: self.authority.clone(),
            own_grant: Some(self.grant.clone()),
            actor: self.authority.principal.to_string(),
            actor_kind: mandate_core::event::ActorKind::Admin,
            ip: self.meta.ip.clone(),
            user_agent: self.meta.user_agent.clone(),
            metrics: Some(&app.metrics),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ServerError> {
        let token = bearer(&parts.headers)?;
        let (authority, grant) = authorize(app, token).await?;
        let meta = match RequestMeta::from_request_parts(parts, app).await {
            Ok(meta) => meta,
            Err(never) => match never {},
        };
        Ok(Self {
            authority,
            grant,
            meta,
        })
    }
}

/// The one bearer token of the request (RFC 6750 §2.1; a second `Authorization` header is a
/// malformed request).
fn bearer(headers: &HeaderMap) -> Result<&str, AdminError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(AdminError::NoToken);
    };
    let value = value
        .to_str()
        .map_err(|_| AdminError::Unauthenticated("the Authorization header is not ASCII"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Err(AdminError::NoToken)
            } else {
                Ok(token)
            }
        }
        _ => Err(AdminError::NoToken),
    }
}

async fn authorize(app: &AppState, token: &str) -> Result<(Authority, Grant), ServerError> {
    let now = app.clock.now();
    let Some(claims) = token_state::active_access_token(app, token, now).await? else {
        return Err(AdminError::Unauthenticated("the token is invalid, expired or revoked").into());
    };
    if claims.aud != mandate_core::admin::resource_identifier(&app.settings.issuer) {
        return Err(AdminError::Unauthenticated("the token is not for the admin API").into());
    }
    if claims.act.is_some() || claims.gid.starts_with(KEY_ID_PREFIX) {
        return Err(AdminError::Forbidden(
            "administration cannot be delegated: use a token issued to the administrator".into(),
        )
        .into());
    }
    if !claims.scope.contains(ADMIN_SCOPE) {
        return Err(AdminError::InsufficientScope.into());
    }
    let Some(grant) = app.store.grant(&claims.gid).await? else {
        return Err(AdminError::Unauthenticated("the token's grant is unknown").into());
    };
    let principal = match &grant.user_id {
        Some(user_id) => Principal::User(user_id.clone()),
        None => Principal::Agent(claims.client_id),
    };
    let Some(authority) = authority_of(app.store.as_ref(), principal.clone()).await? else {
        return Err(AdminError::Forbidden(format!("{principal} holds no admin role")).into());
    };
    Ok((authority, grant))
}

/// The authority of `principal`: its role, read from the store now (so a role removed a
/// moment ago counts), or `None` when it holds none. The one place a caller's role is looked
/// up, for admin API tokens here and for the console's signed-in people
/// ([`crate::console::session`]).
pub async fn authority_of(
    store: &dyn mandate_store::Store,
    principal: Principal,
) -> Result<Option<Authority>, ServerError> {
    let role = store.admin_role(&principal).await?;
    Ok(role.map(|role| Authority { principal, role }))
}

/// A JSON body whose rejections (wrong content type, syntax, shape) answer `invalid_request`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ServerError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ServerError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if !is_json {
            return Err(AdminError::Invalid(
                "the body must be JSON (Content-Type: application/json)".into(),
            )
            .into());
        }
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ServerError::TooLarge
            } else {
                AdminError::Invalid("the request body could not be read".into()).into()
            }
        })?;
        if contains_nul(&body) {
            return Err(
                AdminError::Invalid("the body must not contain NUL characters".into()).into(),
            );
        }
        // Every request body is a JSON object. serde would also read a struct from an array
        // (`[null]`), which the OpenAPI document does not allow (schemathesis found it).
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AdminError::Invalid("the body must be a JSON object".into()).into());
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| AdminError::Invalid(format!("invalid JSON body: {e}")).into())
    }
}

/// Query parameters whose rejections answer `invalid_request`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ServerError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(e) => Err(AdminError::Invalid(query_rejection(&e)).into()),
        }
    }
}

fn query_rejection(e: &QueryRejection) -> String {
    format!("invalid query: {}", e.body_text())
}

/// One path segment whose rejections answer `invalid_request`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ServerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ServerError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(e) => Err(AdminError::Invalid(path_rejection(&e)).into()),
        }
    }
}

fn path_rejection(e: &PathRejection) -> String {
    format!("invalid path: {}", e.body_text())
}
