//! The `passkeys` table.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{Db, Row, Tx};

/// A stored passkey row.
#[derive(Debug)]
pub(crate) struct StoredPasskey {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) name: String,
    /// The library's credential (public key, counter, backup flags) as JSON.
    pub(crate) credential: String,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) last_used_at: Option<OffsetDateTime>,
}

const SELECT: &str =
    "SELECT id, user_id, name, credential, created_at, last_used_at FROM passkeys ";

fn passkey(row: &Row) -> Result<StoredPasskey, Error> {
    Ok(StoredPasskey {
        id: row.uuid(0)?,
        user_id: row.uuid(1)?,
        name: row.get(2)?,
        credential: row.get(3)?,
        created_at: row.time(4)?,
        last_used_at: row.opt_time(5)?,
    })
}

/// Adds a passkey; `false` when its credential ID is already registered (to anyone).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(
    tx: &mut Tx,
    p: &StoredPasskey,
    credential_id: &str,
) -> Result<bool, Error> {
    let added = tx
        .query(
            "INSERT INTO passkeys (id, user_id, credential_id, name, credential, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind_uuid(p.id)
        .bind_uuid(p.user_id)
        .bind(credential_id)
        .bind(p.name.as_str())
        .bind(p.credential.as_str())
        .bind_time(p.created_at)
        .execute()
        .await?;
    Ok(added > 0)
}

/// The user's passkeys, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn list(db: &Db, user_id: Uuid) -> Result<Vec<StoredPasskey>, Error> {
    db.query(&format!(
        "{SELECT}WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind_uuid(user_id)
    .fetch_all()
    .await?
    .iter()
    .map(passkey)
    .collect()
}

/// Whether the user has a passkey.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn any(db: &Db, user_id: Uuid) -> Result<bool, Error> {
    let count: i64 = db
        .query("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
        .bind_uuid(user_id)
        .fetch_one()
        .await?
        .get(0)?;
    Ok(count > 0)
}

/// The passkey with this credential ID (base64url), whoever's.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn by_credential_id(
    db: &Db,
    credential_id: &str,
) -> Result<Option<StoredPasskey>, Error> {
    db.query(&format!("{SELECT}WHERE credential_id = $1"))
        .bind(credential_id)
        .fetch_optional()
        .await?
        .as_ref()
        .map(passkey)
        .transpose()
}

/// Records a use: the credential as the library updated it (counter, backup state) and when.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn record_use(
    db: &Db,
    id: Uuid,
    credential: &str,
    now: OffsetDateTime,
) -> Result<(), Error> {
    db.query("UPDATE passkeys SET credential = $2, last_used_at = $3 WHERE id = $1")
        .bind_uuid(id)
        .bind(credential)
        .bind_time(now)
        .execute()
        .await
        .map(drop)
}

/// Removes one of the user's passkeys; its name when it was theirs.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete(tx: &mut Tx, user_id: Uuid, id: Uuid) -> Result<Option<String>, Error> {
    tx.query("DELETE FROM passkeys WHERE user_id = $1 AND id = $2 RETURNING name")
        .bind_uuid(user_id)
        .bind_uuid(id)
        .fetch_optional()
        .await?
        .map(|row| row.get(0))
        .transpose()
}
