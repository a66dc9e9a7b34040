//! Users: service functions (each change audited in its own transaction) and their queries.
//!
//! # Security
//! - Nobody can remove the last active admin: demoting or disabling the last one is refused.
//!   The check runs inside the write transaction with the admin rows locked (`FOR UPDATE` on
//!   PostgreSQL; SQLite's write lock is already held), so two concurrent demotions cannot both
//!   pass.
//! - Email uniqueness is enforced by the database (a unique index on `lower(email)`), not by a
//!   check-then-insert race.

use sqlx::Row as _;
use uuid::Uuid;

use super::{DisplayName, Email, Role, User, UserStatus};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::store::{Db, Tx, now, parse_timestamp, timestamp_text};

/// What is needed to create a user.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Address, unique.
    pub email: Email,
    /// Optional display name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
}

/// Creates a user and records `user.create`.
pub async fn create(db: &Db, new: NewUser, ctx: &AuditContext) -> Result<User, Error> {
    create_in(db, new, None, ctx).await
}

/// Creates a user with a password hash (argon2id, or a legacy Werkzeug hash from an import) and
/// records `user.create`; the record says a password was set, never the hash.
pub async fn create_with_password_hash(
    db: &Db,
    new: NewUser,
    password_hash: &str,
    ctx: &AuditContext,
) -> Result<User, Error> {
    create_in(db, new, Some(password_hash), ctx).await
}

async fn create_in(
    db: &Db,
    new: NewUser,
    password_hash: Option<&str>,
    ctx: &AuditContext,
) -> Result<User, Error> {
    let mut tx = db.begin().await?;
    let user = insert_audited(&mut tx, &new, password_hash, "user.create", ctx).await?;
    tx.commit().await?;
    Ok(user)
}

/// Inserts a user (with a password hash, if given) and records `action` in `tx`; the record
/// says whether a password was set, never the hash.
pub(crate) async fn insert_audited(
    tx: &mut Tx,
    new: &NewUser,
    password_hash: Option<&str>,
    action: &'static str,
    ctx: &AuditContext,
) -> Result<User, Error> {
    let user = insert(tx, new).await?;
    if let Some(hash) = password_hash {
        store_password_hash(tx, user.id, hash).await?;
    }
    audit::record(
        tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "user",
            entity_id: Some(user.id.to_string()),
            changes: serde_json::json!({
                "email": user.email.as_str(),
                "role": user.role.as_str(),
                "status": user.status.as_str(),
                "display_name": user.display_name.as_str(),
                "password": if password_hash.is_some() { "set" } else { "none" },
            }),
        },
    )
    .await?;
    Ok(user)
}

