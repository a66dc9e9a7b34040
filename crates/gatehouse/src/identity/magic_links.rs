//! Magic sign-in links and their one-time codes.
//!
//! A link carries a 256-bit random token, valid `GATEHOUSE_SIGN_IN_LINK_LIFETIME` (10 minutes by
//! default), usable once. The same mail carries
//! an 8-character one-time code (Crockford base32) for signing in on another device, entered
//! with the email that asked for it; 5 wrong codes end every pending link of that address.
//!
//! # Security
//! - Tokens and codes are stored as HMAC-SHA256 under the one-time-code data key
//!   ([`Keys::token_mac`], [`Keys::code_mac`]), never as a plain hash: a plain hash of a 40-bit
//!   code could be brute-forced offline, and a plain hash of a token could be planted by anyone
//!   who can write the database.
//! - Consumption is one conditional `UPDATE … WHERE consumed_at IS NULL AND expires_at > now
//!   RETURNING …`: of two concurrent uses exactly one wins, on both backends.
//! - A code is checked and its failure counted in one write transaction with the address's links
//!   locked, and the count stops at [`MAX_CODE_ATTEMPTS`]: concurrent guesses get no more tries
//!   between them than one guesser would.
//! - Code comparison is constant-time.
//! - `next` is kept only when it is a same-origin path ([`safe_next`]).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;

use super::Email;
use super::queries::magic_links as queries;
use crate::error::Error;
use crate::keys::{Keys, TokenKind};
use crate::store::{Db, On};

/// How long a link (and its code) is valid unless `GATEHOUSE_SIGN_IN_LINK_LIFETIME` says
/// otherwise (ASVS 2.7.2; seed 000's links lived 15 minutes).
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Wrong codes that end an address's pending links.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Length of the one-time code.
pub const CODE_LEN: usize = 8;
/// Crockford's base32 alphabet: no I, L, O, U to misread.
pub(crate) const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A freshly issued link: what goes in the mail. Never stored as is.
#[derive(Debug)]
pub struct IssuedLink {
    /// The link's token.
    pub token: SecretString,
    /// The one-time code.
    pub code: SecretString,
}

/// A consumed link: who signs in, and where to go next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The address the link was sent to.
    pub email: Email,
    /// A safe same-origin path, if one was asked for.
    pub next: Option<String>,
}

/// The outcome of entering a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeOutcome {
    /// Right code: the link is consumed.
    Accepted(Consumed),
    /// Wrong (or no pending link): the attempt was counted.
    Rejected,
}

fn token_hash(keys: &Keys, token: &str) -> String {
    keys.token_mac(TokenKind::SignInLink, token)
}

/// Normalizes a typed code: upper case, no spaces or dashes, Crockford's look-alikes mapped.
pub(crate) fn normalize_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// `next` if it is a path on this site: one leading `/`, not `//` or `/\`, no scheme, no
/// control characters, at most 512 bytes. Anything else gives `None` (go to `/`).
pub fn safe_next(next: &str) -> Option<String> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| next.to_owned())
}

/// Creates a link for `email`, valid `lifetime` (the setting: the identity services pass it).
pub async fn issue(
    db: &Db,
    keys: &Keys,
    now: time::OffsetDateTime,
    email: &Email,
    next: Option<&str>,
    lifetime: Duration,
) -> Result<IssuedLink, Error> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let mut rng = rand::rngs::OsRng;
    let code: String = (0..CODE_LEN)
        .map(|_| char::from(CROCKFORD[rng.gen_range(0..CROCKFORD.len())]))
        .collect();
    let code_mac = keys.code_mac(&[email.as_str(), &code]);
    let next = next.and_then(safe_next);
    let expires = now + lifetime;
    let hash = token_hash(keys, &token);
    queries::insert(
        db,
        &queries::NewLink {
            token_hash: &hash,
            email: email.as_str(),
            code_mac: &code_mac,
            next: next.as_deref(),
            created_at: now,
            expires_at: expires,
        },
    )
    .await?;
    Ok(IssuedLink {
        token: SecretString::from(token),
        code: SecretString::from(code),
    })
}

