//! Outgoing mail: a bounded queue drained by a background sender with retries.
//!
//! Request handlers call [`Mailer::send`], which only queues the message and returns at once:
//! the SMTP conversation never happens on the request path, so how long a send takes (or
//! whether one happens at all, for an address that gets no mail) cannot be timed by a client.
//! The sender retries transient failures with growing delays and logs the outcome.
//!
//! Transports: SMTP through lettre (`SMTP_TLS` = `none`, `starttls` or `tls`), or, in development
//! without `SMTP_HOST`, the log: the whole message is written to the log so a developer can
//! follow sign-in links.
//!
//! # Security
//! - The log transport prints message bodies, which carry sign-in links: it exists only in
//!   development; production refuses to start without SMTP once sign-in needs mail.
//! - Log lines about mail name the recipient masked (`a***@example.com`), never the body.
//! - `SMTP_TLS=starttls` *requires* the upgrade (no silent fallback to plain text).
//! - The queue is bounded: a flood of requests cannot grow memory; when full, `send` fails and
//!   the caller decides (it must still answer the same way, see the magic-link flow).

mod templates;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::mpsc;

pub use templates::MailTemplates;

/// How many messages may wait to be sent.
const QUEUE_CAPACITY: usize = 1_000;
/// Delays before each retry of a failed send.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (only acceptable to a loopback relay).
    None,
    /// Plain connection upgraded with STARTTLS (default).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Outgoing mail settings.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// SMTP relay host; unset means mail is written to the log (development only).
    pub host: Option<String>,
    /// SMTP port; defaults by TLS mode (25, 587, 465).
    pub port: u16,
    /// SMTP user name.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<SecretString>,
    /// The `From` address of every mail.
    pub from: String,
    /// Transport security.
    pub tls: SmtpTls,
}

/// One message, with a plain-text and an HTML part.
#[derive(Clone, Debug)]
pub struct Mail {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The queue is full; the message was not queued.
    #[error("the outgoing mail queue is full")]
    QueueFull,
    /// The sender has stopped (shutdown).
    #[error("the mail sender has stopped")]
    Stopped,
    /// The configuration cannot make a transport.
    #[error("mail configuration: {0}")]
    Config(String),
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Smtp(_) => "Smtp",
            Self::Log => "Log",
        })
    }
}

/// The handle handlers use to send mail. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
    from: Mailbox,
    templates: Arc<MailTemplates>,
    /// Messages queued and not yet sent or given up on (for [`Mailer::flush`]).
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Mailer {
    /// Builds the transport from the settings and starts the background sender.
    pub fn start(smtp: &SmtpSettings) -> Result<Self, MailError> {
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| MailError::Config(format!("SMTP_FROM is not a valid address: {e}")))?;
        let transport = match &smtp.host {
            None => Transport::Log,
            Some(host) => Transport::Smtp(smtp_transport(smtp, host)?),
        };
        let templates = MailTemplates::new()
            .map(Arc::new)
            .map_err(|e| MailError::Config(e.to_string()))?;
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(run_sender(rx, transport, from.clone(), pending.clone()));
        Ok(Self {
            queue,
            from,
            templates,
            pending,
        })
    }

    /// Renders the mail template `name` with `ctx` and queues it to `to`; returns at once.
    pub fn send_template<S: serde::Serialize>(
        &self,
        to: &impl AsRef<str>,
        subject: &str,
        name: &str,
        ctx: S,
    ) -> Result<(), crate::error::Error> {
        let (text, html) = self.templates.render(name, ctx)?;
        self.send(Mail {
            to: to.as_ref().to_owned(),
            subject: subject.to_owned(),
            text,
            html,
        })
        .map_err(|e| crate::error::Error::Unavailable(e.to_string()))
    }

    /// Queues `mail` for sending; returns at once.
    pub fn send(&self, mail: Mail) -> Result<(), MailError> {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.queue.try_send(mail).map_err(|e| {
            self.pending
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            match e {
                mpsc::error::TrySendError::Full(_) => MailError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => MailError::Stopped,
            }
        })
    }

    /// Waits until every queued message was sent (or given up on), at most `limit`: a command
    /// that exits right after queueing a notice must not lose it. Returns whether the queue
    /// emptied.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The `From` mailbox.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }
}

fn smtp_transport(
    smtp: &SmtpSettings,
    host: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| MailError::Config(format!("SMTP_HOST: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| MailError::Config(format!("SMTP_HOST: {e}")))?,
    };
    let mut builder = builder
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(20)));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

async fn run_sender(
    mut rx: mpsc::Receiver<Mail>,
    transport: Transport,
    from: Mailbox,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some(mail) = rx.recv().await {
        deliver(&transport, &from, mail).await;
        pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Sends one message, retrying transient failures; the outcome goes to the log.
async fn deliver(transport: &Transport, from: &Mailbox, mail: Mail) {
    let recipient = mask_email(&mail.to);
    let message = match build_message(from, &mail) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(event = "mail_failed", to = %recipient, error = %e, "cannot build the message");
            return;
        }
    };
    match transport {
        Transport::Log => {
            tracing::info!(
                event = "mail_logged",
                to = %mail.to,
                subject = %mail.subject,
                "development mail (no SMTP_HOST):\n{}",
                mail.text
            );
        }
        Transport::Smtp(smtp) => {
            let mut attempt = 0;
            loop {
                match smtp.send(message.clone()).await {
                    Ok(_) => {
                        tracing::info!(event = "mail_sent", to = %recipient, "mail sent");
                        break;
                    }
                    Err(e) if e.is_permanent() || attempt == RETRY_DELAYS.len() => {
                        tracing::error!(event = "mail_failed", to = %recipient, error = %e, attempts = attempt + 1, "mail not sent");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(event = "mail_retry", to = %recipient, error = %e, "mail send failed; retrying");
                        tokio::time::sleep(RETRY_DELAYS[attempt]).await;
                        attempt += 1;
                    }
                }
            }
        }
    }
}

fn build_message(from: &Mailbox, mail: &Mail) -> Result<lettre::Message, String> {
    let to: Mailbox = mail.to.as_str().parse().map_err(|e| format!("{e}"))?;
    lettre::Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| e.to_string())
}

/// `alice@example.com` → `a***@example.com`, for logs.
pub fn mask_email(email: &impl AsRef<str>) -> String {
    let s = email.as_ref();
    match s.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_in_logs() {
        let e = "alice@example.com";
        assert_eq!(mask_email(&e), "a***@example.com");
    }

    #[test]
    fn messages_have_text_and_html_parts() {
        let from: Mailbox = "Gatehouse <gate@example.com>".parse().unwrap();
        let mail = Mail {
            to: "bob@example.com".to_owned(),
            subject: "Hello".into(),
            text: "plain body".into(),
            html: "<p>html body</p>".into(),
        };
        let raw = String::from_utf8(build_message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("plain body") && raw.contains("html body"),
            "{raw}"
        );
    }
}
