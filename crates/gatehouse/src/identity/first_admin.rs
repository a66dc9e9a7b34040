//! The first admin (DESIGN.md §7): what a start with no users does, and the one-time setup page's
//! rule.
//!
//! - With `GATEHOUSE_ADMIN_EMAIL`, that address is created as an admin and mailed a sign-in link,
//!   valid `GATEHOUSE_SIGN_IN_LINK_LIFETIME` like every sign-in link (in development without
//!   SMTP the mail, link included, goes to the log).
//! - Without it, development issues a one-time setup link, printed in ONE log line
//!   (`first_admin_setup`), to a page that creates the first admin with a password or a sign-in
//!   mail; production prints no link and says that it needs `GATEHOUSE_ADMIN_EMAIL`.
//!
//! # Security
//! - A setup token is 256 bits from the OS, stored only as an HMAC under the one-time-code data
//!   key ([`Keys::token_mac`]), valid 10 minutes and used
//!   once: consumed by one conditional `UPDATE … WHERE consumed_at IS NULL AND expires_at > now
//!   RETURNING`, in the same transaction that checks there are still no users and creates the
//!   admin, so of two concurrent uses (or two tokens from two starts) exactly one admin is made.
//!   On PostgreSQL that transaction first takes a transaction-scoped advisory lock, because its
//!   `READ COMMITTED` snapshot would let two transactions each count zero users; SQLite's
//!   `BEGIN IMMEDIATE` already serializes writers.
//! - Once any user exists, the setup refuses, whatever the token.
//! - A password is checked against the password policy and typed twice before the token is
//!   used, so a typo costs nothing.
//! - The setup link is never issued in production: a log line is not a safe channel there.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use super::accounts::PasswordChange;
use super::devices::DeviceToken;
use super::queries::first_admin as queries;
use super::service::Identity;
use super::sessions::SessionToken;
use super::signin::Origin;
use super::users::{self, NewUser};
use super::{DisplayName, Email, Role, User};
use crate::audit::{Actor, AuditContext};
use crate::error::Error;
use crate::keys::{Keys, TokenKind};
use crate::store::Tx;

/// How long a setup link works.
pub const SETUP_LINK_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Any constant, the same on every instance: the key of the PostgreSQL advisory lock that
/// serializes first-admin creations.
const FIRST_ADMIN_LOCK: i64 = 0x6761_7465_0001;

/// What a start did about the first admin.
#[derive(Debug)]
pub enum FirstStart {
    /// There are users already: nothing.
    HasUsers,
    /// `GATEHOUSE_ADMIN_EMAIL` was created as admin and mailed a sign-in link.
    AdminCreated(User),
    /// Development without users: a setup link was issued and logged.
    SetupLinkLogged,
    /// Production without users and without `GATEHOUSE_ADMIN_EMAIL`: nothing was issued.
    AdminEmailNeeded,
}

/// Where a setup link stands (the page asks before showing its form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupState {
    /// The link works and there are no users yet.
    Open,
    /// Unknown, used or expired.
    LinkExpired,
    /// A user exists: the setup is over.
    Over,
}

/// How the first admin signs in once created.
#[derive(Debug)]
pub enum FirstSignIn {
    /// With this password (typed twice).
    Password {
        /// The password.
        password: SecretString,
        /// The same, again.
        confirm: SecretString,
    },
    /// With a sign-in link mailed to the address.
    Mail,
}

/// How a setup attempt ended.
#[derive(Debug)]
pub enum SetupOutcome {
    /// The admin was created with a password and signed in: a new session.
    SignedIn {
        /// The session cookie's token.
        token: SessionToken,
        /// The device cookie's token.
        device: DeviceToken,
        /// The new admin.
        user: User,
    },
    /// The admin was created and a sign-in link was mailed.
    LinkMailed(User),
    /// The address is not valid: why, for the person (nothing was used up).
    InvalidEmail(String),
    /// The password is refused (nothing was used up).
    Password(PasswordChange),
    /// The link is unknown, used or expired.
    LinkExpired,
    /// A user exists: the setup is over.
    Over,
}

fn token_hash(keys: &Keys, token: &str) -> String {
    keys.token_mac(TokenKind::Setup, token)
}

