//! Settings: one typed struct built from defaults < TOML file < environment.
//!
//! Each setting is declared once, in one row of the settings table (`table/`): its environment
//! name, aliases, whether it is secret, its default as shown to people, how its value is read and
//! a one-line doc. Loading, `config check` ([`Settings::describe`]) and README's configuration
//! table ([`reference_markdown`]) are all made from those rows.
//!
//! Every setting has an environment name, a TOML key (the same name in lower case without the
//! `GATEHOUSE_` prefix: `GATEHOUSE_PUBLIC_URL` is `public_url`, `SMTP_HOST` is `smtp_host`) and,
//! for secrets, a `NAME_FILE` variant whose value is a path to read the secret from (mounted
//! secrets). The seeds' Flask names (`SECRET_KEY`, `FLASK_ENV`, `DATABASE_URL`, `SMTP_USER`, …)
//! are accepted as aliases. In development a `.env` file in the working directory is read too,
//! below the real environment.
//!
//! Loading never stops at the first problem: [`Settings::load`] returns every invalid value at
//! once, and [`Settings::production_problems`] lists everything production mode refuses, each
//! message naming the variable to set.
//!
//! The files: `table/` (the rows, by subject), `load.rs` (sources and precedence), `check.rs`
//! (production problems and warnings), `parse.rs` (durations, sizes, rates, …).
//!
//! # Security
//! - Secrets are [`SecretString`]s: `Debug` redacts them and [`Settings::describe`] prints
//!   `[redacted]` for every row marked secret, so `config check` output and logs never carry them.
//! - A missing secret key in development is replaced by one kept in the data directory
//!   (`development-secret.key`, made on the first run), with a warning; production refuses to
//!   start without a key of at least 32 bytes.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use gatehouse_security::{CorsPolicy, TrustedProxies};
use rand::RngCore as _;
use secrecy::SecretString;
use url::Url;

mod check;
mod load;
mod parse;
mod table;

pub use check::redact_url;
pub use load::{Origin, Sources};
pub use parse::{Rate, parse_duration, parse_rate, parse_size};
pub use table::reference_markdown;

/// Minimum length of the secret key in production, in bytes.
pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// Which rules apply: development is forgiving and explains; production refuses weak settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// Local work: generated secret, readable logs, `.env` read, links logged.
    Development,
    /// Every fail-fast check on, JSON logs, HSTS.
    Production,
}

impl Environment {
    /// The lower-case name used in settings and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production default).
    Json,
    /// Human-readable lines (development default).
    Text,
}

pub use crate::mail::{SmtpSettings, SmtpTls};

/// The name of the development secret key's file in the data directory (a development run
/// without `GATEHOUSE_SECRET_KEY` keeps its key there).
pub const DEVELOPMENT_KEY_FILE: &str = "development-secret.key";

