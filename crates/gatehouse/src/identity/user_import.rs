//! Importing users with their password hashes from another application (a Flask deployment's
//! Werkzeug hashes keep working and are upgraded to argon2id at each user's next sign-in).
//!
//! Formats: JSON lines, one `{"email": …, "role": …, "password_hash": …}` object a line (`name`
//! optional), or CSV with a header naming the columns `email`, `role`, `password_hash` (and
//! optionally `name`), without quoted fields. Chosen by the file's extension (`.csv`), else JSON
//! lines.
//!
//! # Security
//! The whole file is checked before anything is written: one invalid line (address, role, a
//! hash in a format Gatehouse cannot verify, or one whose cost is over the bounds of
//! [`check_cost`]) refuses the import and every problem is listed, by line.
//! Existing users are left unchanged: an import never replaces a password.
//! Nothing weak rests in the database: a PBKDF2 hash of fewer than 100,000 iterations is stored
//! wrapped in peppered argon2id ([`PasswordHasher::harden`]), without its PBKDF2 digest. A hash
//! made with a pepper (another Gatehouse's) is refused: its pepper stayed there.

use serde_json::Value;

use super::passwords::{HashParams, PasswordHasher, check_cost, is_supported_hash};
use super::users::{self, NewUser};
use super::{DisplayName, Email, Role};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::store::Db;

/// One user to import.
#[derive(Clone, Debug)]
pub struct ImportedUser {
    /// Address.
    pub email: Email,
    /// Role.
    pub role: Role,
    /// Display name.
    pub name: DisplayName,
    /// The hash as the other application stored it.
    pub password_hash: String,
}

/// Parses a JSON-lines or CSV file (`csv` true for CSV), bounding the hashes' cost by the
/// `configured` one ([`check_cost`]); every problem is returned at once.
pub fn parse(
    text: &str,
    csv: bool,
    configured: HashParams,
) -> Result<Vec<ImportedUser>, Vec<String>> {
    let records: Vec<(usize, Result<[String; 4], String>)> = if csv {
        parse_csv(text)?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, json_record(l)))
            .collect()
    };
    let mut users = Vec::new();
    let mut problems = Vec::new();
    for (line, record) in records {
        let [email, role, hash, name] = match record {
            Ok(fields) => fields,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let parsed = (|| {
            let email = Email::parse(&email).map_err(|e| e.to_string())?;
            let role: Role = role
                .parse()
                .map_err(|e: super::InvalidInput| e.to_string())?;
            let name = DisplayName::parse(&name).map_err(|e| e.to_string())?;
            if !is_supported_hash(&hash) {
                return Err(format!(
                    "{email}: the password hash is not in a format Gatehouse verifies (argon2 without a key id, Werkzeug pbkdf2 or scrypt)"
                ));
            }
            check_cost(&hash, configured).map_err(|over| {
                format!("{email}: the password hash costs more than Gatehouse verifies: {over}")
            })?;
            Ok(ImportedUser {
                email,
                role,
                name,
                password_hash: hash,
            })
        })();
        match parsed {
            Ok(u) if users.iter().any(|o: &ImportedUser| o.email == u.email) => {
                problems.push(format!("line {line}: {} appears twice", u.email));
            }
            Ok(u) => users.push(u),
            Err(e) => problems.push(format!("line {line}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(users)
    } else {
        Err(problems)
    }
}

fn json_record(line: &str) -> Result<[String; 4], String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let field = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok([
        field("email"),
        field("role"),
        field("password_hash"),
        field("name"),
    ])
}

type Records = Vec<(usize, Result<[String; 4], String>)>;

fn parse_csv(text: &str) -> Result<Records, Vec<String>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(vec!["the file is empty".into()]);
    };
    let columns: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let position = |name: &str| columns.iter().position(|c| c == name);
    let (Some(e), Some(r), Some(h)) = (
        position("email"),
        position("role"),
        position("password_hash"),
    ) else {
        return Err(vec![
            "the header must name the columns email, role and password_hash".into(),
        ]);
    };
    let n = position("name");
    Ok(lines
        .map(|(i, l)| {
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            let record = if cells.len() == columns.len() {
                Ok([
                    cells[e].to_owned(),
                    cells[r].to_owned(),
                    cells[h].to_owned(),
                    n.map(|n| cells[n].to_owned()).unwrap_or_default(),
                ])
            } else {
                Err(format!(
                    "{} cells where the header has {}",
                    cells.len(),
                    columns.len()
                ))
            };
            (i + 1, record)
        })
        .collect())
}

