//! The application: shared state, the router with its middleware stack, and the server.
//!
//! [`Application::build`] does everything that can fail before serving (database, migrations,
//! first admin, binding the listeners), so a bad start fails loudly and early;
//! [`Application::run_until`] serves until the shutdown future resolves, then lets in-flight
//! requests finish (bounded by `GATEHOUSE_SHUTDOWN_TIMEOUT`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use gatehouse_security::body_limit::BodyLimitLayer;
use gatehouse_security::rate_limit::{ExtensionKey, FailurePolicy, KeySource, Quota, Rule};
use gatehouse_security::{
    CatchPanicLayer, ClientIpLayer, CsrfConfig, CsrfLayer, Limiter, MemoryStore, RateLimitLayer,
    RedisStore, RejectTraceLayer, RequestIdLayer, SecurityHeadersConfig, SecurityHeadersLayer,
    sensitive,
};
use http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::identity::Email;
use crate::identity::passwords::PasswordHasher;
use crate::identity::sessions::{RedisSessions, SessionConfig, SessionStore, Sessions};
use crate::identity::tokens::KeyRing;
use crate::keys::Keys;
use crate::mail::Mailer;
use crate::store::Db;
use crate::telemetry::{Metrics, ObserveLayer};
use crate::web::assets::Assets;
use crate::web::errors::ErrorPagesLayer;
use crate::web::session::{CurrentUser, SessionLayer};
use crate::web::templates::Templates;
use crate::{ops, web};

/// Most distinct keys the in-memory rate limiter tracks (a few MiB at most).
const RATE_LIMIT_MEMORY_KEYS: usize = 100_000;

/// What every handler can reach. One reference count to clone: axum clones the state for every
/// extraction and the service stack for every request.
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct AppStateInner {
    /// The configuration.
    pub settings: Arc<Settings>,
    /// The database.
    pub db: Db,
    /// Redis, when configured (behind an `Arc`: cloning a client copies its connection info).
    pub redis: Option<Arc<redis::Client>>,
    /// Parsed templates.
    pub templates: Arc<Templates>,
    /// Embedded static files.
    pub assets: Arc<Assets>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Keys derived from the secret key.
    pub keys: Arc<Keys>,
    /// API token signing keys.
    pub tokens: Arc<crate::identity::tokens::KeyRing>,
    /// Access tokens checked in the last few seconds.
    pub access_cache: Arc<crate::identity::tokens::AccessCache>,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Sessions (database or Redis).
    pub sessions: Sessions,
    /// Rate limits (memory or Redis), for rules only a handler can key (an email address).
    pub limiter: Limiter,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Password hashing, one permit per core.
    pub passwords: PasswordHasher,
    /// The identity services: every sign-in, credential and account change goes through them.
    pub identity: crate::identity::Identity,
}

/// A built application, bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    state: AppState,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
}

