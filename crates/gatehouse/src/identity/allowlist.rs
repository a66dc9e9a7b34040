//! Importing an allowlist of addresses (seed 000's `users.json`) as users.
//!
//! Accepted JSON shapes, so a Flask deployment's file can be used as it is:
//! - a list of addresses: `["ada@example.com", "bo@example.com"]`;
//! - a list of objects: `[{"email": "ada@example.com", "name": "Ada", "role": "admin"}]`
//!   (`name` and `role` optional);
//! - an object holding such a list under `users`, `emails`, `authorized_users`,
//!   `authorised_users` or `allowed_emails`;
//! - an object keyed by address: `{"ada@example.com": {"name": "Ada", "role": "manager"}}`.
//!
//! # Security
//! The whole file is validated before anything is written: one invalid entry refuses the import
//! and every problem is listed, so a half-imported list never grants access by surprise. Existing
//! users are left as they are (an import never changes a role or re-enables a disabled user).

use serde_json::Value;

use super::users::{self, NewUser};
use super::{DisplayName, Email, Role};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::store::Db;

/// One address to allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Address.
    pub email: Email,
    /// Display name.
    pub name: DisplayName,
    /// Role for a new user.
    pub role: Role,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Users created.
    pub created: Vec<String>,
    /// Addresses that already had a user (left unchanged).
    pub existing: Vec<String>,
}

/// Parses an allowlist file; every problem is returned at once.
pub fn parse(json: &str, default_role: Role) -> Result<Vec<Entry>, Vec<String>> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| vec![format!("not valid JSON: {e}")])?;
    let items: Vec<(String, Option<&Value>)> = match &value {
        Value::Array(items) => items.iter().map(item).collect(),
        Value::Object(map) => {
            const LIST_KEYS: [&str; 5] = [
                "users",
                "emails",
                "authorized_users",
                "authorised_users",
                "allowed_emails",
            ];
            match LIST_KEYS.iter().find_map(|k| map.get(*k)) {
                Some(Value::Array(items)) => items.iter().map(item).collect(),
                Some(_) => return Err(vec!["the list of users must be a JSON array".into()]),
                None => map.iter().map(|(k, v)| (k.clone(), Some(v))).collect(),
            }
        }
        _ => return Err(vec!["expected a JSON array or object of addresses".into()]),
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (position, (raw_email, details)) in items.iter().enumerate() {
        let at = position + 1;
        let email = match Email::parse(raw_email) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("entry {at}: {e}"));
                continue;
            }
        };
        let text = |key: &str| details.and_then(|d| d.get(key)).and_then(Value::as_str);
        let name = match DisplayName::parse(text("name").unwrap_or_default()) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("entry {at} ({email}): {e}"));
                continue;
            }
        };
        let role = match text("role").map(str::parse::<Role>) {
            None => default_role,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                problems.push(format!("entry {at} ({email}): {e}"));
                continue;
            }
        };
        if entries.iter().any(|e: &Entry| e.email == email) {
            problems.push(format!("entry {at}: {email} appears twice"));
            continue;
        }
        entries.push(Entry { email, name, role });
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// `"a@b"` or `{"email": "a@b", …}` → the address and the object (if any).
fn item(v: &Value) -> (String, Option<&Value>) {
    match v {
        Value::String(s) => (s.clone(), None),
        Value::Object(o) => (
            o.get("email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Some(v),
        ),
        other => (other.to_string(), None),
    }
}

/// Creates a user for every entry that has none; audits each and the import.
pub async fn import(db: &Db, entries: Vec<Entry>, ctx: &AuditContext) -> Result<Report, Error> {
    let mut report = Report::default();
    for entry in entries {
        if users::find_by_email(db, &entry.email).await?.is_some() {
            report.existing.push(entry.email.to_string());
            continue;
        }
        let new = NewUser {
            email: entry.email.clone(),
            display_name: entry.name,
            role: entry.role,
        };
        match users::create(db, new, ctx).await {
            Ok(_) => report.created.push(entry.email.to_string()),
            // Created concurrently by someone else: it exists, which is what we wanted.
            Err(Error::Conflict(_)) => report.existing.push(entry.email.to_string()),
            Err(e) => return Err(e),
        }
    }
    let mut tx = db.begin().await?;
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action: "allowlist.import",
            entity_type: "allowlist",
            entity_id: None,
            changes: serde_json::json!({
                "created": report.created.len(),
                "existing": report.existing.len(),
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(json: &str) -> Vec<String> {
        parse(json, Role::User)
            .unwrap()
            .into_iter()
            .map(|e| e.email.to_string())
            .collect()
    }

    #[test]
    fn every_documented_shape_is_read() {
        assert_eq!(emails(r#"["A@x.com", "b@y.com"]"#), ["a@x.com", "b@y.com"]);
        assert_eq!(emails(r#"[{"email": "a@x.com"}]"#), ["a@x.com"]);
        assert_eq!(emails(r#"{"users": ["a@x.com"]}"#), ["a@x.com"]);
        assert_eq!(
            emails(r#"{"authorized_users": [{"email": "a@x.com"}]}"#),
            ["a@x.com"]
        );
        assert_eq!(
            emails(r#"{"a@x.com": {"name": "A"}, "b@y.com": {}}"#),
            ["a@x.com", "b@y.com"]
        );
    }

    #[test]
    fn names_and_roles_are_taken_when_given() {
        let e = parse(
            r#"[{"email": "a@x.com", "name": "Ada", "role": "manager"}, "b@y.com"]"#,
            Role::User,
        )
        .unwrap();
        assert_eq!(e[0].role, Role::Manager);
        assert_eq!(e[0].name.as_str(), "Ada");
        assert_eq!(e[1].role, Role::User);
    }

    #[test]
    fn every_problem_is_listed_and_nothing_is_accepted() {
        let problems = parse(
            r#"["ok@x.com", "not-an-address", {"email": "r@x.com", "role": "root"}, "ok@x.com"]"#,
            Role::User,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(parse("{nope", Role::User).is_err());
        assert!(parse("42", Role::User).is_err());
    }
}
