//! The audit trail: append-only, SHA-256 hash-chained records of every security-relevant change.
//!
//! [`record`] is the one way to write a record. It takes the caller's transaction, so a change
//! and its record commit (or roll back) together. Each record stores the hash of the record
//! before it (`prev_hash`) and its own `hash` over a canonical encoding of every field, so
//! editing, removing or reordering a record breaks the chain, which [`verify`] detects and
//! locates. [`head`] returns the newest hash: kept elsewhere, it also catches the removal of the
//! newest records (`audit verify --head`).
//!
//! # Security
//! - **No forks.** Two writers must never both append after the same record. On PostgreSQL
//!   [`record`] takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`) before reading
//!   the head, so appends from every instance are serialized until their transactions end. On
//!   SQLite the caller's transaction began `IMMEDIATE` ([`crate::store::Db::begin`]), which holds
//!   the database's single write lock from the start. On both, `prev_hash` is `UNIQUE`: even a
//!   writer that bypassed the lock would fail rather than fork the chain.
//! - **Append-only.** Database triggers refuse `UPDATE`, `DELETE` (and `TRUNCATE` on
//!   PostgreSQL). Someone with full database access can drop them; the hash chain is what makes
//!   such tampering visible.
//! - Records hold no secrets: callers put identifiers and before/after values in `changes`,
//!   never tokens or passwords.

mod queries;

use std::net::IpAddr;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{Db, Tx, now, timestamp_text};

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Gatehouse itself (startup tasks, workers).
    System,
    /// An operator at the command line.
    Cli,
    /// A signed-in user.
    User(Uuid),
}

impl Actor {
    /// The stored form: `system`, `cli` or `user:<uuid>`.
    pub fn to_stored(&self) -> String {
        match self {
            Self::System => "system".into(),
            Self::Cli => "cli".into(),
            Self::User(id) => format!("user:{id}"),
        }
    }
}

/// Who, from where, within which request.
#[derive(Clone, Debug)]
pub struct AuditContext {
    /// Who acted.
    pub actor: Actor,
    /// The client's address, when the change came over HTTP.
    pub client_ip: Option<IpAddr>,
    /// The request ID, when the change came over HTTP.
    pub request_id: Option<String>,
}

impl AuditContext {
    /// A change made from the command line.
    pub fn cli() -> Self {
        Self {
            actor: Actor::Cli,
            client_ip: None,
            request_id: None,
        }
    }

    /// A change made over HTTP by the signed-in user `user_id`, from `client_ip`, in the request
    /// `request_id`.
    pub fn user(user_id: uuid::Uuid, client_ip: IpAddr, request_id: &str) -> Self {
        Self {
            actor: Actor::User(user_id),
            client_ip: Some(client_ip),
            request_id: Some(request_id.to_owned()),
        }
    }

    /// A change made by Gatehouse itself.
    pub fn system() -> Self {
        Self {
            actor: Actor::System,
            client_ip: None,
            request_id: None,
        }
    }
}

/// What happened.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// Stable dotted name, e.g. `user.create`.
    pub action: &'static str,
    /// The kind of thing changed, e.g. `user`.
    pub entity_type: &'static str,
    /// Its identifier.
    pub entity_id: Option<String>,
    /// Before/after values or other details, as JSON. Never secrets.
    pub changes: Value,
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log.
    pub id: i64,
    /// When it was written (UTC, microseconds).
    pub occurred_at: OffsetDateTime,
    /// `system`, `cli` or `user:<uuid>`.
    pub actor: String,
    /// Client address, when over HTTP.
    pub client_ip: Option<String>,
    /// Action name.
    pub action: String,
    /// Entity kind.
    pub entity_type: String,
    /// Entity identifier.
    pub entity_id: Option<String>,
    /// The JSON text exactly as hashed.
    pub changes: String,
    /// Request ID, when over HTTP.
    pub request_id: Option<String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record's contents should have.
    pub fn computed_hash(&self) -> String {
        chain_hash(
            &timestamp_text(self.occurred_at),
            &self.actor,
            self.client_ip.as_deref(),
            &self.action,
            &self.entity_type,
            self.entity_id.as_deref(),
            &self.changes,
            self.request_id.as_deref(),
            &self.prev_hash,
        )
    }
}

