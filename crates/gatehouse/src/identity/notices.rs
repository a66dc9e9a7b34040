//! Security notices by mail (DESIGN.md §7): a password changed or reset, MFA turned on or off or
//! reset by an administrator, new recovery codes, a recovery code used, a used two-step code tried
//! again, an API key made, a
//! passkey added or removed, a sign-in from a new device. Each names the account, the time, the client address and what to
//! do if it was not the user; the new-device notice also names the browser or client.
//!
//! Only the identity services send them, as part of the change they report, so every way to
//! make that change (a page, the API, the CLI) mails the same notice.

use std::net::IpAddr;

use minijinja::context;
use time::OffsetDateTime;

use crate::identity::Email;
use crate::mail::Mailer;
use crate::store::timestamp_text;

/// One kind of notice.
#[derive(Debug, Clone, Copy)]
pub struct Notice {
    /// Subject and heading.
    pub subject: &'static str,
    /// What happened.
    pub what: &'static str,
    /// What to do if it was not the user ("If this was not you, …").
    pub advice: &'static str,
}

/// The password was changed from the account page or by a reset link.
pub const PASSWORD_CHANGED: Notice = Notice {
    subject: "Your Gatehouse password was changed",
    what: "The password of your account was changed. Every other session was signed out.",
    advice: "reset your password now from the sign-in page and tell your administrator.",
};

/// MFA was turned on.
pub const MFA_ENABLED: Notice = Notice {
    subject: "Two-step sign-in is on for your Gatehouse account",
    what: "An authenticator app was set up for your account; every sign-in now asks for its code. Every other session was signed out.",
    advice: "tell your administrator at once: someone else may control your account.",
};

/// MFA was turned off.
pub const MFA_DISABLED: Notice = Notice {
    subject: "Two-step sign-in was turned off for your Gatehouse account",
    what: "Your account no longer asks for an authenticator code at sign-in. Every other session was signed out.",
    advice: "change your password, turn two-step sign-in on again and tell your administrator.",
};

/// A recovery code was used to sign in.
pub const RECOVERY_CODE_USED: Notice = Notice {
    subject: "A recovery code was used to sign in to your Gatehouse account",
    what: "Someone signed in to your account with one of your recovery codes. Each code works only once.",
    advice: "change your password, make new recovery codes from your account page and tell your administrator.",
};

/// An administrator turned MFA off for the user (`gatehouse user reset-mfa`).
pub const MFA_RESET: Notice = Notice {
    subject: "An administrator turned off two-step sign-in for your Gatehouse account",
    what: "An administrator reset two-step sign-in for your account, as is done when a user has lost their authenticator app and their recovery codes. Every session of yours was signed out.",
    advice: "tell your administrator at once, change your password and set up two-step sign-in again from your account page.",
};

/// New recovery codes were made (the codes themselves are never mailed).
pub const RECOVERY_CODES_REGENERATED: Notice = Notice {
    subject: "New recovery codes were made for your Gatehouse account",
    what: "New recovery codes were made for your account; the old ones no longer work. The codes were shown once on the page that made them and are not in this mail.",
    advice: "change your password, make new recovery codes from your account page and tell your administrator.",
};

/// A TOTP code already used was entered again at sign-in, and refused.
pub const TOTP_REPLAYED: Notice = Notice {
    subject: "A used two-step code was tried on your Gatehouse account",
    what: "A code from your authenticator app that had already been used was entered again at sign-in, after the right first factor, and refused. If you did not just retype a code, someone may know your password and have seen one of your codes.",
    advice: "change your password now, sign out every other session from your account page and tell your administrator.",
};

/// A sign-in from a device (browser or API client) the account was not signed in from before.
pub const NEW_DEVICE: Notice = Notice {
    subject: "New sign-in to your Gatehouse account",
    what: "Your account was signed in to from a browser or program it was not signed in from before.",
    advice: "change your password now, sign out every other session from your account page and tell your administrator.",
};

/// An API key was made.
pub const API_KEY_CREATED: Notice = Notice {
    subject: "A new API key was made for your Gatehouse account",
    what: "An API key was made for your account. It works until it expires or is revoked.",
    advice: "revoke it now (DELETE /api/v1/api-keys/{id}), change your password and tell your administrator.",
};

/// A passkey was added to the account.
pub const PASSKEY_ADDED: Notice = Notice {
    subject: "A passkey was added to your Gatehouse account",
    what: "A passkey was registered for your account. It signs in to your account without a password or code.",
    advice: "remove it now from your account page, change your password and tell your administrator.",
};

/// A passkey was removed from the account.
pub const PASSKEY_REMOVED: Notice = Notice {
    subject: "A passkey was removed from your Gatehouse account",
    what: "A passkey was removed from your account; it no longer signs in.",
    advice: "change your password, sign out every other session from your account page and tell your administrator.",
};

/// Queues `notice` to `email`, naming the time and the client address (`None`: the command
/// line). A failure to queue is logged, not fatal: the change is done.
pub fn send(
    mailer: &Mailer,
    email: &Email,
    at: OffsetDateTime,
    ip: Option<IpAddr>,
    notice: Notice,
) {
    queue(mailer, email, at, ip, None, notice);
}

/// Queues [`NEW_DEVICE`] to `email`, naming the time, the client address and the device's
/// `User-Agent` (bounded, control characters replaced; the HTML body escapes it).
pub fn send_new_device(
    mailer: &Mailer,
    email: &Email,
    at: OffsetDateTime,
    ip: IpAddr,
    user_agent: Option<&str>,
) {
    let device = super::devices::user_agent_for_notice(user_agent);
    queue(mailer, email, at, Some(ip), Some(&device), NEW_DEVICE);
}

fn queue(
    mailer: &Mailer,
    email: &Email,
    at: OffsetDateTime,
    ip: Option<IpAddr>,
    device: Option<&str>,
    notice: Notice,
) {
    let sent = mailer.send_template(
        email,
        notice.subject,
        "security_notice",
        context! {
            subject => notice.subject,
            what => notice.what,
            advice => notice.advice,
            email => email.as_str(),
            time => timestamp_text(at)[..16].replace('T', " "),
            ip => ip.map_or_else(|| "the command line".to_owned(), |ip| ip.to_string()),
            device => device,
        },
    );
    if let Err(e) = sent {
        tracing::warn!(event = "mail_failed", error = %e, subject = notice.subject, "cannot queue a security notice");
    }
}
