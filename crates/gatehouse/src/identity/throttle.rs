//! Throttling of failed password sign-ins: growing delays, then a temporary lock.
//!
//! Failures are counted per submitted address (its SHA-256) and per client IP. After the `k`-th
//! failure in a row, an address may not try again for `2^(k-1)` seconds (at most a minute); at
//! the lock threshold it is blocked for the lock duration. An IP (which many people may share)
//! gets the threshold's worth of failures before its delays start, and is locked at five times
//! the threshold. A success clears the address's count; a count also ends when its key has not
//! failed for the lock duration.
//!
//! An attempt is counted *before* it is checked: [`reserve`] refuses a blocked key and counts
//! the attempt under every key in one transaction, and the attempt that reaches a key's lock
//! threshold locks it there and then. So however many attempts run at once, at most the
//! threshold's worth are ever let through before the lock (no check-then-act race). A failure
//! then sets its delay ([`Reservation::fail`]); a factor that turns out right gives its count back
//! ([`Reservation::refund`]); only the last factor of a sign-in clears the address
//! ([`Reservation::succeed`]), so a right password followed by wrong codes still reaches the
//! lock. Counting attempts in flight means an address with the threshold's worth of sign-ins
//! in flight at once is briefly locked too; a person never is.
//!
//! # Security
//! - Keys are what was *submitted*, not accounts: an address that has no account is throttled
//!   exactly like one that has, so the throttle reveals nothing about which exist.
//! - The counts live in the database, so every instance enforces the same delays and locks.
//! - Addresses are stored as SHA-256, never in the clear.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::Email;
use super::queries::throttle as queries;
use crate::error::Error;
use crate::store::{Db, Tx};

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
    /// `email:<sha256>` or `ip:<client key>` (an IPv6 client by its `/64`).
    pub name: String,
    /// Failures in a row that lock it.
    pub lock_at: u32,
    /// Failures before its delays start.
    pub grace: u32,
}

/// The keys an attempt is counted under: the submitted address, then the client, by the one
/// client key every per-client rule uses (`ClientIp::key`: an IPv6 client by its `/64`).
pub fn keys(
    config: &ThrottleConfig,
    email: &Email,
    client: &gatehouse_security::ClientIp,
) -> Vec<Key> {
    vec![
        Key {
            name: format!(
                "email:{}",
                hex::encode(Sha256::digest(email.as_str().as_bytes()))
            ),
            lock_at: config.lock_threshold,
            grace: 0,
        },
        Key {
            name: format!("ip:{}", client.key()),
            lock_at: config.lock_threshold.saturating_mul(5),
            grace: config.lock_threshold,
        },
    ]
}

/// One key's stored count.
struct Count {
    failures: i64,
    last_failure_at: OffsetDateTime,
    blocked_until: OffsetDateTime,
}

async fn read(tx: &mut Tx, key: &str) -> Result<Option<Count>, Error> {
    Ok(queries::read(tx, key)
        .await?
        .map(|(failures, last_failure_at, blocked_until)| Count {
            failures,
            last_failure_at,
            blocked_until,
        }))
}

async fn write(tx: &mut Tx, key: &str, count: &Count) -> Result<(), Error> {
    queries::write(
        tx,
        key,
        (count.failures, count.last_failure_at, count.blocked_until),
    )
    .await
}

async fn delete(tx: &mut Tx, key: &str) -> Result<(), Error> {
    queries::delete(tx, key).await
}

/// How long a key with `failures` failures in a row waits before its next attempt.
fn delay(config: &ThrottleConfig, key: &Key, failures: i64) -> Duration {
    if failures >= i64::from(key.lock_at) {
        config.lock_duration
    } else if failures <= i64::from(key.grace) {
        Duration::ZERO
    } else {
        let exponent = u32::try_from(failures - i64::from(key.grace) - 1)
            .unwrap_or(u32::MAX)
            .min(16);
        Duration::from_secs(1u64 << exponent).min(MAX_DELAY)
    }
}

/// An attempt that was let through and counted as a failure until it is shown to be right.
#[derive(Debug)]
#[must_use = "a reservation stays counted as a failure unless refunded or succeeded"]
pub struct Reservation {
    keys: Vec<Key>,
    locked: bool,
}

/// Makes sure `key` has a row and locks it (`FOR UPDATE` on PostgreSQL; SQLite's one writer
/// holds the whole database), returning its count. A success or the housekeeping may delete the
/// row between the insert and the lock: then it is inserted again, so that an attempt always
/// holds the rows of its keys, taken in the keys' order. Without that, two attempts could each
/// hold one key and wait for the other's (a deadlock on PostgreSQL, answered 500).
async fn lock_row(tx: &mut Tx, key: &str) -> Result<Option<Count>, Error> {
    for _ in 0..3 {
        queries::ensure(tx, key).await?;
        if let Some(count) = read(tx, key).await? {
            return Ok(Some(count));
        }
    }
    Err(Error::Unavailable(
        "a sign-in throttle row keeps being deleted: try again".into(),
    ))
}

