//! The TOTP columns of `users` and the `recovery_codes` table.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{Db, Tx};

/// The sealed `(totp_secret, totp_pending)` of a user (both `None` for an unknown user).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn sealed(
    db: &Db,
    user_id: Uuid,
) -> Result<(Option<String>, Option<String>), Error> {
    let row = db
        .query("SELECT totp_secret, totp_pending FROM users WHERE id = $1")
        .bind_uuid(user_id)
        .fetch_optional()
        .await?;
    Ok(match row {
        Some(r) => (r.get(0)?, r.get(1)?),
        None => (None, None),
    })
}

/// Keeps a new secret pending, unless MFA is on; whether it was kept.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn set_pending(db: &Db, user_id: Uuid, sealed: &str) -> Result<bool, Error> {
    let n = db
        .query("UPDATE users SET totp_pending = $2 WHERE id = $1 AND totp_enabled_at IS NULL")
        .bind_uuid(user_id)
        .bind(sealed)
        .execute()
        .await?;
    Ok(n > 0)
}

/// Makes the pending secret `sealed` (and only it) the secret; whether it did.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn enable(
    tx: &mut Tx,
    user_id: Uuid,
    sealed: &str,
    now: OffsetDateTime,
    step: i64,
) -> Result<bool, Error> {
    let n = tx
        .query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_enabled_at = $3, \
             totp_last_step = $4 \
             WHERE id = $1 AND totp_pending = $2 AND totp_enabled_at IS NULL",
        )
        .bind_uuid(user_id)
        .bind(sealed)
        .bind_time(now)
        .bind(step)
        .execute()
        .await?;
    Ok(n > 0)
}

/// Spends an unused recovery code of a user with MFA on; whether one was.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn spend_recovery_code(
    tx: &mut Tx,
    user_id: Uuid,
    code_mac: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let n = tx
        .query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND code_mac = $2 AND used_at IS NULL \
             AND EXISTS (SELECT 1 FROM users WHERE id = $1 AND totp_enabled_at IS NOT NULL)",
        )
        .bind_uuid(user_id)
        .bind(code_mac)
        .bind_time(now)
        .execute()
        .await?;
    Ok(n > 0)
}

/// Records `step` as the last accepted TOTP step if it is later than every one before; whether
/// it was.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn advance_step(db: &Db, user_id: Uuid, step: i64) -> Result<bool, Error> {
    let n = db
        .query(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_enabled_at IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind_uuid(user_id)
        .bind(step)
        .execute()
        .await?;
    Ok(n == 1)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count_unused_recovery_codes(db: &Db, user_id: Uuid) -> Result<i64, Error> {
    db.query("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind_uuid(user_id)
        .fetch_one()
        .await?
        .get(0)
}

/// Whether the user has MFA on (`None`: no such user), the user's row locked (PostgreSQL).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn enabled_for_update(tx: &mut Tx, user_id: Uuid) -> Result<Option<bool>, Error> {
    let sql = tx.dialect().pick(
        "SELECT totp_enabled_at IS NOT NULL FROM users WHERE id = $1",
        "SELECT totp_enabled_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE",
    );
    tx.query(sql)
        .bind_uuid(user_id)
        .fetch_optional()
        .await?
        .map(|r| r.get(0))
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert_recovery_code(
    tx: &mut Tx,
    user_id: Uuid,
    code_mac: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    tx.query("INSERT INTO recovery_codes (user_id, code_mac, created_at) VALUES ($1, $2, $3)")
        .bind_uuid(user_id)
        .bind(code_mac)
        .bind_time(now)
        .execute()
        .await
        .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete_recovery_codes(tx: &mut Tx, user_id: Uuid) -> Result<(), Error> {
    tx.query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind_uuid(user_id)
        .execute()
        .await
        .map(drop)
}

/// Removes the secret and any pending enrolment; whether there was either.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn clear(tx: &mut Tx, user_id: Uuid) -> Result<bool, Error> {
    let n = tx
        .query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_enabled_at = NULL, \
             totp_last_step = NULL \
             WHERE id = $1 AND (totp_enabled_at IS NOT NULL OR totp_pending IS NOT NULL)",
        )
        .bind_uuid(user_id)
        .execute()
        .await?;
    Ok(n > 0)
}

/// A user's id with their sealed `totp_secret` and `totp_pending`.
pub(crate) type SealedRow = (Uuid, Option<String>, Option<String>);

/// Every user with a sealed secret or pending enrolment: `(id, totp_secret, totp_pending)`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn all_sealed(db: &Db) -> Result<Vec<SealedRow>, Error> {
    db.query(
        "SELECT id, totp_secret, totp_pending FROM users \
         WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL",
    )
    .fetch_all()
    .await?
    .iter()
    .map(|r| Ok((r.uuid(0)?, r.get(1)?, r.get(2)?)))
    .collect()
}

/// Which sealed column.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Sealed {
    /// `totp_secret`.
    Secret,
    /// `totp_pending`.
    Pending,
}

/// Replaces the sealed value of a column if it is still `old`; whether it did.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn reseal(
    db: &Db,
    column: Sealed,
    user_id: Uuid,
    old: &str,
    fresh: &str,
) -> Result<bool, Error> {
    let sql = match column {
        Sealed::Secret => "UPDATE users SET totp_secret = $1 WHERE id = $2 AND totp_secret = $3",
        Sealed::Pending => "UPDATE users SET totp_pending = $1 WHERE id = $2 AND totp_pending = $3",
    };
    db.query(sql)
        .bind(fresh)
        .bind_uuid(user_id)
        .bind(old)
        .execute()
        .await
        .map(|n| n > 0)
}
