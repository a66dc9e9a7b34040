//! Identities at OpenID providers linked to users: who a checked ID token makes the person,
//! and linking, listing and unlinking from the account page.
//!
//! # Security
//! - An identity is keyed by (issuer, subject), never by address: a provider account whose
//!   address changes, or a second account with the same address, is another identity.
//! - **Linking rules.** A first sign-in with an identity links it to an account only when the
//!   provider says `email_verified` and the address is either an active user's, or in one of
//!   the provider's allowed domains (then a user with role `user` is created). For Google with
//!   allowed domains set, an address in one of them links only when the token's `hd` (the
//!   Workspace domain) is that domain: a consumer Google account made with a company address
//!   is refused. Anyone else proves their account another way first (a sign-in link) and links
//!   the identity from `/account`.
//! - Linking from `/account` needs a sign-in from the last ten minutes and binds the flow to
//!   that user; an identity already linked to someone else is refused.
//! - Unlinking needs a recent sign-in too, and never removes the last way to sign in that is
//!   not the mailbox (the last identity of a user without a password): an account made by a
//!   provider may have an address nobody reads.
//! - Every link, unlink and refused OpenID sign-in is audited (`oidc.link`, `oidc.unlink`,
//!   `auth.oidc_failed`); the sign-in itself is the pipeline's `auth.sign_in`.

use time::OffsetDateTime;
use uuid::Uuid;

use super::VerifiedIdentity;
use super::flow::{Finished, Refusal};
use crate::audit::{self, Actor, AuditEvent};
use crate::error::Error;
use crate::identity::queries::oidc as queries;
use crate::identity::service::Identity;
use crate::identity::sessions::Session;
use crate::identity::signin::Origin;
use crate::identity::users::{self, NewUser};
use crate::identity::{DisplayName, Email, Role, User, UserStatus};

/// An identity at a provider, linked to a user.
#[derive(Clone, Debug)]
pub struct LinkedIdentity {
    /// Its ID (for unlinking).
    pub id: Uuid,
    /// Whose.
    pub user_id: Uuid,
    /// The provider's name in the settings when it was linked.
    pub provider: String,
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// The address the provider last gave.
    pub email: Option<String>,
    /// When it was linked.
    pub created_at: OffsetDateTime,
    /// When it last signed in.
    pub last_used_at: Option<OffsetDateTime>,
}

/// How an unlink ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlinked {
    /// Done.
    Done,
    /// The sign-in is older than ten minutes: sign in again first.
    NotRecent,
    /// It is the last way in besides the mailbox: set a password or link another first.
    LastWayIn,
    /// Not one of the user's identities.
    NotFound,
}

/// Who a callback's identity signs in, or why nobody.
pub(crate) enum Resolved {
    /// This active user.
    User(User),
    /// Nobody.
    Refused(Refusal),
}

impl Identity {
    /// The user a checked identity signs in: its linked user, or one the linking rules link
    /// (or create) now.
    pub(crate) async fn resolve_oidc(
        &self,
        finished: &Finished,
        origin: &Origin,
    ) -> Result<Resolved, Error> {
        let id = &finished.identity;
        let now = self.now();
        if let Some(linked) = queries::find(&self.db, &id.issuer, &id.subject).await? {
            return Ok(match users::find_by_id(&self.db, linked.user_id).await? {
                Some(user) if user.status == UserStatus::Active => {
                    let email = id.email_verified.then_some(id.email.as_deref()).flatten();
                    queries::touch(&self.db, linked.id, email, now).await?;
                    Resolved::User(user)
                }
                _ => Resolved::Refused(Refusal::NoAccount),
            });
        }
        let Some(email) = id
            .email
            .as_deref()
            .filter(|_| id.email_verified)
            .and_then(|e| Email::parse(e).ok())
        else {
            tracing::warn!(event = "oidc_unlinked_unverified", provider = %finished.provider, "an unlinked identity without a verified address");
            return Ok(Resolved::Refused(Refusal::NoAccount));
        };
        let Some(provider) = self.oidc.get(&finished.provider) else {
            return Ok(Resolved::Refused(Refusal::UnknownProvider));
        };
        let config = &provider.config;
        let in_allowed_domain = config.allowed_domains.iter().any(|d| d == email.domain());
        if config.is_google()
            && in_allowed_domain
            && id.hosted_domain.as_deref() != Some(email.domain())
        {
            tracing::warn!(event = "oidc_hosted_domain_refused", provider = %finished.provider, "a Google account outside the allowed Workspace domains");
            return Ok(Resolved::Refused(Refusal::NoAccount));
        }
        let user = match users::find_by_email(&self.db, &email).await? {
            Some(user) if user.status == UserStatus::Active => user,
            Some(_) => return Ok(Resolved::Refused(Refusal::NoAccount)),
            None if in_allowed_domain => {
                let new = NewUser {
                    email: email.clone(),
                    display_name: DisplayName::default(),
                    role: Role::User,
                };
                users::create(&self.db, new, &origin.audit(Actor::System)).await?
            }
            None => return Ok(Resolved::Refused(Refusal::NoAccount)),
        };
        if !self.link(&user, finished, true, origin).await? {
            return Ok(Resolved::Refused(Refusal::LinkedElsewhere));
        }
        Ok(Resolved::User(user))
    }