impl Identity {
    /// The first-admin step of a start (see the module doc). `admin_email` is
    /// `GATEHOUSE_ADMIN_EMAIL`, already parsed; `production` whether the setup link is refused.
    pub async fn first_start(
        &self,
        admin_email: Option<Email>,
        production: bool,
    ) -> Result<FirstStart, Error> {
        if let Some(email) = admin_email {
            let ctx = AuditContext::system();
            let Some(admin) = users::bootstrap_admin(&self.db, email, &ctx).await? else {
                return Ok(FirstStart::HasUsers);
            };
            tracing::info!(
                event = "admin_bootstrapped",
                user_id = %admin.id,
                "first admin created from GATEHOUSE_ADMIN_EMAIL"
            );
            self.mail_sign_in_link(&admin.email, None).await?;
            return Ok(FirstStart::AdminCreated(admin));
        }
        if self.user_count().await? > 0 {
            return Ok(FirstStart::HasUsers);
        }
        if production {
            tracing::warn!(
                event = "first_admin_needed",
                "No users yet: set GATEHOUSE_ADMIN_EMAIL to the first admin's address and restart; it is created and mailed a sign-in link (production prints no setup link)"
            );
            return Ok(FirstStart::AdminEmailNeeded);
        }
        let token = self.issue_setup_token().await?;
        let minutes = SETUP_LINK_LIFETIME.as_secs() / 60;
        tracing::warn!(
            event = "first_admin_setup",
            "No users yet. To create the first admin, open {}/setup?token={} (works once, for {minutes} minutes; restart for a new link)",
            self.config.base_url,
            token.expose_secret()
        );
        Ok(FirstStart::SetupLinkLogged)
    }

    /// Where the setup link `token` stands, without using it.
    pub async fn setup_state(&self, token: &str) -> Result<SetupState, Error> {
        if self.user_count().await? > 0 {
            return Ok(SetupState::Over);
        }
        if token.len() != 43 || !self.setup_token_live(token).await? {
            return Ok(SetupState::LinkExpired);
        }
        Ok(SetupState::Open)
    }

    /// Creates the first admin with the setup link `token` (see the module's Security section),
    /// then signs them in (password) or mails them a sign-in link.
    pub async fn create_first_admin(
        &self,
        token: &str,
        raw_email: &str,
        sign_in: FirstSignIn,
        origin: &Origin,
    ) -> Result<SetupOutcome, Error> {
        let email = match Email::parse(raw_email) {
            Ok(email) => email,
            Err(e) => return Ok(SetupOutcome::InvalidEmail(e.0)),
        };
        match self.setup_state(token).await? {
            SetupState::Open => {}
            SetupState::LinkExpired => return Ok(SetupOutcome::LinkExpired),
            SetupState::Over => return Ok(SetupOutcome::Over),
        }
        let hash = match &sign_in {
            FirstSignIn::Password { password, confirm } => {
                if let Some(problem) = self.new_password_problem(password, confirm, &email) {
                    return Ok(SetupOutcome::Password(problem));
                }
                Some(self.passwords.hash(password).await?)
            }
            FirstSignIn::Mail => None,
        };
        let now = self.now();
        let mut tx = self.db.begin().await?;
        lock_first_admin(&mut tx).await?;
        if !consume(&mut tx, &self.keys, token, now).await? {
            return Ok(SetupOutcome::LinkExpired);
        }
        if users::count_in(&mut tx).await? > 0 {
            return Ok(SetupOutcome::Over);
        }
        end_all(&mut tx, now).await?;
        let new = NewUser {
            email,
            display_name: DisplayName::default(),
            role: Role::Admin,
        };
        let user = users::insert_audited(
            &mut tx,
            &new,
            hash.as_deref(),
            "user.first_admin",
            &origin.audit(Actor::System),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(event = "first_admin_created", user_id = %user.id, "first admin created on the setup page");
        match sign_in {
            FirstSignIn::Password { .. } => {
                let (token, device) = self.start_session(&user, "setup_password", origin).await?;
                Ok(SetupOutcome::SignedIn {
                    token,
                    device,
                    user,
                })
            }
            FirstSignIn::Mail => {
                self.mail_sign_in_link(&user.email, None).await?;
                Ok(SetupOutcome::LinkMailed(user))
            }
        }
    }

    async fn user_count(&self) -> Result<i64, Error> {
        users::count(&self.db).await
    }

    /// Stores a new setup token (its hash) and returns it; dead tokens older than a day go.
    async fn issue_setup_token(&self) -> Result<SecretString, Error> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.now();
        let expires = now + SETUP_LINK_LIFETIME;
        let cutoff = now - time::Duration::days(1);
        queries::replace_dead_with(
            &self.db,
            cutoff,
            &token_hash(&self.keys, &token),
            now,
            expires,
        )
        .await?;
        Ok(SecretString::from(token))
    }

    async fn setup_token_live(&self, token: &str) -> Result<bool, Error> {
        let now = self.now();
        queries::is_live(&self.db, &token_hash(&self.keys, token), now).await
    }
}

/// Serializes first-admin creations on PostgreSQL until `tx` ends (see the module doc).
async fn lock_first_admin(tx: &mut Tx) -> Result<(), Error> {
    queries::lock(tx, FIRST_ADMIN_LOCK).await
}

/// Uses the setup token once: whether it was live.
async fn consume(
    tx: &mut Tx,
    keys: &Keys,
    token: &str,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    queries::consume(tx, &token_hash(keys, token), now).await
}

/// Ends every other live setup link: the setup is over.
async fn end_all(tx: &mut Tx, now: OffsetDateTime) -> Result<(), Error> {
    queries::end_all(tx, now).await
}