/// The stored MAC of a link's token, if `raw_token` has a token's length (43 characters).
fn link_hash(keys: &Keys, raw_token: &str) -> Option<String> {
    (raw_token.len() == 43).then(|| token_hash(keys, raw_token))
}

/// Uses the link `raw_token` names, once: `None` if unknown, used, expired or out of attempts.
pub async fn consume_token(
    db: &Db,
    keys: &Keys,
    now: time::OffsetDateTime,
    raw_token: &str,
) -> Result<Option<Consumed>, Error> {
    let Some(hash) = link_hash(keys, raw_token) else {
        return Ok(None);
    };
    consume_where_hash(db, now, &hash).await
}

/// The address the link `raw_token` names would sign in, if it is usable; uses nothing (the
/// confirmation page's `GET`, which mail scanners fetch too).
pub async fn peek_token(
    db: &Db,
    keys: &Keys,
    now: time::OffsetDateTime,
    raw_token: &str,
) -> Result<Option<Email>, Error> {
    let Some(hash) = link_hash(keys, raw_token) else {
        return Ok(None);
    };
    let email = queries::find_usable(db, now, &hash, MAX_CODE_ATTEMPTS).await?;
    email
        .map(|e| {
            Email::parse(&e)
                .map_err(|err| Error::Internal(anyhow::anyhow!("bad email in magic_links: {err}")))
        })
        .transpose()
}

async fn consume_where_hash<'c>(
    on: impl Into<On<'c>>,
    now: time::OffsetDateTime,
    hash: &str,
) -> Result<Option<Consumed>, Error> {
    let row = queries::consume(on, now, hash, MAX_CODE_ATTEMPTS).await?;
    row.map(|(email, next)| {
        Ok(Consumed {
            email: Email::parse(&email)
                .map_err(|e| Error::Internal(anyhow::anyhow!("bad email in magic_links: {e}")))?,
            next,
        })
    })
    .transpose()
}

/// Signs in with the code mailed to `email`: consumes the matching pending link, or counts a
/// failed attempt against every pending link of the address. One write transaction, the
/// address's links locked: concurrent attempts are counted one after the other, and once
/// [`MAX_CODE_ATTEMPTS`] are counted no code, right or wrong, is accepted.
pub async fn consume_code(
    db: &Db,
    keys: &Keys,
    now: time::OffsetDateTime,
    email: &Email,
    raw_code: &str,
) -> Result<CodeOutcome, Error> {
    let code = normalize_code(raw_code);
    let expected = keys.code_mac(&[email.as_str(), &code]);
    let mut tx = db.begin().await?;
    let pending =
        queries::pending_for_update(&mut tx, now, email.as_str(), MAX_CODE_ATTEMPTS).await?;
    let matching = pending
        .iter()
        .find(|(_, mac)| bool::from(mac.as_bytes().ct_eq(expected.as_bytes())));
    if code.len() == CODE_LEN {
        if let Some((hash, _)) = matching {
            if let Some(consumed) = consume_where_hash(&mut tx, now, hash).await? {
                tx.commit().await?;
                return Ok(CodeOutcome::Accepted(consumed));
            }
        }
    }
    queries::count_failure(&mut tx, now, email.as_str(), MAX_CODE_ATTEMPTS).await?;
    tx.commit().await?;
    Ok(CodeOutcome::Rejected)
}

/// Deletes links that can no longer be used (expired or consumed) more than a day ago; returns
/// how many. The day of grace keeps recent ones for investigating a sign-in.
pub async fn purge_expired(db: &Db, now: time::OffsetDateTime) -> Result<u64, Error> {
    queries::purge(db, now - time::Duration::days(1)).await
}

/// The token as the mail's link carries it.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_same_origin_path() {
        for good in ["/", "/account", "/items?page=2"] {
            assert_eq!(safe_next(good).as_deref(), Some(good));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "account",
            "/a\r\nSet-Cookie: x=1",
            "",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn typed_codes_are_forgiving_about_case_spaces_and_look_alikes() {
        assert_eq!(normalize_code(" abcd-efgh "), "ABCDEFGH");
        assert_eq!(normalize_code("o1l0"), "0110");
    }
}
