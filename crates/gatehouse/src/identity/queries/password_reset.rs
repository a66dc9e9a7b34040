//! The `password_resets` table (and the sign-in links a reset ends).

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{Db, Tx};

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(
    db: &Db,
    token_hash: &str,
    user_id: Uuid,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> Result<(), Error> {
    db.query(
        "INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind_uuid(user_id)
    .bind_time(created_at)
    .bind_time(expires_at)
    .execute()
    .await
    .map(drop)
}

/// The user of a live token.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn live_user(
    db: &Db,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, Error> {
    db.query(
        "SELECT user_id FROM password_resets \
         WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind_time(now)
    .fetch_optional()
    .await?
    .map(|r| r.uuid(0))
    .transpose()
}

/// Uses a live token up; its user.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn consume(
    tx: &mut Tx,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, Error> {
    tx.query(
        "UPDATE password_resets SET consumed_at = $2 \
         WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2 RETURNING user_id",
    )
    .bind(token_hash)
    .bind_time(now)
    .fetch_optional()
    .await?
    .map(|r| r.uuid(0))
    .transpose()
}

/// Ends the user's pending reset tokens and the pending sign-in links of their address.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn revoke_pending(
    tx: &mut Tx,
    user_id: Uuid,
    email: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    tx.query(
        "UPDATE password_resets SET consumed_at = $2 WHERE user_id = $1 AND consumed_at IS NULL",
    )
    .bind_uuid(user_id)
    .bind_time(now)
    .execute()
    .await?;
    tx.query("UPDATE magic_links SET consumed_at = $2 WHERE email = $1 AND consumed_at IS NULL")
        .bind(email)
        .bind_time(now)
        .execute()
        .await
        .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge(db: &Db, cutoff: OffsetDateTime) -> Result<u64, Error> {
    db.query("DELETE FROM password_resets WHERE expires_at < $1 OR consumed_at < $1")
        .bind_time(cutoff)
        .execute()
        .await
}
