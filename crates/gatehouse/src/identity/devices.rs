//! Known devices: a sign-in from a device the user has not signed in from before is mailed to
//! them (ASVS V2.2.3). The decision is made once, in the sign-in pipeline, when a sign-in is
//! complete (every factor given), so every way in (password, link, one-time code, the second
//! factor, the first admin's setup, the API's password grant) gets it.
//!
//! What a device is:
//! - **A browser** is its device cookie (`gatehouse-device`, `__Host-gatehouse-device` in
//!   production): 256 random bits, `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` in production,
//!   set at every browser sign-in for [`DEVICE_COOKIE_LIFETIME`]. It is not a credential: it
//!   grants nothing, it only tells a browser that signed in before from one that did not. A
//!   browser that keeps no cookies is a new device at every sign-in.
//! - **An API client** (the password grant, which has no cookie jar) is its `User-Agent`: a
//!   script or tool sends the same one on every run, and a new one for the account is a new
//!   client. A refresh continues a sign-in and is not checked. A client without `User-Agent` is
//!   one device ("none given").
//!
//! Only an HMAC of the device (under the one-time-code data key, with the user's id and the kind
//! of device in the MAC, so one browser cannot be linked across accounts from the table) is kept,
//! in `known_devices`, at most [`MAX_KNOWN_DEVICES`] per user: the least recently used is
//! forgotten, and signs in as new next time.
//!
//! A user with no known device is signed in silently: the first sign-in of a new account, and
//! each account's first sign-in after this table appeared, would alarm for nothing.
//!
//! # Security
//! - The notice names the time, the client address and the `User-Agent` (cut to
//!   [`MAX_NOTICE_USER_AGENT_CHARS`] characters, control characters replaced, escaped in the HTML
//!   body), and tells the user what to do; it never carries the cookie.
//! - Someone who copies a user's device cookie (or, for the API, their `User-Agent`) signs in
//!   without a notice: the notice tells a user about a sign-in they did not expect, it is not an
//!   access control.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use time::OffsetDateTime;
use uuid::Uuid;

use super::queries::devices as queries;
use crate::error::Error;
use crate::keys::Keys;
use crate::store::Tx;

/// Devices remembered per user; signing in from one more forgets the least recently used.
pub const MAX_KNOWN_DEVICES: i64 = 20;

/// How long a browser keeps its device cookie (renewed at each sign-in): 400 days, the longest
/// browsers keep a cookie.
pub const DEVICE_COOKIE_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// Longest `User-Agent` a notice shows, in characters.
pub const MAX_NOTICE_USER_AGENT_CHARS: usize = 200;

/// A browser's device token, the device cookie's value: 256 random bits, base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(…)")
    }
}

impl DeviceToken {
    /// A new random token.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token in a cookie, if `raw` is one (exactly 43 base64url characters); anything else
    /// is no token, and the browser gets a new one.
    pub fn parse(raw: &str) -> Option<Self> {
        let well_formed = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(raw.to_owned()))
    }

    /// The value to put in the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The device a completed sign-in came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Device<'a> {
    /// A browser, by its device cookie.
    Browser(&'a DeviceToken),
    /// An API client, by its `User-Agent` (if it sent one).
    ApiClient(Option<&'a str>),
}

impl Device<'_> {
    fn kind(self) -> &'static str {
        match self {
            Self::Browser(_) => "browser",
            Self::ApiClient(_) => "api_client",
        }
    }
}

/// What the table knew of a sign-in's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Signed in from before.
    Known,
    /// The user's first remembered device: nothing to compare with, no notice.
    First,
    /// New, while the user has signed in from others: the user is told.
    New,
}

/// Remembers `device` as `user_id`'s at `now`, in the caller's transaction (the sign-in's), and
/// says whether it is new. The table keeps at most [`MAX_KNOWN_DEVICES`] per user.
pub(crate) async fn remember(
    tx: &mut Tx,
    keys: &Keys,
    user_id: Uuid,
    device: Device<'_>,
    now: OffsetDateTime,
) -> Result<Seen, Error> {
    let id = user_id.to_string();
    let hash = match device {
        Device::Browser(token) => keys.code_mac(&["device", &id, device.kind(), token.expose()]),
        Device::ApiClient(agent) => {
            keys.code_mac(&["device", &id, device.kind(), agent.unwrap_or_default()])
        }
    };
    if queries::touch(tx, user_id, &hash, now).await? {
        return Ok(Seen::Known);
    }
    let others = queries::count(tx, user_id).await?;
    if !queries::insert(tx, user_id, &hash, device.kind(), now).await? {
        // A concurrent sign-in from the same device added it first, and told the user.
        return Ok(Seen::Known);
    }
    queries::keep_newest(tx, user_id, MAX_KNOWN_DEVICES).await?;
    Ok(if others == 0 { Seen::First } else { Seen::New })
}

/// A `User-Agent` as a notice shows it: at most [`MAX_NOTICE_USER_AGENT_CHARS`] characters,
/// control characters replaced, "none given" when there is none.
pub(crate) fn user_agent_for_notice(agent: Option<&str>) -> String {
    match agent.map(str::trim).filter(|a| !a.is_empty()) {
        Some(agent) => agent
            .chars()
            .take(MAX_NOTICE_USER_AGENT_CHARS)
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect(),
        None => "none given".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_token_is_a_device_token() {
        let token = DeviceToken::generate();
        assert_eq!(DeviceToken::parse(token.expose()), Some(token.clone()));
        assert_ne!(DeviceToken::generate(), token, "random");
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", "a".repeat(42)),
            &"é".repeat(22),
        ] {
            assert!(DeviceToken::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            format!("{token:?}"),
            "DeviceToken(…)",
            "never in a log line"
        );
    }

    #[test]
    fn a_notice_shows_a_bounded_user_agent_without_control_characters() {
        let long = "x".repeat(500);
        assert_eq!(
            user_agent_for_notice(Some(&long)).chars().count(),
            MAX_NOTICE_USER_AGENT_CHARS
        );
        assert_eq!(user_agent_for_notice(Some("a\r\nb")), "a\u{fffd}\u{fffd}b");
        assert_eq!(user_agent_for_notice(None), "none given");
        assert_eq!(user_agent_for_notice(Some("  ")), "none given");
    }
}
