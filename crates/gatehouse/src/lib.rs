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
pub mod outbound;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod views;
pub mod web;

pub use app::Application;
pub use config::Settings;
pub use error::Error;
pub use state::AppState;

/// The build's own safeguards, read from the workspace's files: a change that drops one fails
/// here, not in an audit.
#[cfg(test)]
mod build_safeguards {
    const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
    const CI: &str = include_str!("../../../.ci/run");
    const DENY: &str = include_str!("../../../deny.toml");

    #[test]
    fn release_builds_panic_on_integer_overflow() {
        let manifest: toml::Table = WORKSPACE_MANIFEST.parse().unwrap();
        assert_eq!(
            manifest["profile"]["release"]
                .get("overflow-checks")
                .and_then(toml::Value::as_bool),
            Some(true),
            "[profile.release] overflow-checks = true (ASVS V14.1.2)"
        );
    }

    #[test]
    fn ci_checks_the_dependencies_and_writes_the_sbom() {
        assert!(
            CI.contains("cargo deny --locked check"),
            "cargo deny in .ci/run"
        );
        assert!(CI.contains("cargo cyclonedx"), "the SBOM in .ci/run");
        let deny: toml::Table = DENY.parse().unwrap();
        for (section, key) in [
            ("sources", "unknown-registry"),
            ("sources", "unknown-git"),
            ("bans", "multiple-versions"),
            ("bans", "wildcards"),
            ("advisories", "yanked"),
        ] {
            assert_eq!(
                deny[section][key].as_str(),
                Some("deny"),
                "deny.toml [{section}] {key}"
            );
        }
        assert!(
            deny["licenses"]["allow"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
    }
}
