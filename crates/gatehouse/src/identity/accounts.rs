//! A signed-in user's own account: changing the password, a reset by link, signing out and
//! ending sessions. Each change, its audit record, the revocations that follow it and its
//! notice happen here, so the page and any other transport do exactly the same.
//!
//! # Security
//! - Changing the password needs a sign-in, with every factor, from the last ten minutes
//!   ([`Identity::recently_signed_in`]) and the current password.
//! - Ending another session, or every other one, needs such a recent sign-in too (ASVS 3.3.4):
//!   a stolen session cannot lock its owner out. Ending one's own session (signing out) never
//!   does.
//! - A reset uses its link once, stores the new hash, records it and ends every other pending
//!   reset link and sign-in link in ONE transaction; then every session and API sign-in of the
//!   user ends and the address's sign-in lock is cleared.
//! - Both mail the user a notice.

use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::notices;
use super::password_reset;
use super::service::Identity;
use super::sessions::Session;
use super::signin::Origin;
use super::{Email, User, throttle, users};
use crate::audit::{self, Actor, AuditEvent};
use crate::error::Error;

/// How long ago the last sign-in (with every factor) may be for a sensitive change: changing
/// the password, setting up or turning off MFA, new recovery codes, ending other sessions.
pub const RECENT_SIGN_IN: time::Duration = time::Duration::minutes(10);

/// How a password change or reset ended.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordChange {
    /// Done; other sign-ins ended, the user was mailed.
    Changed,
    /// The session's sign-in is too old: sign in again first.
    NotRecent,
    /// The current password is not right.
    WrongCurrent,
    /// The reset link is unknown, used or expired.
    LinkExpired,
    /// The two new passwords differ.
    Mismatch,
    /// The new password breaks the policy: why, for the person.
    Weak(Vec<String>),
}

/// How a request to end sessions ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionsEnded {
    /// Done: this many sessions (and, for "every other", API sign-ins) ended.
    Ended(usize),
    /// Ending another session needs a recent sign-in: sign in again first. Nothing ended.
    NotRecent,
}

impl Identity {
    /// Whether the session's sign-in is recent enough for a sensitive change.
    pub fn recently_signed_in(&self, session: &Session) -> bool {
        self.now() - session.authenticated_at <= RECENT_SIGN_IN
    }

    /// Whether the API sign-in `family` began (with every factor) within the last ten minutes:
    /// what a sensitive change over the API needs.
    pub async fn api_sign_in_recent(&self, family: Uuid) -> Result<bool, Error> {
        let began = super::tokens::family_created_at(&self.db, family).await?;
        Ok(began.is_some_and(|at| self.now() - at <= RECENT_SIGN_IN))
    }

    /// Whether the user has a password (a user who only ever signed in by link has none).
    pub async fn has_password(&self, user_id: Uuid) -> Result<bool, Error> {
        Ok(users::password_hash(&self.db, user_id).await?.is_some())
    }

    /// Changes the signed-in user's password; every other session and API sign-in ends.
    pub async fn change_password(
        &self,
        user: &User,
        session: &Session,
        current: Option<&SecretString>,
        new: &SecretString,
        confirm: &SecretString,
        origin: &Origin,
    ) -> Result<PasswordChange, Error> {
        if !self.recently_signed_in(session) {
            return Ok(PasswordChange::NotRecent);
        }
        if let Some(stored) = users::password_hash(&self.db, user.id).await? {
            let empty = SecretString::from("");
            if !self
                .passwords
                .verify(current.unwrap_or(&empty), &stored)
                .await?
                .ok
            {
                return Ok(PasswordChange::WrongCurrent);
            }
        }
        if let Some(problem) = self.new_password_problem(new, confirm, &user.email) {
            return Ok(problem);
        }
        let hash = self.passwords.hash(new).await?;
        let mut tx = self.db.begin().await?;
        let ctx = origin.audit(Actor::User(user.id));
        users::set_password(&mut tx, user.id, &hash, "user.password_change", &ctx).await?;
        tx.commit().await?;
        let ended = self.end_sign_ins(user.id, Some(&session.id_hash)).await?;
        tracing::info!(event = "password_changed", user_id = %user.id, other_sessions_ended = ended, "password changed");
        self.notify(&user.email, origin, notices::PASSWORD_CHANGED);
        Ok(PasswordChange::Changed)
    }

    /// Whether a reset link is live, without using it (the page asks before showing the form).
    pub async fn reset_link_live(&self, token: &str) -> Result<bool, Error> {
        Ok(
            password_reset::peek(&self.db, &self.keys, token, self.now())
                .await?
                .is_some(),
        )
    }

