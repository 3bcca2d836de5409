//! Mandate's resource-server guard: validates Mandate access tokens at the API that receives
//! them, and answers refusals with standard RFC 6750 / RFC 9728 challenges.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mandate_guard::{Guard, Principal, Requirement};
//!
//! async fn list_contacts(principal: Principal) -> String {
//!     principal.tenant
//! }
//!
//! # async fn app() -> Result<Router, mandate_guard::GuardError> {
//! let guard = Guard::builder("https://auth.example", "https://crm.example")
//!     .scope_implies("contacts.write", "contacts.read")
//!     .build()
//!     .await?;
//! let app = Router::new()
//!     .route("/contacts", get(list_contacts))
//!     .route_layer(guard.require(Requirement::scope("contacts.read")))
//!     .layer(guard.layer())
//!     .merge(guard.metadata_router());
//! # Ok(app)
//! # }
//! ```
//!
//! # Layout
//! - [`guard`]: configuration, discovery, and [`Guard::validate`], the whole per-request decision.
//! - `keys` (private): RFC 8414 discovery and the JWKS, refetched on unknown `kid`, rate-limited.
//! - `cache` (private): verified tokens by SHA-256, living until their `exp`.
//! - [`proxy`]: reverse-proxy mode for APIs that know nothing about OAuth.
//! - [`api_key`]: migration mode, raw Mandate API keys checked by introspection (off by
//!   default; [`GuardBuilder::accept_api_keys`]).
//! - [`feed`]: following the issuer's revocation feed into the revocation set.
//! - `sse` (private): the feed's event stream, with a cap on what one event may cost.
//! - [`report`]: denial reports, refusals queued and sent in batches to the issuer's audit
//!   log (opt-in, [`Guard::report_denials`]).
//! - [`revocation`]: revoked grants, tokens, users and agents, consulted on every validation
//!   (the feed subscriber fills it).
//! - [`scope`]: route requirements and the scope hierarchy.
//! - [`principal`]: what a handler learns about the caller.
//! - [`layer`]: tower layers, the axum extractor and the metadata route.
//! - [`response`]: the single mapping from a refusal to an HTTP response.
//! - [`metadata`]: the RFC 9728 document and well-known URLs.
//!
//! Seams for later slices: the revocation feed subscriber writes into
//! [`Guard::revocations`]; introspection fallback and proxy mode call [`Guard::authenticate`]
//! or [`Guard::validate_token`] and render with [`Guard::reject`].

pub mod api_key;
mod cache;
pub mod feed;
pub mod proxy;

pub mod error;
pub mod guard;
mod keys;
pub mod layer;
pub mod metadata;
pub mod principal;
pub mod report;
pub mod response;
pub mod revocation;
pub mod scope;
mod sse;

pub use error::GuardError;
pub use feed::{FeedCredential, FeedHandle};
pub use guard::{Guard, GuardBuilder};
pub use layer::{GuardLayer, RequireLayer};
pub use mandate_core::challenge::BearerError;
pub use metadata::ProtectedResourceMetadata;
pub use principal::Principal;
pub use report::{RefusedRequest, ReportHandle, ReportSettings};
pub use revocation::RevocationSet;
pub use scope::{Requirement, ScopeHierarchy};
