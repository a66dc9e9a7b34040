//! The `users` table.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Error;
use crate::identity::{DisplayName, Email, User};
use crate::store::{Db, Dialect, On, Row, Tx, query};

/// The columns every user query reads, in [`user`]'s order.
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, display_name, role, status, created_at, updated_at, \
             totp_enabled_at IS NOT NULL AS mfa_enabled FROM users ",
            $rest
        )
    };
}

fn user(row: &Row) -> Result<User, Error> {
    let email: String = row.get(1)?;
    Ok(User {
        id: row.uuid(0)?,
        email: Email::parse(&email)
            .map_err(|e| Error::Internal(anyhow::anyhow!("bad email in the database: {e}")))?,
        display_name: DisplayName(row.get(2)?),
        role: stored(&row.get::<String>(3)?)?,
        status: stored(&row.get::<String>(4)?)?,
        created_at: row.time(5)?,
        updated_at: row.time(6)?,
        mfa_enabled: row.get(7)?,
    })
}

fn stored<T: std::str::FromStr<Err = crate::identity::InvalidInput>>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad value in the database: {e}")))
}

fn unique_violation(e: Error) -> Error {
    if e.is_unique_violation() {
        Error::Conflict("a user with this email address already exists".into())
    } else {
        e
    }
}

/// Inserts `user`; a conflict if the address is taken.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn insert(tx: &mut Tx, user: &User) -> Result<(), Error> {
    tx.query(
        "INSERT INTO users (id, email, display_name, role, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind_uuid(user.id)
    .bind(user.email.as_str())
    .bind(user.display_name.as_str())
    .bind(user.role.as_str())
    .bind(user.status.as_str())
    .bind_time(user.created_at)
    .bind_time(user.updated_at)
    .execute()
    .await
    .map(drop)
    .map_err(unique_violation)
}

/// Writes the role, status, display name and `updated_at` of `user`.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn update(tx: &mut Tx, user: &User) -> Result<(), Error> {
    tx.query(
        "UPDATE users SET role = $2, status = $3, display_name = $4, updated_at = $5 WHERE id = $1",
    )
    .bind_uuid(user.id)
    .bind(user.role.as_str())
    .bind(user.status.as_str())
    .bind(user.display_name.as_str())
    .bind_time(user.updated_at)
    .execute()
    .await
    .map(drop)
}

/// Locks the active admins' rows (PostgreSQL; SQLite's write transaction excludes other
/// writers) and counts them.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn lock_active_admins(tx: &mut Tx) -> Result<usize, Error> {
    let sql = tx.dialect().pick(
        "SELECT id FROM users WHERE role = 'admin' AND status = 'active'",
        "SELECT id FROM users WHERE role = 'admin' AND status = 'active' FOR UPDATE",
    );
    Ok(tx.query(sql).fetch_all().await?.len())
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn count<'c>(on: impl Into<crate::store::On<'c>>) -> Result<i64, Error> {
    crate::store::query(on, "SELECT COUNT(*) FROM users")
        .fetch_one()
        .await?
        .get(0)
}

/// The user with this address, locked (PostgreSQL) until the transaction ends.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find_by_email_for_update(
    tx: &mut Tx,
    email: &Email,
) -> Result<Option<User>, Error> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => select_users!("WHERE lower(email) = $1"),
        Dialect::Postgres => select_users!("WHERE lower(email) = $1 FOR UPDATE"),
    };
    tx.query(sql)
        .bind(email.as_str())
        .fetch_optional()
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find_by_email<'c>(
    on: impl Into<On<'c>>,
    email: &Email,
) -> Result<Option<User>, Error> {
    query(on, select_users!("WHERE lower(email) = $1"))
        .bind(email.as_str())
        .fetch_optional()
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn find_by_id<'c>(on: impl Into<On<'c>>, id: Uuid) -> Result<Option<User>, Error> {
    query(on, select_users!("WHERE id = $1"))
        .bind_uuid(id)
        .fetch_optional()
        .await?
        .as_ref()
        .map(user)
        .transpose()
}

/// Every user, oldest first.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn list(db: &Db) -> Result<Vec<User>, Error> {
    db.query(select_users!("ORDER BY created_at, email"))
        .fetch_all()
        .await?
        .iter()
        .map(user)
        .collect()
}

#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn store_password_hash(
    tx: &mut Tx,
    id: Uuid,
    hash: &str,
    at: OffsetDateTime,
) -> Result<(), Error> {
    tx.query("UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1")
        .bind_uuid(id)
        .bind(hash)
        .bind_time(at)
        .execute()
        .await
        .map(drop)
}

/// The stored password hash of a user, if they have a password.
#[tracing::instrument(level = "debug", skip_all)]
pub(crate) async fn password_hash(db: &Db, id: Uuid) -> Result<Option<String>, Error> {
    Ok(db
        .query("SELECT password_hash FROM users WHERE id = $1")
        .bind_uuid(id)
        .fetch_optional()
        .await?
        .map(|r| r.get(0))
        .transpose()?
        .flatten())
}
