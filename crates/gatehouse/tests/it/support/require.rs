//! What this run must have: a test whose service is missing is skipped with a printed reason,
//! unless `GATEHOUSE_TEST_REQUIRE` names that service, in which case the test fails and says
//! exactly what to set or install.
//!
//! `GATEHOUSE_TEST_REQUIRE` is a comma-separated list of `postgres`, `redis` and `chromium`
//! (`.ci/run` sets all three), so a run meant to cover everything cannot pass by skipping.

use std::io::Write as _;

/// The variable that lists the services a run requires.
pub(crate) const REQUIRE_VAR: &str = "GATEHOUSE_TEST_REQUIRE";

/// A service some tests need and a machine may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// PostgreSQL, at `TEST_DATABASE_URL`.
    Postgres,
    /// Redis, at `TEST_REDIS_URL`.
    Redis,
    /// Headless Chromium and ChromeDriver, for the browser tests.
    Chromium,
    /// An independent OpenID provider at `GATEHOUSE_TEST_OIDC_INTEROP_URL`.
    OidcInterop,
}

impl Service {
    const ALL: [Self; 4] = [
        Self::Postgres,
        Self::Redis,
        Self::Chromium,
        Self::OidcInterop,
    ];

    /// The service's name in `GATEHOUSE_TEST_REQUIRE`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Chromium => "chromium",
            Self::OidcInterop => "oidc-interop",
        }
    }

    /// What makes the service available here.
    fn remedy(self) -> &'static str {
        match self {
            Self::Postgres => {
                "set TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB (a role that may CREATE DATABASE)"
            }
            Self::Redis => "set TEST_REDIS_URL=redis://HOST:PORT",
            Self::Chromium => {
                "install Debian's chromium and chromium-driver packages (/usr/bin/chromium and \
                 /usr/bin/chromedriver; .ci/run installs them)"
            }
            Self::OidcInterop => {
                "set GATEHOUSE_TEST_OIDC_INTEROP_URL to the issuer of a running npm \
                 `oauth2-mock-server` (.ci/run installs and starts one)"
            }
        }
    }
}

/// Whether `list` (the value of `GATEHOUSE_TEST_REQUIRE`) names `service`. Names are trimmed
/// and case-insensitive; an unknown name panics, so a typo cannot quietly require nothing.
pub(crate) fn requires(list: &str, service: Service) -> bool {
    let mut found = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = Service::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| {
                panic!("{REQUIRE_VAR} names {name:?}; the services are postgres, redis, chromium, oidc-interop")
            });
        found |= known == service;
    }
    found
}

/// Whether this run requires `service` (it is named in `GATEHOUSE_TEST_REQUIRE`).
pub(crate) fn required(service: Service) -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|list| requires(&list, service))
}

/// `service` is missing for `test` because of `why`: the test fails when the run requires the
/// service, and otherwise is skipped with a printed reason (past the test harness's output
/// capture, so a skip is never silent). The caller returns without running the test.
pub(crate) fn unavailable(test: &str, service: Service, why: &str) {
    let remedy = service.remedy();
    if required(service) {
        panic!(
            "{test} needs {}, which {REQUIRE_VAR} requires, but {why}: {remedy}",
            service.name()
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (to run it: {remedy})"
    );
}

#[test]
fn a_service_named_in_the_list_is_required() {
    assert!(requires("postgres,redis,chromium", Service::Redis));
    assert!(requires(" Redis ", Service::Redis));
    assert!(requires("postgres, chromium", Service::Chromium));
}

#[test]
fn a_service_left_out_of_the_list_is_not_required() {
    assert!(!requires("postgres,chromium", Service::Redis));
    assert!(!requires("", Service::Postgres));
    assert!(!requires(" , ", Service::Chromium));
}

#[test]
#[should_panic(expected = "names \"chrome\"")]
fn an_unknown_service_name_is_refused() {
    requires("postgres,chrome", Service::Postgres);
}
