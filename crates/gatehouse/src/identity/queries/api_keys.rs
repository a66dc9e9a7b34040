//! The `api_keys` table.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::identity::api_keys::{ApiKey, KeyUse};
use crate::store::{Db, Dialect, Row, Tx};

fn scopes(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

/// The user's live keys, counted after locking the user's row (PostgreSQL), which orders
/// concurrent creations so each counts after the one before has committed (SQLite's `BEGIN
/// IMMEDIATE` already serializes writers).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn lock_user_and_count_live(tx: &mut Tx, user_id: Uuid) -> Result<i64, Error> {
    if tx.dialect() == Dialect::Postgres {
        tx.query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind_uuid(user_id)
            .execute()
            .await?;
    }
    tx.query("SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL")
        .bind_uuid(user_id)
        .fetch_one()
        .await?
        .get(0)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(
    tx: &mut Tx,
    user_id: Uuid,
    key: &ApiKey,
    key_hash: &str,
) -> Result<(), Error> {
    tx.query(
        "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind_uuid(key.id)
    .bind_uuid(user_id)
    .bind(key.name.as_str())
    .bind(key.prefix.as_str())
    .bind(key_hash)
    .bind(key.scopes.join(" "))
    .bind_time(key.created_at)
    .bind_opt_time(key.expires_at)
    .execute()
    .await
    .map(drop)
}

/// The user's keys that are not revoked, newest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn list(db: &Db, user_id: Uuid) -> Result<Vec<ApiKey>, Error> {
    db.query(
        "SELECT id, name, prefix, scopes, created_at, expires_at, last_used_at FROM api_keys \
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC",
    )
    .bind_uuid(user_id)
    .fetch_all()
    .await?
    .iter()
    .map(|r| key_at(r, 0))
    .collect()
}

/// The key in the seven columns from `at`: id, name, prefix, scopes, created_at, expires_at,
/// last_used_at.
fn key_at(r: &Row, at: usize) -> Result<ApiKey, Error> {
    Ok(ApiKey {
        id: r.uuid(at)?,
        name: r.get(at + 1)?,
        prefix: r.get(at + 2)?,
        scopes: scopes(&r.get::<String>(at + 3)?),
        created_at: r.time(at + 4)?,
        expires_at: r.opt_time(at + 5)?,
        last_used_at: r.opt_time(at + 6)?,
    })
}

/// Revokes one of the user's keys; whether one was.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn revoke(
    tx: &mut Tx,
    user_id: Uuid,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let n = tx
        .query(
            "UPDATE api_keys SET revoked_at = $3 \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind_uuid(id)
        .bind_uuid(user_id)
        .bind_time(now)
        .execute()
        .await?;
    Ok(n > 0)
}

/// The live key with this hash.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find_live(
    db: &Db,
    key_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<KeyUse>, Error> {
    db.query(
        "SELECT id, user_id, scopes FROM api_keys \
         WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(key_hash)
    .bind_time(now)
    .fetch_optional()
    .await?
    .map(|r| {
        Ok(KeyUse {
            id: r.uuid(0)?,
            user_id: r.uuid(1)?,
            scopes: scopes(&r.get::<String>(2)?),
        })
    })
    .transpose()
}

/// Records a use, unless one was recorded since `since`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn record_use(
    db: &Db,
    key_hash: &str,
    now: OffsetDateTime,
    since: OffsetDateTime,
) -> Result<(), Error> {
    db.query(
        "UPDATE api_keys SET last_used_at = $2 \
         WHERE key_hash = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(key_hash)
    .bind_time(now)
    .bind_time(since)
    .execute()
    .await
    .map(drop)
}

/// The live keys of active users that expire after `now` and by `until` and were never
/// reminded, each with its owner's id, the soonest to expire first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn due_for_reminder(
    db: &Db,
    now: OffsetDateTime,
    until: OffsetDateTime,
) -> Result<Vec<(Uuid, ApiKey)>, Error> {
    db.query(
        "SELECT k.user_id, k.id, k.name, k.prefix, k.scopes, k.created_at, k.expires_at, \
         k.last_used_at FROM api_keys k JOIN users u ON u.id = k.user_id \
         WHERE k.revoked_at IS NULL AND k.reminded_at IS NULL AND u.status = 'active' \
         AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2 \
         ORDER BY k.expires_at",
    )
    .bind_time(now)
    .bind_time(until)
    .fetch_all()
    .await?
    .iter()
    .map(|r| Ok((r.uuid(0)?, key_at(r, 1)?)))
    .collect()
}

/// Marks the key reminded at `now`: `true` for the one caller (of every instance) that did.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn claim_reminder(db: &Db, id: Uuid, now: OffsetDateTime) -> Result<bool, Error> {
    let n = db
        .query("UPDATE api_keys SET reminded_at = $2 WHERE id = $1 AND reminded_at IS NULL")
        .bind_uuid(id)
        .bind_time(now)
        .execute()
        .await?;
    Ok(n == 1)
}

/// Undoes [`claim_reminder`] when the reminder could not be queued.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn release_reminder(db: &Db, id: Uuid) -> Result<(), Error> {
    db.query("UPDATE api_keys SET reminded_at = NULL WHERE id = $1")
        .bind_uuid(id)
        .execute()
        .await
        .map(drop)
}
