//! Loading: defaults < TOML file < `.env` (development only) < environment, with aliases and
//! `NAME_FILE` variants, then every row of the table reads its value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_security::TrustedProxies;
use secrecy::SecretString;
use url::Url;

use super::table::{self, Setting};
use super::{ConfigError, ConfigErrors, Environment, LogFormat, Settings, SmtpSettings, SmtpTls};

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

/// Raw string values with their origins, before typing.
struct Raw {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// The per-provider OpenID Connect variables (`table::oidc`), which no row declares.
    providers: BTreeMap<String, (String, Origin)>,
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
                    match table::all().find(|row| row.toml_key() == key) {
                        Some(row) => match toml_value_to_string(&value) {
                            Some(v) => {
                                values.insert(row.name, (v, Origin::File));
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
    let mut providers = BTreeMap::new();
    for (layer, origin) in [(&dotenv, Origin::DotEnv), (&sources.env, Origin::Env)] {
        for row in table::all() {
            if let Some(v) = lookup(row, layer, errors) {
                values.insert(row.name, (v, origin));
            }
        }
        for (name, v) in layer {
            if table::oidc::is_provider_variable(name) && !v.is_empty() {
                providers.insert(name.clone(), (v.clone(), origin));
            }
        }
    }
    Raw { values, providers }
}

/// Finds a setting in one layer: the name, then its `_FILE` variant, then each alias.
fn lookup(
    row: &Setting,
    layer: &HashMap<String, String>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    for name in std::iter::once(&row.name).chain(row.aliases) {
        if let Some(v) = layer.get(*name).filter(|v| !v.is_empty()) {
            return Some(v.clone());
        }
        if row.is_secret() {
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
        let mut settings = Self::unread();
        for row in table::all() {
            if let Err(message) = (row.read)(&mut settings, raw.get(row.name)) {
                errors.push(ConfigError {
                    setting: row.name.into(),
                    message,
                });
                // Go on with the default, so that every other problem is found too.
                let _ = (row.read)(&mut settings, None);
            }
        }
        table::oidc::read_providers(&mut settings, &raw.providers, &mut errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let origins = raw.values.iter().map(|(k, (_, o))| (*k, *o)).collect();
        Ok((settings, origins))
    }

    /// The settings before the table is read: placeholders that every row overwrites.
    fn unread() -> Self {
        Self {
            env: Environment::Development,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: Url::parse("http://unread.invalid/").expect("a valid URL"),
            secret_key: SecretString::from(String::new()),
            previous_secret_key: None,
            secret_key_generated: false,
            data_dir: PathBuf::new(),
            database_url: SecretString::from(String::new()),
            database_max_connections: 0,
            redis_url: None,
            redis_prefix: String::new(),
            trusted_proxies: TrustedProxies::default(),
            trusted_proxies_raw: Vec::new(),
            cors_origins: Vec::new(),
            cors_allow_credentials: false,
            admin_email: None,
            allowed_domains: Vec::new(),
            oidc_provider_names: Vec::new(),
            oidc_providers: Vec::new(),
            upstream_identity: Default::default(),
            sign_in_link_lifetime: Duration::ZERO,
            session_idle_timeout: Duration::ZERO,
            session_lifetime: Duration::ZERO,
            max_sessions_per_user: 0,
            rate_limit: None,
            rate_limit_deny_on_store_error: false,
            account_rate_limit: None,
            api_rate_limit: None,
            signin_rate_limit: None,
            signin_rate_limit_deny_on_store_error: false,
            signin_email_rate_limit: None,
            magic_link_rate_limit: None,
            argon2: Default::default(),
            hashing: Default::default(),
            password_policy: Default::default(),
            password_reset_lifetime: Duration::ZERO,
            throttle: Default::default(),
            mfa_required_roles: Vec::new(),
            access_token_lifetime: Duration::ZERO,
            signing_key_rotation: None,
            refresh_token_lifetime: Duration::ZERO,
            metrics_listen: None,
            smtp: SmtpSettings {
                host: None,
                port: 0,
                username: None,
                password: None,
                from: String::new(),
                tls: SmtpTls::None,
            },
            upload_folder: PathBuf::new(),
            max_content_length: 0,
            body_limit: 0,
            request_timeout: Duration::ZERO,
            database_acquire_timeout: Duration::ZERO,
            header_timeout: Duration::ZERO,
            shutdown_timeout: Duration::ZERO,
            log_filter: String::new(),
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIN_SECRET_KEY_BYTES;
    use crate::config::testing::{GOOD_KEY, sources};
    use secrecy::ExposeSecret as _;

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
    fn lifetimes_default_to_asvs_level_2_and_the_seeds_values_are_settings() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let s = Settings::load(&sources(&[])).unwrap();
        assert_eq!(s.sign_in_link_lifetime, minutes(10));
        assert_eq!(s.password_reset_lifetime, minutes(60));
        assert_eq!(s.session_idle_timeout, minutes(30));
        assert_eq!(s.session_lifetime, minutes(12 * 60));
        let seeds = Settings::load(&sources(&[
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "15m"),
            ("GATEHOUSE_PASSWORD_RESET_LIFETIME", "24h"),
            ("GATEHOUSE_SESSION_IDLE_TIMEOUT", "24h"),
            ("GATEHOUSE_SESSION_LIFETIME", "168h"),
        ]))
        .unwrap();
        assert_eq!(seeds.sign_in_link_lifetime, minutes(15));
        assert_eq!(seeds.password_reset_lifetime, minutes(24 * 60));
        assert_eq!(seeds.session_idle_timeout, minutes(24 * 60));
        assert_eq!(seeds.session_lifetime, minutes(7 * 24 * 60));
    }

    #[test]
    fn link_lifetimes_are_bounded() {
        for (name, value) in [
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "30s"),
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "61m"),
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "0"),
            ("GATEHOUSE_PASSWORD_RESET_LIFETIME", "59s"),
            ("GATEHOUSE_PASSWORD_RESET_LIFETIME", "8d"),
        ] {
            let err = Settings::load(&sources(&[(name, value)])).unwrap_err();
            assert_eq!(err.0[0].setting, name, "{value}");
            assert!(err.0[0].message.contains("a duration from"), "{err}");
        }
        for (name, value) in [
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "1m"),
            ("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "1h"),
            ("GATEHOUSE_PASSWORD_RESET_LIFETIME", "7d"),
        ] {
            assert!(
                Settings::load(&sources(&[(name, value)])).is_ok(),
                "{name}={value}"
            );
        }
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
    fn the_database_acquire_timeout_must_be_shorter_than_the_request_timeout() {
        let s = Settings::load(&sources(&[])).unwrap();
        assert_eq!(s.database_acquire_timeout, Duration::from_secs(5));
        let s = Settings::load(&sources(&[("GATEHOUSE_REQUEST_TIMEOUT", "2s")])).unwrap();
        assert_eq!(
            s.database_acquire_timeout,
            Duration::from_secs(1),
            "half, when unset"
        );
        let errors = Settings::load(&sources(&[
            ("GATEHOUSE_REQUEST_TIMEOUT", "5s"),
            ("GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT", "5s"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            errors.contains("GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT")
                && errors.contains("shorter than GATEHOUSE_REQUEST_TIMEOUT"),
            "{errors}"
        );
    }

    #[test]
    fn password_settings_are_read_and_bounded() {
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_ARGON2_MEMORY_KIB", "65536"),
            ("GATEHOUSE_PASSWORD_MIN_LENGTH", "8"),
            ("GATEHOUSE_PASSWORD_REQUIRE_CLASSES", "true"),
        ]))
        .unwrap();
        assert_eq!(s.argon2.memory_kib, 65536);
        assert_eq!(s.argon2.iterations, 2);
        assert_eq!(s.password_policy.min_length, 8);
        assert!(s.password_policy.require_special && s.password_policy.require_upper);
        let default = Settings::load(&sources(&[])).unwrap();
        assert!(
            !default.password_policy.require_upper && !default.password_policy.require_special,
            "no composition rules by default (ASVS V2.1.9)"
        );
        let err = Settings::load(&sources(&[
            ("GATEHOUSE_ARGON2_MEMORY_KIB", "64"),
            ("GATEHOUSE_PASSWORD_MIN_LENGTH", "4"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }
}
