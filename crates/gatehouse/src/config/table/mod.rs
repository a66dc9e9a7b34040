//! The settings table: each setting declared once, in one row.
//!
//! A row holds the environment name, its aliases, whether it is secret, the default as shown to
//! people, a one-line doc, how a raw value is read into [`Settings`] and how the effective value
//! is shown. Loading (environment, TOML file, `.env`, `NAME_FILE`), `config check` output
//! ([`Settings::describe`]) and README's configuration table ([`reference_markdown`]) are all
//! made from these rows, so a setting cannot be loaded without being documented or shown.
//!
//! Rows are read in table order, so a row whose default depends on another setting (the
//! database URL on the data directory, the SMTP port on the TLS mode) comes after it.
//!
//! # Security
//! A row marked secret is never shown: [`Settings::describe`] prints `[redacted]` for it whatever
//! its `show` returns (a URL row keeps everything but its password).

use std::ops::RangeInclusive;
use std::str::FromStr;

use super::Settings;
use super::check::redact_url;

mod accounts;
mod mail;
pub(crate) mod oidc;
mod server;
mod upstream;

/// Whether a setting's value may be shown and whether it accepts `NAME_FILE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Secrecy {
    /// Shown as is.
    Public,
    /// Shown as `[redacted]`; also read from the file `NAME_FILE` names.
    Secret,
    /// A URL shown with its password redacted; also read from the file `NAME_FILE` names.
    SecretUrl,
}

/// An effective value, as a row shows it.
#[derive(Debug)]
pub(crate) enum Shown {
    /// A value (redacted when the row is secret).
    Value(String),
    /// A secret that is set (never shown).
    Set,
    /// Nothing configured and no default.
    NotSet,
    /// A note instead of a value.
    Note(&'static str),
}

impl Shown {
    /// A value to display.
    pub(crate) fn of(v: impl ToString) -> Self {
        Self::Value(v.to_string())
    }

    /// A value that may be unset.
    pub(crate) fn opt(v: Option<impl ToString>) -> Self {
        v.map_or(Self::NotSet, Self::of)
    }

    /// A secret: only whether it is set.
    pub(crate) fn secret<T>(v: Option<&T>) -> Self {
        if v.is_some() { Self::Set } else { Self::NotSet }
    }
}

/// How a row reads a raw value into the settings: `None` sets the default. `Err` is the message
/// shown after the variable's name.
pub(crate) type Read = fn(&mut Settings, Option<&str>) -> Result<(), String>;

/// One setting, declared once.
#[derive(Debug)]
pub(crate) struct Setting {
    /// The environment name (`GATEHOUSE_LISTEN`); the TOML key is derived from it.
    pub(crate) name: &'static str,
    /// Other names accepted for it, weaker than the name (the seeds' Flask names).
    pub(crate) aliases: &'static [&'static str],
    /// Whether the value is secret (redacted, and also read from `NAME_FILE`).
    pub(crate) secrecy: Secrecy,
    /// The default as shown to people, in Markdown.
    pub(crate) default: &'static str,
    /// What the setting does, one line of Markdown.
    pub(crate) doc: &'static str,
    /// Reads a raw value (or the default) into the settings.
    pub(crate) read: Read,
    /// The effective value, for `config check`.
    pub(crate) show: fn(&Settings) -> Shown,
}

impl Setting {
    /// True when the value is secret.
    pub(crate) fn is_secret(&self) -> bool {
        self.secrecy != Secrecy::Public
    }

    /// The TOML key: the name in lower case without the `GATEHOUSE_` prefix.
    pub(crate) fn toml_key(&self) -> String {
        self.name
            .strip_prefix("GATEHOUSE_")
            .unwrap_or(self.name)
            .to_ascii_lowercase()
    }

    /// The effective value in `settings`, redacted when secret.
    pub(crate) fn describe(&self, settings: &Settings) -> String {
        match ((self.show)(settings), self.secrecy) {
            (Shown::NotSet, _) => "(not set)".into(),
            (Shown::Note(note), _) => note.into(),
            (Shown::Value(v), Secrecy::Public) => v,
            (Shown::Value(v), Secrecy::SecretUrl) => redact_url(&v),
            (Shown::Set, _) | (Shown::Value(_), Secrecy::Secret) => "[redacted]".into(),
        }
    }

