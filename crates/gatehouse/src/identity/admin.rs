//! Administering other users: reading them, and their role and status. The one rule set for
//! every transport (the admin API, the command line, and later the admin pages): nobody changes
//! their own role or status, the last active admin stays, the change and its audit record are
//! one transaction, and a changed user's every session and API sign-in ends so they sign in
//! again under the new role.
//!
//! Reads of other people's accounts by managers and admins are audited (ASVS V8.3.5): one
//! `user.read` record per user opened, one `user.list` record per list (with the count), never
//! one per row. Reading your own account writes nothing.

use uuid::Uuid;

use super::service::Identity;
use super::{Email, Role, User, UserStatus, users};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::{Check, Error};

impl Identity {
    /// Every user, for `actor` (whom the caller has let read users: managers and admins),
    /// audited as one `user.list` record naming how many were returned.
    pub async fn list_users(&self, actor: &User, ctx: &AuditContext) -> Result<Vec<User>, Error> {
        let all = users::list(&self.db).await?;
        let others = all.iter().filter(|u| u.id != actor.id).count();
        if others > 0 {
            self.audit_read(
                ctx,
                AuditEvent {
                    action: "user.list",
                    entity_type: "user",
                    entity_id: None,
                    changes: serde_json::json!({
                        "filter": {},
                        "count": all.len(),
                        "others": others,
                    }),
                },
            )
            .await?;
        }
        Ok(all)
    }

    /// The user `id`'s details, for `actor` (whom the caller has let read users: managers and
    /// admins; [`Error::NotFound`] when there is no such user). Someone else's are audited as
    /// `user.read`.
    pub async fn user_details(
        &self,
        actor: &User,
        id: Uuid,
        ctx: &AuditContext,
    ) -> Result<User, Error> {
        let user = users::find_by_id(&self.db, id)
            .await?
            .ok_or(Error::NotFound)?;
        if user.id != actor.id {
            self.audit_read(
                ctx,
                AuditEvent {
                    action: "user.read",
                    entity_type: "user",
                    entity_id: Some(user.id.to_string()),
                    changes: serde_json::json!({}),
                },
            )
            .await?;
        }
        Ok(user)
    }

    async fn audit_read(&self, ctx: &AuditContext, event: AuditEvent) -> Result<(), Error> {
        audit::record_alone(&self.db, ctx, event).await.map(drop)
    }

    /// Changes `email`'s role and/or status on behalf of `by` (`None`: the command line).
    /// Returns the user as changed and how many of their browser sessions ended.
    pub async fn set_role_and_status(
        &self,
        email: &Email,
        role: Option<Role>,
        status: Option<UserStatus>,
        by: Option<Uuid>,
        ctx: &AuditContext,
    ) -> Result<(User, usize), Error> {
        if let Some(by) = by {
            let target = users::find_by_email(&self.db, email)
                .await?
                .ok_or(Error::NotFound)?;
            if target.id == by {
                // An object check of `users.manage` (access::Action::UsersManage).
                return Err(Error::denied(
                    by,
                    "users.manage",
                    Check::Object,
                    "Nobody changes their own role or status: ask another admin.",
                ));
            }
        }
        let (before, after) =
            users::set_role_and_status(&self.db, email, role, status, ctx).await?;
        let mut ended = 0;
        if before.role != after.role || before.status != after.status {
            ended = self.end_sign_ins(after.id, None).await?;
            tracing::info!(event = "user_changed", user_id = %after.id, role = after.role.as_str(), status = after.status.as_str(), "role or status changed; sessions and API sign-ins ended");
        }
        Ok((after, ended))
    }
}