/// The whole configuration of one Gatehouse process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `GATEHOUSE_ENV`: development or production.
    pub env: Environment,
    /// `GATEHOUSE_LISTEN`: the address the HTTP server binds.
    pub listen: SocketAddr,
    /// `GATEHOUSE_PUBLIC_URL`: the base of every link Gatehouse sends, without a trailing slash.
    pub public_url: Url,
    /// `GATEHOUSE_SECRET_KEY`: the root of every derived key.
    pub secret_key: SecretString,
    /// `GATEHOUSE_SECRET_KEY_PREVIOUS`: the key before the last change, still accepted to open
    /// values sealed under it.
    pub previous_secret_key: Option<SecretString>,
    /// True when no key was configured and a random one was made for this run.
    pub secret_key_generated: bool,
    /// `GATEHOUSE_DATA_DIR`: SQLite file, uploads, local state.
    pub data_dir: PathBuf,
    /// `GATEHOUSE_DATABASE_URL`: `sqlite://…` or `postgres://…`.
    pub database_url: SecretString,
    /// `GATEHOUSE_DATABASE_MAX_CONNECTIONS`: pool size.
    pub database_max_connections: u32,
    /// `GATEHOUSE_REDIS_URL`: sessions and rate limits go to Redis when set.
    pub redis_url: Option<SecretString>,
    /// `GATEHOUSE_REDIS_PREFIX`: prefix of every Redis key (deployments sharing a Redis differ).
    pub redis_prefix: String,
    /// `GATEHOUSE_TRUSTED_PROXIES`: peers whose `Forwarded` / `X-Forwarded-For` are believed.
    pub trusted_proxies: TrustedProxies,
    /// The same list as written, for display.
    pub trusted_proxies_raw: Vec<String>,
    /// `GATEHOUSE_CORS_ORIGINS`: origins allowed to call Gatehouse from a browser.
    pub cors_origins: Vec<String>,
    /// `GATEHOUSE_CORS_ALLOW_CREDENTIALS`: whether allowed origins may send cookies.
    pub cors_allow_credentials: bool,
    /// `GATEHOUSE_ADMIN_EMAIL`: on a first start with no users, this admin is created.
    pub admin_email: Option<String>,
    /// `GATEHOUSE_ALLOWED_DOMAINS`: addresses in these domains may sign in by magic link (and get
    /// an account with role `user` on first sign-in), besides existing active users.
    pub allowed_domains: Vec<String>,
    /// `GATEHOUSE_OIDC_PROVIDERS`: the names listed, before their settings are read.
    pub oidc_provider_names: Vec<String>,
    /// The OpenID Connect providers (`GATEHOUSE_OIDC_PROVIDERS` and each one's
    /// `GATEHOUSE_OIDC_<NAME>_…`).
    pub oidc_providers: Vec<crate::identity::oidc::ProviderConfig>,
    /// `GATEHOUSE_UPSTREAM_IDENTITY` (with `_HEADER`) and `GATEHOUSE_CF_ACCESS_*`: the person an
    /// upstream access proxy names.
    pub upstream_identity: crate::identity::upstream::UpstreamSettings,
    /// `GATEHOUSE_SIGN_IN_LINK_LIFETIME`: how long a mailed sign-in link and its code work.
    pub sign_in_link_lifetime: Duration,
    /// `GATEHOUSE_SESSION_IDLE_TIMEOUT`: a session unused this long ends.
    pub session_idle_timeout: Duration,
    /// `GATEHOUSE_SESSION_LIFETIME`: a session ends this long after sign-in.
    pub session_lifetime: Duration,
    /// `GATEHOUSE_MAX_SESSIONS_PER_USER`: the oldest sessions beyond this are revoked (0: no limit).
    pub max_sessions_per_user: u32,
    /// `GATEHOUSE_RATE_LIMIT`: every request per client IP (`None`: off).
    pub rate_limit: Option<Rate>,
    /// `GATEHOUSE_RATE_LIMIT_ON_STORE_ERROR`: allow or deny when Redis cannot decide (global rule).
    pub rate_limit_deny_on_store_error: bool,
    /// `GATEHOUSE_ACCOUNT_RATE_LIMIT`: requests per signed-in account, from any address (`None`: off).
    pub account_rate_limit: Option<Rate>,
    /// `GATEHOUSE_API_RATE_LIMIT`: API requests per signed-in user (token subject), from anywhere.
    pub api_rate_limit: Option<Rate>,
    /// `GATEHOUSE_SIGNIN_RATE_LIMIT`: sign-in attempts per client IP (`None`: off).
    pub signin_rate_limit: Option<Rate>,
    /// `GATEHOUSE_SIGNIN_RATE_LIMIT_ON_STORE_ERROR`: allow or deny when Redis cannot decide.
    pub signin_rate_limit_deny_on_store_error: bool,
    /// `GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT`: sign-in attempts per submitted address (`None`: off).
    pub signin_email_rate_limit: Option<Rate>,
    /// `GATEHOUSE_MAGIC_LINK_RATE_LIMIT`: sign-in mails per address (`None`: off).
    pub magic_link_rate_limit: Option<Rate>,
    /// `GATEHOUSE_ARGON2_MEMORY_KIB`, `_ITERATIONS`, `_PARALLELISM`: the cost of new password hashes.
    pub argon2: crate::identity::passwords::HashParams,
    /// `GATEHOUSE_HASHING_THREADS`, `GATEHOUSE_HASHING_QUEUE`: the password hashing threads.
    pub hashing: crate::identity::passwords::HashingPool,
    /// `GATEHOUSE_PASSWORD_MIN_LENGTH` (and `_MAX_LENGTH`, `GATEHOUSE_PASSWORD_REQUIRE_CLASSES`).
    pub password_policy: crate::identity::password_policy::PasswordPolicy,
    /// `GATEHOUSE_PASSWORD_RESET_LIFETIME`: how long a reset link works.
    pub password_reset_lifetime: Duration,
    /// `GATEHOUSE_LOCKOUT_THRESHOLD`, `GATEHOUSE_LOCKOUT_DURATION`: failed password sign-ins.
    pub throttle: crate::identity::throttle::ThrottleConfig,
    /// `GATEHOUSE_MFA_REQUIRED_ROLES`: roles whose users must set up MFA before anything else.
    pub mfa_required_roles: Vec<crate::identity::Role>,
    /// `GATEHOUSE_ACCESS_TOKEN_LIFETIME`: how long an API access token works.
    pub access_token_lifetime: Duration,
    /// `GATEHOUSE_SIGNING_KEY_ROTATION`: make a new signing key when the newest is this old.
    pub signing_key_rotation: Option<Duration>,
    /// `GATEHOUSE_REFRESH_TOKEN_LIFETIME`: how long an API sign-in lasts without a new password.
    pub refresh_token_lifetime: Duration,
    /// `GATEHOUSE_METRICS_LISTEN`: Prometheus `/metrics` on its own address.
    pub metrics_listen: Option<SocketAddr>,
    /// `SMTP_*`: outgoing mail.
    pub smtp: SmtpSettings,
    /// `UPLOAD_FOLDER`: where uploads are stored.
    pub upload_folder: PathBuf,
    /// `MAX_CONTENT_LENGTH`: the largest upload, in bytes.
    pub max_content_length: u64,
    /// `GATEHOUSE_BODY_LIMIT`: the largest request body on ordinary routes, in bytes.
    pub body_limit: usize,
    /// `GATEHOUSE_REQUEST_TIMEOUT`: longest time a request may take.
    pub request_timeout: Duration,
    /// `GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT`: how long a request waits for a pooled connection.
    pub database_acquire_timeout: Duration,
    /// `GATEHOUSE_HEADER_TIMEOUT`: longest time a client may take to send its request headers.
    pub header_timeout: Duration,
    /// `GATEHOUSE_SHUTDOWN_TIMEOUT`: how long in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// `GATEHOUSE_LOG`: log filter (`info`, `gatehouse=debug,warn`, …).
    pub log_filter: String,
    /// `GATEHOUSE_LOG_FORMAT`: `json` or `text`.
    pub log_format: LogFormat,
}

