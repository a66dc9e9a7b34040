//! The `data_keys` table.

use time::OffsetDateTime;

use crate::error::Error;
use crate::store::Db;

/// The sealed data key `name`, if it was made.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn data_key(db: &Db, name: &str) -> Result<Option<String>, Error> {
    db.query("SELECT sealed FROM data_keys WHERE name = $1")
        .bind(name)
        .fetch_optional()
        .await?
        .map(|r| r.get(0))
        .transpose()
}

/// Stores the data key `name` unless another instance stored it first.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn insert_data_key(
    db: &Db,
    name: &str,
    sealed: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    db.query(
        "INSERT INTO data_keys (name, sealed, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(sealed)
    .bind_time(now)
    .execute()
    .await
    .map(drop)
}

/// Every data key as `(name, sealed)`.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn data_keys(db: &Db) -> Result<Vec<(String, String)>, Error> {
    db.query("SELECT name, sealed FROM data_keys ORDER BY name")
        .fetch_all()
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

/// Replaces the sealed value of data key `name` if it is still `old`; whether it did.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn reseal_data_key(
    db: &Db,
    name: &str,
    old: &str,
    fresh: &str,
) -> Result<bool, Error> {
    Ok(db
        .query("UPDATE data_keys SET sealed = $1 WHERE name = $2 AND sealed = $3")
        .bind(fresh)
        .bind(name)
        .bind(old)
        .execute()
        .await?
        > 0)
}

/// Whether the tables that hold one-time-code MACs hold any: a database from before data keys,
/// whose codes were made under the key derived from the secret key alone.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn codes_made_before_data_keys(db: &Db) -> Result<bool, Error> {
    let row = db
        .query("SELECT (SELECT COUNT(*) FROM recovery_codes) + (SELECT COUNT(*) FROM magic_links)")
        .fetch_one()
        .await?;
    Ok(row.get::<i64>(0)? > 0)
}
