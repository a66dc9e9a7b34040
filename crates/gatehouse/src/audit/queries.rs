//! The `audit_log` table.

use time::OffsetDateTime;

use super::AuditRecord;
use crate::error::Error;
use crate::store::{Db, Dialect, Row, Tx};

/// Key of the PostgreSQL advisory lock that serializes appends ("GHAUDIT" in ASCII); SQLite's
/// write transaction already excludes other writers.
const PG_AUDIT_LOCK: i64 = 0x0047_4841_5544_4954;

/// The newest record's hash, the chain's head held until the transaction ends.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn lock_head(tx: &mut Tx) -> Result<Option<String>, Error> {
    if tx.dialect() == Dialect::Postgres {
        tx.query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_AUDIT_LOCK)
            .execute()
            .await?;
    }
    tx.query("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional()
        .await?
        .map(|r| r.get(0))
        .transpose()
}

/// A record as stored, before it has an id.
pub(crate) struct NewRecord<'a> {
    pub(crate) occurred_at: OffsetDateTime,
    pub(crate) actor: &'a str,
    pub(crate) client_ip: Option<&'a str>,
    pub(crate) action: &'a str,
    pub(crate) entity_type: &'a str,
    pub(crate) entity_id: Option<&'a str>,
    pub(crate) changes: &'a str,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) prev_hash: &'a str,
    pub(crate) hash: &'a str,
}

/// Appends a record; its id.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(tx: &mut Tx, r: &NewRecord<'_>) -> Result<i64, Error> {
    tx.query(
        "INSERT INTO audit_log (occurred_at, actor, client_ip, action, entity_type, entity_id, \
         changes, request_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind_time(r.occurred_at)
    .bind(r.actor)
    .bind(r.client_ip)
    .bind(r.action)
    .bind(r.entity_type)
    .bind(r.entity_id)
    .bind(r.changes)
    .bind(r.request_id)
    .bind(r.prev_hash)
    .bind(r.hash)
    .fetch_one()
    .await?
    .get(0)
}

fn record(row: &Row) -> Result<AuditRecord, Error> {
    Ok(AuditRecord {
        id: row.get(0)?,
        occurred_at: row.time(1)?,
        actor: row.get(2)?,
        client_ip: row.get(3)?,
        action: row.get(4)?,
        entity_type: row.get(5)?,
        entity_id: row.get(6)?,
        changes: row.get(7)?,
        request_id: row.get(8)?,
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    })
}

/// Records with an id above `after_id`, oldest first, at most `limit`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn records_after(
    db: &Db,
    after_id: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, Error> {
    db.query(
        "SELECT id, occurred_at, actor, client_ip, action, entity_type, entity_id, changes, \
         request_id, prev_hash, hash FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all()
    .await?
    .iter()
    .map(record)
    .collect()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count(db: &Db) -> Result<i64, Error> {
    db.query("SELECT COUNT(*) FROM audit_log")
        .fetch_one()
        .await?
        .get(0)
}

/// The newest record's id and hash.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn head(db: &Db) -> Result<Option<(i64, String)>, Error> {
    db.query("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
        .fetch_optional()
        .await?
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .transpose()
}
