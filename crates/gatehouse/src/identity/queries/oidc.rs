//! The `oidc_identities` table: accounts at OpenID providers linked to users.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::identity::oidc::identities::LinkedIdentity;
use crate::store::{Db, Row, Tx};

fn identity(row: &Row) -> Result<LinkedIdentity, Error> {
    Ok(LinkedIdentity {
        id: row.uuid(0)?,
        user_id: row.uuid(1)?,
        provider: row.get(2)?,
        issuer: row.get(3)?,
        subject: row.get(4)?,
        email: row.get(5)?,
        created_at: row.time(6)?,
        last_used_at: row.opt_time(7)?,
    })
}

const SELECT: &str = "SELECT id, user_id, provider, issuer, subject, email, created_at, last_used_at \
                      FROM oidc_identities ";

/// The identity with this issuer and subject.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find(
    db: &Db,
    issuer: &str,
    subject: &str,
) -> Result<Option<LinkedIdentity>, Error> {
    db.query(&format!("{SELECT}WHERE issuer = $1 AND subject = $2"))
        .bind(issuer)
        .bind(subject)
        .fetch_optional()
        .await?
        .as_ref()
        .map(identity)
        .transpose()
}

/// The user's identities, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn list(db: &Db, user_id: Uuid) -> Result<Vec<LinkedIdentity>, Error> {
    db.query(&format!(
        "{SELECT}WHERE user_id = $1 ORDER BY created_at, id"
    ))
    .bind_uuid(user_id)
    .fetch_all()
    .await?
    .iter()
    .map(identity)
    .collect()
}

/// How many identities the user has.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count(tx: &mut Tx, user_id: Uuid) -> Result<i64, Error> {
    tx.query("SELECT COUNT(*) FROM oidc_identities WHERE user_id = $1")
        .bind_uuid(user_id)
        .fetch_one()
        .await?
        .get(0)
}

/// Links an identity; `false` when (issuer, subject) is linked already (to anyone).
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(tx: &mut Tx, new: &LinkedIdentity) -> Result<bool, Error> {
    let added = tx
        .query(
            "INSERT INTO oidc_identities (id, user_id, provider, issuer, subject, email, created_at, \
             last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (issuer, subject) DO NOTHING",
        )
        .bind_uuid(new.id)
        .bind_uuid(new.user_id)
        .bind(new.provider.as_str())
        .bind(new.issuer.as_str())
        .bind(new.subject.as_str())
        .bind(new.email.as_deref())
        .bind_time(new.created_at)
        .bind_opt_time(new.last_used_at)
        .execute()
        .await?;
    Ok(added > 0)
}

/// Records a sign-in with an identity and the address the provider gave this time.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn touch(
    db: &Db,
    id: Uuid,
    email: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    db.query(
        "UPDATE oidc_identities SET last_used_at = $2, email = COALESCE($3, email) WHERE id = $1",
    )
    .bind_uuid(id)
    .bind_time(now)
    .bind(email)
    .execute()
    .await
    .map(drop)
}

/// Unlinks one of the user's identities; `false` when it is not theirs.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn delete(tx: &mut Tx, user_id: Uuid, id: Uuid) -> Result<bool, Error> {
    let deleted = tx
        .query("DELETE FROM oidc_identities WHERE id = $1 AND user_id = $2")
        .bind_uuid(id)
        .bind_uuid(user_id)
        .execute()
        .await?;
    Ok(deleted > 0)
}
