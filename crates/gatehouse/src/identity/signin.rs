//! The one sign-in pipeline: every first factor (password, link, one-time code, passkey, OpenID
//! Connect, the person an upstream access proxy vouches for: `super::upstream`) and the second
//! factor (TOTP or recovery code, or a passkey), on the pages and through the API's password
//! grant, runs through here.
//!
//! Each way in is one [`Identity`] method that takes an attempt and returns an [`Outcome`].
//! Inside, once and in this order:
//! 1. the per-address limit (`GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT`; the per-IP limit is the
//!    request pipeline's `signin` rule);
//! 2. the lock check and the failure record as one atomic step ([`throttle::reserve`]);
//! 3. verification of the factor;
//! 4. the failure: its audit record, the lock record when this failure locked a key;
//! 5. the MFA branch: a user with MFA gets no session or token from a first factor alone (a
//!    passkey verified with user verification is both factors: possession and the PIN or
//!    biometric that unlocked it);
//! 6. the required-role rule: a user whose role requires MFA and who has none gets no token
//!    ([`Outcome::EnrolmentRequired`]); in the browser their session reaches only enrolment;
//! 7. the failure count cleared only after the LAST factor ([`throttle::Reservation`]);
//! 8. the session or the token family, with its `auth.sign_in` audit record;
//! 9. the device remembered with the sign-in's audit record, and the notices (a recovery code
//!    used, a sign-in from a new device: [`super::devices`]).
//!
//! A password that signs in but is on the list of common passwords still signs in, and the
//! outcome says so (`password_change_advised`, decided by
//! [`Identity::password_change_advised`] alone): the pages lead the user to the change-password
//! form, the API's token answer carries the field (ASVS V2.1.7).
//!
//! # Security
//! - **No oracle.** An unknown address, a wrong password, a user without a password and a
//!   disabled user get the same [`Outcome::Refused`] after the same work (a dummy
//!   verification when there is no hash), and are recorded alike.
//! - Every sign-in creates a new session (fresh token and CSRF secret) and is audited.
//! - **Passkeys.** A discoverable answer names its account only once its ceremony (single use)
//!   is taken; the per-address limit and the throttle then apply to that account as for a
//!   password, and a failed verification counts as a failed sign-in (`auth.passkey_failed`).
//! - A reset or a link never removes MFA: the second factor is due whichever first factor was
//!   given.
//! - **Login CSRF.** A link names the account it signs in ([`Identity::preview_link`], masked
//!   as in the logs), and a link for another account than the one signed in in this browser
//!   signs in only once the switch is confirmed ([`Outcome::SwitchUnconfirmed`] until then): a
//!   crafted link cannot silently swap a user into someone else's account.

use std::time::Duration;

use gatehouse_security::{ClientIp, Decision};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::devices::{self, Device, DeviceToken, Seen};
use super::links::Allowance;
pub use super::links::LinkRequest;
use super::magic_links::{self, CodeOutcome, Consumed};
use super::mfa::{self, Checked, PendingSignIn};
use super::notices;
use super::oidc::flow::{Callback, FlowKey, Refusal};
use super::oidc::identities::Resolved;
use super::password_policy;
use super::service::Identity;
use super::sessions::{SessionMeta, SessionToken};
use super::throttle::{self, Reservation};
pub use super::token_grants::IssuedTokens;
use super::users::{self, NewUser};
use super::{DisplayName, Email, Role, User, UserStatus};
use crate::audit::{self, Actor, AuditContext, AuditEvent};
use crate::error::Error;
use crate::mail::mask_email;
use crate::store::Tx;
use webauthn_rs::prelude::PublicKeyCredential;

/// Where an attempt comes from: the client and the request.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The client's address (as the trusted proxies tell it).
    pub client: ClientIp,
    /// The browser's `User-Agent`.
    pub user_agent: Option<String>,
    /// The request ID.
    pub request_id: Option<String>,
    /// The browser's device cookie, when it sent a well-formed one (see [`super::devices`]).
    pub device: Option<DeviceToken>,
}

impl Origin {
    fn meta(&self) -> SessionMeta {
        SessionMeta {
            client_ip: Some(self.client.0),
            user_agent: self.user_agent.clone(),
        }
    }

