//! The API's token grants after the sign-in: refreshing a token pair (rotation with reuse
//! detection), revoking an API sign-in, and starting one for a user the sign-in pipeline let in.
//!
//! # Security
//! - A refresh token works once; a spent one presented again ends its whole sign-in (family),
//!   audited as `auth.refresh_token_reused`.
//! - A disabled user's sign-in ends at its next refresh; a user whose role requires MFA and who
//!   has none gets no new tokens.
//! - The family and its `auth.sign_in` audit record are written in one transaction.

use std::time::Duration;

use uuid::Uuid;

use super::devices::Device;
use super::service::Identity;
use super::signin::{Origin, Outcome};
use super::{User, UserStatus, tokens, users};
use crate::audit::{self, Actor, AuditContext, AuditEvent};
use crate::error::Error;

/// A new API sign-in: an access token and the first refresh token of its family.
#[derive(Debug)]
pub struct IssuedTokens {
    /// Whose.
    pub user_id: Uuid,
    /// The sign-in (refresh-token family).
    pub family: Uuid,
    /// The signed access token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: Duration,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// The password of this sign-in is on the list of common passwords: the user should change
    /// it (always `false` for a refresh).
    pub password_change_advised: bool,
}

impl Identity {
    /// Trades a refresh token for a new pair. A spent token presented again ends its sign-in;
    /// a disabled user's sign-in ends at its next refresh.
    pub async fn refresh_tokens(&self, raw: &str, origin: &Origin) -> Result<Outcome, Error> {
        let now = self.now();
        match tokens::refresh(&self.db, raw, now).await? {
            tokens::Refreshed::Rotated {
                user_id,
                family,
                token,
            } => {
                let user = users::find_by_id(&self.db, user_id).await?;
                match user {
                    Some(user) if user.status == UserStatus::Active => {
                        if self.enrolment_due(&user).await? {
                            return Ok(Outcome::EnrolmentRequired);
                        }
                        Ok(Outcome::TokensIssued(
                            self.access_token(user_id, family, token).await?,
                        ))
                    }
                    _ => {
                        tokens::revoke_family(&self.db, family, now).await?;
                        self.access_cache.clear();
                        Ok(Outcome::Refused)
                    }
                }
            }
            tokens::Refreshed::Reused { user_id, family } => {
                self.access_cache.clear();
                tracing::warn!(event = "refresh_token_reused", user_id = %user_id, family = %family, "a spent refresh token was presented again: its sign-in is revoked");
                self.audit_family(
                    &origin.audit(Actor::User(user_id)),
                    "auth.refresh_token_reused",
                    family,
                )
                .await?;
                Ok(Outcome::Refused)
            }
            tokens::Refreshed::Invalid => Ok(Outcome::Refused),
        }
    }

    /// Ends the API sign-in a refresh or access token belongs to (RFC 7009: whatever the token
    /// was, the caller hears the same).
    pub async fn revoke_token(&self, raw: &str, origin: &Origin) -> Result<(), Error> {
        let now = self.now();
        let family = match tokens::family_of(&self.db, raw).await? {
            Some(family) => Some(family),
            // An access token names its family in `sid`.
            None => self
                .tokens
                .verify(raw, &self.config.base_url, now, &self.db, &self.keys)
                .await
                .ok()
                .and_then(|c| Uuid::parse_str(&c.sid).ok()),
        };
        if let Some(family) = family {
            if tokens::revoke_family(&self.db, family, now).await? {
                self.access_cache.clear();
                self.audit_family(&origin.audit(Actor::System), "auth.sign_out", family)
                    .await?;
            }
        }
        Ok(())
    }

    /// Starts an API sign-in: the token family, the client remembered as a device (by its
    /// `User-Agent`) and the audit record in one transaction; a new client is mailed.
    pub(super) async fn start_api_sign_in(
        &self,
        user: &User,
        method: &str,
        origin: &Origin,
    ) -> Result<IssuedTokens, Error> {
        let now = self.now();
        let mut tx = self.db.begin().await?;
        let (family, refresh_token) =
            tokens::start_family(&mut tx, user.id, now, self.config.refresh_token_lifetime).await?;
        self.complete_sign_in(
            tx,
            user,
            method,
            Device::ApiClient(origin.user_agent.as_deref()),
            "token_family",
            family.to_string(),
            origin,
        )
        .await?;
        tracing::info!(event = "sign_in", user_id = %user.id, method, "signed in to the API");
        self.access_token(user.id, family, refresh_token).await
    }

    /// Signs an access token for `family`, to go with `refresh_token`.
    async fn access_token(
        &self,
        user_id: Uuid,
        family: Uuid,
        refresh_token: String,
    ) -> Result<IssuedTokens, Error> {
        let lifetime = self.config.access_token_lifetime;
        let now = self.now();
        // The keys are current: every instance reads them every minute on its own.
        let access_token =
            self.tokens
                .sign(&self.config.base_url, user_id, family, now, lifetime)?;
        Ok(IssuedTokens {
            user_id,
            family,
            access_token,
            expires_in: lifetime,
            refresh_token,
            password_change_advised: false,
        })
    }

    async fn audit_family(
        &self,
        ctx: &AuditContext,
        action: &'static str,
        family: Uuid,
    ) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        audit::record(
            &mut tx,
            ctx,
            AuditEvent {
                action,
                entity_type: "token_family",
                entity_id: Some(family.to_string()),
                changes: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await
    }
}
