//! The secret key's and the signing keys' whole life: sealing everything again after a
//! secret-key change, rotating the signing key by hand or on a schedule, and keeping every
//! instance's key ring current without traffic.
//!
//! # Security
//! - `reencrypt` goes over everything sealed (data keys, TOTP secrets, signing keys) twice: the
//!   first pass seals under the current key what the previous key opens, the second must find
//!   nothing left. Something left means a value neither key opens, or an instance still running
//!   with the old key that keeps sealing under it: the previous key is then still needed, and the
//!   command says so instead of reporting success.
//! - A rotated signing key is published at once and signs only after
//!   [`tokens::PUBLICATION_DELAY`]; a retired key stays published until the last token it signed
//!   has expired ([`tokens::KeyRing::jwks`]).

use std::time::Duration;

use time::OffsetDateTime;

use super::{mfa, tokens};
use crate::audit::AuditContext;
use crate::error::Error;
use crate::keys::{Keys, Sweep};
use crate::store::Db;

/// What `gatehouse keys reencrypt` did to one kind of sealed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindReencrypted {
    /// `data keys`, `TOTP secrets` or `token signing keys`.
    pub kind: &'static str,
    /// Sealed again under the current key.
    pub resealed: usize,
    /// Still not under the current key after both passes: unreadable with either key, or sealed
    /// under the previous key again meanwhile.
    pub left: usize,
}

/// What `gatehouse keys reencrypt` did, kind by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reencrypted(pub Vec<KindReencrypted>);

impl Reencrypted {
    /// Whether everything is under the current key: the previous key can go.
    pub fn complete(&self) -> bool {
        self.0.iter().all(|k| k.left == 0)
    }
}

/// One pass over every kind of sealed secret, each named.
async fn sweep_all(db: &Db, keys: &Keys) -> Result<[(&'static str, Sweep); 3], Error> {
    Ok([
        ("data keys", keys.reseal_data_keys(db).await?),
        ("TOTP secrets", mfa::reencrypt(db, keys).await?),
        ("token signing keys", tokens::reencrypt(db, keys).await?),
    ])
}

/// Seals every secret the previous key opens under the current key, then checks that nothing is
/// left under anything but the current key.
pub async fn reencrypt(db: &Db, keys: &Keys) -> Result<Reencrypted, Error> {
    let first = sweep_all(db, keys).await?;
    let second = sweep_all(db, keys).await?;
    Ok(Reencrypted(
        first
            .iter()
            .zip(second)
            .map(|((kind, first), (_, second))| KindReencrypted {
                kind,
                resealed: first.resealed,
                // Whatever the second pass still had to reseal was sealed under the old key
                // after the first pass: something keeps using it.
                left: second.left + second.resealed,
            })
            .collect(),
    ))
}

/// Makes a new signing key now (`gatehouse keys rotate`), audited.
pub async fn rotate_signing_key(
    db: &Db,
    keys: &Keys,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<tokens::Rotated, Error> {
    tokens::rotate(db, keys, now, tokens::When::Now, Some(ctx))
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a rotation made no key")))
}

/// One turn of an instance's key upkeep at `now`: reads the keys again when the last read is
/// [`tokens::RELOAD_EVERY`] old, and with automatic rotation (`every`), makes a new key when the
/// newest is that old (one instance does; the others read it at their next turn).
pub async fn upkeep(
    db: &Db,
    keys: &Keys,
    ring: &tokens::KeyRing,
    now: OffsetDateTime,
    every: Option<Duration>,
) -> Result<(), Error> {
    if !ring.refresh_if_stale(db, keys, now).await? {
        return Ok(());
    }
    let Some(period) = every else {
        return Ok(());
    };
    let when = tokens::When::OlderThan(period);
    if let Some(rotated) =
        tokens::rotate(db, keys, now, when, Some(&AuditContext::system())).await?
    {
        tracing::info!(
            event = "signing_key_rotated",
            kid = %rotated.kid,
            signs_from = %crate::store::timestamp_text(rotated.signs_from),
            "automatic rotation: a new signing key is published and signs after the publication delay"
        );
        ring.reload(db, keys).await?;
    }
    Ok(())
}
