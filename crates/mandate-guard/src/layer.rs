//! axum / tower integration: the authenticating layer, per-route requirements, the
//! [`Principal`] extractor and the RFC 9728 metadata route.
//!
//! [`GuardLayer`] validates the `Authorization` header and puts the [`Principal`] into the
//! request extensions, or answers the challenge itself; the handler never runs for a refused
//! request. [`RequireLayer`] (for `route_layer`) checks a route's scopes against that principal,
//! and authenticates on its own if the outer layer is absent, so forgetting the outer layer
//! fails closed rather than open. Every refusal goes through [`Guard::refuse`], which also
//! queues a denial report when [`Guard::report_denials`] is on.

use crate::guard::Guard;
use crate::principal::Principal;
use crate::report::RefusedRequest;
use crate::response::challenge_response;
use crate::scope::Requirement;
use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::response::Response;
use axum::routing::get;
use http::request::Parts;
use mandate_core::challenge::BearerError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Guard {
    /// A layer that authenticates every request it wraps.
    pub fn layer(&self) -> GuardLayer {
        GuardLayer {
            guard: self.clone(),
        }
    }

    /// A layer (for `route_layer`) that requires scopes of the authenticated principal.
    pub fn require(&self, requirement: Requirement) -> RequireLayer {
        RequireLayer {
            guard: self.clone(),
            requirement: Arc::new(requirement),
        }
    }

    /// The refusal response for `err`, with this resource's metadata URL in the challenge
    /// (not reported: use [`Guard::refuse`] to also queue a denial report).
    pub fn reject(&self, err: &BearerError) -> Response {
        challenge_response(err, self.metadata_url())
    }

    /// Serves the RFC 9728 document at `/.well-known/oauth-protected-resource{path}`, and at
    /// the bare well-known path too when the resource identifier has a path. Merge it into the
    /// application's router outside the guard layer (it must be readable without a token).
    pub fn metadata_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let doc = Arc::new(self.protected_resource_metadata().clone());
        let serve = move || {
            let doc = doc.clone();
            async move { Json((*doc).clone()) }
        };
        let mut router = Router::new().route(self.metadata_path(), get(serve.clone()));
        if self.metadata_path() != crate::metadata::WELL_KNOWN {
            router = router.route(crate::metadata::WELL_KNOWN, get(serve));
        }
        router
    }
}

/// See [`Guard::layer`].
#[derive(Clone, Debug)]
pub struct GuardLayer {
    guard: Guard,
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            guard: self.guard.clone(),
            inner,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GuardService<S> {
    guard: Guard,
    inner: S,
}

impl<S> Service<Request> for GuardService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // The clone is not driven to readiness; the ready one is taken (tower's usual idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.authenticate_attributed(req.headers()).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(refusal) => Ok(guard.refuse_with(&refusal, RefusedRequest::from(&req))),
            }
        })
    }
}

/// See [`Guard::require`].
#[derive(Clone, Debug)]
pub struct RequireLayer {
    guard: Guard,
    requirement: Arc<Requirement>,
}

impl<S> Layer<S> for RequireLayer {
    type Service = RequireService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireService {
            guard: self.guard.clone(),
            requirement: self.requirement.clone(),
            inner,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RequireService<S> {
    guard: Guard,
    requirement: Arc<Requirement>,
    inner: S,
}

impl<S> Service<Request> for RequireService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let requirement = self.requirement.clone();
        Box::pin(async move {
            let principal = match req.extensions().get::<Principal>() {
                Some(p) => p.clone(),
                None => match guard.authenticate_attributed(req.headers()).await {
                    Ok(p) => {
                        req.extensions_mut().insert(p.clone());
                        p
                    }
                    Err(refusal) => {
                        return Ok(guard.refuse_with(&refusal, RefusedRequest::from(&req)));
                    }
                },
            };
            match guard.check(&principal, &requirement) {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(guard.refuse(&e, RefusedRequest::from(&req), Some(&principal))),
            }
        })
    }
}

/// Handlers take `Principal` as an argument; it is present whenever a [`GuardLayer`] or
/// [`RequireLayer`] wraps the route. Without one the request is refused with a 401 (and an
/// error is logged: the route is misconfigured), never served anonymously.
impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Principal>() {
            Some(p) => Ok(p.clone()),
            None => {
                tracing::error!(
                    path = %parts.uri.path(),
                    "Principal extracted on a route without the guard layer"
                );
                let mut resp = challenge_response(&BearerError::Missing, "");
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                Err(resp)
            }
        }
    }
}