    /// The audit context of a change `actor` makes from this request.
    pub fn audit(&self, actor: Actor) -> AuditContext {
        AuditContext {
            actor,
            client_ip: Some(self.client.0),
            request_id: self.request_id.clone(),
        }
    }
}

/// What the sign-in is for.
#[derive(Debug)]
pub enum Channel {
    /// A browser: the outcome is a session (or a pending second factor).
    Browser,
    /// The API's password grant: the outcome is a token pair; `otp` is the second factor sent
    /// with the password.
    Api {
        /// A TOTP code or a recovery code.
        otp: Option<String>,
    },
}

/// The second factor of a pending sign-in.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactor<'a> {
    /// A TOTP code or a recovery code.
    Code(&'a str),
    /// A passkey's answer to the second-factor ceremony `ceremony`.
    Passkey {
        /// The ceremony's token.
        ceremony: &'a str,
        /// The browser's answer.
        credential: &'a PublicKeyCredential,
    },
}

/// How a sign-in attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// A new session for the user; go to `next`.
    SignedIn {
        /// The session cookie's token.
        token: SessionToken,
        /// The device cookie's token, to set again (renewing it) or for the first time.
        device: DeviceToken,
        /// Who.
        user: User,
        /// Where to go.
        next: Option<String>,
        /// The password given is on the list of common passwords: tell the user to change it.
        password_change_advised: bool,
    },
    /// The first factor was right; the second is due (browser).
    SecondFactorDue(PendingSignIn),
    /// Tokens for the API.
    TokensIssued(IssuedTokens),
    /// The API password grant of a user with MFA came without `otp`.
    MfaRequired,
    /// The user's role requires MFA and they have none: no token until they enrol.
    EnrolmentRequired,
    /// Wrong, unknown, disabled, used or expired: one answer for all.
    Refused,
    /// Too many failures: wait this long.
    Throttled(Duration),
    /// A link for another account than the one signed in in this browser, posted without the
    /// switch confirmed: nothing was used; ask first.
    SwitchUnconfirmed(LinkConfirmation),
    /// Over the per-address limit.
    RateLimited(Decision),
}

/// How an OpenID Connect callback ended.
#[derive(Debug)]
pub enum OidcOutcome {
    /// A sign-in through the pipeline, ended as any other.
    SignIn(Outcome),
    /// A linking flow linked the identity to the signed-in user.
    Linked,
    /// Refused (and audited): which page to show.
    Refused(Refusal),
}

/// What the confirmation page of a usable link says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfirmation {
    /// The account the link signs in, masked as in the logs (`a***@example.com`).
    pub account: String,
    /// The other user signed in in this browser, whom signing in would replace.
    pub replaces: Option<Email>,
}

/// A first factor that checked out.
struct FirstFactor {
    user: User,
    method: String,
    next: Option<String>,
    reservation: Reservation,
    /// See [`Identity::password_change_advised`].
    password_change_advised: bool,
    /// The factor was verified with user verification (a passkey): it is both factors.
    both_factors: bool,
}

impl Identity {
    /// Signs in with an email address and a password.
    pub async fn sign_in_with_password(
        &self,
        raw_email: &str,
        password: &SecretString,
        next: Option<String>,
        channel: Channel,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let Ok(email) = Email::parse(raw_email) else {
            // The same work as a real check: a malformed address tells nothing either.
            self.passwords.verify_dummy(password).await?;
            return Ok(Outcome::Refused);
        };
        let reservation = match self.admit(&email, origin).await? {
            Ok(reservation) => reservation,
            Err(outcome) => return Ok(outcome),
        };
        match self.check_password(&email, password).await? {
            Some(user) => {
                let first = FirstFactor {
                    user,
                    method: if matches!(channel, Channel::Api { .. }) {
                        "api_password"
                    } else {
                        "password"
                    }
                    .to_owned(),
                    next: next.as_deref().and_then(magic_links::safe_next),
                    reservation,
                    password_change_advised: self.password_change_advised(password),
                    both_factors: false,
                };
                self.after_first_factor(first, channel, origin).await
            }
            None => {
                self.failed(&email, "auth.password_failed", reservation, origin, None)
                    .await?;
                Ok(Outcome::Refused)
            }
        }
    }