/// Lets an attempt through unless a key is blocked (then: how long to wait), and counts it
/// under every key, in one transaction; the attempt that reaches a key's lock threshold locks it.
pub async fn reserve(
    db: &Db,
    config: &ThrottleConfig,
    keys: Vec<Key>,
    now: OffsetDateTime,
) -> Result<Result<Reservation, Duration>, Error> {
    let mut tx = db.begin().await?;
    let mut counts = Vec::with_capacity(keys.len());
    let mut wait: Option<Duration> = None;
    for key in &keys {
        let count = lock_row(&mut tx, &key.name).await?;
        if let Some(c) = count.as_ref().filter(|c| c.blocked_until > now) {
            let left = Duration::try_from(c.blocked_until - now).unwrap_or_default();
            wait = Some(wait.map_or(left, |w| w.max(left)));
        }
        counts.push(count);
    }
    if let Some(wait) = wait {
        return Ok(Err(wait));
    }
    let fresh_after = now - config.lock_duration;
    let mut locked = false;
    for (key, count) in keys.iter().zip(counts) {
        // A key that has been quiet for the lock duration starts over.
        let (failures, blocked_until) = match count {
            Some(c) if c.last_failure_at > fresh_after => (c.failures + 1, c.blocked_until),
            _ => (1, now),
        };
        let locks = failures >= i64::from(key.lock_at);
        locked |= failures == i64::from(key.lock_at);
        let count = Count {
            failures,
            last_failure_at: now,
            blocked_until: if locks {
                now + config.lock_duration
            } else {
                blocked_until
            },
        };
        write(&mut tx, &key.name, &count).await?;
    }
    tx.commit().await?;
    Ok(Ok(Reservation { keys, locked }))
}

impl Reservation {
    /// A reservation that counts nothing: for a first factor no throttle applies to (a 256-bit
    /// link), so the rest of the sign-in runs the same way.
    pub fn none() -> Self {
        Self {
            keys: Vec::new(),
            locked: false,
        }
    }

    /// Whether this attempt, if it fails, is the one that locked a key.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The factor was wrong: the attempt stays counted, and each key waits the delay its count
    /// calls for before the next attempt.
    pub async fn fail(
        self,
        db: &Db,
        config: &ThrottleConfig,
        now: OffsetDateTime,
    ) -> Result<(), Error> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin().await?;
        for key in &self.keys {
            let Some(mut count) = read(&mut tx, &key.name).await? else {
                continue;
            };
            count.blocked_until = count
                .blocked_until
                .max(now + delay(config, key, count.failures));
            write(&mut tx, &key.name, &count).await?;
        }
        tx.commit().await
    }

    /// The factor was right but another is due: the attempt gives its count back and leaves no
    /// delay behind it (a lock reached by others stays).
    pub async fn refund(self, db: &Db, now: OffsetDateTime) -> Result<(), Error> {
        self.settle(db, now, false).await
    }

    /// The last factor was right: the address starts over, the client gets its attempt back.
    pub async fn succeed(self, db: &Db, now: OffsetDateTime) -> Result<(), Error> {
        self.settle(db, now, true).await
    }

    async fn settle(self, db: &Db, now: OffsetDateTime, clear_address: bool) -> Result<(), Error> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut tx = db.begin().await?;
        for key in &self.keys {
            if clear_address && key.name.starts_with("email:") {
                delete(&mut tx, &key.name).await?;
                continue;
            }
            let Some(mut count) = read(&mut tx, &key.name).await? else {
                continue;
            };
            count.failures = (count.failures - 1).max(0);
            if count.failures < i64::from(key.lock_at) {
                count.blocked_until = count.blocked_until.min(now);
            }
            write(&mut tx, &key.name, &count).await?;
        }
        tx.commit().await
    }
}

/// Forgets the failures of one key (an address after a password reset).
pub async fn clear(db: &Db, key: &str) -> Result<(), Error> {
    let mut tx = db.begin().await?;
    delete(&mut tx, key).await?;
    tx.commit().await
}

/// Deletes counts that no longer matter: not blocked, and quiet for longer than a lock lasts (the
/// next failure would start over anyway). Returns how many.
pub async fn purge_quiet(
    db: &Db,
    config: &ThrottleConfig,
    now: OffsetDateTime,
) -> Result<u64, Error> {
    queries::purge_quiet(db, now, now - config.lock_duration).await
}