impl Application {
    /// Refuses a production configuration with problems, then connects, migrates, creates the
    /// first admin if asked, and binds the listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with another time source (tests move a [`crate::clock::ManualClock`]
    /// instead of sleeping).
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if settings.is_production() {
            let problems = settings.production_problems();
            if !problems.is_empty() {
                let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                anyhow::bail!("production mode refuses to start: {}", list.join("; "));
            }
        }
        create_private_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} (GATEHOUSE_DATA_DIR)",
                settings.data_dir.display()
            )
        })?;
        let db = open_database(&settings).await?;

        let admin_email = settings
            .admin_email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .context("GATEHOUSE_ADMIN_EMAIL")?;

        let redis = settings
            .redis_url
            .as_ref()
            .map(|url| redis::Client::open(url.expose_secret()).map(Arc::new))
            .transpose()
            .context("GATEHOUSE_REDIS_URL is not a valid Redis URL")?;

        let mut settings = settings;
        if settings.secret_key_generated {
            // Development only (production refused to start above): a key that lasts across
            // restarts, so the signing keys and TOTP secrets sealed under it stay readable.
            settings.secret_key = development_secret_key(&settings.data_dir)?;
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {} (GATEHOUSE_LISTEN)", settings.listen))?;
        if settings.public_url.port() == Some(0) {
            // The default public URL names the listen address; with port 0, use the real port.
            let _ = settings
                .public_url
                .set_port(Some(listener.local_addr()?.port()));
        }
        let metrics_listener =
            match settings.metrics_listen {
                Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} (GATEHOUSE_METRICS_LISTEN)")
                })?),
                None => None,
            };

        let assets = Arc::new(Assets::embedded());
        let templates = Arc::new(Templates::new(assets.clone())?);
        let sessions = sessions_for(&settings, &db, redis.as_deref(), clock.clone());
        let limiter = match &redis {
            Some(client) => Limiter::with_system_clock(RedisStore::new(
                client.as_ref().clone(),
                format!("{}rl:", settings.redis_prefix),
            )),
            None => Limiter::with_system_clock(MemoryStore::new(RATE_LIMIT_MEMORY_KEYS)),
        };
        let passwords = PasswordHasher::per_core(settings.argon2)?;
        let keys = Arc::new(Keys::derive_with_previous(
            &settings.secret_key,
            settings.previous_secret_key.as_ref(),
        ));
        let tokens = Arc::new(
            KeyRing::load_or_create(&db, &keys, clock.now(), settings.access_token_lifetime)
                .await
                .context("cannot load the token signing keys")?,
        );
        let mailer = Mailer::start(&settings).context("outgoing mail (SMTP_*)")?;
        let access_cache: Arc<crate::identity::tokens::AccessCache> = Arc::default();
        let identity = crate::identity::Identity::new(crate::identity::service::Parts {
            db: db.clone(),
            keys: keys.clone(),
            sessions: sessions.clone(),
            limiter: limiter.clone(),
            passwords: passwords.clone(),
            mailer: mailer.clone(),
            clock: clock.clone(),
            tokens: tokens.clone(),
            access_cache: access_cache.clone(),
            config: crate::identity::IdentityConfig::from_settings(&settings),
        });
        // After the listener: the links it mails or logs name the real port.
        identity
            .first_start(admin_email, settings.is_production())
            .await
            .context("cannot set up the first admin")?;
        let state = AppState(Arc::new(AppStateInner {
            keys,
            tokens,
            access_cache,
            mailer,
            identity,
            settings: Arc::new(settings),
            db,
            redis,
            templates,
            assets,
            metrics: Arc::new(Metrics::new()),
            sessions,
            limiter,
            clock,
            passwords,
        }));
        Ok(Self {
            state,
            listener,
            metrics_listener,
        })
    }

    /// The address the HTTP server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen)
    }

    /// The address the metrics server is bound to, when enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state (tests use it to reach the database).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then waits for in-flight requests to finish, at most
    /// `GATEHOUSE_SHUTDOWN_TIMEOUT`.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = self.state.settings.shutdown_timeout;
        let address = self.local_addr();
        let router = router(self.state.clone())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        tokio::spawn(housekeeping(self.state.clone(), stop_rx.clone()));

        if let Some(listener) = self.metrics_listener {
            let metrics = ops::metrics_router(self.state.metrics.clone());
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, metrics)
                    .with_graceful_shutdown(async move { until_stopped(&mut rx).await })
                    .await
                {
                    tracing::error!(error = %e, "metrics server failed");
                }
            });
        }

        tracing::info!(
            event = "listening",
            address = %address,
            env = self.state.settings.env.as_str(),
            database = self.state.db.backend_name(),
            "Gatehouse is listening"
        );
        let server = serve_http(
            self.listener,
            router,
            self.state.settings.header_timeout,
            stop_rx.clone(),
        );
        let mut stop_rx = stop_rx;
        let deadline = async move {
            until_stopped(&mut stop_rx).await;
            tracing::info!(event = "shutting_down", "finishing in-flight requests");
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!(
                event = "shutdown_timeout",
                "in-flight requests did not finish within GATEHOUSE_SHUTDOWN_TIMEOUT; closing them"
            ),
        }
        self.state.db.close().await;
        tracing::info!(event = "stopped", "Gatehouse stopped");
        Ok(())
    }
}

