//! End-to-end tests of the real server over real HTTP, on SQLite and on PostgreSQL.
//!
//! One test binary (faster to link, shared helpers). Every test is written once as an
//! `async fn(Backend)` and instantiated for both backends by [`backend_tests!`]; the PostgreSQL
//! copies say clearly when `MANDATE_TEST_POSTGRES_URL` is absent and skip.

// Test helpers are plain functions, which clippy's in-test allowances do not cover.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::type_complexity
)]

mod helpers;

mod admin;
mod anomaly;
mod api_keys;
mod audit;
mod audit_export;
mod authorize;
mod client_credentials;
mod client_metadata_documents;
mod code_flow;
mod connected_agents;
mod console;
mod database_unavailable;
mod discovery;
mod guard_reports;
mod introspection;
mod metrics;
mod refresh;
mod registration;
mod revocation;
mod revocation_feed;
mod schemathesis;
mod signing_keys;
mod startup;
mod token_exchange;
