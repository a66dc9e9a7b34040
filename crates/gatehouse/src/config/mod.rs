//! Settings: one typed struct built from defaults < TOML file < environment.
//!
//! Every setting has an environment name (the table in README.md), a TOML key (the same name in
//! lower case without the `GATEHOUSE_` prefix: `GATEHOUSE_PUBLIC_URL` is `public_url`, `SMTP_HOST`
//! is `smtp_host`) and, for secrets, a `NAME_FILE` variant whose value is a path to read the
//! secret from (mounted secrets). The seeds' Flask names (`SECRET_KEY`, `FLASK_ENV`,
//! `DATABASE_URL`, `SMTP_USER`, …) are accepted as aliases. In development a `.env` file in the
//! working directory is read too, below the real environment.
//!
//! Loading never stops at the first problem: [`Settings::load`] returns every invalid value at
//! once, and [`Settings::production_problems`] lists everything production mode refuses, each
//! message naming the variable to set.
//!
//! # Security
//! - Secrets are [`SecretString`]s: `Debug` redacts them and [`Settings::describe`] prints
//!   `[redacted]`, so `config check` output and logs never carry them.
//! - A missing secret key in development is replaced by a random one for this run only, with a
//!   warning; production refuses to start without a key of at least 32 bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use gatehouse_security::{CorsPolicy, TrustedProxies};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

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

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (only acceptable to a loopback relay).
    None,
    /// Plain connection upgraded with STARTTLS (default).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Outgoing mail settings.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// SMTP relay host; unset means mail is written to the log (development only).
    pub host: Option<String>,
    /// SMTP port; defaults by TLS mode (25, 587, 465).
    pub port: u16,
    /// SMTP user name.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<SecretString>,
    /// The `From` address of every mail.
    pub from: String,
    /// Transport security.
    pub tls: SmtpTls,
}

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
    /// `GATEHOUSE_HEADER_TIMEOUT`: longest time a client may take to send its request headers.
    pub header_timeout: Duration,
    /// `GATEHOUSE_SHUTDOWN_TIMEOUT`: how long in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// `GATEHOUSE_LOG`: log filter (`info`, `gatehouse=debug,warn`, …).
    pub log_filter: String,
    /// `GATEHOUSE_LOG_FORMAT`: `json` or `text`.
    pub log_format: LogFormat,
}

/// Where a value came from, for `config check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// The TOML file.
    File,
    /// The `.env` file.
    DotEnv,
    /// The process environment.
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::File => "config file",
            Self::DotEnv => ".env",
            Self::Env => "environment",
        })
    }
}

/// A setting Gatehouse knows: its environment name, aliases and whether it is secret.
struct Spec {
    name: &'static str,
    aliases: &'static [&'static str],
    secret: bool,
}

