//! Asking for a sign-in link, and the per-address budgets every sign-in path counts against.
//!
//! # Security
//! - **No oracle.** [`Identity::request_link`] answers before looking anything up: the allowlist
//!   check, the link and the mail happen in a background task, so the answer (status, body and
//!   timing) is the same for every address, allowed or not.
//! - Only allowlisted addresses get a mail: an active user, or an address in a domain of
//!   `GATEHOUSE_ALLOWED_DOMAINS` (who gets an account with role `user` at first sign-in).
//!   Disabled users get nothing, and a link sent before they were disabled does not sign them in.
//! - Per-address limits are keyed by the address's SHA-256: the rate-limit store never holds
//!   addresses.

use gatehouse_security::{Decision, Quota};
use sha2::Digest as _;

use super::service::Identity;
use super::{Email, InvalidInput, User, UserStatus, magic_links, users};
use crate::error::Error;
use crate::mail::mask_email;

/// The answer to a request for a sign-in link.
#[derive(Debug)]
pub enum LinkRequest {
    /// Queued (or silently dropped for an address that may not sign in: the same answer).
    Accepted,
    /// Over the per-address limit.
    RateLimited(Decision),
}

/// Whether, and as whom, an address may sign in by link.
pub(super) enum Allowance {
    /// An active user.
    User(User),
    /// No account yet, in an allowed domain: one is created at first sign-in.
    NewInAllowedDomain,
    /// Unknown outside the allowed domains, or disabled.
    No,
}

impl Identity {
    /// Counts a request for a sign-in link against the address's budgets, then queues "send a
    /// link to `email` if it is allowed" and returns. The answer is the same for every address,
    /// allowed or not, known or not: the lookup and the mail happen off the request path.
    pub async fn request_link(
        &self,
        raw_email: &str,
        next: Option<String>,
    ) -> Result<LinkRequest, InvalidInput> {
        let email = Email::parse(raw_email)?;
        if let Some(decision) = self.signin_budget(&email).await {
            return Ok(LinkRequest::RateLimited(decision));
        }
        if !self.within_mail_budget(&email).await {
            return Ok(LinkRequest::Accepted);
        }
        let identity = self.clone();
        tokio::spawn(async move {
            if let Err(e) = identity.send_link(&email, next.as_deref()).await {
                tracing::error!(event = "magic_link_failed", to = %mask_email(&email), error = %e, "could not send a sign-in link");
            }
        });
        Ok(LinkRequest::Accepted)
    }

    pub(super) async fn allowance(&self, email: &Email) -> Result<Allowance, Error> {
        Ok(match users::find_by_email(&self.db, email).await? {
            Some(user) if user.status == UserStatus::Active => Allowance::User(user),
            Some(_) => Allowance::No,
            None if self.domain_allowed(email) => Allowance::NewInAllowedDomain,
            None => Allowance::No,
        })
    }

    fn domain_allowed(&self, email: &Email) -> bool {
        self.config
            .allowed_domains
            .iter()
            .any(|d| d == email.domain())
    }

    async fn send_link(&self, email: &Email, next: Option<&str>) -> Result<(), Error> {
        if matches!(self.allowance(email).await?, Allowance::No) {
            tracing::info!(event = "magic_link_not_allowed", to = %mask_email(email), "no link for an address that is not allowed");
            return Ok(());
        }
        self.mail_sign_in_link(email, next).await
    }

    /// How long a mailed sign-in link and its one-time code work, in words for pages and mail
    /// ("10 minutes"): `GATEHOUSE_SIGN_IN_LINK_LIFETIME`, the one lifetime of every sign-in link.
    pub fn sign_in_link_valid_for(&self) -> String {
        in_words(self.config.sign_in_link_lifetime)
    }

    /// Makes a sign-in link (and its one-time code) for `email`, valid
    /// `GATEHOUSE_SIGN_IN_LINK_LIFETIME`, and queues the mail that carries them: the one way a
    /// sign-in link is mailed, whoever asked.
    pub(super) async fn mail_sign_in_link(
        &self,
        email: &Email,
        next: Option<&str>,
    ) -> Result<(), Error> {
        let lifetime = self.config.sign_in_link_lifetime;
        let link =
            magic_links::issue(&self.db, &self.keys, self.now(), email, next, lifetime).await?;
        let url = format!(
            "{}/login/magic/verify?token={}",
            self.config.base_url,
            magic_links::expose(&link.token)
        );
        self.mailer.send_template(
            email,
            "Your Gatehouse sign-in link",
            "magic_link",
            minijinja::context! {
                url => url,
                code => magic_links::expose(&link.code),
                valid_for => in_words(lifetime),
            },
        )?;
        tracing::info!(event = "magic_link_sent", to = %mask_email(email), "sign-in link queued");
        Ok(())
    }

    /// Counts a sign-in attempt for the submitted address (`GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT`):
    /// the decision when over it. Applies to every address alike.
    pub(crate) async fn signin_budget(&self, email: &Email) -> Option<Decision> {
        self.per_address("signin_email", self.config.signin_email_rate_limit, email)
            .await
    }

    /// Whether `email` may get another sign-in or reset mail now (`GATEHOUSE_MAGIC_LINK_RATE_LIMIT`,
    /// one budget for both).
    pub(crate) async fn within_mail_budget(&self, email: &Email) -> bool {
        self.per_address("magic_link_mail", self.config.magic_link_rate_limit, email)
            .await
            .is_none()
    }

    /// Checks one event against a per-address rule: `None` within budget (or the rule is off),
    /// else the refusal. When the store cannot decide, the sign-in rules' failure policy
    /// applies (a denial is reported as a decision with a short retry).
    async fn per_address(
        &self,
        rule: &'static str,
        quota: Option<Quota>,
        email: &Email,
    ) -> Option<Decision> {
        let quota = quota?;
        // Keyed by a hash: the rate-limit store never holds addresses.
        let key = hex::encode(sha2::Sha256::digest(email.as_str().as_bytes()));
        match self.limiter.check(&format!("{rule}:{key}"), &quota).await {
            Ok(decision) if decision.allowed => None,
            Ok(decision) => {
                tracing::info!(event = "rate_limited", rule, to = %mask_email(email), "per-address limit reached");
                Some(decision)
            }
            Err(e) => {
                let deny = self.config.deny_on_store_error;
                tracing::warn!(event = "rate_limit_store_error", rule, error = %e, deny, "cannot check a per-address limit");
                deny.then(|| Decision {
                    allowed: false,
                    limit: quota.limit(),
                    remaining: 0,
                    reset_after: quota.emission_interval(),
                    retry_after: Some(quota.emission_interval()),
                })
            }
        }
    }
}

/// A lifetime as people read it: "10 minutes", "1 hour", "24 hours", "90 seconds".
pub(crate) fn in_words(lifetime: std::time::Duration) -> String {
    let secs = lifetime.as_secs();
    let (n, unit) = match secs {
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::in_words;

    #[test]
    fn lifetimes_are_written_in_the_largest_whole_unit() {
        assert_eq!(in_words(Duration::from_secs(600)), "10 minutes");
        assert_eq!(in_words(Duration::from_secs(60)), "1 minute");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(24 * 3600)), "24 hours");
        assert_eq!(in_words(Duration::from_secs(90 * 60)), "90 minutes");
        assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
    }
}