    /// What the confirmation page of the link `token` says, without using it: `None` when the
    /// link is unknown, used or expired. `signed_in` is the user signed in in this browser, if
    /// any.
    pub async fn preview_link(
        &self,
        token: &str,
        signed_in: Option<&User>,
    ) -> Result<Option<LinkConfirmation>, Error> {
        let Some(email) = magic_links::peek_token(&self.db, &self.keys, self.now(), token).await?
        else {
            return Ok(None);
        };
        Ok(Some(LinkConfirmation {
            account: mask_email(&email),
            replaces: signed_in
                .filter(|user| user.email != email)
                .map(|user| user.email.clone()),
        }))
    }

    /// Signs in with the token of an emailed link (browser). `signed_in` is the user already
    /// signed in in this browser, if any: when the link is for another account it is used only
    /// if `switch_confirmed`, else the answer is [`Outcome::SwitchUnconfirmed`] and the link
    /// stays usable.
    pub async fn sign_in_with_link(
        &self,
        token: &str,
        signed_in: Option<&User>,
        switch_confirmed: bool,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        if let Some(user) = signed_in.filter(|_| !switch_confirmed) {
            if let Some(confirmation) = self.preview_link(token, Some(user)).await? {
                if confirmation.replaces.is_some() {
                    tracing::info!(event = "link_switch_unconfirmed", user_id = %user.id, to = %confirmation.account, "a link for another account was posted without confirming the switch");
                    return Ok(Outcome::SwitchUnconfirmed(confirmation));
                }
            }
        }
        // A 256-bit single-use token cannot be guessed: no throttle, the rest as every way in.
        let Some(consumed) =
            magic_links::consume_token(&self.db, &self.keys, self.now(), token).await?
        else {
            return Ok(Outcome::Refused);
        };
        self.after_consumed(consumed, "magic_link", Reservation::none(), origin)
            .await
    }

    /// Signs in with the one-time code mailed with a link, entered with its address (browser).
    pub async fn sign_in_with_code(
        &self,
        raw_email: &str,
        code: &str,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let Ok(email) = Email::parse(raw_email) else {
            return Ok(Outcome::Refused);
        };
        let reservation = match self.admit(&email, origin).await? {
            Ok(reservation) => reservation,
            Err(outcome) => return Ok(outcome),
        };
        match magic_links::consume_code(&self.db, &self.keys, self.now(), &email, code).await? {
            CodeOutcome::Accepted(consumed) => {
                self.after_consumed(consumed, "code", reservation, origin)
                    .await
            }
            CodeOutcome::Rejected => {
                self.failed(&email, "auth.code_failed", reservation, origin, None)
                    .await?;
                Ok(Outcome::Refused)
            }
        }
    }

    /// Finishes an OpenID Connect flow at its callback (browser): the state, the code and the ID
    /// token checked (`oidc::flow`), the identity's user found or linked by the linking rules
    /// (`oidc::identities`), then the per-address limit and lock and the rest of the pipeline
    /// as for every first factor (`oidc:<provider>` in the records). A linking flow links the
    /// identity to `signed_in`, who started it, instead. Refusals are audited.
    pub async fn sign_in_with_oidc(
        &self,
        provider: &str,
        callback: &Callback,
        browser: Option<&FlowKey>,
        signed_in: Option<&User>,
        origin: &Origin,
    ) -> Result<OidcOutcome, Error> {
        let refused = |refusal: Refusal, user: Option<Uuid>| async move {
            if refusal != Refusal::UnknownProvider {
                self.oidc_refused(provider, refusal, user, origin).await?;
            }
            Ok::<_, Error>(OidcOutcome::Refused(refusal))
        };
        let finished = match self.finish_oidc(provider, callback, browser).await? {
            Ok(finished) => finished,
            Err(refusal) => return refused(refusal, signed_in.map(|u| u.id)).await,
        };
        if let Some(link_user) = finished.link_user {
            // A linking flow links to the user who started it, still signed in here.
            let Some(user) = signed_in.filter(|u| u.id == link_user) else {
                return refused(Refusal::Expired, signed_in.map(|u| u.id)).await;
            };
            return match self.link_oidc(user, &finished, origin).await? {
                Ok(()) => Ok(OidcOutcome::Linked),
                Err(refusal) => refused(refusal, Some(user.id)).await,
            };
        }
        let user = match self.resolve_oidc(&finished, origin).await? {
            Resolved::User(user) => user,
            Resolved::Refused(refusal) => return refused(refusal, None).await,
        };
        let reservation = match self.admit(&user.email, origin).await? {
            Ok(reservation) => reservation,
            Err(outcome) => return Ok(OidcOutcome::SignIn(outcome)),
        };
        let first = FirstFactor {
            user,
            method: format!("oidc:{provider}"),
            next: finished.next,
            reservation,
            password_change_advised: false,
            both_factors: false,
        };
        let outcome = self
            .after_first_factor(first, Channel::Browser, origin)
            .await?;
        Ok(OidcOutcome::SignIn(outcome))
    }