    /// The row of README's configuration table.
    fn markdown_row(&self) -> String {
        let mut cell = format!("`{}`", self.name);
        if self.is_secret() {
            cell.push_str(" 🔒");
        }
        match self.aliases {
            [] => {}
            [one] => cell.push_str(&format!(" (alias `{one}`)")),
            many => {
                let names: Vec<String> = many.iter().map(|a| format!("`{a}`")).collect();
                cell.push_str(&format!(" (aliases {})", names.join(", ")));
            }
        }
        format!("| {cell} | {} | {} |", self.default, self.doc)
    }
}

/// Every setting, in the order they are read and shown.
pub(crate) fn all() -> impl Iterator<Item = &'static Setting> {
    server::ROWS
        .iter()
        .chain(accounts::ROWS)
        .chain(oidc::ROWS)
        .chain(upstream::ROWS)
        .chain(mail::ROWS)
}

/// README's configuration table, made from the rows (`gatehouse config reference` prints it).
pub fn reference_markdown() -> String {
    let mut out = String::from("| setting | default | meaning |\n|---|---|---|\n");
    for row in all() {
        out.push_str(&row.markdown_row());
        out.push('\n');
        if row.name == "GATEHOUSE_OIDC_PROVIDERS" {
            out.push_str(&oidc::markdown_rows());
        }
    }
    out
}

/// Stores a read value in its field, passing on the message of a value that could not be read.
pub(crate) fn set<T>(field: &mut T, value: Result<T, String>) -> Result<(), String> {
    *field = value?;
    Ok(())
}

