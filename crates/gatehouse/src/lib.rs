//! Gatehouse: a secure-by-default web application server.
//!
//! The application library behind the `gatehouse` binary. Domains live in their own modules
//! (`identity`, `audit`, …), each with its service functions and queries; `web` holds the shared
//! page plumbing, `store` the database, `app` the router and its middleware stack. The generic
//! security layers come from the `gatehouse-security` crate.

pub mod access;
pub mod api;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod identity;
pub mod items;
pub mod keys;
pub mod mail;
pub mod ops;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod views;
pub mod web;

pub use app::Application;
pub use config::Settings;
pub use error::Error;
pub use state::AppState;