    /// Signs in with a discoverable passkey (browser, no address typed): `credential` is the
    /// browser's answer to the sign-in ceremony `ceremony`. Verified with user verification, it
    /// is both factors.
    pub async fn sign_in_with_passkey(
        &self,
        ceremony: &str,
        credential: &PublicKeyCredential,
        next: Option<String>,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        // The ceremony first: it works once, whatever comes after.
        let Some(state) = self.passkey_sign_in_state(ceremony).await? else {
            return Ok(Outcome::Refused);
        };
        let Some(claimed) = self.passkey_claimed(credential).await? else {
            return Ok(Outcome::Refused);
        };
        let email = claimed.user.email.clone();
        let reservation = match self.admit(&email, origin).await? {
            Ok(reservation) => reservation,
            Err(outcome) => return Ok(outcome),
        };
        if !self
            .passkey_verify_discoverable(state, credential, &claimed)
            .await?
        {
            let user = Some((claimed.user.id, "passkey"));
            self.failed(&email, "auth.passkey_failed", reservation, origin, user)
                .await?;
            return Ok(Outcome::Refused);
        }
        let first = FirstFactor {
            user: claimed.user,
            method: "passkey".to_owned(),
            next: next.as_deref().and_then(magic_links::safe_next),
            reservation,
            password_change_advised: false,
            both_factors: true,
        };
        self.after_first_factor(first, Channel::Browser, origin)
            .await
    }

