//! The guard's integration tests: one binary, real HTTP on 127.0.0.1:0.
//!
//! Tokens come from the real Mandate server (spawned in-process with the demo configuration) or,
//! where the test must control keys, from a fake issuer serving metadata and a JWKS.

// Test helpers are plain functions, which clippy's in-test allowances do not cover.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod access;
mod anomaly;
mod api_keys;
mod attacks;
mod feed;
mod feed_faults;
mod helpers;
mod keys;
mod metadata;
mod proxy;
mod reports;
