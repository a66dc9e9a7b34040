//! Test support, one module per subject; tests import from here (`crate::support::…`).
//!
//! - [`app`]: a real Gatehouse on port 0 against a fresh database, driven over HTTP.
//! - [`backend`]: SQLite, PostgreSQL and Redis, and the macros that run a test on them.
//! - [`require`]: `GATEHOUSE_TEST_REQUIRE`, which turns a missing service from a skip into a
//!   failure.
//! - [`users`]: the one fixture that creates test users, and their credentials.
//! - [`cli`]: the `gatehouse` binary, run as an operator would.
//! - [`logs`]: every app's log lines, captured as JSON.
//! - [`visitor`]: a browser stand-in over HTTP; [`browser`]: a real, headless Chromium.
//! - [`smtp_sink`]: a local SMTP server that keeps what it receives.
//! - [`access_proxy`]: a stand-in for Cloudflare Access (its certs endpoint and assertions).
//! - [`passkey`]: a software passkey (ES256) answering WebAuthn ceremonies over HTTP.

pub(crate) mod access_proxy;
mod app;
pub(crate) mod backend;
pub(crate) mod browser;
mod cli;
pub(crate) mod faults;
mod logs;
pub(crate) mod oidc_provider;
pub(crate) mod passkey;
mod require;
pub(crate) mod smtp_sink;
mod users;
pub(crate) mod visitor;

pub(crate) use app::{
    TestApp, spawn_app, spawn_app_with, spawn_app_with_mail, spawn_instance, spawn_unlimited_app,
};
pub(crate) use backend::{Backend, SessionStore, redis_url};
pub(crate) use cli::{
    ServedBinary, assert_audit_chain_verifies, env_of, run_cli, run_cli_with_stdin,
};
pub(crate) use logs::{
    captured_log_text, captured_log_text_since, captured_logs, log_mark, request_log,
};
pub(crate) use require::{Service, unavailable};
pub(crate) use users::{add_user, api_token, app_hasher, totp_code};

/// A secret key long enough for production.
pub(crate) const GOOD_KEY: &str = "test-secret-key-0123456789abcdef0123456789abcdef";
