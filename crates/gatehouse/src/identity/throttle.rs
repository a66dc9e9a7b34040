//! Throttling of failed password sign-ins: growing delays, then a temporary lock.
//!
//! Failures are counted per submitted address (its SHA-256) and per client IP. After the `k`-th
//! failure in a row, an address may not try again for `2^(k-1)` seconds (at most a minute); at
//! the lock threshold it is blocked for the lock duration. An IP (which many people may share)
//! gets the threshold's worth of failures before its delays start, and is locked at five times
//! the threshold. A success clears the address's count; a count also ends when its key has not
//! failed for the lock duration.
//!
//! # Security
//! - Keys are what was *submitted*, not accounts: an address that has no account is throttled
//!   exactly like one that has, so the throttle reveals nothing about which exist.
//! - The counts live in the database, so every instance enforces the same delays and locks.
//! - Addresses are stored as SHA-256, never in the clear.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::Email;
use crate::Error;
use crate::store::{Db, parse_timestamp, timestamp_text};

/// The longest delay between two attempts before the lock.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// Thresholds and durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures in a row that lock an address (an IP: five times as many).
    pub lock_threshold: u32,
    /// How long a lock lasts.
    pub lock_duration: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            lock_threshold: 10,
            lock_duration: Duration::from_secs(15 * 60),
        }
    }
}

/// One key an attempt is counted under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// `email:<sha256>` or `ip:<address>`.
    pub name: String,
    /// Failures in a row that lock it.
    pub lock_at: u32,
    /// Failures before its delays start.
    pub grace: u32,
}

/// The keys an attempt is counted under: the submitted address, then the client IP.
pub fn keys(config: &ThrottleConfig, email: &Email, ip: IpAddr) -> [Key; 2] {
    [
        Key {
            name: format!(
                "email:{}",
                hex::encode(Sha256::digest(email.as_str().as_bytes()))
            ),
            lock_at: config.lock_threshold,
            grace: 0,
        },
        Key {
            name: format!("ip:{ip}"),
            lock_at: config.lock_threshold.saturating_mul(5),
            grace: config.lock_threshold,
        },
    ]
}

/// How long the caller must wait before trying again, if any key is blocked.
pub async fn blocked_for(
    db: &Db,
    keys: &[Key],
    now: OffsetDateTime,
) -> Result<Option<Duration>, Error> {
    let mut longest: Option<Duration> = None;
    for Key { name: key, .. } in keys {
        let until: Option<OffsetDateTime> = match db {
            Db::Postgres(pool) => {
                sqlx::query_scalar("SELECT blocked_until FROM sign_in_failures WHERE key = $1")
                    .bind(key)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Sqlite(pool, _) => {
                let text: Option<String> =
                    sqlx::query_scalar("SELECT blocked_until FROM sign_in_failures WHERE key = ?")
                        .bind(key)
                        .fetch_optional(pool)
                        .await?;
                text.as_deref().map(parse_timestamp).transpose()?
            }
        };
        if let Some(until) = until.filter(|u| *u > now) {
            let wait = Duration::try_from(until - now).unwrap_or_default();
            longest = Some(longest.map_or(wait, |l| l.max(wait)));
        }
    }
    Ok(longest)
}

/// Counts a failure under every key; returns true when this failure locked one of them.
pub async fn record_failure(
    db: &Db,
    config: &ThrottleConfig,
    keys: &[Key],
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let mut locked = false;
    let fresh_after = now - config.lock_duration;
    for Key {
        name: key,
        lock_at: threshold,
        grace,
    } in keys
    {
        let mut tx = db.begin().await?;
        let previous: Option<(i64, OffsetDateTime)> = match &mut tx {
            crate::store::Tx::Postgres(t) => sqlx::query_as(
                "SELECT failures, last_failure_at FROM sign_in_failures WHERE key = $1 FOR UPDATE",
            )
            .bind(key)
            .fetch_optional(&mut **t)
            .await?,
            crate::store::Tx::Sqlite(t, _) => {
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT failures, last_failure_at FROM sign_in_failures WHERE key = ?",
                )
                .bind(key)
                .fetch_optional(&mut **t)
                .await?;
                row.map(|(n, at)| parse_timestamp(&at).map(|at| (n, at)))
                    .transpose()?
            }
        };
        // A key that has been quiet for the lock duration starts over.
        let failures = match previous {
            Some((n, last)) if last > fresh_after => n + 1,
            _ => 1,
        };
        let block = if failures >= i64::from(*threshold) {
            locked |= failures == i64::from(*threshold);
            config.lock_duration
        } else if failures <= i64::from(*grace) {
            Duration::ZERO
        } else {
            let exponent = u32::try_from(failures - i64::from(*grace) - 1)
                .unwrap_or(u32::MAX)
                .min(16);
            Duration::from_secs(1u64 << exponent).min(MAX_DELAY)
        };
        let until = now + block;
        match &mut tx {
            crate::store::Tx::Postgres(t) => {
                sqlx::query(
                    "INSERT INTO sign_in_failures (key, failures, last_failure_at, blocked_until) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (key) DO UPDATE SET failures = $2, last_failure_at = $3, blocked_until = $4",
                )
                .bind(key)
                .bind(failures)
                .bind(now)
                .bind(until)
                .execute(&mut **t)
                .await?;
            }
            crate::store::Tx::Sqlite(t, _) => {
                sqlx::query(
                    "INSERT INTO sign_in_failures (key, failures, last_failure_at, blocked_until) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (key) DO UPDATE SET failures = ?2, last_failure_at = ?3, blocked_until = ?4",
                )
                .bind(key)
                .bind(failures)
                .bind(timestamp_text(now))
                .bind(timestamp_text(until))
                .execute(&mut **t)
                .await?;
            }
        }
        tx.commit().await?;
    }
    Ok(locked)
}

/// Forgets the failures of one key (an address after a successful sign-in or reset).
pub async fn clear(db: &Db, key: &str) -> Result<(), Error> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await?;
        }
        Db::Sqlite(pool, _) => {
            sqlx::query("DELETE FROM sign_in_failures WHERE key = ?")
                .bind(key)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Deletes counts that no longer matter: not blocked, and quiet for longer than a lock lasts (the
/// next failure would start over anyway). Returns how many.
pub async fn purge_quiet(
    db: &Db,
    config: &ThrottleConfig,
    now: OffsetDateTime,
) -> Result<u64, Error> {
    let quiet_since = now - config.lock_duration;
    Ok(match db {
        Db::Postgres(pool) => sqlx::query(
            "DELETE FROM sign_in_failures WHERE blocked_until < $1 AND last_failure_at < $2",
        )
        .bind(now)
        .bind(quiet_since)
        .execute(pool)
        .await?
        .rows_affected(),
        Db::Sqlite(pool, _) => sqlx::query(
            "DELETE FROM sign_in_failures WHERE blocked_until < ? AND last_failure_at < ?",
        )
        .bind(timestamp_text(now))
        .bind(timestamp_text(quiet_since))
        .execute(pool)
        .await?
        .rows_affected(),
    })
}