const fn spec(name: &'static str, aliases: &'static [&'static str], secret: bool) -> Spec {
    Spec {
        name,
        aliases,
        secret,
    }
}

/// Every setting, in the order `config check` prints them.
const SPECS: &[Spec] = &[
    spec("GATEHOUSE_ENV", &["FLASK_ENV"], false),
    spec("GATEHOUSE_LISTEN", &[], false),
    spec("GATEHOUSE_PUBLIC_URL", &[], false),
    spec(
        "GATEHOUSE_SECRET_KEY",
        &["SECRET_KEY", "FLASK_SECRET_KEY"],
        true,
    ),
    spec("GATEHOUSE_SECRET_KEY_PREVIOUS", &[], true),
    spec("GATEHOUSE_DATA_DIR", &[], false),
    spec("GATEHOUSE_DATABASE_URL", &["DATABASE_URL"], true),
    spec("GATEHOUSE_DATABASE_MAX_CONNECTIONS", &[], false),
    spec("GATEHOUSE_REDIS_URL", &["REDIS_URL"], true),
    spec("GATEHOUSE_REDIS_PREFIX", &[], false),
    spec("GATEHOUSE_TRUSTED_PROXIES", &[], false),
    spec("GATEHOUSE_CORS_ORIGINS", &[], false),
    spec("GATEHOUSE_CORS_ALLOW_CREDENTIALS", &[], false),
    spec("GATEHOUSE_ADMIN_EMAIL", &[], false),
    spec("GATEHOUSE_ALLOWED_DOMAINS", &[], false),
    spec("GATEHOUSE_SESSION_IDLE_TIMEOUT", &[], false),
    spec("GATEHOUSE_SESSION_LIFETIME", &[], false),
    spec("GATEHOUSE_MAX_SESSIONS_PER_USER", &[], false),
    spec("GATEHOUSE_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_RATE_LIMIT_ON_STORE_ERROR", &[], false),
    spec("GATEHOUSE_ACCOUNT_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_API_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_SIGNIN_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_SIGNIN_RATE_LIMIT_ON_STORE_ERROR", &[], false),
    spec("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", &[], false),
    spec("GATEHOUSE_ARGON2_MEMORY_KIB", &[], false),
    spec("GATEHOUSE_ARGON2_ITERATIONS", &[], false),
    spec("GATEHOUSE_ARGON2_PARALLELISM", &[], false),
    spec("GATEHOUSE_PASSWORD_MIN_LENGTH", &[], false),
    spec("GATEHOUSE_PASSWORD_MAX_LENGTH", &[], false),
    spec("GATEHOUSE_PASSWORD_REQUIRE_CLASSES", &[], false),
    spec("GATEHOUSE_PASSWORD_RESET_LIFETIME", &[], false),
    spec("GATEHOUSE_LOCKOUT_THRESHOLD", &[], false),
    spec("GATEHOUSE_MFA_REQUIRED_ROLES", &[], false),
    spec("GATEHOUSE_ACCESS_TOKEN_LIFETIME", &[], false),
    spec("GATEHOUSE_REFRESH_TOKEN_LIFETIME", &[], false),
    spec("GATEHOUSE_LOCKOUT_DURATION", &[], false),
    spec("GATEHOUSE_METRICS_LISTEN", &[], false),
    spec("SMTP_HOST", &[], false),
    spec("SMTP_PORT", &[], false),
    spec("SMTP_USERNAME", &["SMTP_USER"], false),
    spec("SMTP_PASSWORD", &[], true),
    spec("SMTP_FROM", &[], false),
    spec("SMTP_TLS", &[], false),
    spec("UPLOAD_FOLDER", &[], false),
    spec("MAX_CONTENT_LENGTH", &[], false),
    spec("GATEHOUSE_BODY_LIMIT", &[], false),
    spec("GATEHOUSE_REQUEST_TIMEOUT", &[], false),
    spec("GATEHOUSE_HEADER_TIMEOUT", &[], false),
    spec("GATEHOUSE_SHUTDOWN_TIMEOUT", &[], false),
    spec("GATEHOUSE_LOG", &[], false),
    spec("GATEHOUSE_LOG_FORMAT", &[], false),
];

/// The TOML key of a setting: its name in lower case without the `GATEHOUSE_` prefix.
fn toml_key(name: &str) -> String {
    name.strip_prefix("GATEHOUSE_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// The raw inputs of a load: environment variables, an optional TOML file, a `.env` file.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The process environment (or a test's stand-in for it).
    pub env: HashMap<String, String>,
    /// Path of the TOML file (`--config` or `GATEHOUSE_CONFIG`).
    pub config_file: Option<PathBuf>,
    /// Path of a `.env` file to read in development; `None` reads nothing.
    pub dotenv_file: Option<PathBuf>,
}

impl Sources {
    /// The real process environment, `--config`, and `./.env`.
    pub fn from_process(config_file: Option<PathBuf>) -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        let config_file = config_file.or_else(|| env.get("GATEHOUSE_CONFIG").map(PathBuf::from));
        Self {
            env,
            config_file,
            dotenv_file: Some(PathBuf::from(".env")),
        }
    }
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

/// Raw string values with their origins, before typing.
struct Raw {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl Raw {
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }
}

fn collect_raw(sources: &Sources, errors: &mut Vec<ConfigError>) -> Raw {
    let mut values = BTreeMap::new();

    if let Some(path) = &sources.config_file {
        match read_toml(path) {
            Ok(table) => {
                for (key, value) in table {
                    match SPECS.iter().find(|s| toml_key(s.name) == key) {
                        Some(spec) => match toml_value_to_string(&value) {
                            Some(v) => {
                                values.insert(spec.name, (v, Origin::File));
                            }
                            None => errors.push(ConfigError {
                                setting: format!("{} (key `{key}`)", path.display()),
                                message: "expected a string, number, boolean or list of strings"
                                    .into(),
                            }),
                        },
                        None => errors.push(ConfigError {
                            setting: format!("{} (key `{key}`)", path.display()),
                            message:
                                "unknown setting; see the configuration reference in README.md"
                                    .into(),
                        }),
                    }
                }
            }
            Err(message) => errors.push(ConfigError {
                setting: "GATEHOUSE_CONFIG".into(),
                message,
            }),
        }
    }

    let production_in_env = ["GATEHOUSE_ENV", "FLASK_ENV"].iter().any(|k| {
        sources
            .env
            .get(*k)
            .is_some_and(|v| v.trim() == "production")
    });
    let mut dotenv = HashMap::new();
    if !production_in_env {
        if let Some(path) = sources.dotenv_file.as_deref().filter(|p| p.exists()) {
            match dotenvy::from_path_iter(path) {
                Ok(iter) => {
                    for item in iter {
                        match item {
                            Ok((k, v)) => {
                                dotenv.insert(k, v);
                            }
                            Err(e) => errors.push(ConfigError {
                                setting: path.display().to_string(),
                                message: format!("cannot be parsed: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => errors.push(ConfigError {
                    setting: path.display().to_string(),
                    message: format!("cannot be read: {e}"),
                }),
            }
        }
    }

    // The .env file sits below the real environment: apply it first.
    for (layer, origin) in [(&dotenv, Origin::DotEnv), (&sources.env, Origin::Env)] {
        for spec in SPECS {
            if let Some(v) = lookup(spec, layer, errors) {
                values.insert(spec.name, (v, origin));
            }
        }
    }
    Raw { values }
}

/// Finds a setting in one layer: the name, then its `_FILE` variant, then each alias.
fn lookup(
    spec: &Spec,
    layer: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    for name in std::iter::once(&spec.name).chain(spec.aliases) {
        if let Some(v) = layer.get(*name).filter(|v| !v.is_empty()) {
            return Some(v.clone());
        }
        if spec.secret {
            let file_var = format!("{name}_FILE");
            if let Some(path) = layer.get(&file_var).filter(|v| !v.is_empty()) {
                return match std::fs::read_to_string(path) {
                    Ok(content) => Some(content.trim_end_matches(['\n', '\r']).to_owned()),
                    Err(e) => {
                        errors.push(ConfigError {
                            setting: file_var,
                            message: format!("cannot read the file it names: {e}"),
                        });
                        None
                    }
                };
            }
        }
    }
    None
}

fn read_toml(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))
}

fn toml_value_to_string(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}

/// Parses a byte size: a plain number of bytes, or a number with `K`, `KiB`, `M`, `MiB`, `G`,
/// `GiB` (powers of 1024, as the seeds' `16 * 1024 * 1024`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses a duration in seconds (`30`) or with a unit (`30s`, `5m`, `500ms`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" | "min" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Typed reading of raw values; every failure is recorded, a default is used to keep going.
struct Reader<'a> {
    raw: &'a Raw,
    errors: &'a mut Vec<ConfigError>,
}

impl Reader<'_> {
    fn parse<T>(
        &mut self,
        name: &str,
        default: T,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> T {
        match self.raw.get(name) {
            None => default,
            Some(v) => f(v).unwrap_or_else(|| {
                self.errors.push(ConfigError {
                    setting: name.into(),
                    message: format!("expected {expected}, got `{v}`"),
                });
                default
            }),
        }
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            setting: name.into(),
            message: message.into(),
        });
    }
}

impl Settings {
    /// Builds the settings from `sources`, or returns every invalid value at once.
    pub fn load(sources: &Sources) -> Result<Self, ConfigErrors> {
        Self::load_with_origins(sources).map(|(s, _)| s)
    }

    /// Like [`Settings::load`], also telling where each configured value came from.
    pub fn load_with_origins(
        sources: &Sources,
    ) -> Result<(Self, BTreeMap<&'static str, Origin>), ConfigErrors> {
        let mut errors = Vec::new();
        let raw = collect_raw(sources, &mut errors);
        let mut r = Reader {
            raw: &raw,
            errors: &mut errors,
        };

        let env = r.parse(
            "GATEHOUSE_ENV",
            Environment::Development,
            "`development` or `production`",
            |v| match v.trim().to_ascii_lowercase().as_str() {
                "development" | "dev" => Some(Environment::Development),
                "production" | "prod" => Some(Environment::Production),
                _ => None,
            },
        );
        let listen = r.parse(
            "GATEHOUSE_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "an address such as `127.0.0.1:8080` or `0.0.0.0:8080`",
            |v| v.trim().parse().ok(),
        );
        let default_public = Url::parse(&format!("http://{listen}")).ok();
        let public_url = match raw.get("GATEHOUSE_PUBLIC_URL") {
            None => default_public,
            Some(v) => match parse_public_url(v) {
                Ok(u) => Some(u),
                Err(m) => {
                    r.fail("GATEHOUSE_PUBLIC_URL", m);
                    default_public
                }
            },
        };

        let (secret_key, secret_key_generated) = match raw.get("GATEHOUSE_SECRET_KEY") {
            Some(v) => (SecretString::from(v.to_owned()), false),
            None => (generate_secret(), true),
        };

        let data_dir = r.parse(
            "GATEHOUSE_DATA_DIR",
            PathBuf::from("./gatehouse-data"),
            "a directory path",
            |v| Some(PathBuf::from(v)),
        );
        let default_db = format!("sqlite://{}/gatehouse.db", data_dir.display());
        let database_url = raw
            .get("GATEHOUSE_DATABASE_URL")
            .unwrap_or(&default_db)
            .to_owned();
        let db_scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p));
        if !db_scheme_ok {
            r.fail(
                "GATEHOUSE_DATABASE_URL",
                "must start with `sqlite://` or `postgres://`",
            );
        }
        let database_max_connections = r.parse(
            "GATEHOUSE_DATABASE_MAX_CONNECTIONS",
            10,
            "a number of connections between 1 and 1000",
            |v| v.trim().parse().ok().filter(|n| (1..=1000).contains(n)),
        );
        let redis_url = raw.get("GATEHOUSE_REDIS_URL").map(str::to_owned);
        if let Some(u) = &redis_url {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                r.fail(
                    "GATEHOUSE_REDIS_URL",
                    "must start with `redis://` or `rediss://`",
                );
            }
        }

        let redis_prefix = raw
            .get("GATEHOUSE_REDIS_PREFIX")
            .unwrap_or("gatehouse:")
            .to_owned();
        if redis_prefix.is_empty()
            || redis_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            r.fail(
                "GATEHOUSE_REDIS_PREFIX",
                "expected a key prefix without spaces, such as `gatehouse:`",
            );
        }
        let trusted_proxies_raw = raw
            .get("GATEHOUSE_TRUSTED_PROXIES")
            .map(split_list)
            .unwrap_or_default();
        let trusted_proxies = match TrustedProxies::parse(&trusted_proxies_raw.join(",")) {
            Ok(t) => t,
            Err(e) => {
                r.fail(
                    "GATEHOUSE_TRUSTED_PROXIES",
                    format!("{e}; expected CIDRs or addresses such as `10.0.0.0/8, 127.0.0.1`"),
                );
                TrustedProxies::default()
            }
        };

        let cors_origins = raw
            .get("GATEHOUSE_CORS_ORIGINS")
            .map(split_list)
            .unwrap_or_default();
        let cors_allow_credentials = r.parse(
            "GATEHOUSE_CORS_ALLOW_CREDENTIALS",
            true,
            "`true` or `false`",
            parse_bool,
        );
        if let Err(e) = CorsPolicy::new(&cors_origins, false) {
            r.fail("GATEHOUSE_CORS_ORIGINS", e.to_string());
        }

        let admin_email = raw.get("GATEHOUSE_ADMIN_EMAIL").map(str::to_owned);
        if let Some(e) = &admin_email {
            if let Err(m) = crate::identity::Email::parse(e) {
                r.fail("GATEHOUSE_ADMIN_EMAIL", m.to_string());
            }
        }
        let allowed_domains: Vec<String> = raw
            .get("GATEHOUSE_ALLOWED_DOMAINS")
            .map(split_list)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
            .collect();
        if allowed_domains
            .iter()
            .any(|d| !d.contains('.') || d.contains('@') || d.contains('*'))
        {
            r.fail(
                "GATEHOUSE_ALLOWED_DOMAINS",
                "expected domain names such as `example.com` (no wildcards)",
            );
        }
        let session_idle_timeout = r.parse(
            "GATEHOUSE_SESSION_IDLE_TIMEOUT",
            Duration::from_secs(24 * 3600),
            "a duration such as `24h`",
            |v| parse_duration(v).filter(|d| !d.is_zero()),
        );
        let session_lifetime = r.parse(
            "GATEHOUSE_SESSION_LIFETIME",
            Duration::from_secs(7 * 24 * 3600),
            "a duration such as `168h`",
            |v| parse_duration(v).filter(|d| !d.is_zero()),
        );
        let max_sessions_per_user = r.parse(
            "GATEHOUSE_MAX_SESSIONS_PER_USER",
            0,
            "a number (0 for no limit)",
            |v| v.trim().parse().ok(),
        );
        let rate = |r: &mut Reader<'_>, name: &str, default: Rate| {
            r.parse(
                name,
                Some(default),
                "a rate such as `100/min`, `5/min`, `3/15min`, or `off`",
                parse_rate,
            )
        };
        let rate_limit = rate(
            &mut r,
            "GATEHOUSE_RATE_LIMIT",
            Rate::new(100, Duration::from_secs(60)),
        );
        let account_rate_limit = rate(
            &mut r,
            "GATEHOUSE_ACCOUNT_RATE_LIMIT",
            Rate::new(300, Duration::from_secs(60)),
        );
        let api_rate_limit = rate(
            &mut r,
            "GATEHOUSE_API_RATE_LIMIT",
            Rate::new(600, Duration::from_secs(60)),
        );
        let signin_rate_limit = rate(
            &mut r,
            "GATEHOUSE_SIGNIN_RATE_LIMIT",
            Rate::new(5, Duration::from_secs(60)),
        );
        let signin_email_rate_limit = rate(
            &mut r,
            "GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT",
            Rate::new(5, Duration::from_secs(60)),
        );
        let magic_link_rate_limit = rate(
            &mut r,
            "GATEHOUSE_MAGIC_LINK_RATE_LIMIT",
            Rate::new(3, Duration::from_secs(15 * 60)),
        );
        let policy = |r: &mut Reader<'_>, name: &str, deny: bool| {
            r.parse(name, deny, "`allow` or `deny`", |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "allow" => Some(false),
                    "deny" => Some(true),
                    _ => None,
                }
            })
        };
        let rate_limit_deny_on_store_error =
            policy(&mut r, "GATEHOUSE_RATE_LIMIT_ON_STORE_ERROR", false);
        let signin_rate_limit_deny_on_store_error =
            policy(&mut r, "GATEHOUSE_SIGNIN_RATE_LIMIT_ON_STORE_ERROR", true);
        let owasp = crate::identity::passwords::HashParams::default();
        let argon2 = crate::identity::passwords::HashParams {
            memory_kib: r.parse(
                "GATEHOUSE_ARGON2_MEMORY_KIB",
                owasp.memory_kib,
                "a memory cost in KiB between 8192 and 4194304",
                |v| {
                    v.trim()
                        .parse()
                        .ok()
                        .filter(|n| (8 * 1024..=4 * 1024 * 1024).contains(n))
                },
            ),
            iterations: r.parse(
                "GATEHOUSE_ARGON2_ITERATIONS",
                owasp.iterations,
                "a number of passes between 1 and 100",
                |v| v.trim().parse().ok().filter(|n| (1..=100).contains(n)),
            ),
            parallelism: r.parse(
                "GATEHOUSE_ARGON2_PARALLELISM",
                owasp.parallelism,
                "a number of lanes between 1 and 64",
                |v| v.trim().parse().ok().filter(|n| (1..=64).contains(n)),
            ),
        };
        let default_policy = crate::identity::password_policy::PasswordPolicy::default();
        let min_length = r.parse(
            "GATEHOUSE_PASSWORD_MIN_LENGTH",
            default_policy.min_length,
            "a length between 8 and 128",
            |v| v.trim().parse().ok().filter(|n| (8..=128).contains(n)),
        );
        let max_length = r.parse(
            "GATEHOUSE_PASSWORD_MAX_LENGTH",
            default_policy.max_length,
            "a length between 64 and 1024",
            |v| v.trim().parse().ok().filter(|n| (64..=1024).contains(n)),
        );
        let require_classes = r.parse(
            "GATEHOUSE_PASSWORD_REQUIRE_CLASSES",
            true,
            "`true` or `false`",
            parse_bool,
        );
        let password_policy = crate::identity::password_policy::PasswordPolicy {
            min_length,
            max_length,
            require_upper: require_classes,
            require_lower: require_classes,
            require_digit: require_classes,
            require_special: require_classes,
        };
        let password_reset_lifetime = r.parse(
            "GATEHOUSE_PASSWORD_RESET_LIFETIME",
            Duration::from_secs(24 * 3600),
            "a duration such as `24h`",
            |v| parse_duration(v).filter(|d| !d.is_zero() && d.as_secs() <= 7 * 24 * 3600),
        );
        let throttle_default = crate::identity::throttle::ThrottleConfig::default();
        let throttle = crate::identity::throttle::ThrottleConfig {
            lock_threshold: r.parse(
                "GATEHOUSE_LOCKOUT_THRESHOLD",
                throttle_default.lock_threshold,
                "a number of failures between 1 and 1000",
                |v| v.trim().parse().ok().filter(|n| (1..=1000).contains(n)),
            ),
            lock_duration: r.parse(
                "GATEHOUSE_LOCKOUT_DURATION",
                throttle_default.lock_duration,
                "a duration such as `15m`",
                |v| parse_duration(v).filter(|d| !d.is_zero()),
            ),
        };
        let default_mfa_roles = match env {
            Environment::Production => vec![crate::identity::Role::Admin],
            Environment::Development => Vec::new(),
        };
        let mfa_required_roles = r.parse(
            "GATEHOUSE_MFA_REQUIRED_ROLES",
            default_mfa_roles,
            "roles separated by commas (`admin`, `manager`, `user`), or `none`",
            |v| {
                if v.trim().eq_ignore_ascii_case("none") {
                    return Some(Vec::new());
                }
                split_list(v).iter().map(|role| role.parse().ok()).collect()
            },
        );
        let access_token_lifetime = r.parse(
            "GATEHOUSE_ACCESS_TOKEN_LIFETIME",
            Duration::from_secs(15 * 60),
            "a duration between `1m` and `1h`, such as `15m`",
            |v| parse_duration(v).filter(|d| (60..=3600).contains(&d.as_secs())),
        );
        let refresh_token_lifetime = r.parse(
            "GATEHOUSE_REFRESH_TOKEN_LIFETIME",
            Duration::from_secs(30 * 24 * 3600),
            "a duration such as `30d` or `720h`",
            |v| parse_duration(v).filter(|d| d.as_secs() >= 3600),
        );
        let metrics_listen = r.parse(
            "GATEHOUSE_METRICS_LISTEN",
            None,
            "an address such as `127.0.0.1:9090`",
            |v| v.trim().parse().ok().map(Some),
        );

        let smtp_tls = r.parse(
            "SMTP_TLS",
            SmtpTls::Starttls,
            "`none`, `starttls` or `tls`",
            |v| match v.trim().to_ascii_lowercase().as_str() {
                "none" | "off" | "false" => Some(SmtpTls::None),
                "starttls" => Some(SmtpTls::Starttls),
                "tls" | "ssl" | "smtps" => Some(SmtpTls::Tls),
                _ => None,
            },
        );
        let default_port = match smtp_tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        };
        let smtp = SmtpSettings {
            host: raw.get("SMTP_HOST").map(str::to_owned),
            port: r.parse("SMTP_PORT", default_port, "a port number", |v| {
                v.trim().parse().ok()
            }),
            username: raw.get("SMTP_USERNAME").map(str::to_owned),
            password: raw
                .get("SMTP_PASSWORD")
                .map(|v| SecretString::from(v.to_owned())),
            from: raw
                .get("SMTP_FROM")
                .map(str::to_owned)
                .unwrap_or_else(|| "Gatehouse <gatehouse@localhost>".to_owned()),
            tls: smtp_tls,
        };

        let upload_folder = r.parse(
            "UPLOAD_FOLDER",
            data_dir.join("uploads"),
            "a directory path",
            |v| Some(PathBuf::from(v)),
        );
        let max_content_length = r.parse(
            "MAX_CONTENT_LENGTH",
            16 << 20,
            "a size such as `16777216` or `16MiB`",
            |v| parse_size(v).filter(|n| *n > 0),
        );
        let body_limit = r.parse(
            "GATEHOUSE_BODY_LIMIT",
            1 << 20,
            "a size such as `1MiB`",
            |v| {
                parse_size(v)
                    .filter(|n| *n > 0)
                    .and_then(|n| usize::try_from(n).ok())
            },
        );
        let request_timeout = r.parse(
            "GATEHOUSE_REQUEST_TIMEOUT",
            Duration::from_secs(30),
            "a duration such as `30s`",
            |v| parse_duration(v).filter(|d| !d.is_zero()),
        );
        let header_timeout = r.parse(
            "GATEHOUSE_HEADER_TIMEOUT",
            Duration::from_secs(10),
            "a duration such as `10s`",
            |v| parse_duration(v).filter(|d| !d.is_zero()),
        );
        let shutdown_timeout = r.parse(
            "GATEHOUSE_SHUTDOWN_TIMEOUT",
            Duration::from_secs(30),
            "a duration such as `30s`",
            parse_duration,
        );
        let log_filter = raw.get("GATEHOUSE_LOG").unwrap_or("info").to_owned();
        let default_format = match env {
            Environment::Production => LogFormat::Json,
            Environment::Development => LogFormat::Text,
        };
        let log_format = r.parse(
            "GATEHOUSE_LOG_FORMAT",
            default_format,
            "`json` or `text`",
            |v| match v.trim().to_ascii_lowercase().as_str() {
                "json" => Some(LogFormat::Json),
                "text" | "pretty" => Some(LogFormat::Text),
                _ => None,
            },
        );

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let origins = raw.values.iter().map(|(k, (_, o))| (*k, *o)).collect();
        let settings = Self {
            env,
            listen,
            public_url: public_url.ok_or_else(|| {
                ConfigErrors(vec![ConfigError {
                    setting: "GATEHOUSE_PUBLIC_URL".into(),
                    message: "set it to the https:// address users reach Gatehouse at".into(),
                }])
            })?,
            secret_key,
            previous_secret_key: raw
                .get("GATEHOUSE_SECRET_KEY_PREVIOUS")
                .map(|v| SecretString::from(v.to_owned())),
            secret_key_generated,
            data_dir,
            database_url: SecretString::from(database_url),
            database_max_connections,
            redis_url: redis_url.map(SecretString::from),
            redis_prefix,
            trusted_proxies,
            trusted_proxies_raw,
            cors_origins,
            cors_allow_credentials,
            admin_email,
            allowed_domains,
            session_idle_timeout,
            session_lifetime,
            max_sessions_per_user,
            rate_limit,
            rate_limit_deny_on_store_error,
            account_rate_limit,
            api_rate_limit,
            signin_rate_limit,
            signin_rate_limit_deny_on_store_error,
            signin_email_rate_limit,
            magic_link_rate_limit,
            argon2,
            password_policy,
            password_reset_lifetime,
            throttle,
            mfa_required_roles,
            access_token_lifetime,
            refresh_token_lifetime,
            metrics_listen,
            smtp,
            upload_folder,
            max_content_length,
            body_limit,
            request_timeout,
            header_timeout,
            shutdown_timeout,
            log_filter,
            log_format,
        };
        Ok((settings, origins))
    }

    /// True in production mode.
    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    /// Everything production mode refuses, each naming the variable to set. `serve` refuses to
    /// start in production when this is not empty; `config check` prints it.
    pub fn production_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |setting: &str, message: String| {
            problems.push(ConfigError {
                setting: setting.into(),
                message,
            });
        };
        if self.secret_key_generated {
            problem(
                "GATEHOUSE_SECRET_KEY",
                format!(
                    "is not set: set it (or GATEHOUSE_SECRET_KEY_FILE) to at least {MIN_SECRET_KEY_BYTES} random bytes, e.g. the output of `openssl rand -base64 48`"
                ),
            );
        } else if self.secret_key.expose_secret().len() < MIN_SECRET_KEY_BYTES {
            problem(
                "GATEHOUSE_SECRET_KEY",
                format!(
                    "is {} bytes long: set it to at least {MIN_SECRET_KEY_BYTES} random bytes, e.g. the output of `openssl rand -base64 48`",
                    self.secret_key.expose_secret().len()
                ),
            );
        }
        if self.public_url.scheme() != "https" {
            problem(
                "GATEHOUSE_PUBLIC_URL",
                format!(
                    "is `{}`: set it to the https:// address users reach Gatehouse at",
                    self.public_url.as_str().trim_end_matches('/')
                ),
            );
        }
        match &self.smtp.host {
            None => problem(
                "SMTP_HOST",
                "is not set: sign-in links are sent by mail; set SMTP_HOST (and SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_TLS)".into(),
            ),
            Some(host) if self.smtp.tls == SmtpTls::None && !is_loopback_host(host) => problem(
                "SMTP_TLS",
                format!("is `none` for the remote relay `{host}`: set SMTP_TLS=starttls or SMTP_TLS=tls (plain text is only allowed to a relay on this host)"),
            ),
            Some(_) => {}
        }
        if self.cors_allow_credentials && self.cors_origins.iter().any(|o| o == "*") {
            problem(
                "GATEHOUSE_CORS_ORIGINS",
                "is `*` while GATEHOUSE_CORS_ALLOW_CREDENTIALS is true: list the allowed origins, or set GATEHOUSE_CORS_ALLOW_CREDENTIALS=false".into(),
            );
        }
        problems
    }

    /// Advice that does not stop production (weak but sometimes deliberate choices).
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut warnings = Vec::new();
        if let Some(db) = postgres_url(self.database_url.expose_secret()) {
            let loopback = db.host_str().is_some_and(is_loopback_host);
            let sslmode = db
                .query_pairs()
                .find(|(k, _)| k == "sslmode")
                .map(|(_, v)| v.into_owned());
            let strict = matches!(
                sslmode.as_deref(),
                Some("require" | "verify-ca" | "verify-full")
            );
            if !loopback && !strict {
                warnings.push(ConfigError {
                    setting: "GATEHOUSE_DATABASE_URL".into(),
                    message: "PostgreSQL is not on this host and the URL does not set `sslmode=require` (or verify-ca / verify-full): add it".into(),
                });
            }
            if self.redis_url.is_none() {
                warnings.push(ConfigError {
                    setting: "GATEHOUSE_REDIS_URL".into(),
                    message: "PostgreSQL without Redis: rate limits are counted per instance; set GATEHOUSE_REDIS_URL when running several instances".into(),
                });
            }
        }
        if let Some(redis) = &self.redis_url {
            if let Ok(u) = Url::parse(redis.expose_secret()) {
                let loopback = u.host_str().is_some_and(is_loopback_host);
                if !loopback && u.scheme() != "rediss" && u.password().is_none() {
                    warnings.push(ConfigError {
                        setting: "GATEHOUSE_REDIS_URL".into(),
                        message: "Redis is not on this host and uses neither TLS (`rediss://`) nor a password".into(),
                    });
                }
            }
        }
        if self.secret_key_generated && !self.is_production() {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_SECRET_KEY".into(),
                message: format!(
                    "is not set: the development key kept in the data directory ({}) is used; production needs this set",
                    crate::app::DEVELOPMENT_KEY_FILE
                ),
            });
        }
        warnings
    }

    /// The effective configuration as (name, value) pairs with secrets redacted.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        fn opt(v: &Option<String>) -> String {
            v.clone().unwrap_or_else(|| "(not set)".into())
        }
        fn secret(set: bool) -> String {
            if set { "[redacted]" } else { "(not set)" }.into()
        }
        vec![
            ("GATEHOUSE_ENV", self.env.as_str().into()),
            ("GATEHOUSE_LISTEN", self.listen.to_string()),
            (
                "GATEHOUSE_PUBLIC_URL",
                self.public_url.as_str().trim_end_matches('/').into(),
            ),
            (
                "GATEHOUSE_SECRET_KEY",
                if self.secret_key_generated {
                    "(not set: random for this run)".into()
                } else {
                    secret(true)
                },
            ),
            (
                "GATEHOUSE_SECRET_KEY_PREVIOUS",
                secret(self.previous_secret_key.is_some()),
            ),
            ("GATEHOUSE_DATA_DIR", self.data_dir.display().to_string()),
            (
                "GATEHOUSE_DATABASE_URL",
                redact_url(self.database_url.expose_secret()),
            ),
            (
                "GATEHOUSE_DATABASE_MAX_CONNECTIONS",
                self.database_max_connections.to_string(),
            ),
            (
                "GATEHOUSE_REDIS_URL",
                self.redis_url
                    .as_ref()
                    .map(|u| redact_url(u.expose_secret()))
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            ("GATEHOUSE_REDIS_PREFIX", self.redis_prefix.clone()),
            (
                "GATEHOUSE_TRUSTED_PROXIES",
                self.trusted_proxies_raw.join(","),
            ),
            ("GATEHOUSE_CORS_ORIGINS", self.cors_origins.join(",")),
            (
                "GATEHOUSE_CORS_ALLOW_CREDENTIALS",
                self.cors_allow_credentials.to_string(),
            ),
            ("GATEHOUSE_ADMIN_EMAIL", opt(&self.admin_email)),
            ("GATEHOUSE_ALLOWED_DOMAINS", self.allowed_domains.join(",")),
            (
                "GATEHOUSE_SESSION_IDLE_TIMEOUT",
                format!("{}s", self.session_idle_timeout.as_secs()),
            ),
            (
                "GATEHOUSE_SESSION_LIFETIME",
                format!("{}s", self.session_lifetime.as_secs()),
            ),
            (
                "GATEHOUSE_MAX_SESSIONS_PER_USER",
                self.max_sessions_per_user.to_string(),
            ),
            ("GATEHOUSE_RATE_LIMIT", show_rate(self.rate_limit)),
            (
                "GATEHOUSE_RATE_LIMIT_ON_STORE_ERROR",
                show_policy(self.rate_limit_deny_on_store_error),
            ),
            ("GATEHOUSE_API_RATE_LIMIT", show_rate(self.api_rate_limit)),
            (
                "GATEHOUSE_SIGNIN_RATE_LIMIT",
                show_rate(self.signin_rate_limit),
            ),
            (
                "GATEHOUSE_SIGNIN_RATE_LIMIT_ON_STORE_ERROR",
                show_policy(self.signin_rate_limit_deny_on_store_error),
            ),
            (
                "GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT",
                show_rate(self.signin_email_rate_limit),
            ),
            (
                "GATEHOUSE_MAGIC_LINK_RATE_LIMIT",
                show_rate(self.magic_link_rate_limit),
            ),
            (
                "GATEHOUSE_ARGON2_MEMORY_KIB",
                self.argon2.memory_kib.to_string(),
            ),
            (
                "GATEHOUSE_ARGON2_ITERATIONS",
                self.argon2.iterations.to_string(),
            ),
            (
                "GATEHOUSE_ARGON2_PARALLELISM",
                self.argon2.parallelism.to_string(),
            ),
            (
                "GATEHOUSE_PASSWORD_MIN_LENGTH",
                self.password_policy.min_length.to_string(),
            ),
            (
                "GATEHOUSE_PASSWORD_MAX_LENGTH",
                self.password_policy.max_length.to_string(),
            ),
            (
                "GATEHOUSE_PASSWORD_REQUIRE_CLASSES",
                self.password_policy.require_upper.to_string(),
            ),
            (
                "GATEHOUSE_PASSWORD_RESET_LIFETIME",
                format!("{}s", self.password_reset_lifetime.as_secs()),
            ),
            (
                "GATEHOUSE_LOCKOUT_THRESHOLD",
                self.throttle.lock_threshold.to_string(),
            ),
            (
                "GATEHOUSE_LOCKOUT_DURATION",
                format!("{}s", self.throttle.lock_duration.as_secs()),
            ),
            (
                "GATEHOUSE_MFA_REQUIRED_ROLES",
                if self.mfa_required_roles.is_empty() {
                    "none".into()
                } else {
                    self.mfa_required_roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            (
                "GATEHOUSE_ACCESS_TOKEN_LIFETIME",
                format!("{}s", self.access_token_lifetime.as_secs()),
            ),
            (
                "GATEHOUSE_REFRESH_TOKEN_LIFETIME",
                format!("{}s", self.refresh_token_lifetime.as_secs()),
            ),
            (
                "GATEHOUSE_METRICS_LISTEN",
                self.metrics_listen
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            ("SMTP_HOST", opt(&self.smtp.host)),
            ("SMTP_PORT", self.smtp.port.to_string()),
            ("SMTP_USERNAME", opt(&self.smtp.username)),
            ("SMTP_PASSWORD", secret(self.smtp.password.is_some())),
            ("SMTP_FROM", self.smtp.from.clone()),
            (
                "SMTP_TLS",
                match self.smtp.tls {
                    SmtpTls::None => "none",
                    SmtpTls::Starttls => "starttls",
                    SmtpTls::Tls => "tls",
                }
                .into(),
            ),
            ("UPLOAD_FOLDER", self.upload_folder.display().to_string()),
            ("MAX_CONTENT_LENGTH", self.max_content_length.to_string()),
            ("GATEHOUSE_BODY_LIMIT", self.body_limit.to_string()),
            (
                "GATEHOUSE_REQUEST_TIMEOUT",
                format!("{}s", self.request_timeout.as_secs()),
            ),
            (
                "GATEHOUSE_HEADER_TIMEOUT",
                format!("{}s", self.header_timeout.as_secs()),
            ),
            (
                "GATEHOUSE_SHUTDOWN_TIMEOUT",
                format!("{}s", self.shutdown_timeout.as_secs()),
            ),
            ("GATEHOUSE_LOG", self.log_filter.clone()),
            (
                "GATEHOUSE_LOG_FORMAT",
                match self.log_format {
                    LogFormat::Json => "json",
                    LogFormat::Text => "text",
                }
                .into(),
            ),
        ]
    }

    /// The CORS policy these settings describe. A `*` with credentials (refused in production)
    /// falls back to `*` without credentials in development.
    pub fn cors_policy(&self) -> Result<CorsPolicy, gatehouse_security::Error> {
        let wildcard = self.cors_origins.iter().any(|o| o == "*");
        let credentials = self.cors_allow_credentials && !wildcard;
        CorsPolicy::new(&self.cors_origins, credentials)
    }
}

/// A number of events per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (also the burst).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `limit` per `period`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self { limit, period }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period.as_secs())
    }
}

