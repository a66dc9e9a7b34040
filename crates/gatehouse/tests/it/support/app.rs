//! A real Gatehouse on port 0 against a fresh database, driven over HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use gatehouse::Application;
use gatehouse::clock::ManualClock;
use gatehouse::config::{Settings, Sources};
use gatehouse::store::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::GOOD_KEY;
use super::backend::{Backend, fresh_postgres_database};
use super::logs::capture_logs;
use super::smtp_sink::SmtpSink;

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
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}/gatehouse.db", data_dir.display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    spawn_on(dir, data_dir, database_url, overrides).await
}

/// Starts another instance over `app`'s database and data directory (a second server behind the
/// same load balancer, or the same one restarted), with its own clock and extra settings.
pub(crate) async fn spawn_instance(app: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_on(
        dir,
        app.data_dir.clone(),
        app.database_url.clone(),
        overrides,
    )
    .await
}

async fn spawn_on(
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    database_url: String,
    overrides: &[(&str, &str)],
) -> TestApp {
    capture_logs();
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
) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let port = sink.port.to_string();
    let mut env = vec![
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
    ];
    env.extend_from_slice(extra);
    (spawn_unlimited_app(backend, &env).await, sink)
}