/// On a first start with no users, creates `email` as an admin and records
/// `user.bootstrap_admin`. Returns the admin when one was created.
pub async fn bootstrap_admin(
    db: &Db,
    email: Email,
    ctx: &AuditContext,
) -> Result<Option<User>, Error> {
    let mut tx = db.begin().await?;
    if count_in(&mut tx).await? > 0 {
        return Ok(None);
    }
    let new = NewUser {
        email,
        display_name: DisplayName::default(),
        role: Role::Admin,
    };
    let user = match insert(&mut tx, &new).await {
        Ok(user) => user,
        // Another instance bootstrapped the same admin first.
        Err(Error::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action: "user.bootstrap_admin",
            entity_type: "user",
            entity_id: Some(user.id.to_string()),
            changes: serde_json::json!({"email": user.email.as_str(), "role": "admin"}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Some(user))
}

/// Changes a user's role and status together, in one transaction with one audit record of
/// before and after (`user.set_role`, `user.set_status`, or `user.update` for both). Refuses to
/// leave no active admin. Returns the user before and after.
pub async fn set_role_and_status(
    db: &Db,
    email: &Email,
    role: Option<Role>,
    status: Option<UserStatus>,
    ctx: &AuditContext,
) -> Result<(User, User), Error> {
    let action = match (role, status) {
        (Some(_), None) => "user.set_role",
        (None, Some(_)) => "user.set_status",
        _ => "user.update",
    };
    change(db, email, ctx, action, |u| {
        if let Some(role) = role {
            u.role = role;
        }
        if let Some(status) = status {
            u.status = status;
        }
    })
    .await
}

async fn change(
    db: &Db,
    email: &Email,
    ctx: &AuditContext,
    action: &'static str,
    apply: impl FnOnce(&mut User),
) -> Result<(User, User), Error> {
    let mut tx = db.begin().await?;
    let before = find_by_email_in(&mut tx, email)
        .await?
        .ok_or(Error::NotFound)?;
    let mut after = before.clone();
    apply(&mut after);
    if after == before {
        return Ok((before.clone(), before));
    }
    let was_active_admin = before.role == Role::Admin && before.status == UserStatus::Active;
    let is_active_admin = after.role == Role::Admin && after.status == UserStatus::Active;
    if was_active_admin && !is_active_admin && lock_active_admins(&mut tx).await? <= 1 {
        return Err(Error::Conflict(
            "this is the last active admin: make another user admin first".into(),
        ));
    }
    after.updated_at = now();
    update(&mut tx, &after).await?;
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "user",
            entity_id: Some(after.id.to_string()),
            changes: serde_json::json!({
                "before": {"role": before.role.as_str(), "status": before.status.as_str()},
                "after": {"role": after.role.as_str(), "status": after.status.as_str()},
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((before, after))
}

// ---- queries -------------------------------------------------------------------------------

const USER_COLUMNS: &str = "id, email, display_name, role, status, created_at, updated_at, totp_enabled_at IS NOT NULL AS mfa_enabled";

fn user_from_pg(row: &sqlx::postgres::PgRow) -> Result<User, Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: stored_email(row.try_get("email")?)?,
        display_name: DisplayName(row.try_get("display_name")?),
        role: stored(row.try_get::<&str, _>("role")?)?,
        status: stored(row.try_get::<&str, _>("status")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        mfa_enabled: row.try_get("mfa_enabled")?,
    })
}

fn user_from_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<User, Error> {
    let id: &str = row.try_get("id")?;
    Ok(User {
        id: Uuid::parse_str(id)
            .map_err(|e| Error::Internal(anyhow::anyhow!("bad user id in the database: {e}")))?,
        email: stored_email(row.try_get("email")?)?,
        display_name: DisplayName(row.try_get("display_name")?),
        role: stored(row.try_get::<&str, _>("role")?)?,
        status: stored(row.try_get::<&str, _>("status")?)?,
        created_at: parse_timestamp(row.try_get("created_at")?)?,
        updated_at: parse_timestamp(row.try_get("updated_at")?)?,
        mfa_enabled: row.try_get("mfa_enabled")?,
    })
}

fn stored_email(s: String) -> Result<Email, Error> {
    Email::parse(&s).map_err(|e| Error::Internal(anyhow::anyhow!("bad email in the database: {e}")))
}

fn stored<T: std::str::FromStr<Err = super::InvalidInput>>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad value in the database: {e}")))
}

fn unique_violation(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::Conflict("a user with this email address already exists".into())
        }
        _ => Error::Database(e),
    }
}

