//! Mandate's protocol and domain core.
//!
//! Everything that decides something lives here: whether a request is well formed, which scopes
//! a token may carry, whether a refresh token is being replayed, what an error is called on the
//! wire. Nothing here does IO. The clock ([`time::Clock`]) and randomness
//! ([`random::Entropy`]) come in as parameters, so every rule is testable with fixed inputs and
//! the server, the guard and the CLI share one definition of each wire type.
//!
//! # Layout
//! - [`error`]: RFC 6749 / 8707 error codes and the JSON error body.
//! - [`params`]: form and query parsing that refuses duplicated parameters.
//! - [`scope`], [`pkce`], [`redirect_uri`]: validating newtypes for the protocol's values.
//! - [`client`], [`directory`], [`resource`], [`grant`]: the domain model and its rules.
//! - [`client_auth`]: how a client proves who it is at the token endpoint; [`client_assertion`]
//!   adds `private_key_jwt` (RFC 7523), verified with the client's keys from [`jwks`].
//! - [`authorize`], [`token_request`], [`code`], [`refresh`]: endpoint request validation and
//!   the decisions each grant type makes.
//! - [`jwt`]: RFC 9068 access tokens, signed with a parsed key held for the process lifetime.
//! - [`exchange`]: RFC 8693 token exchange (on-behalf-of only) and its `act` delegation chains.
//! - [`api_key`]: scoped, expiring, checksummed `mk_` API keys and their rotation.
//! - [`registration`], [`client_metadata_document`]: clients that introduce themselves, by
//!   RFC 7591 dynamic registration or by an MCP client ID metadata document URL.
//! - [`metadata`], [`introspection`], [`token_response`]: response wire types.
//! - [`challenge`]: RFC 6750 / RFC 9728 `WWW-Authenticate` challenges for resource servers.
//! - [`event`]: the append-only event record every security-relevant action writes.
//! - [`audit`], [`audit_checkpoint`], [`audit_export`]: the tamper-evident chain over events,
//!   signed checkpoints that pin it (and let retention delete old events), and their export
//!   to SIEMs as OCSF-aligned JSON Lines.
//! - [`revocation`]: the revocation feed's entries, derived from revocation events.
//! - [`denial_report`]: refusals reported by resource servers' guards, recorded as events.
//! - [`anomaly`]: rules over the event log that alert, throttle or revoke when an agent goes
//!   wrong.
//! - [`secret`], [`random`], [`time`]: hashing of opaque secrets, injected entropy and clock.

pub mod admin;
pub mod anomaly;
pub mod api_key;
pub mod audit;
pub mod audit_checkpoint;
pub mod audit_export;
pub mod authorize;
pub mod challenge;
pub mod client;
pub mod client_assertion;
pub mod client_auth;
pub mod client_metadata_document;
pub mod code;
pub mod denial_report;
pub mod directory;
pub mod error;
pub mod event;
pub mod exchange;
pub mod grant;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod metadata;
pub mod params;
pub mod pkce;
pub mod random;
pub mod redirect_uri;
pub mod refresh;
pub mod registration;
pub mod resource;
pub mod revocation;
pub mod scope;
pub mod secret;
pub mod time;
pub mod token_request;
pub mod token_response;

pub use error::OAuthError;
