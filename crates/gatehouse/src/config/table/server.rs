//! Rows of the server settings: mode, addresses, secret keys, storage, proxies, CORS, limits, timeouts, logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_security::{CorsPolicy, TrustedProxies};
use secrecy::{ExposeSecret as _, SecretString};
use url::Url;

use super::{Secrecy, Setting, Shown, set, value, within};
use crate::config::parse::{
    parse_bool, parse_duration, parse_public_url, parse_size, show_secs, split_list,
};
use crate::config::{Environment, LogFormat, generate_secret};

const DIRECTORY: &str = "a directory path";

/// Reads a timeout: a non-zero duration.
fn timeout(raw: Option<&str>, default: u64, example: &str) -> Result<Duration, String> {
    value(
        raw,
        Duration::from_secs(default),
        &format!("a duration such as `{example}`"),
        |v| parse_duration(v).filter(|d| !d.is_zero()),
    )
}

pub(super) static ROWS: &[Setting] = &[
    Setting {
        name: "GATEHOUSE_ENV",
        aliases: &["FLASK_ENV"],
        secrecy: Secrecy::Public,
        default: "`development`",
        doc: "`production` turns on every fail-fast check, JSON logs and HSTS",
        read: |s, v| {
            let parse = |v: &str| match v.trim().to_ascii_lowercase().as_str() {
                "development" | "dev" => Some(Environment::Development),
                "production" | "prod" => Some(Environment::Production),
                _ => None,
            };
            let expected = "`development` or `production`";
            set(
                &mut s.env,
                value(v, Environment::Development, expected, parse),
            )
        },
        show: |s| Shown::of(s.env.as_str()),
    },
    Setting {
        name: "GATEHOUSE_LISTEN",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`127.0.0.1:8080`",
        doc: "address the HTTP server binds; also `serve --listen`",
        read: |s, v| {
            let default = SocketAddr::from(([127, 0, 0, 1], 8080));
            let expected = "an address such as `127.0.0.1:8080` or `0.0.0.0:8080`";
            set(
                &mut s.listen,
                value(v, default, expected, |v| v.trim().parse().ok()),
            )
        },
        show: |s| Shown::of(s.listen),
    },
    Setting {
        name: "GATEHOUSE_PUBLIC_URL",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`http://<listen>`",
        doc: "base of every link Gatehouse sends; must be `https://` in production",
        read: |s, v| {
            let url = match v {
                Some(v) => parse_public_url(v),
                None => Url::parse(&format!("http://{}", s.listen)).map_err(|_| {
                    "set it to the https:// address users reach Gatehouse at".to_owned()
                }),
            };
            set(&mut s.public_url, url)
        },
        show: |s| Shown::of(s.public_url.as_str().trim_end_matches('/')),
    },
    Setting {
        name: "GATEHOUSE_SECRET_KEY",
        aliases: &["SECRET_KEY", "FLASK_SECRET_KEY"],
        secrecy: Secrecy::Secret,
        default: "development: a key kept in `<data dir>/development-secret.key`",
        doc: "root of every derived key; at least 32 bytes in production",
        read: |s, v| {
            s.secret_key_generated = v.is_none();
            s.secret_key = v.map_or_else(generate_secret, |k| SecretString::from(k.to_owned()));
            Ok(())
        },
        show: |s| {
            if s.secret_key_generated {
                Shown::Note("(not set: the development key in the data directory)")
            } else {
                Shown::Set
            }
        },
    },
    Setting {
        name: "GATEHOUSE_SECRET_KEY_PREVIOUS",
        aliases: &[],
        secrecy: Secrecy::Secret,
        default: "unset",
        doc: "after changing the secret key, set this to the old one: values sealed under it (data keys, TOTP secrets, signing keys) still open until `gatehouse keys reencrypt` seals them again under the new key",
        read: |s, v| {
            s.previous_secret_key = v.map(|k| SecretString::from(k.to_owned()));
            Ok(())
        },
        show: |s| Shown::secret(s.previous_secret_key.as_ref()),
    },
    Setting {
        name: "GATEHOUSE_DATA_DIR",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`./gatehouse-data`",
        doc: "SQLite file, uploads, local state; created with mode 0700",
        read: |s, v| {
            let default = PathBuf::from("./gatehouse-data");
            set(
                &mut s.data_dir,
                value(v, default, DIRECTORY, |v| Some(v.into())),
            )
        },
        show: |s| Shown::of(s.data_dir.display()),
    },
    Setting {
        name: "GATEHOUSE_DATABASE_URL",
        aliases: &["DATABASE_URL"],
        secrecy: Secrecy::SecretUrl,
        default: "`sqlite://<data dir>/gatehouse.db`",
        doc: "`sqlite://PATH` or `postgres://user:pass@host/db?sslmode=verify-full`; production refuses a PostgreSQL on another host unless `sslmode=verify-full` (certificate and host name verified against the public CAs, plus the PEM file `sslrootcert=/path/ca.pem` names for a private CA)",
        read: |s, v| {
            let url = v.map_or_else(
                || format!("sqlite://{}/gatehouse.db", s.data_dir.display()),
                str::to_owned,
            );
            let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p));
            s.database_url = SecretString::from(url);
            scheme_ok
                .then_some(())
                .ok_or_else(|| "must start with `sqlite://` or `postgres://`".into())
        },
        show: |s| Shown::of(s.database_url.expose_secret()),
    },
    Setting {
        name: "GATEHOUSE_DATABASE_MAX_CONNECTIONS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`10`",
        doc: "database pool size, for reads (and on SQLite the read connections kept); each instance also keeps one connection of its own for writes",
        read: |s, v| {
            let expected = "a number of connections between 1 and 1000";
            set(
                &mut s.database_max_connections,
                value(v, 10, expected, within(1..=1000)),
            )
        },
        show: |s| Shown::of(s.database_max_connections),
    },
    Setting {
        name: "GATEHOUSE_REDIS_URL",
        aliases: &["REDIS_URL"],
        secrecy: Secrecy::SecretUrl,
        default: "unset",
        doc: "`redis://` or `rediss://`; sessions and rate limits go to Redis when set; checked by `/readyz`; production refuses a Redis on another host without TLS that verifies its certificate (`rediss://`, no `#insecure`) and a password (`rediss://:PASSWORD@host:6379`)",
        read: |s, v| {
            s.redis_url = v.map(|u| SecretString::from(u.to_owned()));
            match v {
                Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
                    Err("must start with `redis://` or `rediss://`".into())
                }
                _ => Ok(()),
            }
        },
        show: |s| Shown::opt(s.redis_url.as_ref().map(|u| u.expose_secret())),
    },
    Setting {
        name: "GATEHOUSE_REDIS_PREFIX",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`gatehouse:`",
        doc: "prefix of every Redis key, so deployments can share a Redis",
        read: |s, v| {
            let prefix = v.unwrap_or("gatehouse:");
            if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err("expected a key prefix without spaces, such as `gatehouse:`".into());
            }
            s.redis_prefix = prefix.to_owned();
            Ok(())
        },
        show: |s| Shown::of(&s.redis_prefix),
    },
    Setting {
        name: "GATEHOUSE_TRUSTED_PROXIES",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "empty",
        doc: "CIDRs or addresses whose `Forwarded` / `X-Forwarded-For` are believed (e.g. `10.0.0.0/8, 127.0.0.1`)",
        read: |s, v| {
            let list = v.map(split_list).unwrap_or_default();
            s.trusted_proxies = TrustedProxies::parse(&list.join(",")).map_err(|e| {
                format!("{e}; expected CIDRs or addresses such as `10.0.0.0/8, 127.0.0.1`")
            })?;
            s.trusted_proxies_raw = list;
            Ok(())
        },
        show: |s| Shown::of(s.trusted_proxies_raw.join(",")),
    },
    Setting {
        name: "GATEHOUSE_CORS_ORIGINS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "empty (no cross-origin access)",
        doc: "comma-separated origins (`https://app.example`); `*` allows any origin without credentials; `null` is always refused",
        read: |s, v| {
            let list = v.map(split_list).unwrap_or_default();
            CorsPolicy::new(&list, false).map_err(|e| e.to_string())?;
            s.cors_origins = list;
            Ok(())
        },
        show: |s| Shown::of(s.cors_origins.join(",")),
    },
    Setting {
        name: "GATEHOUSE_CORS_ALLOW_CREDENTIALS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`true`",
        doc: "whether allowed origins may send cookies; `*` with `true` is refused in production",
        read: |s, v| {
            let read = value(v, true, "`true` or `false`", parse_bool);
            set(&mut s.cors_allow_credentials, read)
        },
        show: |s| Shown::of(s.cors_allow_credentials),
    },
    Setting {
        name: "GATEHOUSE_METRICS_LISTEN",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "Prometheus `GET /metrics` on this separate address (e.g. `127.0.0.1:9090`); never on the public listener",
        read: |s, v| {
            let expected = "an address such as `127.0.0.1:9090`";
            let read = value(v, None, expected, |v| v.trim().parse().ok().map(Some));
            set(&mut s.metrics_listen, read)
        },
        show: |s| Shown::opt(s.metrics_listen),
    },
    Setting {
        name: "UPLOAD_FOLDER",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`<data dir>/uploads`",
        doc: "where uploads are stored",
        read: |s, v| {
            let default = s.data_dir.join("uploads");
            set(
                &mut s.upload_folder,
                value(v, default, DIRECTORY, |v| Some(v.into())),
            )
        },
        show: |s| Shown::of(s.upload_folder.display()),
    },
    Setting {
        name: "MAX_CONTENT_LENGTH",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`16MiB`",
        doc: "largest upload; bytes or `K`/`M`/`G` (powers of 1024)",
        read: |s, v| {
            let expected = "a size such as `16777216` or `16MiB`";
            let read = value(v, 16 << 20, expected, |v| parse_size(v).filter(|n| *n > 0));
            set(&mut s.max_content_length, read)
        },
        show: |s| Shown::of(s.max_content_length),
    },
    Setting {
        name: "GATEHOUSE_BODY_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`1MiB`",
        doc: "largest request body elsewhere; a larger `Content-Length` gets 413 before the body is read",
        read: |s, v| {
            let read = value(v, 1 << 20, "a size such as `1MiB`", |v| {
                parse_size(v)
                    .filter(|n| *n > 0)
                    .and_then(|n| usize::try_from(n).ok())
            });
            set(&mut s.body_limit, read)
        },
        show: |s| Shown::of(s.body_limit),
    },
    Setting {
        name: "GATEHOUSE_REQUEST_TIMEOUT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`30s`",
        doc: "a request taking longer is answered 503",
        read: |s, v| set(&mut s.request_timeout, timeout(v, 30, "30s")),
        show: |s| Shown::of(show_secs(s.request_timeout)),
    },
    Setting {
        name: "GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`5s`, or half of `GATEHOUSE_REQUEST_TIMEOUT` if that is shorter",
        doc: "how long a request waits for a database connection before it is answered 503 with `Retry-After`; must be shorter than `GATEHOUSE_REQUEST_TIMEOUT`",
        read: |s, v| {
            if v.is_none() {
                s.database_acquire_timeout = Duration::from_secs(5).min(s.request_timeout / 2);
                return Ok(());
            }
            let read = timeout(v, 5, "5s").and_then(|t| {
                if t < s.request_timeout {
                    Ok(t)
                } else {
                    Err(format!(
                        "must be shorter than GATEHOUSE_REQUEST_TIMEOUT ({} s), so that a request waiting for a database connection is answered 503 instead of hanging until the timeout",
                        s.request_timeout.as_secs()
                    ))
                }
            });
            set(&mut s.database_acquire_timeout, read)
        },
        show: |s| Shown::of(show_secs(s.database_acquire_timeout)),
    },
    Setting {
        name: "GATEHOUSE_HEADER_TIMEOUT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`10s`",
        doc: "a client that has not sent its complete request headers by then is disconnected (slowloris)",
        read: |s, v| set(&mut s.header_timeout, timeout(v, 10, "10s")),
        show: |s| Shown::of(show_secs(s.header_timeout)),
    },
    Setting {
        name: "GATEHOUSE_SHUTDOWN_TIMEOUT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`30s`",
        doc: "on SIGTERM / Ctrl-C, how long in-flight requests get to finish",
        read: |s, v| {
            let default = Duration::from_secs(30);
            let read = value(v, default, "a duration such as `30s`", parse_duration);
            set(&mut s.shutdown_timeout, read)
        },
        show: |s| Shown::of(show_secs(s.shutdown_timeout)),
    },
    Setting {
        name: "GATEHOUSE_LOG",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`info`",
        doc: "log filter, e.g. `gatehouse=debug,info`",
        read: |s, v| {
            s.log_filter = v.unwrap_or("info").to_owned();
            Ok(())
        },
        show: |s| Shown::of(&s.log_filter),
    },
    Setting {
        name: "GATEHOUSE_LOG_FORMAT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`json` in production, `text` otherwise",
        doc: "log line format",
        read: |s, v| {
            let default = match s.env {
                Environment::Production => LogFormat::Json,
                Environment::Development => LogFormat::Text,
            };
            let read = value(v, default, "`json` or `text`", |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "json" => Some(LogFormat::Json),
                    "text" | "pretty" => Some(LogFormat::Text),
                    _ => None,
                }
            });
            set(&mut s.log_format, read)
        },
        show: |s| {
            Shown::of(match s.log_format {
                LogFormat::Json => "json",
                LogFormat::Text => "text",
            })
        },
    },
];