/// A value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable to fix.
    pub setting: String,
    /// What is wrong and what to set.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

/// Every problem found while loading, reported together.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration is not usable:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl Settings {
    /// True in production mode.
    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// The effective configuration as (name, value) pairs, one per setting in the order of the
    /// table, with secrets redacted.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        table::all()
            .map(|row| (row.name, row.describe(self)))
            .collect()
    }

    /// The CORS policy these settings describe. A `*` with credentials (refused in production)
    /// falls back to `*` without credentials in development.
    pub fn cors_policy(&self) -> Result<CorsPolicy, gatehouse_security::Error> {
        let wildcard = self.cors_origins.iter().any(|o| o == "*");
        let credentials = self.cors_allow_credentials && !wildcard;
        CorsPolicy::new(&self.cors_origins, credentials)
    }
}

/// A new random secret key: 48 bytes from the OS, base64.
pub(crate) fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod testing {
    //! What the tests of every file here share.

    use super::Sources;

    /// A secret key long enough for production.
    pub(super) const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef-long-enough";

    /// Sources holding only these environment variables.
    pub(super) fn sources(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            config_file: None,
            dotenv_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{GOOD_KEY, sources};

    #[test]
    fn describe_never_shows_secrets() {
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_SECRET_KEY_PREVIOUS", "previous-key-value-77"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            (
                "GATEHOUSE_DATABASE_URL",
                "postgres://app:hunter2hunter2@db/app",
            ),
            ("SMTP_PASSWORD", "smtp-secret-value"),
        ]))
        .unwrap();
        let printed = format!("{:?}{:?}", s.describe(), s);
        for secret in [
            GOOD_KEY,
            "hunter2hunter2",
            "smtp-secret-value",
            "previous-key-value-77",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked");
        }
    }
}