/// Parses `N/period` (`100/min`, `5/60s`, `3/15min`, `10/s`, `1000/h`) or `off` (`Some(None)`).
pub fn parse_rate(s: &str) -> Option<Option<Rate>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let (n, period) = s.split_once('/')?;
    let limit: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(period)?
    } else {
        parse_duration(&format!("1{period}"))?
    };
    (!period.is_zero()).then_some(Some(Rate::new(limit, period)))
}

fn show_rate(rate: Option<Rate>) -> String {
    rate.map_or_else(|| "off".to_owned(), |r| r.to_string())
}

fn show_policy(deny: bool) -> String {
    if deny { "deny" } else { "allow" }.to_owned()
}

fn parse_public_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// address with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not carry a query, fragment or user name".into());
    }
    Ok(url)
}

fn postgres_url(url: &str) -> Option<Url> {
    (url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .then(|| Url::parse(url).ok())
        .flatten()
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL with its password replaced, for display.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[unparseable, redacted]".into(),
    }
}

/// A new random secret key: 48 bytes from the OS, base64.
pub(crate) fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            config_file: None,
            dotenv_file: None,
        }
    }

    fn production_problem_names(pairs: &[(&str, &str)]) -> Vec<String> {
        let settings = Settings::load(&sources(pairs)).unwrap();
        settings
            .production_problems()
            .into_iter()
            .map(|p| p.setting)
            .collect()
    }

    const GOOD_KEY: &str = "0123456789abcdef0123456789abcdef-long-enough";

    #[test]
    fn defaults_are_a_working_development_setup() {
        let s = Settings::load(&sources(&[])).unwrap();
        assert_eq!(s.env, Environment::Development);
        assert!(s.secret_key_generated);
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(
            s.database_url
                .expose_secret()
                .starts_with("sqlite://./gatehouse-data/")
        );
        assert_eq!(s.max_content_length, 16 * 1024 * 1024);
        assert_eq!(s.log_format, LogFormat::Text);
    }

    #[test]
    fn generated_secrets_differ_per_start() {
        let a = Settings::load(&sources(&[])).unwrap();
        let b = Settings::load(&sources(&[])).unwrap();
        assert_ne!(a.secret_key.expose_secret(), b.secret_key.expose_secret());
        assert!(a.secret_key.expose_secret().len() >= MIN_SECRET_KEY_BYTES);
    }

    #[test]
    fn flask_aliases_are_accepted() {
        let s = Settings::load(&sources(&[
            ("FLASK_ENV", "production"),
            ("SECRET_KEY", GOOD_KEY),
            ("SMTP_USER", "mailer"),
            ("DATABASE_URL", "postgres://u@db.internal/app"),
        ]))
        .unwrap();
        assert_eq!(s.env, Environment::Production);
        assert_eq!(s.secret_key.expose_secret(), GOOD_KEY);
        assert_eq!(s.smtp.username.as_deref(), Some("mailer"));
        assert!(s.database_url.expose_secret().starts_with("postgres://"));
    }

    #[test]
    fn the_gatehouse_name_wins_over_an_alias() {
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("SECRET_KEY", "alias-value"),
        ]))
        .unwrap();
        assert_eq!(s.secret_key.expose_secret(), GOOD_KEY);
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{GOOD_KEY}\n")).unwrap();
        let s = Settings::load(&sources(&[(
            "GATEHOUSE_SECRET_KEY_FILE",
            path.to_str().unwrap(),
        )]))
        .unwrap();
        assert_eq!(s.secret_key.expose_secret(), GOOD_KEY);
        assert!(!s.secret_key_generated);
    }

    #[test]
    fn a_missing_secret_file_is_an_error_naming_the_variable() {
        let err = Settings::load(&sources(&[(
            "GATEHOUSE_SECRET_KEY_FILE",
            "/nonexistent/gatehouse/key",
        )]))
        .unwrap_err();
        assert_eq!(err.0[0].setting, "GATEHOUSE_SECRET_KEY_FILE");
    }

    #[test]
    fn every_invalid_value_is_reported_at_once() {
        let err = Settings::load(&sources(&[
            ("GATEHOUSE_LISTEN", "not-an-address"),
            ("GATEHOUSE_ENV", "staging"),
            ("MAX_CONTENT_LENGTH", "lots"),
            ("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("GATEHOUSE_CORS_ORIGINS", "null"),
        ]))
        .unwrap_err();
        let names: Vec<_> = err.0.iter().map(|e| e.setting.as_str()).collect();
        for expected in [
            "GATEHOUSE_LISTEN",
            "GATEHOUSE_ENV",
            "MAX_CONTENT_LENGTH",
            "GATEHOUSE_TRUSTED_PROXIES",
            "GATEHOUSE_CORS_ORIGINS",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
    }

    #[test]
    fn toml_file_sits_between_defaults_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nbody_limit = \"2MiB\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap();
        let mut src = sources(&[("GATEHOUSE_LISTEN", "127.0.0.1:9100")]);
        src.config_file = Some(path);
        let (s, origins) = Settings::load_with_origins(&src).unwrap();
        assert_eq!(s.listen.port(), 9100, "the environment wins over the file");
        assert_eq!(s.body_limit, 2 << 20, "the file wins over the default");
        assert_eq!(s.cors_origins.len(), 2);
        assert_eq!(origins["GATEHOUSE_BODY_LIMIT"], Origin::File);
        assert_eq!(origins["GATEHOUSE_LISTEN"], Origin::Env);
    }

    #[test]
    fn unknown_toml_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(&path, "secret_kye = \"typo\"\n").unwrap();
        let mut src = sources(&[]);
        src.config_file = Some(path);
        let err = Settings::load(&src).unwrap_err();
        assert!(err.0[0].message.contains("unknown setting"));
    }

    #[test]
    fn dotenv_is_read_in_development_below_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "GATEHOUSE_LISTEN=127.0.0.1:7000\nGATEHOUSE_LOG=debug\n",
        )
        .unwrap();
        let mut src = sources(&[("GATEHOUSE_LOG", "warn")]);
        src.dotenv_file = Some(path.clone());
        let s = Settings::load(&src).unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.log_filter, "warn");

        let mut prod = sources(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
        ]);
        prod.dotenv_file = Some(path);
        let s = Settings::load(&prod).unwrap();
        assert_eq!(s.listen.port(), 8080, "production ignores .env");
    }

    #[test]
    fn production_refuses_a_missing_secret_key() {
        let names = production_problem_names(&[
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ]);
        assert_eq!(names, ["GATEHOUSE_SECRET_KEY"]);
    }

    #[test]
    fn production_refuses_a_short_secret_key() {
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_SECRET_KEY", "too-short"),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ]);
        assert_eq!(names, ["GATEHOUSE_SECRET_KEY"]);
    }

    #[test]
    fn production_refuses_a_plain_http_public_url() {
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_PUBLIC_URL", "http://gate.example"),
        ]);
        assert_eq!(names, ["GATEHOUSE_PUBLIC_URL"]);
    }

    #[test]
    fn production_refuses_wildcard_cors_with_credentials() {
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_CORS_ORIGINS", "*"),
        ]);
        assert_eq!(names, ["GATEHOUSE_CORS_ORIGINS"]);
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("GATEHOUSE_CORS_ORIGINS", "*"),
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_CORS_ALLOW_CREDENTIALS", "false"),
        ]);
        assert!(
            names.is_empty(),
            "a public API without credentials is allowed"
        );
    }

    #[test]
    fn a_sound_production_configuration_has_no_problems() {
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("GATEHOUSE_CORS_ORIGINS", "https://app.example"),
            ("SMTP_HOST", "smtp.example"),
        ]);
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn production_refuses_to_run_without_a_mail_transport() {
        let names = production_problem_names(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ]);
        assert_eq!(names, ["SMTP_HOST"]);
    }

    #[test]
    fn production_refuses_plain_text_mail_to_a_remote_relay() {
        let base = [
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("SMTP_TLS", "none"),
        ];
        let remote: Vec<_> = base
            .iter()
            .copied()
            .chain([("SMTP_HOST", "smtp.example")])
            .collect();
        assert_eq!(production_problem_names(&remote), ["SMTP_TLS"]);
        let local: Vec<_> = base
            .iter()
            .copied()
            .chain([("SMTP_HOST", "127.0.0.1")])
            .collect();
        assert!(production_problem_names(&local).is_empty());
    }

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

    #[test]
    fn remote_postgres_without_tls_is_warned_about() {
        let s = Settings::load(&sources(&[(
            "GATEHOUSE_DATABASE_URL",
            "postgres://app@db.internal/app",
        )]))
        .unwrap();
        assert!(
            s.warnings()
                .iter()
                .any(|w| w.message.contains("sslmode=require"))
        );
        let s = Settings::load(&sources(&[(
            "GATEHOUSE_DATABASE_URL",
            "postgres://app@db.internal/app?sslmode=verify-full",
        )]))
        .unwrap();
        assert!(
            !s.warnings()
                .iter()
                .any(|w| w.message.contains("sslmode=require"))
        );
    }

    #[test]
    fn password_settings_are_read_and_bounded() {
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_ARGON2_MEMORY_KIB", "65536"),
            ("GATEHOUSE_PASSWORD_MIN_LENGTH", "8"),
            ("GATEHOUSE_PASSWORD_REQUIRE_CLASSES", "false"),
        ]))
        .unwrap();
        assert_eq!(s.argon2.memory_kib, 65536);
        assert_eq!(s.argon2.iterations, 2);
        assert_eq!(s.password_policy.min_length, 8);
        assert!(!s.password_policy.require_special);
        let err = Settings::load(&sources(&[
            ("GATEHOUSE_ARGON2_MEMORY_KIB", "64"),
            ("GATEHOUSE_PASSWORD_MIN_LENGTH", "4"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("100/min"),
            Some(Some(Rate::new(100, Duration::from_secs(60))))
        );
        assert_eq!(
            parse_rate("3/15min"),
            Some(Some(Rate::new(3, Duration::from_secs(900))))
        );
        assert_eq!(
            parse_rate("10/s"),
            Some(Some(Rate::new(10, Duration::from_secs(1))))
        );
        assert_eq!(parse_rate("off"), Some(None));
        assert_eq!(parse_rate("0/min"), None);
        assert_eq!(parse_rate("lots"), None);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("16777216"), Some(16 << 20));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }
}