/// `default` when unset, else the value `parse` makes of it, or a message naming the form
/// `expected` and the value given.
pub(crate) fn value<T>(
    raw: Option<&str>,
    default: T,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, String> {
    match raw {
        None => Ok(default),
        Some(v) => parse(v).ok_or_else(|| format!("expected {expected}, got `{v}`")),
    }
}

/// A parser of numbers within `range`.
pub(crate) fn within<T: FromStr + PartialOrd>(
    range: RangeInclusive<T>,
) -> impl FnOnce(&str) -> Option<T> {
    move |v| v.trim().parse().ok().filter(|n| range.contains(n))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::*;
    use crate::config::testing::sources;

    const BEGIN: &str = "<!-- settings:begin -->\n";
    const END: &str = "<!-- settings:end -->";

    fn readme_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md")
    }

    /// README's text and the byte range of its generated table (between the markers).
    fn readme_table() -> (String, std::ops::Range<usize>) {
        let readme = std::fs::read_to_string(readme_path()).unwrap();
        let start = readme
            .find(BEGIN)
            .expect("README.md has the settings:begin marker")
            + BEGIN.len();
        let end = readme[start..]
            .find(END)
            .expect("README.md has the settings:end marker")
            + start;
        (readme, start..end)
    }

    /// True when one of `errs` names the variable `name`.
    fn names_it(name: &str, errs: &crate::config::ConfigErrors) -> bool {
        errs.0.iter().any(|e| e.setting == name)
    }

    fn defaults() -> Settings {
        Settings::load(&sources(&[])).unwrap()
    }

    #[test]
    fn every_name_and_alias_belongs_to_one_setting() {
        let mut seen = HashSet::new();
        for row in all() {
            for name in std::iter::once(&row.name).chain(row.aliases) {
                assert!(seen.insert(*name), "{name} is declared twice");
            }
        }
        let keys: HashSet<String> = all().map(Setting::toml_key).collect();
        assert_eq!(keys.len(), all().count(), "two settings share a TOML key");
    }

    #[test]
    fn every_setting_is_documented_in_one_line() {
        for row in all() {
            for (what, text) in [("doc", row.doc), ("default", row.default)] {
                assert!(!text.trim().is_empty(), "{} has no {what}", row.name);
                assert!(
                    !text.contains('\n') && !text.contains('|'),
                    "{}'s {what} would break README's table",
                    row.name
                );
            }
        }
    }

    #[test]
    fn every_setting_is_shown_by_config_check() {
        let shown: Vec<&str> = defaults().describe().into_iter().map(|(n, _)| n).collect();
        let rows: Vec<&str> = all().map(|row| row.name).collect();
        assert_eq!(shown, rows);
    }

    #[test]
    fn every_setting_is_read_from_the_environment_and_the_toml_file() {
        // A value no parser accepts: a row that reads its raw value reports it by name.
        let junk = "\u{1}not-a-valid-value\u{1}";
        for row in all() {
            let loaded = Settings::load(&sources(&[(row.name, junk)]));
            match loaded {
                Err(errs) => assert!(names_it(row.name, &errs), "{}: {errs}", row.name),
                // Free text (a log filter, a name, a path) accepts anything: then it must show.
                Ok(s) => assert!(
                    row.is_secret() || row.describe(&s).contains(junk),
                    "{} ignored its value",
                    row.name
                ),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for row in all() {
            let path = dir.path().join(format!("{}.toml", row.toml_key()));
            std::fs::write(&path, format!("{} = \"\\u0001junk\"\n", row.toml_key())).unwrap();
            let mut src = sources(&[]);
            src.config_file = Some(path);
            match Settings::load_with_origins(&src) {
                Err(errs) => assert!(names_it(row.name, &errs), "{}: {errs}", row.name),
                Ok((_, origins)) => assert_eq!(
                    origins.get(row.name),
                    Some(&crate::config::Origin::File),
                    "{}",
                    row.name
                ),
            }
        }
    }

    #[test]
    fn documented_defaults_are_the_defaults() {
        let defaults = defaults();
        for row in all() {
            // Only a default written as one value (`10`, `24h`, `168h` (7 days)) can be checked;
            // `unset`, `http://<listen>` and `json` in production, … are explanations.
            let Some(written) = row
                .default
                .strip_prefix('`')
                .and_then(|d| d.split_once('`'))
                .filter(|(_, rest)| rest.is_empty() || rest.starts_with(" ("))
                .map(|(value, _)| value)
                .filter(|value| !value.contains("<listen>") && !value.contains("<data dir>"))
            else {
                continue;
            };
            let mut s = defaults.clone();
            (row.read)(&mut s, Some(written))
                .unwrap_or_else(|e| panic!("{}: the documented default is refused: {e}", row.name));
            assert_eq!(
                row.describe(&s),
                row.describe(&defaults),
                "{}: README says `{written}`",
                row.name
            );
        }
    }

    #[test]
    fn every_secret_is_redacted_by_config_check() {
        let secret = "sentinel-secret-0123456789abcdef0123456789";
        let candidates = [
            secret.to_owned(),
            format!("postgres://app:{secret}@db.internal/app"),
            format!("redis://app:{secret}@cache.internal/0"),
        ];
        for row in all().filter(|row| row.is_secret()) {
            let mut s = defaults();
            assert!(
                candidates
                    .iter()
                    .any(|c| (row.read)(&mut s, Some(c)).is_ok()),
                "{} accepts no test value",
                row.name
            );
            let printed = format!("{:?}{s:?}", s.describe());
            assert!(!printed.contains(secret), "{} leaked", row.name);
        }
    }

    #[test]
    fn readme_names_only_settings_that_exist() {
        let per_provider = oidc::documented_names();
        let known: HashSet<&str> = all()
            .flat_map(|row| std::iter::once(row.name).chain(row.aliases.iter().copied()))
            .chain(per_provider.iter().map(String::as_str))
            .collect();
        let (readme, table) = readme_table();
        for line in readme[table].lines().skip(2) {
            let cell = line.split('|').nth(1).unwrap_or_default();
            for name in cell.split('`').skip(1).step_by(2) {
                assert!(
                    known.contains(name),
                    "README documents {name}, which is no setting"
                );
            }
        }
    }

    #[test]
    fn readme_table_is_made_from_the_rows() {
        let (readme, table) = readme_table();
        let expected = reference_markdown();
        if readme[table.clone()] == expected {
            return;
        }
        if std::env::var_os("GATEHOUSE_BLESS").is_some_and(|v| v == "1") {
            let mut updated = readme.clone();
            updated.replace_range(table, &expected);
            std::fs::write(readme_path(), updated).unwrap();
            return;
        }
        panic!(
            "README.md's configuration table differs from the settings table; regenerate it with \
             `GATEHOUSE_BLESS=1 cargo test -p gatehouse --lib config::table` \
             (or paste the output of `gatehouse config reference`).\nExpected:\n{expected}"
        );
    }
}
