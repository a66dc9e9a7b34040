//! The mails' own templates: each message has a plain-text and an HTML body, rendered here so
//! that no domain reaches the page templates of `web/` to send a mail.
//!
//! # Security
//! HTML bodies are auto-escaped (minijinja escapes every `.html` template); the plain-text
//! bodies are not HTML and are never shown as such.

use minijinja::Environment;
use serde::Serialize;

use crate::error::Error;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "password_reset.txt",
        include_str!("../../templates/mail/password_reset.txt"),
    ),
    (
        "password_reset.html",
        include_str!("../../templates/mail/password_reset.html"),
    ),
    (
        "security_notice.txt",
        include_str!("../../templates/mail/security_notice.txt"),
    ),
    (
        "security_notice.html",
        include_str!("../../templates/mail/security_notice.html"),
    ),
    (
        "magic_link.txt",
        include_str!("../../templates/mail/magic_link.txt"),
    ),
    (
        "magic_link.html",
        include_str!("../../templates/mail/magic_link.html"),
    ),
    (
        "api_key_expiring.txt",
        include_str!("../../templates/mail/api_key_expiring.txt"),
    ),
    (
        "api_key_expiring.html",
        include_str!("../../templates/mail/api_key_expiring.html"),
    ),
];

/// The parsed mail templates.
#[derive(Debug)]
pub struct MailTemplates {
    env: Environment<'static>,
}

impl MailTemplates {
    /// Parses every template (a broken one is a build-time mistake, found by the tests).
    pub fn new() -> Result<Self, Error> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| Error::Internal(anyhow::anyhow!("mail template {name}: {e:#}")))?;
        }
        Ok(Self { env })
    }

    /// A mail's plain-text and HTML bodies, from `{name}.txt` and `{name}.html`.
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> Result<(String, String), Error> {
        let render = |file: String| {
            self.env
                .get_template(&file)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| Error::Internal(anyhow::anyhow!("rendering mail {file}: {e:#}")))
        };
        Ok((
            render(format!("{name}.txt"))?,
            render(format!("{name}.html"))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mail_renders_and_escapes_its_html() {
        let t = MailTemplates::new().unwrap();
        let (text, html) = t
            .render(
                "security_notice",
                minijinja::context! { subject => "s", what => "<b>w</b>", advice => "a", email => "e@x.y", time => "t", ip => "1.2.3.4" },
            )
            .unwrap();
        assert!(text.contains("<b>w</b>"));
        assert!(
            html.contains("&lt;b&gt;w") && !html.contains("<b>w"),
            "{html}"
        );
    }
}
