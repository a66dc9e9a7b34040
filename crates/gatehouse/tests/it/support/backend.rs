//! The databases and Redis a test can run against, and the macros that choose them.
//!
//! SQLite is always here. PostgreSQL tests get a fresh database created from
//! `TEST_DATABASE_URL`, and Redis tests use `TEST_REDIS_URL`; when one is unset its tests are
//! skipped with a printed reason, or fail when `GATEHOUSE_TEST_REQUIRE` names it.

use sqlx::Connection as _;

use super::require::{Service, unavailable};

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Whether this backend can run here; when not, the test is skipped with a printed reason
    /// (or fails, when the run requires the backend).
    pub(crate) fn available(self, test: &str) -> bool {
        match self {
            Self::Sqlite => true,
            Self::Postgres => {
                let ok = pg_admin_url().is_some();
                if !ok {
                    unavailable(test, Service::Postgres, "TEST_DATABASE_URL is not set");
                }
                ok
            }
        }
    }
}

fn pg_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The Redis URL for tests; `None` when unset (the test is then skipped with a printed reason,
/// or fails when the run requires Redis).
pub(crate) fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty());
    if url.is_none() {
        unavailable(test, Service::Redis, "TEST_REDIS_URL is not set");
    }
    url
}

/// Where an app keeps its sessions and other short-lived state (single-use flow and ceremony
/// state): the database of either backend, or Redis (beside SQLite).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionStore {
    Sqlite,
    Postgres,
    Redis,
}

impl SessionStore {
    /// The backend to start an app on, and the settings that put its sessions in Redis; `None`
    /// when the store is not here (see [`Backend::available`] and [`redis_url`]).
    pub(crate) fn settings(self, test: &str) -> Option<(Backend, Vec<(&'static str, String)>)> {
        match self {
            Self::Sqlite => Some((Backend::Sqlite, Vec::new())),
            Self::Postgres => Backend::Postgres
                .available(test)
                .then(|| (Backend::Postgres, Vec::new())),
            Self::Redis => Some((
                Backend::Sqlite,
                vec![("GATEHOUSE_REDIS_URL", redis_url(test)?)],
            )),
        }
    }
}

/// Runs a test body once per backend, for tests whose outcome depends on the database:
/// `sqlite` always, `postgres` when `TEST_DATABASE_URL` is set (skipped with a printed reason
/// otherwise, or failed when `GATEHOUSE_TEST_REQUIRE` names `postgres`).
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::support::Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::support::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::support::Backend::Postgres
                    .available(concat!(module_path!(), "::postgres"))
                {
                    run($crate::support::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// Runs a test body once, on SQLite, for tests of the request pipeline whose outcome does not
/// depend on the database (headers, CORS, limits, errors…): a second run on PostgreSQL would
/// test nothing new and cost a database.
#[macro_export]
macro_rules! backend_agnostic {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {$(
        #[tokio::test]
        async fn $name() {
            let $backend = $crate::support::Backend::Sqlite;
            $body
        }
    )*};
}

/// Creates an empty database on the server `TEST_DATABASE_URL` names and returns its URL.
/// Databases left by earlier test processes are dropped first.
pub(crate) async fn fresh_postgres_database() -> String {
    static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let admin_url = pg_admin_url().expect("TEST_DATABASE_URL");
    let prefix = format!("gh_test_{}_", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("TEST_DATABASE_URL must reach PostgreSQL");
    CLEANED
        .get_or_init(|| async {
            let stale: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE datname LIKE 'gh\\_test\\_%' AND datname NOT LIKE $1",
            )
            .bind(format!("{}%", prefix.replace('_', "\\_")))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            for name in stale {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        })
        .await;
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}
