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
use gatehouse_security::{Limiter, MemoryStore, RedisStore};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::identity::Email;
use crate::identity::passwords::{PasswordHasher, Pepper};
use crate::identity::sessions::{RedisSessions, SessionConfig, SessionStore, Sessions};
use crate::identity::tokens::KeyRing;
use crate::keys::Keys;
use crate::mail::Mailer;
use crate::ops;
use crate::state::{AppState, AppStateInner};
use crate::store::Db;
use crate::telemetry::Metrics;
use crate::views::Assets;
use crate::views::Templates;

mod housekeeping;
mod router;
mod serve;

use housekeeping::{housekeeping, key_upkeep, reminders};
pub use router::router;
use serve::{serve_http, until_stopped};

/// Most distinct keys the in-memory rate limiter tracks (a few MiB at most).
const RATE_LIMIT_MEMORY_KEYS: usize = 100_000;

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
        use_development_key(&mut settings)?;
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
        let keys = Arc::new(load_keys(&settings, &db, clock.now()).await?);
        let passwords = PasswordHasher::new(
            settings.argon2,
            settings.hashing,
            Pepper::new(keys.password_pepper()),
        )?;
        let tokens = Arc::new(
            KeyRing::load_or_create(&db, &keys, clock.now(), settings.access_token_lifetime)
                .await
                .context("cannot load the token signing keys")?,
        );
        let mailer = Mailer::start(&settings.smtp).context("outgoing mail (SMTP_*)")?;
        let access_cache: Arc<crate::identity::tokens::AccessCache> = Arc::default();
        // The one back-channel client (https only in production), shared by every caller.
        let outbound = crate::outbound::Outbound::new(!settings.is_production());
        let oidc = Arc::new(crate::identity::oidc::Providers::new(
            &settings.oidc_providers,
            outbound.clone(),
            clock.clone(),
            settings.public_url.as_str(),
        ));
        let identity = crate::identity::Identity::new(crate::identity::service::Parts {
            db: db.clone(),
            keys: keys.clone(),
            sessions: sessions.clone(),
            oidc,
            limiter: limiter.clone(),
            passwords: passwords.clone(),
            mailer: mailer.clone(),
            clock: clock.clone(),
            tokens: tokens.clone(),
            access_cache: access_cache.clone(),
            upstream: Arc::new(crate::identity::upstream::Upstream::new(
                settings.upstream_identity.clone(),
                outbound,
            )),
            config: identity_config(&settings),
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
        tokio::spawn(key_upkeep(self.state.clone(), stop_rx.clone()));
        tokio::spawn(reminders(self.state.clone(), stop_rx.clone()));

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
    let keys = Arc::new(load_keys(settings, db, clock.now()).await?);
    let pepper = Pepper::new(keys.password_pepper());
    Ok(crate::identity::Identity::new(
        crate::identity::service::Parts {
            db: db.clone(),
            keys,
            sessions: sessions_for(settings, db, redis.as_ref(), clock.clone()),
            limiter: Limiter::with_system_clock(MemoryStore::new(RATE_LIMIT_MEMORY_KEYS)),
            passwords: PasswordHasher::new(settings.argon2, settings.hashing, pepper)?,
            mailer: Mailer::start(&settings.smtp).context("outgoing mail (SMTP_*)")?,
            tokens: Arc::new(KeyRing::unloaded(clock.now())),
            access_cache: Arc::default(),
            oidc: Arc::new(crate::identity::oidc::Providers::none(clock.clone())),
            upstream: Arc::new(crate::identity::upstream::Upstream::off()),
            config: identity_config(settings),
            clock,
        },
    ))
}

/// The identity rules' settings in `settings`.
fn identity_config(settings: &Settings) -> crate::identity::IdentityConfig {
    let quota = |rate: Option<crate::config::Rate>| {
        rate.and_then(|r| gatehouse_security::Quota::new(r.limit, r.period).ok())
    };
    crate::identity::IdentityConfig {
        base_url: settings
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
        allowed_domains: settings.allowed_domains.clone(),
        signin_email_rate_limit: quota(settings.signin_email_rate_limit),
        magic_link_rate_limit: quota(settings.magic_link_rate_limit),
        deny_on_store_error: settings.signin_rate_limit_deny_on_store_error,
        throttle: settings.throttle,
        mfa_required_roles: settings.mfa_required_roles.clone(),
        access_token_lifetime: settings.access_token_lifetime,
        refresh_token_lifetime: settings.refresh_token_lifetime,
        sign_in_link_lifetime: settings.sign_in_link_lifetime,
        password_reset_lifetime: settings.password_reset_lifetime,
        password_policy: settings.password_policy.clone(),
        relying_party: crate::identity::passkeys::relying_party(&settings.public_url),
    }
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

/// Connects to the configured database and applies pending migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect_with(
        settings.database_url.expose_secret(),
        settings.database_max_connections,
        settings.database_acquire_timeout,
    )
    .await
    .context("cannot connect to the database named by GATEHOUSE_DATABASE_URL")?;
    db.migrate().await.context("cannot migrate the database")?;
    Ok(db)
}

/// The sealing keys of `settings` and the data keys of `db`, with what to set when they do not
/// open.
pub async fn load_keys(
    settings: &Settings,
    db: &Db,
    now: time::OffsetDateTime,
) -> anyhow::Result<Keys> {
    let keys = Keys::load(
        db,
        &settings.secret_key,
        settings.previous_secret_key.as_ref(),
        now,
    )
    .await
    .context("cannot load the data keys")?;
    if keys.has_previous() {
        tracing::warn!(
            event = "config_warning",
            setting = "GATEHOUSE_SECRET_KEY_PREVIOUS",
            "a secret-key change is under way: once every instance runs with the new key, run `gatehouse keys reencrypt`, then remove GATEHOUSE_SECRET_KEY_PREVIOUS"
        );
    }
    Ok(keys)
}

/// In development without `GATEHOUSE_SECRET_KEY`, uses the key kept in the data directory (made
/// on the first run) for the server and the commands alike. Production requires the setting
/// (its check refuses to start without it), so nothing changes there.
pub fn use_development_key(settings: &mut Settings) -> anyhow::Result<()> {
    if settings.secret_key_generated && !settings.is_production() {
        create_private_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} (GATEHOUSE_DATA_DIR)",
                settings.data_dir.display()
            )
        })?;
        settings.secret_key = development_secret_key(&settings.data_dir)?;
    }
    Ok(())
}

/// The secret key of a development run without `GATEHOUSE_SECRET_KEY`: read from
/// [`crate::config::DEVELOPMENT_KEY_FILE`] in the data directory, or made and written there (owner-only) on the
/// first run. Without it every restart would bring a new key, and what the last run sealed in the
/// database (token signing keys, TOTP secrets) could not be opened any more.
fn development_secret_key(data_dir: &std::path::Path) -> anyhow::Result<SecretString> {
    use std::io::Write as _;

    let path = data_dir.join(crate::config::DEVELOPMENT_KEY_FILE);
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

/// Creates the data directory readable by this user only.
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
        let path = dir.path().join(crate::config::DEVELOPMENT_KEY_FILE);
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