    /// Links the checked identity of a linking flow to `user` (the one signed in in this
    /// browser, who started it).
    pub(crate) async fn link_oidc(
        &self,
        user: &User,
        finished: &Finished,
        origin: &Origin,
    ) -> Result<Result<(), Refusal>, Error> {
        let id = &finished.identity;
        if let Some(linked) = queries::find(&self.db, &id.issuer, &id.subject).await? {
            return Ok(if linked.user_id == user.id {
                Ok(())
            } else {
                Err(Refusal::LinkedElsewhere)
            });
        }
        Ok(if self.link(user, finished, false, origin).await? {
            Ok(())
        } else {
            Err(Refusal::LinkedElsewhere)
        })
    }

    /// Links an identity and records `oidc.link`; `false` when it is linked already.
    async fn link(
        &self,
        user: &User,
        finished: &Finished,
        automatic: bool,
        origin: &Origin,
    ) -> Result<bool, Error> {
        let id: &VerifiedIdentity = &finished.identity;
        let now = self.now();
        let new = LinkedIdentity {
            id: Uuid::new_v4(),
            user_id: user.id,
            provider: finished.provider.clone(),
            issuer: id.issuer.clone(),
            subject: id.subject.clone(),
            email: id.email.clone().filter(|_| id.email_verified),
            created_at: now,
            last_used_at: automatic.then_some(now),
        };
        let mut tx = self.db.begin().await?;
        if !queries::insert(&mut tx, &new).await? {
            return Ok(false);
        }
        audit::record(
            &mut tx,
            &origin.audit(if automatic {
                Actor::System
            } else {
                Actor::User(user.id)
            }),
            AuditEvent {
                action: "oidc.link",
                entity_type: "user",
                entity_id: Some(user.id.to_string()),
                changes: serde_json::json!({
                    "provider": finished.provider,
                    "issuer": id.issuer,
                    "identity": new.id,
                    "automatic": automatic,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(event = "oidc_linked", user_id = %user.id, provider = %finished.provider, automatic, "an OpenID identity was linked");
        Ok(true)
    }

    /// Records a refused OpenID Connect sign-in or link.
    pub(crate) async fn oidc_refused(
        &self,
        provider: &str,
        refusal: Refusal,
        user: Option<Uuid>,
        origin: &Origin,
    ) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        audit::record(
            &mut tx,
            &origin.audit(user.map_or(Actor::System, Actor::User)),
            AuditEvent {
                action: "auth.oidc_failed",
                entity_type: "oidc_provider",
                entity_id: Some(provider.chars().take(32).collect()),
                changes: serde_json::json!({ "reason": refusal.as_str() }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::warn!(
            event = "oidc_sign_in_refused",
            provider,
            reason = refusal.as_str(),
            "an OpenID Connect sign-in or link was refused"
        );
        Ok(())
    }

    /// The user's linked identities, oldest first.
    pub async fn oidc_identities(&self, user_id: Uuid) -> Result<Vec<LinkedIdentity>, Error> {
        queries::list(&self.db, user_id).await
    }

    /// Unlinks one of `user`'s identities (recent sign-in needed; never the last way in).
    pub async fn unlink_oidc(
        &self,
        user: &User,
        session: &Session,
        id: Uuid,
        origin: &Origin,
    ) -> Result<Unlinked, Error> {
        if !self.recently_signed_in(session) {
            return Ok(Unlinked::NotRecent);
        }
        let has_password = self.has_password(user.id).await?;
        let mut tx = self.db.begin().await?;
        let count = queries::count(&mut tx, user.id).await?;
        if !self.other_way_in(has_password, count) {
            return Ok(Unlinked::LastWayIn);
        }
        if !queries::delete(&mut tx, user.id, id).await? {
            return Ok(Unlinked::NotFound);
        }
        audit::record(
            &mut tx,
            &origin.audit(Actor::User(user.id)),
            AuditEvent {
                action: "oidc.unlink",
                entity_type: "user",
                entity_id: Some(user.id.to_string()),
                changes: serde_json::json!({ "identity": id }),
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(event = "oidc_unlinked", user_id = %user.id, "an OpenID identity was unlinked");
        Ok(Unlinked::Done)
    }

    /// Whether a user keeps a way to sign in besides the mailbox once one of their `identities`
    /// is gone. The one place this is decided: another way in (a passkey, say) is added here.
    fn other_way_in(&self, has_password: bool, identities: i64) -> bool {
        has_password || identities > 1
    }
}
