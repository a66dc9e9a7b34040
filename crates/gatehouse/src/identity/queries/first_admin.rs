//! The `setup_tokens` table and the first admin's lock.

use time::OffsetDateTime;

use crate::error::Error;
use crate::store::{Db, Dialect, Tx};

/// Takes the PostgreSQL advisory lock `key` until the transaction ends (SQLite's write
/// transaction already excludes other writers).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn lock(tx: &mut Tx, key: i64) -> Result<(), Error> {
    if tx.dialect() == Dialect::Postgres {
        tx.query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute()
            .await?;
    }
    Ok(())
}

/// Deletes tokens that expired before `cutoff`, then stores a new one.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn replace_dead_with(
    db: &Db,
    cutoff: OffsetDateTime,
    token_hash: &str,
    now: OffsetDateTime,
    expires: OffsetDateTime,
) -> Result<(), Error> {
    db.query("DELETE FROM setup_tokens WHERE expires_at < $1")
        .bind_time(cutoff)
        .execute()
        .await?;
    db.query("INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind_time(now)
        .bind_time(expires)
        .execute()
        .await
        .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn is_live(db: &Db, token_hash: &str, now: OffsetDateTime) -> Result<bool, Error> {
    let found = db
        .query(
            "SELECT 1 FROM setup_tokens \
             WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind_time(now)
        .fetch_optional()
        .await?;
    Ok(found.is_some())
}

/// Uses the token once: whether it was live.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn consume(
    tx: &mut Tx,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let used = tx
        .query(
            "UPDATE setup_tokens SET consumed_at = $2 \
             WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2 \
             RETURNING token_hash",
        )
        .bind(token_hash)
        .bind_time(now)
        .fetch_optional()
        .await?;
    Ok(used.is_some())
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn end_all(tx: &mut Tx, now: OffsetDateTime) -> Result<(), Error> {
    tx.query("UPDATE setup_tokens SET consumed_at = $1 WHERE consumed_at IS NULL")
        .bind_time(now)
        .execute()
        .await
        .map(drop)
}
