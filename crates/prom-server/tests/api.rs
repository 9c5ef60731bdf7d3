//! The management API end to end: each test spawns the real server on `127.0.0.1:0` over a fresh
//! database and talks to it with an HTTP client, asserting what a user sees — status, error code,
//! JSON body and the audit log.
//!
//! The database is a temp SQLite file, or a fresh PostgreSQL schema when `PROM_TEST_DATABASE_URL`
//! is set (`PROM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo nextest run -p
//! prom-server`). One binary for the whole crate: every test binary costs link time.
//!
//! No literal key appears in this source: keys are minted by the server (or by `PlainKey::mint`
//! for never-issued ones) at run time, so secret scanners have nothing to flag.

// A test fails by panicking; clippy's `allow-*-in-tests` covers only `#[test]` functions, not the
// fixtures and helpers an integration test binary shares between them.
#![expect(clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

#[path = "api/pages.rs"]
mod pages;
#[path = "api/support.rs"]
mod support;

#[path = "api/allowance.rs"]
mod allowance;
#[path = "api/audit.rs"]
mod audit;
#[path = "api/auth_errors.rs"]
mod auth_errors;
#[path = "api/charging.rs"]
mod charging;
#[path = "api/cors.rs"]
mod cors;
#[path = "api/dash_keys.rs"]
mod dash_keys;
#[path = "api/dash_login.rs"]
mod dash_login;
#[path = "api/dash_store.rs"]
mod dash_store;
#[path = "api/dash_usage.rs"]
mod dash_usage;
#[path = "api/egress.rs"]
mod egress;
#[path = "api/funds.rs"]
mod funds;
#[path = "api/gateway.rs"]
mod gateway;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/keys.rs"]
mod keys;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/login.rs"]
mod login;
#[path = "api/oauth.rs"]
mod oauth;
#[path = "api/oauth_attacks.rs"]
mod oauth_attacks;
#[path = "api/paid_results.rs"]
mod paid_results;
#[path = "api/requests.rs"]
mod requests;
#[path = "api/roles.rs"]
mod roles;
#[path = "api/rotation.rs"]
mod rotation;
#[path = "api/services.rs"]
mod services;
#[path = "api/stdio.rs"]
mod stdio;
#[path = "api/stdio_hosting.rs"]
mod stdio_hosting;
#[path = "api/tool_errors.rs"]
mod tool_errors;
#[path = "api/usage.rs"]
mod usage;
#[path = "api/wallets.rs"]
mod wallets;
