//! API keys (seed 002): long-lived credentials for scripts, scoped, expiring and revocable.
//!
//! # Security
//! - A key is `gk_` and 256 random bits (base64url); only its SHA-256 is stored (a key is too
//!   long and random to brute-force from its hash), with its first characters as a `prefix` to
//!   tell keys apart. It is shown once, at creation.
//! - A key carries scopes ([`SCOPES`]); a request it authenticates may do only what both the
//!   scopes and its owner's current role allow.
//! - Keys expire (at most a year; a year by default) and can be revoked; a revoked or expired key,
//!   or a key of a disabled user, authenticates nothing.
//! - `last_used_at` is written at most once a minute per key, so a busy key costs no write per
//!   request.
//! - The owner of a key that lived longer than [`REMIND_BEFORE`] is mailed once, that long before
//!   it expires, how to renew it (ASVS V2.3.3; [`Identity::remind_expiring_api_keys`]): a
//!   shorter-lived key's maker chose its end. Each key is claimed by one conditional update, so
//!   with several instances one mail goes out.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::User;
use super::queries::api_keys as queries;
use super::service::Identity;
use super::signin::Origin;
use crate::audit::{self, Actor, AuditContext, AuditEvent};
use crate::error::Error;
use crate::error::FieldError;
use crate::store::Db;

/// The scopes a key may carry.
pub const SCOPES: &[&str] = &["items:read", "items:write"];
/// Longest life of a key, in days (and the default).
pub const MAX_DAYS: i64 = 365;
/// Most keys per user.
pub const MAX_PER_USER: i64 = 50;
/// How long before a key expires its owner is reminded to renew it.
pub const REMIND_BEFORE: time::Duration = time::Duration::days(7);

/// A key as its owner sees it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Identifier.
    pub id: Uuid,
    /// The owner's label.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was last used (to the minute).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// The owner and scopes of a presented key that works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key's id.
    pub id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// What it may do.
    pub scopes: Vec<String>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks a new key's name, scopes and lifetime; every problem at once.
pub fn validate(
    name: &str,
    scopes: &[String],
    days: Option<i64>,
) -> Result<(String, Vec<String>, i64), Error> {
    let mut errors = Vec::new();
    let name = name.trim().to_owned();
    if name.chars().count() < 1 || name.chars().count() > 100 || name.chars().any(char::is_control)
    {
        errors.push(FieldError::new(
            "name",
            "must be 1 to 100 characters, without control characters",
        ));
    }
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        errors.push(FieldError::new(
            "scopes",
            format!("must list one or more of: {}", SCOPES.join(", ")),
        ));
    }
    let days = days.unwrap_or(MAX_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        errors.push(FieldError::new(
            "expires_in_days",
            format!("must be from 1 to {MAX_DAYS}"),
        ));
    }
    if !errors.is_empty() {
        return Err(Error::InvalidFields(errors));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    Ok((name, scopes, days))
}

