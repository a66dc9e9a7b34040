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
mod server;

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
    server::ROWS.iter().chain(accounts::ROWS).chain(mail::ROWS)
}

/// README's configuration table, made from the rows (`gatehouse config reference` prints it).
pub fn reference_markdown() -> String {
    let mut out = String::from("| setting | default | meaning |\n|---|---|---|\n");
    for row in all() {
        out.push_str(&row.markdown_row());
        out.push('\n');
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
