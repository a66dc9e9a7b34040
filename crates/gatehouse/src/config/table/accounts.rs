//! Rows of the account settings: first admin, sessions, rate limits, passwords, lockout,
//! MFA, API tokens.

use std::time::Duration;

use super::{Secrecy, Setting, Shown, set, value, within};
use crate::config::parse::{
    parse_bool, parse_duration, parse_rate, show_policy, show_rate, show_secs, split_list,
};
use crate::config::{Environment, Rate};
use crate::identity::magic_links::DEFAULT_LINK_LIFETIME;
use crate::identity::password_policy::PasswordPolicy;
use crate::identity::password_reset::DEFAULT_RESET_LIFETIME;
use crate::identity::passwords::{HashParams, HashingPool};
use crate::identity::sessions::SessionConfig;
use crate::identity::throttle::ThrottleConfig;
use crate::identity::{Email, Role};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Reads a rate limit (`off` turns it off).
fn rate(raw: Option<&str>, limit: u32, period: Duration) -> Result<Option<Rate>, String> {
    let expected = "a rate such as `100/min`, `5/min`, `3/15min`, or `off`";
    value(raw, Some(Rate::new(limit, period)), expected, parse_rate)
}

/// Reads what to do when Redis cannot decide: `deny` is true.
fn policy(raw: Option<&str>, deny: bool) -> Result<bool, String> {
    value(raw, deny, "`allow` or `deny`", |v| {
        match v.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(false),
            "deny" => Some(true),
            _ => None,
        }
    })
}

/// Reads a duration that is not zero.
fn lifetime(raw: Option<&str>, default: Duration, example: &str) -> Result<Duration, String> {
    value(
        raw,
        default,
        &format!("a duration such as `{example}`"),
        |v| parse_duration(v).filter(|d| !d.is_zero()),
    )
}

/// Reads a duration from `min` to `max`.
fn bounded(
    raw: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
    example: &str,
) -> Result<Duration, String> {
    let expected = format!(
        "a duration from `{}` to `{}`, such as `{example}`",
        show_secs(min),
        show_secs(max)
    );
    value(raw, default, &expected, |v| {
        parse_duration(v).filter(|d| (min..=max).contains(d))
    })
}

