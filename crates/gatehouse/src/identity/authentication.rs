//! The one authentication: a credential (a session cookie's token, a bearer access token, an
//! API key) becomes a [`Principal`], or nothing. The page layer and the JSON API both call
//! [`Identity::authenticate`]; which credential a request carries is the transport's to say.
//!
//! # Security
//! - The user's status and role are read at every authentication (an access token is trusted
//!   for at most five seconds per instance, DESIGN.md §7), so a disabled or demoted user loses
//!   access within seconds, not at expiry.
//! - Whatever the credential, a user whose role requires MFA and who has none is marked
//!   [`Principal::enrolment_due`]: the transports let such a principal reach MFA enrolment and
//!   signing out, nothing else.
//! - Failures say no more than "invalid"; the reason goes to the log.

use uuid::Uuid;

use super::service::Identity;
use super::sessions::Session;
use super::tokens::TokenError;
use super::{User, UserStatus, api_keys, tokens, users};
use crate::error::Error;

/// A credential, as the transport found it.
#[derive(Clone, Copy, Debug)]
pub enum Credential<'a> {
    /// The session cookie's token.
    Session(&'a str),
    /// `Authorization: Bearer <JWT>`.
    AccessToken(&'a str),
    /// `Authorization: Bearer gk_…` or `X-API-Key: gk_…`.
    ApiKey(&'a str),
}

/// How a principal authenticated.
#[derive(Clone, Debug)]
pub enum Via {
    /// A browser session.
    Session(Session),
    /// An access token of the API sign-in `family`.
    AccessToken {
        /// The token family (API sign-in).
        family: Uuid,
    },
    /// An API key with its scopes.
    ApiKey {
        /// The key's id.
        id: Uuid,
        /// What it may do.
        scopes: Vec<String>,
    },
}

/// Who a request acts for, and how they proved it.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user, as stored now.
    pub user: User,
    /// The credential's kind.
    pub via: Via,
    /// Whether the user's role requires MFA and they have none (see the module's Security
    /// section).
    pub enrolment_due: bool,
}

/// Why a credential was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// An unknown, expired or revoked session.
    Session,
    /// A bad, expired or revoked access token, or one of an inactive user.
    AccessToken,
    /// An unknown, expired or revoked API key, or one of an inactive user.
    ApiKey,
}

impl Identity {
    /// The principal `credential` proves, or why it proves none.
    pub async fn authenticate(
        &self,
        credential: Credential<'_>,
    ) -> Result<Result<Principal, Refused>, Error> {
        let found = match credential {
            Credential::Session(token) => self.by_session(token).await?,
            Credential::AccessToken(token) => self.by_access_token(token).await?,
            Credential::ApiKey(raw) => self.by_api_key(raw).await?,
        };
        Ok(match found {
            Some((user, via)) => Ok(Principal {
                enrolment_due: self.enrolment_due(&user).await?,
                user,
                via,
            }),
            None => Err(match credential {
                Credential::Session(_) => Refused::Session,
                Credential::AccessToken(_) => Refused::AccessToken,
                Credential::ApiKey(_) => Refused::ApiKey,
            }),
        })
    }

    async fn active_user(&self, id: Uuid) -> Result<Option<User>, Error> {
        Ok(users::find_by_id(&self.db, id)
            .await?
            .filter(|u| u.status == UserStatus::Active))
    }

    async fn by_session(&self, token: &str) -> Result<Option<(User, Via)>, Error> {
        let Some(session) = self.sessions.load(token).await? else {
            return Ok(None);
        };
        let Some(user) = self.active_user(session.user_id).await? else {
            return Ok(None);
        };
        let session = self.sessions.touch(session).await?;
        Ok(Some((user, Via::Session(session))))
    }

    async fn by_api_key(&self, raw: &str) -> Result<Option<(User, Via)>, Error> {
        let Some(key) = api_keys::authenticate(&self.db, raw, self.now()).await? else {
            tracing::info!(event = "access_denied", "API key refused");
            return Ok(None);
        };
        let Some(user) = self.active_user(key.user_id).await? else {
            tracing::info!(event = "access_denied", user_id = %key.user_id, "API key of an inactive user");
            return Ok(None);
        };
        Ok(Some((
            user,
            Via::ApiKey {
                id: key.id,
                scopes: key.scopes,
            },
        )))
    }

    async fn by_access_token(&self, token: &str) -> Result<Option<(User, Via)>, Error> {
        let now = self.now();
        if let Some((user, family)) = self.access_cache.get(token, now) {
            return Ok(Some((user, Via::AccessToken { family })));
        }
        let claims = match self
            .tokens
            .verify(token, &self.config.base_url, now, &self.db, &self.keys)
            .await
        {
            Ok(claims) => claims,
            Err(TokenError::Other(e)) => return Err(e),
            Err(e) => {
                tracing::info!(event = "access_denied", reason = %e, "bearer token refused");
                return Ok(None);
            }
        };
        let (Ok(user_id), Ok(family)) =
            (Uuid::parse_str(&claims.sub), Uuid::parse_str(&claims.sid))
        else {
            return Ok(None);
        };
        let live = tokens::family_live(&self.db, family, user_id, now).await?;
        match self.active_user(user_id).await? {
            Some(user) if live => {
                self.access_cache
                    .put(token, user.clone(), family, claims.exp, now);
                Ok(Some((user, Via::AccessToken { family })))
            }
            _ => {
                tracing::info!(event = "access_denied", user_id = %user_id, "bearer token of a revoked sign-in or an inactive user");
                Ok(None)
            }
        }
    }
}
