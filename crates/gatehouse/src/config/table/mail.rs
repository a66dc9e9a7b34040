//! Rows of the outgoing mail settings (`SMTP_*`, the seeds' names).

use secrecy::SecretString;

use super::{Secrecy, Setting, Shown, set, value};
use crate::config::SmtpTls;

pub(super) static ROWS: &[Setting] = &[
    Setting {
        name: "SMTP_HOST",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "mail relay; unset: mails (with their sign-in links) go to the log, in development only: production refuses to start",
        read: |s, v| {
            s.smtp.host = v.map(str::to_owned);
            Ok(())
        },
        show: |s| Shown::opt(s.smtp.host.as_ref()),
    },
    // Before SMTP_PORT, whose default depends on it.
    Setting {
        name: "SMTP_TLS",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`starttls`",
        doc: "`none`, `starttls` (required, never a silent fallback) or `tls`; production refuses `none` unless the relay is on this host",
        read: |s, v| {
            let expected = "`none`, `starttls` or `tls`";
            let read = value(v, SmtpTls::Starttls, expected, |v| {
                match v.trim().to_ascii_lowercase().as_str() {
                    "none" | "off" | "false" => Some(SmtpTls::None),
                    "starttls" => Some(SmtpTls::Starttls),
                    "tls" | "ssl" | "smtps" => Some(SmtpTls::Tls),
                    _ => None,
                }
            });
            set(&mut s.smtp.tls, read)
        },
        show: |s| {
            Shown::of(match s.smtp.tls {
                SmtpTls::None => "none",
                SmtpTls::Starttls => "starttls",
                SmtpTls::Tls => "tls",
            })
        },
    },
    Setting {
        name: "SMTP_PORT",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "by `SMTP_TLS`: 25 / 587 / 465",
        doc: "relay port",
        read: |s, v| {
            let default = match s.smtp.tls {
                SmtpTls::None => 25,
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
            };
            let read = value(v, default, "a port number", |v| v.trim().parse().ok());
            set(&mut s.smtp.port, read)
        },
        show: |s| Shown::of(s.smtp.port),
    },
    Setting {
        name: "SMTP_USERNAME",
        aliases: &["SMTP_USER"],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "relay user",
        read: |s, v| {
            s.smtp.username = v.map(str::to_owned);
            Ok(())
        },
        show: |s| Shown::opt(s.smtp.username.as_ref()),
    },
    Setting {
        name: "SMTP_PASSWORD",
        aliases: &[],
        secrecy: Secrecy::Secret,
        default: "unset",
        doc: "relay password",
        read: |s, v| {
            s.smtp.password = v.map(|p| SecretString::from(p.to_owned()));
            Ok(())
        },
        show: |s| Shown::secret(s.smtp.password.as_ref()),
    },
    Setting {
        name: "SMTP_FROM",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`Gatehouse <gatehouse@localhost>`",
        doc: "sender of every mail",
        read: |s, v| {
            s.smtp.from = v.unwrap_or("Gatehouse <gatehouse@localhost>").to_owned();
            Ok(())
        },
        show: |s| Shown::of(&s.smtp.from),
    },
];
