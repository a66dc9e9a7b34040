//! Users: service functions (each change audited in its own transaction) and their queries.
//!
//! # Security
//! - Nobody can remove the last active admin: demoting or disabling the last one is refused.
//!   The check runs inside the write transaction with the admin rows locked (`FOR UPDATE` on
//!   PostgreSQL; SQLite's write lock is already held), so two concurrent demotions cannot both
//!   pass.
//! - Email uniqueness is enforced by the database (a unique index on `lower(email)`), not by a
//!   check-then-insert race.

use uuid::Uuid;

use super::queries::users as queries;
use super::{DisplayName, Email, Role, User, UserStatus};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::store::{Db, Tx, now};

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
    queries::insert(tx, &user).await?;
    Ok(user)
}

async fn update(tx: &mut Tx, user: &User) -> Result<(), Error> {
    queries::update(tx, user).await
}

/// Locks the active admins' rows and counts them.
async fn lock_active_admins(tx: &mut Tx) -> Result<usize, Error> {
    queries::lock_active_admins(tx).await
}

/// How many users there are, inside `tx`.
pub(crate) async fn count_in(tx: &mut Tx) -> Result<i64, Error> {
    queries::count(tx).await
}

/// How many users there are (a read: no write transaction).
pub(crate) async fn count(db: &Db) -> Result<i64, Error> {
    queries::count(db).await
}

async fn find_by_email_in(tx: &mut Tx, email: &Email) -> Result<Option<User>, Error> {
    queries::find_by_email_for_update(tx, email).await
}

/// The user with this address, if any.
pub async fn find_by_email(db: &Db, email: &Email) -> Result<Option<User>, Error> {
    queries::find_by_email(db, email).await
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
    queries::store_password_hash(tx, id, hash, now()).await
}

/// The stored password hash of a user, if they have a password.
pub async fn password_hash(db: &Db, id: Uuid) -> Result<Option<String>, Error> {
    queries::password_hash(db, id).await
}

/// The user with this id, if any.
pub async fn find_by_id(db: &Db, id: Uuid) -> Result<Option<User>, Error> {
    queries::find_by_id(db, id).await
}

/// Every user, oldest first.
pub async fn list(db: &Db) -> Result<Vec<User>, Error> {
    queries::list(db).await
}
