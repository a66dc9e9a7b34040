//! The `sign_in_failures` table.

use time::OffsetDateTime;

use crate::error::Error;
use crate::store::{Db, Tx};

/// One key's stored count: `(failures, last_failure_at, blocked_until)`.
pub(crate) type Count = (i64, OffsetDateTime, OffsetDateTime);

/// Makes sure the key has a row (an empty, long-quiet count when it had none), so that
/// [`read`] can lock it: `FOR UPDATE` locks nothing that does not exist, and two first attempts
/// would otherwise both count from zero.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn ensure(tx: &mut Tx, key: &str) -> Result<(), Error> {
    tx.query(
        "INSERT INTO sign_in_failures (key, failures, last_failure_at, blocked_until) \
         VALUES ($1, 0, $2, $2) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind_time(OffsetDateTime::UNIX_EPOCH)
    .execute()
    .await
    .map(drop)
}

/// The key's count, locked (PostgreSQL) until the transaction ends.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn read(tx: &mut Tx, key: &str) -> Result<Option<Count>, Error> {
    let sql = tx.dialect().pick(
        "SELECT failures, last_failure_at, blocked_until FROM sign_in_failures WHERE key = $1",
        "SELECT failures, last_failure_at, blocked_until FROM sign_in_failures WHERE key = $1 \
         FOR UPDATE",
    );
    let row = tx.query(sql).bind(key).fetch_optional().await?;
    row.map(|r| Ok((r.get(0)?, r.time(1)?, r.time(2)?)))
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn write(tx: &mut Tx, key: &str, count: Count) -> Result<(), Error> {
    tx.query(
        "INSERT INTO sign_in_failures (key, failures, last_failure_at, blocked_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET failures = $2, last_failure_at = $3, blocked_until = $4",
    )
    .bind(key)
    .bind(count.0)
    .bind_time(count.1)
    .bind_time(count.2)
    .execute()
    .await
    .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete(tx: &mut Tx, key: &str) -> Result<(), Error> {
    tx.query("DELETE FROM sign_in_failures WHERE key = $1")
        .bind(key)
        .execute()
        .await
        .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge_quiet(
    db: &Db,
    now: OffsetDateTime,
    quiet_since: OffsetDateTime,
) -> Result<u64, Error> {
    db.query("DELETE FROM sign_in_failures WHERE blocked_until < $1 AND last_failure_at < $2")
        .bind_time(now)
        .bind_time(quiet_since)
        .execute()
        .await
}