/// Creates every user that does not exist yet, their hash hardened by `passwords` (a weak
/// PBKDF2 hash wrapped in argon2id); audits each and the import. Returns (created, already
/// existing).
pub async fn import(
    db: &Db,
    passwords: &PasswordHasher,
    users: Vec<ImportedUser>,
    ctx: &AuditContext,
) -> Result<(usize, usize), Error> {
    let (mut created, mut existing) = (0, 0);
    for u in users {
        if users::find_by_email(db, &u.email).await?.is_some() {
            existing += 1;
            continue;
        }
        let new = NewUser {
            email: u.email,
            display_name: u.name,
            role: u.role,
        };
        let stored = passwords.harden(&u.password_hash).await?;
        match users::create_with_password_hash(db, new, &stored, ctx).await {
            Ok(_) => created += 1,
            Err(Error::Conflict(_)) => existing += 1,
            Err(e) => return Err(e),
        }
    }
    let mut tx = db.begin().await?;
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action: "user.import",
            entity_type: "user",
            entity_id: None,
            changes: serde_json::json!({ "created": created, "existing": existing }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((created, existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "pbkdf2:sha256:1000$cVyKKW03zcFPpHTW$2e12890e79f16dcb0a2ad231388a3e48473030d94b2862f8ead28abb5e9cd406";

    #[test]
    fn json_lines_and_csv_are_read() {
        let jsonl = format!(
            "{{\"email\": \"Ada@x.com\", \"role\": \"admin\", \"password_hash\": \"{HASH}\"}}\n\n{{\"email\": \"bo@x.com\", \"role\": \"user\", \"password_hash\": \"{HASH}\", \"name\": \"Bo\"}}\n"
        );
        let users = parse(&jsonl, false, HashParams::default()).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].email.as_str(), "ada@x.com");
        assert_eq!(users[1].name.as_str(), "Bo");
        let csv = format!("email,role,password_hash,name\nada@x.com,manager,{HASH},Ada\n");
        let users = parse(&csv, true, HashParams::default()).unwrap();
        assert_eq!(users[0].role, Role::Manager);
    }

    #[test]
    fn every_bad_line_is_reported_and_nothing_is_accepted() {
        let jsonl = format!(
            "{{\"email\": \"ok@x.com\", \"role\": \"user\", \"password_hash\": \"{HASH}\"}}\nnot json\n{{\"email\": \"p@x.com\", \"role\": \"user\", \"password_hash\": \"plaintext\"}}\n{{\"email\": \"r@x.com\", \"role\": \"root\", \"password_hash\": \"{HASH}\"}}\n"
        );
        let problems = parse(&jsonl, false, HashParams::default()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2"));
        assert!(
            parse("email,role\nx@y.com,user\n", true, HashParams::default()).is_err(),
            "the hash column is required"
        );
        assert!(
            parse(
                "email,role,password_hash\nx@y.com,user\n",
                true,
                HashParams::default()
            )
            .is_err()
        );
    }

    #[test]
    fn a_hash_over_the_cost_bounds_is_refused_by_line() {
        let costly = "$argon2id$v=19$m=4194304,t=1000000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let line = |email: &str, hash: &str| {
            format!(
                "{{\"email\": \"{email}\", \"role\": \"user\", \"password_hash\": \"{hash}\"}}\n"
            )
        };
        let jsonl = [
            line("ok@x.com", HASH),
            "\n".into(),
            line("big@x.com", costly),
            line(
                "slow@x.com",
                &format!("pbkdf2:sha256:2000001$salt${}", "00".repeat(32)),
            ),
        ]
        .concat();
        let problems = parse(&jsonl, false, HashParams::default()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("line 3: big@x.com") && problems[0].contains("memory"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("line 4: slow@x.com") && problems[1].contains("iterations"),
            "{problems:?}"
        );
    }
}
