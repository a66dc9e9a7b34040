//! Identity: who users are (domain types) and how they are stored and changed.
//!
//! The domain types here parse raw input once at the edge (parse, don't validate): an [`Email`]
//! is always trimmed, lower-cased and plausible; a [`Role`] is one of three. They import neither
//! axum nor sqlx.

pub mod accounts;
pub mod admin;
pub mod allowlist;
pub mod api_keys;
pub mod authentication;
pub mod ceremonies;
pub mod devices;
pub mod enrolment;
pub mod first_admin;
pub mod links;
pub mod magic_links;
pub mod mfa;
pub mod notices;
pub mod oidc;
pub mod passkeys;
pub mod password_policy;
pub mod password_reset;
pub mod passwords;
mod queries;
pub mod secrets;
pub mod service;
pub mod sessions;
pub mod signin;
pub mod throttle;
pub mod token_grants;
pub mod tokens;
pub mod upstream;
pub mod user_import;
pub mod users;

pub use service::{Identity, IdentityConfig};

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

/// Why an input was refused; the message is safe to show to the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A normalized email address: trimmed, lower case, one `@`, no spaces or control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Longest address accepted (RFC 5321's path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses and normalizes an address.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let email = raw.trim().to_lowercase();
        let invalid = || InvalidInput(format!("`{}` is not a valid email address", raw.trim()));
        if email.is_empty() || email.len() > Self::MAX_LEN {
            return Err(invalid());
        }
        if email.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        }) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// What a user may do; the permission table maps roles to permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including managing users.
    Admin,
    /// Reads and edits everyone's items and files; reads users and the audit log.
    Manager,
    /// Their own items, files and account.
    User,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::User => "user",
        }
    }
}

impl FromStr for Role {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Self::Admin),
            "manager" => Ok(Self::Manager),
            "user" => Ok(Self::User),
            other => Err(InvalidInput(format!(
                "`{other}` is not a role: use admin, manager or user"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Whether a user may sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// May not sign in; every credential is refused.
    Disabled,
}

impl UserStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

impl FromStr for UserStatus {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(InvalidInput(format!(
                "`{other}` is not a status: use active or disabled"
            ))),
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A display name: trimmed, at most 100 characters, no control characters. May be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest name accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Parses a display name.
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let name = raw.trim();
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput(format!(
                "a display name has at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput(
                "a display name cannot contain control characters".into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Stable identifier.
    pub id: Uuid,
    /// Normalized address, unique whatever its case.
    pub email: Email,
    /// Optional display name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
    /// Whether the user may sign in.
    pub status: UserStatus,
    /// When the user was created.
    pub created_at: OffsetDateTime,
    /// When the user last changed.
    pub updated_at: OffsetDateTime,
    /// Whether the user has confirmed a TOTP authenticator (and must pass it at every sign-in).
    pub mfa_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        assert_eq!(Email::parse("a@b.example").unwrap().domain(), "b.example");
    }

    #[test]
    fn implausible_emails_are_refused() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@.b.com",
            "<a@b.com>",
            "a@b.com\r\nBcc: x@y.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn roles_and_statuses_parse() {
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        assert_eq!(
            "disabled".parse::<UserStatus>().unwrap(),
            UserStatus::Disabled
        );
    }

    #[test]
    fn display_names_are_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse(&"é".repeat(101)).is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse("bell\u{7}").is_err());
    }
}
