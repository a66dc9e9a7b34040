//! Who may do what: roles mapped to permissions in one table ([`PERMISSIONS`]), read on every
//! request from the user's current role (DESIGN.md §7).
//!
//! Permissions say what a role may do to a kind of object; whose objects it may touch is the
//! `scope`: `Own` for objects the user created, `All` for everyone's. Object-level checks happen
//! in the service layer with [`Scope::covers`], and someone else's object that is out of scope is
//! reported as not found, so its existence does not leak.
//!
//! Every `403` a permission, scope or object check answers is an [`Error::Denied`] made by
//! [`Error::denied`] (or [`require`]); the request log, which knows the route template, logs it
//! once with [`Denial::log`] as the security event `access_denied` (DESIGN.md §7).
//!
//! # Security
//! An `access_denied` line names the user, the route template, the permission and the kind of
//! check: never the request's path, query, body or credential.

use uuid::Uuid;

use crate::error::Error;
use crate::identity::{Role, User};

/// An action on a kind of object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create items.
    ItemsCreate,
    /// Read items.
    ItemsRead,
    /// Change items.
    ItemsEdit,
    /// Delete items.
    ItemsDelete,
    /// List and read users.
    UsersRead,
    /// Create users, change their role and status.
    UsersManage,
    /// Read the audit trail.
    AuditRead,
    /// Export the audit trail.
    AuditExport,
    /// Manage one's own API keys.
    ApiKeysOwn,
    /// Rotate the token signing keys.
    SigningKeysRotate,
}

impl Action {
    /// The permission's name in logs: `items.read`, `users.manage`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ItemsCreate => "items.create",
            Self::ItemsRead => "items.read",
            Self::ItemsEdit => "items.edit",
            Self::ItemsDelete => "items.delete",
            Self::UsersRead => "users.read",
            Self::UsersManage => "users.manage",
            Self::AuditRead => "audit.read",
            Self::AuditExport => "audit.export",
            Self::ApiKeysOwn => "api_keys.own",
            Self::SigningKeysRotate => "signing_keys.rotate",
        }
    }
}

/// Whose objects an action may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only objects the user owns.
    Own,
    /// Everyone's.
    All,
}

impl Scope {
    /// Whether this scope lets `user` act on an object owned by `owner`.
    pub fn covers(self, user: Uuid, owner: Uuid) -> bool {
        self == Self::All || user == owner
    }
}

use Action::*;
use Scope::{All, Own};

/// The permission table: for each role, each action it may take and on whose objects. Anything
/// not listed is refused.
pub const PERMISSIONS: &[(Role, &[(Action, Scope)])] = &[
    (
        Role::User,
        &[
            (ItemsCreate, Own),
            (ItemsRead, Own),
            (ItemsEdit, Own),
            (ItemsDelete, Own),
            (ApiKeysOwn, Own),
        ],
    ),
    (
        Role::Manager,
        &[
            (ItemsCreate, Own),
            (ItemsRead, All),
            (ItemsEdit, All),
            (ItemsDelete, All),
            (UsersRead, All),
            (AuditRead, All),
            (ApiKeysOwn, Own),
        ],
    ),
    (
        Role::Admin,
        &[
            (ItemsCreate, Own),
            (ItemsRead, All),
            (ItemsEdit, All),
            (ItemsDelete, All),
            (UsersRead, All),
            (UsersManage, All),
            (AuditRead, All),
            (AuditExport, All),
            (ApiKeysOwn, Own),
            (SigningKeysRotate, All),
        ],
    ),
];

/// The scope `role` has for `action`, or `None` when it may not take it at all.
pub fn scope(role: Role, action: Action) -> Option<Scope> {
    PERMISSIONS
        .iter()
        .find(|(r, _)| *r == role)
        .and_then(|(_, grants)| grants.iter().find(|(a, _)| *a == action))
        .map(|(_, s)| *s)
}

/// The scope `user`'s role has for `action`, or the `403` ([`Error::denied`]) when it has none.
pub fn require(user: &User, action: Action) -> Result<Scope, Error> {
    scope(user.role, action).ok_or_else(|| {
        let message = match action {
            ApiKeysOwn => "Your role does not allow API keys.",
            _ => "Your role does not allow this.",
        };
        Error::denied(user.id, action.as_str(), Check::Role, message)
    })
}

pub use crate::error::{Check, Denial};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_design() {
        assert_eq!(scope(Role::User, ItemsRead), Some(Own));
        assert_eq!(scope(Role::User, UsersRead), None);
        assert_eq!(scope(Role::User, AuditRead), None);
        assert_eq!(scope(Role::Manager, ItemsEdit), Some(All));
        assert_eq!(scope(Role::Manager, UsersManage), None);
        assert_eq!(scope(Role::Manager, AuditExport), None);
        assert_eq!(scope(Role::Admin, UsersManage), Some(All));
        assert_eq!(scope(Role::Admin, SigningKeysRotate), Some(All));
        for role in [Role::User, Role::Manager, Role::Admin] {
            assert!(
                PERMISSIONS.iter().filter(|(r, _)| *r == role).count() == 1,
                "{role:?} has exactly one row"
            );
        }
    }

    #[test]
    fn own_scope_covers_only_own_objects() {
        let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(Own.covers(me, me));
        assert!(!Own.covers(me, other));
        assert!(All.covers(me, other));
    }
}