    /// Sets a new password with a reset link (see the module's Security section).
    pub async fn reset_password(
        &self,
        token: &str,
        new: &SecretString,
        confirm: &SecretString,
        origin: &Origin,
    ) -> Result<PasswordChange, Error> {
        let now = self.now();
        let user = match password_reset::peek(&self.db, &self.keys, token, now).await? {
            Some(id) => users::find_by_id(&self.db, id).await?,
            None => None,
        };
        let Some(user) = user else {
            return Ok(PasswordChange::LinkExpired);
        };
        // Checked before the link is used up: a weak password costs the user nothing.
        if let Some(problem) = self.new_password_problem(new, confirm, &user.email) {
            return Ok(problem);
        }
        let hash = self.passwords.hash(new).await?;
        let mut tx = self.db.begin().await?;
        if password_reset::consume(&mut tx, &self.keys, token, now).await? != Some(user.id) {
            return Ok(PasswordChange::LinkExpired);
        }
        let ctx = origin.audit(Actor::User(user.id));
        users::set_password(&mut tx, user.id, &hash, "user.password_reset", &ctx).await?;
        password_reset::revoke_pending(&mut tx, user.id, &user.email, now).await?;
        tx.commit().await?;
        self.end_sign_ins(user.id, None).await?;
        let keys = throttle::keys(&self.config.throttle, &user.email, &origin.client);
        throttle::clear(&self.db, &keys[0].name).await?;
        tracing::info!(event = "password_reset", user_id = %user.id, "password reset");
        self.notify(&user.email, origin, notices::PASSWORD_CHANGED);
        Ok(PasswordChange::Changed)
    }

    /// The first problem with a new password typed twice, if any.
    pub(crate) fn new_password_problem(
        &self,
        new: &SecretString,
        confirm: &SecretString,
        email: &Email,
    ) -> Option<PasswordChange> {
        if new.expose_secret() != confirm.expose_secret() {
            return Some(PasswordChange::Mismatch);
        }
        self.config
            .password_policy
            .check(new.expose_secret(), Some(email))
            .err()
            .map(PasswordChange::Weak)
    }

    /// Ends the session `current` (sign-out), audited.
    pub async fn sign_out(
        &self,
        user_id: Uuid,
        current: &Session,
        origin: &Origin,
    ) -> Result<(), Error> {
        self.end_session(user_id, current, origin, serde_json::json!({}))
            .await
    }

    /// Ends `session` of `user_id` as a sign-out does (revoked, audited as `auth.sign_out` with
    /// `changes` saying why when it was not the user's own click).
    pub(super) async fn end_session(
        &self,
        user_id: Uuid,
        session: &Session,
        origin: &Origin,
        changes: serde_json::Value,
    ) -> Result<(), Error> {
        self.sessions.revoke(user_id, &session.id_hash).await?;
        self.audit_session(user_id, session, origin, "auth.sign_out", changes)
            .await?;
        tracing::info!(event = "sign_out", user_id = %user_id, "signed out");
        Ok(())
    }

    /// Ends one of the user's sessions, by the id their sessions page shows. Another session
    /// needs a recent sign-in ([`Identity::recently_signed_in`]); the current one (signing out)
    /// does not.
    pub async fn revoke_session(
        &self,
        user_id: Uuid,
        current: &Session,
        id_hash: &str,
        origin: &Origin,
    ) -> Result<SessionsEnded, Error> {
        if id_hash != current.id_hash && !self.recently_signed_in(current) {
            return Ok(SessionsEnded::NotRecent);
        }
        if !self.sessions.revoke(user_id, id_hash).await? {
            return Ok(SessionsEnded::Ended(0));
        }
        let short: String = id_hash.chars().take(16).collect();
        self.audit_session(
            user_id,
            current,
            origin,
            "session.revoke",
            serde_json::json!({ "revoked": short }),
        )
        .await?;
        Ok(SessionsEnded::Ended(1))
    }

    /// Ends every other session and API sign-in of the user ("sign out everywhere else"); needs
    /// a recent sign-in ([`Identity::recently_signed_in`]).
    pub async fn revoke_other_sessions(
        &self,
        user_id: Uuid,
        current: &Session,
        origin: &Origin,
    ) -> Result<SessionsEnded, Error> {
        if !self.recently_signed_in(current) {
            return Ok(SessionsEnded::NotRecent);
        }
        let ended = self.end_sign_ins(user_id, Some(&current.id_hash)).await?;
        self.audit_session(
            user_id,
            current,
            origin,
            "session.revoke_others",
            serde_json::json!({ "revoked": ended }),
        )
        .await?;
        Ok(SessionsEnded::Ended(ended))
    }

    async fn audit_session(
        &self,
        user_id: Uuid,
        session: &Session,
        origin: &Origin,
        action: &'static str,
        changes: serde_json::Value,
    ) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        audit::record(
            &mut tx,
            &origin.audit(Actor::User(user_id)),
            AuditEvent {
                action,
                entity_type: "session",
                entity_id: Some(session.id_hash[..16].to_owned()),
                changes,
            },
        )
        .await?;
        tx.commit().await
    }

    /// Mails `notice` to `email`, naming this request's client.
    pub(crate) fn notify(&self, email: &Email, origin: &Origin, notice: notices::Notice) {
        notices::send(
            &self.mailer,
            email,
            self.now(),
            Some(origin.client.0),
            notice,
        );
    }
}
