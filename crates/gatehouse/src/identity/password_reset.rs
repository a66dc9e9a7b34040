//! Password reset by mail: a single-use, time-limited link that lets a user choose a new
//! password.
//!
//! # Security
//! - Tokens are 256-bit, stored as an HMAC under the one-time-code data key
//!   ([`Keys::token_mac`]), never as a plain hash, valid `GATEHOUSE_PASSWORD_RESET_LIFETIME` (1
//!   hour by default; seed 004's 24 hours is a setting away), and consumed by one conditional
//!   `UPDATE … RETURNING`: of two concurrent uses exactly one wins.
//! - [`Identity::request_reset`] returns before looking anything up; the lookup, the token and the mail happen
//!   in a background task, so every address gets the same answer in the same time.
//! - A reset ends every session of the user and every other pending reset token and sign-in
//!   link, and clears the sign-in lock of the address.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use time::OffsetDateTime;
use uuid::Uuid;

use super::links::in_words;
use super::queries::password_reset as queries;
use super::service::Identity;
use super::signin::{LinkRequest, Origin, address_event};
use super::{Email, InvalidInput, UserStatus, users};
use crate::audit::{self, Actor};
use crate::error::Error;
use crate::keys::{Keys, TokenKind};
use crate::mail::mask_email;
use crate::store::{Db, Tx};

/// How long a reset link works unless `GATEHOUSE_PASSWORD_RESET_LIFETIME` says otherwise (seed
/// 004's links lived 24 hours).
pub const DEFAULT_RESET_LIFETIME: Duration = Duration::from_secs(3600);

fn hash(keys: &Keys, token: &str) -> String {
    keys.token_mac(TokenKind::PasswordReset, token)
}

impl Identity {
    /// How long a reset link works, in words for pages and mail ("1 hour"):
    /// `GATEHOUSE_PASSWORD_RESET_LIFETIME`.
    pub fn reset_link_valid_for(&self) -> String {
        in_words(self.config.password_reset_lifetime)
    }

    /// Queues "mail a reset link to `email` if it belongs to an active user" and returns at
    /// once: the lookup, the token and the mail happen off the request path. Every request is
    /// audited (`auth.password_reset_requested`), known address or not.
    pub async fn request_reset(
        &self,
        raw_email: &str,
        origin: &Origin,
    ) -> Result<Result<LinkRequest, InvalidInput>, Error> {
        let email = match Email::parse(raw_email) {
            Ok(email) => email,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(decision) = self.signin_budget(&email).await {
            return Ok(Ok(LinkRequest::RateLimited(decision)));
        }
        let mut tx = self.db.begin().await?;
        audit::record(
            &mut tx,
            &origin.audit(Actor::System),
            address_event(
                "auth.password_reset_requested",
                &email,
                serde_json::json!({}),
            ),
        )
        .await?;
        tx.commit().await?;
        if self.within_mail_budget(&email).await {
            let identity = self.clone();
            tokio::spawn(async move {
                if let Err(e) = identity.send_reset(&email).await {
                    tracing::error!(event = "password_reset_failed", to = %mask_email(&email), error = %e, "could not send a reset link");
                }
            });
        }
        Ok(Ok(LinkRequest::Accepted))
    }

    async fn send_reset(&self, email: &Email) -> Result<(), Error> {
        let Some(user) = users::find_by_email(&self.db, email)
            .await?
            .filter(|u| u.status == UserStatus::Active)
        else {
            tracing::info!(event = "password_reset_unknown", to = %mask_email(email), "no reset link for an address without an active account");
            return Ok(());
        };
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.now();
        let expires = now + self.config.password_reset_lifetime;
        queries::insert(&self.db, &hash(&self.keys, &token), user.id, now, expires).await?;
        self.mailer.send_template(
            email,
            "Reset your Gatehouse password",
            "password_reset",
            minijinja::context! { url => format!("{}/password/reset?token={token}", self.config.base_url), valid_for => self.reset_link_valid_for() },
        )?;
        tracing::info!(event = "password_reset_sent", to = %mask_email(email), "reset link queued");
        Ok(())
    }
}

/// The user a live token belongs to, without using it up (to check a new password first).
pub async fn peek(
    db: &Db,
    keys: &Keys,
    token: &str,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, Error> {
    queries::live_user(db, &hash(keys, token), now).await
}

/// Uses the token up, once, in the reset's transaction; returns its user.
pub(crate) async fn consume(
    tx: &mut Tx,
    keys: &Keys,
    token: &str,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, Error> {
    queries::consume(tx, &hash(keys, token), now).await
}

/// Ends every other pending reset token of the user and every pending sign-in link of their
/// address.
pub(crate) async fn revoke_pending(
    tx: &mut Tx,
    user_id: Uuid,
    email: &Email,
    now: OffsetDateTime,
) -> Result<(), Error> {
    queries::revoke_pending(tx, user_id, email.as_str(), now).await
}

/// Deletes reset tokens that died (expired or used) more than a day ago; returns how many.
pub async fn purge_expired(db: &Db, now: OffsetDateTime) -> Result<u64, Error> {
    queries::purge(db, now - time::Duration::days(1)).await
}
