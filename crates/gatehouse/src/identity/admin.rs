//! Administering other users: role and status. The one rule set for every transport (the admin
//! API, the command line, and later the admin pages): nobody changes their own role or status,
//! the last active admin stays, the change and its audit record are one transaction, and a
//! changed user's every session and API sign-in ends so they sign in again under the new role.

use uuid::Uuid;

use super::service::Identity;
use super::{Email, Role, User, UserStatus, users};
use crate::audit::AuditContext;
use crate::error::{Check, Error};

impl Identity {
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
