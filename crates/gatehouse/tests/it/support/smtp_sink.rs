//! A local SMTP server that accepts every message and keeps it for the test to read.
//!
//! Speaks just enough SMTP for a real client (lettre): greeting, EHLO/HELO, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT. No TLS and no authentication (tests use `SMTP_TLS=none` on loopback).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One received message.
#[derive(Clone, Debug)]
pub(crate) struct ReceivedMail {
    /// Envelope recipients.
    pub(crate) to: Vec<String>,
    /// The message as sent (headers and body), quoted-printable soft breaks undone.
    pub(crate) data: String,
}

/// The running sink.
#[derive(Clone, Debug)]
pub(crate) struct SmtpSink {
    /// Port on 127.0.0.1.
    pub(crate) port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    arrived: Arc<Notify>,
}

impl SmtpSink {
    /// Starts a sink on a free loopback port.
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Self {
            port: listener.local_addr().unwrap().port(),
            received: Arc::default(),
            arrived: Arc::default(),
        };
        let handle = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle.clone().session(stream));
            }
        });
        sink
    }

    async fn session(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let _ = write.write_all(b"220 sink ESMTP\r\n").await;
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let command = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-sink\r\n250 8BITMIME\r\n"
            } else if command.starts_with("RCPT TO:") {
                to.push(
                    line.trim_end()[8..]
                        .trim()
                        .trim_matches(['<', '>'])
                        .to_owned(),
                );
                b"250 OK\r\n"
            } else if command.starts_with("DATA") {
                let _ = write.write_all(b"354 go on\r\n").await;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                self.received.lock().unwrap().push(ReceivedMail {
                    to: std::mem::take(&mut to),
                    data: undo_soft_breaks(&data),
                });
                self.arrived.notify_waiters();
                b"250 queued\r\n"
            } else if command.starts_with("QUIT") {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            } else {
                // HELO, MAIL FROM, RSET, NOOP
                b"250 OK\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    /// Waits (at most 10 s) for a message to `recipient` and returns the newest.
    pub(crate) async fn wait_for(&self, recipient: &str) -> ReceivedMail {
        self.wait_for_count(recipient, 1).await.pop().unwrap()
    }

    /// Waits (at most 10 s) until `count` messages to `recipient` have arrived; returns them all.
    pub(crate) async fn wait_for_count(&self, recipient: &str, count: usize) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            let messages = self.messages_to(recipient);
            if messages.len() >= count {
                return messages;
            }
            tokio::time::timeout_at(deadline, arrived)
                .await
                .unwrap_or_else(|_| panic!("fewer than {count} mails to {recipient} within 10 s"));
        }
    }

    /// Waits (at most 10 s) for a message to `recipient` whose text contains `needle` (a subject,
    /// a link's path) and returns the newest such: other mails (a new-device notice, say) may
    /// arrive in between.
    pub(crate) async fn wait_for_containing(&self, recipient: &str, needle: &str) -> ReceivedMail {
        self.wait_for_count_containing(recipient, needle, 1)
            .await
            .pop()
            .unwrap()
    }

    /// Waits (at most 10 s) until `count` messages to `recipient` contain `needle`; returns them
    /// all, oldest first.
    pub(crate) async fn wait_for_count_containing(
        &self,
        recipient: &str,
        needle: &str,
        count: usize,
    ) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            let found: Vec<_> = self
                .messages_to(recipient)
                .into_iter()
                .filter(|m| m.data.contains(needle))
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::timeout_at(deadline, arrived)
                .await
                .unwrap_or_else(|_| {
                    panic!("fewer than {count} mails to {recipient} with {needle:?} within 10 s")
                });
        }
    }

    /// Forgets every message received so far.
    pub(crate) fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    /// Every message received for `recipient`, oldest first.
    pub(crate) fn messages_to(&self, recipient: &str) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(recipient)))
            .cloned()
            .collect()
    }
}

/// Joins quoted-printable soft line breaks and decodes `=XX`, so tests can search for links.
fn undo_soft_breaks(data: &str) -> String {
    let joined = data.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
