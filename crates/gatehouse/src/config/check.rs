//! What production mode refuses and what `config check` warns about.
//!
//! # Security
//! Every problem names the variable to set, never its value: a too-short secret key is reported
//! by its length only.

use secrecy::ExposeSecret as _;
use url::Url;

use super::{ConfigError, MIN_SECRET_KEY_BYTES, Settings, SmtpTls};

impl Settings {
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
        if self.trusted_proxies.covers_every_address() {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_TRUSTED_PROXIES".into(),
                message: "trusts every address (`0.0.0.0/0` or `::/0`): any client can name its own address in `X-Forwarded-For` and so escape the per-IP rate limits and sign-in throttles; list only your proxies' addresses".into(),
            });
        }
        if !self.is_production() && !self.listen.ip().is_loopback() {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_LISTEN".into(),
                message: format!(
                    "development mode listens on `{}`, which other machines can reach: development skips production's checks (a kept development key, sign-in links in the log); listen on 127.0.0.1, or set GATEHOUSE_ENV=production",
                    self.listen
                ),
            });
        }
        if let Some(metrics) = self.metrics_listen.filter(|a| !a.ip().is_loopback()) {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_METRICS_LISTEN".into(),
                message: format!(
                    "`/metrics` listens on `{metrics}`, which other machines can reach, and needs no credential: listen on 127.0.0.1, or keep the port behind a firewall"
                ),
            });
        }
        if self.secret_key_generated && !self.is_production() {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_SECRET_KEY".into(),
                message: format!(
                    "Development mode: no GATEHOUSE_SECRET_KEY is set, so a key kept in {} is used; set GATEHOUSE_SECRET_KEY ({MIN_SECRET_KEY_BYTES}+ bytes) before production.",
                    self.data_dir.join(crate::config::DEVELOPMENT_KEY_FILE).display()
                ),
            });
        }
        warnings
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{GOOD_KEY, sources};

    fn production_problem_names(pairs: &[(&str, &str)]) -> Vec<String> {
        let settings = Settings::load(&sources(pairs)).unwrap();
        settings
            .production_problems()
            .into_iter()
            .map(|p| p.setting)
            .collect()
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
    fn a_missing_development_key_is_one_sentence_naming_the_setting() {
        let s = Settings::load(&sources(&[("GATEHOUSE_DATA_DIR", "/srv/gh")])).unwrap();
        let warnings = s.warnings();
        let key = warnings
            .iter()
            .find(|w| w.setting == "GATEHOUSE_SECRET_KEY")
            .expect("a warning about the key");
        let expected = format!(
            "Development mode: no GATEHOUSE_SECRET_KEY is set, so a key kept in {} is used; set GATEHOUSE_SECRET_KEY (32+ bytes) before production.",
            std::path::Path::new("/srv/gh")
                .join(crate::config::DEVELOPMENT_KEY_FILE)
                .display()
        );
        assert_eq!(key.message, expected);
    }

    fn warned_settings(pairs: &[(&str, &str)]) -> Vec<String> {
        let settings = Settings::load(&sources(pairs)).unwrap();
        settings.warnings().into_iter().map(|w| w.setting).collect()
    }

    #[test]
    fn trusting_every_address_as_a_proxy_is_warned_about() {
        for everyone in ["0.0.0.0/0", "::/0", "10.0.0.1, ::/0"] {
            let warned = warned_settings(&[("GATEHOUSE_TRUSTED_PROXIES", everyone)]);
            assert!(
                warned.contains(&"GATEHOUSE_TRUSTED_PROXIES".into()),
                "{everyone}"
            );
        }
        let warned = warned_settings(&[("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8")]);
        assert!(!warned.contains(&"GATEHOUSE_TRUSTED_PROXIES".into()));
    }

    #[test]
    fn development_mode_on_a_non_loopback_listener_is_warned_about() {
        for open in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
            let warned = warned_settings(&[("GATEHOUSE_LISTEN", open)]);
            assert!(warned.contains(&"GATEHOUSE_LISTEN".into()), "{open}");
        }
        for local in ["127.0.0.1:8080", "[::1]:8080"] {
            let warned = warned_settings(&[("GATEHOUSE_LISTEN", local)]);
            assert!(!warned.contains(&"GATEHOUSE_LISTEN".into()), "{local}");
        }
        let production = warned_settings(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_LISTEN", "0.0.0.0:8080"),
        ]);
        assert!(!production.contains(&"GATEHOUSE_LISTEN".into()));
    }

    #[test]
    fn a_metrics_listener_on_a_non_loopback_address_is_warned_about() {
        let warned = warned_settings(&[("GATEHOUSE_METRICS_LISTEN", "0.0.0.0:9100")]);
        assert!(warned.contains(&"GATEHOUSE_METRICS_LISTEN".into()));
        let warned = warned_settings(&[("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:9100")]);
        assert!(!warned.contains(&"GATEHOUSE_METRICS_LISTEN".into()));
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
}