    /// Finishes a browser sign-in whose second factor was due, with a TOTP or recovery code or
    /// a passkey. `pending` is what the browser's pending cookie held, already checked genuine.
    pub async fn sign_in_second_factor(
        &self,
        pending: &PendingSignIn,
        factor: SecondFactor<'_>,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let user = match users::find_by_id(&self.db, pending.user_id).await? {
            Some(u) if u.status == UserStatus::Active && self.second_factor_due(&u).await? => u,
            _ => return Ok(Outcome::Refused),
        };
        let keys = throttle::keys(&self.config.throttle, &user.email, &origin.client);
        let reservation =
            match throttle::reserve(&self.db, &self.config.throttle, keys, self.now()).await? {
                Ok(reservation) => reservation,
                Err(wait) => return Ok(Outcome::Throttled(wait)),
            };
        let method = match self
            .check_second_factor(&user, factor, reservation, origin, &pending.method)
            .await?
        {
            Some(method) => method,
            None => return Ok(Outcome::Refused),
        };
        let (token, device) = self.start_session(&user, &method, origin).await?;
        Ok(Outcome::SignedIn {
            token,
            device,
            user,
            next: pending.next.clone(),
            password_change_advised: pending.password_change_advised,
        })
    }

    /// Whether a pending sign-in can still be finished: its user is active and still has a
    /// second factor due.
    pub async fn pending_still_valid(&self, pending: &PendingSignIn) -> Result<bool, Error> {
        Ok(match users::find_by_id(&self.db, pending.user_id).await? {
            Some(u) if u.status == UserStatus::Active => self.second_factor_due(&u).await?,
            _ => false,
        })
    }

    /// The per-address limit, then the throttle's reservation: `Err` is the outcome to answer.
    async fn admit(
        &self,
        email: &Email,
        origin: &Origin,
    ) -> Result<Result<Reservation, Outcome>, Error> {
        if let Some(decision) = self.signin_budget(email).await {
            return Ok(Err(Outcome::RateLimited(decision)));
        }
        let keys = throttle::keys(&self.config.throttle, email, &origin.client);
        Ok(
            match throttle::reserve(&self.db, &self.config.throttle, keys, self.now()).await? {
                Ok(reservation) => Ok(reservation),
                Err(wait) => Err(Outcome::Throttled(wait)),
            },
        )
    }

    /// Signs in (browser) the person an upstream access proxy vouches for, `email` as
    /// `identity::upstream` verified it; `method` names the proxy (`cloudflare_access`,
    /// `trusted_header`). The proxy did the checking, so nothing here can fail but the limits
    /// and the allowlist; the rest is every first factor's.
    pub(super) async fn sign_in_upstream(
        &self,
        email: &Email,
        method: &'static str,
        next: Option<String>,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let reservation = match self.admit(email, origin).await? {
            Ok(reservation) => reservation,
            Err(outcome) => return Ok(outcome),
        };
        let next = next.as_deref().and_then(magic_links::safe_next);
        self.as_allowed_user(email, method, next, reservation, origin)
            .await
    }

    /// A consumed link or code: its address's user, then the common tail.
    async fn after_consumed(
        &self,
        consumed: Consumed,
        method: &'static str,
        reservation: Reservation,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        self.as_allowed_user(&consumed.email, method, consumed.next, reservation, origin)
            .await
    }

    /// A first factor that proved the address `email` (a link, a code, an upstream proxy):
    /// its user when the address may sign in (created in an allowed domain), then the common
    /// tail; refused otherwise, the attempt given back.
    async fn as_allowed_user(
        &self,
        email: &Email,
        method: &'static str,
        next: Option<String>,
        reservation: Reservation,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let user = match self.allowance(email).await? {
            Allowance::User(user) => user,
            Allowance::No => {
                reservation.refund(&self.db, self.now()).await?;
                return Ok(Outcome::Refused);
            }
            Allowance::NewInAllowedDomain => {
                let new = NewUser {
                    email: email.clone(),
                    display_name: DisplayName::default(),
                    role: Role::User,
                };
                match users::create(&self.db, new, &origin.audit(Actor::System)).await {
                    Ok(user) => user,
                    // Two first sign-ins at once (a page and its favicon behind a proxy): the
                    // other made the account.
                    Err(Error::Conflict(_)) => match users::find_by_email(&self.db, email).await? {
                        Some(user) if user.status == UserStatus::Active => user,
                        _ => {
                            reservation.refund(&self.db, self.now()).await?;
                            return Ok(Outcome::Refused);
                        }
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        let first = FirstFactor {
            user,
            method: method.to_owned(),
            next,
            reservation,
            password_change_advised: false,
            both_factors: false,
        };
        self.after_first_factor(first, Channel::Browser, origin)
            .await
    }

    /// Everything after a right first factor: the MFA branch, the required-role rule, the
    /// throttle's settlement, and the session or the tokens.
    async fn after_first_factor(
        &self,
        first: FirstFactor,
        channel: Channel,
        origin: &Origin,
    ) -> Result<Outcome, Error> {
        let FirstFactor {
            user,
            method,
            next,
            reservation,
            password_change_advised,
            both_factors,
        } = first;
        let now = self.now();
        let second_factor_due = !both_factors && self.second_factor_due(&user).await?;
        let method = match (&channel, second_factor_due) {
            (Channel::Browser, true) => {
                // Not the last factor: the attempt gives its count back, the address is not
                // cleared until the code is right.
                reservation.refund(&self.db, now).await?;
                tracing::info!(event = "second_factor_due", user_id = %user.id, method, "first factor accepted; second factor due");
                let mut pending = PendingSignIn::new(user.id, &method, next, now);
                pending.password_change_advised = password_change_advised;
                return Ok(Outcome::SecondFactorDue(pending));
            }
            (Channel::Api { otp: None }, true) => {
                reservation.refund(&self.db, now).await?;
                return Ok(Outcome::MfaRequired);
            }
            (Channel::Api { otp: Some(otp) }, true) => {
                // The password and the code are one attempt: one reservation covers both.
                match self
                    .check_second_factor(
                        &user,
                        SecondFactor::Code(otp),
                        reservation,
                        origin,
                        &method,
                    )
                    .await?
                {
                    Some(method) => method,
                    None => return Ok(Outcome::Refused),
                }
            }
            (_, false) => {
                reservation.succeed(&self.db, now).await?;
                method
            }
        };
        match channel {
            Channel::Browser => {
                let (token, device) = self.start_session(&user, &method, origin).await?;
                Ok(Outcome::SignedIn {
                    token,
                    device,
                    user,
                    next,
                    password_change_advised,
                })
            }
            Channel::Api { .. } => {
                if self.enrolment_due(&user).await? {
                    tracing::info!(event = "access_denied", user_id = %user.id, "no API tokens before MFA enrolment");
                    return Ok(Outcome::EnrolmentRequired);
                }
                let mut tokens = self.start_api_sign_in(&user, &method, origin).await?;
                tokens.password_change_advised = password_change_advised;
                Ok(Outcome::TokensIssued(tokens))
            }
        }
    }

    /// Checks the second factor of `user` under `reservation`: on success the method with its
    /// second factor (`password+totp`, `password+passkey`, …), the address cleared and a
    /// notice for a recovery code; on failure `None`, recorded.
    async fn check_second_factor(
        &self,
        user: &User,
        factor: SecondFactor<'_>,
        reservation: Reservation,
        origin: &Origin,
        first_method: &str,
    ) -> Result<Option<String>, Error> {
        let now = self.now();
        let ctx = origin.audit(Actor::User(user.id));
        let code = match factor {
            SecondFactor::Code(code) => code,
            SecondFactor::Passkey {
                ceremony,
                credential,
            } => {
                if !self
                    .passkey_verify_second_factor(user.id, ceremony, credential)
                    .await?
                {
                    let failed_method = format!("{first_method}+passkey");
                    self.failed(
                        &user.email,
                        "auth.mfa_failed",
                        reservation,
                        origin,
                        Some((user.id, &failed_method)),
                    )
                    .await?;
                    return Ok(None);
                }
                reservation.succeed(&self.db, now).await?;
                return Ok(Some(format!("{first_method}+passkey")));
            }
        };
        let second = match mfa::check(&self.db, &self.keys, user.id, code, now, &ctx).await? {
            Checked::Totp => "totp",
            Checked::RecoveryCode { remaining } => {
                tracing::warn!(event = "recovery_code_used", user_id = %user.id, remaining, "signed in with a recovery code");
                notices::send(
                    &self.mailer,
                    &user.email,
                    now,
                    Some(origin.client.0),
                    notices::RECOVERY_CODE_USED,
                );
                "recovery_code"
            }
            checked @ (Checked::Replayed | Checked::Rejected) => {
                if checked == Checked::Replayed {
                    notices::send(
                        &self.mailer,
                        &user.email,
                        now,
                        Some(origin.client.0),
                        notices::TOTP_REPLAYED,
                    );
                }
                self.failed(
                    &user.email,
                    "auth.mfa_failed",
                    reservation,
                    origin,
                    Some((user.id, first_method)),
                )
                .await?;
                return Ok(None);
            }
        };
        reservation.succeed(&self.db, now).await?;
        Ok(Some(format!("{first_method}+{second}")))
    }

    /// Records a failed attempt (already counted by its reservation): its audit record and, when
    /// it locked a key, the lock's. For a second factor, `user` names whose and after what.
    async fn failed(
        &self,
        email: &Email,
        action: &'static str,
        reservation: Reservation,
        origin: &Origin,
        user: Option<(Uuid, &str)>,
    ) -> Result<(), Error> {
        let locked = reservation.locked();
        reservation
            .fail(&self.db, &self.config.throttle, self.now())
            .await?;
        let mut tx = self.db.begin().await?;
        let event = match user {
            Some((id, method)) => AuditEvent {
                action,
                entity_type: "user",
                entity_id: Some(id.to_string()),
                changes: serde_json::json!({ "method": method }),
            },
            None => address_event(action, email, serde_json::json!({})),
        };
        let ctx = origin.audit(user.map_or(Actor::System, |(id, _)| Actor::User(id)));
        audit::record(&mut tx, &ctx, event).await?;
        if locked {
            let minutes = self.config.throttle.lock_duration.as_secs() / 60;
            let event = address_event(
                "auth.locked",
                email,
                serde_json::json!({ "minutes": minutes }),
            );
            audit::record(&mut tx, &origin.audit(Actor::System), event).await?;
        }
        tx.commit().await?;
        tracing::warn!(event = "sign_in_failed", action, to = %mask_email(email), "sign-in failed");
        if locked {
            tracing::warn!(event = "sign_in_locked", to = %mask_email(email), "sign-in locked after repeated failures");
        }
        Ok(())
    }

    /// Whether a user who signed in with `password` is told to change it: it is on the list of
    /// common passwords that the policy refuses for a new password. The one place this is
    /// decided, for every channel.
    pub fn password_change_advised(&self, password: &SecretString) -> bool {
        password_policy::is_common(password.expose_secret())
    }

    /// Checks a password: `Some(user)` only for an active user whose password it is, after the
    /// same work whatever the case. A legacy or outdated hash is replaced after a success.
    async fn check_password(
        &self,
        email: &Email,
        password: &SecretString,
    ) -> Result<Option<User>, Error> {
        let user = users::find_by_email(&self.db, email).await?;
        let stored = match &user {
            Some(u) => users::password_hash(&self.db, u.id).await?,
            None => None,
        };
        let verified = match &stored {
            Some(hash) => self.passwords.verify(password, hash).await?,
            None => {
                self.passwords.verify_dummy(password).await?;
                super::passwords::Verified {
                    ok: false,
                    needs_rehash: false,
                }
            }
        };
        let user = match user {
            Some(u) if verified.ok && u.status == UserStatus::Active => u,
            _ => return Ok(None),
        };
        if verified.needs_rehash {
            let fresh = self.passwords.hash(password).await?;
            users::upgrade_password_hash(&self.db, user.id, &fresh).await?;
            tracing::info!(event = "password_hash_upgraded", user_id = %user.id, "password hash upgraded to the current parameters");
        }
        Ok(Some(user))
    }

    /// Starts a session for a user whose sign-in is complete (`method` names every factor),
    /// audited as `auth.sign_in`, and remembers the browser as a device of theirs (mailing them
    /// when it is new). Returns the session's token and the device token for the cookie.
    pub(crate) async fn start_session(
        &self,
        user: &User,
        method: &str,
        origin: &Origin,
    ) -> Result<(SessionToken, DeviceToken), Error> {
        let device = origin.device.clone().unwrap_or_else(DeviceToken::generate);
        let (token, session) = self.sessions.create(user.id, &origin.meta()).await?;
        let tx = self.db.begin().await?;
        self.complete_sign_in(
            tx,
            user,
            method,
            Device::Browser(&device),
            "session",
            session.id_hash[..16].to_owned(),
            origin,
        )
        .await?;
        tracing::info!(event = "sign_in", user_id = %user.id, method, "signed in");
        Ok((token, device))
    }

    /// The last step of every complete sign-in, browser or API, once its session or token
    /// family exists: in `tx` (the caller's, which this commits), the device remembered and the
    /// `auth.sign_in` audit record naming whether the device was new; then the new-device
    /// notice. The one place that decides whether a sign-in is from a new device.
    #[expect(
        clippy::too_many_arguments,
        reason = "the sign-in's transaction, who, how, from which device, its record, its origin"
    )]
    pub(super) async fn complete_sign_in(
        &self,
        mut tx: Tx,
        user: &User,
        method: &str,
        device: Device<'_>,
        entity_type: &'static str,
        entity_id: String,
        origin: &Origin,
    ) -> Result<(), Error> {
        let now = self.now();
        let seen = devices::remember(&mut tx, &self.keys, user.id, device, now).await?;
        audit::record(
            &mut tx,
            &origin.audit(Actor::User(user.id)),
            AuditEvent {
                action: "auth.sign_in",
                entity_type,
                entity_id: Some(entity_id),
                changes: serde_json::json!({ "method": method, "new_device": seen == Seen::New }),
            },
        )
        .await?;
        tx.commit().await?;
        if seen == Seen::New {
            tracing::warn!(event = "new_device_sign_in", user_id = %user.id, method, "signed in from a new device; the user is told");
            notices::send_new_device(
                &self.mailer,
                &user.email,
                now,
                origin.client.0,
                origin.user_agent.as_deref(),
            );
        }
        Ok(())
    }
}

/// An audit event about a submitted address, named masked.
pub(crate) fn address_event(
    action: &'static str,
    email: &Email,
    changes: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        action,
        entity_type: "email",
        entity_id: Some(mask_email(email)),
        changes,
    }
}