/// How often expired sessions and sign-in links are deleted.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes expired sessions (database store; Redis expires its own), dead sign-in links and reset
/// tokens, quiet sign-in failure counts and dead API sign-ins, every [`HOUSEKEEPING_INTERVAL`]
/// (the first time one interval after start: instances restarting in a loop do not each sweep
/// the tables), until `stop`. With several instances each does it; the deletes are idempotent.
async fn housekeeping(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + HOUSEKEEPING_INTERVAL,
        HOUSEKEEPING_INTERVAL,
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = until_stopped(&mut stop) => return,
        }
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                event = "sessions_purged",
                count = n,
                "expired sessions deleted"
            ),
            Err(e) => {
                tracing::warn!(event = "housekeeping_failed", error = %e, "cannot purge sessions")
            }
        }
        let now = state.clock.now();
        let purges = [
            (
                "magic_links",
                crate::identity::magic_links::purge_expired(&state.db, now).await,
            ),
            (
                "password_resets",
                crate::identity::password_reset::purge_expired(&state.db, now).await,
            ),
            (
                "sign_in_failures",
                crate::identity::throttle::purge_quiet(&state.db, &state.settings.throttle, now)
                    .await,
            ),
            (
                "token_families",
                crate::identity::tokens::purge(&state.db, now).await,
            ),
        ];
        for (table, result) in purges {
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    event = "housekeeping_purged",
                    table,
                    count = n,
                    "dead rows deleted"
                ),
                Err(e) => {
                    tracing::warn!(event = "housekeeping_failed", table, error = %e, "cannot purge")
                }
            }
        }
    }
}

/// The identity services for a command-line run: the same rules as the server's, over the
/// configured database, session store and mail transport. Signing keys are not loaded (no
/// command signs tokens through them).
pub async fn cli_identity(
    settings: &Settings,
    db: &Db,
) -> anyhow::Result<crate::identity::Identity> {
    let redis = settings
        .redis_url
        .as_ref()
        .map(|u| redis::Client::open(u.expose_secret()))
        .transpose()
        .context("GATEHOUSE_REDIS_URL is not a valid Redis URL")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Ok(crate::identity::Identity::new(
        crate::identity::service::Parts {
            db: db.clone(),
            keys: Arc::new(Keys::derive_with_previous(
                &settings.secret_key,
                settings.previous_secret_key.as_ref(),
            )),
            sessions: sessions_for(settings, db, redis.as_ref(), clock.clone()),
            limiter: Limiter::with_system_clock(MemoryStore::new(RATE_LIMIT_MEMORY_KEYS)),
            passwords: PasswordHasher::per_core(settings.argon2)?,
            mailer: Mailer::start(settings).context("outgoing mail (SMTP_*)")?,
            tokens: Arc::new(KeyRing::unloaded(clock.now())),
            access_cache: Arc::default(),
            config: crate::identity::IdentityConfig::from_settings(settings),
            clock,
        },
    ))
}

/// The session service the settings describe: in Redis when `redis` is given, else in `db`.
pub fn sessions_for(
    settings: &Settings,
    db: &Db,
    redis: Option<&redis::Client>,
    clock: Arc<dyn Clock>,
) -> Sessions {
    let store = match redis {
        Some(client) => SessionStore::Redis(RedisSessions::new(client, &settings.redis_prefix)),
        None => SessionStore::Database(db.clone()),
    };
    Sessions::new(
        store,
        SessionConfig {
            idle_timeout: settings.session_idle_timeout,
            absolute_timeout: settings.session_lifetime,
            max_per_user: (settings.max_sessions_per_user > 0)
                .then_some(settings.max_sessions_per_user),
            ..SessionConfig::default()
        },
        clock,
    )
}

