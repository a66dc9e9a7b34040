//! What production mode refuses and what `config check` warns about.
//!
//! # Security
//! - Every problem names the variable to set, never its value: a too-short secret key is
//!   reported by its length only, a URL by its host only.
//! - Connections that leave the host carry passwords, sessions and personal data, so production
//!   refuses (development warns about) a PostgreSQL elsewhere whose URL does not verify the
//!   server's certificate and name (`sslmode=verify-full`; a private CA is named by the URL's
//!   `sslrootcert`), and a Redis elsewhere without TLS that verifies its certificate
//!   (`rediss://`, no `#insecure`) and a password. "Elsewhere" is any host but `localhost`, a
//!   loopback address or a Unix socket, judged on the host the driver would connect to (a
//!   `host=` or `hostaddr=` parameter of a PostgreSQL URL included).

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
        for provider in &self.oidc_providers {
            if !provider.issuer.starts_with("https://") {
                problem(
                    &format!(
                        "GATEHOUSE_OIDC_{}_ISSUER",
                        provider.name.to_ascii_uppercase()
                    ),
                    format!(
                        "is `{}`: an OpenID provider is reached over https:// in production",
                        provider.issuer
                    ),
                );
            }
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
        for p in self.transport_problems() {
            problem(&p.setting, p.message);
        }
        for p in self.upstream_problems() {
            problem(&p.setting, p.message);
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
        if !self.is_production() {
            warnings.extend(self.transport_problems());
        }
        if postgres_url(self.database_url.expose_secret()).is_some() && self.redis_url.is_none() {
            warnings.push(ConfigError {
                setting: "GATEHOUSE_REDIS_URL".into(),
                message: "PostgreSQL without Redis: rate limits are counted per instance; set GATEHOUSE_REDIS_URL when running several instances".into(),
            });
        }
        if !self.is_production() {
            warnings.extend(self.upstream_problems());
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

impl Settings {
    /// An upstream identity that anyone could assert: refused in production, warned about in
    /// development. Cloudflare's keys over plain HTTP could be swapped on the way; a trusted
    /// header believed from no proxy is dead, and one believed from every address lets any
    /// client name any person.
    fn upstream_problems(&self) -> Vec<ConfigError> {
        use crate::identity::upstream::UpstreamMode;
        let mut problems = Vec::new();
        let upstream = &self.upstream_identity;
        match upstream.mode {
            UpstreamMode::Off => {}
            UpstreamMode::CloudflareAccess => {
                if upstream
                    .team_domain
                    .as_ref()
                    .is_some_and(|u| u.scheme() != "https")
                {
                    problems.push(ConfigError {
                        setting: "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN".into(),
                        message: "is not https://: the signing keys would be fetched in the clear; set it to https://<team>.cloudflareaccess.com".into(),
                    });
                }
            }
            UpstreamMode::TrustedHeader => {
                if self.trusted_proxies.is_empty() {
                    problems.push(ConfigError {
                        setting: "GATEHOUSE_TRUSTED_PROXIES".into(),
                        message: "is empty while GATEHOUSE_UPSTREAM_IDENTITY=trusted_header: the identity header is believed only from trusted proxies; list the authenticating proxy's addresses".into(),
                    });
                } else if self.trusted_proxies.covers_every_address() {
                    problems.push(ConfigError {
                        setting: "GATEHOUSE_TRUSTED_PROXIES".into(),
                        message: "trusts every address while GATEHOUSE_UPSTREAM_IDENTITY=trusted_header: any client could name any person in the identity header; list only the authenticating proxy's addresses".into(),
                    });
                }
            }
        }
        problems
    }

    /// Unprotected connections to another host: refused in production, warned about in
    /// development (see the module's Security section).
    fn transport_problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Some(db) = postgres_url(self.database_url.expose_secret()) {
            problems.extend(postgres_problem(&db));
        }
        if let Some(redis) = &self.redis_url {
            problems.extend(redis_problem(redis.expose_secret()));
        }
        problems
    }
}

/// The last value of any of `keys` in `url`'s query (the driver's rule when one is repeated).
fn last_param(url: &Url, keys: &[&str]) -> Option<String> {
    url.query_pairs()
        .filter(|(k, _)| keys.contains(&k.as_ref()))
        .last()
        .map(|(_, v)| v.into_owned())
}

/// What is wrong with a PostgreSQL URL to another host, if anything. The host is the one sqlx
/// connects to: a `host=` or `hostaddr=` parameter wins over the URL's host, and a host that is
/// a path is a Unix socket.
fn postgres_problem(db: &Url) -> Option<ConfigError> {
    let host = last_param(db, &["host", "hostaddr"])
        .or_else(|| db.host_str().map(str::to_owned))
        .unwrap_or_default();
    if host.is_empty() || host.starts_with('/') || is_loopback_host(&host) {
        return None;
    }
    let problem = |message: String| ConfigError {
        setting: "GATEHOUSE_DATABASE_URL".into(),
        message,
    };
    let sslmode = last_param(db, &["sslmode", "ssl-mode"]);
    if sslmode.as_deref() != Some("verify-full") {
        let now = sslmode.map_or_else(|| "no `sslmode`".to_owned(), |m| format!("`sslmode={m}`"));
        return Some(problem(format!(
            "PostgreSQL at `{host}` is not on this host and the URL has {now}, which does not verify the server's certificate and name: add `sslmode=verify-full` to GATEHOUSE_DATABASE_URL, and `sslrootcert=/path/to/ca.pem` when the server's certificate comes from a private CA"
        )));
    }
    let root = last_param(db, &["sslrootcert", "ssl-root-cert", "ssl-ca"])?;
    (!std::path::Path::new(&root).is_file()).then(|| {
        problem(format!(
            "names `sslrootcert={root}`, which is not a readable file: set it to the PEM file of the CA that signed PostgreSQL's certificate"
        ))
    })
}

/// What is wrong with a Redis URL to another host, if anything: each missing protection named.
fn redis_problem(raw: &str) -> Option<ConfigError> {
    let url = Url::parse(raw).ok()?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() || is_loopback_host(host) {
        return None;
    }
    let mut missing = Vec::new();
    if url.scheme() != "rediss" {
        missing.push("TLS: use a `rediss://` URL");
    } else if url.fragment() == Some("insecure") {
        missing.push("certificate verification: remove `#insecure`");
    }
    if url.password().is_none_or(str::is_empty) {
        missing.push(
            "a password: `rediss://:PASSWORD@host:6379` (or `USER:PASSWORD@` with an ACL user)",
        );
    }
    (!missing.is_empty()).then(|| ConfigError {
        setting: "GATEHOUSE_REDIS_URL".into(),
        message: format!(
            "Redis at `{host}` is not on this host and its URL lacks {}",
            missing.join("; and ")
        ),
    })
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
    fn production_refuses_an_upstream_identity_anyone_could_assert() {
        let base = [
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("SMTP_HOST", "smtp.example"),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            production_problem_names(&pairs)
        };
        let header = ("GATEHOUSE_UPSTREAM_IDENTITY", "trusted_header");
        assert_eq!(with(&[header]), ["GATEHOUSE_TRUSTED_PROXIES"]);
        assert_eq!(
            with(&[header, ("GATEHOUSE_TRUSTED_PROXIES", "0.0.0.0/0")]),
            ["GATEHOUSE_TRUSTED_PROXIES"]
        );
        assert!(with(&[header, ("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.7")]).is_empty());
        let cloudflare = [
            ("GATEHOUSE_UPSTREAM_IDENTITY", "cloudflare_access"),
            ("GATEHOUSE_CF_ACCESS_AUD", "0123abcd"),
        ];
        let mut plain = cloudflare.to_vec();
        plain.push((
            "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN",
            "http://acme.cloudflareaccess.com",
        ));
        assert_eq!(with(&plain), ["GATEHOUSE_CF_ACCESS_TEAM_DOMAIN"]);
        let mut secure = cloudflare.to_vec();
        secure.push((
            "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN",
            "https://acme.cloudflareaccess.com",
        ));
        assert!(with(&secure).is_empty());
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

    /// The problems of a sound production configuration with `extra` settings.
    fn production_problems_with(extra: &[(&str, &str)]) -> Vec<ConfigError> {
        let mut pairs = vec![
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("SMTP_HOST", "smtp.example"),
        ];
        pairs.extend_from_slice(extra);
        Settings::load(&sources(&pairs))
            .unwrap()
            .production_problems()
    }

    fn database_problems(url: &str) -> Vec<ConfigError> {
        production_problems_with(&[("GATEHOUSE_DATABASE_URL", url)])
    }

    fn redis_problems(url: &str) -> Vec<ConfigError> {
        production_problems_with(&[("GATEHOUSE_REDIS_URL", url)])
    }

    #[test]
    fn production_refuses_a_remote_postgres_that_does_not_verify_its_certificate_and_name() {
        for url in [
            "postgres://app:pw@db.internal/app",
            "postgres://app:pw@db.internal/app?sslmode=disable",
            "postgres://app:pw@db.internal/app?sslmode=prefer",
            "postgres://app:pw@db.internal/app?sslmode=require",
            "postgresql://app:pw@10.0.0.5:5432/app?sslmode=verify-ca",
            // The last `sslmode` wins, as in the driver.
            "postgres://app:pw@db.internal/app?sslmode=verify-full&ssl-mode=require",
            // The driver connects to `host=`, not to the URL's host.
            "postgres://app:pw@localhost/app?host=db.internal",
            "postgres://app:pw@127.0.0.1/app?hostaddr=10.0.0.5",
        ] {
            let problems = database_problems(url);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert_eq!(problems[0].setting, "GATEHOUSE_DATABASE_URL");
            let message = &problems[0].message;
            assert!(
                message.contains("add `sslmode=verify-full` to GATEHOUSE_DATABASE_URL")
                    && message.contains("sslrootcert="),
                "{url}: {message}"
            );
            assert!(!message.contains("pw"), "never the password: {message}");
        }
    }

    #[test]
    fn production_accepts_postgres_that_verifies_its_certificate_or_stays_on_this_host() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let with_ca = format!(
            "postgres://app:pw@db.internal/app?sslmode=verify-full&sslrootcert={}",
            ca.path().display()
        );
        for url in [
            "postgres://app:pw@db.internal/app?sslmode=verify-full",
            "postgres://app:pw@db.internal/app?ssl-mode=verify-full",
            with_ca.as_str(),
            "postgres://app:pw@127.0.0.1:5432/app",
            "postgres://app:pw@localhost/app?sslmode=disable",
            "postgres://app:pw@[::1]/app",
            "postgres:///app?host=/var/run/postgresql",
        ] {
            let problems = database_problems(url);
            assert!(problems.is_empty(), "{url}: {problems:?}");
        }
    }

    #[test]
    fn production_refuses_a_private_ca_file_that_is_not_there() {
        let problems = database_problems(
            "postgres://app@db.internal/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].setting, "GATEHOUSE_DATABASE_URL");
        assert!(
            problems[0]
                .message
                .contains("`sslrootcert=/nonexistent/ca.pem`"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn production_refuses_a_remote_redis_without_tls_or_without_a_password() {
        let tls = "TLS: use a `rediss://` URL";
        let verification = "certificate verification: remove `#insecure`";
        let password = "a password: `rediss://:PASSWORD@host:6379`";
        for (url, lacks) in [
            ("redis://:secret@redis.internal:6379", vec![tls]),
            ("rediss://redis.internal:6380", vec![password]),
            ("rediss://app:@redis.internal:6380", vec![password]),
            ("redis://redis.internal:6379", vec![tls, password]),
            (
                "rediss://:secret@redis.internal:6380/#insecure",
                vec![verification],
            ),
        ] {
            let problems = redis_problems(url);
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert_eq!(problems[0].setting, "GATEHOUSE_REDIS_URL");
            let message = &problems[0].message;
            assert!(message.contains("Redis at `redis.internal`"), "{message}");
            for part in [tls, verification, password] {
                assert_eq!(
                    message.contains(part),
                    lacks.contains(&part),
                    "{url}: {message}"
                );
            }
            assert!(!message.contains("secret"), "never the password: {message}");
        }
    }

    #[test]
    fn production_accepts_redis_with_tls_and_a_password_or_on_this_host() {
        for url in [
            "rediss://:secret@redis.internal:6380",
            "rediss://gatehouse:secret@redis.internal:6380/0",
            "redis://127.0.0.1:6379",
            "redis://localhost:6379/2",
            "redis://[::1]:6379",
        ] {
            let problems = redis_problems(url);
            assert!(problems.is_empty(), "{url}: {problems:?}");
        }
    }

    #[test]
    fn development_warns_about_unprotected_remote_connections_and_production_refuses_them_once() {
        let remote = [
            (
                "GATEHOUSE_DATABASE_URL",
                "postgres://app@db.internal/app?sslmode=require",
            ),
            ("GATEHOUSE_REDIS_URL", "redis://redis.internal:6379"),
        ];
        let development = Settings::load(&sources(&remote)).unwrap();
        let warned: Vec<String> = development
            .warnings()
            .into_iter()
            .map(|w| w.message)
            .collect();
        assert!(
            warned.iter().any(|m| m.contains("sslmode=verify-full")),
            "{warned:?}"
        );
        assert!(warned.iter().any(|m| m.contains("rediss://")), "{warned:?}");

        let mut pairs = vec![
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
            ("SMTP_HOST", "smtp.example"),
        ];
        pairs.extend_from_slice(&remote);
        let production = Settings::load(&sources(&pairs)).unwrap();
        let refused: Vec<String> = production
            .production_problems()
            .into_iter()
            .map(|p| p.setting)
            .collect();
        assert_eq!(refused, ["GATEHOUSE_DATABASE_URL", "GATEHOUSE_REDIS_URL"]);
        assert!(
            production
                .warnings()
                .iter()
                .all(|w| !w.message.contains("not on this host")),
            "a refusal is not repeated as a warning"
        );
    }
}
