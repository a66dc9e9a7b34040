//! [`Identity`]: the identity domain's services and the narrow set of parts they use.
//!
//! Every transport (the pages, the JSON API, the command line) reaches users, sign-ins,
//! sessions and credentials through this one value, so each identity rule (limits, locks, the
//! MFA branch, the role that requires MFA, revocations, audit records and notices) is written
//! once, here and in the modules beside it, and applies to every way in. It holds only what the
//! identity services need, not the application's whole state.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_security::{Limiter, Quota};

use super::password_policy::PasswordPolicy;
use super::passwords::PasswordHasher;
use super::sessions::Sessions;
use super::throttle::ThrottleConfig;
use super::tokens::{AccessCache, KeyRing};
use super::{Role, User};
use crate::clock::Clock;
use crate::error::Error;
use crate::keys::Keys;
use crate::mail::Mailer;
use crate::store::Db;

/// The identity rules' settings, taken from the configuration once at startup (`app`).
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The public base URL (no trailing slash): emailed links and the tokens' issuer.
    pub base_url: String,
    /// Domains whose addresses get an account at their first sign-in by link.
    pub allowed_domains: Vec<String>,
    /// Sign-in attempts per submitted address (`GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT`).
    pub signin_email_rate_limit: Option<Quota>,
    /// Sign-in and reset mails per address (`GATEHOUSE_MAGIC_LINK_RATE_LIMIT`).
    pub magic_link_rate_limit: Option<Quota>,
    /// Whether a per-address limit refuses when its store cannot decide.
    pub deny_on_store_error: bool,
    /// Failed sign-in delays and locks.
    pub throttle: ThrottleConfig,
    /// Roles that must have MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`).
    pub mfa_required_roles: Vec<Role>,
    /// Access-token lifetime.
    pub access_token_lifetime: Duration,
    /// Refresh-token (API sign-in) lifetime.
    pub refresh_token_lifetime: Duration,
    /// How long a mailed sign-in link and its one-time code work.
    pub sign_in_link_lifetime: Duration,
    /// How long a reset link works.
    pub password_reset_lifetime: Duration,
    /// What a new password must be.
    pub password_policy: PasswordPolicy,
    /// The passkeys' relying party (the public URL's host and origin); `None` when the public
    /// URL's host is an IP address, which browsers refuse: passkeys are then off.
    pub relying_party: Option<webauthn_rs::Webauthn>,
}

/// The identity services. Cheap to clone (one reference count).
#[derive(Clone, Debug)]
pub struct Identity(Arc<Parts>);

/// What the identity services use.
#[derive(Debug)]
pub struct Parts {
    /// The database.
    pub db: Db,
    /// Keys derived from the secret key.
    pub keys: Arc<Keys>,
    /// Browser sessions (database or Redis).
    pub sessions: Sessions,
    /// Per-address rate limits.
    pub limiter: Limiter,
    /// Password hashing.
    pub passwords: PasswordHasher,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Access-token signing keys.
    pub tokens: Arc<KeyRing>,
    /// Access tokens checked in the last few seconds.
    pub access_cache: Arc<AccessCache>,
    /// The OpenID Connect providers.
    pub oidc: Arc<super::oidc::Providers>,
    /// The upstream access proxy's identity, when one is configured (and its key cache).
    pub upstream: Arc<super::upstream::Upstream>,
    /// The identity settings.
    pub config: IdentityConfig,
}

impl std::ops::Deref for Identity {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Identity {
    /// The services over `parts`.
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    /// The current time.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    // ---- the role that requires MFA: the one place its rule is decided ----------------------

    /// Whether `user`'s role requires MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`).
    pub fn mfa_required(&self, user: &User) -> bool {
        self.config.mfa_required_roles.contains(&user.role)
    }

    /// Whether `user` has a second factor that meets a role requiring MFA: TOTP turned on, or a
    /// registered passkey (every passkey is registered and used with user verification, so it
    /// is a factor of its own: `super::passkeys`).
    async fn has_mfa(&self, user: &User) -> Result<bool, Error> {
        Ok(user.mfa_enabled || super::queries::passkeys::any(&self.db, user.id).await?)
    }

    /// Whether `user`'s role requires MFA and they have none yet (neither TOTP nor a passkey):
    /// such a user reaches nothing but MFA enrolment (TOTP or a passkey) and signing out,
    /// whichever credential they hold.
    pub async fn enrolment_due(&self, user: &User) -> Result<bool, Error> {
        Ok(self.mfa_required(user) && !self.has_mfa(user).await?)
    }

    /// Whether a first factor that is not both factors must be followed by a second: TOTP is
    /// on, or the role requires MFA and the user's second factor is a passkey (so a password
    /// alone never opens an account whose role requires MFA).
    pub async fn second_factor_due(&self, user: &User) -> Result<bool, Error> {
        Ok(user.mfa_enabled || (self.mfa_required(user) && self.has_mfa(user).await?))
    }

    /// Ends every browser session of `user_id` but `keep`, and every API sign-in
    /// (refresh-token family); access tokens this instance trusted stop working at once, and
    /// other instances' within seconds. Returns how many sessions ended.
    pub async fn end_sign_ins(
        &self,
        user_id: uuid::Uuid,
        keep: Option<&str>,
    ) -> Result<usize, crate::error::Error> {
        let ended = self.sessions.revoke_all(user_id, keep).await?;
        super::tokens::revoke_all(&self.db, user_id, self.now()).await?;
        self.access_cache.clear();
        Ok(ended)
    }
}