/// The per-IP rules: every request, and sign-in attempts.
fn rate_limit_layer(state: &AppState) -> anyhow::Result<RateLimitLayer> {
    let settings = &state.settings;
    let policy = |deny: bool| {
        if deny {
            FailurePolicy::Deny
        } else {
            FailurePolicy::Allow
        }
    };
    let mut rules = Vec::new();
    if let Some(rate) = settings.rate_limit {
        rules.push(Rule::new(
            "global",
            Quota::new(rate.limit, rate.period)?,
            KeySource::ClientIp,
            policy(settings.rate_limit_deny_on_store_error),
        )?);
    }
    if let Some(rate) = settings.signin_rate_limit {
        rules.push(
            Rule::new(
                "signin",
                Quota::new(rate.limit, rate.period)?,
                KeySource::ClientIp,
                policy(settings.signin_rate_limit_deny_on_store_error),
            )?
            .path_prefix("/login")
            .path_prefix("/password")
            .path_prefix("/api/v1/auth/token")
            .methods([http::Method::POST]),
        );
    }
    Ok(RateLimitLayer::new(state.limiter.clone(), rules)?.exempt(["/healthz", "/readyz"]))
}

/// The per-account rule: a signed-in account's requests from any address.
fn account_rate_limit_layer(state: &AppState) -> anyhow::Result<RateLimitLayer> {
    let settings = &state.settings;
    let mut rules = Vec::new();
    if let Some(rate) = settings.account_rate_limit {
        rules.push(Rule::new(
            "account",
            Quota::new(rate.limit, rate.period)?,
            KeySource::Extension(ExtensionKey::new(|ext| {
                ext.get::<CurrentUser>().map(|c| c.user.id.to_string())
            })),
            if settings.rate_limit_deny_on_store_error {
                FailurePolicy::Deny
            } else {
                FailurePolicy::Allow
            },
        )?);
    }
    Ok(RateLimitLayer::new(state.limiter.clone(), rules)?)
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(
        settings.database_url.expose_secret(),
        settings.database_max_connections,
    )
    .await
    .context("cannot connect to the database named by GATEHOUSE_DATABASE_URL")?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

/// Every route, wrapped in the request pipeline.
///
/// The stack, outermost first (DESIGN.md §2, with the reasons for each place):
/// 1. sensitive headers: `Authorization`, `Cookie`, `Set-Cookie` are marked before anything can
///    log them;
/// 2. request ID, then 3. client IP: both cannot panic, so running them first lets every
///    response, a panic's 500 included, carry the request ID, and lets the span name the client;
/// 4. the request span, log line and metrics: it sees the final status of everything below;
/// 5. security headers with the CSP nonce: on every response, error pages included;
/// 6. error rendering: problem+json or an HTML page, with the request ID;
/// 7. panic catcher: a panic below becomes a bare 500 that 6 renders;
/// 8. TRACE refused;
/// 9. timeout, then 10. body-size limit (413 on a too-large `Content-Length` before reading);
/// 11. CORS: preflights answered here, before any route runs;
/// 12. rate limits per client IP (`/healthz` and `/readyz` exempt);
/// 13. authentication: the request's one credential (on the API a bearer token or API key, else
///     the session cookie) → its principal, and for a session `CurrentUser` and its CSRF secret;
/// 14. rate limits per signed-in account (inside the session layer, which names the account);
/// 15. CSRF: on the form routes, and on the API for cookie-authenticated requests;
/// 16. the routes.
pub fn router(state: AppState) -> anyhow::Result<Router> {
    let settings = &state.settings;
    let cors = settings
        .cors_policy()
        .context("GATEHOUSE_CORS_ORIGINS is not a valid origin list")?;
    let stack = ServiceBuilder::new()
        .layer(sensitive::sensitive_headers_layer())
        .layer(RequestIdLayer::new())
        .layer(ClientIpLayer::new(settings.trusted_proxies.clone()))
        .layer(ObserveLayer::new(state.metrics.clone()))
        .layer(SecurityHeadersLayer::new(SecurityHeadersConfig {
            hsts: settings.is_production(),
            csp_report_uri: Some("/csp-report".into()),
        }))
        .layer(ErrorPagesLayer::new(state.templates.clone()))
        .layer(CatchPanicLayer::new())
        .layer(RejectTraceLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(BodyLimitLayer::new(settings.body_limit))
        // No allowlist, no CORS headers at all: browsers then refuse every cross-origin read.
        .option_layer((!cors.origins().is_empty()).then(|| cors.layer()))
        .layer(rate_limit_layer(&state)?)
        .layer(SessionLayer::new(state.clone()))
        .layer(account_rate_limit_layer(&state)?);
    // CSRF guards the forms (sign-in, account); `/` needs no token for anonymous visitors and
    // `/csp-report` is posted by browsers without one.
    let mut csrf_origins = vec![settings.public_url.origin().ascii_serialization()];
    csrf_origins.extend(cors.origins().iter().filter(|o| *o != "*").cloned());
    let csrf = CsrfLayer::try_new(CsrfConfig {
        allowed_origins: csrf_origins,
        secure_cookie: settings.is_production(),
        form_body_limit: 64 * 1024,
    })
    .context("GATEHOUSE_PUBLIC_URL / GATEHOUSE_CORS_ORIGINS give an invalid CSRF origin")?;
    Ok(Router::new()
        .merge(ops::router())
        .merge(web::router())
        // The JSON API: cookie-authenticated requests are checked as forms are (the token in
        // `X-CSRF-Token`); bearer and API-key requests carry their own credential.
        .merge(web::openapi::router().layer(csrf.clone().session_only()))
        .merge(
            web::auth::router()
                .merge(web::mfa::router())
                .merge(web::api_keys_api::pages())
                .merge(web::items_pages::router())
                .merge(web::setup::router())
                .layer(csrf),
        )
        .fallback(web::not_found)
        .layer(stack)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(state))
}

/// Serves HTTP/1.1 on `listener` until `stop` turns true, then lets open requests finish.
///
/// hyper directly rather than `axum::serve`, for one setting axum does not expose: the
/// header-read timeout (`GATEHOUSE_HEADER_TIMEOUT`). Without it a client that sends its request
/// headers a byte at a time (slowloris) holds a connection and a task forever, because the
/// request timeout only starts once the headers are complete.
async fn serve_http(
    listener: TcpListener,
    router: Router,
    header_timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::error!(event = "accept_failed", error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    continue;
                }
            },
            () = until_stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
            });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = until_stopped(&mut stop) => {
                    // Finish the request in flight, then close; idle connections close now.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` is true (or its sender is gone).
async fn until_stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// Creates the data directory readable by this user only.
/// The name of the development secret key's file in the data directory.
pub const DEVELOPMENT_KEY_FILE: &str = "development-secret.key";

/// The secret key of a development run without `GATEHOUSE_SECRET_KEY`: read from
/// [`DEVELOPMENT_KEY_FILE`] in the data directory, or made and written there (owner-only) on the
/// first run. Without it every restart would bring a new key, and what the last run sealed in the
/// database (token signing keys, TOTP secrets) could not be opened any more.
fn development_secret_key(data_dir: &std::path::Path) -> anyhow::Result<SecretString> {
    use std::io::Write as _;

    let path = data_dir.join(DEVELOPMENT_KEY_FILE);
    let context = || {
        format!(
            "cannot read or write the development secret key {} (set GATEHOUSE_SECRET_KEY instead)",
            path.display()
        )
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= crate::config::MIN_SECRET_KEY_BYTES => {
            return Ok(SecretString::from(text.trim().to_owned()));
        }
        Ok(_) => anyhow::bail!(
            "{} holds no usable key: delete it to make a new one, or set GATEHOUSE_SECRET_KEY",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(context),
    }
    let key = crate::config::generate_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(context)?;
    file.write_all(key.expose_secret().as_bytes())
        .with_context(context)?;
    // The `config_warning` about GATEHOUSE_SECRET_KEY already says which key is used and what
    // to set; this only records that the file is new.
    tracing::info!(
        event = "development_key_created",
        path = %path.display(),
        "a new development secret key was written"
    );
    Ok(key)
}

fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_key_is_made_once_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = development_secret_key(dir.path()).unwrap();
        let second = development_secret_key(dir.path()).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(first.expose_secret().len() >= crate::config::MIN_SECRET_KEY_BYTES);
        let path = dir.path().join(DEVELOPMENT_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").unwrap();
        let refused = development_secret_key(dir.path()).unwrap_err().to_string();
        assert!(refused.contains("no usable key"), "{refused}");
    }
}
