//! Outgoing mail through a real SMTP conversation with the local sink.

use gatehouse::config::{Settings, Sources};
use gatehouse::identity::Email;
use gatehouse::mail::{Mail, Mailer};

use crate::support::env_of;
use crate::support::smtp_sink::SmtpSink;

fn mailer_to(sink: &SmtpSink) -> Mailer {
    let port = sink.port.to_string();
    let settings = Settings::load(&Sources {
        env: env_of(&[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
            ("SMTP_FROM", "Gatehouse <gate@example.com>"),
        ])
        .into_iter()
        .collect(),
        config_file: None,
        dotenv_file: None,
    })
    .unwrap();
    Mailer::start(&settings.smtp).unwrap()
}

#[tokio::test]
async fn mail_is_delivered_over_smtp_with_text_and_html_parts() {
    let sink = SmtpSink::start().await;
    let mailer = mailer_to(&sink);
    let long_link = format!(
        "https://gate.example/login/magic/verify?token={}",
        "x".repeat(64)
    );
    mailer
        .send(Mail {
            to: Email::parse("Ada@Example.com").unwrap().as_str().to_owned(),
            subject: "Your sign-in link".into(),
            text: format!("Open {long_link} to sign in."),
            html: format!("<p><a href=\"{long_link}\">Sign in</a></p>"),
        })
        .unwrap();
    let mail = sink.wait_for("ada@example.com").await;
    assert!(
        mail.data.contains("Subject: Your sign-in link"),
        "{}",
        mail.data
    );
    assert!(
        mail.data.contains("From: Gatehouse <gate@example.com>"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    assert!(
        mail.data.contains(&long_link),
        "the link survives transfer encoding: {}",
        mail.data
    );
}

#[tokio::test]
async fn sending_only_queues_and_returns_at_once() {
    // Nothing listens on this port: the send must still return immediately, the retries
    // happen in the background.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let settings = Settings::load(&Sources {
        env: env_of(&[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
        ])
        .into_iter()
        .collect(),
        config_file: None,
        dotenv_file: None,
    })
    .unwrap();
    let mailer = Mailer::start(&settings.smtp).unwrap();
    let started = std::time::Instant::now();
    mailer
        .send(Mail {
            to: "x@example.com".to_owned(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
        })
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_millis(50));
}