/// Makes a key for `user_id`; returns it (the only time it is seen) and its description. The
/// identity service's [`Identity::create_api_key`] wraps it with the notice.
pub(crate) async fn create(
    db: &Db,
    user_id: Uuid,
    name: &str,
    scopes: &[String],
    days: Option<i64>,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<(String, ApiKey), Error> {
    let (name, scopes, days) = validate(name, scopes, days)?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("gk_{}", URL_SAFE_NO_PAD.encode(bytes));
    let described = ApiKey {
        id: Uuid::new_v4(),
        name,
        prefix: key[..10].to_owned(),
        scopes,
        created_at: now,
        expires_at: Some(now + time::Duration::days(days)),
        last_used_at: None,
    };
    let mut tx = db.begin().await?;
    let count = queries::lock_user_and_count_live(&mut tx, user_id).await?;
    if count >= MAX_PER_USER {
        return Err(Error::Conflict(format!(
            "you have {MAX_PER_USER} keys already: revoke one first"
        )));
    }
    queries::insert(&mut tx, user_id, &described, &hash(&key)).await?;
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action: "api_key.create",
            entity_type: "api_key",
            entity_id: Some(described.id.to_string()),
            changes: serde_json::json!({ "name": described.name, "scopes": described.scopes, "prefix": described.prefix }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((key, described))
}

/// The user's keys that are not revoked, newest first.
pub async fn list(db: &Db, user_id: Uuid) -> Result<Vec<ApiKey>, Error> {
    queries::list(db, user_id).await
}

/// Revokes one of the user's keys; `false` if it is not theirs or already revoked.
pub async fn revoke(
    db: &Db,
    user_id: Uuid,
    id: Uuid,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<bool, Error> {
    let mut tx = db.begin().await?;
    if !queries::revoke(&mut tx, user_id, id, now).await? {
        return Ok(false);
    }
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action: "api_key.revoke",
            entity_type: "api_key",
            entity_id: Some(id.to_string()),
            changes: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The key `raw` names, if it is live (not revoked, not expired); records its use at most once a
/// minute.
pub async fn authenticate(
    db: &Db,
    raw: &str,
    now: OffsetDateTime,
) -> Result<Option<KeyUse>, Error> {
    if !raw.starts_with("gk_") || raw.len() != 46 {
        return Ok(None);
    }
    let key_hash = hash(raw);
    let Some(found) = queries::find_live(db, &key_hash, now).await? else {
        return Ok(None);
    };
    queries::record_use(db, &key_hash, now, now - time::Duration::minutes(1)).await?;
    Ok(Some(found))
}

impl Identity {
    /// Makes an API key for `user` (at most [`MAX_PER_USER`] live ones), audited, and mails the
    /// user a notice: the key is shown once, in the answer.
    pub async fn create_api_key(
        &self,
        user: &User,
        name: &str,
        scopes: &[String],
        days: Option<i64>,
        origin: &Origin,
    ) -> Result<(String, ApiKey), Error> {
        let ctx = origin.audit(Actor::User(user.id));
        let created = create(&self.db, user.id, name, scopes, days, self.now(), &ctx).await?;
        tracing::info!(event = "api_key_created", user_id = %user.id, key_id = %created.1.id, "API key created");
        self.notify(&user.email, origin, super::notices::API_KEY_CREATED);
        Ok(created)
    }
}

impl Identity {
    /// Mails the owner of every live key that expires within [`REMIND_BEFORE`], and lived longer
    /// than that, how to renew it: once per key, whichever instance claims it. Returns how many
    /// were reminded.
    pub async fn remind_expiring_api_keys(&self) -> Result<usize, Error> {
        let now = self.now();
        let mut reminded = 0;
        for (user_id, key) in queries::due_for_reminder(&self.db, now, now + REMIND_BEFORE).await? {
            let Some(expires) = key.expires_at else {
                continue;
            };
            if expires - key.created_at <= REMIND_BEFORE
                || !queries::claim_reminder(&self.db, key.id, now).await?
            {
                continue;
            }
            let Some(user) = super::users::find_by_id(&self.db, user_id).await? else {
                continue;
            };
            let queued = self.mailer.send_template(
                &user.email,
                &format!("Your Gatehouse API key \"{}\" expires soon", key.name),
                "api_key_expiring",
                minijinja::context! {
                    name => key.name,
                    prefix => key.prefix,
                    email => user.email.as_str(),
                    expires => crate::store::timestamp_text(expires),
                    url => format!("{}/account/api-keys", self.config.base_url),
                },
            );
            if let Err(e) = queued {
                // Not lost: the next pass (any instance's) claims it again.
                queries::release_reminder(&self.db, key.id).await?;
                tracing::warn!(event = "api_key_reminder_failed", key_id = %key.id, error = %e, "cannot queue an API key renewal reminder; it is tried again");
                continue;
            }
            tracing::info!(event = "api_key_expiry_reminded", user_id = %user_id, key_id = %key.id, "API key renewal reminder queued");
            reminded += 1;
        }
        Ok(reminded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_scopes_and_lifetimes_are_checked_together() {
        let ok = validate(
            " CI ",
            &[
                "items:write".into(),
                "items:read".into(),
                "items:read".into(),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            ok,
            (
                "CI".into(),
                vec!["items:read".into(), "items:write".into()],
                MAX_DAYS
            )
        );
        let Err(Error::InvalidFields(errors)) = validate("", &["admin".into()], Some(400)) else {
            panic!("accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "scopes", "expires_in_days"]);
        assert!(validate("x", &[], None).is_err(), "no scope");
    }
}
