//! Test harness: a real Gatehouse on port 0 against a fresh database, driven over HTTP.
//!
//! SQLite tests get a fresh temporary data directory. PostgreSQL tests get a fresh database
//! created from `TEST_DATABASE_URL`; when it is unset they are skipped with a printed reason.
//! Logs are captured as JSON lines so tests can check what an operator would see.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use gatehouse::Application;
use gatehouse::clock::ManualClock;
use gatehouse::config::{Settings, Sources};
use gatehouse::store::Db;
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A secret key long enough for production.
pub(crate) const GOOD_KEY: &str = "test-secret-key-0123456789abcdef0123456789abcdef";

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Prints that a test is skipped, past the test harness's output capture, so it is never
/// silent.
pub(crate) fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

impl Backend {
    /// Whether this backend can run here; prints the reason when not.
    pub(crate) fn available(self, test: &str) -> bool {
        match self {
            Self::Sqlite => true,
            Self::Postgres => {
                let ok = pg_admin_url().is_some();
                if !ok {
                    skip(test, "TEST_DATABASE_URL is not set (PostgreSQL variant)");
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

/// The Redis URL for tests, or a printed skip.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty());
    if url.is_none() {
        skip(test, "TEST_REDIS_URL is not set (Redis variant)");
    }
    url
}

/// Runs a test body once per backend: `sqlite` always, `postgres` when `TEST_DATABASE_URL` is
/// set (skipped with a printed reason otherwise).
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($backend: $crate::helpers::Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::helpers::Backend::Postgres
                    .available(concat!(module_path!(), "::postgres"))
                {
                    run($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )*};
}

/// A running Gatehouse.
pub(crate) struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub(crate) address: String,
    /// The bound address.
    pub(crate) addr: SocketAddr,
    /// Where `/metrics` is served, when enabled.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// A client that follows no redirects.
    pub(crate) client: reqwest::Client,
    /// The app's database handle.
    pub(crate) db: Db,
    /// The database URL, for running the CLI against the same database.
    pub(crate) database_url: String,
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// The app's clock: it moves only when a test advances it.
    pub(crate) clock: ManualClock,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request failed")
    }

    /// A request builder for `method path`.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    /// Environment for running the `gatehouse` binary against this app's database.
    pub(crate) fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("GATEHOUSE_DATABASE_URL".into(), self.database_url.clone()),
            ("GATEHOUSE_SECRET_KEY".into(), GOOD_KEY.into()),
            (
                "GATEHOUSE_DATA_DIR".into(),
                self.data_dir.display().to_string(),
            ),
        ]
    }

    /// Starts the shutdown without waiting for it.
    pub(crate) fn begin_shutdown(&mut self) -> JoinHandle<anyhow::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("already shut down")
    }
}

/// Starts Gatehouse on `backend` with default test settings.
pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// Starts Gatehouse on `backend` with extra settings (environment-variable names).
pub(crate) async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    capture_logs();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/gatehouse.db", data_dir.display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    let mut env: HashMap<String, String> = HashMap::from([
        ("GATEHOUSE_LISTEN".into(), "127.0.0.1:0".into()),
        ("GATEHOUSE_DATA_DIR".into(), data_dir.display().to_string()),
        ("GATEHOUSE_DATABASE_URL".into(), database_url.clone()),
        ("GATEHOUSE_DATABASE_MAX_CONNECTIONS".into(), "4".into()),
        ("GATEHOUSE_SECRET_KEY".into(), GOOD_KEY.into()),
        ("GATEHOUSE_SHUTDOWN_TIMEOUT".into(), "10s".into()),
        // Apps that use Redis must not see each other's keys, nor earlier runs'.
        (
            "GATEHOUSE_REDIS_PREFIX".into(),
            format!("gh-test:{}:", uuid::Uuid::new_v4().simple()),
        ),
    ]);
    for (k, v) in overrides {
        env.insert((*k).into(), (*v).into());
    }
    let settings = Settings::load(&Sources {
        env,
        config_file: None,
        dotenv_file: None,
    })
    .expect("test settings are valid");
    let clock = ManualClock::new();
    let app = Application::build_with_clock(settings, std::sync::Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let db = app.state().db.clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://{addr}"),
        addr,
        metrics_addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        db,
        database_url,
        data_dir,
        clock,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

/// Creates an empty database on the server `TEST_DATABASE_URL` names and returns its URL.
/// Databases left by earlier test processes are dropped first.
async fn fresh_postgres_database() -> String {
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

/// Runs the `gatehouse` binary with exactly `env` (plus PATH) and `args`.
pub(crate) fn run_cli(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the gatehouse binary runs")
}

/// Like [`run_cli`], with `input` on standard input.
pub(crate) fn run_cli_with_stdin(
    env: &[(String, String)],
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gatehouse binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Pairs of `&str` as owned environment entries.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---- captured logs -------------------------------------------------------------------------

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(LogBuffer::default)
}

/// Installs the process-wide subscriber that captures every app's JSON log lines (the app's own
/// `telemetry::init` then finds one installed and leaves it).
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let buffer = log_buffer().clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter("info")
            .with_writer(move || buffer.clone())
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Every captured log line, parsed.
pub(crate) fn captured_logs() -> Vec<serde_json::Value> {
    let bytes = log_buffer().0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The raw captured log text.
pub(crate) fn captured_log_text() -> String {
    String::from_utf8_lossy(&log_buffer().0.lock().unwrap()).into_owned()
}

/// The `request finished` line of the request with this ID.
pub(crate) fn request_log(request_id: &str) -> serde_json::Value {
    captured_logs()
        .into_iter()
        .find(|l| l["message"] == "request finished" && l["span"]["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no log line for request {request_id}"))
}

/// Starts Gatehouse on `backend` with the sign-in limits off (tests post many forms from one
/// address and for one account) and `extra` settings.
pub(crate) async fn spawn_unlimited_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
        ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(backend, &env).await
}

/// [`spawn_unlimited_app`] with its outgoing mail going to a fresh local SMTP sink.
pub(crate) async fn spawn_app_with_mail(
    backend: Backend,
    extra: &[(&str, &str)],
) -> (TestApp, crate::smtp_sink::SmtpSink) {
    let sink = crate::smtp_sink::SmtpSink::start().await;
    let port = sink.port.to_string();
    let mut env = vec![
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
    ];
    env.extend_from_slice(extra);
    (spawn_unlimited_app(backend, &env).await, sink)
}

/// Creates a user with `role` and `password` through the CLI.
pub(crate) fn add_user_with_password(app: &TestApp, email: &str, role: &str, password: &str) {
    let out = run_cli_with_stdin(
        &app.cli_env(),
        &[
            "user",
            "add",
            "--email",
            email,
            "--role",
            role,
            "--password-stdin",
        ],
        password,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An access token for `email` from the API's password grant.
pub(crate) async fn api_token(app: &TestApp, email: &str, password: &str) -> String {
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&serde_json::json!({"grant_type": "password", "email": email, "password": password}))
        .send()
        .await
        .expect("request failed");
    assert_eq!(res.status(), 200, "the password grant refused {email}");
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
