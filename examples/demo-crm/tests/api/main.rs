//! The demo CRM end to end: a real Mandate server (demo configuration, SQLite), the CRM on an
//! ephemeral port following the revocation feed, tokens from real flows, and independent
//! clients (`oauth2` for code + PKCE, `rmcp`'s own MCP client).

// Test helpers are plain functions, which clippy's in-test allowances do not cover.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod a11y;
mod admin_console;
mod browser;
mod helpers;
mod mcp;
mod rest;
