//! The `signing_keys`, `token_families` and `refresh_tokens` tables.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{Db, Tx};

/// Deletes the keys retired before `cutoff`: a later key was signing by then, so no token they
/// signed is still alive. Returns how many.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete_retired_keys(tx: &mut Tx, cutoff: OffsetDateTime) -> Result<u64, Error> {
    tx.query(
        "DELETE FROM signing_keys WHERE EXISTS (SELECT 1 FROM signing_keys n \
         WHERE n.signs_from > signing_keys.signs_from AND n.signs_from < $1)",
    )
    .bind_time(cutoff)
    .execute()
    .await
}

/// Holds off other transactions that make keys until this one ends (PostgreSQL; SQLite has one
/// writer at a time already). Plain reads go on.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn lock_keys(tx: &mut Tx) -> Result<(), Error> {
    if tx.dialect() == crate::store::Dialect::Postgres {
        tx.query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute()
            .await?;
    }
    Ok(())
}

/// When the newest key was made, if there is one.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn newest_key_made<'c>(
    on: impl Into<crate::store::On<'c>>,
) -> Result<Option<OffsetDateTime>, Error> {
    crate::store::query(
        on,
        "SELECT created_at FROM signing_keys ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_optional()
    .await?
    .map(|r| r.time(0))
    .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert_key(
    tx: &mut Tx,
    kid: &str,
    sealed: &str,
    public: &str,
    now: OffsetDateTime,
    signs_from: OffsetDateTime,
) -> Result<(), Error> {
    tx.query(
        "INSERT INTO signing_keys (kid, private_sealed, public_key, created_at, signs_from) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(kid)
    .bind(sealed)
    .bind(public)
    .bind_time(now)
    .bind_time(signs_from)
    .execute()
    .await
    .map(drop)
}

/// A stored signing key: `(kid, private_sealed, public_key, signs_from)`.
pub(crate) type KeyRow = (String, String, String, OffsetDateTime);

/// Every key, by the time it signs from, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn keys(db: &Db) -> Result<Vec<KeyRow>, Error> {
    db.query(
        "SELECT kid, private_sealed, public_key, signs_from FROM signing_keys \
         ORDER BY signs_from, created_at, kid",
    )
    .fetch_all()
    .await?
    .iter()
    .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.time(3)?)))
    .collect()
}

/// Replaces a key's sealed private part if it is still `old`; whether it did.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn reseal_key(db: &Db, kid: &str, old: &str, fresh: &str) -> Result<bool, Error> {
    Ok(db
        .query("UPDATE signing_keys SET private_sealed = $1 WHERE kid = $2 AND private_sealed = $3")
        .bind(fresh)
        .bind(kid)
        .bind(old)
        .execute()
        .await?
        > 0)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert_family(
    tx: &mut Tx,
    family: Uuid,
    user_id: Uuid,
    now: OffsetDateTime,
    expires: OffsetDateTime,
) -> Result<(), Error> {
    tx.query(
        "INSERT INTO token_families (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind_uuid(family)
    .bind_uuid(user_id)
    .bind_time(now)
    .bind_time(expires)
    .execute()
    .await
    .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert_refresh_token(
    tx: &mut Tx,
    token_hash: &str,
    family: Uuid,
    now: OffsetDateTime,
) -> Result<(), Error> {
    tx.query("INSERT INTO refresh_tokens (token_hash, family_id, created_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind_uuid(family)
        .bind_time(now)
        .execute()
        .await
        .map(drop)
}

/// Spends the token if it is live and its family neither revoked nor expired, in one
/// statement (of two concurrent uses exactly one wins); its `(family, user)`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn spend_refresh_token(
    tx: &mut Tx,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<Option<(Uuid, Uuid)>, Error> {
    tx.query(
        "UPDATE refresh_tokens SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND EXISTS (SELECT 1 FROM token_families f \
         WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL AND f.expires_at > $2) \
         RETURNING family_id, \
         (SELECT user_id FROM token_families f WHERE f.id = refresh_tokens.family_id)",
    )
    .bind(token_hash)
    .bind_time(now)
    .fetch_optional()
    .await?
    .map(|r| Ok((r.uuid(0)?, r.uuid(1)?)))
    .transpose()
}

/// The `(family, user)` of a spent token whose family is not revoked: a replay.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn spent_in_live_family(
    tx: &mut Tx,
    token_hash: &str,
) -> Result<Option<(Uuid, Uuid)>, Error> {
    tx.query(
        "SELECT f.id, f.user_id FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
         WHERE r.token_hash = $1 AND r.used_at IS NOT NULL AND f.revoked_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional()
    .await?
    .map(|r| Ok((r.uuid(0)?, r.uuid(1)?)))
    .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn revoke_family(
    db: &Db,
    family: Uuid,
    now: OffsetDateTime,
) -> Result<u64, Error> {
    db.query("UPDATE token_families SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind_uuid(family)
        .bind_time(now)
        .execute()
        .await
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn family_of(db: &Db, token_hash: &str) -> Result<Option<Uuid>, Error> {
    db.query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_optional()
        .await?
        .map(|r| r.uuid(0))
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn revoke_all(db: &Db, user_id: Uuid, now: OffsetDateTime) -> Result<u64, Error> {
    db.query("UPDATE token_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind_uuid(user_id)
        .bind_time(now)
        .execute()
        .await
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn family_created_at(
    db: &Db,
    family: Uuid,
) -> Result<Option<OffsetDateTime>, Error> {
    db.query("SELECT created_at FROM token_families WHERE id = $1")
        .bind_uuid(family)
        .fetch_optional()
        .await?
        .map(|r| r.time(0))
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn family_live(
    db: &Db,
    family: Uuid,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    let n: i64 = db
        .query(
            "SELECT COUNT(*) FROM token_families \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind_uuid(family)
        .bind_uuid(user_id)
        .bind_time(now)
        .fetch_one()
        .await?
        .get(0)?;
    Ok(n > 0)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn purge(db: &Db, cutoff: OffsetDateTime) -> Result<u64, Error> {
    db.query("DELETE FROM token_families WHERE expires_at < $1 OR revoked_at < $1")
        .bind_time(cutoff)
        .execute()
        .await
}
