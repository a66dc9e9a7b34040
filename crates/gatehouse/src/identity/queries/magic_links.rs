//! The `magic_links` table.

use time::OffsetDateTime;

use crate::error::Error;
use crate::store::{Db, On, Tx, query};

/// A new link, as stored.
pub(crate) struct NewLink<'a> {
    pub(crate) token_hash: &'a str,
    pub(crate) email: &'a str,
    pub(crate) code_mac: &'a str,
    pub(crate) next: Option<&'a str>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) expires_at: OffsetDateTime,
}

/// A link is usable while it is unused, unexpired and below the limit of wrong codes: `$1` the
/// token hash, `$2` now, `$3` the limit. Showing a link and using it test the same condition.
const USABLE: &str =
    "token_hash = $1 AND consumed_at IS NULL AND expires_at > $2 AND failed_attempts < $3";

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(db: &Db, link: &NewLink<'_>) -> Result<(), Error> {
    db.query(
        "INSERT INTO magic_links (token_hash, email, code_mac, next_path, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(link.token_hash)
    .bind(link.email)
    .bind(link.code_mac)
    .bind(link.next)
    .bind_time(link.created_at)
    .bind_time(link.expires_at)
    .execute()
    .await
    .map(drop)
}

/// Consumes the usable link with this hash: its `(email, next_path)`, or `None`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn consume<'c>(
    on: impl Into<On<'c>>,
    now: OffsetDateTime,
    hash: &str,
    max_attempts: i64,
) -> Result<Option<(String, Option<String>)>, Error> {
    let row = query(
        on,
        &format!(
            "UPDATE magic_links SET consumed_at = $2 WHERE {USABLE} RETURNING email, next_path"
        ),
    )
    .bind(hash)
    .bind_time(now)
    .bind(max_attempts)
    .fetch_optional()
    .await?;
    row.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose()
}

/// The address of the usable link with this hash, without using it, or `None`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find_usable(
    db: &Db,
    now: OffsetDateTime,
    hash: &str,
    max_attempts: i64,
) -> Result<Option<String>, Error> {
    let row = db
        .query(&format!("SELECT email FROM magic_links WHERE {USABLE}"))
        .bind(hash)
        .bind_time(now)
        .bind(max_attempts)
        .fetch_optional()
        .await?;
    row.map(|r| r.get(0)).transpose()
}

/// The `(token_hash, code_mac)` of the address's usable links, locked (PostgreSQL) until the
/// transaction ends; SQLite's write transaction already excludes other writers.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn pending_for_update(
    tx: &mut Tx,
    now: OffsetDateTime,
    email: &str,
    max_attempts: i64,
) -> Result<Vec<(String, String)>, Error> {
    let sql = tx.dialect().pick(
        "SELECT token_hash, code_mac FROM magic_links \
         WHERE email = $1 AND consumed_at IS NULL AND expires_at > $2 AND failed_attempts < $3",
        "SELECT token_hash, code_mac FROM magic_links \
         WHERE email = $1 AND consumed_at IS NULL AND expires_at > $2 AND failed_attempts < $3 \
         FOR UPDATE",
    );
    tx.query(sql)
        .bind(email)
        .bind_time(now)
        .bind(max_attempts)
        .fetch_all()
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
}

/// Counts a wrong code against every usable link of the address, never beyond `max_attempts`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count_failure(
    tx: &mut Tx,
    now: OffsetDateTime,
    email: &str,
    max_attempts: i64,
) -> Result<u64, Error> {
    tx.query(
        "UPDATE magic_links SET failed_attempts = failed_attempts + 1 \
         WHERE email = $1 AND consumed_at IS NULL AND expires_at > $2 AND failed_attempts < $3",
    )
    .bind(email)
    .bind_time(now)
    .bind(max_attempts)
    .execute()
    .await
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge(db: &Db, cutoff: OffsetDateTime) -> Result<u64, Error> {
    db.query("DELETE FROM magic_links WHERE expires_at < $1 OR consumed_at < $1")
        .bind_time(cutoff)
        .execute()
        .await
}