/// SHA-256 over a canonical JSON array of the fields (JSON escaping makes the encoding
/// unambiguous: no field can spill into the next). Version-tagged so the encoding can evolve.
#[allow(clippy::too_many_arguments)]
fn chain_hash(
    occurred_at: &str,
    actor: &str,
    client_ip: Option<&str>,
    action: &str,
    entity_type: &str,
    entity_id: Option<&str>,
    changes: &str,
    request_id: Option<&str>,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        "gatehouse-audit-v1",
        occurred_at,
        actor,
        client_ip,
        action,
        entity_type,
        entity_id,
        changes,
        request_id,
        prev_hash
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Records `event` in a transaction of its own: for what changes nothing else, such as a read
/// of someone else's records (ASVS V8.3.5).
pub async fn record_alone(db: &Db, ctx: &AuditContext, event: AuditEvent) -> Result<i64, Error> {
    let mut tx = db.begin().await?;
    let id = record(&mut tx, ctx, event).await?;
    tx.commit().await?;
    Ok(id)
}

/// Appends a record inside the caller's transaction; returns its id.
pub async fn record(tx: &mut Tx, ctx: &AuditContext, event: AuditEvent) -> Result<i64, Error> {
    let occurred_at = now();
    let actor = ctx.actor.to_stored();
    let client_ip = ctx.client_ip.map(|ip| ip.to_string());
    // serde_json's maps are sorted, so equal values always serialize to the same text.
    let changes = event.changes.to_string();

    let prev_hash = queries::lock_head(tx).await?;
    let prev_hash = prev_hash.unwrap_or_else(|| GENESIS_HASH.to_owned());
    let hash = chain_hash(
        &timestamp_text(occurred_at),
        &actor,
        client_ip.as_deref(),
        event.action,
        event.entity_type,
        event.entity_id.as_deref(),
        &changes,
        ctx.request_id.as_deref(),
        &prev_hash,
    );

    let id = queries::insert(
        tx,
        &queries::NewRecord {
            occurred_at,
            actor: &actor,
            client_ip: client_ip.as_deref(),
            action: event.action,
            entity_type: event.entity_type,
            entity_id: event.entity_id.as_deref(),
            changes: &changes,
            request_id: ctx.request_id.as_deref(),
            prev_hash: &prev_hash,
            hash: &hash,
        },
    )
    .await?;
    tracing::debug!(audit_id = id, action = event.action, "audit record written");
    Ok(id)
}

/// Records with an id above `after_id`, oldest first, at most `limit`.
pub async fn records_after(db: &Db, after_id: i64, limit: i64) -> Result<Vec<AuditRecord>, Error> {
    queries::records_after(db, after_id, limit).await
}

/// Number of records.
pub async fn count(db: &Db) -> Result<u64, Error> {
    Ok(u64::try_from(queries::count(db).await?).unwrap_or(0))
}

/// The newest record's id and hash, or `None` for an empty log.
pub async fn head(db: &Db) -> Result<Option<(i64, String)>, Error> {
    queries::head(db).await
}

/// Where and how the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// The first record that does not verify (`None`: the anchor check failed on the head).
    pub id: Option<i64>,
    /// What is wrong, in words.
    pub reason: String,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub checked: u64,
    /// The newest hash seen.
    pub head: Option<String>,
    /// The first break, if any.
    pub broken: Option<Break>,
}

/// Walks the whole chain oldest first and reports the first broken record. `anchor` is a head
/// hash kept elsewhere; when given, the chain must contain it and end there, so removed or
/// altered newest records are caught too. `progress` is called with the number checked so far.
pub async fn verify(
    db: &Db,
    anchor: Option<&str>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, Error> {
    const BATCH: i64 = 1_000;
    let mut expected_prev = GENESIS_HASH.to_owned();
    let mut last_id = 0;
    let mut checked = 0;
    let mut anchor_seen_at: Option<i64> = None;
    loop {
        let batch = records_after(db, last_id, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for record in &batch {
            if record.prev_hash != expected_prev {
                return Ok(broken(
                    checked,
                    record,
                    "its prev_hash is not the hash of the record before it: a record was removed, inserted or reordered",
                ));
            }
            if record.computed_hash() != record.hash {
                return Ok(broken(
                    checked,
                    record,
                    "its contents do not match its hash: the record was edited",
                ));
            }
            if anchor == Some(record.hash.as_str()) {
                anchor_seen_at = Some(record.id);
            }
            expected_prev.clone_from(&record.hash);
            last_id = record.id;
            checked += 1;
        }
        progress(checked);
    }
    let head = (checked > 0).then_some(expected_prev);
    let broken = match (anchor, anchor_seen_at) {
        (None, _) => None,
        (Some(a), _) if head.as_deref() == Some(a) => None,
        (Some(_), Some(id)) => Some(Break {
            id: None,
            reason: format!(
                "the anchor is record {id}, but records were appended after it; verify with the newest head to cover them"
            ),
        }),
        (Some(_), None) => Some(Break {
            id: None,
            reason:
                "the anchor hash is not in the chain: the newest records were removed or altered"
                    .into(),
        }),
    };
    Ok(VerifyReport {
        checked,
        head,
        broken,
    })
}

fn broken(checked: u64, record: &AuditRecord, reason: &str) -> VerifyReport {
    VerifyReport {
        checked,
        head: None,
        broken: Some(Break {
            id: Some(record.id),
            reason: reason.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditRecord {
        let mut r = AuditRecord {
            id: 1,
            occurred_at: crate::store::parse_timestamp("2026-11-23T10:00:00.123456Z").unwrap(),
            actor: "cli".into(),
            client_ip: None,
            action: "user.create".into(),
            entity_type: "user".into(),
            entity_id: Some("42".into()),
            changes: r#"{"role":"admin"}"#.into(),
            request_id: None,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        r.hash = r.computed_hash();
        r
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = sample();
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.actor = "user:x".into()),
            Box::new(|r| r.client_ip = Some("10.0.0.1".into())),
            Box::new(|r| r.action = "user.delete".into()),
            Box::new(|r| r.entity_type = "item".into()),
            Box::new(|r| r.entity_id = None),
            Box::new(|r| r.changes = r#"{"role":"user"}"#.into()),
            Box::new(|r| r.request_id = Some("r".into())),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
            Box::new(|r| r.occurred_at += time::Duration::microseconds(1)),
        ];
        for edit in edits {
            let mut r = base.clone();
            edit(&mut r);
            assert_ne!(r.computed_hash(), base.hash);
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let a = chain_hash("t", "ab", None, "c", "e", None, "{}", None, GENESIS_HASH);
        let b = chain_hash("t", "a", None, "bc", "e", None, "{}", None, GENESIS_HASH);
        assert_ne!(a, b);
    }
}
