//! The password policy: a length range, a list of common passwords and the account's own
//! address, and seed 004's composition rules when configured. Every broken rule is reported at
//! once, in words a person can act on.
//!
//! Defaults: at least 12 characters (seed 004 asks for 8, the setting can say so; 12 is the
//! default for new deployments), at most 128, and no composition rules (ASVS V2.1.9: they push
//! people to predictable patterns). `GATEHOUSE_PASSWORD_REQUIRE_CLASSES=true` brings back seed
//! 004's: at least one upper-case letter, one lower-case letter, one digit and one other
//! character (seed 004's specials, or any other symbol).
//!
//! # Security
//! - Common passwords are refused case-insensitively, and also when they only differ by digits
//!   and symbols added around them (`Password123!` is `password`): the list is the 10,000 most
//!   common passwords of zxcvbn's frequency list (`data/common-passwords.txt`, MIT).
//! - The address, its local part, or a password containing a local part of four characters or
//!   more is refused.
//! - Lengths count characters, not bytes; the 128-character cap bounds the hashing work.

use std::collections::HashSet;
use std::sync::OnceLock;

use super::Email;

/// The bundled list.
const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// What a password must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters.
    pub min_length: usize,
    /// Most characters.
    pub max_length: usize,
    /// At least one upper-case letter (this and the next three: seed 004's composition rules,
    /// off by default).
    pub require_upper: bool,
    /// At least one lower-case letter.
    pub require_lower: bool,
    /// At least one digit.
    pub require_digit: bool,
    /// At least one character that is neither a letter, a digit nor a space.
    pub require_special: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
            require_upper: false,
            require_lower: false,
            require_digit: false,
            require_special: false,
        }
    }
}

impl PasswordPolicy {
    /// Every rule `password` breaks (none: `Ok`). `email` is the account's address, if known.
    pub fn check(&self, password: &str, email: Option<&Email>) -> Result<(), Vec<String>> {
        let mut broken = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            broken.push(format!("use at least {} characters", self.min_length));
        }
        if length > self.max_length {
            broken.push(format!("use at most {} characters", self.max_length));
        }
        if self.require_upper && !password.chars().any(char::is_uppercase) {
            broken.push("add an upper-case letter".into());
        }
        if self.require_lower && !password.chars().any(char::is_lowercase) {
            broken.push("add a lower-case letter".into());
        }
        if self.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
            broken.push("add a digit".into());
        }
        if self.require_special
            && !password
                .chars()
                .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
        {
            broken.push("add a symbol such as ! @ # $ % & * or ?".into());
        }
        if is_common(password) {
            broken.push(
                "choose a less common password: this one is on lists attackers try first".into(),
            );
        }
        if let Some(email) = email {
            if contains_address(password, email) {
                broken.push("do not use your email address in your password".into());
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            Err(broken)
        }
    }
}

/// Whether `password` is on the list of common passwords, as it is or once digits and symbols
/// around it are taken away: refused for a new password, and a reason to advise a change at
/// sign-in.
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let list = common_passwords();
    if list.contains(lower.as_str()) {
        return true;
    }
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    core.chars().count() >= 4 && list.contains(core)
}

fn contains_address(password: &str, email: &Email) -> bool {
    let lower = password.to_lowercase();
    let local = email.as_str().split('@').next().unwrap_or_default();
    lower == email.as_str()
        || lower == local
        || (local.chars().count() >= 4 && lower.contains(local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 004's rules, as `GATEHOUSE_PASSWORD_REQUIRE_CLASSES=true` sets them.
    fn with_classes() -> PasswordPolicy {
        PasswordPolicy {
            require_upper: true,
            require_lower: true,
            require_digit: true,
            require_special: true,
            ..PasswordPolicy::default()
        }
    }

    fn errors(password: &str) -> Vec<String> {
        with_classes()
            .check(
                password,
                Some(&Email::parse("ada.lovelace@example.com").unwrap()),
            )
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn a_strong_password_passes() {
        assert!(errors("Vermilion-Otter-42").is_empty());
        assert!(
            errors("ünïcødé-Pässwörd-9").is_empty(),
            "letters beyond ASCII count"
        );
    }

    #[test]
    fn every_broken_rule_is_listed() {
        let e = errors("abc");
        assert_eq!(e.len(), 4, "{e:?}"); // length, upper, digit, symbol
        assert!(e.iter().any(|m| m.contains("at least 12")));
        assert!(e.iter().any(|m| m.contains("upper-case")));
        assert!(e.iter().any(|m| m.contains("digit")));
        assert!(e.iter().any(|m| m.contains("symbol")));
    }

    #[test]
    fn lengths_count_characters_and_are_capped() {
        assert!(
            errors(&format!("Aa1!{}", "é".repeat(125)))
                .iter()
                .any(|m| m.contains("at most 128"))
        );
        assert!(
            errors(&format!("Aa1!{}", "é".repeat(124))).is_empty(),
            "128 characters, 252 bytes"
        );
    }

    #[test]
    fn common_passwords_are_refused_even_dressed_up() {
        for common in [
            "Password123!",
            "Qwertyuiop1!",
            "!!Football2024",
            "Sunshine!!123",
        ] {
            assert!(
                errors(common).iter().any(|m| m.contains("less common")),
                "{common}"
            );
        }
        assert!(common_passwords().len() >= 9_000);
    }

    #[test]
    fn the_address_is_refused() {
        for with_address in ["Ada.Lovelace@Example.com", "X1!ada.lovelaceX1!"] {
            assert!(
                errors(with_address).iter().any(|m| m.contains("email")),
                "{with_address}"
            );
        }
    }

    #[test]
    fn seed_004s_policy_is_a_setting_away() {
        let seed = PasswordPolicy {
            min_length: 8,
            ..with_classes()
        };
        assert!(seed.check("Vx7!kqzp", None).is_ok());
        assert!(
            seed.check("vermilionotter", None).is_err(),
            "classes required"
        );
        assert!(PasswordPolicy::default().check("Vx7!kqzp", None).is_err());
    }

    #[test]
    fn by_default_length_counts_and_composition_does_not() {
        let default = PasswordPolicy::default();
        for plain in ["vermilion otter lagoon", "zqxjkvbnmwpt"] {
            assert_eq!(default.check(plain, None), Ok(()), "{plain}");
        }
        let e = default.check("abc", None).unwrap_err();
        assert_eq!(
            e,
            vec!["use at least 12 characters".to_owned()],
            "length only"
        );
        assert!(
            default.check("password1234", None).is_err(),
            "common stays refused"
        );
        let ada = Email::parse("ada.lovelace@example.com").unwrap();
        assert!(
            default
                .check("my name is ada.lovelace", Some(&ada))
                .is_err(),
            "the address stays refused"
        );
    }
}
