//! The `known_devices` table.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::Tx;

/// How many devices the user has signed in from, as far as the table remembers.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count(tx: &mut Tx, user_id: Uuid) -> Result<i64, Error> {
    tx.query("SELECT COUNT(*) FROM known_devices WHERE user_id = $1")
        .bind_uuid(user_id)
        .fetch_one()
        .await?
        .get(0)
}

/// Marks a remembered device seen at `now`; whether it was remembered.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn touch(
    tx: &mut Tx,
    user_id: Uuid,
    device_hash: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let changed = tx
        .query("UPDATE known_devices SET last_seen_at = $3 WHERE user_id = $1 AND device_hash = $2")
        .bind_uuid(user_id)
        .bind(device_hash)
        .bind_time(now)
        .execute()
        .await?;
    Ok(changed > 0)
}

/// Remembers a device; whether this call added it (a concurrent sign-in may have just done so).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(
    tx: &mut Tx,
    user_id: Uuid,
    device_hash: &str,
    kind: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let added = tx
        .query(
            "INSERT INTO known_devices (user_id, device_hash, kind, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_id, device_hash) DO NOTHING",
        )
        .bind_uuid(user_id)
        .bind(device_hash)
        .bind(kind)
        .bind_time(now)
        .execute()
        .await?;
    Ok(added > 0)
}

/// Forgets all but the `keep` most recently seen devices of the user; how many it forgot.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn keep_newest(tx: &mut Tx, user_id: Uuid, keep: i64) -> Result<u64, Error> {
    tx.query(
        "DELETE FROM known_devices WHERE user_id = $1 AND device_hash NOT IN \
         (SELECT device_hash FROM known_devices WHERE user_id = $1 \
          ORDER BY last_seen_at DESC, device_hash LIMIT $2)",
    )
    .bind_uuid(user_id)
    .bind(keep)
    .execute()
    .await
}
