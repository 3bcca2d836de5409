//! Mandate's HTTP service: the OAuth 2.1 authorization server for AI agents.
//!
//! Handlers are thin: they read the request, call `mandate-core` for every decision, persist
//! through `mandate-store`, record an event, and map errors in one place ([`errors`]).
//!
//! # Layout
//! - [`startup`]: build (bind, migrate, apply config, load keys) and run until shutdown.
//! - [`config`], [`apply`]: layered configuration and the declarative model applied at start.
//! - [`admin`]: the admin API (`/admin/v1`) and its OpenAPI document.
//! - [`console`]: the admin console (`/admin/console/`), pages over the admin operations.
//! - [`routes`]: one module per endpoint; [`grants`]: one module per token grant type.
//! - [`issuance`]: minting access tokens, refresh families and codes.
//! - [`token_state`]: whether an access token (and every grant it depends on) is still active.
//! - [`client_auth`], [`browser`], [`password`]: proving who a client or a person is.
//! - [`client_documents`]: fetching MCP client ID metadata documents (URL client ids).
//! - [`audit_export`]: delivering the audit log to SIEMs (file and webhook sinks).
//! - [`audit_retention`]: signed audit checkpoints and purging events past the retention.
//! - [`keys`]: the key-encryption key and the signing key ring.
//! - [`cache`]: short-lived caches for the token endpoint's hot path.
//! - [`pages`]: compiled templates for login, consent, connected agents and errors.
//! - [`errors`]: the single mapping from failures to HTTP responses.
//! - [`metrics`]: Prometheus metrics and `GET /metrics`.

pub mod admin;
pub mod anomaly;
pub mod apply;
pub mod audit_export;
pub mod audit_retention;
pub mod browser;
pub mod cache;
pub mod cache_invalidation;
pub mod client_auth;
pub mod client_documents;
pub mod config;
pub mod console;
pub mod errors;
pub mod form;
pub mod grants;
pub mod issuance;
pub mod keys;
pub mod metrics;
pub mod pages;
pub mod password;
pub mod rate_limit;
pub mod refresh_state;
pub mod request_meta;
pub mod routes;
pub mod startup;
pub mod state;
pub mod system;
pub mod token_state;

pub use config::Config;
pub use startup::{Application, Dependencies};