pub(super) static ROWS: &[Setting] = &[
    Setting {
        name: "GATEHOUSE_ADMIN_EMAIL",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "on a start with no users, this address is created as an admin (audited) and mailed a sign-in link (valid `GATEHOUSE_SIGN_IN_LINK_LIFETIME`); without it, development logs a one-time `/setup` link instead",
        read: |s, v| {
            if let Some(e) = v {
                Email::parse(e).map_err(|m| m.to_string())?;
            }
            s.admin_email = v.map(str::to_owned);
            Ok(())
        },
        show: |s| Shown::opt(s.admin_email.as_ref()),
    },
    Setting {
        name: "GATEHOUSE_ALLOWED_DOMAINS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "empty",
        doc: "comma-separated domains whose addresses may sign in by magic link even without an account (one with role `user` is created at first sign-in); active users may always sign in",
        read: |s, v| {
            let domains: Vec<String> = v
                .map(split_list)
                .unwrap_or_default()
                .into_iter()
                .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                .collect();
            if domains
                .iter()
                .any(|d| !d.contains('.') || d.contains('@') || d.contains('*'))
            {
                return Err("expected domain names such as `example.com` (no wildcards)".into());
            }
            s.allowed_domains = domains;
            Ok(())
        },
        show: |s| Shown::of(s.allowed_domains.join(",")),
    },
    Setting {
        name: "GATEHOUSE_SIGN_IN_LINK_LIFETIME",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`10m`",
        doc: "how long a mailed sign-in link and its one-time code work, 1 minute to 1 hour (ASVS 2.7.2); seed 000's links worked 15 minutes, `15m` here; the first admin's link too",
        read: |s, v| {
            let read = bounded(v, DEFAULT_LINK_LIFETIME, MINUTE, 60 * MINUTE, "10m");
            set(&mut s.sign_in_link_lifetime, read)
        },
        show: |s| Shown::of(show_secs(s.sign_in_link_lifetime)),
    },
    Setting {
        name: "GATEHOUSE_SESSION_IDLE_TIMEOUT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`30m`",
        doc: "a session unused this long ends (ASVS Level 2); the seeds' Flask sessions lasted 24 hours (seed 003) or 7 days (seed 000) from the last request, as `24h` or `168h` here",
        read: |s, v| {
            let read = lifetime(v, SessionConfig::default().idle_timeout, "30m");
            set(&mut s.session_idle_timeout, read)
        },
        show: |s| Shown::of(show_secs(s.session_idle_timeout)),
    },
    Setting {
        name: "GATEHOUSE_SESSION_LIFETIME",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`12h`",
        doc: "a session ends this long after sign-in, however active (ASVS Level 2); seed 000's `PERMANENT_SESSION_LIFETIME` was 7 days, `168h` here",
        read: |s, v| {
            let read = lifetime(v, SessionConfig::default().absolute_timeout, "12h");
            set(&mut s.session_lifetime, read)
        },
        show: |s| Shown::of(show_secs(s.session_lifetime)),
    },
    Setting {
        name: "GATEHOUSE_MAX_SESSIONS_PER_USER",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`0` (no limit)",
        doc: "the oldest sessions beyond this are revoked at sign-in; `1` is seed 000's one-session behaviour",
        read: |s, v| {
            let expected = "a number (0 for no limit)";
            let read = value(v, 0, expected, |v| v.trim().parse().ok());
            set(&mut s.max_sessions_per_user, read)
        },
        show: |s| Shown::of(s.max_sessions_per_user),
    },
    Setting {
        name: "GATEHOUSE_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`100/min`",
        doc: "every request per client IP (IPv6 per /64); `off` disables; `/healthz` and `/readyz` are never limited",
        read: |s, v| set(&mut s.rate_limit, rate(v, 100, MINUTE)),
        show: |s| Shown::of(show_rate(s.rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_RATE_LIMIT_ON_STORE_ERROR",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`allow`",
        doc: "`allow` or `deny` when Redis cannot decide, for the rule above",
        read: |s, v| set(&mut s.rate_limit_deny_on_store_error, policy(v, false)),
        show: |s| Shown::of(show_policy(s.rate_limit_deny_on_store_error)),
    },
    Setting {
        name: "GATEHOUSE_ACCOUNT_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`300/min`",
        doc: "requests per signed-in account, from any address (a stolen session used from many places); `off` disables",
        read: |s, v| set(&mut s.account_rate_limit, rate(v, 300, MINUTE)),
        show: |s| Shown::of(show_rate(s.account_rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_API_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`600/min`",
        doc: "API requests per user, keyed by the access token's subject (so spreading requests over addresses or tokens does not help); `off` disables. Seed 001 used `10/min` per client, too tight for real use; set `GATEHOUSE_API_RATE_LIMIT=10/min` to get its behaviour",
        read: |s, v| set(&mut s.api_rate_limit, rate(v, 600, MINUTE)),
        show: |s| Shown::of(show_rate(s.api_rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_SIGNIN_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`5/min`",
        doc: "sign-in and reset form posts (`POST /login…`, `POST /password…`, `POST /auth/oidc/…/start`) and API token requests (`POST /api/v1/auth/token`) per client IP; `off` disables",
        read: |s, v| set(&mut s.signin_rate_limit, rate(v, 5, MINUTE)),
        show: |s| Shown::of(show_rate(s.signin_rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_SIGNIN_RATE_LIMIT_ON_STORE_ERROR",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`deny`",
        doc: "`allow` or `deny` when Redis cannot decide, for the sign-in rule",
        read: |s, v| {
            set(
                &mut s.signin_rate_limit_deny_on_store_error,
                policy(v, true),
            )
        },
        show: |s| Shown::of(show_policy(s.signin_rate_limit_deny_on_store_error)),
    },
    Setting {
        name: "GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`5/min`",
        doc: "sign-in attempts (link requests and codes) per submitted address, whoever sends them; `off` disables",
        read: |s, v| set(&mut s.signin_email_rate_limit, rate(v, 5, MINUTE)),
        show: |s| Shown::of(show_rate(s.signin_email_rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_MAGIC_LINK_RATE_LIMIT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`3/15min`",
        doc: "sign-in and reset mails per address (one budget); requests beyond it get the same page and no mail",
        read: |s, v| set(&mut s.magic_link_rate_limit, rate(v, 3, 15 * MINUTE)),
        show: |s| Shown::of(show_rate(s.magic_link_rate_limit)),
    },
    Setting {
        name: "GATEHOUSE_ARGON2_MEMORY_KIB",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`19456`",
        doc: "argon2id memory cost of new password hashes, in KiB (OWASP's recommendation, like the next two); hashes made with other costs are upgraded at their owner's next sign-in",
        read: |s, v| {
            let expected = "a memory cost in KiB between 8192 and 4194304";
            let default = HashParams::default().memory_kib;
            let read = value(v, default, expected, within(8 * 1024..=4 * 1024 * 1024));
            set(&mut s.argon2.memory_kib, read)
        },
        show: |s| Shown::of(s.argon2.memory_kib),
    },
    Setting {
        name: "GATEHOUSE_ARGON2_ITERATIONS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`2`",
        doc: "argon2id passes of new password hashes",
        read: |s, v| {
            let expected = "a number of passes between 1 and 100";
            let default = HashParams::default().iterations;
            set(
                &mut s.argon2.iterations,
                value(v, default, expected, within(1..=100)),
            )
        },
        show: |s| Shown::of(s.argon2.iterations),
    },
    Setting {
        name: "GATEHOUSE_ARGON2_PARALLELISM",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`1`",
        doc: "argon2id lanes of new password hashes",
        read: |s, v| {
            let expected = "a number of lanes between 1 and 64";
            let default = HashParams::default().parallelism;
            set(
                &mut s.argon2.parallelism,
                value(v, default, expected, within(1..=64)),
            )
        },
        show: |s| Shown::of(s.argon2.parallelism),
    },
    Setting {
        name: "GATEHOUSE_HASHING_THREADS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "one per core",
        doc: "threads that hash and check passwords, each one password at a time; they run in the idle scheduling class on Linux (`SCHED_IDLE`: only CPU time that nothing else wants), so a sign-in flood hashes on every core while other requests keep their latency",
        read: |s, v| {
            let expected = "a number of threads between 1 and 256";
            set(
                &mut s.hashing.threads,
                value(v, None, expected, |v| within(1..=256)(v).map(Some)),
            )
        },
        show: |s| Shown::of(s.hashing.thread_count()),
    },
    Setting {
        name: "GATEHOUSE_HASHING_QUEUE",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`128`",
        doc: "most passwords waiting for a hashing thread at once; a sign-in beyond them is refused at once with `503` and `Retry-After` instead of waiting out the request timeout (`0`: none wait)",
        read: |s, v| {
            let expected = "a number of waiting passwords between 0 and 100000";
            let default = HashingPool::DEFAULT_QUEUE;
            set(
                &mut s.hashing.queue,
                value(v, default, expected, within(0..=100_000)),
            )
        },
        show: |s| Shown::of(s.hashing.queue),
    },
    Setting {
        name: "GATEHOUSE_PASSWORD_MIN_LENGTH",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`12`",
        doc: "fewest characters in a new password (seed 004: `8`)",
        read: |s, v| {
            let default = PasswordPolicy::default().min_length;
            let read = value(v, default, "a length between 8 and 128", within(8..=128));
            set(&mut s.password_policy.min_length, read)
        },
        show: |s| Shown::of(s.password_policy.min_length),
    },
    Setting {
        name: "GATEHOUSE_PASSWORD_MAX_LENGTH",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`128`",
        doc: "most characters",
        read: |s, v| {
            let default = PasswordPolicy::default().max_length;
            let read = value(
                v,
                default,
                "a length between 64 and 1024",
                within(64..=1024),
            );
            set(&mut s.password_policy.max_length, read)
        },
        show: |s| Shown::of(s.password_policy.max_length),
    },
    Setting {
        name: "GATEHOUSE_PASSWORD_REQUIRE_CLASSES",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`false`",
        doc: "require an upper-case and a lower-case letter, a digit and a symbol (seed 004's rules, and the default before ASVS V2.1.9 ruled composition rules out: set `true` for seed 004's behaviour); the minimum length, common passwords and the user's own address are always checked",
        read: |s, v| {
            let require = value(v, false, "`true` or `false`", parse_bool)?;
            let p = &mut s.password_policy;
            p.require_upper = require;
            p.require_lower = require;
            p.require_digit = require;
            p.require_special = require;
            Ok(())
        },
        show: |s| Shown::of(s.password_policy.require_upper),
    },
    Setting {
        name: "GATEHOUSE_PASSWORD_RESET_LIFETIME",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`1h`",
        doc: "how long a password reset link works, 1 minute to 7 days; seed 004's links worked 24 hours, `24h` here",
        read: |s, v| {
            let read = bounded(v, DEFAULT_RESET_LIFETIME, MINUTE, 7 * DAY, "1h");
            set(&mut s.password_reset_lifetime, read)
        },
        show: |s| Shown::of(show_secs(s.password_reset_lifetime)),
    },
    Setting {
        name: "GATEHOUSE_LOCKOUT_THRESHOLD",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`10`",
        doc: "failed sign-ins in a row (wrong passwords, one-time codes and two-step codes, on the pages and the API alike) that lock a submitted address for `GATEHOUSE_LOCKOUT_DURATION` (before that, each failure makes the next attempt wait 1, 2, 4 … seconds, at most a minute); a client IP (IPv6 by its /64) gets this many failures before its delays start and is locked at five times as many; unknown addresses are throttled exactly like known ones",
        read: |s, v| {
            let expected = "a number of failures between 1 and 1000";
            let default = ThrottleConfig::default().lock_threshold;
            let read = value(v, default, expected, within(1..=1000));
            set(&mut s.throttle.lock_threshold, read)
        },
        show: |s| Shown::of(s.throttle.lock_threshold),
    },
    Setting {
        name: "GATEHOUSE_LOCKOUT_DURATION",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`15m`",
        doc: "how long a lock lasts; a complete sign-in (its last factor right) or a password reset clears an address; a right password with a code still due does not",
        read: |s, v| {
            let default = ThrottleConfig::default().lock_duration;
            set(&mut s.throttle.lock_duration, lifetime(v, default, "15m"))
        },
        show: |s| Shown::of(show_secs(s.throttle.lock_duration)),
    },
    Setting {
        name: "GATEHOUSE_ACCESS_TOKEN_LIFETIME",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`15m`",
        doc: "how long an API access token works (1 minute to 1 hour)",
        read: |s, v| {
            let expected = "a duration between `1m` and `1h`, such as `15m`";
            let read = value(v, 15 * MINUTE, expected, |v| {
                parse_duration(v).filter(|d| (60..=3600).contains(&d.as_secs()))
            });
            set(&mut s.access_token_lifetime, read)
        },
        show: |s| Shown::of(show_secs(s.access_token_lifetime)),
    },
    Setting {
        name: "GATEHOUSE_SIGNING_KEY_ROTATION",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`off`",
        doc: "rotate the token signing key automatically when the newest is this old (`off`, or at least `1h`, such as `30d`); like `gatehouse keys rotate`, the new key is published at once and signs 6 minutes later",
        read: |s, v| {
            let expected = "`off` or a duration of at least `1h`, such as `30d`";
            let read = value(v, None, expected, |v| {
                if v.trim().eq_ignore_ascii_case("off") {
                    return Some(None);
                }
                parse_duration(v).filter(|d| d.as_secs() >= 3600).map(Some)
            });
            set(&mut s.signing_key_rotation, read)
        },
        show: |s| match s.signing_key_rotation {
            Some(period) => Shown::of(show_secs(period)),
            None => Shown::of("off"),
        },
    },
    Setting {
        name: "GATEHOUSE_REFRESH_TOKEN_LIFETIME",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`30d`",
        doc: "how long an API sign-in lasts: its refresh tokens stop working this long after the password grant",
        read: |s, v| {
            let expected = "a duration such as `30d` or `720h`";
            let default = Duration::from_secs(30 * 24 * 3600);
            let read = value(v, default, expected, |v| {
                parse_duration(v).filter(|d| d.as_secs() >= 3600)
            });
            set(&mut s.refresh_token_lifetime, read)
        },
        show: |s| Shown::of(show_secs(s.refresh_token_lifetime)),
    },
    Setting {
        name: "GATEHOUSE_MFA_REQUIRED_ROLES",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`admin` in production, `none` in development",
        doc: "roles (comma-separated, or `none`) whose users must set up two-step sign-in, TOTP or a passkey: until they do, every page sends them to `/account/mfa` (where either is set up) and every other request gets `403`; once they have, a password or link is followed by the second factor",
        read: |s, v| {
            let default = match s.env {
                Environment::Production => vec![Role::Admin],
                Environment::Development => Vec::new(),
            };
            let expected = "roles separated by commas (`admin`, `manager`, `user`), or `none`";
            let read = value(v, default, expected, |v| {
                if v.trim().eq_ignore_ascii_case("none") {
                    return Some(Vec::new());
                }
                split_list(v).iter().map(|role| role.parse().ok()).collect()
            });
            set(&mut s.mfa_required_roles, read)
        },
        show: |s| {
            if s.mfa_required_roles.is_empty() {
                return Shown::of("none");
            }
            let roles: Vec<&str> = s.mfa_required_roles.iter().map(|r| r.as_str()).collect();
            Shown::of(roles.join(","))
        },
    },
];
