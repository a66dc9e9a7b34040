//! MFA on a user's own account: setting it up, new recovery codes, turning it off, and an
//! administrator's reset. Each change is audited (in `mfa`) and mails the user a notice, here,
//! whichever transport asked; turning it on or off and a reset end the user's other sign-ins.
//!
//! # Security
//! - Setting up, turning off and new recovery codes need a sign-in with every factor from the
//!   last ten minutes.
//! - A role that requires MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`) cannot turn it off.
//! - A reset (`gatehouse user reset-mfa`) ends every sign-in of the user: their next one goes
//!   through enrolment again when their role requires MFA.

use super::mfa::{self, Enrolment};
use super::notices;
use super::service::Identity;
use super::sessions::Session;
use super::signin::Origin;
use super::{Email, User, users};
use crate::audit::{Actor, AuditContext};
use crate::error::Error;

/// Why an MFA change was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaRefusal {
    /// The sign-in is too old: sign in again first.
    NotRecent,
    /// The user's role requires MFA: it cannot be turned off.
    RequiredByRole,
    /// The code given does not match the pending secret.
    WrongCode,
    /// Nothing to do (no enrolment pending, MFA already on or off).
    NothingToDo,
}

impl Identity {
    /// Starts (or restarts) setting up an authenticator app.
    pub async fn mfa_setup(
        &self,
        user: &User,
        session: &Session,
    ) -> Result<Result<Enrolment, MfaRefusal>, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Err(MfaRefusal::NotRecent));
        }
        Ok(
            mfa::begin(&self.db, &self.keys, user.id, user.email.as_str())
                .await?
                .ok_or(MfaRefusal::NothingToDo),
        )
    }

    /// The enrolment in progress, to show again after a wrong code.
    pub async fn mfa_enrolment_in_progress(&self, user: &User) -> Result<Option<Enrolment>, Error> {
        mfa::in_progress(&self.db, &self.keys, user.id, user.email.as_str()).await
    }

    /// Turns MFA on with a code from the pending secret: the new recovery codes (shown once).
    pub async fn mfa_confirm(
        &self,
        user: &User,
        session: &Session,
        code: &str,
        origin: &Origin,
    ) -> Result<Result<Vec<String>, MfaRefusal>, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Err(MfaRefusal::NotRecent));
        }
        let ctx = origin.audit(Actor::User(user.id));
        let Some(codes) =
            mfa::confirm(&self.db, &self.keys, user.id, code, self.now(), &ctx).await?
        else {
            return Ok(Err(MfaRefusal::WrongCode));
        };
        let ended = self.end_sign_ins(user.id, Some(&session.id_hash)).await?;
        tracing::info!(event = "mfa_enabled", user_id = %user.id, other_sessions_ended = ended, "two-step sign-in turned on");
        self.notify(&user.email, origin, notices::MFA_ENABLED);
        Ok(Ok(codes))
    }

    /// Replaces every recovery code with ten new ones (shown once; the user is mailed that new
    /// codes were made, never the codes).
    pub async fn mfa_new_recovery_codes(
        &self,
        user: &User,
        session: &Session,
        origin: &Origin,
    ) -> Result<Result<Vec<String>, MfaRefusal>, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Err(MfaRefusal::NotRecent));
        }
        let ctx = origin.audit(Actor::User(user.id));
        let codes =
            mfa::regenerate_recovery_codes(&self.db, &self.keys, user.id, self.now(), &ctx).await?;
        if codes.is_some() {
            tracing::info!(event = "recovery_codes_regenerated", user_id = %user.id, "new recovery codes");
            self.notify(&user.email, origin, notices::RECOVERY_CODES_REGENERATED);
        }
        Ok(codes.ok_or(MfaRefusal::NothingToDo))
    }

    /// Turns MFA off, unless the user's role requires it.
    pub async fn mfa_disable(
        &self,
        user: &User,
        session: &Session,
        origin: &Origin,
    ) -> Result<Result<(), MfaRefusal>, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Err(MfaRefusal::NotRecent));
        }
        if self.mfa_required(user) {
            return Ok(Err(MfaRefusal::RequiredByRole));
        }
        let ctx = origin.audit(Actor::User(user.id));
        if !mfa::disable(&self.db, user.id, "mfa.disable", &ctx).await? {
            return Ok(Err(MfaRefusal::NothingToDo));
        }
        let ended = self.end_sign_ins(user.id, Some(&session.id_hash)).await?;
        tracing::info!(event = "mfa_disabled", user_id = %user.id, other_sessions_ended = ended, "two-step sign-in turned off");
        self.notify(&user.email, origin, notices::MFA_DISABLED);
        Ok(Ok(()))
    }

    /// An administrator's reset of a user who lost both their app and their recovery codes:
    /// MFA off (audited `mfa.reset`), every sign-in of theirs ended, the user told. Returns
    /// whether MFA was on.
    pub async fn mfa_reset(&self, email: &Email, ctx: &AuditContext) -> Result<bool, Error> {
        let user = users::find_by_email(&self.db, email)
            .await?
            .ok_or(Error::NotFound)?;
        let was_on = mfa::disable(&self.db, user.id, "mfa.reset", ctx).await?;
        self.end_sign_ins(user.id, None).await?;
        if was_on {
            notices::send(
                &self.mailer,
                &user.email,
                self.now(),
                ctx.client_ip,
                notices::MFA_RESET,
            );
        }
        Ok(was_on)
    }
}