async fn insert(tx: &mut Tx, new: &NewUser) -> Result<User, Error> {
    let at = now();
    let user = User {
        id: Uuid::new_v4(),
        email: new.email.clone(),
        display_name: new.display_name.clone(),
        role: new.role,
        status: UserStatus::Active,
        created_at: at,
        updated_at: at,
        mfa_enabled: false,
    };
    let result = match tx {
        Tx::Postgres(tx) => sqlx::query(
            "INSERT INTO users (id, email, display_name, role, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(user.id)
        .bind(user.email.as_str())
        .bind(user.display_name.as_str())
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected()),
        Tx::Sqlite(tx, _) => sqlx::query(
            "INSERT INTO users (id, email, display_name, role, status, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .bind(user.id.to_string())
        .bind(user.email.as_str())
        .bind(user.display_name.as_str())
        .bind(user.role.as_str())
        .bind(user.status.as_str())
        .bind(timestamp_text(at))
        .execute(&mut **tx)
        .await
        .map(|r| r.rows_affected()),
    };
    result.map_err(unique_violation)?;
    Ok(user)
}

async fn update(tx: &mut Tx, user: &User) -> Result<(), Error> {
    match tx {
        Tx::Postgres(tx) => {
            sqlx::query("UPDATE users SET role = $2, status = $3, display_name = $4, updated_at = $5 WHERE id = $1")
                .bind(user.id)
                .bind(user.role.as_str())
                .bind(user.status.as_str())
                .bind(user.display_name.as_str())
                .bind(user.updated_at)
                .execute(&mut **tx)
                .await?;
        }
        Tx::Sqlite(tx, _) => {
            sqlx::query("UPDATE users SET role = ?2, status = ?3, display_name = ?4, updated_at = ?5 WHERE id = ?1")
                .bind(user.id.to_string())
                .bind(user.role.as_str())
                .bind(user.status.as_str())
                .bind(user.display_name.as_str())
                .bind(timestamp_text(user.updated_at))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// Locks the active admins' rows and counts them.
async fn lock_active_admins(tx: &mut Tx) -> Result<usize, Error> {
    Ok(match tx {
        Tx::Postgres(tx) => sqlx::query(
            "SELECT id FROM users WHERE role = 'admin' AND status = 'active' FOR UPDATE",
        )
        .fetch_all(&mut **tx)
        .await?
        .len(),
        Tx::Sqlite(tx, _) => {
            sqlx::query("SELECT id FROM users WHERE role = 'admin' AND status = 'active'")
                .fetch_all(&mut **tx)
                .await?
                .len()
        }
    })
}

/// How many users there are, inside `tx`.
pub(crate) async fn count_in(tx: &mut Tx) -> Result<i64, Error> {
    Ok(match tx {
        Tx::Postgres(tx) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut **tx)
                .await?
        }
        Tx::Sqlite(tx, _) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users")
                .fetch_one(&mut **tx)
                .await?
        }
    })
}

async fn find_by_email_in(tx: &mut Tx, email: &Email) -> Result<Option<User>, Error> {
    match tx {
        Tx::Postgres(tx) => {
            let sql =
                format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = $1 FOR UPDATE");
            sqlx::query(&sql)
                .bind(email.as_str())
                .fetch_optional(&mut **tx)
                .await?
                .as_ref()
                .map(user_from_pg)
                .transpose()
        }
        Tx::Sqlite(tx, _) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = ?");
            sqlx::query(&sql)
                .bind(email.as_str())
                .fetch_optional(&mut **tx)
                .await?
                .as_ref()
                .map(user_from_sqlite)
                .transpose()
        }
    }
}

/// The user with this address, if any.
pub async fn find_by_email(db: &Db, email: &Email) -> Result<Option<User>, Error> {
    match db {
        Db::Postgres(pool) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = $1");
            sqlx::query(&sql)
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_pg)
                .transpose()
        }
        Db::Sqlite(pool, _) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(email) = ?");
            sqlx::query(&sql)
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_sqlite)
                .transpose()
        }
    }
}

/// Stores a new password hash chosen by the user and records `action` (`user.password_change`
/// or `user.password_reset`, without the hash), in the caller's transaction.
pub async fn set_password(
    tx: &mut Tx,
    id: Uuid,
    hash: &str,
    action: &'static str,
    ctx: &AuditContext,
) -> Result<(), Error> {
    store_password_hash(tx, id, hash).await?;
    audit::record(
        tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "user",
            entity_id: Some(id.to_string()),
            changes: serde_json::json!({}),
        },
    )
    .await?;
    Ok(())
}

/// Replaces a user's password hash with a fresh one for the same password (after a sign-in
/// verified a legacy or outdated hash). Not audited: the password did not change.
pub async fn upgrade_password_hash(db: &Db, id: Uuid, hash: &str) -> Result<(), Error> {
    let mut tx = db.begin().await?;
    store_password_hash(&mut tx, id, hash).await?;
    tx.commit().await
}

async fn store_password_hash(tx: &mut Tx, id: Uuid, hash: &str) -> Result<(), Error> {
    let at = now();
    match tx {
        Tx::Postgres(tx) => {
            sqlx::query(
                "UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(hash)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Tx::Sqlite(tx, _) => {
            sqlx::query(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
            )
            .bind(id.to_string())
            .bind(hash)
            .bind(timestamp_text(at))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// The stored password hash of a user, if they have a password.
pub async fn password_hash(db: &Db, id: Uuid) -> Result<Option<String>, Error> {
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        }
        Db::Sqlite(pool, _) => {
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        }
    }
    .flatten())
}

/// The user with this id, if any.
pub async fn find_by_id(db: &Db, id: Uuid) -> Result<Option<User>, Error> {
    match db {
        Db::Postgres(pool) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_pg)
                .transpose()
        }
        Db::Sqlite(pool, _) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
            sqlx::query(&sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(user_from_sqlite)
                .transpose()
        }
    }
}

/// Every user, oldest first.
pub async fn list(db: &Db) -> Result<Vec<User>, Error> {
    match db {
        Db::Postgres(pool) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, email");
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(user_from_pg)
                .collect()
        }
        Db::Sqlite(pool, _) => {
            let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, email");
            sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(user_from_sqlite)
                .collect()
        }
    }
}
