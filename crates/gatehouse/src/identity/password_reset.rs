//! Password reset by mail: a single-use, time-limited link that lets a user choose a new
//! password.
//!
//! # Security
//! - Tokens are 256-bit, stored as SHA-256, valid `GATEHOUSE_PASSWORD_RESET_LIFETIME` (24 h, as
//!   seed 004), and consumed by one conditional `UPDATE … RETURNING`: of two concurrent uses
//!   exactly one wins.
//! - [`request`] returns before looking anything up; the lookup, the token and the mail happen
//!   in a background task, so every address gets the same answer in the same time.
//! - A reset ends every session of the user and every other pending reset token and sign-in
//!   link, and clears the sign-in lock of the address.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, UserStatus, users};
use crate::Error;
use crate::app::AppState;
use crate::mail::{Mail, mask_email};
use crate::store::{Db, timestamp_text};

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Queues "mail a reset link to `email` if it belongs to an active user" and returns at once.
pub fn request(state: &AppState, email: Email) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send(&state, &email).await {
            tracing::error!(event = "password_reset_failed", to = %mask_email(&email), error = %e, "could not send a reset link");
        }
    });
}

async fn send(state: &AppState, email: &Email) -> Result<(), Error> {
    let Some(user) = users::find_by_email(&state.db, email)
        .await?
        .filter(|u| u.status == UserStatus::Active)
    else {
        tracing::info!(event = "password_reset_unknown", to = %mask_email(email), "no reset link for an address without an active account");
        return Ok(());
    };
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let now = state.clock.now();
    let expires = now + state.settings.password_reset_lifetime;
    match &state.db {
        Db::Postgres(pool) => {
            sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(hash(&token))
                .bind(user.id)
                .bind(now)
                .bind(expires)
                .execute(pool)
                .await?;
        }
        Db::Sqlite(pool, _) => {
            sqlx::query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
                .bind(hash(&token))
                .bind(user.id.to_string())
                .bind(timestamp_text(now))
                .bind(timestamp_text(expires))
                .execute(pool)
                .await?;
        }
    }
    let base = state.settings.public_url.as_str().trim_end_matches('/');
    let hours = state.settings.password_reset_lifetime.as_secs() / 3600;
    let (text, html) = state.templates.mail(
        "password_reset",
        minijinja::context! { url => format!("{base}/password/reset?token={token}"), hours => hours },
    )?;
    state
        .mailer
        .send(Mail {
            to: email.clone(),
            subject: "Reset your Gatehouse password".into(),
            text,
            html,
        })
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    tracing::info!(event = "password_reset_sent", to = %mask_email(email), "reset link queued");
    Ok(())
}

/// The user a live token belongs to, without using it up (to check a new password first).
pub async fn peek(db: &Db, token: &str, now: OffsetDateTime) -> Result<Option<Uuid>, Error> {
    let id: Option<String> = match db {
        Db::Postgres(pool) => sqlx::query_scalar("SELECT user_id::text FROM password_resets WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2")
            .bind(hash(token))
            .bind(now)
            .fetch_optional(pool)
            .await?,
        Db::Sqlite(pool, _) => sqlx::query_scalar("SELECT user_id FROM password_resets WHERE token_hash = ? AND consumed_at IS NULL AND expires_at > ?")
            .bind(hash(token))
            .bind(timestamp_text(now))
            .fetch_optional(pool)
            .await?,
    };
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// Uses the token up, once; returns its user.
pub async fn consume(db: &Db, token: &str, now: OffsetDateTime) -> Result<Option<Uuid>, Error> {
    let id: Option<String> = match db {
        Db::Postgres(pool) => sqlx::query_scalar("UPDATE password_resets SET consumed_at = $2 WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2 RETURNING user_id::text")
            .bind(hash(token))
            .bind(now)
            .fetch_optional(pool)
            .await?,
        Db::Sqlite(pool, _) => sqlx::query_scalar("UPDATE password_resets SET consumed_at = ?2 WHERE token_hash = ?1 AND consumed_at IS NULL AND expires_at > ?2 RETURNING user_id")
            .bind(hash(token))
            .bind(timestamp_text(now))
            .fetch_optional(pool)
            .await?,
    };
    Ok(id.and_then(|id| Uuid::parse_str(&id).ok()))
}

/// Ends every other pending reset token of the user and every pending sign-in link of their
/// address.
pub async fn revoke_pending(
    db: &Db,
    user_id: Uuid,
    email: &Email,
    now: OffsetDateTime,
) -> Result<(), Error> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query("UPDATE password_resets SET consumed_at = $2 WHERE user_id = $1 AND consumed_at IS NULL")
                .bind(user_id)
                .bind(now)
                .execute(pool)
                .await?;
            sqlx::query(
                "UPDATE magic_links SET consumed_at = $2 WHERE email = $1 AND consumed_at IS NULL",
            )
            .bind(email.as_str())
            .bind(now)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(pool, _) => {
            sqlx::query("UPDATE password_resets SET consumed_at = ?2 WHERE user_id = ?1 AND consumed_at IS NULL")
                .bind(user_id.to_string())
                .bind(timestamp_text(now))
                .execute(pool)
                .await?;
            sqlx::query(
                "UPDATE magic_links SET consumed_at = ?2 WHERE email = ?1 AND consumed_at IS NULL",
            )
            .bind(email.as_str())
            .bind(timestamp_text(now))
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Deletes reset tokens that died (expired or used) more than a day ago; returns how many.
pub async fn purge_expired(db: &Db, now: OffsetDateTime) -> Result<u64, Error> {
    let cutoff = now - time::Duration::days(1);
    Ok(match db {
        Db::Postgres(pool) => {
            sqlx::query("DELETE FROM password_resets WHERE expires_at < $1 OR consumed_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        }
        Db::Sqlite(pool, _) => {
            sqlx::query("DELETE FROM password_resets WHERE expires_at < ?1 OR consumed_at < ?1")
                .bind(timestamp_text(cutoff))
                .execute(pool)
                .await?
                .rows_affected()
        }
    })
}
