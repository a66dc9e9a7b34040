//! Gatehouse's integration tests: one binary, the real server on port 0, a fresh database per
//! test, every backend present.

mod support;

mod admin;
mod api;
mod api_keys;
mod asvs;
mod audit;
mod browser;
mod cli;
mod concurrency;
mod cors;
mod docs;
mod errors;
mod exposure;
mod faults;
mod first_start;
mod headers;
mod health;
mod identity_core;
mod input;
mod instances;
mod items;
mod lifetimes;
mod limits;
mod logging;
mod mail;
mod metrics;
mod mfa;
mod notices;
mod oidc;
mod openapi;
mod pages;
mod passkeys;
mod password_forms;
mod password_rules;
mod password_storage;
mod passwords;
mod proxies;
mod request_id;
mod sessions;
mod shutdown;
mod signin;
mod signing_keys;
mod upstream;
