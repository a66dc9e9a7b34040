//! The `sessions` table (the database session store).

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::identity::sessions::Session;
use crate::store::{Db, Row};

/// The columns every session query reads, in [`session`]'s order.
macro_rules! select_sessions {
    ($rest:literal) => {
        concat!(
            "SELECT id_hash, user_id, csrf_secret, created_at, last_seen_at, expires_at, \
             authenticated_at, client_ip, user_agent FROM sessions ",
            $rest
        )
    };
}

fn session(row: &Row) -> Result<Session, Error> {
    let secret = zeroize::Zeroizing::new(row.get::<Vec<u8>>(2)?);
    Ok(Session {
        id_hash: row.get(0)?,
        user_id: row.uuid(1)?,
        csrf_secret: secret
            .as_slice()
            .try_into()
            .map(zeroize::Zeroizing::new)
            .map_err(|_| Error::Internal(anyhow::anyhow!("bad CSRF secret length in a session")))?,
        created_at: row.time(3)?,
        last_seen_at: row.time(4)?,
        expires_at: row.time(5)?,
        authenticated_at: row.time(6)?,
        client_ip: row.get(7)?,
        user_agent: row.get(8)?,
    })
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(db: &Db, s: &Session) -> Result<(), Error> {
    db.query(
        "INSERT INTO sessions (id_hash, user_id, csrf_secret, created_at, last_seen_at, expires_at, \
         authenticated_at, client_ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(s.id_hash.as_str())
    .bind_uuid(s.user_id)
    .bind(&s.csrf_secret[..])
    .bind_time(s.created_at)
    .bind_time(s.last_seen_at)
    .bind_time(s.expires_at)
    .bind_time(s.authenticated_at)
    .bind(s.client_ip.as_deref())
    .bind(s.user_agent.as_deref())
    .execute()
    .await
    .map(drop)
}

/// The session with this token hash (the lookup of every signed-in request).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn get(db: &Db, id_hash: &str) -> Result<Option<Session>, Error> {
    db.query(select_sessions!("WHERE id_hash = $1"))
        .bind(id_hash)
        .fetch_optional()
        .await?
        .as_ref()
        .map(session)
        .transpose()
}

/// The user's sessions, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn list(db: &Db, user_id: Uuid) -> Result<Vec<Session>, Error> {
    db.query(select_sessions!(
        "WHERE user_id = $1 ORDER BY created_at, id_hash"
    ))
    .bind_uuid(user_id)
    .fetch_all()
    .await?
    .iter()
    .map(session)
    .collect()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn update_last_seen(
    db: &Db,
    id_hash: &str,
    last_seen_at: OffsetDateTime,
) -> Result<(), Error> {
    db.query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
        .bind(id_hash)
        .bind_time(last_seen_at)
        .execute()
        .await
        .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete(db: &Db, id_hash: &str) -> Result<(), Error> {
    db.query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute()
        .await
        .map(drop)
}

/// Deletes sessions past their absolute deadline or idle since `idle_cutoff`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge(
    db: &Db,
    now: OffsetDateTime,
    idle_cutoff: OffsetDateTime,
) -> Result<u64, Error> {
    db.query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
        .bind_time(now)
        .bind_time(idle_cutoff)
        .execute()
        .await
}

/// Keeps a pending flow's state until `expires_at`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert_pending(
    db: &Db,
    key_hash: &str,
    payload: &str,
    expires_at: OffsetDateTime,
) -> Result<(), Error> {
    db.query("INSERT INTO pending_flows (key_hash, payload, expires_at) VALUES ($1, $2, $3)")
        .bind(key_hash)
        .bind(payload)
        .bind_time(expires_at)
        .execute()
        .await
        .map(drop)
}

/// Deletes a pending flow's state and returns it: of two concurrent takes, exactly one gets it.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn take_pending(db: &Db, key_hash: &str) -> Result<Option<String>, Error> {
    db.query("DELETE FROM pending_flows WHERE key_hash = $1 RETURNING payload")
        .bind(key_hash)
        .fetch_optional()
        .await?
        .map(|row| row.get(0))
        .transpose()
}

/// Deletes pending flows past their deadline.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge_pending(db: &Db, now: OffsetDateTime) -> Result<u64, Error> {
    db.query("DELETE FROM pending_flows WHERE expires_at <= $1")
        .bind_time(now)
        .execute()
        .await
}
